//! Order status and the one function that decides which changes are legal.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum OrderStatus {
    Pending,
    Processing,
    Shipped,
    Delivered,
    Cancelled,
}

impl OrderStatus {
    pub const ALL: [OrderStatus; 5] = [
        OrderStatus::Pending,
        OrderStatus::Processing,
        OrderStatus::Shipped,
        OrderStatus::Delivered,
        OrderStatus::Cancelled,
    ];

    /// The wire and database spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Pending => "PENDING",
            OrderStatus::Processing => "PROCESSING",
            OrderStatus::Shipped => "SHIPPED",
            OrderStatus::Delivered => "DELIVERED",
            OrderStatus::Cancelled => "CANCELLED",
        }
    }

    pub fn parse(s: &str) -> Option<OrderStatus> {
        OrderStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
    }
}

/// PENDING → PROCESSING → SHIPPED → DELIVERED, and PENDING | PROCESSING → CANCELLED.
pub fn can_transition(from: OrderStatus, to: OrderStatus) -> bool {
    use OrderStatus::*;
    matches!(
        (from, to),
        (Pending, Processing)
            | (Processing, Shipped)
            | (Shipped, Delivered)
            | (Pending | Processing, Cancelled)
    )
}

#[cfg(test)]
mod tests {
    use super::OrderStatus::*;
    use super::*;

    #[test]
    fn transition_table() {
        // Rows: from; columns: to, in the order of OrderStatus::ALL.
        let table = [
            (Pending, [false, true, false, false, true]),
            (Processing, [false, false, true, false, true]),
            (Shipped, [false, false, false, true, false]),
            (Delivered, [false, false, false, false, false]),
            (Cancelled, [false, false, false, false, false]),
        ];
        for (from, row) in table {
            for (to, allowed) in OrderStatus::ALL.into_iter().zip(row) {
                assert_eq!(can_transition(from, to), allowed, "{from:?} -> {to:?}");
            }
        }
    }

    #[test]
    fn spelling_round_trips() {
        for status in OrderStatus::ALL {
            assert_eq!(OrderStatus::parse(status.as_str()), Some(status));
            let json = serde_json::to_string(&status).expect("json");
            assert_eq!(json, format!("\"{}\"", status.as_str()));
        }
        assert_eq!(OrderStatus::parse("pending"), None);
    }
}
