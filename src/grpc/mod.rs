//! Open Inference Protocol V2 over gRPC (`server.grpc_listen`): tonic serves
//! `inference.GRPCInferenceService` (proto/inference.proto) on its own runtime, with as many
//! threads as the HTTP workers, and every `ModelInfer` runs the same pipeline as REST.

mod convert;
mod guard;
mod incoming;
pub mod metered;
mod service;

use std::net::SocketAddr;
use std::sync::Arc;

use tracing::{error, info};

/// The generated messages and service of proto/inference.proto.
pub mod proto {
    tonic::include_proto!("inference");
}

use proto::grpc_inference_service_server::GrpcInferenceServiceServer;

/// The bounds of the gRPC listener, from `server.*`.
pub struct GrpcLimits {
    /// The largest request message (`server.max_body_bytes`).
    pub max_message_bytes: usize,
    /// Calls in flight on one connection (`server.max_streams_per_connection`).
    pub max_streams_per_connection: usize,
    /// Connections at once (`server.max_connections`).
    pub max_connections: usize,
    /// Worker threads.
    pub threads: usize,
    /// A call's deadline from its arrival (`server.request_timeout_ms`; none for 0).
    pub request_timeout: Option<std::time::Duration>,
    /// One access line per call (`log.access`).
    pub access_log: bool,
    /// A connection with no bytes either way for this long is closed
    /// (`server.grpc_idle_timeout_seconds`).
    pub idle_timeout: std::time::Duration,
    /// Request bytes held by every call in flight, REST's included
    /// (`server.max_inflight_body_bytes`).
    pub budget: Arc<crate::http::body::BodyBudget>,
}

/// The HTTP listener's TLS config for gRPC: the same certificate (and its reloads), ALPN `h2`
/// only (gRPC is HTTP/2).
pub fn tls_config(http: &rustls::ServerConfig) -> rustls::ServerConfig {
    let mut config = http.clone();
    config.alpn_protocols = vec![b"h2".to_vec()];
    config
}

/// A running gRPC listener: stopped (calls in flight finish) when dropped or by [`GrpcServer::stop`].
pub struct GrpcServer {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl GrpcServer {
    /// Serves on `listener` until stopped; inside TLS with `tls` (`server.tls`: the HTTP
    /// listener's certificate, reloaded with it).
    pub fn start(
        listener: std::net::TcpListener,
        gateway: Arc<crate::pipeline::Gateway>,
        auth: Arc<crate::http::auth::Auth>,
        limits: GrpcLimits,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> std::io::Result<Self> {
        let scheme = if tls.is_some() { "TLS" } else { "plaintext" };
        let addr = listener.local_addr()?;
        listener.set_nonblocking(true)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(limits.threads.max(1))
            .thread_name("grpc-worker")
            .enable_all()
            .build()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let metering = guard::Metering {
            budget: limits.budget.clone(),
            limits: *gateway.decode_limits(),
            max_message: limits.max_message_bytes,
            metrics: gateway.metrics().clone(),
        };
        let service = GrpcInferenceServiceServer::new(service::InferenceService {
            gateway,
            auth: auth.clone(),
        })
        .max_decoding_message_size(limits.max_message_bytes)
        .max_encoding_message_size(usize::MAX);
        let service = guard::Guarded::new(service, auth, limits.access_log, metering);
        let thread = std::thread::Builder::new()
            .name("grpc-server".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let incoming = match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => {
                            incoming::limited(l, limits.max_connections, limits.idle_timeout, tls)
                        }
                        Err(e) => {
                            error!("gRPC listener: {e}");
                            return;
                        }
                    };
                    let mut builder = tonic::transport::Server::builder();
                    if let Some(t) = limits.request_timeout {
                        builder = builder.timeout(t);
                    }
                    let served = builder
                        // Peers that went away without closing are found and dropped.
                        .http2_keepalive_interval(Some(std::time::Duration::from_secs(30)))
                        .http2_keepalive_timeout(Some(std::time::Duration::from_secs(10)))
                        .concurrency_limit_per_connection(limits.max_streams_per_connection)
                        .max_concurrent_streams(
                            u32::try_from(limits.max_streams_per_connection).unwrap_or(u32::MAX),
                        )
                        .add_service(service)
                        .serve_with_incoming_shutdown(incoming, async {
                            let _ = stopped.await;
                        })
                        .await;
                    if let Err(e) = served {
                        error!("gRPC listener stopped: {e}");
                    }
                });
            })?;
        info!("gRPC (Open Inference Protocol V2, {scheme}) listening on {addr}");
        Ok(Self {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Stops taking calls and waits for those in flight.
    pub fn stop(mut self) {
        self.shut();
    }

    fn shut(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for GrpcServer {
    fn drop(&mut self) {
        self.shut();
    }
}
