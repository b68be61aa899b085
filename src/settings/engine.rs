//! `engine`: which engine runs a model, and how ONNX Runtime is found.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

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

/// Which engine a served entity asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum EngineChoice {
    /// ort when its library loads, else tract.
    #[default]
    Auto,
    Ort,
    Tract,
}
