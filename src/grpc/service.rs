//! `inference.GRPCInferenceService`: health and metadata from the gateway's views, and
//! `ModelInfer` through the same pipeline as REST (routing, features, shadow, logging,
//! monitoring, limits), with the bearer token in the `authorization` metadata.

use std::sync::Arc;
use std::time::Instant;

use tonic::{Request, Response, Status};

use super::convert::{from_binary_body, to_binary_body};
use super::proto::grpc_inference_service_server::GrpcInferenceService;
use super::proto::{self as pb, model_metadata_response::TensorMetadata};
use crate::error::{Protocol, RequestError};
use crate::http::auth::{Auth, Caller, RouteClass};
use crate::http::proxy::address_text;
use crate::inference_log::RequestId;
use crate::pipeline::{Format, Gateway, Invocation};
use crate::settings::governance::granted;

pub struct InferenceService {
    pub gateway: Arc<Gateway>,
    pub auth: Arc<Auth>,
}

/// A refusal as a gRPC status, by the HTTP status REST would answer.
pub fn status_of(e: &RequestError) -> Status {
    use tonic::Code;
    let code = match e.status().as_u16() {
        400 | 413 | 415 | 422 => Code::InvalidArgument,
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        404 => Code::NotFound,
        408 | 504 => Code::DeadlineExceeded,
        409 => Code::FailedPrecondition,
        429 => Code::ResourceExhausted,
        503 => Code::Unavailable,
        _ => Code::Internal,
    };
    Status::new(code, e.to_string())
}

impl InferenceService {
    /// The caller of a request of `class` about endpoint `model` (none for open routes).
    fn admit<T>(
        &self,
        req: &Request<T>,
        class: RouteClass,
        model: Option<&str>,
    ) -> Result<Option<Caller>, Status> {
        let authorization = req.metadata().get("authorization").map(|v| v.as_bytes());
        let grant = |token: &str| {
            let ep = self.gateway.endpoint(model?)?;
            granted(&ep.generation().settings.permissions, token)
        };
        self.auth
            .check(class, false, authorization, false, &grant)
            .map_err(|e| status_of(&e))
    }
}

/// The caller's `x-request-id` metadata when well formed, else a fresh id.
fn request_id<T>(req: &Request<T>) -> RequestId {
    RequestId::from_caller(req.metadata().get("x-request-id").map(|v| v.as_bytes()))
}

/// A refusal that names its request's id, as REST's answers do.
fn with_id(mut status: Status, id: &RequestId) -> Status {
    if let Ok(v) = id.text.parse() {
        status.metadata_mut().insert("x-request-id", v);
    }
    status
}

fn version(v: &str) -> Option<&str> {
    (!v.is_empty()).then_some(v)
}

#[tonic::async_trait]
impl GrpcInferenceService for InferenceService {
    async fn server_live(
        &self,
        req: Request<pb::ServerLiveRequest>,
    ) -> Result<Response<pb::ServerLiveResponse>, Status> {
        self.admit(&req, RouteClass::Health, None)?;
        Ok(Response::new(pb::ServerLiveResponse { live: true }))
    }

    async fn server_ready(
        &self,
        req: Request<pb::ServerReadyRequest>,
    ) -> Result<Response<pb::ServerReadyResponse>, Status> {
        self.admit(&req, RouteClass::Health, None)?;
        Ok(Response::new(pb::ServerReadyResponse {
            ready: self.gateway.is_ready(),
        }))
    }

    async fn model_ready(
        &self,
        req: Request<pb::ModelReadyRequest>,
    ) -> Result<Response<pb::ModelReadyResponse>, Status> {
        let m = req.get_ref();
        self.admit(&req, RouteClass::Query, Some(&m.name))?;
        let ready = match self.gateway.v2_target(&m.name, version(&m.version)) {
            Ok(_) => true,
            Err(RequestError::Unavailable(_)) => false,
            Err(e) => return Err(status_of(&e)),
        };
        Ok(Response::new(pb::ModelReadyResponse { ready }))
    }

    async fn server_metadata(
        &self,
        req: Request<pb::ServerMetadataRequest>,
    ) -> Result<Response<pb::ServerMetadataResponse>, Status> {
        self.admit(&req, RouteClass::Query, None)?;
        Ok(Response::new(pb::ServerMetadataResponse {
            name: "modelgate".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            extensions: Vec::new(),
        }))
    }

    async fn model_metadata(
        &self,
        req: Request<pb::ModelMetadataRequest>,
    ) -> Result<Response<pb::ModelMetadataResponse>, Status> {
        let m = req.get_ref();
        self.admit(&req, RouteClass::Query, Some(&m.name))?;
        let v = self
            .gateway
            .v2_model_metadata(&m.name, version(&m.version))
            .map_err(|e| status_of(&e))?;
        let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
        let tensors = |v: &serde_json::Value| -> Vec<TensorMetadata> {
            v.as_array()
                .into_iter()
                .flatten()
                .map(|t| TensorMetadata {
                    name: text(&t["name"]),
                    datatype: text(&t["datatype"]),
                    shape: t["shape"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(serde_json::Value::as_i64)
                        .collect(),
                })
                .collect()
        };
        Ok(Response::new(pb::ModelMetadataResponse {
            name: text(&v["name"]),
            versions: v["versions"]
                .as_array()
                .into_iter()
                .flatten()
                .map(text)
                .collect(),
            platform: text(&v["platform"]),
            inputs: tensors(&v["inputs"]),
            outputs: tensors(&v["outputs"]),
        }))
    }

    async fn model_infer(
        &self,
        req: Request<pb::ModelInferRequest>,
    ) -> Result<Response<pb::ModelInferResponse>, Status> {
        let received = Instant::now();
        let request_id = request_id(&req);
        let model = req.get_ref().model_name.clone();
        let caller = self.admit(&req, RouteClass::Query, Some(&model))?;
        let requester = caller
            .map(|c| c.0)
            .or_else(|| req.remote_addr().map(|a| address_text(a.ip())));
        let headers = routing_headers(req.metadata());
        let infer = req.into_inner();
        let limits = self.gateway.decode_limits();
        let (body, header_len) = to_binary_body(&infer, limits).map_err(|e| {
            self.gateway
                .record_rejected(&model, Protocol::V2Grpc, &e, received, &request_id);
            with_id(status_of(&e), &request_id)
        })?;
        let invocation = Invocation {
            endpoint: model,
            format: Format::V2 {
                version: version(&infer.model_version).map(str::to_owned),
                header_len: Some(header_len),
                grpc: true,
            },
            body: body.into(),
            received,
            headers: Some(&headers),
            pin: None,
            request_id: request_id.clone(),
            requester,
        };
        let answer = self
            .gateway
            .invoke(invocation)
            .await
            .map_err(|f| with_id(status_of(&f.error), &request_id))?;
        let served = answer.served.names().to_string();
        let endpoint = infer.model_name.clone();
        let mut response = Response::new(
            from_binary_body(answer.body, answer.json_len)
                .map_err(|e| with_id(status_of(&e), &request_id))?,
        );
        let meta = response.metadata_mut();
        if let Ok(v) = request_id.text.parse() {
            meta.insert("x-request-id", v);
        }
        if let Ok(v) = served.parse() {
            meta.insert("served-model-name", v);
        }
        response
            .extensions_mut()
            .insert(super::guard::AnsweredFor(endpoint));
        Ok(response)
    }
}

/// The call's ASCII metadata as HTTP headers, for the routing key header of sticky splits.
fn routing_headers(meta: &tonic::metadata::MetadataMap) -> actix_web::http::header::HeaderMap {
    use actix_web::http::header::{HeaderName, HeaderValue};
    let mut headers = actix_web::http::header::HeaderMap::new();
    for kv in meta.iter() {
        if let tonic::metadata::KeyAndValueRef::Ascii(k, v) = kv {
            if k.as_str() == "authorization" {
                continue;
            }
            if let (Ok(k), Ok(v)) = (
                HeaderName::from_bytes(k.as_str().as_bytes()),
                HeaderValue::from_bytes(v.as_bytes()),
            ) {
                headers.append(k, v);
            }
        }
    }
    headers
}
