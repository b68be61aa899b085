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
use crate::features::embedded::json_value;
use crate::features::expr::parse_timestamp;

/// Most labels one call may carry.
pub const MAX_LABELS: usize = 10_000;

/// Parses and checks a labels body; the error names the first bad field.
pub fn parse(body: &[u8], received_us: i64) -> Result<Vec<LabelRecord>, String> {
    let json: Json =
        serde_json::from_slice(body).map_err(|e| format!("the body is not valid JSON: {e}"))?;
    let Some(list) = json.get("labels").and_then(Json::as_array) else {
        return Err("the body must be an object with a 'labels' list".into());
    };
    if list.is_empty() {
        return Err("'labels' is empty".into());
    }
    if list.len() > MAX_LABELS {
        return Err(format!(
            "'labels' has {} entries; send at most {MAX_LABELS} per call",
            list.len()
        ));
    }
    list.iter()
        .enumerate()
        .map(|(i, entry)| one(entry, received_us).map_err(|m| format!("labels[{i}]{m}")))
        .collect()
}

fn one(entry: &Json, received_us: i64) -> Result<LabelRecord, String> {
    let Some(obj) = entry.as_object() else {
        return Err(" must be an object".into());
    };
    if let Some(k) = obj.keys().find(|k| {
        !matches!(
            k.as_str(),
            "request_id" | "row_index" | "keys" | "timestamp" | "label"
        )
    }) {
        return Err(format!(
            ".{k} is not a label field (request_id, row_index, keys, timestamp, label)"
        ));
    }
    let (label, label_text) = match obj.get("label") {
        None | Some(Json::Null) => return Err(".label is missing".into()),
        Some(Json::Bool(b)) => (Some(f64::from(u8::from(*b))), b.to_string()),
        Some(Json::Number(n)) => (n.as_f64(), n.to_string()),
        Some(Json::String(s)) => (None, s.clone()),
        Some(_) => return Err(".label must be a number, a boolean or a string".into()),
    };
    let request_id = match obj.get("request_id") {
        None | Some(Json::Null) => None,
        Some(Json::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(_) => return Err(".request_id must be a non-empty string".into()),
    };
    let row_index = match obj.get("row_index") {
        None | Some(Json::Null) => None,
        Some(v) => match v.as_i64().filter(|i| *i >= 0) {
            Some(i) => Some(i),
            None => return Err(".row_index must be an integer >= 0".into()),
        },
    };
    let mut keys = Vec::new();
    match obj.get("keys") {
        None | Some(Json::Null) => {}
        Some(Json::Object(map)) => {
            for (k, v) in map {
                if !matches!(v, Json::String(_) | Json::Bool(_) | Json::Number(_)) {
                    return Err(format!(".keys.{k} must be a string, number or boolean"));
                }
                let value = json_value(v);
                if k.is_empty() {
                    return Err(".keys has an empty column name".into());
                }
                keys.push((k.clone(), value));
            }
        }
        Some(_) => return Err(".keys must be an object of key columns".into()),
    }
    if request_id.is_none() && keys.is_empty() {
        return Err(" needs a request_id or keys".into());
    }
    let event_time_us = match obj.get("timestamp") {
        None | Some(Json::Null) => None,
        Some(Json::String(s)) => match parse_timestamp(s) {
            Some(ms) => Some(ms.saturating_mul(1000)),
            None => return Err(format!(".timestamp '{s}' is not an ISO 8601 time")),
        },
        Some(Json::Number(n)) => match n.as_i64() {
            Some(ms) => Some(ms.saturating_mul(1000)),
            None => return Err(".timestamp must be ISO 8601 text or epoch milliseconds".into()),
        },
        Some(_) => return Err(".timestamp must be ISO 8601 text or epoch milliseconds".into()),
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

    #[test]
    fn labels_by_request_id_and_by_keys() {
        let body = br#"{"labels": [
            {"request_id": "r1", "row_index": 2, "label": 1},
            {"keys": {"customer_id": "C1", "n": 3}, "timestamp": "2026-11-23T10:00:00Z", "label": "fraud"},
            {"request_id": "r2", "label": true}
        ]}"#;
        let l = parse(body, 5).unwrap();
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
        for (body, want) in cases {
            assert_eq!(parse(body.as_bytes(), 0).unwrap_err(), want, "{body}");
        }
    }
}
