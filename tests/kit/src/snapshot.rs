//! Expected responses as insta snapshots in snapshots/, made stable before comparison:
//! values the scenario remembered appear under their names (`[PRODUCT_ID_1]`), so a snapshot
//! still shows which id appears where, as the guide does with `product_id_1`; other volatile
//! values are replaced only after their format has been checked (`[timestamp]`, `[jwt]`,
//! `[object_id]`, `[serial_id]`), so a wrong format still fails.

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
        Value::Array(items) => Value::Array(items.iter().map(|item| redact(item, key, variables)).collect()),
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
