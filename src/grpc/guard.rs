//! The token, checked from the call's headers before its message is read: a caller without a
//! known token never makes the gateway decode (and hold) a message. A known token passes here;
//! its scope, or its grant on the model the message names, is checked once the message is read.

use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::future::{ready, Either, Ready};
use tonic::body::Body;
use tonic::codegen::http;
use tonic::codegen::Service;
use tonic::server::NamedService;

use super::service::status_of;
use crate::http::auth::{Auth, RouteClass};
use crate::settings::governance::PermissionLevel;

#[derive(Clone)]
pub struct Guarded<S> {
    inner: S,
    auth: Arc<Auth>,
}

impl<S> Guarded<S> {
    pub fn new(inner: S, auth: Arc<Auth>) -> Self {
        Self { inner, auth }
    }
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
    S: Service<http::Request<B>, Response = http::Response<Body>>,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = Either<S::Future, Ready<Result<http::Response<Body>, S::Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let class = class_of(req.uri().path());
        let authorization = req.headers().get("authorization").map(|v| v.as_bytes());
        // Any grant might do until the model is known: only an absent or unknown token stops here.
        let maybe = |_: &str| Some(PermissionLevel::CanManage);
        match self.auth.check(class, false, authorization, false, &maybe) {
            Ok(_) => Either::Left(self.inner.call(req)),
            Err(e) => Either::Right(ready(Ok(status_of(&e).into_http()))),
        }
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
