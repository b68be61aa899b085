//! The token, checked from the call's headers before its message is read: a caller without a
//! known token never makes the gateway decode (and hold) a message. A known token passes here;
//! its scope, or its grant on the model the message names, is checked once the message is read.
//! Every call passes here, so the access log's gRPC lines (`log.access`) are written here too,
//! and its body is metered here ([`super::metered`]): its bytes, and what its `ModelInfer`
//! message decodes to, are held in the body budget until it is answered.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use futures_util::future::{ready, Either, Ready};
use tonic::body::Body;
use tonic::codegen::http;
use tonic::codegen::Service;
use tonic::server::NamedService;

use super::metered::{HeldAnswer, Metered, SharedHold};
use super::service::status_of;
use crate::http::auth::{Auth, RouteClass};
use crate::http::body::BodyBudget;
use crate::metrics::Metrics;
use crate::protocol::limits::DecodeLimits;
use crate::settings::governance::PermissionLevel;

#[derive(Clone)]
pub struct Guarded<S> {
    inner: S,
    auth: Arc<Auth>,
    access_log: bool,
    /// The body budget shared with REST (`server.max_inflight_body_bytes`).
    budget: Arc<BodyBudget>,
    limits: DecodeLimits,
    max_message: usize,
    metrics: Arc<Metrics>,
}

/// What the guard meters a call's body with: the budget, the decode bounds and the metrics
/// that count refusals.
pub struct Metering {
    pub budget: Arc<BodyBudget>,
    pub limits: DecodeLimits,
    /// `server.max_body_bytes`, tonic's bound on a message.
    pub max_message: usize,
    pub metrics: Arc<Metrics>,
}

impl<S> Guarded<S> {
    pub fn new(inner: S, auth: Arc<Auth>, access_log: bool, metering: Metering) -> Self {
        Self {
            inner,
            auth,
            access_log,
            budget: metering.budget,
            limits: metering.limits,
            max_message: metering.max_message,
            metrics: metering.metrics,
        }
    }
}

/// The endpoint a call was about, set on its answer by the service (for the access log).
#[derive(Clone)]
pub struct AnsweredFor(pub String);

/// One access line of a gRPC call: its method's path, gRPC status code (0 is OK), the endpoint
/// when the answer names it, and the id and served entity its answer carries.
fn access_line(path: &str, started: Instant, response: &http::Response<Body>) {
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    // An answer's status is in its trailers when it is OK: no `grpc-status` header means 0.
    let code = header("grpc-status").parse::<i32>().unwrap_or(0);
    let endpoint = response
        .extensions()
        .get::<AnsweredFor>()
        .map(|e| e.0.clone())
        .unwrap_or_default();
    tracing::info!(
        target: "modelgate::access",
        method = "POST",
        path = %path,
        status = response.status().as_u16(),
        grpc_status = code,
        endpoint = %endpoint,
        served_entity = %header("served-model-name"),
        duration_ms = started.elapsed().as_secs_f64() * 1000.0,
        request_id = %header("x-request-id"),
        "request"
    );
}

impl<S: NamedService> NamedService for Guarded<S> {
    const NAME: &'static str = S::NAME;
}

/// The class of a method of the service: the health probes, or the rest (query).
fn class_of(path: &str) -> RouteClass {
    match path.rsplit('/').next() {
        Some("ServerLive" | "ServerReady") => RouteClass::Health,
        _ => RouteClass::Query,
    }
}

impl<S, B> Service<http::Request<B>> for Guarded<S>
where
    S: Service<http::Request<Metered<B>>, Response = http::Response<Body>>,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = Either<Logged<S::Future>, Ready<Result<http::Response<Body>, S::Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let class = class_of(req.uri().path());
        let authorization = req.headers().get("authorization").map(|v| v.as_bytes());
        // Any grant might do until the model is known: only an absent or unknown token stops here.
        let maybe = |_: &str| Some(PermissionLevel::CanManage);
        let logged = self
            .access_log
            .then(|| (req.uri().path().to_owned(), Instant::now()));
        match self.auth.check(class, false, authorization, false, &maybe) {
            Ok(_) => {
                let hold: SharedHold = Arc::new(std::sync::Mutex::new(self.budget.hold()));
                let infer = req.uri().path().ends_with("/ModelInfer");
                let limits = infer.then_some((self.limits, self.max_message));
                let meters = (self.budget.clone(), self.metrics.clone());
                let req = req.map(|body| Metered::new(body, meters, hold.clone(), limits));
                Either::Left(Logged {
                    call: Box::pin(self.inner.call(req)),
                    logged,
                    hold,
                })
            }
            Err(e) => {
                let refused = status_of(&e).into_http();
                if let Some((path, started)) = logged {
                    access_line(&path, started, &refused);
                }
                Either::Right(ready(Ok(refused)))
            }
        }
    }
}

/// A call's answer, logged (with `log.access`) when it is ready; the call's share of the body
/// budget is held until then.
pub struct Logged<F> {
    call: std::pin::Pin<Box<F>>,
    logged: Option<(String, Instant)>,
    hold: SharedHold,
}

impl<F, E> std::future::Future for Logged<F>
where
    F: std::future::Future<Output = Result<http::Response<Body>, E>>,
{
    type Output = F::Output;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        let out = std::task::ready!(this.call.as_mut().poll(cx));
        if let (Ok(response), Some((path, started))) = (&out, &this.logged) {
            access_line(path, *started, response);
        }
        // The call's share of the budget goes with its answer until it is sent.
        let hold = this.hold.clone();
        Poll::Ready(out.map(|r| r.map(|body| Body::new(HeldAnswer::new(body, hold)))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_probes_are_health_and_the_rest_query() {
        assert_eq!(
            class_of("/inference.GRPCInferenceService/ServerLive"),
            RouteClass::Health
        );
        assert_eq!(
            class_of("/inference.GRPCInferenceService/ServerReady"),
            RouteClass::Health
        );
        assert_eq!(
            class_of("/inference.GRPCInferenceService/ModelInfer"),
            RouteClass::Query
        );
        assert_eq!(class_of("/other.Service/Anything"), RouteClass::Query);
    }
}
