//! `POST /api/2.0/serving-endpoints/{name}/labels`: ground truth appended to the endpoint's
//! `<prefix>_labels` inference table (see [`crate::inference_log::labels`]) and joined to the
//! predictions waiting for it (quality monitoring, see [`crate::drift::monitor`]).

use std::sync::Arc;

use actix_web::http::header::ContentType;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use super::body::read_limited;
use super::{mlflow_error, AppState};
use crate::error::RequestError;
use crate::inference_log::{labels, EnqueueError};

pub async fn post_labels(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let name = path.into_inner();
    let gateway = &state.gateway;
    let Some(endpoint) = gateway.endpoint(&name) else {
        return mlflow_error(&RequestError::NotFound(format!(
            "endpoint '{name}' does not exist"
        )));
    };
    let capture = gateway.capture(&endpoint.generation());
    if capture.is_none() && gateway.monitoring().is_none() {
        return mlflow_error(&RequestError::bad(format!(
            "endpoint '{name}' neither logs nor monitors: enable its auto_capture_config (inference tables) or monitoring to post labels"
        )));
    }
    let body = match read_limited(&req, payload, state.max_body_bytes).await {
        Ok(b) => b,
        Err(e) => return mlflow_error(&e),
    };
    let received_us = chrono::Utc::now().timestamp_micros();
    // Label keys become columns of the labels table: only the endpoint's declared ones.
    let key_columns = labels::key_columns(&endpoint.generation());
    let (max_labels, max_keys) = gateway.inference_log().label_bounds();
    let parsed = web::block(move || {
        let rules = labels::LabelRules {
            max_labels,
            max_keys,
            key_columns: &key_columns,
        };
        labels::parse_with(&body, received_us, &rules)
    });
    let parsed = match parsed.await {
        Ok(p) => p,
        Err(e) => {
            return mlflow_error(&RequestError::Internal(format!(
                "the labels were not read: {e}"
            )))
        }
    };
    let labels = match parsed {
        Ok(l) => l,
        Err(refused) => {
            let e = RequestError::from(refused);
            gateway.count_refusal(&e);
            return mlflow_error(&e);
        }
    };
    let accepted = labels.len();
    let labels = Arc::new(labels);
    if let Some(capture) = capture {
        // The table's copy first: a full queue refuses the whole call before anything counts.
        let logged = gateway
            .inference_log()
            .log_labels(capture, labels.as_ref().clone());
        match logged {
            Ok(()) => {}
            Err(e @ EnqueueError::Full) => {
                return mlflow_error(&RequestError::Overloaded(e.to_string()))
            }
            Err(e @ EnqueueError::Closed) => {
                return mlflow_error(&RequestError::Unavailable(e.to_string()))
            }
        }
    }
    let (joiner, endpoint) = (gateway.clone(), endpoint.clone());
    let joined = match web::block(move || joiner.join_labels(&endpoint, &labels)).await {
        Ok(j) => j,
        Err(e) => {
            return mlflow_error(&RequestError::Internal(format!(
                "the labels were logged but not joined to their predictions: {e}"
            )))
        }
    };
    let mut body = json!({ "accepted": accepted });
    if let Some(outcomes) = joined {
        body["monitoring"] = json!(outcomes);
    }
    HttpResponse::Ok()
        .content_type(ContentType::json())
        .body(body.to_string())
}
