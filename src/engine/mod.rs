//! Engines run ONNX graphs. Two implementations sit behind one small trait: ONNX Runtime (`ort`,
//! loaded at run time from `libonnxruntime.so`) and tract (pure Rust, needs nothing).

pub mod batch;
pub mod binding;
pub mod cost;
pub mod lower;
pub mod ort_engine;
pub mod outputs;
pub mod pool;
pub mod tensor;
pub mod tract_engine;
pub mod zipmap;

use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;
// The request path and the endpoints name the tensors here.
pub use crate::data::tensor::{ElemType, NamedTensor, Tensor, TensorData};
pub use tensor::TensorSpec;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("ONNX Runtime is not available: {0}")]
    OrtUnavailable(String),
    #[error("the {engine} engine cannot load this model: {message}")]
    Load { engine: EngineKind, message: String },
    #[error("the {engine} engine cannot run op '{op}' (domain '{domain}'); use engine 'ort'")]
    UnsupportedOp {
        engine: EngineKind,
        op: String,
        domain: String,
    },
    #[error("the model {0}")]
    UnsupportedIo(String),
    #[error("inference failed: {0}")]
    Run(String),
}

pub use crate::settings::engine::EngineChoice;

/// The engine that actually runs a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    Ort,
    Tract,
}

impl EngineKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ort => "ort",
            Self::Tract => "tract",
        }
    }
}

impl std::fmt::Display for EngineKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A model ready to run. `run` takes inputs in the order of `inputs()`; `worker` is the session
/// index of the thread calling it (a pool worker's, or an inline caller's; below the
/// `sessions` given at load).
pub trait LoadedModel: Send + Sync {
    fn engine(&self) -> EngineKind;
    fn inputs(&self) -> &[TensorSpec];
    fn outputs(&self) -> &[TensorSpec];
    fn run(&self, worker: usize, inputs: Vec<Tensor>) -> Result<Vec<NamedTensor>, EngineError>;
}

/// The engines this process can use, decided once at start.
pub struct Engines {
    ort: Option<ort_engine::OrtEngine>,
    ort_problem: Option<String>,
    /// Sessions a model keeps (ort): one per pool worker and per inline caller.
    sessions: usize,
}

impl Engines {
    /// Loads ONNX Runtime from `ort_dylib` when given (else `ORT_DYLIB_PATH`). A missing or wrong
    /// library is an error only when `require_ort`; otherwise `auto` falls back to tract.
    /// `sessions`: the session indices jobs use ([`pool::InferencePool::sessions`]).
    pub fn init(
        ort_dylib: Option<PathBuf>,
        sessions: usize,
        require_ort: bool,
    ) -> Result<Self, EngineError> {
        let path = ort_dylib.or_else(|| std::env::var_os("ORT_DYLIB_PATH").map(PathBuf::from));
        let (ort, ort_problem) = match path {
            None => (
                None,
                Some("no library path: set ORT_DYLIB_PATH or engine.ort_dylib_path".to_owned()),
            ),
            Some(p) => match ort_engine::OrtEngine::init(&p) {
                Ok(e) => (Some(e), None),
                Err(e) => (None, Some(e.to_string())),
            },
        };
        if require_ort {
            if let Some(problem) = &ort_problem {
                return Err(EngineError::OrtUnavailable(problem.clone()));
            }
        }
        Ok(Self {
            ort,
            ort_problem,
            sessions,
        })
    }

    pub fn ort_available(&self) -> bool {
        self.ort.is_some()
    }

    /// Why ort is unavailable, when it is.
    pub fn ort_problem(&self) -> Option<&str> {
        self.ort_problem.as_deref()
    }

    /// As [`Engines::load`], with a ZipMap output cut first ([`zipmap`]): the model, and what
    /// was cut (for the answer's output mapping).
    pub fn load_model(
        &self,
        choice: EngineChoice,
        onnx: &[u8],
    ) -> Result<(Arc<dyn LoadedModel>, Option<zipmap::ZipMapped>), EngineError> {
        match zipmap::unzip(onnx).map_err(EngineError::UnsupportedIo)? {
            Some((cut, zipped)) => Ok((self.load(choice, &cut)?, Some(zipped))),
            None => Ok((self.load(choice, onnx)?, None)),
        }
    }

    pub fn load(
        &self,
        choice: EngineChoice,
        onnx: &[u8],
    ) -> Result<Arc<dyn LoadedModel>, EngineError> {
        match (choice, &self.ort) {
            (EngineChoice::Ort | EngineChoice::Auto, Some(ort)) => {
                Ok(Arc::new(ort.load(onnx, self.sessions)?))
            }
            (EngineChoice::Ort, None) => Err(EngineError::OrtUnavailable(
                self.ort_problem
                    .clone()
                    .unwrap_or_else(|| "not initialised".to_owned()),
            )),
            (EngineChoice::Tract | EngineChoice::Auto, _) => {
                Ok(Arc::new(tract_engine::TractModel::load(onnx)?))
            }
        }
    }
}

/// ONNX models built in tests, with the opsets skl2onnx exports name.
#[cfg(test)]
pub(crate) mod test_models {
    use prost::Message;
    use tract_onnx::pb;

    /// `graph` as a model of opset 13 and `ai.onnx.ml` 1.
    pub fn encode(graph: pb::GraphProto) -> Vec<u8> {
        let opset = |domain: &str, version| pb::OperatorSetIdProto {
            domain: domain.into(),
            version,
        };
        pb::ModelProto {
            ir_version: 8,
            opset_import: vec![opset("", 13), opset("ai.onnx.ml", 1)],
            graph: Some(graph),
            ..Default::default()
        }
        .encode_to_vec()
    }
}
