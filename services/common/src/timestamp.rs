//! Timestamps as the guide prints them: RFC 3339, UTC, microseconds, `+00:00`
//! (`2025-05-15T11:30:00.123456+00:00`).

use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Deserializer, Serializer};

/// The current time truncated to microseconds, so that what we store (PostgreSQL keeps
/// microseconds, BSON milliseconds) and what we answer agree.
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

pub fn format(timestamp: &DateTime<Utc>) -> String {
    timestamp.format("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string()
}

/// `#[serde(with = "common::timestamp")]` for a `DateTime<Utc>` field.
pub fn serialize<S: Serializer>(timestamp: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&format(timestamp))
}

pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<DateTime<Utc>, D::Error> {
    let text = String::deserialize(deserializer)?;
    DateTime::parse_from_rfc3339(&text).map(|parsed| parsed.with_timezone(&Utc)).map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn timestamps_have_microseconds_and_an_explicit_utc_offset() {
        let timestamp = Utc.with_ymd_and_hms(2025, 5, 15, 11, 30, 0).unwrap() + chrono::Duration::microseconds(123_456);
        assert_eq!(format(&timestamp), "2025-05-15T11:30:00.123456+00:00");
    }

    #[test]
    fn whole_seconds_still_print_six_fraction_digits() {
        let timestamp = Utc.with_ymd_and_hms(2025, 5, 15, 11, 30, 0).unwrap();
        assert_eq!(format(&timestamp), "2025-05-15T11:30:00.000000+00:00");
    }
}
