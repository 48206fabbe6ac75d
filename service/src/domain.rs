//! Orders and the rules they obey, free of HTTP and storage concerns.

mod id;
mod money;
mod order;
mod status;

pub use id::OrderId;
pub use money::{Money, MoneyError};
pub use order::{
    etag_of_version, parse_tracking_number, total_of, version_of_etag, FieldError, ItemInput,
    JsonCache, NewOrder, NewOrderItem, Order, OrderItem, ValidationErrors,
};
pub use status::{can_transition, OrderStatus};
