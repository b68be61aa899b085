//! The body of `POST /api/2.0/serving-endpoints/{name}/labels`: ground truth for logged
//! predictions, by request id (and row) or by key columns and event time.
//!
//! ```json
//! {"labels": [
//!   {"request_id": "5f0c...", "row_index": 0, "label": 1},
//!   {"keys": {"customer_id": "C00042"}, "timestamp": "2026-11-23T10:00:00Z", "label": 0}
//! ]}
//! ```

use serde_json::Value as Json;

use super::LabelRecord;
use crate::data::time::parse_timestamp;
use crate::error::{Limit, RequestError};
use crate::features::embedded::json_value;

pub use crate::settings::inference_log::{MAX_KEYS, MAX_LABELS};

/// What one labels call may carry.
#[derive(Debug, Clone, Copy)]
pub struct LabelRules<'a> {
    /// Labels per call (`inference_log.max_labels_per_request`).
    pub max_labels: usize,
    /// Key columns per label (`inference_log.max_keys_per_label`).
    pub max_keys: usize,
    /// The endpoint's declared key columns: the only names `keys` may use (each becomes a
    /// column of the labels table, so a caller cannot widen the table at will).
    pub key_columns: &'a [String],
}

impl Default for LabelRules<'_> {
    /// The default bounds, and no key column (labels by request id only).
    fn default() -> Self {
        Self {
            max_labels: MAX_LABELS,
            max_keys: MAX_KEYS,
            key_columns: &[],
        }
    }
}

/// Why a labels body was refused; the message names the entry and, for a bound, its setting.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LabelError {
    #[error("{0}")]
    Invalid(String),
    #[error("'labels' has {count} entries, over the limit of {max} per call (inference_log.max_labels_per_request): send them in several calls")]
    TooMany { count: usize, max: usize },
    #[error("labels[{index}].keys has {count} columns, over the limit of {max} (inference_log.max_keys_per_label)")]
    TooManyKeys {
        index: usize,
        count: usize,
        max: usize,
    },
    #[error("labels[{index}].keys.{key} is not a key column of this endpoint ({}); a label names its prediction by request_id or by these columns (routing.key_column and the served versions' feature lookup_key columns)", allowed_list(.allowed))]
    UndeclaredKey {
        index: usize,
        key: String,
        allowed: Vec<String>,
    },
}

fn allowed_list(allowed: &[String]) -> String {
    if allowed.is_empty() {
        "it declares none".into()
    } else {
        format!("allowed: {}", allowed.join(", "))
    }
}

impl From<LabelError> for RequestError {
    fn from(e: LabelError) -> Self {
        match e {
            LabelError::Invalid(m) => RequestError::bad(m),
            LabelError::TooMany { .. } => RequestError::limit(Limit::Labels, e.to_string()),
            LabelError::TooManyKeys { .. } | LabelError::UndeclaredKey { .. } => {
                RequestError::limit(Limit::LabelKeys, e.to_string())
            }
        }
    }
}

/// Parses and checks a labels body with the default bounds and no key column.
pub fn parse(body: &[u8], received_us: i64) -> Result<Vec<LabelRecord>, LabelError> {
    parse_with(body, received_us, &LabelRules::default())
}

/// Parses and checks a labels body against `rules`; the error names the first bad field.
pub fn parse_with(
    body: &[u8],
    received_us: i64,
    rules: &LabelRules<'_>,
) -> Result<Vec<LabelRecord>, LabelError> {
    let json: Json = serde_json::from_slice(body)
        .map_err(|e| invalid(format!("the body is not valid JSON: {e}")))?;
    let Some(list) = json.get("labels").and_then(Json::as_array) else {
        return Err(invalid("the body must be an object with a 'labels' list"));
    };
    if list.is_empty() {
        return Err(invalid("'labels' is empty"));
    }
    if list.len() > rules.max_labels {
        return Err(LabelError::TooMany {
            count: list.len(),
            max: rules.max_labels,
        });
    }
    list.iter()
        .enumerate()
        .map(|(i, entry)| {
            one(entry, received_us, i, rules).map_err(|e| match e {
                LabelError::Invalid(m) => invalid(format!("labels[{i}]{m}")),
                other => other,
            })
        })
        .collect()
}

fn invalid(message: impl Into<String>) -> LabelError {
    LabelError::Invalid(message.into())
}

/// The first `max` characters of a caller's name, for an error message.
fn shown(name: &str) -> String {
    const MAX: usize = 64;
    match name.char_indices().nth(MAX) {
        Some((at, _)) => format!("{}...", &name[..at]),
        None => name.to_owned(),
    }
}

fn one(
    entry: &Json,
    received_us: i64,
    index: usize,
    rules: &LabelRules<'_>,
) -> Result<LabelRecord, LabelError> {
    let Some(obj) = entry.as_object() else {
        return Err(invalid(" must be an object"));
    };
    if let Some(k) = obj.keys().find(|k| {
        !matches!(
            k.as_str(),
            "request_id" | "row_index" | "keys" | "timestamp" | "label"
        )
    }) {
        return Err(invalid(format!(
            ".{} is not a label field (request_id, row_index, keys, timestamp, label)",
            shown(k)
        )));
    }
    let (label, label_text) = match obj.get("label") {
        None | Some(Json::Null) => return Err(invalid(".label is missing")),
        Some(Json::Bool(b)) => (Some(f64::from(u8::from(*b))), b.to_string()),
        Some(Json::Number(n)) => (n.as_f64(), n.to_string()),
        Some(Json::String(s)) => (None, s.clone()),
        Some(_) => return Err(invalid(".label must be a number, a boolean or a string")),
    };
    let request_id = match obj.get("request_id") {
        None | Some(Json::Null) => None,
        Some(Json::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(_) => return Err(invalid(".request_id must be a non-empty string")),
    };
    let row_index = match obj.get("row_index") {
        None | Some(Json::Null) => None,
        Some(v) => match v.as_i64().filter(|i| *i >= 0) {
            Some(i) => Some(i),
            None => return Err(invalid(".row_index must be an integer >= 0")),
        },
    };
    let mut keys = Vec::new();
    match obj.get("keys") {
        None | Some(Json::Null) => {}
        Some(Json::Object(map)) => {
            if map.len() > rules.max_keys {
                return Err(LabelError::TooManyKeys {
                    index,
                    count: map.len(),
                    max: rules.max_keys,
                });
            }
            for (k, v) in map {
                if k.is_empty() {
                    return Err(invalid(".keys has an empty column name"));
                }
                if !rules.key_columns.iter().any(|c| c == k) {
                    return Err(LabelError::UndeclaredKey {
                        index,
                        key: shown(k),
                        allowed: rules.key_columns.to_vec(),
                    });
                }
                if !matches!(v, Json::String(_) | Json::Bool(_) | Json::Number(_)) {
                    return Err(invalid(format!(
                        ".keys.{k} must be a string, number or boolean"
                    )));
                }
                keys.push((k.clone(), json_value(v)));
            }
        }
        Some(_) => return Err(invalid(".keys must be an object of key columns")),
    }
    if request_id.is_none() && keys.is_empty() {
        return Err(invalid(" needs a request_id or keys"));
    }
    let event_time_us = match obj.get("timestamp") {
        None | Some(Json::Null) => None,
        Some(Json::String(s)) => match parse_timestamp(s) {
            Some(ms) => Some(ms.saturating_mul(1000)),
            None => return Err(invalid(format!(".timestamp '{s}' is not an ISO 8601 time"))),
        },
        Some(Json::Number(n)) => match n.as_i64() {
            Some(ms) => Some(ms.saturating_mul(1000)),
            None => {
                return Err(invalid(
                    ".timestamp must be ISO 8601 text or epoch milliseconds",
                ))
            }
        },
        Some(_) => {
            return Err(invalid(
                ".timestamp must be ISO 8601 text or epoch milliseconds",
            ))
        }
    };
    Ok(LabelRecord {
        received_us,
        request_id,
        row_index,
        event_time_us,
        keys,
        label,
        label_text,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::expr::Value;

    fn rules(keys: &[String]) -> LabelRules<'_> {
        LabelRules {
            key_columns: keys,
            ..LabelRules::default()
        }
    }

    fn declared() -> Vec<String> {
        ["customer_id", "n", "c"].map(String::from).to_vec()
    }

    #[test]
    fn labels_by_request_id_and_by_keys() {
        let body = br#"{"labels": [
            {"request_id": "r1", "row_index": 2, "label": 1},
            {"keys": {"customer_id": "C1", "n": 3}, "timestamp": "2026-11-23T10:00:00Z", "label": "fraud"},
            {"request_id": "r2", "label": true}
        ]}"#;
        let keys = declared();
        let l = parse_with(body, 5, &rules(&keys)).unwrap();
        assert_eq!(l.len(), 3);
        assert_eq!((l[0].label, l[0].row_index), (Some(1.0), Some(2)));
        assert_eq!((l[1].label, l[1].label_text.as_str()), (None, "fraud"));
        assert_eq!(l[1].keys[1], ("n".to_string(), Value::Int(3)));
        assert_eq!(l[1].event_time_us, Some(1_795_428_000_000_000));
        assert_eq!((l[2].label, l[2].label_text.as_str()), (Some(1.0), "true"));
    }

    #[test]
    fn bad_labels_name_their_field() {
        let cases = [
            (r#"{"labels": [{"request_id": "r"}]}"#, "labels[0].label is missing"),
            (r#"{"labels": [{"label": 1}]}"#, "labels[0] needs a request_id or keys"),
            (
                r#"{"labels": [{"request_id": "r", "label": 1}, {"request_id": "r", "row_index": -1, "label": 1}]}"#,
                "labels[1].row_index must be an integer >= 0",
            ),
            (
                r#"{"labels": [{"keys": {"c": [1]}, "label": 1}]}"#,
                "labels[0].keys.c must be a string, number or boolean",
            ),
            (
                r#"{"labels": [{"request_id": "r", "label": 1, "timestamp": "yesterday"}]}"#,
                "labels[0].timestamp 'yesterday' is not an ISO 8601 time",
            ),
            (r#"{"labels": [{"request_id": "r", "label": 1, "lable": 0}]}"#, "labels[0].lable is not a label field (request_id, row_index, keys, timestamp, label)"),
            (r#"{"rows": []}"#, "the body must be an object with a 'labels' list"),
        ];
        let keys = declared();
        for (body, want) in cases {
            let e = parse_with(body.as_bytes(), 0, &rules(&keys)).unwrap_err();
            assert_eq!(e, LabelError::Invalid(want.into()), "{body}");
        }
    }

    #[test]
    fn keys_are_only_the_declared_columns_and_few() {
        let keys = vec!["CustomerID".to_string(), "Product".to_string()];
        let undeclared = br#"{"labels": [{"request_id": "r", "label": 1},
            {"keys": {"CustomerID": 1, "Evil": 2}, "label": 0}]}"#;
        let e = parse_with(undeclared, 0, &rules(&keys)).unwrap_err();
        assert_eq!(
            e,
            LabelError::UndeclaredKey {
                index: 1,
                key: "Evil".into(),
                allowed: keys.clone()
            }
        );
        let message = e.to_string();
        assert!(
            message.starts_with("labels[1].keys.Evil is not a key column")
                && message.contains("allowed: CustomerID, Product"),
            "{message}"
        );
        let refused = RequestError::from(e);
        assert_eq!(refused.exceeded(), Some(Limit::LabelKeys));
        assert_eq!(refused.status().as_u16(), 400);

        // No declared key column: labels by request id only.
        let e = parse(
            br#"{"labels": [{"keys": {"CustomerID": 1}, "label": 0}]}"#,
            0,
        );
        assert!(e.unwrap_err().to_string().contains("it declares none"));

        // A long name is cut in the message.
        let long = format!(
            r#"{{"labels": [{{"keys": {{"{}": 1}}, "label": 0}}]}}"#,
            "k".repeat(10_000)
        );
        let message = parse(long.as_bytes(), 0).unwrap_err().to_string();
        assert!(message.len() < 400, "{message}");

        let few = LabelRules {
            max_keys: 1,
            ..rules(&keys)
        };
        let two = br#"{"labels": [{"keys": {"CustomerID": 1, "Product": "A"}, "label": 0}]}"#;
        let e = parse_with(two, 0, &few).unwrap_err();
        assert_eq!(
            e,
            LabelError::TooManyKeys {
                index: 0,
                count: 2,
                max: 1
            }
        );
        assert!(e.to_string().contains("inference_log.max_keys_per_label"));
        assert_eq!(parse_with(two, 0, &rules(&keys)).unwrap()[0].keys.len(), 2);
    }

    #[test]
    fn labels_per_call_are_bounded_by_the_setting() {
        let body =
            br#"{"labels": [{"request_id": "a", "label": 1}, {"request_id": "b", "label": 0}]}"#;
        let one = LabelRules {
            max_labels: 1,
            ..LabelRules::default()
        };
        let e = parse_with(body, 0, &one).unwrap_err();
        assert_eq!(e, LabelError::TooMany { count: 2, max: 1 });
        assert!(e
            .to_string()
            .contains("inference_log.max_labels_per_request"));
        let refused = RequestError::from(e);
        assert_eq!(refused.exceeded(), Some(Limit::Labels));
        assert_eq!(refused.status().as_u16(), 413);
        assert_eq!(parse(body, 0).unwrap().len(), 2);
    }
}
