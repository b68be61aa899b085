//! Control plane: endpoint state (Databricks-shaped), reload and rollback. Updates run on the
//! blocking pool: they read files and load models.

use std::time::UNIX_EPOCH;

use actix_web::http::header::ContentType;
use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{mlflow_error, AppState};
use crate::endpoint::updater::SwapOutcome;
use crate::endpoint::Endpoint;
use crate::error::RequestError;

fn endpoint_json(ep: &Endpoint) -> Value {
    let served = ep.served();
    let state = ep.state();
    let cfg = &ep.settings.served_entities[0];
    let entities: Vec<Value> = served
        .iter()
        .map(|e| {
            json!({
                "name": e.name,
                "entity_name": e.model,
                "entity_version": e.version,
                "alias": e.alias,
                "engine": e.engine,
                "loaded_at": e.loaded_at.duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0),
            })
        })
        .collect();
    json!({
        "name": ep.name,
        "state": {
            "ready": if served.is_some() { "READY" } else { "NOT_READY" },
            "config_update": state.config_update,
        },
        "config": {
            "served_entities": entities,
            "requested": { "entity_name": cfg.entity_name, "entity_version": cfg.entity_version },
        },
        "last_swap": state.last_swap,
        "previous_version": state.previous_version,
        "pinned_version": state.pinned.map(|p| p.version),
    })
}

fn find<'a>(state: &'a AppState, name: &str) -> Result<&'a std::sync::Arc<Endpoint>, RequestError> {
    state
        .gateway
        .endpoint(name)
        .ok_or_else(|| RequestError::NotFound(format!("endpoint '{name}' does not exist")))
}

pub async fn get_endpoint(path: web::Path<String>, state: web::Data<AppState>) -> HttpResponse {
    match find(&state, &path) {
        Ok(ep) => HttpResponse::Ok()
            .content_type(ContentType::json())
            .body(endpoint_json(ep).to_string()),
        Err(e) => mlflow_error(&e),
    }
}

#[derive(Deserialize, Default)]
pub struct ReloadQuery {
    /// Reload even when the resolved version is the one served.
    #[serde(default)]
    force: bool,
}

pub async fn reload(
    path: web::Path<String>,
    query: web::Query<ReloadQuery>,
    state: web::Data<AppState>,
) -> HttpResponse {
    let force = query.force;
    update(&path, state, move |updater, ep| {
        updater.refresh(ep, crate::endpoint::updater::Trigger::Admin, force)
    })
    .await
}

pub async fn rollback(path: web::Path<String>, state: web::Data<AppState>) -> HttpResponse {
    update(&path, state, |updater, ep| updater.rollback(ep)).await
}

/// Runs an update off the HTTP workers and answers with the endpoint's state: 200 when it is
/// served as asked, 409 with the reason when the update failed (the old version still serves).
async fn update(
    name: &str,
    state: web::Data<AppState>,
    f: impl FnOnce(&crate::endpoint::updater::Updater, &Endpoint) -> SwapOutcome + Send + 'static,
) -> HttpResponse {
    let ep = match find(&state, name) {
        Ok(ep) => ep.clone(),
        Err(e) => return mlflow_error(&e),
    };
    let updater = state.updater.clone();
    let worker_ep = ep.clone();
    let outcome = match web::block(move || f(&updater, &worker_ep)).await {
        Ok(o) => o,
        Err(e) => {
            return mlflow_error(&RequestError::Internal(format!(
                "the update did not run: {e}"
            )))
        }
    };
    let mut body = endpoint_json(&ep);
    let status = match &outcome {
        SwapOutcome::Failed(message) => {
            body["error_code"] = json!("INVALID_STATE");
            body["message"] = json!(message);
            actix_web::http::StatusCode::CONFLICT
        }
        SwapOutcome::RegistryUnavailable(message) => {
            body["error_code"] = json!("TEMPORARILY_UNAVAILABLE");
            body["message"] = json!(format!("the model registry is unreachable: {message}"));
            actix_web::http::StatusCode::SERVICE_UNAVAILABLE
        }
        _ => actix_web::http::StatusCode::OK,
    };
    body["outcome"] = json!(match outcome {
        SwapOutcome::Unchanged { .. } => "unchanged",
        SwapOutcome::Swapped { .. } => "swapped",
        SwapOutcome::Failed(_) => "failed",
        SwapOutcome::RegistryUnavailable(_) => "registry_unavailable",
    });
    HttpResponse::build(status)
        .content_type(ContentType::json())
        .body(body.to_string())
}
