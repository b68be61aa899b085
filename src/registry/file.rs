//! The file registry: `<root>/<model>/<version>/` MLflow model directories and
//! `<root>/<model>/aliases.yaml` (a mapping alias -> version).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::mlmodel::{MlModel, Signature};
use super::{Download, ModelVersion, Registry, RegistryError};

pub struct FileRegistry {
    root: PathBuf,
    /// A version whose files changed more recently than this is not loaded yet.
    settle: std::time::Duration,
    /// Serializes `set_alias`'s read-modify-write, so two moves in this process both land.
    alias_writes: std::sync::Mutex<()>,
}

/// File name of our expected output for the input example.
pub const EXPECTED_OUTPUT_FILE: &str = "expected_output.json";

impl FileRegistry {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            settle: std::time::Duration::ZERO,
            alias_writes: std::sync::Mutex::new(()),
        }
    }

    /// Refuses versions whose files are younger than `settle` (they may still be copied in).
    pub fn with_settle(mut self, settle: std::time::Duration) -> Self {
        self.settle = settle;
        self
    }

    /// `Incomplete` when a file or folder under `dir` was modified within the settle time.
    fn check_settled(&self, dir: &Path) -> Result<(), RegistryError> {
        if self.settle.is_zero() {
            return Ok(());
        }
        let now = std::time::SystemTime::now();
        let mut pending = vec![dir.to_owned()];
        while let Some(folder) = pending.pop() {
            let entries = std::fs::read_dir(&folder).map_err(|e| RegistryError::Io {
                path: folder.clone(),
                message: e.to_string(),
            })?;
            for entry in entries.flatten() {
                let Ok(meta) = entry.metadata() else { continue };
                let young = meta
                    .modified()
                    .is_ok_and(|m| now.duration_since(m).unwrap_or_default() < self.settle);
                if young {
                    return Err(RegistryError::Incomplete {
                        path: dir.to_owned(),
                    });
                }
                if meta.is_dir() {
                    pending.push(entry.path());
                }
            }
        }
        Ok(())
    }

    fn model_dir(&self, model: &str) -> Result<PathBuf, RegistryError> {
        // Names come from config; refuse anything that would leave the registry root.
        if model.is_empty() || model.contains(['/', '\\']) || model.starts_with('.') {
            return Err(RegistryError::ModelNotFound(model.to_owned()));
        }
        let dir = self.root.join(model);
        if dir.is_dir() {
            Ok(dir)
        } else {
            Err(RegistryError::ModelNotFound(model.to_owned()))
        }
    }

    /// `aliases.yaml`: alias -> version, plus `Archived: [versions]` (never served).
    fn aliases(&self, model: &str) -> Result<Aliases, RegistryError> {
        let path = self.model_dir(model)?.join("aliases.yaml");
        if !path.exists() {
            return Ok(Aliases::default());
        }
        let text = read_text(&path)?;
        let raw: BTreeMap<String, serde_yaml::Value> =
            serde_yaml::from_str(&text).map_err(|e| RegistryError::Invalid {
                path: path.clone(),
                message: e.to_string(),
            })?;
        let invalid = |message: String| RegistryError::Invalid {
            path: path.clone(),
            message,
        };
        let version = |v: &serde_yaml::Value| match v {
            serde_yaml::Value::Number(n) => Some(n.to_string()),
            serde_yaml::Value::String(s) => Some(s.clone()),
            _ => None,
        };
        let mut aliases = Aliases::default();
        for (alias, v) in raw {
            if alias.eq_ignore_ascii_case(ARCHIVED) {
                let list = match &v {
                    serde_yaml::Value::Sequence(items) => items.iter().map(version).collect(),
                    single => version(single).map(|v| vec![v]),
                };
                aliases.archived = list.ok_or_else(|| {
                    invalid(format!("'{ARCHIVED}' must list version numbers, got {v:?}"))
                })?;
            } else {
                let target = version(&v).ok_or_else(|| {
                    invalid(format!("alias '{alias}' must name a version, got {v:?}"))
                })?;
                aliases.targets.insert(alias, target);
            }
        }
        Ok(aliases)
    }

    fn refuse_archived(&self, model: &str, version: &str) -> Result<(), RegistryError> {
        if self.aliases(model)?.archived.iter().any(|v| v == version) {
            return Err(RegistryError::Refused(format!(
                "model '{model}' version {version} is archived: archived versions are not served"
            )));
        }
        Ok(())
    }
}

/// Replaces `path` with `text` atomically: a temp file in the same folder, flushed, renamed
/// over it, so the watcher and readers see the old file or the new one, never half of one.
fn write_atomically(path: &Path, text: &str) -> Result<(), RegistryError> {
    use std::io::Write;
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(
        ".{name}.tmp.{}.{}",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let written = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        // The rename itself survives a crash once the folder is flushed.
        std::fs::File::open(dir)?.sync_all()
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written.map_err(|e| RegistryError::io(path, e))
}

/// The stage name whose versions are never served (as in MLflow).
const ARCHIVED: &str = "Archived";

#[derive(Default)]
struct Aliases {
    targets: BTreeMap<String, String>,
    archived: Vec<String>,
}

fn read_text(path: &Path) -> Result<String, RegistryError> {
    std::fs::read_to_string(path).map_err(|e| RegistryError::Io {
        path: path.to_owned(),
        message: e.to_string(),
    })
}

/// The version's feature spec, beside `MLmodel` (see [`crate::features::spec`]).
pub const FEATURE_SPEC_FILE: &str = "feature_spec.yaml";

fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, RegistryError> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(RegistryError::Io {
            path: path.to_owned(),
            message: e.to_string(),
        }),
    }
}

impl Registry for FileRegistry {
    fn resolve(&self, model: &str, version_or_alias: &str) -> Result<String, RegistryError> {
        let version = if !version_or_alias.is_empty()
            && version_or_alias.chars().all(|c| c.is_ascii_digit())
        {
            // A number names a folder: one that is not there is no version.
            if !self.model_dir(model)?.join(version_or_alias).is_dir() {
                return Err(RegistryError::VersionNotFound {
                    model: model.to_owned(),
                    version: version_or_alias.to_owned(),
                });
            }
            version_or_alias.to_owned()
        } else {
            self.aliases(model)?
                .targets
                .remove(version_or_alias)
                .ok_or_else(|| RegistryError::AliasNotFound {
                    model: model.to_owned(),
                    alias: version_or_alias.to_owned(),
                })?
        };
        self.refuse_archived(model, &version)?;
        Ok(version)
    }

    fn fetch(
        &self,
        model: &str,
        version: &str,
        _progress: &Download,
    ) -> Result<ModelVersion, RegistryError> {
        let dir = self.model_dir(model)?.join(version);
        if version.contains(['/', '\\']) || version.starts_with('.') || !dir.is_dir() {
            return Err(RegistryError::VersionNotFound {
                model: model.to_owned(),
                version: version.to_owned(),
            });
        }
        self.refuse_archived(model, version)?;
        self.check_settled(&dir)?;
        load_model_dir(model, version, &dir)
    }

    fn watch_root(&self) -> Option<PathBuf> {
        Some(self.root.clone())
    }

    fn moves_aliases(&self) -> bool {
        true
    }

    /// Rewrites `aliases.yaml` with `alias` set, keeping its other entries (`Archived`
    /// included) and their order.
    fn set_alias(&self, model: &str, alias: &str, version: &str) -> Result<(), RegistryError> {
        super::check_alias_move(alias, version)?;
        let _writing = self
            .alias_writes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // A missing or archived version is refused (and a broken aliases.yaml left as is).
        self.resolve(model, version)?;
        let path = self.model_dir(model)?.join("aliases.yaml");
        let mut entries = if path.exists() {
            let text = read_text(&path)?;
            match serde_yaml::from_str(&text) {
                Ok(serde_yaml::Value::Mapping(m)) => m,
                Ok(serde_yaml::Value::Null) => serde_yaml::Mapping::new(),
                Ok(other) => {
                    return Err(RegistryError::Invalid {
                        path,
                        message: format!("expected a mapping alias -> version, got {other:?}"),
                    })
                }
                Err(e) => {
                    return Err(RegistryError::Invalid {
                        path,
                        message: e.to_string(),
                    })
                }
            }
        } else {
            serde_yaml::Mapping::new()
        };
        // A number as people write it, unless that would lose leading zeros ("007").
        let target = match version.parse::<u64>() {
            Ok(n) if n.to_string() == version => serde_yaml::Value::Number(n.into()),
            _ => serde_yaml::Value::String(version.to_owned()),
        };
        entries.insert(serde_yaml::Value::String(alias.to_owned()), target);
        let text = serde_yaml::to_string(&entries).map_err(|e| RegistryError::Invalid {
            path: path.clone(),
            message: e.to_string(),
        })?;
        write_atomically(&path, &text)
    }

    fn describe(&self) -> String {
        format!("file registry at {}", self.root.display())
    }
}

/// Reads an MLflow model directory.
pub fn load_model_dir(
    model: &str,
    version: &str,
    dir: &Path,
) -> Result<ModelVersion, RegistryError> {
    let mlmodel_path = dir.join("MLmodel");
    let mlmodel: MlModel =
        serde_yaml::from_str(&read_text(&mlmodel_path)?).map_err(|e| RegistryError::Invalid {
            path: mlmodel_path.clone(),
            message: e.to_string(),
        })?;
    let onnx_flavor = mlmodel
        .flavors
        .onnx
        .as_ref()
        .ok_or_else(|| RegistryError::Invalid {
            path: mlmodel_path.clone(),
            message: "it has no 'onnx' flavor: only ONNX models can be served".to_owned(),
        })?;
    let signature = mlmodel
        .signature
        .as_ref()
        .map(Signature::parse)
        .transpose()
        .map_err(|message| RegistryError::Invalid {
            path: mlmodel_path.clone(),
            message,
        })?;
    let onnx_path = inside(dir, &onnx_flavor.data, &mlmodel_path)?;
    let onnx = std::fs::read(&onnx_path).map_err(|e| RegistryError::Io {
        path: onnx_path.clone(),
        message: e.to_string(),
    })?;
    let input_example = read_input_example(dir, &mlmodel)?;
    let expected_path = dir.join(EXPECTED_OUTPUT_FILE);
    let expected_output = read_optional(&expected_path)?
        .map(|b| serde_json::from_slice(&b))
        .transpose()
        .map_err(|e| RegistryError::Invalid {
            path: expected_path,
            message: e.to_string(),
        })?;
    let spec_path = dir.join(FEATURE_SPEC_FILE);
    let feature_spec = read_optional(&spec_path)?
        .map(|b| serde_yaml::from_slice(&b))
        .transpose()
        .map_err(|e| RegistryError::Invalid {
            path: spec_path,
            message: e.to_string(),
        })?;
    let baseline_path = dir.join(crate::drift::baseline::BASELINE_FILE);
    let baseline = read_optional(&baseline_path)?
        .map(|b| crate::drift::baseline::Baseline::parse(&b))
        .transpose()
        .map_err(|e| RegistryError::Invalid {
            path: baseline_path,
            message: e.to_string(),
        })?;
    Ok(ModelVersion {
        model: model.to_owned(),
        version: version.to_owned(),
        source: dir.to_owned(),
        mlmodel,
        signature,
        onnx,
        input_example,
        expected_output,
        feature_spec,
        baseline,
    })
}

/// `dir/relative`, refusing names that would leave the version folder (`..`, absolute paths):
/// MLmodel comes from whoever registered the version.
fn inside(dir: &Path, relative: &str, mlmodel_path: &Path) -> Result<PathBuf, RegistryError> {
    let rel = Path::new(relative);
    if relative.is_empty()
        || !rel
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)))
    {
        return Err(RegistryError::Invalid {
            path: mlmodel_path.to_owned(),
            message: format!("'{relative}' is not a file name inside the model folder"),
        });
    }
    Ok(dir.join(rel))
}

/// The input example as a scoring body: `serving_input_example.json` as is, or
/// `input_example.json` (pandas split orient) wrapped as `dataframe_split`.
fn read_input_example(dir: &Path, mlmodel: &MlModel) -> Result<Option<Vec<u8>>, RegistryError> {
    let info = mlmodel.saved_input_example_info.as_ref();
    let serving = info
        .and_then(|i| i.serving_input_path.clone())
        .unwrap_or_else(|| "serving_input_example.json".into());
    let mlmodel_path = dir.join("MLmodel");
    if let Some(body) = read_optional(&inside(dir, &serving, &mlmodel_path)?)? {
        return Ok(Some(body));
    }
    let plain = info
        .and_then(|i| i.artifact_path.clone())
        .unwrap_or_else(|| "input_example.json".into());
    let path = inside(dir, &plain, &mlmodel_path)?;
    let Some(bytes) = read_optional(&path)? else {
        return Ok(None);
    };
    let value: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| RegistryError::Invalid {
            path: path.clone(),
            message: e.to_string(),
        })?;
    let wrapped = if value.get("columns").is_some() && value.get("data").is_some() {
        serde_json::json!({ "dataframe_split": value })
    } else {
        serde_json::json!({ "inputs": value })
    };
    Ok(Some(serde_json::to_vec(&wrapped).unwrap_or_default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A registry with model `m` and (empty) version folders 1 to 3, and `aliases` when given.
    fn registry(aliases: Option<&str>) -> (tempfile::TempDir, FileRegistry) {
        let dir = tempfile::tempdir().unwrap();
        for v in ["1", "2", "3"] {
            std::fs::create_dir_all(dir.path().join("m").join(v)).unwrap();
        }
        if let Some(text) = aliases {
            std::fs::write(dir.path().join("m/aliases.yaml"), text).unwrap();
        }
        let r = FileRegistry::new(dir.path());
        (dir, r)
    }

    fn refused(r: Result<(), RegistryError>) -> String {
        match r {
            Err(RegistryError::Refused(m)) => m,
            other => panic!("not refused: {other:?}"),
        }
    }

    #[test]
    fn set_alias_moves_the_alias_and_keeps_the_other_aliases_and_archived_list() {
        let (dir, r) = registry(Some("champion: 1\nchallenger: \"2\"\nArchived: [3]\n"));
        r.set_alias("m", "champion", "2").unwrap();
        assert_eq!(r.resolve("m", "champion").unwrap(), "2");
        assert_eq!(r.resolve("m", "challenger").unwrap(), "2");
        // Still archived: the list survived the rewrite.
        assert!(matches!(
            r.resolve("m", "3"),
            Err(RegistryError::Refused(m)) if m.contains("archived")
        ));
        r.set_alias("m", "rollback", "1").unwrap();
        assert_eq!(r.resolve("m", "rollback").unwrap(), "1");
        assert_eq!(r.resolve("m", "champion").unwrap(), "2");
        let text = std::fs::read_to_string(dir.path().join("m/aliases.yaml")).unwrap();
        assert!(text.starts_with("champion: 2\n"), "{text}");
        // No temp file left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path().join("m"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(names.is_empty(), "{names:?}");
    }

    #[test]
    fn set_alias_creates_a_missing_aliases_file() {
        let (dir, r) = registry(None);
        assert!(!dir.path().join("m/aliases.yaml").exists());
        r.set_alias("m", "champion", "3").unwrap();
        assert_eq!(r.resolve("m", "champion").unwrap(), "3");
    }

    #[test]
    fn set_alias_refuses_archived_missing_and_non_versions_and_stages() {
        let (dir, r) = registry(Some("champion: 1\nArchived: [2]\n"));
        let before = std::fs::read_to_string(dir.path().join("m/aliases.yaml")).unwrap();
        assert!(refused(r.set_alias("m", "champion", "2")).contains("archived"));
        assert!(matches!(
            r.set_alias("m", "champion", "9"),
            Err(RegistryError::VersionNotFound { .. })
        ));
        assert!(matches!(
            r.set_alias("nope", "champion", "1"),
            Err(RegistryError::ModelNotFound(_))
        ));
        // An alias name as the version would be followed, not taken as a version.
        assert!(refused(r.set_alias("m", "other", "champion")).contains("not a version number"));
        for stage in ["Production", "staging", "None", "ARCHIVED"] {
            assert!(refused(r.set_alias("m", stage, "3")).contains("use an alias"));
        }
        let after = std::fs::read_to_string(dir.path().join("m/aliases.yaml")).unwrap();
        assert_eq!(before, after, "a refused move writes nothing");
        assert_eq!(r.resolve("m", "champion").unwrap(), "1");
    }
}
