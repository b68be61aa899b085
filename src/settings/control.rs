//! `control`: where the control plane keeps the endpoints it created or changed.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct ControlSettings {
    /// Where endpoints created or changed through the control plane are kept across restarts.
    /// Defaults to `<config file stem>.endpoints.json` beside the config file (or
    /// `modelgate.endpoints.json` in the working directory without one).
    pub state_file: Option<PathBuf>,
}

/// `<dir>/<stem>.endpoints.json` beside the config file, else in the working directory.
pub(super) fn default_state_file(config: Option<&Path>) -> PathBuf {
    match config {
        Some(path) => {
            let stem = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "modelgate".into());
            path.with_file_name(format!("{stem}.endpoints.json"))
        }
        None => PathBuf::from("modelgate.endpoints.json"),
    }
}
