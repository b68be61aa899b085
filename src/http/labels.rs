//! `POST /api/2.0/serving-endpoints/{name}/labels`: ground truth appended to the endpoint's
//! `<prefix>_labels` inference table (see [`crate::inference_log::labels`]) and joined to the
//! predictions waiting for it (see [`crate::pipeline::labels`]).

use actix_web::http::header::ContentType;
use actix_web::{web, HttpRequest, HttpResponse};

use super::body::read_limited;
use super::error::ApiError;
use super::AppState;

pub async fn post_labels(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let target = state.gateway.label_target(&path)?;
    let body = read_limited(&req, payload, state.max_body_bytes).await?;
    let received_us = crate::clock::epoch_us_at(std::time::Instant::now());
    let gateway = state.gateway.clone();
    let answer = web::block(move || gateway.post_labels(&target, &body, received_us))
        .await
        .map_err(|e| ApiError::blocked("the labels were not taken", e))??;
    Ok(HttpResponse::Ok()
        .content_type(ContentType::json())
        .body(answer.to_string()))
}
