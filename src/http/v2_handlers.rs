//! Open Inference Protocol V2 REST handlers. The V2 model name is the endpoint name.

use std::sync::Arc;
use std::time::Instant;

use actix_web::http::header::ContentType;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use super::body::read_limited;
use super::handlers::{
    with_request_id, REQUEST_ID_HEADER, SERVED_MODEL_HEADER, SERVED_VERSION_HEADER,
};
use super::{v2_error, AppState};
use crate::endpoint::{Generation, ServedEntity};
use crate::error::RequestError;
use crate::gateway::{Format, Invocation};
use crate::inference_log::RequestId;

#[derive(serde::Deserialize)]
pub struct ModelPath {
    model: String,
    version: Option<String>,
}

pub async fn server_metadata() -> HttpResponse {
    HttpResponse::Ok().content_type(ContentType::json()).body(
        json!({ "name": "modelgate", "version": env!("CARGO_PKG_VERSION"), "extensions": [] })
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

/// The served entity of a model path: the version (a served entity's name or the model
/// version it serves) when the path names one, else the endpoint's largest route. V2 speaks of
/// models; the model name is the endpoint name.
fn lookup(
    state: &AppState,
    path: &ModelPath,
) -> Result<(Arc<Generation>, Arc<ServedEntity>), RequestError> {
    state
        .gateway
        .v2_target(&path.model, path.version.as_deref())
}

pub async fn model_metadata(
    path: web::Path<ModelPath>,
    state: web::Data<AppState>,
) -> HttpResponse {
    let (generation, entity) = match lookup(&state, &path) {
        Ok(e) => e,
        Err(e) => return v2_error(&e),
    };
    // Every version the model name answers with: the served versions of its routed entities.
    let mut versions: Vec<String> = Vec::new();
    for &arm in &generation.router.split_arms {
        if let Some(e) = generation.slots[arm].served() {
            if !versions.contains(&e.version) {
                versions.push(e.version.clone());
            }
        }
    }
    if path.version.is_some() {
        versions = vec![entity.version.clone()];
    }
    let tensors = |specs: &[crate::engine::TensorSpec]| -> Vec<serde_json::Value> {
        specs
            .iter()
            .map(|s| json!({ "name": s.name, "datatype": s.elem.v2_name(), "shape": s.v2_shape() }))
            .collect()
    };
    let body = json!({
        "name": path.model,
        "versions": versions,
        // The platform name the V2 specification lists for ONNX models.
        "platform": "onnx_onnxv1",
        "inputs": tensors(entity.loaded.inputs()),
        "outputs": tensors(entity.loaded.outputs()),
    });
    HttpResponse::Ok()
        .content_type(ContentType::json())
        .body(body.to_string())
}

pub async fn model_ready(path: web::Path<ModelPath>, state: web::Data<AppState>) -> HttpResponse {
    match lookup(&state, &path) {
        Ok(_) => HttpResponse::Ok()
            .content_type(ContentType::json())
            .body(json!({ "name": path.model, "ready": true }).to_string()),
        Err(RequestError::Unavailable(_)) => HttpResponse::ServiceUnavailable()
            .content_type(ContentType::json())
            .body(json!({ "name": path.model, "ready": false }).to_string()),
        Err(e) => v2_error(&e),
    }
}

pub async fn infer(
    req: HttpRequest,
    path: web::Path<ModelPath>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let received = Instant::now();
    let request_id = RequestId::new();
    let body = match check_request(&req) {
        Ok(()) => read_limited(&req, payload, state.max_body_bytes).await,
        Err(e) => Err(e),
    };
    let body = match body {
        Ok(b) => b,
        Err(e) => {
            state
                .gateway
                .record_rejected(&path.model, "v2", &e, received, &request_id);
            return with_request_id(v2_error(&e), &request_id);
        }
    };
    let ModelPath { model, version } = path.into_inner();
    let inv = Invocation {
        endpoint: model,
        format: Format::V2 { version },
        body,
        received,
        headers: Some(req.headers()),
        pin: None,
        request_id: request_id.clone(),
        requester: super::requester(&req),
    };
    match state.gateway.invoke(inv).await {
        Ok(answer) => HttpResponse::Ok()
            .insert_header((SERVED_MODEL_HEADER, &*answer.served.names()))
            .insert_header((SERVED_VERSION_HEADER, &*answer.served.versions()))
            .insert_header((REQUEST_ID_HEADER, &*request_id.text))
            .content_type(ContentType::json())
            .body(super::body::held_answer(&req, answer.body)),
        Err(f) => with_request_id(v2_error(&f.error), &request_id),
    }
}

/// JSON bodies only; the binary tensor extension (tritonclient's default `binary_data=True`)
/// is not supported and gets a message saying so rather than a JSON parse error.
fn check_request(req: &HttpRequest) -> Result<(), RequestError> {
    if req
        .headers()
        .contains_key("inference-header-content-length")
    {
        return Err(RequestError::bad(
            "the binary tensor data extension is not supported: send tensors as JSON (tritonclient: binary_data=False)",
        ));
    }
    match req.headers().get(actix_web::http::header::CONTENT_TYPE) {
        None => Ok(()),
        Some(ct) => {
            let ct = ct.to_str().unwrap_or("").to_ascii_lowercase();
            if ct.starts_with("application/json") {
                Ok(())
            } else {
                Err(RequestError::UnsupportedMediaType(format!(
                    "content type '{ct}' is not supported: V2 REST takes application/json"
                )))
            }
        }
    }
}
