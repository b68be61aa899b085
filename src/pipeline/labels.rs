//! Posted labels (ground truth): appended to the endpoint's labels table, then joined to the
//! predictions waiting for them. The table's copy comes first, so a full log queue refuses the
//! whole call before any label counts.

use std::sync::Arc;

use serde_json::{json, Value};
use tracing::warn;

use crate::drift::monitor::LabelOutcomes;
use crate::endpoint::Endpoint;
use crate::error::RequestError;
use crate::features::expr::Value as KeyValue;
use crate::inference_log::record::LabelRecord;
use crate::inference_log::{labels, Capture, EnqueueError};

use super::Gateway;

/// Where an endpoint's posted labels go.
pub struct LabelTarget {
    endpoint: Arc<Endpoint>,
    /// The endpoint's inference tables, when it logs.
    capture: Option<Arc<Capture>>,
}

impl Gateway {
    /// The endpoint `name`'s labels target, refused when it neither logs nor monitors (checked
    /// before the body is read).
    pub fn label_target(&self, name: &str) -> Result<LabelTarget, RequestError> {
        let endpoint = self
            .endpoint(name)
            .ok_or_else(|| RequestError::NotFound(format!("endpoint '{name}' does not exist")))?;
        let capture = self.capture(&endpoint.generation());
        if capture.is_none() && self.monitoring().is_none() {
            return Err(RequestError::bad(format!(
                "endpoint '{name}' neither logs nor monitors: enable its auto_capture_config (inference tables) or monitoring to post labels"
            )));
        }
        Ok(LabelTarget { endpoint, capture })
    }

    /// Parses `body` within the label bounds, logs the labels, joins them to waiting
    /// predictions; answers `{"accepted", "monitoring"?}`. Blocking: run off the HTTP workers.
    pub fn post_labels(
        &self,
        target: &LabelTarget,
        body: &[u8],
        received_us: i64,
    ) -> Result<Value, RequestError> {
        // Label keys become columns of the labels table: only the endpoint's declared ones.
        let key_columns = target.endpoint.generation().label_key_columns();
        let (max_labels, max_keys) = self.inference_log().label_bounds();
        let rules = labels::LabelRules {
            max_labels,
            max_keys,
            key_columns: &key_columns,
        };
        let parsed = labels::parse_with(body, received_us, &rules).map_err(|refused| {
            let e = RequestError::from(refused);
            self.count_refusal(&e);
            e
        })?;
        let accepted = parsed.len();
        if let Some(capture) = &target.capture {
            let logged = self
                .inference_log()
                .log_labels(capture.clone(), parsed.clone());
            match logged {
                Ok(()) => {}
                Err(e @ EnqueueError::Full) => return Err(RequestError::Overloaded(e.to_string())),
                Err(e @ EnqueueError::Closed) => {
                    return Err(RequestError::Unavailable(e.to_string()))
                }
            }
        }
        let mut answer = json!({ "accepted": accepted });
        let mut unmatched = Vec::new();
        if let Some(mut outcomes) = self.join_labels(&target.endpoint, &parsed, &mut unmatched) {
            outcomes.forwarded = self.relay(&target.endpoint.name, &parsed, &unmatched);
            outcomes.unmatched -= outcomes.forwarded;
            self.count_labels(&target.endpoint.name, &outcomes);
            answer["monitoring"] = json!(outcomes);
        }
        Ok(answer)
    }

    /// In a fleet, sends the labels at `unmatched` to the other replicas; how many went (none
    /// without a fleet, or when the store does not answer: they stay unmatched, and logged).
    fn relay(&self, endpoint: &str, labels: &[LabelRecord], unmatched: &[usize]) -> u64 {
        let Some(relay) = &self.label_relay else {
            return 0;
        };
        if unmatched.is_empty() {
            return 0;
        }
        let posts: Vec<String> = unmatched
            .chunks(crate::fleet::labels::MAX_LABELS_PER_POST)
            .map(|chunk| {
                let wire: Vec<Value> = chunk.iter().map(|&i| to_wire(&labels[i])).collect();
                Value::Array(wire).to_string()
            })
            .collect();
        match relay.relay(endpoint, &posts) {
            Ok(()) => unmatched.len() as u64,
            Err(e) => {
                warn!(endpoint = %endpoint, "{} labels matched no prediction here and were not relayed to the other replicas: {e}", unmatched.len());
                0
            }
        }
    }

    /// Joins labels another replica relayed (none of its predictions matched them) to the
    /// predictions waiting here; only those that join are counted (the others are another
    /// replica's, or no one's).
    pub fn join_relayed(&self, relayed: &crate::fleet::labels::Relayed) {
        let Some(endpoint) = self.endpoint(&relayed.endpoint) else {
            return;
        };
        let labels: Vec<LabelRecord> = match serde_json::from_str::<Vec<Value>>(&relayed.labels) {
            Ok(wire) if wire.len() > crate::fleet::labels::MAX_LABELS_PER_POST => {
                warn!(endpoint = %relayed.endpoint, labels = wire.len(), "a relayed post holds more labels than a replica sends ({}); ignored", crate::fleet::labels::MAX_LABELS_PER_POST);
                return;
            }
            Ok(wire) => wire.iter().filter_map(from_wire).collect(),
            Err(e) => {
                warn!(endpoint = %relayed.endpoint, "labels relayed by another replica cannot be read: {e}");
                return;
            }
        };
        if let Some(outcomes) = self.join_labels(&endpoint, &labels, &mut Vec::new()) {
            let joined = LabelOutcomes {
                joined: outcomes.joined,
                ..LabelOutcomes::default()
            };
            self.count_labels(&endpoint.name, &joined);
        }
    }
}

/// A label as relayed to the other replicas: what joining needs (not its text: the replica it
/// was posted to logs it).
fn to_wire(label: &LabelRecord) -> Value {
    let keys: serde_json::Map<String, Value> = label
        .keys
        .iter()
        .map(|(k, v)| (k.clone(), value_to_wire(v)))
        .collect();
    json!({
        "received_us": label.received_us,
        "request_id": label.request_id,
        "row_index": label.row_index,
        "event_time_us": label.event_time_us,
        "keys": keys,
        "label": label.label,
    })
}

fn from_wire(v: &Value) -> Option<LabelRecord> {
    let keys = v["keys"]
        .as_object()?
        .iter()
        .map(|(k, v)| Some((k.clone(), value_from_wire(v)?)))
        .collect::<Option<Vec<_>>>()?;
    Some(LabelRecord {
        received_us: v["received_us"].as_i64()?,
        request_id: v["request_id"].as_str().map(str::to_owned),
        row_index: v["row_index"].as_i64(),
        event_time_us: v["event_time_us"].as_i64(),
        keys,
        label: v["label"].as_f64(),
        label_text: String::new(),
    })
}

fn value_to_wire(v: &KeyValue) -> Value {
    match v {
        KeyValue::Null => Value::Null,
        KeyValue::Int(i) => json!(i),
        KeyValue::Float(f) => json!(f),
        KeyValue::Bool(b) => json!(b),
        KeyValue::String(s) => json!(s),
        KeyValue::Timestamp(ms) => json!({ "timestamp_ms": ms }),
    }
}

fn value_from_wire(v: &Value) -> Option<KeyValue> {
    Some(match v {
        Value::Null => KeyValue::Null,
        Value::Bool(b) => KeyValue::Bool(*b),
        Value::String(s) => KeyValue::String(s.clone()),
        Value::Number(n) => match n.as_i64() {
            Some(i) => KeyValue::Int(i),
            None => KeyValue::Float(n.as_f64()?),
        },
        Value::Object(o) => KeyValue::Timestamp(o.get("timestamp_ms")?.as_i64()?),
        Value::Array(_) => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_relayed_label_reads_back_as_it_was_posted_less_its_text() {
        let label = LabelRecord {
            received_us: 7,
            request_id: Some("r".into()),
            row_index: Some(3),
            event_time_us: Some(1_000),
            keys: vec![
                ("id".into(), KeyValue::Int(4)),
                ("amount".into(), KeyValue::Float(2.0)),
                ("name".into(), KeyValue::String("x".into())),
                ("ok".into(), KeyValue::Bool(true)),
                ("at".into(), KeyValue::Timestamp(9)),
                ("none".into(), KeyValue::Null),
            ],
            label: Some(1.0),
            label_text: "1".into(),
        };
        let back = from_wire(&serde_json::from_str(&to_wire(&label).to_string()).unwrap());
        let mut expected = label.clone();
        expected.label_text.clear();
        let sorted = |mut l: LabelRecord| {
            l.keys.sort_by(|a, b| a.0.cmp(&b.0));
            l
        };
        assert_eq!(back.map(sorted), Some(sorted(expected)));
        assert_eq!(from_wire(&json!({"keys": []})), None);
    }
}
