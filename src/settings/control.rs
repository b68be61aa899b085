//! `control`: where the control plane keeps the endpoints it created or changed.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct ControlSettings {
    /// Where endpoints created or changed through the control plane are kept across restarts.
    /// Defaults to `<data_dir>/<config file stem>.endpoints.json` (or
    /// `<data_dir>/modelgate.endpoints.json` without a config file).
    pub state_file: Option<PathBuf>,
}

/// `<data_dir>/<config stem>.endpoints.json` (`modelgate.endpoints.json` without a config
/// file). A state file where earlier builds kept it, beside the config file, is still used
/// when the data directory has none: endpoints created through the API are never dropped by an
/// upgrade.
pub(super) fn default_state_file(data_dir: &Path, config: Option<&Path>) -> PathBuf {
    let stem = config
        .and_then(|path| path.file_stem())
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "modelgate".into());
    let name = format!("{stem}.endpoints.json");
    let in_data_dir = data_dir.join(&name);
    match config.map(|path| path.with_file_name(&name)) {
        Some(beside) if !in_data_dir.exists() && beside.exists() => beside,
        _ => in_data_dir,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_file_goes_to_the_data_dir_unless_an_older_one_is_beside_the_config() {
        let dir = tempfile::tempdir().unwrap();
        let (data, config) = (dir.path().join("data"), dir.path().join("conf/gw.yaml"));
        let in_data = data.join("gw.endpoints.json");
        assert_eq!(default_state_file(&data, Some(&config)), in_data);
        assert_eq!(
            default_state_file(&data, None),
            data.join("modelgate.endpoints.json")
        );
        // Kept by an earlier build beside the config: still the one read and written.
        std::fs::create_dir_all(dir.path().join("conf")).unwrap();
        let beside = dir.path().join("conf/gw.endpoints.json");
        std::fs::write(&beside, "{}").unwrap();
        assert_eq!(default_state_file(&data, Some(&config)), beside);
        // Once the data directory has one, that one wins.
        std::fs::create_dir_all(&data).unwrap();
        std::fs::write(&in_data, "{}").unwrap();
        assert_eq!(default_state_file(&data, Some(&config)), in_data);
    }
}
