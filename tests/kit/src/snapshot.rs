//! Expected responses as insta snapshots in snapshots/, made stable before comparison:
//! values the scenario remembered appear under their names (`[PRODUCT_ID_1]`), so a snapshot
//! still shows which id appears where, as the guide does with `product_id_1`; other volatile
//! values are replaced only after their format has been checked (`[timestamp]`, `[jwt]`,
//! `[object_id]`, `[serial_id]`), so a wrong format still fails. What the redaction hides is
//! checked before it is hidden: an object's `updated_at` is not before its `created_at`, and
//! the serial ids of a list (stock records and history, listed in id order) increase.

use std::collections::BTreeMap;

use serde_json::Value;

const SNAPSHOT_DIRECTORY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../snapshots");

/// Compares `body` with the snapshot `name`, after redaction.
pub fn assert_matches(name: &str, body: &Value, variables: &BTreeMap<String, String>) {
    let redacted = redact(body, None, variables);
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path(SNAPSHOT_DIRECTORY);
    settings.set_prepend_module_to_snapshot(false);
    settings.set_omit_expression(true);
    settings.set_sort_maps(false);
    settings.bind(|| insta::assert_json_snapshot!(name, redacted));
}

fn redact(value: &Value, key: Option<&str>, variables: &BTreeMap<String, String>) -> Value {
    match value {
        Value::Object(map) => {
            assert_updated_not_before_created(map);
            // Stock records and their history have serial ids, handed out in the order the
            // product events were consumed, which the concurrent outbox relay does not fix.
            let serial_id = map.contains_key("product_id");
            Value::Object(
                map.iter()
                    .map(|(field, inner)| match inner {
                        Value::Number(number) if serial_id && field == "id" => {
                            assert!(number.as_u64().is_some_and(|id| id > 0), "{field:?} = {number} is not a serial id");
                            (field.clone(), Value::String("[serial_id]".into()))
                        }
                        _ => (field.clone(), redact(inner, Some(field), variables)),
                    })
                    .collect(),
            )
        }
        Value::Array(items) => {
            assert_serial_ids_increase(items);
            Value::Array(items.iter().map(|item| redact(item, key, variables)).collect())
        }
        Value::String(text) => {
            if let Some((name, _)) = variables.iter().find(|(_, remembered)| *remembered == text) {
                return Value::String(format!("[{name}]"));
            }
            match key {
                Some("created_at" | "updated_at") => {
                    assert!(
                        is_guide_timestamp(text),
                        "{key:?} = {text:?} is not an RFC 3339 UTC timestamp with microseconds and +00:00"
                    );
                    Value::String("[timestamp]".into())
                }
                Some("access_token" | "refresh_token") => {
                    assert!(
                        text.starts_with("eyJhbGciOiJS") && text.split('.').count() == 3,
                        "{key:?} = {text:?} is not an RS256 JWT"
                    );
                    Value::String("[jwt]".into())
                }
                Some("_id" | "product_id" | "order_id") if is_object_id(text) => Value::String("[object_id]".into()),
                _ => value.clone(),
            }
        }
        other => other.clone(),
    }
}

/// An object with both timestamps was not updated before it was created.
fn assert_updated_not_before_created(map: &serde_json::Map<String, Value>) {
    let timestamp =
        |field: &str| map.get(field).and_then(Value::as_str).and_then(|text| chrono::DateTime::parse_from_rfc3339(text).ok());
    if let (Some(created), Some(updated)) = (timestamp("created_at"), timestamp("updated_at")) {
        assert!(updated >= created, "updated_at {updated} is before created_at {created} in {map:?}");
    }
}

/// The serial ids of a list of stock records or history entries (the objects whose `id` the
/// redaction hides: those with a `product_id`) strictly increase: the inventory lists them in id
/// order, so a list out of order, or an id repeated, is a defect the redaction would hide.
fn assert_serial_ids_increase(items: &[Value]) {
    let ids: Vec<u64> = items
        .iter()
        .filter(|item| item.get("product_id").is_some())
        .filter_map(|item| item.get("id").and_then(Value::as_u64))
        .collect();
    assert!(ids.windows(2).all(|pair| pair[0] < pair[1]), "the serial ids of a list do not increase: {ids:?}");
}

/// `2025-05-15T11:30:00.123456+00:00`
pub fn is_guide_timestamp(text: &str) -> bool {
    let bytes = text.as_bytes();
    text.len() == 32
        && text.ends_with("+00:00")
        && bytes[10] == b'T'
        && bytes[19] == b'.'
        && chrono::DateTime::parse_from_rfc3339(text).is_ok()
}

pub fn is_object_id(text: &str) -> bool {
    text.len() == 24 && text.bytes().all(|byte| byte.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_list_in_id_order_with_timestamps_in_order_passes() {
        let history = json!([
            {"id": 3, "product_id": "p", "created_at": "2026-12-07T00:00:00.000001+00:00"},
            {"id": 7, "product_id": "p", "created_at": "2026-12-07T00:00:00.000002+00:00",
             "updated_at": "2026-12-07T00:00:00.000002+00:00"}
        ]);
        let redacted = redact(&history, None, &BTreeMap::new());
        assert_eq!(redacted[1]["id"], "[serial_id]");
    }

    #[test]
    #[should_panic(expected = "the serial ids of a list do not increase: [7, 3]")]
    fn serial_ids_out_of_order_fail_before_they_are_hidden() {
        redact(&json!([{"id": 7, "product_id": "p"}, {"id": 3, "product_id": "p"}]), None, &BTreeMap::new());
    }

    #[test]
    #[should_panic(expected = "the serial ids of a list do not increase: [3, 3]")]
    fn a_serial_id_repeated_fails() {
        redact(&json!([{"id": 3, "product_id": "p"}, {"id": 3, "product_id": "q"}]), None, &BTreeMap::new());
    }

    #[test]
    #[should_panic(expected = "is before created_at")]
    fn an_update_before_the_creation_fails_before_the_timestamps_are_hidden() {
        let order = json!({
            "_id": "65f0000000000000000000a1",
            "created_at": "2026-12-07T00:00:01.000000+00:00",
            "updated_at": "2026-12-07T00:00:00.999999+00:00"
        });
        redact(&order, None, &BTreeMap::new());
    }
}
