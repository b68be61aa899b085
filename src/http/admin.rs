//! The control plane over HTTP, in the shape of Databricks' serving-endpoints API: create, list,
//! get, update config, delete, plus reload and rollback. Work that reads the registry or loads
//! models runs on the blocking pool; the endpoint's JSON view is built by
//! [`crate::endpoint::view`].

use actix_web::http::header::ContentType;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};

use super::body::read_limited;
use super::error::ApiError;
use super::AppState;
use crate::endpoint::config::EndpointConfig;
use crate::endpoint::control::ControlError;
use crate::endpoint::updater::{SwapOutcome, Trigger};
use crate::endpoint::view::endpoint_json;
use crate::endpoint::{Endpoint, EntitySlot};
use crate::error::RequestError;

pub(super) fn reply(status: StatusCode, body: Value) -> HttpResponse {
    HttpResponse::build(status)
        .content_type(ContentType::json())
        .body(body.to_string())
}

/// A JSON body as `T`, or a 400 naming the field that does not fit.
fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, RequestError> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let (message, violations) = if path == "." || path.is_empty() {
            let m = format!("the request body does not fit this call: {inner}");
            (m, Vec::new())
        } else {
            let m = format!("the request body does not fit this call at '{path}': {inner}");
            (m, vec![(path, inner.to_string())])
        };
        RequestError::InvalidParameters {
            message,
            violations,
        }
    })
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

pub async fn get_endpoint(
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let ep = endpoint(&state, &path)?;
    Ok(reply(StatusCode::OK, endpoint_json(&ep)))
}

pub(super) fn endpoint(
    state: &AppState,
    name: &str,
) -> Result<std::sync::Arc<Endpoint>, ControlError> {
    state
        .gateway
        .endpoint(name)
        .ok_or_else(|| ControlError::NotFound(name.to_owned()))
}

/// `POST /api/2.0/serving-endpoints`: `{"name": ..., "config": {...}}`, with the endpoint's
/// `tags`, `description`, `rate_limits` and `ai_gateway`. Other Databricks fields
/// (`route_optimized`, `budget_policy_id`, `email_notifications`) are accepted and have no
/// effect here.
#[derive(Deserialize)]
pub struct CreateBody {
    name: String,
    config: EndpointConfig,
    #[serde(default)]
    rate_limits: Vec<crate::endpoint::rate_limit::RateLimit>,
    #[serde(default)]
    tags: Vec<crate::settings::governance::EndpointTag>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    ai_gateway: Option<super::governance::AiGatewayPut>,
}

/// A control-plane body, read within `server.max_body_bytes` and parsed.
pub(super) async fn read_body<T: serde::de::DeserializeOwned>(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
) -> Result<T, RequestError> {
    let body = read_limited(req, payload, state.max_body_bytes).await?;
    parse(&body)
}

/// Runs a control-plane call off the HTTP workers (it may touch the registry and the state
/// file) and answers with `ok`'s body or the call's error.
pub(super) async fn run_control<T: Send + 'static>(
    call: impl FnOnce() -> Result<T, ControlError> + Send + 'static,
    ok: impl FnOnce(T) -> Value,
) -> Result<HttpResponse, ApiError> {
    let done = web::block(call)
        .await
        .map_err(|e| ApiError::blocked("the request did not run", e))??;
    Ok(reply(StatusCode::OK, ok(done)))
}

/// A control-plane call's span (`name`), under the caller's `traceparent`, when tracing is on:
/// the loads it starts are its children, their registry calls theirs.
pub(super) struct ControlSpan {
    tracer: std::sync::Arc<crate::trace::Tracer>,
    parent: Option<crate::trace::SpanContext>,
    name: &'static str,
}

impl ControlSpan {
    pub fn of(req: &HttpRequest, state: &AppState, name: &'static str) -> Option<Self> {
        let tracer = state.gateway.tracer()?.clone();
        let values = |name| req.headers().get_all(name).filter_map(|v| v.to_str().ok());
        let parent = crate::trace::extract(values("traceparent"), values("tracestate"));
        Some(Self {
            tracer,
            parent,
            name,
        })
    }

    /// Runs `call` inside the span, on the calling thread.
    fn run<T>(span: Option<Self>, call: impl FnOnce() -> T) -> T {
        let _span = span.and_then(|s| {
            let kind = crate::trace::SpanKind::Server;
            crate::trace::ActiveSpan::enter(Some(&s.tracer), s.parent, s.name, kind)
        });
        call()
    }
}

pub async fn create(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let body: CreateBody = read_body(&req, payload, &state).await?;
    let control = state.control.clone();
    let mut settings = body.config.named(body.name);
    settings.rate_limits = body.rate_limits;
    settings.tags = body.tags;
    settings.description = body.description;
    if let Some(gateway) = body.ai_gateway {
        gateway.apply(&mut settings)?;
    }
    let span = ControlSpan::of(&req, &state, "POST /api/2.0/serving-endpoints");
    run_control(
        move || ControlSpan::run(span, || control.create(settings)),
        |ep| endpoint_json(&ep),
    )
    .await
}

/// `PUT /api/2.0/serving-endpoints/{name}/config`: answers at once with the update pending.
pub async fn update_config(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let config: EndpointConfig = read_body(&req, payload, &state).await?;
    let control = state.control.clone();
    let name = path.into_inner();
    let span = ControlSpan::of(&req, &state, "PUT /api/2.0/serving-endpoints/{name}/config");
    run_control(
        move || ControlSpan::run(span, || control.update(&name, config)),
        |ep| endpoint_json(&ep),
    )
    .await
}

pub async fn delete(
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
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
) -> Result<Vec<std::sync::Arc<EntitySlot>>, RequestError> {
    let g = ep.generation();
    match served_entity {
        None => Ok(g.slots.clone()),
        Some(name) => g.slot(name).map(|(_, s)| vec![s.clone()]).ok_or_else(|| {
            RequestError::NotFound(format!(
                "endpoint '{}' has no served entity '{name}'",
                ep.name
            ))
        }),
    }
}

pub async fn reload(
    path: web::Path<String>,
    query: web::Query<ReloadQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
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
) -> Result<HttpResponse, ApiError> {
    if let Some(ep) = state.gateway.endpoint(&path) {
        let slots = ep.generation().slots.len();
        if query.served_entity.is_none() && slots > 1 {
            let message = format!("endpoint '{}' has {slots} served entities: name the one to roll back with ?served_entity=", ep.name);
            return Err(RequestError::InvalidParameters {
                violations: vec![("served_entity".into(), message.clone())],
                message,
            }
            .into());
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
) -> Result<HttpResponse, ApiError> {
    let ep = endpoint(&state, name)?;
    let slots = chosen_slots(&ep, served_entity)?;
    let updater = state.updater.clone();
    let outcomes = web::block(move || {
        slots
            .iter()
            .map(|s| f(&updater, s))
            .collect::<Vec<SwapOutcome>>()
    })
    .await
    .map_err(|e| ApiError::blocked("the update did not run", e))?;
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
    Ok(reply(status, body))
}
