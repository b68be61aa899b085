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

#[cfg(test)]
mod tests {
    use actix_web::{test, web, App, HttpResponse};

    use super::*;
    use crate::error::Limit;

    async fn refuse(kind: web::Path<String>) -> Result<HttpResponse, ApiError> {
        let error = match kind.as_str() {
            "invalid" => ControlError::Invalid(vec![crate::endpoint::config::Violation {
                key: "config.served_entities[0].entity_version".into(),
                message: "must not be empty".into(),
            }])
            .into(),
            "exists" => ControlError::AlreadyExists("tx".into()).into(),
            "busy" => ControlError::Busy("tx".into()).into(),
            "throttled" => RequestError::TooManyRequests {
                message: "over its rate limit".into(),
                retry_after_s: 7,
            },
            "token" => RequestError::Unauthenticated("no token".into()),
            _ => RequestError::limit(Limit::Cells, "over limits.max_cells"),
        };
        let id: Arc<str> = "req-1".into();
        let api = match kind.as_str() {
            "v2" => ApiError::v2(error),
            _ => ApiError::from(error),
        };
        Err(api.with_request_id(&id).served_by(Some("champion".into())))
    }

    /// Each core error reaches the caller with its status, code, headers and the body of the
    /// route's protocol, through a real actix service.
    #[actix_web::test]
    async fn core_errors_answer_with_status_code_headers_and_protocol_body() {
        let app = test::init_service(App::new().route("/{kind}", web::get().to(refuse))).await;
        let call = |kind: &'static str| {
            let req = test::TestRequest::get()
                .uri(&format!("/{kind}"))
                .to_request();
            let app = &app;
            async move {
                let resp = test::call_service(app, req).await;
                let status = resp.status().as_u16();
                let header = |name: &str| {
                    resp.headers()
                        .get(name)
                        .map(|v| v.to_str().unwrap().to_owned())
                };
                let headers = (
                    header("retry-after"),
                    header("www-authenticate"),
                    header("x-request-id"),
                    header("served-model-name"),
                );
                let body: serde_json::Value =
                    serde_json::from_slice(&test::read_body(resp).await).unwrap();
                (status, headers, body)
            }
        };
        let (status, headers, body) = call("invalid").await;
        assert_eq!(status, 400);
        assert_eq!(body["error_code"], "INVALID_PARAMETER_VALUE");
        let violation = &body["details"][0]["field_violations"][0];
        assert_eq!(
            violation["field"],
            "config.served_entities[0].entity_version"
        );
        assert_eq!(headers.2.as_deref(), Some("req-1"));
        assert_eq!(headers.3.as_deref(), Some("champion"));

        let (status, _, body) = call("exists").await;
        assert_eq!(
            (status, body["error_code"].as_str()),
            (409, Some("RESOURCE_ALREADY_EXISTS"))
        );
        let (status, _, body) = call("busy").await;
        assert_eq!(
            (status, body["error_code"].as_str()),
            (409, Some("RESOURCE_CONFLICT"))
        );

        let (status, headers, body) = call("throttled").await;
        assert_eq!((status, headers.0.as_deref()), (429, Some("7")));
        assert_eq!(body["error_code"], "REQUEST_LIMIT_EXCEEDED");

        let (status, headers, _) = call("token").await;
        assert_eq!((status, headers.1.as_deref()), (401, Some("Bearer")));

        // The same bound in V2's shape: `{"error"}` only.
        let (status, _, body) = call("v2").await;
        assert_eq!(status, 413);
        assert_eq!(body, serde_json::json!({"error": "over limits.max_cells"}));
        let (status, _, body) = call("cells").await;
        assert_eq!(
            (status, body["error_code"].as_str()),
            (413, Some("BAD_REQUEST"))
        );
    }
}
