//! Posted labels (ground truth): appended to the endpoint's labels table, then joined to the
//! predictions waiting for them. The table's copy comes first, so a full log queue refuses the
//! whole call before any label counts.

use std::sync::Arc;

use serde_json::{json, Value};

use crate::endpoint::Endpoint;
use crate::error::RequestError;
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
        if let Some(outcomes) = self.join_labels(&target.endpoint, &parsed) {
            answer["monitoring"] = json!(outcomes);
        }
        Ok(answer)
    }
}
