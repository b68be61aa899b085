//! Endpoints and the served entity each one serves, swappable with one atomic store.

pub mod loader;
pub mod updater;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use arc_swap::ArcSwapOption;

use crate::engine::binding::InputBinding;
use crate::engine::outputs::OutputMapping;
use crate::engine::{EngineKind, LoadedModel};
use crate::registry::Signature;
use crate::settings::EndpointSettings;

/// A model version loaded, validated and warmed: everything a request needs, fixed at load time.
pub struct ServedEntity {
    /// The name responses carry in `served-model-name`.
    pub name: String,
    pub model: String,
    pub version: String,
    /// The alias the config asked for, when it asked for one.
    pub alias: Option<String>,
    pub engine: EngineKind,
    pub loaded: Arc<dyn LoadedModel>,
    pub binding: InputBinding,
    pub outputs: OutputMapping,
    pub signature: Option<Signature>,
    /// The version's input example as a scoring body, when it ships one.
    pub input_example: Option<Vec<u8>>,
    pub loaded_at: SystemTime,
    pub live: LiveGuard,
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
    /// `success` or `failure`.
    pub outcome: &'static str,
    pub trigger: &'static str,
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

/// A named URL and what it serves now. A request loads the entity once and keeps it to the end,
/// so a swap never changes a request halfway.
pub struct Endpoint {
    pub name: String,
    pub settings: EndpointSettings,
    served: ArcSwapOption<ServedEntity>,
    state: Mutex<UpdateState>,
    /// Held for the whole of an update, so triggers never load two versions at once.
    pub(crate) update_lock: Mutex<()>,
}

impl Endpoint {
    pub fn new(settings: EndpointSettings) -> Self {
        Self {
            name: settings.name.clone(),
            settings,
            served: ArcSwapOption::empty(),
            state: Mutex::new(UpdateState {
                config_update: ConfigUpdate::NotUpdating,
                last_swap: None,
                previous_version: None,
                pinned: None,
            }),
            update_lock: Mutex::new(()),
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

    /// Makes `entity` what new requests get; requests in flight keep the one they loaded.
    pub fn publish(&self, entity: Arc<ServedEntity>) -> Option<Arc<ServedEntity>> {
        self.served.swap(Some(entity))
    }
}

impl ServedEntity {
    /// Binds a frame and runs the model on the calling pool worker.
    pub fn infer(
        &self,
        worker: usize,
        frame: &crate::protocol::frame::Frame,
    ) -> crate::error::RequestResult<Vec<crate::engine::NamedTensor>> {
        let inputs = self.binding.bind(frame)?;
        self.loaded
            .run(worker, inputs)
            .map_err(|e| crate::error::RequestError::Internal(e.to_string()))
    }
}
