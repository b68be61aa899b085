//! Open Inference Protocol V2 REST handlers. The V2 model name is the endpoint name.

use actix_web::http::header::ContentType;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use super::error::ApiError;
use super::handlers::{answer, http_invocation, read_call_body, Arrival};
use super::AppState;
use crate::error::{Protocol, RequestError};
use crate::pipeline::Format;
use crate::protocol::v2_binary;

#[derive(serde::Deserialize)]
pub struct ModelPath {
    model: String,
    version: Option<String>,
}

pub async fn server_metadata() -> HttpResponse {
    HttpResponse::Ok().content_type(ContentType::json()).body(
        json!({ "name": "modelgate", "version": env!("CARGO_PKG_VERSION"), "extensions": ["binary_tensor_data"] })
            .to_string(),
    )
}

pub async fn live() -> HttpResponse {
    HttpResponse::Ok()
        .content_type(ContentType::json())
        .body(r#"{"live":true}"#)
}

pub async fn ready(state: web::Data<AppState>) -> HttpResponse {
    let ready = state.gateway.is_ready();
    let mut resp = if ready {
        HttpResponse::Ok()
    } else {
        HttpResponse::ServiceUnavailable()
    };
    resp.content_type(ContentType::json())
        .body(json!({ "ready": ready }).to_string())
}

pub async fn model_metadata(
    path: web::Path<ModelPath>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let metadata = state
        .gateway
        .v2_model_metadata(&path.model, path.version.as_deref())
        .map_err(ApiError::v2)?;
    Ok(HttpResponse::Ok()
        .content_type(ContentType::json())
        .body(metadata.to_string()))
}

pub async fn model_ready(
    path: web::Path<ModelPath>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let ready = match state
        .gateway
        .v2_target(&path.model, path.version.as_deref())
    {
        Ok(_) => true,
        // Known but with nothing loaded: not ready, answered as such (not an error).
        Err(RequestError::Unavailable(_)) => false,
        Err(e) => return Err(ApiError::v2(e)),
    };
    let mut resp = if ready {
        HttpResponse::Ok()
    } else {
        HttpResponse::ServiceUnavailable()
    };
    Ok(resp
        .content_type(ContentType::json())
        .body(json!({ "name": path.model, "ready": ready }).to_string()))
}

pub async fn infer(
    req: HttpRequest,
    path: web::Path<ModelPath>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let ModelPath { model, version } = path.into_inner();
    infer_call(req, model, version, payload, state).await
}

/// V2 inference on `model` (and `version`), from the router or the scoring path.
pub async fn infer_call(
    req: HttpRequest,
    model: String,
    version: Option<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let arrival = Arrival::of(&req);
    let checked = check_request(&req);
    let (header_len, body) = read_call_body(
        &req,
        payload,
        &state,
        checked,
        &model,
        Protocol::V2,
        &arrival,
    )
    .await?;
    let format = Format::V2 {
        version,
        header_len,
        grpc: false,
    };
    let inv = http_invocation(&req, model, format, body, &arrival);
    let result = state.gateway.invoke(inv).await;
    answer(&req, result, Protocol::V2, &arrival.request_id)
}

/// A JSON body, or one of the binary tensor data extension (tritonclient's default): its
/// JSON header's length, from `Inference-Header-Content-Length`.
fn check_request(req: &HttpRequest) -> Result<Option<usize>, RequestError> {
    let header_len = match req.headers().get(v2_binary::HEADER_LENGTH) {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<usize>().ok())
                .ok_or_else(|| {
                    RequestError::bad(
                        "Inference-Header-Content-Length is not a byte count (the length of the body's JSON part)",
                    )
                })?,
        ),
    };
    match req.headers().get(actix_web::http::header::CONTENT_TYPE) {
        None => Ok(header_len),
        Some(ct) => {
            let ct = ct.to_str().unwrap_or("").to_ascii_lowercase();
            let binary = header_len.is_some() && ct.starts_with("application/octet-stream");
            if ct.starts_with("application/json") || binary {
                Ok(header_len)
            } else {
                Err(RequestError::UnsupportedMediaType(format!(
                    "content type '{ct}' is not supported: V2 REST takes application/json (or application/octet-stream with Inference-Header-Content-Length)"
                )))
            }
        }
    }
}
