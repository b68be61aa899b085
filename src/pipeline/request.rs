//! What a request brings to the pipeline and what it takes back.

use std::sync::Arc;
use std::time::Instant;

use actix_web::http::header::HeaderMap;
use bytes::Bytes;

use crate::error::{Protocol, RequestError};
use crate::inference_log::{RequestId, ScoredRows};
use crate::metrics::MIXED_ARMS;
use crate::protocol::frame::Frame;
use crate::version::VersionMeta;

pub use crate::inference_log::record::Timings;

/// The wire format of a request body.
#[derive(Debug, Clone)]
pub enum Format {
    MlflowJson,
    /// KServe V1 `:predict`: `instances` or `inputs`, read as MLflow's scoring JSON reads them.
    KserveV1,
    MlflowCsv,
    /// V2 `infer`; `version` when the path names one; `header_len` when the body carries
    /// raw tensors after a JSON header that long (`Inference-Header-Content-Length`).
    V2 {
        version: Option<String>,
        header_len: Option<usize>,
        /// Came over gRPC (the body is its request, put in the binary REST form).
        grpc: bool,
    },
}

impl Invocation<'_> {
    /// The request body the inference log keeps: of a call with raw tensors, its JSON header
    /// (the tensors are in the predictions table's columns).
    pub fn logged_body(&self) -> Bytes {
        match self.format {
            Format::V2 {
                header_len: Some(n),
                ..
            } => self.body.slice(..n.min(self.body.len())),
            _ => self.body.clone(),
        }
    }
}

impl Format {
    /// The protocol that answers (errors included).
    pub fn protocol(&self) -> Protocol {
        match self {
            Self::MlflowJson | Self::MlflowCsv => Protocol::Mlflow,
            Self::KserveV1 => Protocol::KserveV1,
            Self::V2 { grpc: true, .. } => Protocol::V2Grpc,
            Self::V2 { .. } => Protocol::V2,
        }
    }
}

pub struct Invocation<'a> {
    pub endpoint: String,
    pub format: Format,
    pub body: Bytes,
    pub received: Instant,
    /// The request's headers, for the routing-key header.
    pub headers: Option<&'a HeaderMap>,
    /// A served entity named by the path (`/served-models/{name}/invocations`): no routing.
    pub pin: Option<String>,
    /// The request's id (`x-request-id`; `databricks_request_id` in the inference table).
    pub request_id: RequestId,
    /// Who sent it: the bearer token's name, else the client address (rate limits per user,
    /// the inference table's `requester`).
    pub requester: Option<Arc<str>>,
}

/// A successful answer: the encoded body and who served it.
pub struct Answer {
    pub body: Bytes,
    /// The length of the body's JSON when raw tensors follow it (V2's binary tensor data
    /// extension): the answer's `Inference-Header-Content-Length`.
    pub json_len: Option<usize>,
    pub served: ServedBy,
}

/// A failed request, with the served entity when it was known.
#[derive(Debug)]
pub struct Failure {
    pub error: RequestError,
    pub served_name: Option<Arc<str>>,
}

impl Failure {
    /// Maps an error met while `name` was serving.
    pub fn by(name: &Arc<str>) -> impl Fn(RequestError) -> Failure + Copy + '_ {
        move |error| Failure {
            error,
            served_name: Some(name.clone()),
        }
    }
}

impl From<RequestError> for Failure {
    fn from(error: RequestError) -> Self {
        Self {
            error,
            served_name: None,
        }
    }
}

/// Who scored a request: one served entity (its name and the version it served), or several
/// when a batch was split across arms. Names are shared, not copied, per request.
#[derive(Clone)]
pub enum ServedBy {
    One(Arc<str>, Arc<VersionMeta>),
    Mixed(Vec<(Arc<str>, Arc<VersionMeta>)>),
}

impl ServedBy {
    /// The `served_entity` label of the request's metrics.
    pub fn label(&self) -> &str {
        match self {
            Self::One(name, _) => name,
            Self::Mixed(_) => MIXED_ARMS,
        }
    }

    /// `served-model-name`: the served entity, or the arms joined by `, `.
    pub fn names(&self) -> std::borrow::Cow<'_, str> {
        match self {
            Self::One(name, _) => std::borrow::Cow::Borrowed(name),
            Self::Mixed(list) => list
                .iter()
                .map(|(n, _)| &**n)
                .collect::<Vec<_>>()
                .join(", ")
                .into(),
        }
    }

    /// `served_entity_id` of the inference table: the served entity, or the arms joined by `, `.
    pub fn id(&self) -> Arc<str> {
        match self {
            Self::One(name, _) => name.clone(),
            Self::Mixed(_) => Arc::from(&*self.names()),
        }
    }

    /// `served-model-version`: the model version each of them served.
    pub fn versions(&self) -> std::borrow::Cow<'_, str> {
        match self {
            Self::One(_, e) => std::borrow::Cow::Borrowed(&e.version),
            Self::Mixed(list) => list
                .iter()
                .map(|(_, e)| e.version.as_str())
                .collect::<Vec<_>>()
                .join(", ")
                .into(),
        }
    }
}

/// A scored request, from its job (on a pool worker or inline).
pub struct Scored {
    pub body: Vec<u8>,
    /// The length of the body's JSON when raw tensors follow it.
    pub json_len: Option<usize>,
    pub timings: Timings,
    pub served: ServedBy,
    /// The decoded request, when shadow routes still have to get their copies
    /// ([`super::shadow::mirror`]).
    pub shadow: Option<Arc<Frame>>,
    /// What the inference log keeps of the scored rows (when the request is logged).
    pub logged: Vec<ScoredRows>,
    /// The caller's own id of the request (`client_request_id`, V2 `id`), when logged.
    pub client_request_id: Option<String>,
    /// A traced request's stages, for its spans (empty when it is not traced).
    pub marks: Vec<super::marks::Mark>,
}
