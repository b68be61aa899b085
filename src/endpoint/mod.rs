//! Endpoints, their configs (generations) and served entities (slots), each swappable with one
//! atomic store: a config update publishes a new generation, a version swap publishes into a
//! slot, and a request keeps what it loaded until it ends.

pub mod activity;
pub mod config;
pub mod control;
pub mod directory;
pub mod fleet_configs;
pub mod journal;
pub mod loader;
pub mod persist;
pub mod rate_limit;
pub mod resolve;
pub mod router;
pub mod updater;
pub mod view;
pub mod watch;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use arc_swap::{ArcSwap, ArcSwapOption};

use self::config::{EndpointSettings, ServedEntitySettings};
use self::router::Router;
use crate::metrics::{ArmMetrics, Metrics};

use crate::engine::{EngineKind, LoadedModel};
use crate::registry::Signature;
use crate::version::VersionMeta;

/// A model version loaded, validated and warmed: everything a request needs, fixed at load time.
pub struct ServedEntity {
    /// Model, version, outputs and input binding: what the side channels keep of it.
    pub meta: Arc<VersionMeta>,
    pub engine: EngineKind,
    pub loaded: Arc<dyn LoadedModel>,
    pub signature: Option<Signature>,
    /// The version's input example as a scoring body, when it ships one.
    pub input_example: Option<Vec<u8>>,
    pub loaded_at: SystemTime,
    pub live: LiveGuard,
    /// The version's feature spec compiled against the online store, when it has one.
    pub features: Option<crate::features::join::JoinPlan>,
    /// What drift monitoring counts, from the version's `baseline.json`.
    pub profile: Option<Arc<crate::drift::profile::Profiler>>,
    /// Its inference time per small call, measured at warm-up and on small requests: whether
    /// its small jobs may run inline.
    pub cost: crate::engine::cost::InferCost,
    /// Its open batch, for served entities with batching on.
    pub batch: Arc<crate::engine::batch::Batcher>,
}

/// Model versions loaded in this process now (served, loading, or finishing requests).
static LIVE_VERSIONS: AtomicUsize = AtomicUsize::new(0);

pub fn live_versions() -> usize {
    LIVE_VERSIONS.load(Ordering::Relaxed)
}

/// Counts a loaded version from load until its last user drops it.
pub struct LiveGuard(());

impl LiveGuard {
    pub fn new() -> Self {
        LIVE_VERSIONS.fetch_add(1, Ordering::Relaxed);
        Self(())
    }
}

impl Default for LiveGuard {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for LiveGuard {
    fn drop(&mut self) {
        LIVE_VERSIONS.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Databricks' `state.config_update` of an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ConfigUpdate {
    NotUpdating,
    InProgress,
    UpdateFailed,
}

/// The result of the last attempt to change what an endpoint serves.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SwapRecord {
    pub outcome: crate::metrics::labels::Outcome,
    pub trigger: updater::Trigger,
    pub from_version: Option<String>,
    pub to_version: Option<String>,
    pub message: Option<String>,
    /// Seconds since the Unix epoch.
    pub at: f64,
}

/// What the control plane knows about an endpoint besides what it serves.
#[derive(Debug, Clone)]
pub struct UpdateState {
    pub config_update: ConfigUpdate,
    pub last_swap: Option<SwapRecord>,
    /// The version served before the last successful swap, for rollback.
    pub previous_version: Option<String>,
    /// Set by a rollback: serve this version until the alias moves away from `alias_target`.
    pub pinned: Option<Pin>,
}

#[derive(Debug, Clone)]
pub struct Pin {
    pub version: String,
    pub alias_target: String,
}

/// One served entity of an endpoint: its settings, the version it serves now (swapped
/// atomically by the updater) and the state of its updates.
pub struct EntitySlot {
    pub endpoint: String,
    /// The name routes, responses and metrics use (shared into every answer, not copied).
    pub name: Arc<str>,
    pub settings: ServedEntitySettings,
    served: ArcSwapOption<ServedEntity>,
    state: Mutex<UpdateState>,
    /// Held for the whole of an update, so triggers never load two versions at once.
    pub(crate) update_lock: Mutex<()>,
    pub metrics: ArmMetrics,
    shared_metrics: Arc<Metrics>,
    /// Drift and quality of the version it serves, made on first use (when monitoring is on).
    pub monitor: std::sync::OnceLock<Arc<crate::drift::SlotMonitor>>,
    /// When its requests are batched, and where the batches' sizes are counted.
    pub batching: Option<SlotBatching>,
    /// Its recent load and swap lines (Databricks' `logs` and `build-logs`).
    pub journal: journal::Journal,
    /// The step its update is at, while one is under way.
    pub activity: activity::Activity,
}

/// A served entity's batching (`served_entities[].batching`).
pub struct SlotBatching {
    pub limits: crate::engine::batch::BatchLimits,
    /// `modelgate_inference_batch_requests` of this served entity.
    pub sizes: prometheus::Histogram,
}

impl EntitySlot {
    /// The drift and quality monitor of this served entity, made on first use.
    /// Made at `now_ms` when it is first needed.
    pub fn monitor(
        &self,
        config: &Arc<crate::drift::MonitorConfig>,
        now_ms: i64,
    ) -> Arc<crate::drift::SlotMonitor> {
        self.monitor
            .get_or_init(|| Arc::new(crate::drift::SlotMonitor::new(config.clone(), now_ms)))
            .clone()
    }

    pub fn new(endpoint: &str, settings: ServedEntitySettings, metrics: &Arc<Metrics>) -> Self {
        let name: Arc<str> = settings.served_name().into();
        let batching = settings.batching.map(|b| SlotBatching {
            limits: crate::engine::batch::BatchLimits {
                max_rows: b.max_rows,
                max_delay: b.max_delay(),
            },
            sizes: metrics
                .serving
                .batch_requests
                .with_label_values(&[endpoint, &name]),
        });
        Self {
            endpoint: endpoint.to_owned(),
            batching,
            metrics: ArmMetrics::new(&metrics.serving, endpoint, &name),
            shared_metrics: metrics.clone(),
            name,
            settings,
            served: ArcSwapOption::empty(),
            state: Mutex::new(UpdateState {
                config_update: ConfigUpdate::NotUpdating,
                last_swap: None,
                previous_version: None,
                pinned: None,
            }),
            update_lock: Mutex::new(()),
            monitor: Default::default(),
            journal: Default::default(),
            activity: Default::default(),
        }
    }

    pub fn state(&self) -> UpdateState {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(crate) fn with_state<T>(&self, f: impl FnOnce(&mut UpdateState) -> T) -> T {
        f(&mut self.state.lock().unwrap_or_else(|e| e.into_inner()))
    }

    pub fn served(&self) -> Option<Arc<ServedEntity>> {
        self.served.load_full()
    }

    pub fn is_ready(&self) -> bool {
        self.served.load().is_some()
    }

    /// Makes `entity` what new requests get; requests in flight keep the one they loaded.
    pub fn publish(&self, entity: Arc<ServedEntity>) -> Option<Arc<ServedEntity>> {
        let old = self.served.swap(Some(entity.clone()));
        self.shared_metrics
            .swaps
            .served_model_up(&self.info_labels(&entity));
        if let Some(old) = &old {
            self.shared_metrics
                .swaps
                .served_model_down(&self.info_labels(old));
        }
        old
    }

    fn info_labels<'a>(&'a self, e: &'a ServedEntity) -> [&'a str; 5] {
        [
            &self.endpoint,
            &self.name,
            &e.meta.model,
            &e.meta.version,
            e.engine.as_str(),
        ]
    }
}

impl Drop for EntitySlot {
    /// A slot leaves with its endpoint config: its version is no longer served by it, and its
    /// series go unless another config still has a slot of the same name.
    fn drop(&mut self) {
        if let Some(e) = self.served.load_full() {
            self.shared_metrics
                .swaps
                .served_model_down(&self.info_labels(&e));
        }
        self.shared_metrics
            .serving
            .release_arm(&self.endpoint, &self.name);
    }
}

/// What every generation is built with: the metrics, and the fleet's counts when replicas
/// share them.
#[derive(Clone)]
pub struct Shared {
    pub metrics: Arc<Metrics>,
    pub fleet: Option<Arc<crate::fleet::FleetCounts>>,
}

/// One config of an endpoint, compiled: its served entities and routes. Replaced whole by a
/// config update; a request keeps the generation it started with.
pub struct Generation {
    pub settings: EndpointSettings,
    pub slots: Vec<Arc<EntitySlot>>,
    pub router: Router,
    /// Databricks' `config_version`: 1 for the first config, +1 per update.
    pub config_version: u64,
    /// Milliseconds since the Unix epoch.
    pub updated_ms: u64,
    /// The header that carries a routing key.
    pub key_header: actix_web::http::header::HeaderName,
    /// Stage histograms (queue, decode, inference, encode), looked up once.
    pub stages: [prometheus::Histogram; 4],
    /// Jobs run inline and on the pool, looked up once.
    pub lanes: [prometheus::IntCounter; 2],
    /// The inference-table capture of this config, resolved on first use.
    pub capture: std::sync::OnceLock<Option<Arc<crate::inference_log::Capture>>>,
    /// The counters of the config's rate limits (none without limits).
    pub rate_limiter: Option<Arc<rate_limit::RateLimiter>>,
}

impl Generation {
    /// The key columns an endpoint declares: its `routing.key_column` and the `lookup_key`
    /// columns of the feature specs of the versions it serves now (each once, in that order).
    pub fn label_key_columns(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.settings.routing.key_column.iter().cloned().collect();
        for slot in &self.slots {
            let Some(entity) = slot.served() else {
                continue;
            };
            for key in entity.features.iter().flat_map(|f| f.lookup_keys()) {
                if !keys.iter().any(|k| k == key) {
                    keys.push(key.to_owned());
                }
            }
        }
        keys
    }

    /// Compiles `settings` (validated). Served entities with the same name and model as one of
    /// `previous` keep its slot (and the version it serves); the others start empty. The
    /// routes rebalance from `previous`'s bucket table, or from `table` when given (a restart).
    pub fn build(
        settings: EndpointSettings,
        previous: Option<&Generation>,
        table: Option<&router::BucketTable>,
        shared: &Shared,
        config_version: u64,
    ) -> Self {
        let metrics = &shared.metrics;
        let slots = settings
            .served_entities
            .iter()
            .map(|se| {
                let name = se.served_name();
                previous
                    .and_then(|p| p.slot(&name))
                    .filter(|(_, s)| s.settings.same_model(se))
                    .map(|(_, s)| s.clone())
                    .unwrap_or_else(|| {
                        Arc::new(EntitySlot::new(&settings.name, se.clone(), metrics))
                    })
            })
            .collect();
        let router = Router::compile(&settings, table.or(previous.map(|p| &p.router.table)));
        let key_header =
            actix_web::http::header::HeaderName::from_bytes(settings.routing.key_header.as_bytes())
                .unwrap_or_else(|_| {
                    actix_web::http::header::HeaderName::from_static("x-routing-key")
                });
        let stages = metrics.serving.stages(&settings.name);
        let lanes = metrics.serving.lanes(&settings.name);
        Self {
            key_header,
            stages,
            lanes,
            capture: Default::default(),
            // The same limits keep their counts across a config update.
            rate_limiter: previous
                .filter(|p| p.settings.rate_limits == settings.rate_limits)
                .and_then(|p| p.rate_limiter.clone())
                .or_else(|| {
                    let fleet = shared.fleet.clone().map(|f| (f, settings.name.as_str()));
                    rate_limit::RateLimiter::new(&settings.rate_limits, fleet).map(Arc::new)
                }),
            settings,
            slots,
            router,
            config_version,
            updated_ms: now_ms(),
        }
    }

    /// Slots that were not in `previous` (they need loading).
    pub fn new_slots(&self, previous: Option<&Generation>) -> Vec<Arc<EntitySlot>> {
        self.slots
            .iter()
            .filter(|s| !previous.is_some_and(|p| p.slots.iter().any(|old| Arc::ptr_eq(old, s))))
            .cloned()
            .collect()
    }

    pub fn slot(&self, name: &str) -> Option<(usize, &Arc<EntitySlot>)> {
        self.slots
            .iter()
            .enumerate()
            .find(|(_, s)| &*s.name == name)
    }

    /// Ready: some split arm serves a model.
    pub fn is_ready(&self) -> bool {
        self.router
            .split_arms
            .iter()
            .any(|&a| self.slots[a].is_ready())
    }
}

/// A config update in progress, as Databricks shows it in `pending_config`.
#[derive(Debug, Clone)]
pub struct PendingConfig {
    pub settings: EndpointSettings,
    pub config_version: u64,
    pub start_ms: u64,
}

/// What the control plane records about an endpoint's config updates.
#[derive(Debug, Clone, Default)]
pub struct ControlState {
    pub pending: Option<PendingConfig>,
    /// Why the last config update failed, until one succeeds.
    pub failure: Option<String>,
}

/// A named URL and the config it serves now.
pub struct Endpoint {
    pub name: String,
    generation: ArcSwap<Generation>,
    control: Mutex<ControlState>,
    /// Set while a config update runs: a second one is refused (409), not queued.
    updating: AtomicBool,
    pub created_ms: u64,
    /// Created or changed through the control plane: kept in the state file.
    pub managed: AtomicBool,
    /// Named in the config file: it holds readiness.
    pub from_config_file: bool,
    /// Scored rows waiting for their labels (quality monitoring).
    pub pending_labels: Arc<crate::drift::PendingLabels>,
}

use crate::clock::now_ms;

/// Clears [`Endpoint`]'s update flag when the update ends, however it ends.
pub struct UpdateGuard(Arc<Endpoint>);

impl Drop for UpdateGuard {
    /// However the update ended (published, failed, endpoint deleted), nothing is pending.
    fn drop(&mut self) {
        self.0.with_control(|c| c.pending = None);
        self.0.updating.store(false, Ordering::Release);
    }
}

impl Endpoint {
    pub fn new(
        generation: Generation,
        created_ms: u64,
        managed: bool,
        from_config_file: bool,
    ) -> Self {
        Self {
            name: generation.settings.name.clone(),
            generation: ArcSwap::from_pointee(generation),
            control: Mutex::new(ControlState::default()),
            updating: AtomicBool::new(false),
            created_ms,
            managed: AtomicBool::new(managed),
            from_config_file,
            pending_labels: Default::default(),
        }
    }

    pub fn generation(&self) -> Arc<Generation> {
        self.generation.load_full()
    }

    pub fn publish(&self, generation: Generation) {
        self.generation.store(Arc::new(generation));
    }

    /// Serves `generation` again (a change that could not be saved is taken back).
    pub fn restore(&self, generation: Arc<Generation>) {
        self.generation.store(generation);
    }

    pub fn control(&self) -> ControlState {
        self.control
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(crate) fn with_control<T>(&self, f: impl FnOnce(&mut ControlState) -> T) -> T {
        f(&mut self.control.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Claims the endpoint for a config update; `None` when one is already running.
    pub fn begin_update(self: &Arc<Self>) -> Option<UpdateGuard> {
        self.updating
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .ok()
            .map(|_| UpdateGuard(self.clone()))
    }

    pub fn is_ready(&self) -> bool {
        self.generation.load().is_ready()
    }

    /// Databricks' `state.config_update`, over the endpoint's config and its served entities.
    pub fn config_update(&self) -> ConfigUpdate {
        let control = self.control();
        let slots = self
            .generation()
            .slots
            .iter()
            .map(|s| s.state().config_update)
            .collect::<Vec<_>>();
        // Until the update lets go of the endpoint (after saving the state file), so that a
        // caller who sees it settled can update again at once instead of getting 409.
        let claimed = self.updating.load(Ordering::Acquire);
        if claimed || control.pending.is_some() || slots.contains(&ConfigUpdate::InProgress) {
            ConfigUpdate::InProgress
        } else if control.failure.is_some() || slots.contains(&ConfigUpdate::UpdateFailed) {
            ConfigUpdate::UpdateFailed
        } else {
            ConfigUpdate::NotUpdating
        }
    }
}

impl ServedEntity {
    /// This version as monitoring sees it.
    pub fn monitored(&self) -> crate::drift::monitor::Version<'_> {
        crate::drift::monitor::Version {
            meta: &self.meta,
            profile: self.profile.as_ref(),
        }
    }

    /// Binds a frame and runs the model on the calling pool worker.
    pub fn infer(
        &self,
        worker: usize,
        frame: &crate::protocol::frame::Frame,
    ) -> crate::error::RequestResult<Vec<crate::engine::NamedTensor>> {
        self.infer_ignoring(worker, frame, None)
    }

    /// Joins the version's features (when it has a feature spec), binds and runs; with
    /// `keep_joined`, also the joined columns (for `return_features` and the inference log).
    pub fn infer_joined(
        &self,
        worker: usize,
        frame: &crate::protocol::frame::Frame,
        ignore: Option<&str>,
        keep_joined: bool,
    ) -> crate::error::RequestResult<(
        Vec<crate::engine::NamedTensor>,
        Option<crate::features::join::Joined>,
    )> {
        let Some(plan) = &self.features else {
            return Ok((self.infer_ignoring(worker, frame, ignore)?, None));
        };
        self.infer_with(worker, plan.join(frame, ignore)?, keep_joined)
    }

    /// As [`ServedEntity::infer_joined`], for features already looked up
    /// ([`crate::features::join::JoinPlan::lookup`]): the join's CPU stages, bind and run.
    pub fn infer_looked(
        &self,
        worker: usize,
        looked: crate::features::join::Looked,
        keep_joined: bool,
    ) -> crate::error::RequestResult<(
        Vec<crate::engine::NamedTensor>,
        Option<crate::features::join::Joined>,
    )> {
        let plan = self.features.as_ref().ok_or_else(|| {
            crate::error::RequestError::Internal(
                "features were looked up for a version without a feature spec".into(),
            )
        })?;
        self.infer_with(worker, plan.complete(looked)?, keep_joined)
    }

    fn infer_with(
        &self,
        worker: usize,
        joined: crate::features::join::Joined,
        keep_joined: bool,
    ) -> crate::error::RequestResult<(
        Vec<crate::engine::NamedTensor>,
        Option<crate::features::join::Joined>,
    )> {
        let (inputs, joined) = self.bind_joined(joined, keep_joined)?;
        Ok((self.run_bound(worker, inputs)?, joined))
    }

    /// The model's inputs from joined columns, and those columns when `keep_joined`.
    fn bind_joined(
        &self,
        joined: crate::features::join::Joined,
        keep_joined: bool,
    ) -> crate::error::RequestResult<(
        Vec<crate::engine::Tensor>,
        Option<crate::features::join::Joined>,
    )> {
        let inputs = self.meta.binding.bind(&joined.frame)?;
        Ok((inputs, keep_joined.then_some(joined)))
    }

    /// Runs the model on inputs bound by [`ServedEntity::bind_request`], on the calling pool
    /// worker's session.
    pub fn run_bound(
        &self,
        worker: usize,
        inputs: Vec<crate::engine::Tensor>,
    ) -> crate::error::RequestResult<Vec<crate::engine::NamedTensor>> {
        self.loaded
            .run(worker, inputs)
            .map_err(|e| crate::error::RequestError::Internal(e.to_string()))
    }

    /// The model's inputs for `frame`, without running it: joined with the version's features
    /// (from `looked` when they were looked up before), and the joined columns when
    /// `keep_joined`. What a batch combines.
    pub fn bind_request(
        &self,
        frame: &crate::protocol::frame::Frame,
        looked: Option<crate::features::join::Looked>,
        ignore: Option<&str>,
        keep_joined: bool,
    ) -> crate::error::RequestResult<(
        Vec<crate::engine::Tensor>,
        Option<crate::features::join::Joined>,
    )> {
        let Some(plan) = &self.features else {
            return Ok((self.meta.binding.bind_ignoring(frame, ignore)?, None));
        };
        let joined = match looked {
            Some(looked) => plan.complete(looked)?,
            None => plan.join(frame, ignore)?,
        };
        self.bind_joined(joined, keep_joined)
    }

    /// As [`ServedEntity::infer`], where the frame may also carry `ignore` (a routing key
    /// column) that the model does not take.
    pub fn infer_ignoring(
        &self,
        worker: usize,
        frame: &crate::protocol::frame::Frame,
        ignore: Option<&str>,
    ) -> crate::error::RequestResult<Vec<crate::engine::NamedTensor>> {
        if self.features.is_some() {
            return Ok(self.infer_joined(worker, frame, ignore, false)?.0);
        }
        let inputs = self.meta.binding.bind_ignoring(frame, ignore)?;
        self.run_bound(worker, inputs)
    }
}
