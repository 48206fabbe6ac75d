//! The sample orders the earlier Python version shipped with, in the same order.

use chrono::{DateTime, Duration, Utc};
use rust_decimal::Decimal;

use crate::domain::{total_of, Money, Order, OrderItem, OrderStatus};

pub fn sample_orders(now: DateTime<Utc>) -> Vec<Order> {
    vec![
        order(
            "1",
            "John Doe",
            now - Duration::days(5),
            OrderStatus::Delivered,
            vec![
                item(1, "Laptop Stand", 1, 2999),
                item(2, "Wireless Mouse", 1, 10000),
            ],
            "123 Main St, New York, NY 10001",
            Some("1Z999AA1234567890"),
        ),
        order(
            "2",
            "Jane Smith",
            now - Duration::days(1),
            OrderStatus::Processing,
            vec![item(3, "Mechanical Keyboard", 1, 7550)],
            "456 Oak Ave, Los Angeles, CA 90001",
            None,
        ),
        order(
            "3",
            "Bob Wilson",
            now - Duration::hours(2),
            OrderStatus::Pending,
            vec![item(4, "Monitor", 1, 19997)],
            "789 Pine Rd, Chicago, IL 60601",
            None,
        ),
    ]
}

fn item(product_id: i64, name: &str, quantity: u32, cents: i64) -> OrderItem {
    OrderItem {
        product_id,
        name: name.to_owned(),
        quantity,
        price: Money::parse(Decimal::new(cents, 2)).unwrap_or_default(),
    }
}

fn order(
    id: &str,
    customer_name: &str,
    order_date: DateTime<Utc>,
    status: OrderStatus,
    items: Vec<OrderItem>,
    shipping_address: &str,
    tracking_number: Option<&str>,
) -> Order {
    let total_amount = total_of(&items).unwrap_or_default();
    Order {
        id: id.to_owned(),
        customer_name: customer_name.to_owned(),
        order_date: super::to_micros(order_date),
        total_amount,
        status,
        items,
        shipping_address: shipping_address.to_owned(),
        tracking_number: tracking_number.map(str::to_owned),
        version: 1,
        json: Default::default(),
    }
}
