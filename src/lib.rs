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

use crate::endpoint::updater::{SwapOutcome, Trigger, Updater};
use crate::endpoint::Endpoint;
use crate::engine::pool::InferencePool;
use crate::engine::{EngineError, Engines};
use crate::gateway::Gateway;
use crate::metrics::Metrics;
use crate::registry::file::FileRegistry;
use crate::registry::mlflow::MlflowRegistry;
use crate::registry::Registry;
use crate::settings::{Settings, SettingsError};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Settings(#[from] SettingsError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("registry: {0}")]
    Registry(crate::registry::RegistryError),
    #[error("endpoint '{endpoint}' cannot load its model: {message}")]
    Load { endpoint: String, message: String },
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
    pub updater: Arc<Updater>,
    _watch: Option<registry::watch::WatchHandle>,
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
    let settle = Duration::from_millis(settings.registry.settle_ms);
    let registry: Arc<dyn Registry> = match settings.registry.kind.as_str() {
        // Its blocking HTTP client must be made off the async runtime.
        "mlflow" => {
            let registry_settings = settings.registry.clone();
            Arc::new(
                tokio::task::spawn_blocking(move || MlflowRegistry::new(&registry_settings))
                    .await
                    .map_err(|e| StartError::Serve(std::io::Error::other(e.to_string())))?
                    .map_err(StartError::Registry)?,
            )
        }
        _ => Arc::new(FileRegistry::new(settings.registry.path.clone()).with_settle(settle)),
    };
    info!("registry: {}", registry.describe());
    let updater = Arc::new(Updater {
        registry,
        engines,
        pool: pool.clone(),
        inference: settings.inference.clone(),
        default_engine: settings.engine.default,
        metrics: metrics.clone(),
    });
    let endpoints: Vec<Arc<Endpoint>> = settings
        .endpoints
        .iter()
        .map(|e| Arc::new(Endpoint::new(e.clone())))
        .collect();
    {
        let (updater, endpoints) = (updater.clone(), endpoints.clone());
        tokio::task::spawn_blocking(move || load_all(&endpoints, &updater, settle))
            .await
            .map_err(|e| StartError::Serve(std::io::Error::other(e.to_string())))??;
    }
    let watch = settings.registry.watch.then(|| {
        registry::watch::spawn(
            updater.registry.watch_root().as_deref(),
            endpoints.clone(),
            updater.clone(),
            Duration::from_secs(settings.registry.poll_interval_seconds),
            settle,
        )
    });
    let gateway = Arc::new(Gateway::new(
        endpoints,
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
        updater,
        _watch: watch,
        listener,
        settings,
    })
}

/// Loads every endpoint's first version; a start-up failure is fatal (there is nothing to keep
/// serving). Files still being written are waited for, up to 100 settle periods.
fn load_all(
    endpoints: &[Arc<Endpoint>],
    updater: &Updater,
    settle: Duration,
) -> Result<(), StartError> {
    for endpoint in endpoints {
        let mut waits = 0;
        loop {
            match updater.refresh(endpoint, Trigger::Startup, false) {
                SwapOutcome::Failed(message) | SwapOutcome::RegistryUnavailable(message) => {
                    return Err(StartError::Load {
                        endpoint: endpoint.name.clone(),
                        message,
                    })
                }
                SwapOutcome::Unchanged { .. } if endpoint.served().is_none() && waits < 100 => {
                    waits += 1;
                    std::thread::sleep(settle.max(Duration::from_millis(10)));
                }
                _ => break,
            }
        }
    }
    Ok(())
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
            updater: self.updater.clone(),
            webhook_secret: self.settings.registry.webhook_secret.clone(),
            webhook_deliveries: Default::default(),
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
