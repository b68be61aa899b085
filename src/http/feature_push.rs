//! `POST /api/2.0/feature-tables/{table}/rows`: a streaming job upserts and deletes rows of an
//! embedded online table. `{"upsert": [{...row...}], "delete": [{...key...}]}`.

use actix_web::http::header::ContentType;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use super::body::read_limited;
use super::error::ApiError;
use super::AppState;
use crate::error::RequestError;
use crate::features::embedded::{Push, PushError};

pub async fn push_rows(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let Some(store) = state.store.clone() else {
        return Err(RequestError::NotFound(
            "the push API writes to the embedded online store, and this gateway has none (features.store: embedded with features.tables)".into(),
        )
        .into());
    };
    let body = read_limited(&req, payload, state.max_body_bytes).await?;
    let table = path.into_inner();
    // Rows are parsed and applied off the HTTP workers: a push may be large.
    let pushed = web::block(move || {
        let push: Push = serde_json::from_slice(&body).map_err(|e| {
            RequestError::bad(format!(
                "the body is not a push of rows ({{\"upsert\": [...], \"delete\": [...]}}): {e}"
            ))
        })?;
        store.push(&table, &push).map_err(|e| match e {
            PushError::UnknownTable(_) => RequestError::NotFound(e.to_string()),
            other => RequestError::bad(other.to_string()),
        })
    })
    .await;
    let (upserted, deleted) =
        pushed.map_err(|e| ApiError::blocked("the push did not run", e))??;
    Ok(HttpResponse::Ok()
        .content_type(ContentType::json())
        .body(json!({"upserted": upserted, "deleted": deleted}).to_string()))
}
