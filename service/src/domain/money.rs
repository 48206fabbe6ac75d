//! Exact money: a decimal with at most two places, written as a JSON number.

use std::fmt;

use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use serde::{Serialize, Serializer};

/// Largest accepted amount. Keeps every total within 15 significant digits, so the JSON
/// number written through `f64` prints back exactly as the decimal.
const MAX_UNITS: i64 = 1_000_000_000_000;

/// An amount of money in the order's currency, exact to the cent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Money(Decimal);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("must be a number with at most two decimal places")]
    TooPrecise,
    #[error("must not be negative")]
    Negative,
    #[error("must be less than 1000000000000")]
    TooLarge,
}

impl Money {
    pub const ZERO: Money = Money(Decimal::ZERO);

    /// Accepts a decimal with at most two places, between zero and the maximum.
    pub fn parse(value: Decimal) -> Result<Self, MoneyError> {
        let value = value.normalize();
        if value.scale() > 2 {
            return Err(MoneyError::TooPrecise);
        }
        if value.is_sign_negative() && !value.is_zero() {
            return Err(MoneyError::Negative);
        }
        if value >= Decimal::from(MAX_UNITS) {
            return Err(MoneyError::TooLarge);
        }
        Ok(Money(value.round_dp(2)))
    }

    /// Parses a JSON number as written by the client. `serde_json` hands numbers over as
    /// `f64`; its shortest round-trip text is the digits the client sent, so going through
    /// text keeps `29.99` exact.
    pub fn from_json_number(value: f64) -> Result<Self, MoneyError> {
        if !value.is_finite() {
            return Err(MoneyError::TooLarge);
        }
        let decimal: Decimal = value
            .to_string()
            .parse()
            .or_else(|_| Decimal::from_scientific(&format!("{value:e}")))
            .map_err(|_| MoneyError::TooLarge)?;
        Self::parse(decimal)
    }

    pub fn decimal(self) -> Decimal {
        self.0
    }

    /// `self × quantity`, or `None` past the maximum.
    pub fn times(self, quantity: u32) -> Option<Money> {
        let total = self.0.checked_mul(Decimal::from(quantity))?;
        Money::parse(total).ok()
    }

    pub fn checked_add(self, other: Money) -> Option<Money> {
        Money::parse(self.0.checked_add(other.0)?).ok()
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.2}", self.0)
    }
}

impl Serialize for Money {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // Exact: MAX_UNITS keeps the value within f64's 15 significant decimal digits.
        let value = self.0.to_f64().unwrap_or_default();
        serializer.serialize_f64(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn money(s: &str) -> Money {
        Money::parse(s.parse().expect("decimal")).expect("valid money")
    }

    #[test]
    fn json_numbers_keep_their_cents() {
        assert_eq!(Money::from_json_number(29.99), Ok(money("29.99")));
        assert_eq!(Money::from_json_number(0.1), Ok(money("0.10")));
        assert_eq!(Money::from_json_number(100.0), Ok(money("100")));
        assert_eq!(Money::from_json_number(29.999), Err(MoneyError::TooPrecise));
        assert_eq!(Money::from_json_number(-1.0), Err(MoneyError::Negative));
        assert_eq!(Money::from_json_number(1e13), Err(MoneyError::TooLarge));
        assert_eq!(Money::from_json_number(f64::NAN), Err(MoneyError::TooLarge));
    }

    #[test]
    fn sums_are_exact_where_floats_are_not() {
        // 0.1 + 0.2 != 0.3 in binary floating point.
        let total = money("0.1").checked_add(money("0.2")).expect("in range");
        assert_eq!(total, money("0.3"));
        assert_eq!(serde_json::to_string(&total).expect("json"), "0.3");
        let many = money("199.97").times(3).expect("in range");
        assert_eq!(serde_json::to_string(&many).expect("json"), "599.91");
    }

    #[test]
    fn largest_amount_prints_exactly() {
        let max = money("999999999999.99");
        assert_eq!(
            serde_json::to_string(&max).expect("json"),
            "999999999999.99"
        );
        assert_eq!(max.to_string(), "999999999999.99");
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    const MAX_CENTS: i64 = MAX_UNITS * 100 - 1;

    proptest! {
        /// Any amount in cents, written as a JSON number, parses to exactly that amount and
        /// is written back as the same number.
        #[test]
        fn cents_round_trip_through_json(cents in 0..=MAX_CENTS) {
            let exact = Decimal::new(cents, 2);
            let json = exact.normalize().to_string();
            let number: f64 = serde_json::from_str(&json).expect("a JSON number");
            let money = Money::from_json_number(number).expect("valid money");
            prop_assert_eq!(money.decimal(), exact);
            // Written as a JSON number of the same value (a whole amount may carry `.0`).
            let written = serde_json::to_string(&money).expect("json");
            prop_assert_eq!(written.parse::<Decimal>().ok().map(|d| d.normalize()), Some(exact.normalize()));
            prop_assert_eq!(money.to_string(), format!("{exact:.2}"));
        }

        /// A third decimal place that is not zero is refused, never rounded.
        #[test]
        fn a_third_decimal_is_refused(mills in 0..=(MAX_UNITS * 1000 - 1)) {
            prop_assume!(mills % 10 != 0);
            let number: f64 = Decimal::new(mills, 3).to_string().parse().expect("number");
            prop_assert_eq!(Money::from_json_number(number), Err(MoneyError::TooPrecise));
        }

        #[test]
        fn negative_and_too_large_amounts_are_refused(cents in 1..=MAX_CENTS, excess in 0_i64..1_000_000) {
            let negative: f64 = Decimal::new(-cents, 2).to_string().parse().expect("number");
            prop_assert_eq!(Money::from_json_number(negative), Err(MoneyError::Negative));
            let large = Money::parse(Decimal::from(MAX_UNITS + excess));
            prop_assert_eq!(large, Err(MoneyError::TooLarge));
        }

        /// Sums and products are exact: they agree with integer arithmetic on cents.
        #[test]
        fn arithmetic_agrees_with_integer_cents(a in 0..=99_999_999_i64, b in 0..=99_999_999_i64, q in 1..=10_000_u32) {
            let (ma, mb) = (Money::parse(Decimal::new(a, 2)).expect("a"), Money::parse(Decimal::new(b, 2)).expect("b"));
            prop_assert_eq!(ma.checked_add(mb).map(Money::decimal), Some(Decimal::new(a + b, 2)));
            prop_assert_eq!(ma.times(q).map(Money::decimal), Some(Decimal::new(a * i64::from(q), 2)));
        }
    }
}
