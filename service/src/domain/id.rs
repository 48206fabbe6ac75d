//! [`OrderId`]: an order id, checked once where it enters the service.

use std::fmt;

/// An order's id: its sequence number, written as 1 to 19 decimal digits, never 0 (`"42"`).
/// A text that is not one names no order, here or in any store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OrderId(u64);

impl OrderId {
    /// The id `text` names, or `None` when no order can have it.
    pub fn parse(text: &str) -> Option<Self> {
        if text.is_empty() || text.len() > 19 || !text.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        text.parse().ok().filter(|n| *n > 0).map(Self)
    }

    /// The order's sequence number, which orders the store.
    pub fn sequence(self) -> u64 {
        self.0
    }
}

impl fmt::Display for OrderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_positive_numbers_of_at_most_19_digits() {
        assert_eq!(OrderId::parse("42").map(OrderId::sequence), Some(42));
        assert_eq!(
            OrderId::parse("0042").map(|id| id.to_string()),
            Some("42".to_owned())
        );
        let largest = "9999999999999999999";
        assert_eq!(
            OrderId::parse(largest).map(|id| id.to_string()).as_deref(),
            Some(largest)
        );
        for bad in [
            "",
            "0",
            "-1",
            "+1",
            "1.0",
            "abc",
            " 1",
            "99999999999999999999",
            "１",
        ] {
            assert_eq!(OrderId::parse(bad), None, "{bad:?}");
        }
    }
}
