//! modelgate: a low-latency model-serving gateway for ONNX models from an MLflow-style registry.
//!
//! [`start`] loads every endpoint's model and binds the HTTP server; [`Started::serve_until`]
//! serves until a shutdown signal, then drains. [`run`] does both; `main` and tests call it.

pub mod endpoint;
pub mod engine;
pub mod error;
pub mod gateway;
pub mod http;
pub mod metrics;
pub mod protocol;
pub mod registry;
pub mod settings;

use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use actix_web::{web, HttpServer};
use tracing::{info, warn};

use crate::endpoint::loader::{load_served_entity, LoadContext, LoadError};
use crate::endpoint::Endpoint;
use crate::engine::pool::InferencePool;
use crate::engine::{EngineError, Engines};
use crate::gateway::Gateway;
use crate::metrics::Metrics;
use crate::registry::file::FileRegistry;
use crate::registry::Registry;
use crate::settings::{Settings, SettingsError};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Settings(#[from] SettingsError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("endpoint '{endpoint}' cannot load its model: {source}")]
    Load {
        endpoint: String,
        source: Box<LoadError>,
    },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("the server failed: {0}")]
    Serve(std::io::Error),
}

/// A gateway with its models loaded and its socket bound, not yet serving.
pub struct Started {
    pub addr: SocketAddr,
    pub gateway: Arc<Gateway>,
    listener: TcpListener,
    settings: Settings,
}

/// Installs ring as the process-wide rustls provider (once; later calls are no-ops).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Loads every endpoint's model (validated and warmed) and binds the listener.
pub async fn start(settings: Settings) -> Result<Started, StartError> {
    install_crypto_provider();
    settings.validate()?;
    let workers = settings.inference_workers();
    let engines = Engines::init(
        settings.engine.ort_dylib_path.clone(),
        workers,
        settings.engine.require_ort,
    )?;
    match engines.ort_problem() {
        None => info!("ONNX Runtime loaded; engine 'auto' uses ort"),
        Some(p) => warn!("ONNX Runtime unavailable ({p}); engine 'auto' uses tract"),
    }
    let pool = InferencePool::new(workers, settings.inference.queue_capacity);
    let metrics = Arc::new(Metrics::new());
    let registry = FileRegistry::new(settings.registry.path.clone());
    info!("registry: {}", registry.describe());

    let loaded = {
        let (settings, pool, metrics) = (settings.clone(), pool.clone(), metrics.clone());
        tokio::task::spawn_blocking(move || {
            load_all(&settings, &engines, &registry, &pool, &metrics)
        })
        .await
        .map_err(|e| StartError::Serve(std::io::Error::other(e.to_string())))??
    };
    let gateway = Arc::new(Gateway::new(
        loaded,
        pool,
        metrics,
        settings.inference.max_batch_rows,
    ));
    let addr = settings.listen_addr()?;
    let listener = TcpListener::bind(addr).map_err(|source| StartError::Bind {
        addr: addr.to_string(),
        source,
    })?;
    let addr = listener.local_addr().map_err(|source| StartError::Bind {
        addr: addr.to_string(),
        source,
    })?;
    Ok(Started {
        addr,
        gateway,
        listener,
        settings,
    })
}

fn load_all(
    settings: &Settings,
    engines: &Engines,
    registry: &dyn Registry,
    pool: &Arc<InferencePool>,
    metrics: &Metrics,
) -> Result<Vec<Arc<Endpoint>>, StartError> {
    let ctx = LoadContext {
        registry,
        engines,
        pool,
        inference: &settings.inference,
        default_engine: settings.engine.default,
    };
    let mut endpoints = Vec::new();
    for ep_settings in &settings.endpoints {
        let endpoint = Arc::new(Endpoint::new(ep_settings.clone()));
        let entity_cfg = &ep_settings.served_entities[0];
        let started = std::time::Instant::now();
        match load_served_entity(&ctx, entity_cfg) {
            Ok(done) => {
                let e = &done.entity;
                info!(
                    endpoint = %endpoint.name, served_entity = %e.name, model = %e.model, version = %e.version,
                    engine = %e.engine, outputs = e.outputs.kind(), seconds = done.seconds, "model loaded, validated and warmed"
                );
                metrics
                    .model_load_duration
                    .with_label_values(&[&endpoint.name, "success"])
                    .observe(done.seconds);
                metrics
                    .served_model_info
                    .with_label_values(&[
                        &endpoint.name,
                        &e.name,
                        &e.model,
                        &e.version,
                        &e.engine.to_string(),
                    ])
                    .set(1);
                endpoint.publish(done.entity);
            }
            Err(source) => {
                metrics
                    .model_load_duration
                    .with_label_values(&[&endpoint.name, "failure"])
                    .observe(started.elapsed().as_secs_f64());
                return Err(StartError::Load {
                    endpoint: endpoint.name.clone(),
                    source: Box::new(source),
                });
            }
        }
        endpoints.push(endpoint);
    }
    Ok(endpoints)
}

impl Started {
    /// A curl command that scores the first endpoint's input example, for people trying it out.
    pub fn example_curl(&self) -> Option<String> {
        let endpoint = self.gateway.endpoints().into_iter().next()?;
        let example = endpoint.served()?.input_example.clone()?;
        let value: serde_json::Value = serde_json::from_slice(&example).ok()?;
        let body = value.to_string();
        (!body.contains('\'')).then(|| {
            format!(
                "curl -s http://{}/serving-endpoints/{}/invocations -H 'Content-Type: application/json' -d '{body}'",
                self.addr, endpoint.name
            )
        })
    }

    /// Serves until `shutdown` resolves; then readiness goes false and in-flight requests get
    /// up to `server.shutdown_timeout_seconds` to finish.
    pub async fn serve_until(self, shutdown: impl Future<Output = ()>) -> Result<(), StartError> {
        let state = web::Data::new(http::AppState {
            gateway: self.gateway.clone(),
            max_body_bytes: self.settings.server.max_body_bytes,
        });
        let timeout = self.settings.server.shutdown_timeout_seconds;
        let server = HttpServer::new(move || http::app(state.clone()))
            .workers(self.settings.http_workers())
            .disable_signals()
            .shutdown_timeout(timeout)
            .listen(self.listener)
            .map_err(StartError::Serve)?
            .run();
        let handle = server.handle();
        let gateway = self.gateway.clone();
        let serving = tokio::spawn(server);
        info!("modelgate listening on http://{}", self.addr);
        shutdown.await;
        info!("shutting down: readiness off, draining in-flight requests (up to {timeout} s)");
        gateway.begin_shutdown();
        handle.stop(true).await;
        match tokio::time::timeout(Duration::from_secs(timeout + 5), serving).await {
            Ok(Ok(result)) => result.map_err(StartError::Serve),
            Ok(Err(e)) => Err(StartError::Serve(std::io::Error::other(e.to_string()))),
            Err(_) => Ok(()),
        }
    }
}

/// Loads, binds and serves until `shutdown` resolves.
pub async fn run(settings: Settings, shutdown: impl Future<Output = ()>) -> Result<(), StartError> {
    start(settings).await?.serve_until(shutdown).await
}
