//! What the side channels (inference tables, monitoring) know of the model version that
//! scored rows: its names, how its outputs read and which types its inputs take. Small and
//! independent of endpoints: a log record or a waiting prediction holds this, not the served
//! entity, so a replaced model (engine sessions and all) is freed when its last request ends.

use crate::engine::binding::InputBinding;
use crate::engine::outputs::OutputMapping;
use crate::engine::ElemType;

/// A loaded model version, as the side channels see it. Made once at load.
#[derive(Debug, Clone)]
pub struct VersionMeta {
    /// The registered model's name.
    pub model: String,
    pub version: String,
    /// How the model's outputs read as predictions and probabilities.
    pub outputs: OutputMapping,
    /// The model's inputs and the request columns that feed them.
    pub binding: InputBinding,
    /// The request column carrying each row's event time (the feature spec's request
    /// timestamp): labels join to predictions by it.
    pub request_timestamp: Option<String>,
}

impl VersionMeta {
    /// The element type the model takes column `name` as, when it takes it.
    pub fn column_type(&self, name: &str) -> Option<ElemType> {
        self.binding.column_type(name)
    }
}
