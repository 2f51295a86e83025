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

impl Cents {
    /// Reads a decimal amount such as `899.99`. More than two decimals is refused rather than
    /// rounded, because silently changing a price is worse than asking again.
    pub fn from_decimal(amount: f64) -> Result<Self, PriceError> {
        if !amount.is_finite() {
            return Err(PriceError::NotFinite);
        }
        if amount < 0.0 {
            return Err(PriceError::Negative);
        }
        if amount > 1e13 {
            return Err(PriceError::TooLarge);
        }
        let scaled = amount * 100.0;
        let rounded = scaled.round();
        if (scaled - rounded).abs() > 1e-6 * scaled.abs().max(1.0) {
            return Err(PriceError::TooPrecise);
        }
        Ok(Cents(rounded as i64))
    }

    pub fn as_decimal(self) -> f64 {
        self.0 as f64 / 100.0
    }

    pub fn times(self, quantity: i64) -> Cents {
        Cents(self.0 * quantity)
    }
}

impl std::iter::Sum for Cents {
    fn sum<I: Iterator<Item = Cents>>(iter: I) -> Self {
        Cents(iter.map(|cents| cents.0).sum())
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
        let total: Cents =
            [Cents::from_decimal(249.99).unwrap().times(1), Cents::from_decimal(179.99).unwrap().times(2)].into_iter().sum();
        assert_eq!(total, Cents(60997));
        assert_eq!(serde_json::to_string(&total).unwrap(), "609.97");
    }

    #[test]
    fn prices_serialize_as_plain_json_numbers() {
        assert_eq!(serde_json::to_string(&Cents(89999)).unwrap(), "899.99");
        assert_eq!(serde_json::to_string(&Cents(1999)).unwrap(), "19.99");
    }

    #[test]
    fn more_than_two_decimals_or_negative_amounts_are_refused() {
        assert_eq!(Cents::from_decimal(1.005), Err(PriceError::TooPrecise));
        assert_eq!(Cents::from_decimal(-1.0), Err(PriceError::Negative));
        assert!(serde_json::from_str::<Cents>("\"12\"").is_err());
    }
}
