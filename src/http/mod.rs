//! The HTTP adapter: actix-web app, routes and handlers. Handlers map HTTP to one call of the
//! core ([`crate::pipeline::Gateway`]) and its result back; they hold no serving logic.

mod access;
mod admin;
pub mod auth;
pub mod body;
mod endpoint_info;
pub mod error;
mod feature_push;
mod governance;
mod handlers;
mod kserve_v1;
mod labels;
mod monitoring;
pub mod openapi;
mod promotion;
pub mod proxy;
pub mod routes;
mod status_page;
pub mod tls;
mod v2_handlers;
mod webhook;

use std::sync::Arc;

use actix_web::{web, App};

use crate::error::{Protocol, RequestError};
use crate::pipeline::Gateway;

/// Shared state of every handler.
pub struct AppState {
    pub gateway: Arc<Gateway>,
    pub updater: Arc<crate::endpoint::updater::Updater>,
    pub control: Arc<crate::endpoint::control::ControlPlane>,
    /// The embedded online store, for the push API.
    pub store: Option<Arc<crate::features::embedded::EmbeddedStore>>,
    /// Each endpoint's promotion evaluation.
    pub promotions: Arc<crate::promotion::Promotions>,
    /// Shared secret of MLflow webhooks; the receiver is off without it.
    pub webhook_secret: Option<String>,
    pub webhook_deliveries: webhook::SeenDeliveries,
    pub max_body_bytes: usize,
    pub auth: Arc<auth::Auth>,
    /// The body budget shared by all requests, and the read deadline.
    pub body_reading: body::BodyReading,
    /// Peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<proxy::IpRange>,
    /// The admin listener's address, when the admin API has its own.
    pub admin_addr: Option<std::net::SocketAddr>,
    /// Requests in flight on one connection at once.
    pub max_streams_per_connection: usize,
    /// One log line per request (`log.access`).
    pub access_log: bool,
    /// The status page's previous look at the request histograms (its live rates).
    pub live: Arc<crate::metrics::live::LiveSampler>,
}

/// Requests in flight on one connection (HTTP/2 multiplexes many): set on every connection.
#[derive(Clone, Default)]
pub struct StreamCount(Arc<std::sync::atomic::AtomicUsize>);

/// One request counted on its connection until it is answered or dropped.
struct StreamGuard(StreamCount);

impl Drop for StreamGuard {
    fn drop(&mut self) {
        (self.0).0.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// Per-connection data: the client certificate (TLS) and the stream count.
pub fn on_connect(conn: &dyn std::any::Any, ext: &mut actix_web::dev::Extensions) {
    tls::on_connect(conn, ext);
    ext.insert(StreamCount::default());
}

/// A route served on the other listener is not found on this one.
fn listener_refusal(
    class: routes::RouteClass,
    on_admin: bool,
    method: &actix_web::http::Method,
    path: &str,
) -> Option<RequestError> {
    use routes::RouteClass;
    match (class, on_admin) {
        (RouteClass::Manage, false) => Some(RequestError::NotFound(format!(
            "no route for {method} {path} on this listener: the admin API is served on server.admin_listen"
        ))),
        (RouteClass::Query | RouteClass::Webhook, true) => Some(RequestError::NotFound(format!(
            "no route for {method} {path} on the admin listener: scoring is served on server.listen"
        ))),
        _ => None,
    }
}

pub use routes::configure;

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
    let gateway = state.gateway.clone();
    let admin_addr = state.admin_addr;
    let max_streams = state.max_streams_per_connection;
    let access_log = state.access_log;
    let shared = state.clone();
    App::new()
        .app_data(state)
        .configure(configure)
        .wrap_fn(move |req, srv| {
            use actix_web::dev::Service;
            use actix_web::HttpMessage;
            use futures_util::future::{ready, Either, FutureExt};
            // Taken before anything can refuse the request: the access log has every one.
            let access = access_log.then(|| access::Started::of(&req));
            let admitted = 'admit: {
            let protocol = protocol_of(req.path());
            let refused = |req: actix_web::dev::ServiceRequest, e: RequestError| {
                use actix_web::ResponseError;
                let response = error::ApiError::new(e, protocol).error_response();
                ready(Ok(req.into_response(response)))
            };
            let route = routes::route_of(req.path());
            let class = route.map_or(routes::RouteClass::Manage, |r| r.class);
            // A path no route serves is not found on either listener (after auth, as Manage).
            if let (Some(admin), Some(_)) = (admin_addr, route) {
                let on_admin = req.app_config().local_addr() == admin;
                if let Some(e) = listener_refusal(class, on_admin, req.method(), req.path()) {
                    break 'admit Either::Right(refused(req, e));
                }
            }
            // Taken before the body is read: a connection multiplexing a flood of streams gets
            // 429s, not that many requests holding memory.
            let guard = match req.conn_data::<StreamCount>() {
                Some(count) => {
                    let before = count.0.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
                    let guard = StreamGuard(count.clone());
                    if before >= max_streams {
                        metrics
                            .access
                            .refusals(crate::error::Limit::StreamsPerConnection)
                            .inc();
                        let e = RequestError::limit(
                            crate::error::Limit::StreamsPerConnection,
                            format!(
                                "this connection has {before} requests in flight, at the limit of {max_streams} (server.max_streams_per_connection): retry later or open another connection"
                            ),
                        );
                        break 'admit Either::Right(refused(req, e));
                    }
                    Some(guard)
                }
                None => None,
            };
            let authorization = req
                .headers()
                .get(actix_web::http::header::AUTHORIZATION)
                .map(|v| v.as_bytes());
            let client_certificate = req.conn_data::<tls::ClientCertificate>().is_some();
            let reads = matches!(*req.method(), actix_web::http::Method::GET | actix_web::http::Method::HEAD);
            let path = req.path();
            // Asked only for a token that lacks the route's scope.
            let grant = |token: &str| {
                let ep = gateway.endpoint(routes::endpoint_of(path)?)?;
                crate::settings::governance::granted(&ep.generation().settings.permissions, token)
            };
            match auth.check(class, reads, authorization, client_certificate, &grant) {
                Ok(caller) => {
                    if let Some(caller) = caller {
                        req.extensions_mut().insert(caller);
                    }
                    // Scoring skips actix's router (see routes::scoring_path); every scoring
                    // route is a query route, so other paths are not matched twice.
                    let scoring = (class == routes::RouteClass::Query)
                        .then(|| routes::scoring_path(req.method(), req.path()))
                        .flatten();
                    let served = match scoring {
                        Some(call) => Either::Right(score_directly(req, call, shared.clone())),
                        None => Either::Left(srv.call(req).map(|r| r.map(|r| r.map_into_boxed_body()))),
                    };
                    Either::Left(served.map(move |r| {
                        drop(guard);
                        r
                    }))
                }
                Err(e) => {
                    metrics
                        .access
                        .auth_refusals
                        .with_label_values(&[e.code()])
                        .inc();
                    Either::Right(refused(req, e))
                }
            }
            };
            admitted.map(move |r| {
                if let (Some(started), Ok(response)) = (&access, &r) {
                    started.log(response);
                }
                r
            })
        })
}

/// A scoring call answered by its handler without the router: what the route would do.
async fn score_directly(
    req: actix_web::dev::ServiceRequest,
    call: routes::ScoringPath,
    state: web::Data<AppState>,
) -> Result<actix_web::dev::ServiceResponse, actix_web::Error> {
    use actix_web::FromRequest;
    let (req, mut payload) = req.into_parts();
    let payload = web::Payload::from_request(&req, &mut payload).into_inner()?;
    let response = match handlers::scoring_call(req.clone(), call, payload, state).await {
        Ok(response) => response.map_into_boxed_body(),
        Err(e) => actix_web::HttpResponse::from_error(e),
    };
    Ok(actix_web::dev::ServiceResponse::new(req, response))
}

/// Who sent a request: its bearer token's name, else the client's address (through
/// `server.trusted_proxies`' `X-Forwarded-For`).
pub fn requester(req: &actix_web::HttpRequest) -> Option<Arc<str>> {
    use actix_web::HttpMessage;
    if let Some(caller) = req.extensions().get::<auth::Caller>() {
        return Some(caller.0.clone());
    }
    let peer = req.peer_addr()?.ip();
    let trusted = req
        .app_data::<actix_web::web::Data<AppState>>()
        .map(|s| s.trusted_proxies.as_slice())
        .unwrap_or(&[]);
    if trusted.is_empty() {
        // No proxy is believed: the peer, without reading the header.
        return Some(proxy::address_text(peer));
    }
    let forwarded: Vec<&str> = req
        .headers()
        .get_all("x-forwarded-for")
        .filter_map(|v| v.to_str().ok())
        .collect();
    Some(proxy::address_text(proxy::client_ip(
        peer, &forwarded, trusted,
    )))
}

/// The protocol of a path: V2 routes answer errors in V2's shape, the rest in MLflow's.
pub fn protocol_of(path: &str) -> Protocol {
    if path.starts_with("/v1/models") {
        Protocol::KserveV1
    } else if path.starts_with("/v2") {
        Protocol::V2
    } else {
        Protocol::Mlflow
    }
}
