//! modelgate: a low-latency model-serving gateway for ONNX models from an MLflow-style registry.
//!
//! [`start`] binds the listeners; [`Started::serve`] serves them at once (`/livez` answers while
//! models download) and loads every endpoint's model in the background; [`Serving::loaded`]
//! waits for that, and [`Serving::until`] serves until a shutdown signal, then drains. [`run`]
//! does all of it.

pub mod cli;
pub mod clock;
pub mod data;
pub mod demo;
pub mod drift;
pub mod endpoint;
pub mod engine;
pub mod error;
pub mod features;
pub mod fleet;
pub mod grpc;
pub mod http;
pub mod inference_log;
pub mod metrics;
pub mod periodic;
pub mod pipeline;
pub mod progress;
pub mod promotion;
pub mod protocol;
pub mod registry;
pub mod settings;
pub(crate) mod sharded_map;
#[cfg(test)]
pub(crate) mod testing;
pub mod trace;
pub mod version;

use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use actix_web::{web, HttpServer};
use tracing::{info, warn};

use crate::clock::now_ms;
use crate::endpoint::control::ControlPlane;
use crate::endpoint::directory::Endpoints;
use crate::endpoint::updater::{SwapOutcome, Trigger, Updater};
use crate::endpoint::{Endpoint, Generation};
use crate::engine::pool::InferencePool;
use crate::engine::{EngineError, Engines};
use crate::metrics::Metrics;
use crate::pipeline::Gateway;
use crate::registry::file::FileRegistry;
use crate::registry::mlflow::MlflowRegistry;
use crate::registry::Registry;
use crate::settings::{RegistryKind, Settings, SettingsError, StoreKind};

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
    #[error(transparent)]
    State(#[from] crate::endpoint::persist::PersistError),
    #[error(transparent)]
    Trace(#[from] crate::trace::TraceError),
    #[error(transparent)]
    Features(#[from] crate::features::embedded::LoadError),
    #[error("the endpoint state file holds an invalid endpoint '{endpoint}': {message}")]
    SavedEndpoint { endpoint: String, message: String },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("the server failed: {0}")]
    Serve(std::io::Error),
    #[error("cannot start the inference-log writer: {0}")]
    InferenceLog(std::io::Error),
    #[error(transparent)]
    RedisStore(#[from] crate::features::redis_store::RedisStoreError),
    #[error("a start-up task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error(transparent)]
    Auth(#[from] crate::http::auth::AuthError),
    #[error(transparent)]
    Tls(#[from] crate::http::tls::TlsError),
    #[error("cannot start the promotion thread: {0}")]
    PromotionThread(std::io::Error),
    #[error("cannot start the fleet's sync: {0}")]
    Fleet(std::io::Error),
}

/// A gateway with its sockets bound, not yet serving; no model is loaded yet.
pub struct Started {
    pub addr: SocketAddr,
    /// The admin listener's bound address (`server.admin_listen`).
    pub admin_addr: Option<SocketAddr>,
    admin_listener: Option<TcpListener>,
    /// The gRPC listener's bound address (`server.grpc_listen`).
    pub grpc_addr: Option<SocketAddr>,
    grpc_listener: Option<TcpListener>,
    pub gateway: Arc<Gateway>,
    pub updater: Arc<Updater>,
    pub control: Arc<ControlPlane>,
    pub store: Option<Arc<crate::features::embedded::EmbeddedStore>>,
    /// Each endpoint's promotion evaluation (its thread starts with serving).
    pub promotions: Arc<crate::promotion::Promotions>,
    auth: Arc<crate::http::auth::Auth>,
    tls: Option<(rustls::ServerConfig, Arc<crate::http::tls::CertResolver>)>,
    _watch: Option<endpoint::watch::WatchHandle>,
    _store_watch: Option<crate::features::embedded::SnapshotWatch>,
    /// The fleet's threads: rate-limit syncs, config looks and announcements.
    _fleet_sync: Vec<crate::periodic::Periodic>,
    listener: TcpListener,
    /// The endpoints to load once the listeners serve.
    initial: Vec<Arc<Endpoint>>,
    /// Where they are listed (the control plane may delete or replace them meanwhile).
    directory: Arc<Endpoints>,
    settings: Settings,
}

/// A gateway whose listeners answer (`/livez` at once, `/readyz` once its models are loaded),
/// its first versions loading in the background.
pub struct Serving {
    pub addr: SocketAddr,
    pub admin_addr: Option<SocketAddr>,
    pub grpc_addr: Option<SocketAddr>,
    scheme: &'static str,
    gateway: Arc<Gateway>,
    handle: actix_web::dev::ServerHandle,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    grpc: Option<grpc::GrpcServer>,
    /// Taken by [`Serving::loaded`].
    loading: Option<tokio::task::JoinHandle<Result<(), StartError>>>,
    // Followers of the registry and the feature files: they stop when dropped.
    _watch: Option<endpoint::watch::WatchHandle>,
    _store_watch: Option<crate::features::embedded::SnapshotWatch>,
    _fleet_sync: Vec<crate::periodic::Periodic>,
    _promotion: crate::periodic::Periodic,
    settings: Settings,
}

/// Installs ring as the process-wide rustls provider (once; later calls are no-ops).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Binds the listeners and prepares everything but the models, which [`Started::serve`] loads
/// while the listeners already answer.
pub async fn start(settings: Settings) -> Result<Started, StartError> {
    install_crypto_provider();
    settings.validate()?;
    let client_certs = settings
        .server
        .tls
        .as_ref()
        .is_some_and(|t| t.client_ca_file.is_some());
    let auth = Arc::new(crate::http::auth::Auth::load(&settings.auth, client_certs)?);
    let tls = settings
        .server
        .tls
        .as_ref()
        .map(crate::http::tls::server_config)
        .transpose()?;
    let workers = settings.inference_workers();
    // Each HTTP worker may run small jobs itself, with a session of its own.
    let inline_sessions = if settings.inference.inline.enabled() {
        settings.http_workers()
    } else {
        0
    };
    let engines = Engines::init(
        settings.engine.ort_dylib_path.clone(),
        workers + inline_sessions,
        settings.engine.require_ort,
    )?;
    match engines.ort_problem() {
        None => info!("ONNX Runtime loaded; engine 'auto' uses ort"),
        Some(p) => warn!("ONNX Runtime unavailable ({p}); engine 'auto' uses tract"),
    }
    let pool = InferencePool::with_inline(
        workers,
        settings.inference.queue_capacity,
        settings.inference.shadow_queue_capacity,
        inline_sessions,
    );
    let metrics = Arc::new(Metrics::new());
    let tracer = match settings.tracing.enabled {
        true => Some(crate::trace::Tracer::start(
            &settings.tracing,
            &metrics.trace,
        )?),
        false => None,
    };
    if tracer.is_some() {
        let t = &settings.tracing;
        info!(
            "tracing: spans to {} over OTLP ({:?}), sample ratio {}",
            crate::settings::redact::redact_url(&t.endpoint()),
            t.protocol,
            t.sample_ratio
        );
    }
    let settle = Duration::from_millis(settings.registry.settle_ms);
    let registry: Arc<dyn Registry> = match settings.registry.kind {
        // Its blocking HTTP client must be made off the async runtime.
        RegistryKind::Mlflow => {
            let registry_settings = settings.registry.clone();
            Arc::new(
                tokio::task::spawn_blocking(move || MlflowRegistry::new(&registry_settings))
                    .await?
                    .map_err(StartError::Registry)?,
            )
        }
        RegistryKind::File => {
            Arc::new(FileRegistry::new(settings.registry.path.clone()).with_settle(settle))
        }
        RegistryKind::Folder => Arc::new(crate::registry::folder::FolderRegistry::new(
            settings.registry.path.clone(),
        )),
    };
    info!("registry: {}", registry.describe());
    let (online, store) = open_store(&settings).await?;
    let store_watch = match (&store, settings.features.watch) {
        (Some(s), true) => match crate::features::embedded::watch(s.clone(), settle) {
            Ok(w) => Some(w),
            Err(e) => {
                warn!("cannot watch the feature snapshot files ({e}); they load at start only");
                None
            }
        },
        _ => None,
    };
    let updater = Arc::new(Updater {
        registry,
        engines,
        pool: pool.clone(),
        inference: settings.inference.clone(),
        default_engine: settings.engine.default,
        metrics: metrics.clone(),
        store: online,
        tracer: tracer.clone(),
    });
    // Replicas that share rate-limit counts through Redis (none: each counts alone).
    let fleet = settings.fleet.redis_url.is_some().then(|| {
        Arc::new(crate::fleet::FleetCounts::new(
            &settings.fleet,
            metrics.clone(),
        ))
    });
    let mut fleet_sync = match &fleet {
        Some(counts) => vec![counts.spawn(&settings.fleet).map_err(StartError::Fleet)?],
        None => Vec::new(),
    };
    let shared = crate::endpoint::Shared {
        metrics: metrics.clone(),
        fleet,
    };
    let saved = match &settings.control.state_file {
        Some(path) => crate::endpoint::persist::load(path)?.unwrap_or_default(),
        None => Default::default(),
    };
    // In a fleet, the endpoint configs the shared store holds win over the state file's.
    let (fleet_configs, saved) = match &settings.fleet.redis_url {
        Some(_) => {
            let configs =
                crate::endpoint::fleet_configs::FleetConfigs::new(&settings.fleet, metrics.clone())
                    .map_err(|e| StartError::Fleet(std::io::Error::other(e)))?;
            let (configs, started) = tokio::task::spawn_blocking(move || {
                let started = configs.starting_state(&saved).unwrap_or(saved);
                (configs, started)
            })
            .await?;
            (Some(configs), started)
        }
        None => (None, saved),
    };
    let (initial, tables_changed) = initial_endpoints(&settings, saved, &shared)?;
    let endpoints = Arc::new(Endpoints::new(initial.clone()));
    let directory = endpoints.clone();
    let control = Arc::new(ControlPlane::new(
        endpoints.clone(),
        updater.clone(),
        shared,
        settings.control.state_file.clone(),
        settings.endpoints.iter().map(|e| e.name.clone()).collect(),
        fleet_configs,
    ));
    fleet_sync.extend(control.spawn_fleet().map_err(StartError::Fleet)?);
    if endpoints.is_empty() {
        warn!("no endpoint is configured: create one with POST /api/2.0/serving-endpoints");
    }
    // Keep a config-file endpoint's split table once it splits (nothing to keep otherwise).
    let splits = endpoints
        .list()
        .iter()
        .any(|e| e.generation().router.table.0.len() > 1);
    if tables_changed && splits {
        let control = control.clone();
        let saved = tokio::task::spawn_blocking(move || control.save()).await;
        if let Ok(Err(e)) = saved {
            warn!("sticky keys may change arms at the next start: {e}");
        }
    }
    let watch = settings.registry.watch.then(|| {
        endpoint::watch::spawn(
            updater.registry.watch_root().as_deref(),
            endpoints.clone(),
            updater.clone(),
            Duration::from_secs(settings.registry.poll_interval_seconds),
            settle,
        )
    });
    // In a fleet, labels whose predictions wait on another replica are relayed to it.
    let label_relay = match &settings.fleet.redis_url {
        Some(_) => Some(Arc::new(
            crate::fleet::labels::LabelRelay::new(&settings.fleet)
                .map_err(|e| StartError::Fleet(std::io::Error::other(e)))?,
        )),
        None => None,
    };
    // In a fleet with monitoring, reports add up every replica's windows.
    let monitor_config = crate::drift::MonitorConfig::new(&settings.monitoring);
    let profiles = match (&settings.fleet.redis_url, &monitor_config) {
        (Some(_), Some(config)) => {
            // Long enough for every window a report shows (the widest, kept times).
            let widest = config
                .widths
                .iter()
                .map(|(_, w)| *w)
                .max()
                .unwrap_or(0)
                .max(0) as u64;
            let keep = Duration::from_millis((widest * config.kept as u64).max(3_600_000));
            Some(Arc::new(
                crate::fleet::profiles::ProfileStore::new(&settings.fleet, keep)
                    .map_err(|e| StartError::Fleet(std::io::Error::other(e)))?,
            ))
        }
        _ => None,
    };
    let log =
        crate::inference_log::InferenceLog::start(settings.inference_log.clone(), metrics.clone())
            .map_err(StartError::InferenceLog)?;
    let gateway = Arc::new(
        Gateway::new(
            endpoints,
            pool,
            metrics,
            Arc::new(log),
            monitor_config,
            settings.inference.max_batch_rows,
            crate::pipeline::Limits {
                max_in_flight: settings.server.max_concurrent_requests,
                timeout: (settings.server.request_timeout_ms > 0)
                    .then(|| Duration::from_millis(settings.server.request_timeout_ms)),
                decode: settings.decode_limits(),
                inline: settings.inference.inline,
            },
        )
        .with_tracer(tracer)
        .with_label_relay(label_relay.clone())
        .with_profiles(profiles.clone()),
    );
    if profiles.is_some() {
        let gateway = gateway.clone();
        let every = Duration::from_millis(settings.fleet.profile_interval_ms);
        let publishing = crate::periodic::spawn("modelgate-fleet-profiles", every, move || {
            gateway.publish_profiles()
        });
        fleet_sync.push(publishing.map_err(StartError::Fleet)?);
    }
    if let Some(relay) = &label_relay {
        let gateway = gateway.clone();
        let reader = relay.spawn_reader(move |post| gateway.join_relayed(&post));
        fleet_sync.push(reader.map_err(StartError::Fleet)?);
    }
    if settings.anonymous_beyond_loopback() {
        warn!(
            "anonymous access beyond loopback (auth.allow_anonymous: true): anyone who reaches {} can score{}",
            settings.server.listen,
            if settings.server.admin_listen.is_some() { " and use the admin API on server.admin_listen" } else { " and use the admin API (endpoints, features, labels)" }
        );
    }
    let promotions = Arc::new(crate::promotion::Promotions::new(
        control.clone(),
        gateway.monitoring().cloned(),
        gateway.metrics().clone(),
        &settings.promotion,
    ));
    let admin_listener = match settings.admin_addr()? {
        Some(addr) => Some(bind(addr)?),
        None => None,
    };
    let admin_addr = admin_listener.as_ref().map(|(_, a)| *a);
    let grpc_listener = match settings.server.grpc_addr()? {
        Some(addr) => Some(bind(addr)?),
        None => None,
    };
    let grpc_addr = grpc_listener.as_ref().map(|(_, a)| *a);
    let addr = settings.listen_addr()?;
    let (listener, addr) = bind(addr)?;
    Ok(Started {
        addr,
        admin_addr,
        admin_listener: admin_listener.map(|(l, _)| l),
        grpc_addr,
        grpc_listener: grpc_listener.map(|(l, _)| l),
        gateway,
        updater,
        control,
        store,
        promotions,
        auth,
        tls,
        _watch: watch,
        _store_watch: store_watch,
        _fleet_sync: fleet_sync,
        listener,
        initial,
        directory,
        settings,
    })
}

/// Binds `addr`; the bound address (a port 0 picked).
fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), StartError> {
    let failed = |source| StartError::Bind {
        addr: addr.to_string(),
        source,
    };
    let listener = TcpListener::bind(addr).map_err(failed)?;
    let bound = listener.local_addr().map_err(failed)?;
    Ok((listener, bound))
}

type Stores = (
    Option<Arc<dyn crate::features::store::OnlineStore>>,
    Option<Arc<crate::features::embedded::EmbeddedStore>>,
);

/// The online store of `features.tables`: embedded (loaded now; a bad file stops the start),
/// or Redis (connected lazily: a Redis that is down is waited for, lookups time out meanwhile).
async fn open_store(settings: &Settings) -> Result<Stores, StartError> {
    let tables = settings.features.tables.clone();
    if tables.is_empty() {
        return Ok((None, None));
    }
    if settings.features.store == StoreKind::Redis {
        let redis = settings.features.redis.clone();
        let store = tokio::task::spawn_blocking(move || {
            crate::features::redis_store::RedisStore::open(&redis, tables)
        })
        .await??;
        info!(
            url = %crate::settings::redact_url(&settings.features.redis.url),
            "online store: redis"
        );
        return Ok((Some(Arc::new(store)), None));
    }
    let store =
        tokio::task::spawn_blocking(move || crate::features::embedded::EmbeddedStore::open(tables))
            .await??;
    for (table, rows) in store.sizes() {
        info!(table = %table, rows, "feature table loaded");
    }
    let store = Arc::new(store);
    Ok((Some(store.clone()), Some(store)))
}

/// The endpoints to serve: the config file's, then the state file's (endpoints created or
/// changed through the control plane win over the file's, and deleted ones stay deleted).
fn initial_endpoints(
    settings: &Settings,
    saved: crate::endpoint::persist::StateFile,
    shared: &crate::endpoint::Shared,
) -> Result<(Vec<Arc<Endpoint>>, bool), StartError> {
    let mut out = Vec::new();
    let mut table_changed = false;
    for ep in &settings.endpoints {
        if saved.deleted.contains(&ep.name)
            || saved.endpoints.iter().any(|s| s.endpoint.name == ep.name)
        {
            continue;
        }
        // The saved table, if any: a changed split then moves only the keys it must.
        let table = saved.tables.get(&ep.name);
        let generation = Generation::build(ep.clone(), None, table, shared, 1);
        table_changed |= table != Some(&generation.router.table);
        out.push(Arc::new(Endpoint::new(generation, now_ms(), false, true)));
    }
    for s in saved.endpoints {
        if let Some(v) = s.endpoint.violations("").into_iter().next() {
            return Err(StartError::SavedEndpoint {
                endpoint: s.endpoint.name,
                message: v.to_string(),
            });
        }
        if out.iter().any(|e| e.name == s.endpoint.name) {
            continue;
        }
        let generation =
            Generation::build(s.endpoint, None, Some(&s.buckets), shared, s.config_version);
        let from_config_file = settings
            .endpoints
            .iter()
            .any(|e| e.name == generation.settings.name);
        out.push(Arc::new(Endpoint::new(
            generation,
            s.created_ms,
            true,
            from_config_file,
        )));
    }
    // The state file's endpoints against the config file's: one set of tables each.
    let all: Vec<_> = out
        .iter()
        .map(|e| e.generation().settings.clone())
        .collect();
    if let Some(v) = crate::endpoint::config::shared_table_violations(&all)
        .into_iter()
        .next()
    {
        let index = v
            .key
            .strip_prefix("endpoints[")
            .and_then(|k| k.split(']').next())
            .and_then(|i| i.parse::<usize>().ok());
        return Err(StartError::SavedEndpoint {
            endpoint: index
                .and_then(|i| all.get(i))
                .map(|e| e.name.clone())
                .unwrap_or_default(),
            message: v.message,
        });
    }
    Ok((out, table_changed))
}

/// Loads every served entity's first version. An endpoint of the config file none of whose
/// routed entities loads is fatal (there is nothing to serve); other failures are logged and
/// shown in the endpoint's state, and routing falls back to the entities that loaded. Files
/// still being written are waited for, up to 100 settle periods.
fn load_all(
    endpoints: &[Arc<Endpoint>],
    directory: &Endpoints,
    updater: &Updater,
    settle: Duration,
) -> Result<(), StartError> {
    for endpoint in endpoints {
        // The control plane answers during these loads: an endpoint deleted meanwhile is not
        // loaded, and one re-configured is loaded as it is now (its own update loads it too;
        // the slot's lock keeps the two from loading one version twice).
        if !directory.holds(endpoint) {
            continue;
        }
        let generation = endpoint.generation();
        let mut failures = Vec::new();
        for slot in &generation.slots {
            let mut waits = 0;
            loop {
                match updater.refresh(slot, Trigger::Startup, false) {
                    SwapOutcome::Failed(message) | SwapOutcome::RegistryUnavailable(message) => {
                        failures.push(format!("served entity '{}': {message}", slot.name));
                        break;
                    }
                    SwapOutcome::Unchanged { .. } if !slot.is_ready() && waits < 100 => {
                        waits += 1;
                        std::thread::sleep(settle.max(Duration::from_millis(10)));
                    }
                    _ => break,
                }
            }
        }
        if failures.is_empty() {
            continue;
        }
        let message = failures.join("; ");
        // Fatal only for the config file's own endpoint, untouched by the control plane since.
        let untouched = directory.holds(endpoint)
            && Arc::ptr_eq(&generation, &endpoint.generation())
            && !endpoint.managed.load(std::sync::atomic::Ordering::Relaxed);
        if !generation.is_ready() && untouched {
            return Err(StartError::Load {
                endpoint: endpoint.name.clone(),
                message,
            });
        }
        // Each failed served entity shows its reason in its own state.
        warn!(endpoint = %endpoint.name, "serving without some served entities: {message}");
    }
    Ok(())
}

impl Started {
    /// `https` with `server.tls`, else `http`.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }

    /// Serves the listeners now and loads every endpoint's first version in the background:
    /// `/livez` answers during a long download, `/readyz` says what each served entity is doing
    /// and turns 200 once every config-file endpoint serves. Call from the async runtime.
    pub fn serve(self) -> Result<Serving, StartError> {
        // One budget of request bytes for REST and gRPC.
        let body_budget = http::body::BodyBudget::new(
            self.settings.server.max_inflight_body_bytes,
            self.gateway.metrics().access.inflight_body_bytes.clone(),
        );
        let state = web::Data::new(http::AppState {
            gateway: self.gateway.clone(),
            updater: self.updater.clone(),
            control: self.control.clone(),
            store: self.store.clone(),
            promotions: self.promotions.clone(),
            webhook_secret: self.settings.registry.webhook_secret.clone(),
            webhook_deliveries: Default::default(),
            max_body_bytes: self.settings.server.max_body_bytes,
            auth: self.auth.clone(),
            body_reading: http::body::BodyReading {
                budget: body_budget.clone(),
                timeout: Duration::from_millis(self.settings.server.body_read_timeout_ms),
            },
            trusted_proxies: self
                .settings
                .server
                .trusted_proxies
                .iter()
                .filter_map(|p| http::proxy::parse_range(p))
                .collect(),
            admin_addr: self.admin_addr,
            max_streams_per_connection: self.settings.server.max_streams_per_connection,
            access_log: self.settings.log.access,
            live: Default::default(),
        });
        let timeout = self.settings.server.shutdown_timeout_seconds;
        let workers = self.settings.http_workers();
        // actix bounds connections per worker: the setting is over all of them.
        let per_worker = self
            .settings
            .server
            .max_connections
            .div_ceil(workers)
            .max(1);
        let server = HttpServer::new(move || http::app(state.clone()))
            .workers(workers)
            .max_connections(per_worker)
            .disable_signals()
            .shutdown_timeout(timeout)
            .on_connect(crate::http::on_connect);
        let scheme = self.scheme();
        let listeners = std::iter::once(self.listener).chain(self.admin_listener);
        // gRPC gets the same certificate (its resolver is shared: one reload serves both).
        let grpc_tls = (self.tls.as_ref()).map(|(config, _)| Arc::new(grpc::tls_config(config)));
        let server = match (self.tls, self.settings.server.tls.clone()) {
            (Some((config, resolver)), Some(tls_settings)) => {
                crate::http::tls::watch(
                    tls_settings,
                    resolver,
                    self.gateway.metrics().access.tls_reloads.clone(),
                )
                .map_err(StartError::Serve)?;
                listeners.into_iter().try_fold(server, |server, l| {
                    server.listen_rustls_0_23(l, config.clone())
                })
            }
            // HTTP/1.1, and HTTP/2 for clients that speak it in the clear (h2c prior
            // knowledge, as meshes and gRPC-style clients do).
            _ => listeners
                .into_iter()
                .try_fold(server, |server, l| server.listen_auto_h2c(l)),
        }
        .map_err(StartError::Serve)?
        .run();
        let handle = server.handle();
        let gateway = self.gateway.clone();
        let grpc = match self.grpc_listener {
            Some(listener) => Some(
                grpc::GrpcServer::start(
                    listener,
                    gateway.clone(),
                    self.auth.clone(),
                    grpc::GrpcLimits {
                        max_message_bytes: self.settings.server.max_body_bytes,
                        max_streams_per_connection: self.settings.server.max_streams_per_connection,
                        max_connections: self.settings.server.max_connections,
                        request_timeout: (self.settings.server.request_timeout_ms > 0).then(|| {
                            Duration::from_millis(self.settings.server.request_timeout_ms)
                        }),
                        access_log: self.settings.log.access,
                        idle_timeout: Duration::from_secs(
                            self.settings.server.grpc_idle_timeout_seconds,
                        ),
                        threads: workers,
                        budget: body_budget,
                    },
                    grpc_tls,
                )
                .map_err(StartError::Serve)?,
            ),
            None => None,
        };
        let server = tokio::spawn(server);
        info!(
            "modelgate live on {scheme}://{} (/livez); loading models (/readyz says when they serve)",
            self.addr
        );
        let settle = Duration::from_millis(self.settings.registry.settle_ms);
        let (updater, initial) = (self.updater.clone(), self.initial);
        let directory = self.directory;
        let loading =
            tokio::task::spawn_blocking(move || load_all(&initial, &directory, &updater, settle));
        Ok(Serving {
            addr: self.addr,
            admin_addr: self.admin_addr,
            grpc_addr: self.grpc_addr,
            scheme,
            gateway,
            handle,
            server,
            grpc,
            loading: Some(loading),
            _watch: self._watch,
            _store_watch: self._store_watch,
            _fleet_sync: self._fleet_sync,
            _promotion: self
                .promotions
                .spawn()
                .map_err(StartError::PromotionThread)?,
            settings: self.settings,
        })
    }
}

impl Serving {
    pub fn scheme(&self) -> &'static str {
        self.scheme
    }

    /// A curl command that scores the first endpoint's input example, for people trying it out.
    pub fn example_curl(&self) -> Option<String> {
        let endpoint = self.gateway.endpoints().into_iter().next()?;
        let generation = endpoint.generation();
        let arm = *generation.router.split_arms.first()?;
        let example = generation.slots[arm].served()?.input_example.clone()?;
        let value: serde_json::Value = serde_json::from_slice(&example).ok()?;
        let body = value.to_string();
        (!body.contains('\'')).then(|| {
            format!(
                "curl -s {}://{}/serving-endpoints/{}/invocations -H 'Content-Type: application/json' -d '{body}'",
                self.scheme, self.addr, endpoint.name
            )
        })
    }

    /// Waits until every endpoint's first version is loaded (or has failed, which is fatal
    /// for a config-file endpoint with nothing to serve: an error, after which call
    /// [`Serving::until`] with a ready future to stop).
    pub async fn loaded(&mut self) -> Result<(), StartError> {
        match self.loading.take() {
            Some(loading) => {
                loading.await??;
                info!("modelgate ready on {}://{}", self.scheme, self.addr);
                if let Some(admin) = self.admin_addr {
                    info!("admin API on {}://{admin}", self.scheme);
                }
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Serves until `shutdown` resolves; then readiness goes false and in-flight requests get
    /// up to `server.shutdown_timeout_seconds` to finish.
    pub async fn until(self, shutdown: impl Future<Output = ()>) -> Result<(), StartError> {
        let timeout = self.settings.server.shutdown_timeout_seconds;
        let (gateway, grpc, handle, serving) = (self.gateway, self.grpc, self.handle, self.server);
        shutdown.await;
        info!("shutting down: readiness off, draining in-flight requests (up to {timeout} s)");
        gateway.begin_shutdown();
        if let Some(grpc) = grpc {
            // Calls in flight finish (within the drain's time); then the thread ends.
            let stopping = tokio::task::spawn_blocking(move || grpc.stop());
            let _ = tokio::time::timeout(Duration::from_secs(timeout), stopping).await;
        }
        handle.stop(true).await;
        let served = match tokio::time::timeout(Duration::from_secs(timeout + 5), serving).await {
            Ok(Ok(result)) => result.map_err(StartError::Serve),
            Ok(Err(e)) => Err(StartError::Task(e)),
            Err(_) => Ok(()),
        };
        // Every answered request is in the queue now: commit it before the process exits.
        let deadline = Duration::from_secs(self.settings.inference_log.shutdown_deadline_seconds);
        let log = gateway.inference_log().clone();
        let flushed = tokio::task::spawn_blocking(move || log.close(deadline))
            .await
            .unwrap_or(false);
        if flushed {
            info!("inference log flushed");
        } else {
            warn!("the inference log could not commit everything before the deadline (see modelgate_inference_log_dropped_rows_total)");
        }
        if let Some(tracer) = gateway.tracer().cloned() {
            // Spans of the last requests: sent within one export's deadline.
            let timeout = Duration::from_millis(self.settings.tracing.export_timeout_ms);
            let deadline = std::time::Instant::now() + timeout;
            let _ = tokio::task::spawn_blocking(move || tracer.close(deadline)).await;
        }
        served
    }
}

/// Binds, serves, loads the models, and serves until `shutdown` resolves (a load that fails
/// fatally stops it with that error).
pub async fn run(settings: Settings, shutdown: impl Future<Output = ()>) -> Result<(), StartError> {
    let serving = start(settings).await?.serve()?;
    serve_loaded(serving, shutdown, |_| {}).await
}

/// Waits for `serving`'s models, calls `on_ready`, and serves until `shutdown` resolves. A
/// shutdown during the loads stops at once; a fatal load failure stops and is the error.
pub async fn serve_loaded(
    mut serving: Serving,
    shutdown: impl Future<Output = ()>,
    on_ready: impl FnOnce(&Serving),
) -> Result<(), StartError> {
    let mut shutdown = std::pin::pin!(shutdown);
    let loaded = tokio::select! {
        loaded = serving.loaded() => loaded,
        () = &mut shutdown => return serving.until(std::future::ready(())).await,
    };
    if let Err(e) = loaded {
        serving.until(std::future::ready(())).await?;
        return Err(e);
    }
    on_ready(&serving);
    serving.until(shutdown).await
}
