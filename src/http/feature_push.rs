//! `POST /api/2.0/feature-tables/{table}/rows`: a streaming job upserts and deletes rows of an
//! embedded online table. `{"upsert": [{...row...}], "delete": [{...key...}]}`.

use actix_web::http::header::ContentType;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use super::body::read_limited;
use super::{mlflow_error, AppState};
use crate::error::RequestError;
use crate::features::embedded::{Push, PushError};

pub async fn push_rows(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let Some(store) = state.store.clone() else {
        return mlflow_error(&RequestError::NotFound(
            "the push API writes to the embedded online store, and this gateway has none (features.store: embedded with features.tables)".into(),
        ));
    };
    let body = match read_limited(&req, payload, state.max_body_bytes).await {
        Ok(b) => b,
        Err(e) => return mlflow_error(&e),
    };
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
    match pushed {
        Ok(Ok((upserted, deleted))) => HttpResponse::Ok()
            .content_type(ContentType::json())
            .body(json!({"upserted": upserted, "deleted": deleted}).to_string()),
        Ok(Err(e)) => mlflow_error(&e),
        Err(e) => mlflow_error(&RequestError::Internal(format!(
            "the push did not run: {e}"
        ))),
    }
}
