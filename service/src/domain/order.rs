//! The order aggregate and the validated input that creates one.

use std::sync::OnceLock;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use super::{Money, OrderStatus};

pub const MAX_ITEMS: usize = 100;
pub const MAX_QUANTITY: u32 = 10_000;
pub const MAX_NAME_CHARS: usize = 200;
pub const MAX_ADDRESS_CHARS: usize = 500;
pub const MAX_TRACKING_CHARS: usize = 64;
/// Largest product id: the largest integer a JSON number carries exactly in every client
/// (2^53 - 1, JavaScript's `Number.MAX_SAFE_INTEGER`).
pub const MAX_PRODUCT_ID: i64 = 9_007_199_254_740_991;
/// Largest unit price, so that even the largest order stays within the money range.
pub const MAX_PRICE_CENTS: i64 = 99_999_999;

/// An order as clients see it. Field names are the ones the earlier Python version used.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Order {
    /// Stable identifier, a string of digits.
    #[schema(example = "1")]
    pub id: String,
    pub customer_name: String,
    /// Creation time, RFC 3339 in UTC.
    pub order_date: DateTime<Utc>,
    /// Sum of price × quantity over the items, exact to the cent.
    #[schema(value_type = f64, example = 129.99)]
    pub total_amount: Money,
    pub status: OrderStatus,
    pub items: Vec<OrderItem>,
    pub shipping_address: String,
    pub tracking_number: Option<String>,
    /// 1 when created, one more on every change; the `ETag` is this number. Not part of the
    /// JSON.
    #[serde(skip)]
    #[schema(ignore)]
    pub version: u64,
    /// The JSON and entity tag of this order, made on first use and kept while the order is
    /// shared unchanged (the memory store hands out the same `Arc` to every read).
    #[serde(skip)]
    #[schema(ignore)]
    pub json: JsonCache,
}

/// Serialised JSON and entity tag, kept once made. A clone starts empty, because a clone of an
/// order is made to be changed (copy on write); it never takes part in equality.
#[derive(Default)]
pub struct JsonCache(OnceLock<Encoded>);

/// An order as it is sent: its JSON and its `ETag`.
pub struct Encoded {
    pub json: Bytes,
    pub etag: Bytes,
}

impl Clone for JsonCache {
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl PartialEq for JsonCache {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl std::fmt::Debug for JsonCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JsonCache")
    }
}

impl Order {
    /// The order as the create that made it answered: status and tracking number are the only
    /// fields that ever change, and they start as PENDING and none. An idempotent replay
    /// answers with this, so a retry gets the first response, not today's state.
    pub fn as_created(&self) -> Order {
        Order {
            status: OrderStatus::Pending,
            tracking_number: None,
            version: 1,
            ..self.clone()
        }
    }

    /// The order's JSON, serialised once per version of a shared order.
    pub fn to_json(&self) -> Bytes {
        self.encoded().json.clone()
    }

    /// The order's JSON and entity tag, made once per version of a shared order.
    pub fn encoded(&self) -> &Encoded {
        self.json.0.get_or_init(|| Encoded {
            // Serialising plain fields into memory cannot fail.
            json: serde_json::to_vec(self)
                .map(Bytes::from)
                .unwrap_or_default(),
            etag: Bytes::from(self.etag()),
        })
    }

    /// Strong entity tag of this version of the order. Every change bumps the version, so a
    /// tag names exactly one representation, and no read serialises or hashes the order to
    /// tag it.
    pub fn etag(&self) -> String {
        etag_of_version(self.version)
    }
}

/// The entity tag of an order's version: the number in quotes.
pub fn etag_of_version(version: u64) -> String {
    format!("\"{version}\"")
}

/// The version an entity tag names, when it is one of ours: `"<digits>"`. Weak tags (`W/…`)
/// never match, as `If-Match` compares strongly.
pub fn version_of_etag(tag: &str) -> Option<u64> {
    let digits = tag.strip_prefix('"')?.strip_suffix('"')?;
    if digits.is_empty() || digits.len() > 19 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct OrderItem {
    pub product_id: i64,
    pub name: String,
    pub quantity: u32,
    #[schema(value_type = f64, example = 29.99)]
    pub price: Money,
}

/// A line of a new order, already validated.
pub type NewOrderItem = OrderItem;

/// A validated request to create an order: every value in it is legal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NewOrder {
    pub customer_name: String,
    pub items: Vec<NewOrderItem>,
    pub shipping_address: String,
}

/// One problem with one input field; `field` is a path such as `items[0].quantity`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

/// Every problem found in one input, reported together.
#[derive(Debug, Clone, Default, PartialEq, Eq, thiserror::Error)]
#[error("{} invalid field(s)", .0.len())]
pub struct ValidationErrors(pub Vec<FieldError>);

impl ValidationErrors {
    pub fn single(field: impl Into<String>, message: impl Into<String>) -> Self {
        let mut errors = Self::default();
        errors.add(field, message);
        errors
    }

    pub fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError {
            field: field.into(),
            message: message.into(),
        });
    }
}

/// Raw item values as a client sent them.
pub struct ItemInput {
    pub product_id: i64,
    pub name: String,
    pub quantity: u32,
    pub price: f64,
}

impl NewOrder {
    /// Checks every field and collects all problems, so a client fixes them in one round.
    pub fn parse(
        customer_name: &str,
        items: Vec<ItemInput>,
        shipping_address: &str,
    ) -> Result<NewOrder, ValidationErrors> {
        let mut errors = ValidationErrors::default();
        let customer_name = text(&mut errors, "customer_name", customer_name, MAX_NAME_CHARS);
        let shipping_address = text(
            &mut errors,
            "shipping_address",
            shipping_address,
            MAX_ADDRESS_CHARS,
        );
        if items.is_empty() {
            errors.add("items", "must contain at least one item");
        } else if items.len() > MAX_ITEMS {
            errors.add("items", format!("must contain at most {MAX_ITEMS} items"));
        }
        let mut parsed = Vec::with_capacity(items.len());
        for (i, item) in items.into_iter().enumerate() {
            let field = |name: &str| format!("items[{i}].{name}");
            if !(1..=MAX_PRODUCT_ID).contains(&item.product_id) {
                errors.add(
                    field("product_id"),
                    format!("must be a whole number between 1 and {MAX_PRODUCT_ID}"),
                );
            }
            let name = text(&mut errors, &field("name"), &item.name, MAX_NAME_CHARS);
            if !(1..=MAX_QUANTITY).contains(&item.quantity) {
                errors.add(
                    field("quantity"),
                    format!("must be between 1 and {MAX_QUANTITY}"),
                );
            }
            match Money::from_json_number(item.price) {
                Ok(price) if price.decimal() > rust_decimal::Decimal::new(MAX_PRICE_CENTS, 2) => {
                    errors.add(field("price"), "must be at most 999999.99")
                }
                Ok(price) => parsed.push(OrderItem {
                    product_id: item.product_id,
                    name,
                    quantity: item.quantity,
                    price,
                }),
                Err(e) => errors.add(field("price"), e.to_string()),
            }
        }
        let order = NewOrder {
            customer_name,
            items: parsed,
            shipping_address,
        };
        if order.total().is_none() {
            errors.add("items", "total amount must be less than 1000000000000");
        }
        if errors.0.is_empty() {
            Ok(order)
        } else {
            Err(errors)
        }
    }

    /// Sum of price × quantity; `None` when it leaves the money range.
    pub fn total(&self) -> Option<Money> {
        total_of(&self.items)
    }

    /// A digest of the request's meaning, to tell an idempotent retry from a different request
    /// that reuses the same key.
    pub fn fingerprint(&self) -> String {
        let canonical = serde_json::to_vec(self).unwrap_or_default();
        let digest = Sha256::digest(&canonical);
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The order this input becomes, once a store has assigned an id.
    pub fn into_order(self, id: String, order_date: DateTime<Utc>) -> Order {
        let total_amount = self.total().unwrap_or_default();
        Order {
            id,
            customer_name: self.customer_name,
            order_date,
            total_amount,
            status: OrderStatus::Pending,
            items: self.items,
            shipping_address: self.shipping_address,
            tracking_number: None,
            version: 1,
            json: JsonCache::default(),
        }
    }
}

/// Sum of price × quantity over `items`; `None` when it leaves the money range.
pub fn total_of(items: &[OrderItem]) -> Option<Money> {
    items.iter().try_fold(Money::ZERO, |sum, item| {
        sum.checked_add(item.price.times(item.quantity)?)
    })
}

/// A trimmed, non-empty text of bounded length, free of control characters. PostgreSQL
/// cannot store NUL in `text`, and the other controls (line breaks included) have no place
/// in a name, an address or a tracking number: refusing them here keeps every store alike.
fn text(errors: &mut ValidationErrors, field: &str, value: &str, max_chars: usize) -> String {
    let value = value.trim();
    if value.is_empty() {
        errors.add(field, "must not be empty");
    } else if value.chars().any(char::is_control) {
        errors.add(field, "must not contain control characters");
    } else if value.chars().count() > max_chars {
        errors.add(field, format!("must be at most {max_chars} characters"));
    }
    value.to_owned()
}

/// A tracking number as given to a status change: trimmed, non-empty, bounded.
pub fn parse_tracking_number(value: Option<&str>) -> Result<Option<String>, ValidationErrors> {
    let Some(value) = value else { return Ok(None) };
    let mut errors = ValidationErrors::default();
    let value = text(&mut errors, "tracking_number", value, MAX_TRACKING_CHARS);
    if errors.0.is_empty() {
        Ok(Some(value))
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(price: f64, quantity: u32) -> ItemInput {
        ItemInput {
            product_id: 1,
            name: "Laptop Stand".into(),
            quantity,
            price,
        }
    }

    #[test]
    fn total_is_computed_exactly_from_items() {
        let order = NewOrder::parse("John", vec![item(29.99, 1), item(100.0, 1)], "1 Main St")
            .expect("valid");
        assert_eq!(
            order.total().map(|m| m.to_string()).as_deref(),
            Some("129.99")
        );
        let order = NewOrder::parse("John", vec![item(0.1, 3)], "1 Main St").expect("valid");
        assert_eq!(
            order.total().map(|m| m.to_string()).as_deref(),
            Some("0.30")
        );
    }

    #[test]
    fn every_bad_field_is_reported_at_once() {
        let errors = NewOrder::parse(
            "  ",
            vec![ItemInput {
                product_id: 0,
                name: String::new(),
                quantity: 0,
                price: 1.005,
            }],
            "",
        )
        .expect_err("invalid");
        let fields: Vec<_> = errors.0.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "customer_name",
                "shipping_address",
                "items[0].product_id",
                "items[0].name",
                "items[0].quantity",
                "items[0].price"
            ]
        );
    }

    #[test]
    fn empty_and_oversized_orders_are_rejected() {
        let errors = NewOrder::parse("A", vec![], "B").expect_err("no items");
        assert_eq!(errors.0[0].field, "items");
        let errors =
            NewOrder::parse("A", vec![item(999_999_999_999.0, 2)], "B").expect_err("too large");
        assert!(errors
            .0
            .iter()
            .any(|e| e.field == "items[0].price" || e.field == "items"));
    }

    #[test]
    fn control_characters_are_field_errors() {
        let nul = ItemInput {
            name: "Lamp\u{0}".into(),
            ..item(1.0, 1)
        };
        let errors = NewOrder::parse("Ada\u{7}", vec![nul], "1 Main St\r\nApt 2\u{9f}")
            .expect_err("control characters");
        let fields: Vec<_> = errors.0.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            ["customer_name", "shipping_address", "items[0].name"]
        );
        assert!(errors.0.iter().all(|e| e.message.contains("control")));
        let errors = parse_tracking_number(Some("1Z\u{0}9")).expect_err("NUL");
        assert_eq!(errors.0[0].field, "tracking_number");
        // Surrounding whitespace is trimmed, not refused.
        assert!(NewOrder::parse(" Ada\t", vec![item(1.0, 1)], "\n1 Main St ").is_ok());
    }

    #[test]
    fn fingerprint_depends_on_content_only() {
        let a = NewOrder::parse("A", vec![item(1.5, 2)], "B").expect("valid");
        let b = NewOrder::parse(" A ", vec![item(1.50, 2)], "B").expect("valid");
        let c = NewOrder::parse("A", vec![item(1.5, 3)], "B").expect("valid");
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert_ne!(a.fingerprint(), c.fingerprint());
    }
}
