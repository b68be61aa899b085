//! The HTTP adapter: actix-web app, routes and handlers. Handlers map HTTP to one call of the
//! core ([`crate::gateway::Gateway`]) and its result back; they hold no serving logic.

mod admin;
pub mod auth;
mod body;
mod feature_push;
mod handlers;
mod labels;
mod monitoring;
pub mod openapi;
pub mod tls;
mod v2_handlers;
mod webhook;

use std::sync::Arc;

use actix_web::{web, App, HttpResponse};

use crate::error::RequestError;
use crate::gateway::Gateway;

/// Shared state of every handler.
pub struct AppState {
    pub gateway: Arc<Gateway>,
    pub updater: Arc<crate::endpoint::updater::Updater>,
    pub control: Arc<crate::endpoint::control::ControlPlane>,
    /// The embedded online store, for the push API.
    pub store: Option<Arc<crate::features::embedded::EmbeddedStore>>,
    /// Shared secret of MLflow webhooks; the receiver is off without it.
    pub webhook_secret: Option<String>,
    pub webhook_deliveries: webhook::SeenDeliveries,
    pub max_body_bytes: usize,
    pub auth: Arc<auth::Auth>,
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/serving-endpoints/{endpoint}/invocations",
        web::post().to(handlers::invocations),
    )
    .route(
        "/serving-endpoints/{endpoint}/served-models/{served}/invocations",
        web::post().to(handlers::pinned_invocations),
    )
    .route("/invocations", web::post().to(handlers::sole_invocations))
    .route("/ping", web::get().to(handlers::ping))
    .route("/health", web::get().to(handlers::ping))
    .route("/version", web::get().to(handlers::version))
    .route("/livez", web::get().to(handlers::livez))
    .route("/readyz", web::get().to(handlers::readyz))
    .route("/metrics", web::get().to(handlers::metrics))
    .route("/api/2.0/serving-endpoints", web::get().to(admin::list))
    .route("/api/2.0/serving-endpoints", web::post().to(admin::create))
    .route(
        "/api/2.0/serving-endpoints/{name}",
        web::get().to(admin::get_endpoint),
    )
    .route(
        "/api/2.0/serving-endpoints/{name}",
        web::delete().to(admin::delete),
    )
    .route(
        "/api/2.0/serving-endpoints/{name}/config",
        web::put().to(admin::update_config),
    )
    .route(
        "/api/2.0/serving-endpoints/{name}/reload",
        web::post().to(admin::reload),
    )
    .route(
        "/api/2.0/serving-endpoints/{name}/rollback",
        web::post().to(admin::rollback),
    )
    .route(
        "/api/2.0/serving-endpoints/{name}/labels",
        web::post().to(labels::post_labels),
    )
    .route(
        "/api/2.0/serving-endpoints/{name}/monitoring",
        web::get().to(monitoring::get_monitoring),
    )
    .route(
        "/api/2.0/feature-tables/{table}/rows",
        web::post().to(feature_push::push_rows),
    )
    .route(
        "/api/2.0/webhooks/mlflow",
        web::post().to(webhook::mlflow_webhook),
    )
    .route("/v2", web::get().to(v2_handlers::server_metadata))
    .route("/v2/health/live", web::get().to(v2_handlers::live))
    .route("/v2/health/ready", web::get().to(v2_handlers::ready))
    .route(
        "/v2/models/{model}",
        web::get().to(v2_handlers::model_metadata),
    )
    .route(
        "/v2/models/{model}/ready",
        web::get().to(v2_handlers::model_ready),
    )
    .route(
        "/v2/models/{model}/infer",
        web::post().to(v2_handlers::infer),
    )
    .route(
        "/v2/models/{model}/versions/{version}",
        web::get().to(v2_handlers::model_metadata),
    )
    .route(
        "/v2/models/{model}/versions/{version}/ready",
        web::get().to(v2_handlers::model_ready),
    )
    .route(
        "/v2/models/{model}/versions/{version}/infer",
        web::post().to(v2_handlers::infer),
    )
    .default_service(web::to(handlers::not_found));
}

/// Builds the app for one HTTP worker.
pub fn app(
    state: web::Data<AppState>,
) -> App<
    impl actix_web::dev::ServiceFactory<
        actix_web::dev::ServiceRequest,
        Config = (),
        Response = actix_web::dev::ServiceResponse,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    let auth = state.auth.clone();
    let metrics = state.gateway.metrics().clone();
    App::new()
        .app_data(state)
        .configure(configure)
        .wrap_fn(move |req, srv| {
            use actix_web::dev::Service;
            use actix_web::HttpMessage;
            use futures_util::future::{ready, Either, FutureExt};
            let authorization = req
                .headers()
                .get(actix_web::http::header::AUTHORIZATION)
                .map(|v| v.as_bytes());
            let client_certificate = req.conn_data::<tls::ClientCertificate>().is_some();
            match auth.check(req.method(), req.path(), authorization, client_certificate) {
                Ok(caller) => {
                    if let Some(caller) = caller {
                        req.extensions_mut().insert(caller);
                    }
                    Either::Left(srv.call(req).map(|r| r.map(|r| r.map_into_boxed_body())))
                }
                Err(e) => {
                    metrics.auth_refusals.with_label_values(&[e.code()]).inc();
                    let protocol = if req.path().starts_with("/v2") {
                        "v2"
                    } else {
                        "mlflow"
                    };
                    let response = error_response(&e, e.body(protocol));
                    Either::Right(ready(Ok(req.into_response(response))))
                }
            }
        })
}

/// Who sent a request: its bearer token's name, else the client's address.
pub fn requester(req: &actix_web::HttpRequest) -> Option<Arc<str>> {
    use actix_web::HttpMessage;
    if let Some(caller) = req.extensions().get::<auth::Caller>() {
        return Some(caller.0.clone());
    }
    req.peer_addr().map(|a| a.ip().to_string().into())
}

/// The MLflow-style JSON error body.
pub fn mlflow_error(err: &RequestError) -> HttpResponse {
    error_response(err, err.mlflow_body())
}

/// The V2 error body.
pub fn v2_error(err: &RequestError) -> HttpResponse {
    error_response(err, err.v2_body())
}

fn error_response(err: &RequestError, body: String) -> HttpResponse {
    let mut resp = HttpResponse::build(err.status());
    if let Some(seconds) = err.retry_after() {
        resp.insert_header((actix_web::http::header::RETRY_AFTER, seconds.to_string()));
    }
    if matches!(err, RequestError::Unauthenticated(_)) {
        resp.insert_header((actix_web::http::header::WWW_AUTHENTICATE, "Bearer"));
    }
    resp.content_type("application/json").body(body)
}
