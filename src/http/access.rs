//! The access log (`log.access`): one line per request, refused ones included, with target
//! `modelgate::access` so it can be filtered or routed apart (`RUST_LOG`). Bodies, tokens and
//! query strings are never in it.

use std::time::Instant;

use actix_web::dev::{ServiceRequest, ServiceResponse};

use super::handlers::{REQUEST_ID_HEADER, SERVED_MODEL_HEADER};
use super::routes;

/// What the line needs from the request, taken when it arrives.
pub struct Started {
    method: actix_web::http::Method,
    path: String,
    at: Instant,
}

impl Started {
    pub fn of(req: &ServiceRequest) -> Self {
        Self {
            method: req.method().clone(),
            path: req.path().to_owned(),
            at: Instant::now(),
        }
    }

    /// Writes the line for the answer.
    pub fn log<B>(&self, response: &ServiceResponse<B>) {
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned()
        };
        tracing::info!(
            target: "modelgate::access",
            method = %self.method,
            path = %self.path,
            status = response.status().as_u16(),
            endpoint = routes::endpoint_of(&self.path).unwrap_or(""),
            served_entity = %header(SERVED_MODEL_HEADER),
            duration_ms = self.at.elapsed().as_secs_f64() * 1000.0,
            request_id = %header(REQUEST_ID_HEADER),
            "request"
        );
    }
}
