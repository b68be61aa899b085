//! The control plane over HTTP, in the shape of Databricks' serving-endpoints API: create, list,
//! get, update config, delete, plus reload and rollback. Work that reads the registry or loads
//! models runs on the blocking pool.

use actix_web::http::header::ContentType;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};

use super::body::read_limited;
use super::AppState;
use crate::clock::epoch_ms;
use crate::endpoint::config::{
    EndpointConfig, EndpointSettings, Route, ServedEntitySettings, TrafficConfig,
};
use crate::endpoint::control::ControlError;
use crate::endpoint::updater::{SwapOutcome, Trigger};
use crate::endpoint::{ConfigUpdate, Endpoint, EntitySlot, Generation};

fn reply(status: StatusCode, body: Value) -> HttpResponse {
    HttpResponse::build(status)
        .content_type(ContentType::json())
        .body(body.to_string())
}

fn error(status: StatusCode, code: &str, message: impl Into<String>) -> HttpResponse {
    reply(
        status,
        json!({ "error_code": code, "message": message.into() }),
    )
}

fn control_error(e: &ControlError) -> HttpResponse {
    let message = e.to_string();
    match e {
        ControlError::Invalid(violations) => reply(
            StatusCode::BAD_REQUEST,
            json!({
                "error_code": "INVALID_PARAMETER_VALUE",
                "message": message,
                // google.rpc.BadRequest, as Databricks details its errors.
                "details": [{
                    "@type": "type.googleapis.com/google.rpc.BadRequest",
                    "field_violations": violations.iter().map(|v| json!({"field": v.key, "description": v.message})).collect::<Vec<_>>(),
                }],
            }),
        ),
        ControlError::NotFound(_) => {
            error(StatusCode::NOT_FOUND, "RESOURCE_DOES_NOT_EXIST", message)
        }
        ControlError::AlreadyExists(_) => {
            error(StatusCode::CONFLICT, "RESOURCE_ALREADY_EXISTS", message)
        }
        ControlError::Busy(_) => error(StatusCode::CONFLICT, "RESOURCE_CONFLICT", message),
        ControlError::RegistryUnavailable(_) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "TEMPORARILY_UNAVAILABLE",
            message,
        ),
        ControlError::Persist(_) => {
            error(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL_ERROR", message)
        }
    }
}

fn not_found(name: &str) -> HttpResponse {
    control_error(&ControlError::NotFound(name.to_owned()))
}

/// A JSON body as `T`, or a 400 naming the field that does not fit.
fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Box<HttpResponse>> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let message = if path == "." || path.is_empty() {
            format!("the request body is not a valid endpoint config: {inner}")
        } else {
            format!("the request body is not a valid endpoint config at '{path}': {inner}")
        };
        Box::new(error(
            StatusCode::BAD_REQUEST,
            "INVALID_PARAMETER_VALUE",
            message,
        ))
    })
}

/// A served entity as this config has it (a slot kept from an earlier config may carry older
/// settings of the same model), with its deployment state and what it serves now.
fn entity_json(settings: &ServedEntitySettings, slot: &EntitySlot) -> Value {
    let mut v = serde_json::to_value(settings).unwrap_or_default();
    v["name"] = json!(slot.name);
    let state = slot.state();
    let served = slot.served();
    let (deployment, message) = match (&served, state.config_update, &state.last_swap) {
        (Some(e), ConfigUpdate::UpdateFailed, Some(r)) => (
            "DEPLOYMENT_READY",
            format!(
                "serving version {}; the update to version {} failed: {}",
                e.version,
                r.to_version.as_deref().unwrap_or("?"),
                r.message.as_deref().unwrap_or("")
            ),
        ),
        (Some(e), _, _) => (
            "DEPLOYMENT_READY",
            format!("serving version {} on {}", e.version, e.engine),
        ),
        (None, ConfigUpdate::UpdateFailed, r) => (
            "DEPLOYMENT_FAILED",
            r.as_ref()
                .and_then(|r| r.message.clone())
                .unwrap_or_default(),
        ),
        (None, _, _) => ("DEPLOYMENT_CREATING", "loading".to_owned()),
    };
    v["state"] = json!({ "deployment": deployment, "deployment_state_message": message });
    v["served_version"] = json!(served.as_ref().map(|e| e.version.clone()));
    v["served_engine"] = json!(served.as_ref().map(|e| e.engine));
    v["loaded_at"] = json!(served
        .as_ref()
        .map(|e| epoch_ms(e.loaded_at) as f64 / 1000.0));
    v["last_swap"] = json!(state.last_swap);
    v["previous_version"] = json!(state.previous_version);
    v["pinned_version"] = json!(state.pinned.map(|p| p.version));
    v
}

/// The routes as Databricks shows them: always explicit, even when the config had none.
fn traffic_json(settings: &EndpointSettings) -> Value {
    let tc = settings
        .traffic_config
        .clone()
        .unwrap_or_else(|| TrafficConfig {
            routes: settings
                .served_entities
                .first()
                .map(|s| Route {
                    served_entity_name: s.served_name(),
                    traffic_percentage: 100,
                    shadow: false,
                    shadow_percentage: None,
                })
                .into_iter()
                .collect(),
        });
    serde_json::to_value(tc).unwrap_or_default()
}

fn config_json(g: &Generation) -> Value {
    let mut v = json!({
        "served_entities": g
            .slots
            .iter()
            .zip(&g.settings.served_entities)
            .map(|(slot, settings)| entity_json(settings, slot))
            .collect::<Vec<_>>(),
        "traffic_config": traffic_json(&g.settings),
        "routing": g.settings.routing,
        "config_version": g.config_version,
    });
    add_capture(&mut v, &g.settings);
    v
}

/// The endpoint's `auto_capture_config` as Databricks shows it, when it has one.
fn add_capture(v: &mut Value, settings: &EndpointSettings) {
    if let Some(capture) = &settings.auto_capture_config {
        v["auto_capture_config"] = json!(capture);
    }
}

/// `ServingEndpointDetailed`.
pub fn endpoint_json(ep: &Endpoint) -> Value {
    let g = ep.generation();
    let control = ep.control();
    let mut v = json!({
        "name": ep.name,
        "id": ep.name,
        "creator": "modelgate",
        "creation_timestamp": ep.created_ms,
        "last_updated_timestamp": g.updated_ms.max(ep.created_ms),
        "state": {
            "ready": if g.is_ready() { "READY" } else { "NOT_READY" },
            "config_update": ep.config_update(),
        },
        "config": config_json(&g),
        "permission_level": "CAN_MANAGE",
    });
    if let Some(p) = control.pending {
        v["pending_config"] = json!({
            "served_entities": p.settings.served_entities,
            "traffic_config": traffic_json(&p.settings),
            "routing": p.settings.routing,
            "config_version": p.config_version,
            "start_time": p.start_ms,
        });
        add_capture(&mut v["pending_config"], &p.settings);
    }
    if let Some(f) = control.failure {
        v["last_config_update_error"] = json!(f);
    }
    v
}

pub async fn list(state: web::Data<AppState>) -> HttpResponse {
    let endpoints: Vec<Value> = state
        .gateway
        .endpoints()
        .iter()
        .map(|e| endpoint_json(e))
        .collect();
    reply(StatusCode::OK, json!({ "endpoints": endpoints }))
}

pub async fn get_endpoint(path: web::Path<String>, state: web::Data<AppState>) -> HttpResponse {
    match state.gateway.endpoint(&path) {
        Some(ep) => reply(StatusCode::OK, endpoint_json(&ep)),
        None => not_found(&path),
    }
}

/// `POST /api/2.0/serving-endpoints`: `{"name": ..., "config": {...}}`. Other Databricks
/// fields (tags, route_optimized, ...) are accepted and have no effect here.
#[derive(Deserialize)]
pub struct CreateBody {
    name: String,
    config: EndpointConfig,
    #[serde(default)]
    rate_limits: Vec<crate::endpoint::rate_limit::RateLimit>,
}

/// A control-plane body, read within `server.max_body_bytes` and parsed.
async fn read_body<T: serde::de::DeserializeOwned>(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
) -> Result<T, HttpResponse> {
    let body = read_limited(req, payload, state.max_body_bytes)
        .await
        .map_err(|e| error(e.status(), e.code(), e.to_string()))?;
    parse(&body).map_err(|resp| *resp)
}

/// Runs a control-plane call off the HTTP workers (it may touch the registry and the state
/// file) and answers with `ok`'s body or the call's error.
async fn run_control<T: Send + 'static>(
    call: impl FnOnce() -> Result<T, ControlError> + Send + 'static,
    ok: impl FnOnce(T) -> Value,
) -> HttpResponse {
    match web::block(call).await {
        Ok(Ok(v)) => reply(StatusCode::OK, ok(v)),
        Ok(Err(e)) => control_error(&e),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL_ERROR",
            format!("the request did not run: {e}"),
        ),
    }
}

pub async fn create(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let body: CreateBody = match read_body(&req, payload, &state).await {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    let control = state.control.clone();
    let mut settings = body.config.named(body.name);
    settings.rate_limits = body.rate_limits;
    run_control(move || control.create(settings), |ep| endpoint_json(&ep)).await
}

/// `PUT /api/2.0/serving-endpoints/{name}/config`: answers at once with the update pending.
pub async fn update_config(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let config: EndpointConfig = match read_body(&req, payload, &state).await {
        Ok(c) => c,
        Err(resp) => return resp,
    };
    let control = state.control.clone();
    let name = path.into_inner();
    run_control(
        move || control.update(&name, config),
        |ep| endpoint_json(&ep),
    )
    .await
}

pub async fn delete(path: web::Path<String>, state: web::Data<AppState>) -> HttpResponse {
    let control = state.control.clone();
    let name = path.into_inner();
    run_control(move || control.delete(&name), |()| json!({})).await
}

#[derive(Deserialize, Default)]
pub struct ReloadQuery {
    /// Reload even when the resolved version is the one served.
    #[serde(default)]
    force: bool,
    /// Only this served entity (default: all of them; rollback needs one when there are several).
    served_entity: Option<String>,
}

/// The slots a reload or rollback acts on.
fn chosen_slots(
    ep: &Endpoint,
    served_entity: Option<&str>,
) -> Result<Vec<std::sync::Arc<EntitySlot>>, Box<HttpResponse>> {
    let g = ep.generation();
    match served_entity {
        None => Ok(g.slots.clone()),
        Some(name) => g.slot(name).map(|(_, s)| vec![s.clone()]).ok_or_else(|| {
            Box::new(error(
                StatusCode::NOT_FOUND,
                "RESOURCE_DOES_NOT_EXIST",
                format!("endpoint '{}' has no served entity '{name}'", ep.name),
            ))
        }),
    }
}

pub async fn reload(
    path: web::Path<String>,
    query: web::Query<ReloadQuery>,
    state: web::Data<AppState>,
) -> HttpResponse {
    let force = query.force;
    update(
        &path,
        query.served_entity.as_deref(),
        state,
        move |updater, slot| updater.refresh(slot, Trigger::Admin, force),
    )
    .await
}

pub async fn rollback(
    path: web::Path<String>,
    query: web::Query<ReloadQuery>,
    state: web::Data<AppState>,
) -> HttpResponse {
    if let Some(ep) = state.gateway.endpoint(&path) {
        let slots = ep.generation().slots.len();
        if query.served_entity.is_none() && slots > 1 {
            return error(
                StatusCode::BAD_REQUEST,
                "INVALID_PARAMETER_VALUE",
                format!("endpoint '{}' has {slots} served entities: name the one to roll back with ?served_entity=", ep.name),
            );
        }
    }
    update(
        &path,
        query.served_entity.as_deref(),
        state,
        |updater, slot| updater.rollback(slot),
    )
    .await
}

/// Runs an update of each chosen served entity off the HTTP workers and answers with the
/// endpoint's state: 200 when all are served as asked, 409 with the reason when one failed
/// (its old version still serves), 503 when the registry did not answer.
async fn update(
    name: &str,
    served_entity: Option<&str>,
    state: web::Data<AppState>,
    f: impl Fn(&crate::endpoint::updater::Updater, &EntitySlot) -> SwapOutcome + Send + 'static,
) -> HttpResponse {
    let Some(ep) = state.gateway.endpoint(name) else {
        return not_found(name);
    };
    let slots = match chosen_slots(&ep, served_entity) {
        Ok(s) => s,
        Err(resp) => return *resp,
    };
    let updater = state.updater.clone();
    let outcomes = match web::block(move || {
        slots
            .iter()
            .map(|s| f(&updater, s))
            .collect::<Vec<SwapOutcome>>()
    })
    .await
    {
        Ok(o) => o,
        Err(e) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "INTERNAL_ERROR",
                format!("the update did not run: {e}"),
            )
        }
    };
    let mut body = endpoint_json(&ep);
    let mut status = StatusCode::OK;
    for o in &outcomes {
        match o {
            SwapOutcome::Failed(message) => {
                body["error_code"] = json!("INVALID_STATE");
                body["message"] = json!(message);
                status = StatusCode::CONFLICT;
            }
            SwapOutcome::RegistryUnavailable(message) if status == StatusCode::OK => {
                body["error_code"] = json!("TEMPORARILY_UNAVAILABLE");
                body["message"] = json!(format!("the model registry is unreachable: {message}"));
                status = StatusCode::SERVICE_UNAVAILABLE;
            }
            _ => {}
        }
    }
    let word = |o: &SwapOutcome| match o {
        SwapOutcome::Unchanged { .. } => "unchanged",
        SwapOutcome::Swapped { .. } => "swapped",
        SwapOutcome::Failed(_) => "failed",
        SwapOutcome::RegistryUnavailable(_) => "registry_unavailable",
    };
    // The most telling outcome of all: a failure, else an outage, else a swap.
    let overall = ["failed", "registry_unavailable", "swapped"]
        .into_iter()
        .find(|w| outcomes.iter().any(|o| word(o) == *w))
        .unwrap_or("unchanged");
    body["outcome"] = json!(overall);
    body["outcomes"] = json!(outcomes.iter().map(word).collect::<Vec<_>>());
    reply(status, body)
}
