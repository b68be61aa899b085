//! Endpoints and the served entity each one serves, swappable with one atomic store.

pub mod loader;

use std::sync::Arc;
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
}

/// A named URL and what it serves now. A request loads the entity once and keeps it to the end,
/// so a swap never changes a request halfway.
pub struct Endpoint {
    pub name: String,
    pub settings: EndpointSettings,
    served: ArcSwapOption<ServedEntity>,
}

impl Endpoint {
    pub fn new(settings: EndpointSettings) -> Self {
        Self {
            name: settings.name.clone(),
            settings,
            served: ArcSwapOption::empty(),
        }
    }

    pub fn served(&self) -> Option<Arc<ServedEntity>> {
        self.served.load_full()
    }

    pub fn publish(&self, entity: Arc<ServedEntity>) {
        self.served.store(Some(entity));
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
