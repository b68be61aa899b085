//! The one error type of the HTTP API: any core error, answered with its status, headers and
//! a JSON body in the caller's protocol (MLflow / Databricks, or V2).

use std::sync::Arc;

use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};

use crate::endpoint::control::ControlError;
use crate::error::{Protocol, RequestError};

use super::handlers::{REQUEST_ID_HEADER, SERVED_MODEL_HEADER};

/// An error answered to a caller.
#[derive(Debug)]
pub struct ApiError {
    pub error: RequestError,
    pub protocol: Protocol,
    /// The request's id, echoed in `x-request-id`.
    pub request_id: Option<Arc<str>>,
    /// The served entity that was answering, in `served-model-name`.
    pub served: Option<Arc<str>>,
}

impl ApiError {
    pub fn new(error: RequestError, protocol: Protocol) -> Self {
        Self {
            error,
            protocol,
            request_id: None,
            served: None,
        }
    }

    /// An error of a V2 route.
    pub fn v2(error: impl Into<RequestError>) -> Self {
        Self::new(error.into(), Protocol::V2)
    }

    pub fn with_request_id(mut self, id: &Arc<str>) -> Self {
        self.request_id = Some(id.clone());
        self
    }

    pub fn served_by(mut self, name: Option<Arc<str>>) -> Self {
        self.served = name;
        self
    }

    /// An internal failure of work run off the HTTP workers (`web::block`).
    pub fn blocked(what: &str, e: actix_web::error::BlockingError) -> Self {
        RequestError::Internal(format!("{what}: {e}")).into()
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.error.fmt(f)
    }
}

/// Errors of MLflow-shaped routes (scoring, the control plane) convert with `?`.
impl From<RequestError> for ApiError {
    fn from(e: RequestError) -> Self {
        Self::new(e, Protocol::Mlflow)
    }
}

impl From<ControlError> for ApiError {
    fn from(e: ControlError) -> Self {
        RequestError::from(e).into()
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.error.status()
    }

    fn error_response(&self) -> HttpResponse {
        let mut resp = HttpResponse::build(self.error.status());
        if let Some(seconds) = self.error.retry_after() {
            resp.insert_header((header::RETRY_AFTER, seconds.to_string()));
        }
        if matches!(self.error, RequestError::Unauthenticated(_)) {
            resp.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
        }
        for (name, value) in [
            (REQUEST_ID_HEADER, &self.request_id),
            (SERVED_MODEL_HEADER, &self.served),
        ] {
            if let Some(v) = value.as_deref().and_then(|v| HeaderValue::from_str(v).ok()) {
                resp.insert_header((HeaderName::from_static(name), v));
            }
        }
        resp.content_type("application/json")
            .body(self.error.body(self.protocol))
    }
}
