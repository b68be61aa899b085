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
    /// Whether [`Registry::set_alias`] moves aliases here (a promotion by alias needs it).
    fn moves_aliases(&self) -> bool {
        false
    }
    /// Points `alias` of `model` at `version` (a served, unarchived version number), for
    /// promotions and their rollbacks. Blocking I/O: call off the request path and outside
    /// an async runtime.
    fn set_alias(&self, model: &str, alias: &str, version: &str) -> Result<(), RegistryError> {
        Err(RegistryError::Refused(format!(
            "{} has no aliases to move (alias '{alias}' of model '{model}' to version {version}): \
             promote by alias with registry.kind file or mlflow",
            self.describe()
        )))
    }
}

pub use crate::settings::promotion::STAGE_NAMES;

/// Checks a [`Registry::set_alias`] request before any registry is asked: `version` is a
/// version number and `alias` a name an alias may have
/// ([`crate::settings::promotion::alias_problem`]).
pub fn check_alias_move(alias: &str, version: &str) -> Result<(), RegistryError> {
    if version.is_empty() || !version.chars().all(|c| c.is_ascii_digit()) {
        return Err(RegistryError::Refused(format!(
            "'{version}' is not a version number: an alias points at a version number"
        )));
    }
    match crate::settings::promotion::alias_problem(alias) {
        Some(why) => Err(RegistryError::Refused(format!("alias '{alias}' {why}"))),
        None => Ok(()),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_alias_move_needs_a_version_number_and_a_movable_alias_name() {
        assert!(check_alias_move("champion", "2").is_ok());
        assert!(check_alias_move("fraud-v2_shadow", "10").is_ok());
        for (alias, version, why) in [
            ("champion", "champion", "not a version number"),
            ("champion", "", "not a version number"),
            ("champion", "-1", "not a version number"),
            ("", "2", "cannot be empty"),
            ("12", "2", "is a version number"),
            ("two words", "2", "letters, digits"),
            ("../x", "2", "letters, digits"),
            ("production", "2", "use an alias"),
            ("Staging", "2", "use an alias"),
            ("NONE", "2", "use an alias"),
            ("archived", "2", "use an alias"),
            ("latest", "2", "reserved"),
            ("v3", "2", "reserved"),
        ] {
            match check_alias_move(alias, version) {
                Err(RegistryError::Refused(m)) => assert!(m.contains(why), "{alias}: {m}"),
                other => panic!("{alias} -> {version}: {other:?}"),
            }
        }
        assert!(check_alias_move(&"a".repeat(256), "2").is_err());
    }
}
