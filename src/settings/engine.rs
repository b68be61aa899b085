//! `engine`: which engine runs a model, and how ONNX Runtime is found.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

// EngineChoice still lives in `engine` (the settings -> engine back edge, tests/layers.rs).
use crate::engine::EngineChoice;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct EngineSettings {
    /// `libonnxruntime.so`; when unset, `ORT_DYLIB_PATH` is used.
    pub ort_dylib_path: Option<PathBuf>,
    /// Refuse to start when ONNX Runtime does not load (instead of falling back to tract).
    pub require_ort: bool,
    /// Engine for served entities that do not choose one.
    pub default: EngineChoice,
}
