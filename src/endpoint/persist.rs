//! The state file: endpoints created or changed through the control plane, kept across
//! restarts. Written whole and atomically (a temporary file beside it, flushed, then renamed),
//! so a crash leaves the old file or the new one, never half of one.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::config::EndpointSettings;
use super::router::BucketTable;

const FORMAT: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    #[error("cannot read the endpoint state file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the endpoint state file {path} is not valid ({message}); fix or remove it")]
    Parse { path: PathBuf, message: String },
    #[error("cannot write the endpoint state file {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct StateFile {
    pub format: u32,
    pub endpoints: Vec<SavedEndpoint>,
    /// Endpoints of the config file deleted through the control plane.
    #[serde(default)]
    pub deleted: Vec<String>,
    /// The bucket tables of the config file's endpoints, so sticky keys keep their arms across
    /// restarts and a changed split moves only the keys it must.
    #[serde(default)]
    pub tables: std::collections::BTreeMap<String, BucketTable>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SavedEndpoint {
    pub endpoint: EndpointSettings,
    /// Which route owns each bucket, so sticky keys keep their arms across a restart.
    pub buckets: BucketTable,
    pub config_version: u64,
    pub created_ms: u64,
}

impl StateFile {
    pub fn new(endpoints: Vec<SavedEndpoint>, deleted: Vec<String>) -> Self {
        Self {
            format: FORMAT,
            endpoints,
            deleted,
            tables: Default::default(),
        }
    }
}

/// The saved state, or `None` when there is no file yet.
pub fn load(path: &Path) -> Result<Option<StateFile>, PersistError> {
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(PersistError::Read {
                path: path.to_owned(),
                source,
            })
        }
    };
    let parse = |message: String| PersistError::Parse {
        path: path.to_owned(),
        message,
    };
    let state: StateFile = serde_json::from_slice(&text).map_err(|e| parse(e.to_string()))?;
    if state.format != FORMAT {
        return Err(parse(format!(
            "format {} is not the known format {FORMAT}",
            state.format
        )));
    }
    Ok(Some(state))
}

/// Replaces the file with `state`.
pub fn save(path: &Path, state: &StateFile) -> Result<(), PersistError> {
    let fail = |source: std::io::Error| PersistError::Write {
        path: path.to_owned(),
        source,
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "endpoints.json".into());
    let tmp = dir.join(format!(".{name}.tmp"));
    // The data directory is made on the first save.
    std::fs::create_dir_all(&dir).map_err(fail)?;
    let body = serde_json::to_vec_pretty(state).map_err(|e| fail(std::io::Error::other(e)))?;
    let mut file = std::fs::File::create(&tmp).map_err(fail)?;
    file.write_all(&body).map_err(fail)?;
    file.sync_all().map_err(fail)?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(fail)?;
    // The rename itself is durable once the directory is flushed.
    if let Ok(d) = std::fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoint::config::ServedEntitySettings;

    #[test]
    fn saves_and_loads_back_and_refuses_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.endpoints.json");
        assert_eq!(load(&path).unwrap(), None);
        let state = StateFile::new(
            vec![SavedEndpoint {
                endpoint: EndpointSettings {
                    name: "e".into(),
                    served_entities: vec![ServedEntitySettings::new("m", "1")],
                    traffic_config: None,
                    routing: Default::default(),
                    auto_capture_config: None,
                    rate_limits: Vec::new(),
                    ..Default::default()
                },
                buckets: BucketTable(vec![("m-1".into(), 100)]),
                config_version: 3,
                created_ms: 1,
            }],
            vec!["old".into()],
        );
        save(&path, &state).unwrap();
        assert_eq!(load(&path).unwrap(), Some(state));
        std::fs::write(&path, "{not json").unwrap();
        let err = load(&path).unwrap_err().to_string();
        assert!(
            err.contains("c.endpoints.json") && err.contains("not valid"),
            "{err}"
        );
    }
}
