//! Model registries: where versions come from. A version is an MLflow model directory.

pub mod file;
pub mod folder;
pub mod mlflow;
pub mod mlmodel;
pub mod object_files;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

pub use mlmodel::{MlModel, Signature};

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("model '{0}' is not in the registry")]
    ModelNotFound(String),
    #[error("model '{model}' has no version '{version}'")]
    VersionNotFound { model: String, version: String },
    #[error("model '{model}' has no alias '{alias}'")]
    AliasNotFound { model: String, alias: String },
    #[error("cannot read {path}: {message}")]
    Io { path: PathBuf, message: String },
    #[error("{path} is not a valid model file: {message}")]
    Invalid { path: PathBuf, message: String },
    /// The registry did not answer (connection refused, timeout, 5xx): keep serving, retry.
    #[error("the model registry is unreachable: {0}")]
    Unreachable(String),
    /// The registry answered but refused (auth, an archived version, an unusable source).
    #[error("the model registry refused: {0}")]
    Refused(String),
    /// Files of the version changed too recently: it may be half-copied.
    #[error("{path} is still being written")]
    Incomplete { path: PathBuf },
}

impl RegistryError {
    /// A local file operation on `path` that failed.
    pub fn io(path: &std::path::Path, e: std::io::Error) -> Self {
        Self::Io {
            path: path.to_owned(),
            message: e.to_string(),
        }
    }
}

/// One model version, fetched and parsed, ready for an engine.
#[derive(Debug, Clone)]
pub struct ModelVersion {
    pub model: String,
    pub version: String,
    pub source: PathBuf,
    pub mlmodel: MlModel,
    pub signature: Option<Signature>,
    pub onnx: Vec<u8>,
    /// A scoring body (MLflow JSON) for the input example, when the version ships one.
    pub input_example: Option<Vec<u8>>,
    /// `{"predictions": ...}` expected for the input example.
    pub expected_output: Option<serde_json::Value>,
    /// What the version needs looked up or computed beyond the request (`feature_spec.yaml`).
    pub feature_spec: Option<crate::features::spec::FeatureSpec>,
    /// Training distributions for drift monitoring (`baseline.json`).
    pub baseline: Option<crate::drift::baseline::Baseline>,
}

/// A source of model versions.
pub trait Registry: Send + Sync {
    /// Resolves a version number or an alias to a version number.
    fn resolve(&self, model: &str, version_or_alias: &str) -> Result<String, RegistryError>;
    /// Reads a version (blocking I/O: call off the request path), telling `progress` how many
    /// of its bytes have arrived when it downloads them.
    fn fetch(
        &self,
        model: &str,
        version: &str,
        progress: &Download,
    ) -> Result<ModelVersion, RegistryError>;
    /// What the registry is, for logs.
    fn describe(&self) -> String;
    /// The local folder to watch for changes, when the registry is one.
    fn watch_root(&self) -> Option<std::path::PathBuf> {
        None
    }
}

/// Checks a version's listing before its download: an `MLmodel` at its root (a location that
/// is no model folder is not copied), and at most `max_bytes` listed.
pub fn check_listing(
    location: &str,
    has_mlmodel: bool,
    listed_bytes: u64,
    max_bytes: u64,
) -> Result<(), RegistryError> {
    if !has_mlmodel {
        return Err(RegistryError::Refused(format!(
            "'{location}' is not an MLflow model folder: it has no MLmodel file"
        )));
    }
    if listed_bytes > max_bytes {
        return Err(RegistryError::Refused(format!(
            "'{location}' holds {listed_bytes} bytes, over registry.max_version_bytes ({max_bytes})"
        )));
    }
    Ok(())
}

/// A download's running total, checked against `max_bytes` (files listed without a size).
pub fn check_received(location: &str, received: u64, max_bytes: u64) -> Result<(), RegistryError> {
    if received > max_bytes {
        return Err(RegistryError::Refused(format!(
            "'{location}' sent more than registry.max_version_bytes ({max_bytes}) bytes"
        )));
    }
    Ok(())
}

/// How much of a version's files has arrived: written by a registry as it downloads, read by
/// `/readyz` and the status page while a large model is on its way.
#[derive(Debug, Default)]
pub struct Download {
    done: AtomicU64,
    /// 0 while the size is not known yet.
    total: AtomicU64,
}

impl Download {
    /// A download of `total` bytes begins.
    pub fn begin(&self, total: u64) {
        self.done.store(0, Ordering::Relaxed);
        self.total.store(total, Ordering::Relaxed);
    }

    pub fn advance(&self, bytes: u64) {
        self.done.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Bytes arrived and bytes expected (0: not known).
    pub fn bytes(&self) -> (u64, u64) {
        (
            self.done.load(Ordering::Relaxed),
            self.total.load(Ordering::Relaxed),
        )
    }
}
