//! KServe's V1 prediction protocol: `POST /v1/models/{model}:predict` with `instances` (rows
//! as records or lists) or `inputs`, answered `{"predictions": [...]}`; `GET /v1/models/{model}`
//! and `GET /v1/models`. The model is the endpoint; the body is read as MLflow's scoring JSON
//! reads the same fields, and the request runs the same pipeline (routing, features, logging,
//! monitoring, limits). Errors are `{"error": "..."}`.

use actix_web::http::header::ContentType;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use super::error::ApiError;
use super::handlers::{answer, http_invocation, read_call_body, Arrival};
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
    predict_call(req, path.into_inner().model, payload, state).await
}

/// A prediction on `endpoint`, from the router or the scoring path.
pub async fn predict_call(
    req: HttpRequest,
    endpoint: String,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let arrival = Arrival::of(&req);
    let ((), body) = read_call_body(
        &req,
        payload,
        &state,
        json_only(&req),
        &endpoint,
        Protocol::KserveV1,
        &arrival,
    )
    .await?;
    let invocation = http_invocation(&req, endpoint, Format::KserveV1, body, &arrival);
    let result = state.gateway.invoke(invocation).await;
    answer(&req, result, Protocol::KserveV1, &arrival.request_id)
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
