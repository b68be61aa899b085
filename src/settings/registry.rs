//! `registry`: where model versions come from, and how aliases are followed.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{invalid, SettingsError};

/// The version number a model folder (`registry.kind: folder`) is served as.
pub const FOLDER_VERSION: &str = "1";

/// `registry.kind`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum RegistryKind {
    /// MLflow model directories under `registry.path`.
    #[default]
    File,
    /// An MLflow tracking server's model registry at `registry.uri`.
    Mlflow,
    /// One MLflow model folder at `registry.path`, served as version 1 (`serve --model PATH`).
    Folder,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RegistrySettings {
    pub kind: RegistryKind,
    /// MLflow tracking server, e.g. `http://mlflow:5000`.
    pub uri: Option<String>,
    /// Bearer token for the MLflow server (else `MLFLOW_TRACKING_TOKEN`).
    pub token: Option<String>,
    /// Basic-auth user and password for the MLflow server (else `MLFLOW_TRACKING_USERNAME` /
    /// `MLFLOW_TRACKING_PASSWORD`).
    pub username: Option<String>,
    pub password: Option<String>,
    /// Options of the object store an MLflow server keeps artifacts in, when it does not proxy
    /// them (`AWS_ENDPOINT_URL`, `AWS_REGION`, `GOOGLE_SERVICE_ACCOUNT`, `AZURE_STORAGE_ACCOUNT_NAME`,
    /// ...): over the same variables from the environment. Secrets are redacted when printed.
    pub storage_options: BTreeMap<String, String>,
    /// The most bytes one version's files may hold: a download of more is refused before it
    /// starts (or when it passes the bound, for files listed without a size).
    pub max_version_bytes: u64,
    /// Where downloaded MLflow versions are kept, one folder per model and version
    /// (default `<data_dir>/mlflow-cache`).
    pub cache_dir: Option<PathBuf>,
    /// Deadline of one call to the MLflow server.
    pub timeout_seconds: u64,
    /// Shared secret of MLflow webhooks; when set, `POST /api/2.0/webhooks/mlflow` takes
    /// signed model-registry events and refreshes at once.
    pub webhook_secret: Option<String>,
    /// Root of the file registry, relative to the working directory.
    pub path: PathBuf,
    /// Follow aliases: watch the registry's files and swap versions when an alias moves.
    pub watch: bool,
    /// Rescan every endpoint this often, as a fallback for missed file events.
    pub poll_interval_seconds: u64,
    /// Wait this long after the last file event before rescanning, and treat version files
    /// younger than this as still being written.
    pub settle_ms: u64,
}

impl Default for RegistrySettings {
    fn default() -> Self {
        Self {
            kind: RegistryKind::File,
            uri: None,
            token: None,
            username: None,
            password: None,
            cache_dir: None,
            storage_options: BTreeMap::new(),
            max_version_bytes: 10 * 1024 * 1024 * 1024,
            timeout_seconds: 10,
            webhook_secret: None,
            path: PathBuf::from("models"),
            watch: true,
            poll_interval_seconds: 10,
            settle_ms: 200,
        }
    }
}

impl RegistrySettings {
    pub(super) fn check(&self) -> Result<(), SettingsError> {
        if self.kind == RegistryKind::Mlflow {
            let uri = self.uri.as_deref().unwrap_or("");
            if !(uri.starts_with("http://") || uri.starts_with("https://")) {
                return Err(invalid(
                    "registry.uri",
                    format!("the mlflow registry needs an http(s) URI of the tracking server, got '{uri}'"),
                ));
            }
            if self.timeout_seconds == 0 {
                return Err(invalid("registry.timeout_seconds", "must be above 0"));
            }
        }
        if self.kind == RegistryKind::Folder && !self.path.join("MLmodel").is_file() {
            return Err(invalid(
                "registry.path",
                format!(
                    "{} is not an MLflow model folder (it has no MLmodel file; mlflow.onnx.save_model writes one)",
                    self.path.display()
                ),
            ));
        }
        if self.max_version_bytes == 0 {
            return Err(invalid("registry.max_version_bytes", "must be above 0"));
        }
        if self.poll_interval_seconds == 0 {
            return Err(invalid("registry.poll_interval_seconds", "must be above 0"));
        }
        Ok(())
    }
}
