//! One MLflow model folder served as version 1 of a model (`serve --model PATH`,
//! `registry.kind: folder`): the quickest way to serve a model just saved with
//! `mlflow.onnx.save_model`, with no registry around it.

use std::path::PathBuf;

use super::file::load_model_dir;
use super::{Download, ModelVersion, Registry, RegistryError};

pub use crate::settings::registry::FOLDER_VERSION;

pub struct FolderRegistry {
    dir: PathBuf,
}

impl FolderRegistry {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }
}

impl Registry for FolderRegistry {
    /// Version 1 (or `latest`) of any model name: the folder holds one model.
    fn resolve(&self, model: &str, version_or_alias: &str) -> Result<String, RegistryError> {
        match version_or_alias {
            FOLDER_VERSION | "latest" => Ok(FOLDER_VERSION.into()),
            v if v.chars().all(|c| c.is_ascii_digit()) => Err(RegistryError::VersionNotFound {
                model: model.into(),
                version: format!("{v} (a model folder is served as version {FOLDER_VERSION})"),
            }),
            alias => Err(RegistryError::AliasNotFound {
                model: model.into(),
                alias: format!(
                    "{alias} (a model folder has no aliases: use version {FOLDER_VERSION})"
                ),
            }),
        }
    }

    fn fetch(
        &self,
        model: &str,
        version: &str,
        _progress: &Download,
    ) -> Result<ModelVersion, RegistryError> {
        if version != FOLDER_VERSION {
            return Err(RegistryError::VersionNotFound {
                model: model.into(),
                version: version.into(),
            });
        }
        load_model_dir(model, version, &self.dir)
    }

    fn describe(&self) -> String {
        format!(
            "the MLflow model folder {} (served as version {FOLDER_VERSION})",
            self.dir.display()
        )
    }

    fn watch_root(&self) -> Option<PathBuf> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_folder_is_version_one_of_any_name_and_nothing_else() {
        // An absolute path, under the package root where cargo runs the tests.
        let dir = std::env::current_dir()
            .unwrap()
            .join("models/transactions/1");
        let r = FolderRegistry::new(&dir);
        assert_eq!(r.resolve("mine", "1").unwrap(), "1");
        assert_eq!(r.resolve("mine", "latest").unwrap(), "1");
        assert!(matches!(
            r.resolve("mine", "2"),
            Err(RegistryError::VersionNotFound { .. })
        ));
        assert!(matches!(
            r.resolve("mine", "champion"),
            Err(RegistryError::AliasNotFound { .. })
        ));
        let v = r.fetch("mine", "1", &Download::default()).unwrap();
        assert_eq!((v.model.as_str(), v.version.as_str()), ("mine", "1"));
        assert!(v.input_example.is_some());
        let missing = FolderRegistry::new(dir.join("nope"));
        assert!(missing.fetch("mine", "1", &Download::default()).is_err());
    }

    #[test]
    fn a_folder_has_no_alias_to_move() {
        let r = FolderRegistry::new("models/transactions/1");
        match r.set_alias("mine", "champion", "1") {
            Err(RegistryError::Refused(m)) => {
                assert!(m.contains("model folder"), "{m}");
                assert!(m.contains("has no aliases to move"), "{m}");
                assert!(m.contains("'champion'"), "{m}");
            }
            other => panic!("{other:?}"),
        }
    }
}
