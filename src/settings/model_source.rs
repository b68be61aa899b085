//! `modelgate serve --model ...`: one model served with no config file. A registry URI
//! (`models:/NAME@ALIAS`, `models:/NAME/VERSION`, MLflow's own forms) or the path of an MLflow
//! model folder becomes the registry settings and one endpoint named after the model; every
//! other setting keeps its default (and the config file, environment and flags still apply).

use std::path::PathBuf;

use super::endpoint::valid_name;
use super::registry::FOLDER_VERSION;
use super::{
    invalid, EndpointSettings, RegistryKind, ServedEntitySettings, Settings, SettingsError,
};

/// What `--model` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    /// A model of an MLflow registry: a version number, an alias or a stage.
    Registry { name: String, version: String },
    /// An MLflow model folder (`MLmodel` and its ONNX file).
    Folder(PathBuf),
}

impl ModelSource {
    /// `models:/NAME@ALIAS`, `models:/NAME/VERSION` or `models:/NAME/STAGE`; anything else is a
    /// path.
    pub fn parse(text: &str) -> Result<Self, SettingsError> {
        let Some(rest) = text.strip_prefix("models:/") else {
            return Ok(Self::Folder(PathBuf::from(text)));
        };
        let bad = |why: &str| {
            invalid(
                "--model",
                format!("'{text}' {why} (models:/NAME@ALIAS or models:/NAME/VERSION)"),
            )
        };
        let (name, version) = match (rest.split_once('@'), rest.split_once('/')) {
            (Some((name, alias)), None) => (name, alias),
            (None, Some((name, version))) => (name, version),
            _ => return Err(bad("names no version or alias")),
        };
        if !valid_name(name) || !valid_name(version) {
            return Err(bad("is not a model name with a version or alias"));
        }
        Ok(Self::Registry {
            name: name.into(),
            version: version.into(),
        })
    }

    /// The endpoint's name: the model's, or the folder's (characters an endpoint name cannot
    /// hold become `-`).
    pub fn endpoint_name(&self) -> String {
        let raw = match self {
            Self::Registry { name, .. } => name.clone(),
            Self::Folder(path) => std::fs::canonicalize(path)
                .unwrap_or_else(|_| path.clone())
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "model".into()),
        };
        let name: String = raw
            .chars()
            .map(|c| match c {
                c if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' => c,
                _ => '-',
            })
            .take(63)
            .collect();
        match name.trim_start_matches('.') {
            "" => "model".into(),
            name => name.into(),
        }
    }
}

/// `serve --model` with its companions.
#[derive(Debug, Clone)]
pub struct ServeModel {
    pub source: ModelSource,
    /// The MLflow tracking server of a `models:/` source (else `MLFLOW_TRACKING_URI`).
    pub registry_uri: Option<String>,
    /// The endpoint's name, instead of the model's.
    pub endpoint: Option<String>,
}

impl ServeModel {
    /// Points `settings` at the model: its registry and one endpoint. A config file that names
    /// endpoints of its own is refused (one of the two must go), as is a `models:/` source with
    /// no tracking server.
    pub(super) fn apply(&self, settings: &mut Settings) -> Result<(), SettingsError> {
        if !settings.endpoints.is_empty() {
            return Err(invalid(
                "--model",
                "serves one endpoint of its own, and the configuration names endpoints too: drop --model or the config's endpoints",
            ));
        }
        let name = self
            .endpoint
            .clone()
            .unwrap_or_else(|| self.source.endpoint_name());
        let (model, version) = match &self.source {
            ModelSource::Registry {
                name: model,
                version,
            } => {
                let uri = self
                    .registry_uri
                    .clone()
                    .or_else(|| std::env::var("MLFLOW_TRACKING_URI").ok())
                    .filter(|u| !u.is_empty())
                    .ok_or_else(|| {
                        invalid(
                            "--registry-uri",
                            "a models:/ source needs the MLflow tracking server: --registry-uri URL or MLFLOW_TRACKING_URI",
                        )
                    })?;
                settings.registry.kind = RegistryKind::Mlflow;
                settings.registry.uri = Some(uri);
                (model.clone(), version.clone())
            }
            ModelSource::Folder(path) => {
                settings.registry.kind = RegistryKind::Folder;
                settings.registry.path = path.clone();
                (name.clone(), FOLDER_VERSION.to_owned())
            }
        };
        settings.endpoints.push(EndpointSettings {
            name,
            served_entities: vec![ServedEntitySettings::new(&model, &version)],
            ..EndpointSettings::default()
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_uris_and_paths_parse_and_bad_uris_say_the_forms() {
        let reg = |name: &str, version: &str| ModelSource::Registry {
            name: name.into(),
            version: version.into(),
        };
        assert_eq!(
            ModelSource::parse("models:/fraud@champion").unwrap(),
            reg("fraud", "champion")
        );
        assert_eq!(
            ModelSource::parse("models:/fraud/3").unwrap(),
            reg("fraud", "3")
        );
        assert_eq!(
            ModelSource::parse("models:/main.ml.fraud@prod").unwrap(),
            reg("main.ml.fraud", "prod")
        );
        assert_eq!(
            ModelSource::parse("out/my model").unwrap(),
            ModelSource::Folder("out/my model".into())
        );
        for bad in [
            "models:/fraud",
            "models:/@x",
            "models:/a/b/c",
            "models:/a@b/c",
        ] {
            let e = ModelSource::parse(bad).unwrap_err().to_string();
            assert!(
                e.contains("--model") && e.contains("models:/NAME@ALIAS"),
                "{bad}: {e}"
            );
        }
        assert_eq!(
            ModelSource::Folder("out/my model!".into()).endpoint_name(),
            "my-model-"
        );
        assert_eq!(reg("main.ml.fraud", "1").endpoint_name(), "main.ml.fraud");
    }

    #[test]
    fn a_model_becomes_the_registry_and_one_endpoint_and_refuses_config_endpoints() {
        let model = ServeModel {
            source: ModelSource::parse("models:/fraud@champion").unwrap(),
            registry_uri: Some("http://mlflow:5000".into()),
            endpoint: None,
        };
        let mut s = Settings::default();
        model.apply(&mut s).unwrap();
        assert_eq!(s.registry.kind, RegistryKind::Mlflow);
        assert_eq!(s.endpoints[0].name, "fraud");
        let entity = &s.endpoints[0].served_entities[0];
        assert_eq!(
            (entity.entity_name.as_str(), entity.entity_version.as_str()),
            ("fraud", "champion")
        );
        let e = model.apply(&mut s).unwrap_err().to_string();
        assert!(e.contains("names endpoints too"), "{e}");

        let folder = ServeModel {
            source: ModelSource::Folder("models/transactions/1".into()),
            registry_uri: None,
            endpoint: Some("tx".into()),
        };
        let mut s = Settings::default();
        folder.apply(&mut s).unwrap();
        assert_eq!(s.registry.kind, RegistryKind::Folder);
        assert_eq!(s.endpoints[0].name, "tx");
        assert_eq!(s.endpoints[0].served_entities[0].entity_version, "1");
    }
}
