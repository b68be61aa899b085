//! `POST /api/2.0/serving-endpoints/{name}/labels`: ground truth appended to the endpoint's
//! `<prefix>_labels` inference table (see [`crate::inference_log::labels`]).

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
    let Some(capture) = gateway.capture(&endpoint.generation()) else {
        return mlflow_error(&RequestError::bad(format!(
            "endpoint '{name}' has no inference tables: enable its auto_capture_config to log predictions and labels"
        )));
    };
    let body = match read_limited(&req, payload, state.max_body_bytes).await {
        Ok(b) => b,
        Err(e) => return mlflow_error(&e),
    };
    let received_us = chrono::Utc::now().timestamp_micros();
    let parsed = match web::block(move || labels::parse(&body, received_us)).await {
        Ok(p) => p,
        Err(e) => {
            return mlflow_error(&RequestError::Internal(format!(
                "the labels were not read: {e}"
            )))
        }
    };
    let labels = match parsed {
        Ok(l) => l,
        Err(message) => return mlflow_error(&RequestError::bad(message)),
    };
    let accepted = labels.len();
    match gateway.inference_log().log_labels(capture, labels) {
        Ok(()) => HttpResponse::Ok()
            .content_type(ContentType::json())
            .body(json!({ "accepted": accepted }).to_string()),
        Err(e @ EnqueueError::Full) => mlflow_error(&RequestError::Overloaded(e.to_string())),
        Err(e @ EnqueueError::Closed) => mlflow_error(&RequestError::Unavailable(e.to_string())),
    }
}
