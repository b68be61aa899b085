//! Error kinds of the request path and their one mapping to an HTTP status and an error code.
//!
//! The codes are MLflow's `ErrorCode` names, which Databricks Model Serving answers too, so
//! MLflow and Databricks clients recognise them. The V2 protocol renders the same error as
//! `{"error": message}` (see `http`).

use actix_web::http::StatusCode;

/// An error of one request: the caller sees `message`, the status and the code.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// The body is not parseable at all (bad JSON, bad CSV).
    #[error("{0}")]
    Malformed(String),
    /// The body parses but does not fit the protocol or the model's schema.
    #[error("{0}")]
    BadRequest(String),
    /// Unknown endpoint, model or version.
    #[error("{0}")]
    NotFound(String),
    /// A content type the route does not take.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// The inference queue is full: the caller may retry.
    #[error("{0}")]
    Overloaded(String),
    /// The endpoint has no loaded model yet, or the server is shutting down.
    #[error("{0}")]
    Unavailable(String),
    /// The body is well-formed but cannot be scored as asked: a feature the policy rejects
    /// when it is missing or stale, or a null the model cannot take.
    #[error("{0}")]
    Unprocessable(String),
    /// The engine failed on input that passed validation.
    #[error("{0}")]
    Internal(String),
    /// No bearer token, or one that is not known.
    #[error("{0}")]
    Unauthenticated(String),
    /// A known token without the scope the route needs.
    #[error("{0}")]
    PermissionDenied(String),
    /// A rate limit or the concurrency bound: retry after `retry_after_s` seconds.
    #[error("{message}")]
    TooManyRequests { message: String, retry_after_s: u64 },
    /// The request took longer than `server.request_timeout_ms`.
    #[error("{0}")]
    DeadlineExceeded(String),
    /// A bound on what one request (or all requests together) may make the gateway hold.
    #[error("{message}")]
    LimitExceeded { limit: Limit, message: String },
    /// A config or request whose fields break rules, each named (field, what is wrong).
    #[error("{message}")]
    InvalidParameters {
        message: String,
        violations: Vec<(String, String)>,
    },
    /// What the caller would create exists already.
    #[error("{0}")]
    AlreadyExists(String),
    /// The resource is in a state that refuses the call now (an update in progress).
    #[error("{0}")]
    Conflict(String),
}

/// The wire protocol a request speaks: decides the shape of its error body and its
/// `protocol` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// MLflow / Databricks scoring and REST: `{"error_code", "message"}`.
    Mlflow,
    /// Open Inference Protocol V2: `{"error"}`.
    V2,
    /// KServe's V1 prediction protocol: `{"error"}` too.
    KserveV1,
    /// Open Inference Protocol V2 over gRPC (errors are gRPC statuses; logged as V2's).
    V2Grpc,
}

impl Protocol {
    pub const ALL: [Protocol; 4] = [
        Protocol::Mlflow,
        Protocol::V2,
        Protocol::KserveV1,
        Protocol::V2Grpc,
    ];

    /// The `protocol` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mlflow => "mlflow",
            Self::V2 => "v2",
            Self::KserveV1 => "kserve_v1",
            Self::V2Grpc => "v2_grpc",
        }
    }
}

/// Every bound a caller can run into, each a setting, named in its error and counted in
/// `modelgate_limit_refusals_total{limit}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Limit {
    BodyBytes,
    InflightBodyBytes,
    BodyReadTimeout,
    Columns,
    Rows,
    Cells,
    StringBytes,
    IdBytes,
    Outputs,
    ResponseBytes,
    StreamsPerConnection,
    LabelKeys,
    Labels,
    /// `server.request_timeout_ms` as a bound on CPU time: a job whose caller has gone.
    Deadline,
    /// `inference_log.queue_bytes`, for an endpoint whose `backpressure` is `reject`.
    InferenceLogQueue,
}

impl Limit {
    pub const ALL: [Limit; 15] = [
        Limit::BodyBytes,
        Limit::InflightBodyBytes,
        Limit::BodyReadTimeout,
        Limit::Columns,
        Limit::Rows,
        Limit::Cells,
        Limit::StringBytes,
        Limit::IdBytes,
        Limit::Outputs,
        Limit::ResponseBytes,
        Limit::StreamsPerConnection,
        Limit::LabelKeys,
        Limit::Labels,
        Limit::Deadline,
        Limit::InferenceLogQueue,
    ];

    /// The `limit` label value.
    pub fn name(self) -> &'static str {
        match self {
            Limit::BodyBytes => "body_bytes",
            Limit::InflightBodyBytes => "inflight_body_bytes",
            Limit::BodyReadTimeout => "body_read_timeout",
            Limit::Columns => "columns",
            Limit::Rows => "rows",
            Limit::Cells => "cells",
            Limit::StringBytes => "string_bytes",
            Limit::IdBytes => "id_bytes",
            Limit::Outputs => "outputs",
            Limit::ResponseBytes => "response_bytes",
            Limit::StreamsPerConnection => "streams_per_connection",
            Limit::LabelKeys => "label_keys",
            Limit::Labels => "labels",
            Limit::Deadline => "deadline",
            Limit::InferenceLogQueue => "inference_log_queue",
        }
    }

    /// 413 for sizes, 400 for shapes, 408 for a body that does not arrive, 429/503 for what
    /// all callers share.
    pub fn status(self) -> StatusCode {
        match self {
            Limit::BodyBytes
            | Limit::Cells
            | Limit::StringBytes
            | Limit::IdBytes
            | Limit::ResponseBytes
            | Limit::Labels => StatusCode::PAYLOAD_TOO_LARGE,
            Limit::Columns | Limit::Rows | Limit::Outputs | Limit::LabelKeys => {
                StatusCode::BAD_REQUEST
            }
            Limit::BodyReadTimeout => StatusCode::REQUEST_TIMEOUT,
            Limit::InflightBodyBytes => StatusCode::SERVICE_UNAVAILABLE,
            Limit::StreamsPerConnection | Limit::InferenceLogQueue => StatusCode::TOO_MANY_REQUESTS,
            Limit::Deadline => StatusCode::GATEWAY_TIMEOUT,
        }
    }
}

impl RequestError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Malformed(_) | Self::BadRequest(_) | Self::InvalidParameters { .. } => {
                StatusCode::BAD_REQUEST
            }
            Self::AlreadyExists(_) | Self::Conflict(_) => StatusCode::CONFLICT,
            Self::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Overloaded(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            Self::PermissionDenied(_) => StatusCode::FORBIDDEN,
            Self::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::DeadlineExceeded(_) => StatusCode::GATEWAY_TIMEOUT,
            Self::LimitExceeded { limit, .. } => limit.status(),
        }
    }

    /// MLflow `ErrorCode` name for the JSON body.
    pub fn code(&self) -> &'static str {
        match self {
            // MLflow's scoring server answers unparseable bodies with BAD_REQUEST too.
            Self::Malformed(_) => "BAD_REQUEST",
            Self::BadRequest(_) | Self::Unprocessable(_) => "BAD_REQUEST",
            Self::NotFound(_) => "RESOURCE_DOES_NOT_EXIST",
            Self::InvalidParameters { .. } => "INVALID_PARAMETER_VALUE",
            Self::AlreadyExists(_) => "RESOURCE_ALREADY_EXISTS",
            Self::Conflict(_) => "RESOURCE_CONFLICT",
            Self::UnsupportedMediaType(_) => "BAD_REQUEST",
            Self::Overloaded(_) => "TEMPORARILY_UNAVAILABLE",
            Self::Unavailable(_) => "TEMPORARILY_UNAVAILABLE",
            Self::Internal(_) => "INTERNAL_ERROR",
            Self::Unauthenticated(_) => "UNAUTHENTICATED",
            Self::PermissionDenied(_) => "PERMISSION_DENIED",
            // Databricks' throttling code: clients back off and retry.
            Self::TooManyRequests { .. } => "REQUEST_LIMIT_EXCEEDED",
            Self::DeadlineExceeded(_) => "DEADLINE_EXCEEDED",
            // Shared budgets are worth a retry; a request over its own bounds is not (not
            // REQUEST_LIMIT_EXCEEDED: MLflow and Databricks clients read that as throttling
            // and retry a body that can never succeed).
            Self::LimitExceeded { limit, .. } => match limit {
                Limit::InflightBodyBytes => "TEMPORARILY_UNAVAILABLE",
                Limit::StreamsPerConnection | Limit::InferenceLogQueue => "REQUEST_LIMIT_EXCEEDED",
                Limit::Deadline => "DEADLINE_EXCEEDED",
                _ => "BAD_REQUEST",
            },
        }
    }

    /// Every value [`RequestError::code`] can take.
    pub const CODES: [&'static str; 11] = [
        "BAD_REQUEST",
        "INVALID_PARAMETER_VALUE",
        "RESOURCE_DOES_NOT_EXIST",
        "RESOURCE_ALREADY_EXISTS",
        "RESOURCE_CONFLICT",
        "TEMPORARILY_UNAVAILABLE",
        "INTERNAL_ERROR",
        "UNAUTHENTICATED",
        "PERMISSION_DENIED",
        "REQUEST_LIMIT_EXCEEDED",
        "DEADLINE_EXCEEDED",
    ];

    /// Seconds a client should wait before retrying, when it should.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            // The queue drains in milliseconds.
            Self::Overloaded(_) => Some(1),
            Self::TooManyRequests { retry_after_s, .. } => Some(*retry_after_s),
            Self::LimitExceeded {
                limit:
                    Limit::InflightBodyBytes | Limit::StreamsPerConnection | Limit::InferenceLogQueue,
                ..
            } => Some(1),
            _ => None,
        }
    }

    /// The error body of `protocol`.
    pub fn body(&self, protocol: Protocol) -> String {
        match protocol {
            Protocol::V2 | Protocol::KserveV1 | Protocol::V2Grpc => self.v2_body(),
            Protocol::Mlflow => self.mlflow_body(),
        }
    }

    /// The MLflow / Databricks JSON error body; invalid fields listed in `details` as
    /// `google.rpc.BadRequest`, as Databricks details its errors.
    pub fn mlflow_body(&self) -> String {
        let mut body =
            serde_json::json!({ "error_code": self.code(), "message": self.to_string() });
        if let Self::InvalidParameters { violations, .. } = self {
            if violations.is_empty() {
                return body.to_string();
            }
            body["details"] = serde_json::json!([{
                "@type": "type.googleapis.com/google.rpc.BadRequest",
                "field_violations": violations
                    .iter()
                    .map(|(field, description)| serde_json::json!({"field": field, "description": description}))
                    .collect::<Vec<_>>(),
            }]);
        }
        body.to_string()
    }

    /// The Open Inference Protocol V2 error body.
    pub fn v2_body(&self) -> String {
        serde_json::json!({ "error": self.to_string() }).to_string()
    }

    pub fn bad(msg: impl Into<String>) -> Self {
        Self::BadRequest(msg.into())
    }

    /// `what` is over `limit`: "the request has 40000 columns, over the limit of 2048
    /// (limits.max_columns)".
    pub fn limit(limit: Limit, message: impl Into<String>) -> Self {
        Self::LimitExceeded {
            limit,
            message: message.into(),
        }
    }

    /// The bound this error is, when it is one.
    pub fn exceeded(&self) -> Option<Limit> {
        match self {
            Self::LimitExceeded { limit, .. } => Some(*limit),
            _ => None,
        }
    }
}

pub type RequestResult<T> = Result<T, RequestError>;
