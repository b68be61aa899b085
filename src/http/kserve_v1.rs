//! KServe's V1 prediction protocol: `POST /v1/models/{model}:predict` with `instances` (rows
//! as records or lists) or `inputs`, answered `{"predictions": [...]}`; `GET /v1/models/{model}`
//! and `GET /v1/models`. The model is the endpoint; the body is read as MLflow's scoring JSON
//! reads the same fields, and the request runs the same pipeline (routing, features, logging,
//! monitoring, limits). Errors are `{"error": "..."}`.

use std::time::Instant;

use actix_web::http::header::ContentType;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use super::body::read_limited;
use super::error::ApiError;
use super::handlers::{answer, http_invocation, request_id_of};
use super::AppState;
use crate::error::{Protocol, RequestError};
use crate::pipeline::Format;

#[derive(serde::Deserialize)]
pub struct ModelPath {
    model: String,
}

pub async fn predict(
    req: HttpRequest,
    path: web::Path<ModelPath>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let received = Instant::now();
    let request_id = request_id_of(&req);
    let endpoint = path.into_inner().model;
    let body = match json_only(&req) {
        Ok(()) => read_limited(&req, payload, state.max_body_bytes).await,
        Err(e) => Err(e),
    };
    let body = body.map_err(|e| {
        let gateway = &state.gateway;
        gateway.record_rejected(&endpoint, Protocol::KserveV1, &e, received, &request_id);
        ApiError::new(e, Protocol::KserveV1).with_request_id(&request_id.text)
    })?;
    let invocation = http_invocation(
        &req,
        endpoint,
        Format::KserveV1,
        body,
        received,
        &request_id,
    );
    let result = state.gateway.invoke(invocation).await;
    answer(&req, result, Protocol::KserveV1, &request_id)
}

fn json_only(req: &HttpRequest) -> Result<(), RequestError> {
    match req.headers().get(actix_web::http::header::CONTENT_TYPE) {
        None => Ok(()),
        Some(ct)
            if ct
                .to_str()
                .unwrap_or("")
                .to_ascii_lowercase()
                .starts_with("application/json") =>
        {
            Ok(())
        }
        Some(ct) => Err(RequestError::UnsupportedMediaType(format!(
            "content type '{}' is not supported: KServe V1 takes application/json",
            ct.to_str().unwrap_or("?")
        ))),
    }
}

/// `GET /v1/models/{model}`: `{"name", "ready"}`; 404 for an endpoint that does not exist.
pub async fn model(
    path: web::Path<ModelPath>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let ep = state.gateway.endpoint(&path.model).ok_or_else(|| {
        ApiError::new(
            RequestError::NotFound(format!("model '{}' does not exist", path.model)),
            Protocol::KserveV1,
        )
    })?;
    Ok(HttpResponse::Ok()
        .content_type(ContentType::json())
        .body(json!({"name": ep.name, "ready": ep.is_ready()}).to_string()))
}

/// `GET /v1/models`: `{"models": [names]}`.
pub async fn models(state: web::Data<AppState>) -> HttpResponse {
    let names: Vec<String> = state
        .gateway
        .endpoints()
        .iter()
        .map(|e| e.name.clone())
        .collect();
    HttpResponse::Ok()
        .content_type(ContentType::json())
        .body(json!({ "models": names }).to_string())
}
