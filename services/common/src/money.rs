//! Money as whole cents, so that totals are exact (899.99 x 1 + 179.99 x 2 = 609.97, never
//! 609.9699999). On the wire a price is a JSON number with at most two decimals.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Cents(pub i64);

/// Why a JSON number is not a price.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PriceError {
    #[error("price must be a finite number")]
    NotFinite,
    #[error("price must not be negative")]
    Negative,
    #[error("price must have at most two decimal places")]
    TooPrecise,
    #[error("price is too large")]
    TooLarge,
}

/// The largest price accepted, in whole units (10,000,000,000,000.00).
pub const MAXIMUM_PRICE: f64 = 1e13;

/// The largest amount of cents a JSON number carries exactly (2^53 - 1, about 90 trillion in
/// whole units): a total beyond it could not be answered to the cent, so it is refused.
pub const MAXIMUM_EXACT_CENTS: i64 = (1 << 53) - 1;

impl Cents {
    /// Reads a decimal amount such as `899.99`. More than two decimals is refused rather than
    /// rounded, at any magnitude, because silently changing a price is worse than asking again.
    ///
    /// Exact: the amount is read from the shortest decimal that parses back to the same number
    /// (what the client wrote, for any number written with up to 15 significant digits), never by
    /// scaling the binary value, which would round `5000.005` to `5000.01`.
    pub fn from_decimal(amount: f64) -> Result<Self, PriceError> {
        if !amount.is_finite() {
            return Err(PriceError::NotFinite);
        }
        if amount < 0.0 {
            return Err(PriceError::Negative);
        }
        if amount > MAXIMUM_PRICE {
            return Err(PriceError::TooLarge);
        }
        // `Display` for f64 prints the shortest round-trip decimal, never in exponent notation;
        // `abs` makes -0 read as 0.
        let text = amount.abs().to_string();
        let (whole, fraction) = text.split_once('.').unwrap_or((text.as_str(), ""));
        if fraction.len() > 2 {
            return Err(PriceError::TooPrecise);
        }
        let whole: i64 = whole.parse().map_err(|_| PriceError::TooLarge)?;
        let fraction: i64 = format!("{fraction:0<2}").parse().map_err(|_| PriceError::TooPrecise)?;
        whole.checked_mul(100).and_then(|cents| cents.checked_add(fraction)).map(Cents).ok_or(PriceError::TooLarge)
    }

    pub fn as_decimal(self) -> f64 {
        self.0 as f64 / 100.0
    }

    /// `quantity` times this amount, or `None` beyond [`MAXIMUM_EXACT_CENTS`].
    pub fn checked_times(self, quantity: i64) -> Option<Cents> {
        self.0.checked_mul(quantity).filter(|cents| (0..=MAXIMUM_EXACT_CENTS).contains(cents)).map(Cents)
    }

    /// The sum of `amounts`, or `None` beyond [`MAXIMUM_EXACT_CENTS`].
    pub fn checked_sum(amounts: impl IntoIterator<Item = Cents>) -> Option<Cents> {
        amounts
            .into_iter()
            .try_fold(0i64, |total, amount| total.checked_add(amount.0))
            .filter(|cents| (0..=MAXIMUM_EXACT_CENTS).contains(cents))
            .map(Cents)
    }
}

impl std::fmt::Display for Cents {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "{}.{:02}", self.0 / 100, self.0 % 100)
    }
}

impl Serialize for Cents {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_f64(self.as_decimal())
    }
}

impl<'de> Deserialize<'de> for Cents {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let amount = f64::deserialize(deserializer)?;
        Cents::from_decimal(amount).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guides_multi_item_total_is_exact() {
        let lines =
            [Cents::from_decimal(249.99).unwrap().checked_times(1), Cents::from_decimal(179.99).unwrap().checked_times(2)];
        let total = Cents::checked_sum(lines.into_iter().map(Option::unwrap)).unwrap();
        assert_eq!(total, Cents(60997));
        assert_eq!(serde_json::to_string(&total).unwrap(), "609.97");
    }

    #[test]
    fn prices_serialize_as_plain_json_numbers() {
        assert_eq!(serde_json::to_string(&Cents(89999)).unwrap(), "899.99");
        assert_eq!(serde_json::to_string(&Cents(1999)).unwrap(), "19.99");
    }

    #[test]
    fn more_than_two_decimals_are_refused_at_any_magnitude() {
        assert_eq!(Cents::from_decimal(1.005), Err(PriceError::TooPrecise));
        assert_eq!(Cents::from_decimal(5000.005), Err(PriceError::TooPrecise));
        assert_eq!(Cents::from_decimal(123_456_789.125), Err(PriceError::TooPrecise));
        assert_eq!(Cents::from_decimal(0.0000001), Err(PriceError::TooPrecise));
        assert_eq!(Cents::from_decimal(5000.01), Ok(Cents(500_001)));
        assert_eq!(Cents::from_decimal(0.1), Ok(Cents(10)));
        assert_eq!(Cents::from_decimal(899.990), Ok(Cents(89_999)));
        assert_eq!(Cents::from_decimal(-0.0), Ok(Cents(0)));
        assert_eq!(Cents::from_decimal(1e13), Ok(Cents(1_000_000_000_000_000)));
        assert_eq!(Cents::from_decimal(1e13 + 0.01), Err(PriceError::TooLarge));
        assert_eq!(Cents::from_decimal(f64::NAN), Err(PriceError::NotFinite));
    }

    #[test]
    fn totals_beyond_what_a_json_number_carries_exactly_are_refused() {
        assert_eq!(Cents(MAXIMUM_EXACT_CENTS).checked_times(1), Some(Cents(MAXIMUM_EXACT_CENTS)));
        assert_eq!(Cents(1_000_000_000_000_000).checked_times(1_000_000), None, "overflows i64");
        assert_eq!(Cents(MAXIMUM_EXACT_CENTS).checked_times(2), None, "fits i64, not a JSON number");
        assert_eq!(Cents(-1).checked_times(1), None);
        assert_eq!(Cents::checked_sum([Cents(MAXIMUM_EXACT_CENTS), Cents(1)]), None);
        assert_eq!(Cents::checked_sum([Cents(i64::MAX), Cents(1)]), None, "overflows i64");
        assert_eq!(Cents::checked_sum([Cents(5), Cents(7)]), Some(Cents(12)));
    }

    #[test]
    fn negative_amounts_are_refused() {
        assert_eq!(Cents::from_decimal(-1.0), Err(PriceError::Negative));
        assert!(serde_json::from_str::<Cents>("\"12\"").is_err());
    }
}
