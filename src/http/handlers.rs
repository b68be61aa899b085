//! MLflow / Databricks scoring, health and metrics handlers.

use std::time::Instant;

use actix_web::http::header::{self, ContentType, HeaderName};
use actix_web::{web, HttpRequest, HttpResponse};

use super::body::read_limited;
use super::error::ApiError;
use super::AppState;
use crate::error::{Protocol, RequestError};
use crate::inference_log::RequestId;
use crate::pipeline::{Answer, Failure, Format, Invocation};

/// Header naming the served entity that answered, as Databricks Model Serving sends it.
pub const SERVED_MODEL_HEADER: &str = "served-model-name";
/// Header naming the model version that served entity served (it moves with its alias).
pub const SERVED_VERSION_HEADER: &str = "served-model-version";
/// Header carrying the request's id (`databricks_request_id` in the inference table; labels
/// refer to it).
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The request's id: the caller's `x-request-id` when well formed, else a fresh one
/// ([`RequestId::from_caller`]). Echoed in the answer's `x-request-id` either way.
pub fn request_id_of(req: &HttpRequest) -> RequestId {
    RequestId::from_caller(req.headers().get(REQUEST_ID_HEADER).map(|v| v.as_bytes()))
}

pub async fn invocations(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    score(req, path.into_inner(), None, payload, state).await
}

/// A served entity named in the path answers, whatever the routes say.
pub async fn pinned_invocations(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (endpoint, served) = path.into_inner();
    score(req, endpoint, Some(served), payload, state).await
}

/// `/invocations` as `mlflow models serve` has it: the one configured endpoint.
pub async fn sole_invocations(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let Some(endpoint) = state.gateway.sole_endpoint().map(|e| e.name.clone()) else {
        let err = RequestError::NotFound(
            "/invocations serves only when exactly one endpoint is configured: use /serving-endpoints/{name}/invocations".into(),
        );
        let id = request_id_of(&req);
        state
            .gateway
            .record_rejected("", Protocol::Mlflow, &err, Instant::now(), &id);
        return Err(ApiError::from(err).with_request_id(&id.text));
    };
    score(req, endpoint, None, payload, state).await
}

/// A scoring call matched by [`super::routes::scoring_path`], answered as its route's handler
/// answers it.
pub async fn scoring_call(
    req: HttpRequest,
    call: super::routes::ScoringPath,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    use super::routes::ScoringPath;
    match call {
        ScoringPath::Endpoint(endpoint) => score(req, endpoint, None, payload, state).await,
        ScoringPath::Pinned(endpoint, served) => {
            score(req, endpoint, Some(served), payload, state).await
        }
        ScoringPath::Sole => sole_invocations(req, payload, state).await,
        ScoringPath::V2Infer(model, version) => {
            super::v2_handlers::infer_call(req, model, version, payload, state).await
        }
        ScoringPath::KserveV1Predict(model) => {
            super::kserve_v1::predict_call(req, model, payload, state).await
        }
    }
}

async fn score(
    req: HttpRequest,
    endpoint: String,
    pin: Option<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let arrival = Arrival::of(&req);
    let (format, body) = read_call_body(
        &req,
        payload,
        &state,
        mlflow_format(&req),
        &endpoint,
        Protocol::Mlflow,
        &arrival,
    )
    .await?;
    let mut invocation = http_invocation(&req, endpoint, format, body, &arrival);
    invocation.pin = pin;
    answer(
        &req,
        state.gateway.invoke(invocation).await,
        Protocol::Mlflow,
        &arrival.request_id,
    )
}

/// When a scoring call arrived, and its id.
pub struct Arrival {
    pub received: Instant,
    pub request_id: RequestId,
}

impl Arrival {
    pub fn of(req: &HttpRequest) -> Self {
        Self {
            received: Instant::now(),
            request_id: request_id_of(req),
        }
    }
}

/// A scoring call's body, read (within `server.max_body_bytes`) once its headers' check
/// `checked` passed; a refusal is recorded for `endpoint` and answered in `protocol`, naming
/// the request's id.
pub async fn read_call_body<T>(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
    checked: Result<T, RequestError>,
    endpoint: &str,
    protocol: Protocol,
    arrival: &Arrival,
) -> Result<(T, bytes::Bytes), ApiError> {
    let read = match checked {
        Ok(t) => read_limited(req, payload, state.max_body_bytes)
            .await
            .map(|body| (t, body)),
        Err(e) => Err(e),
    };
    read.map_err(|e| {
        let id = &arrival.request_id;
        (state.gateway).record_rejected(endpoint, protocol, &e, arrival.received, id);
        ApiError::new(e, protocol).with_request_id(&id.text)
    })
}

/// A scoring call as it came over HTTP: its headers (the routing key) and its caller.
pub fn http_invocation<'a>(
    req: &'a HttpRequest,
    endpoint: String,
    format: Format,
    body: bytes::Bytes,
    arrival: &Arrival,
) -> Invocation<'a> {
    Invocation {
        endpoint,
        format,
        body,
        received: arrival.received,
        headers: Some(req.headers()),
        pin: None,
        request_id: arrival.request_id.clone(),
        requester: super::requester(req),
    }
}

/// A scoring answer with the headers that name who served it and the request's id; the body
/// is held in the body budget until the connection takes it.
pub fn answer(
    req: &HttpRequest,
    result: Result<Answer, Failure>,
    protocol: Protocol,
    request_id: &RequestId,
) -> Result<HttpResponse, ApiError> {
    match result {
        Ok(answer) => {
            // Names from constants: parsed from text, a name that is not a standard one is
            // copied to the heap on every answer.
            const SERVED_MODEL: HeaderName = HeaderName::from_static(SERVED_MODEL_HEADER);
            const SERVED_VERSION: HeaderName = HeaderName::from_static(SERVED_VERSION_HEADER);
            const REQUEST_ID: HeaderName = HeaderName::from_static(REQUEST_ID_HEADER);
            let mut reply = HttpResponse::Ok();
            reply
                .insert_header((SERVED_MODEL, &*answer.served.names()))
                .insert_header((SERVED_VERSION, &*answer.served.versions()))
                .insert_header((REQUEST_ID, &*request_id.text));
            match answer.json_len {
                // Raw tensors follow the JSON (V2's binary tensor data extension).
                Some(n) => reply
                    .insert_header((crate::protocol::v2_binary::HEADER_LENGTH, n))
                    .content_type(ContentType::octet_stream()),
                None => reply.content_type(ContentType::json()),
            };
            Ok(reply.body(super::body::held_answer(req, answer.body)))
        }
        Err(f) => Err(ApiError::new(f.error, protocol)
            .with_request_id(&request_id.text)
            .served_by(f.served_name)),
    }
}

/// JSON (also when no content type is sent) or CSV; anything else is 415.
fn mlflow_format(req: &HttpRequest) -> Result<Format, RequestError> {
    let Some(ct) = req.headers().get(header::CONTENT_TYPE) else {
        return Ok(Format::MlflowJson);
    };
    let ct = ct.to_str().unwrap_or("").to_ascii_lowercase();
    let mime = ct.split(';').next().unwrap_or("").trim();
    match mime {
        "application/json" | "" => Ok(Format::MlflowJson),
        "text/csv" | "application/csv" => Ok(Format::MlflowCsv),
        other => Err(RequestError::UnsupportedMediaType(format!(
            "content type '{other}' is not supported: send application/json or text/csv"
        ))),
    }
}

/// `/ping` and `/health` as MLflow's scoring server answers them: 200 once the model serves,
/// 404 before (here: until every config-file endpoint serves, and from a shutdown on).
pub async fn ping(state: web::Data<AppState>) -> HttpResponse {
    let mut reply = if state.gateway.is_ready() {
        HttpResponse::Ok()
    } else {
        HttpResponse::NotFound()
    };
    reply.content_type(ContentType::plaintext()).body("\n")
}

pub async fn version() -> HttpResponse {
    HttpResponse::Ok()
        .content_type(ContentType::plaintext())
        .body(env!("CARGO_PKG_VERSION"))
}

pub async fn livez() -> HttpResponse {
    HttpResponse::Ok()
        .content_type(ContentType::json())
        .body(r#"{"status":"live"}"#)
}

/// Lists every endpoint's state; 200 only when every endpoint of the config file serves a loaded,
/// warmed model and no shutdown has begun. In a fleet, `fleet` says whether the replica serves
/// the shared endpoint configs. A served entity that is not ready says what it is
/// doing (`activity`: the step and, downloading, its bytes) or why its load failed (`error`).
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let gw = &state.gateway;
    let endpoints: Vec<serde_json::Value> = gw
        .endpoints()
        .into_iter()
        .map(|e| {
            let g = e.generation();
            let entities: Vec<serde_json::Value> = g
                .slots
                .iter()
                .map(|s| {
                    let mut entity = serde_json::json!({
                        "name": s.name,
                        "ready": s.is_ready(),
                        "version": s.served().map(|x| x.meta.version.clone()),
                    });
                    // What it is doing now (downloading n of m bytes, loading, warming...),
                    // and why its last load failed, while it serves nothing.
                    if let Some(activity) = s.activity.view() {
                        entity["activity"] = serde_json::json!(activity);
                    }
                    // The reason itself (paths, buckets, the registry's words) is for token
                    // holders: this route is open.
                    let failed = s.state().last_swap.is_some_and(|r| {
                        r.outcome == crate::metrics::labels::Outcome::Failure && !s.is_ready()
                    });
                    if failed {
                        entity["error"] = format!(
                            "its last load failed: GET /api/2.0/serving-endpoints/{} says why",
                            e.name
                        )
                        .into();
                    }
                    entity
                })
                .collect();
            serde_json::json!({ "name": e.name, "ready": g.is_ready(), "served_entities": entities })
        })
        .collect();
    let ready = gw.is_ready();
    let mut body = serde_json::json!({ "status": if ready { "ready" } else { "not ready" }, "endpoints": endpoints });
    // In a fleet: whether this replica serves the shared configs or the last ones it knew (it
    // serves either way, so readiness does not depend on it).
    if let Some(fleet) = state.control.fleet_status() {
        body["fleet"] = serde_json::json!(fleet);
    }
    let mut resp = if ready {
        HttpResponse::Ok()
    } else {
        HttpResponse::ServiceUnavailable()
    };
    resp.content_type(ContentType::json())
        .body(body.to_string())
}

pub async fn metrics(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    // Monitoring's reports close windows and take the served entities' locks: off the worker.
    let gateway = state.gateway.clone();
    let text = web::block(move || gateway.render_metrics())
        .await
        .map_err(|e| ApiError::blocked("the metrics were not rendered", e))?;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(text))
}

pub async fn not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let err = RequestError::NotFound(format!("no route for {} {}", req.method(), req.path()));
    Err(ApiError::new(err, super::protocol_of(req.path())))
}
