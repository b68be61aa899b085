//! Typed configuration: built-in defaults -> YAML file -> environment (`MODELGATE__SECTION__KEY`)
//! -> command-line flags, validated once at start with errors that name the key. One file per
//! section of the config file; each section's checks live with its type.

pub mod auth;
pub mod capture;
pub mod control;
pub mod endpoint;
pub mod engine;
pub mod features;
pub mod fleet;
pub mod governance;
pub mod inference;
pub mod inference_log;
pub mod limits;
pub mod log;
pub mod model_source;
pub mod monitoring;
pub mod promotion;
pub mod proxies;
pub mod redact;
pub mod registry;
pub mod server;
pub mod tls;
pub mod trace;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Yaml};
use figment::Figment;
use serde::{Deserialize, Serialize};

pub use self::control::ControlSettings;
pub use self::endpoint::{EndpointSettings, ServedEntitySettings, Violation};
pub use self::engine::EngineSettings;
pub use self::features::{FeatureSettings, StoreKind};
pub use self::inference::InferenceSettings;
pub use self::inference_log::InferenceLogSettings;
pub use self::monitoring::MonitoringSettings;
pub use self::redact::{redact_url, REDACTED};
pub use self::registry::{RegistryKind, RegistrySettings};
pub use self::server::ServerSettings;

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("configuration error: {0}")]
    Load(#[from] Box<figment::Error>),
    #[error("configuration error: {key}: {message}")]
    Invalid { key: String, message: String },
    #[error("configuration file {0} does not exist")]
    MissingFile(PathBuf),
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> SettingsError {
    SettingsError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

/// A value outside an enum's set (`registry.kind: s3`) as an error that names the key, the value
/// and the accepted values, like the checks of `validate`; other load errors as figment says them.
fn load_error(e: figment::Error) -> SettingsError {
    let figment::error::Kind::UnknownVariant(found, known) = &e.kind else {
        return SettingsError::Load(Box::new(e));
    };
    let mut key = String::new();
    for part in &e.path {
        if part.parse::<usize>().is_ok() {
            key.push_str(&format!("[{part}]"));
        } else {
            if !key.is_empty() {
                key.push('.');
            }
            key.push_str(part);
        }
    }
    let from = match e.metadata.as_ref() {
        Some(m) => match &m.source {
            Some(figment::Source::File(path)) => format!(", in {}", path.display()),
            _ => format!(", from the {}", m.name),
        },
        None => String::new(),
    };
    invalid(
        key,
        format!(
            "unknown value '{found}' (known: {}){from}",
            known.join(", ")
        ),
    )
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub server: ServerSettings,
    pub registry: RegistrySettings,
    pub engine: EngineSettings,
    pub inference: InferenceSettings,
    pub control: ControlSettings,
    pub features: FeatureSettings,
    /// Inference tables: where and how endpoints with `auto_capture_config` log.
    pub inference_log: InferenceLogSettings,
    /// Drift and quality monitoring of every served entity (docs/monitoring.md).
    pub monitoring: MonitoringSettings,
    /// Bearer tokens with scopes (docs/operations.md).
    pub auth: auth::AuthSettings,
    /// Bounds on what one request may hold (docs/operations.md, "Limits").
    pub limits: limits::DecodeLimits,
    /// Log lines: text or JSON, and the access log.
    pub log: log::LogSettings,
    /// OpenTelemetry spans over OTLP (docs/operations.md, "Tracing"). Off by default.
    pub tracing: trace::TracingSettings,
    /// What every endpoint's promotion evaluation shares (docs/promotion.md).
    pub promotion: promotion::PromotionGlobals,
    /// What replicas share through Redis (docs/operations.md, "Rate limits across replicas").
    /// Off by default.
    pub fleet: fleet::FleetSettings,
    pub endpoints: Vec<EndpointSettings>,
    /// Where the gateway keeps what it writes for itself: the endpoint state file and the
    /// MLflow download cache, unless `control.state_file` or `registry.cache_dir` say
    /// otherwise. Relative to the working directory.
    pub data_dir: PathBuf,
}

/// `data_dir` by default: in the working directory, not beside the config file (a config
/// folder is often read-only, and belongs to whoever wrote the config).
pub const DEFAULT_DATA_DIR: &str = ".modelgate";

impl Default for Settings {
    fn default() -> Self {
        Self {
            server: Default::default(),
            registry: Default::default(),
            engine: Default::default(),
            inference: Default::default(),
            control: Default::default(),
            features: Default::default(),
            inference_log: Default::default(),
            monitoring: Default::default(),
            auth: Default::default(),
            limits: Default::default(),
            log: Default::default(),
            tracing: Default::default(),
            promotion: Default::default(),
            fleet: Default::default(),
            endpoints: Default::default(),
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
        }
    }
}

impl Settings {
    /// Layers defaults, the file (when given), the environment and CLI overrides, then validates.
    pub fn load(file: Option<&Path>, listen_override: Option<&str>) -> Result<Self, SettingsError> {
        Self::load_serving(file, listen_override, None)
    }

    /// [`Settings::load`], pointed at one model when `model` is given (`serve --model`).
    pub fn load_serving(
        file: Option<&Path>,
        listen_override: Option<&str>,
        model: Option<&model_source::ServeModel>,
    ) -> Result<Self, SettingsError> {
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        if let Some(path) = file {
            if !path.exists() {
                return Err(SettingsError::MissingFile(path.to_owned()));
            }
            figment = figment.merge(Yaml::file_exact(path));
        }
        figment = figment.merge(Env::prefixed("MODELGATE__").split("__"));
        if let Some(listen) = listen_override {
            figment = figment.merge(("server.listen", listen));
        }
        let mut settings = Self::layered(figment, file)?;
        if let Some(model) = model {
            model.apply(&mut settings)?;
        }
        settings.validate()?;
        Ok(settings)
    }

    /// The settings of a layered figment, with the defaults that depend on others filled in.
    fn layered(figment: Figment, file: Option<&Path>) -> Result<Self, SettingsError> {
        let mut settings: Settings = figment.extract().map_err(load_error)?;
        if settings.control.state_file.is_none() {
            settings.control.state_file =
                Some(control::default_state_file(&settings.data_dir, file));
        }
        if settings.registry.cache_dir.is_none() {
            settings.registry.cache_dir = Some(settings.data_dir.join("mlflow-cache"));
        }
        Ok(settings)
    }

    pub fn listen_addr(&self) -> Result<SocketAddr, SettingsError> {
        self.server.listen_addr()
    }

    /// The admin listener's address, when the admin API has its own.
    pub fn admin_addr(&self) -> Result<Option<SocketAddr>, SettingsError> {
        self.server.admin_addr()
    }

    /// The decode limits, with the row bound of `inference.max_batch_rows`.
    pub fn decode_limits(&self) -> limits::DecodeLimits {
        limits::DecodeLimits {
            max_rows: self.inference.max_batch_rows,
            ..self.limits
        }
    }

    /// Closed by default: a listener beyond loopback needs tokens, unless the operator says
    /// `auth.allow_anonymous: true` in so many words.
    fn check_exposure(&self) -> Result<(), SettingsError> {
        if self.auth.enabled || self.auth.allow_anonymous {
            return Ok(());
        }
        let listeners = [
            ("server.listen", Some(self.listen_addr()?)),
            ("server.admin_listen", self.admin_addr()?),
            ("server.grpc_listen", self.server.grpc_addr()?),
        ];
        for (key, addr) in listeners {
            if let Some(addr) = addr.filter(|a| !a.ip().is_loopback()) {
                return Err(invalid(
                    "auth.enabled",
                    format!(
                        "{key} {addr} listens beyond loopback, which needs bearer tokens (auth.enabled: true with auth.tokens_file or ${}); to serve anyone who can reach the port, say auth.allow_anonymous: true",
                        self.auth.tokens_env
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Anonymous access beyond loopback, allowed in so many words: worth a warning at start.
    pub fn anonymous_beyond_loopback(&self) -> bool {
        let beyond = |a: Option<SocketAddr>| a.is_some_and(|a| !a.ip().is_loopback());
        !self.auth.enabled
            && (beyond(self.listen_addr().ok())
                || beyond(self.admin_addr().ok().flatten())
                || beyond(self.server.grpc_addr().ok().flatten()))
    }

    pub fn inference_workers(&self) -> usize {
        if self.inference.workers == 0 {
            num_cpus::get()
        } else {
            self.inference.workers
        }
    }

    pub fn http_workers(&self) -> usize {
        if self.server.http_workers == 0 {
            num_cpus::get()
        } else {
            self.server.http_workers
        }
    }

    pub fn validate(&self) -> Result<(), SettingsError> {
        let listen = self.listen_addr()?;
        if self
            .admin_addr()?
            .is_some_and(|a| a == listen && a.port() != 0)
        {
            return Err(invalid(
                "server.admin_listen",
                "must differ from server.listen",
            ));
        }
        if let Some(grpc) = self.server.grpc_addr()? {
            if grpc.port() != 0 && (grpc == listen || self.admin_addr()? == Some(grpc)) {
                return Err(invalid(
                    "server.grpc_listen",
                    "must differ from server.listen and server.admin_listen",
                ));
            }
        }
        self.check_exposure()?;
        if let Some(bad) = self
            .server
            .trusted_proxies
            .iter()
            .find(|p| proxies::parse_range(p).is_none())
        {
            return Err(invalid(
                "server.trusted_proxies",
                format!("'{bad}' is not an IP address or CIDR range (10.0.0.0/8, ::1/128)"),
            ));
        }
        self.server.check_bounds()?;
        if let Some((key, message)) = self.limits.problem() {
            return Err(invalid(key, message));
        }
        self.registry.check()?;
        self.inference.check()?;
        if let Some((key, message)) = self.monitoring.problems().into_iter().next() {
            return Err(invalid(key, message));
        }
        if let Some((key, message)) = self.inference_log.problem() {
            return Err(invalid(format!("inference_log.{key}"), message));
        }
        if let Some((key, message)) = self.tracing.problem() {
            return Err(invalid(format!("tracing.{key}"), message));
        }
        if let Some((key, message)) = self.promotion.problem() {
            return Err(invalid(format!("promotion.{key}"), message));
        }
        if let Some((key, message)) = self.fleet.problem() {
            return Err(invalid(format!("fleet.{key}"), message));
        }
        for (i, ep) in self.endpoints.iter().enumerate() {
            let key = format!("endpoints[{i}]");
            if self.endpoints[..i].iter().any(|e| e.name == ep.name) {
                return Err(invalid(
                    format!("{key}.name"),
                    format!("endpoint '{}' is configured twice", ep.name),
                ));
            }
            if let Some(Violation { key, message }) = ep.violations(&key).into_iter().next() {
                return Err(invalid(key, message));
            }
            if let Some(promotion) = &ep.promotion {
                let problem = promotion::PromotionSettings::deployment_problem(
                    promotion,
                    self.monitoring.enabled,
                    self.registry.kind != RegistryKind::Folder,
                );
                if let Some(message) = problem {
                    return Err(invalid(format!("{key}.promotion"), message));
                }
            }
        }
        // Two endpoints logging into one set of inference tables would mix their rows.
        if let Some(Violation { key, message }) = capture::shared_table_violations(&self.endpoints)
            .into_iter()
            .next()
        {
            return Err(invalid(key, message));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoint::config::valid_name;
    use crate::settings::engine::EngineChoice;

    fn valid() -> Settings {
        Settings {
            endpoints: vec![EndpointSettings {
                name: "iris".into(),
                served_entities: vec![ServedEntitySettings::new("iris-model", "1")],
                traffic_config: None,
                routing: Default::default(),
                auto_capture_config: None,
                rate_limits: Vec::new(),
                ..Default::default()
            }],
            ..Settings::default()
        }
    }

    /// The key and message of a validation error.
    fn invalid_key(s: &Settings) -> (String, String) {
        match s.validate() {
            Err(SettingsError::Invalid { key, message }) => (key, message),
            other => panic!("expected an invalid key, got {other:?}"),
        }
    }

    #[test]
    fn defaults() {
        let s = Settings::default();
        assert_eq!(s.server.listen, "127.0.0.1:8080");
        assert_eq!(s.server.http_workers, 0);
        assert_eq!(s.server.max_body_bytes, 16 * 1024 * 1024);
        assert_eq!(s.server.shutdown_timeout_seconds, 30);
        assert_eq!(s.registry.kind, RegistryKind::File);
        assert_eq!(s.features.store, StoreKind::Embedded);
        assert_eq!(s.registry.path, PathBuf::from("models"));
        assert_eq!(s.engine.ort_dylib_path, None);
        assert!(!s.engine.require_ort);
        assert_eq!(s.engine.default, EngineChoice::Auto);
        assert_eq!(s.inference.workers, 0);
        assert_eq!(s.inference.queue_capacity, 1024);
        assert_eq!(s.inference.max_batch_rows, 10_000);
        assert_eq!(s.inference.warmup_runs, 3);
        assert_eq!(s.inference.validation_tolerance, 1e-4);
        assert!(s.endpoints.is_empty());
    }

    #[test]
    fn no_endpoints_is_valid_for_the_control_plane_to_create_them() {
        Settings::default().validate().unwrap();
    }

    #[test]
    fn a_minimal_configuration_is_valid() {
        let s = valid();
        s.validate().unwrap();
        assert_eq!(s.listen_addr().unwrap(), "127.0.0.1:8080".parse().unwrap());
        assert!(s.inference_workers() >= 1);
        assert!(s.http_workers() >= 1);
    }

    #[test]
    fn explicit_worker_counts_are_kept() {
        let mut s = valid();
        s.inference.workers = 3;
        s.server.http_workers = 5;
        assert_eq!(s.inference_workers(), 3);
        assert_eq!(s.http_workers(), 5);
    }

    #[test]
    fn error_display_names_the_key() {
        let mut s = valid();
        s.inference.queue_capacity = 0;
        assert_eq!(
            s.validate().unwrap_err().to_string(),
            "configuration error: inference.queue_capacity: must be above 0"
        );
    }

    #[test]
    fn each_invalid_value_names_its_key() {
        type Edit = fn(&mut Settings);
        let cases: Vec<(Edit, &str)> = vec![
            (|s| s.server.listen = "nope".into(), "server.listen"),
            (|s| s.server.listen = "127.0.0.1".into(), "server.listen"),
            (|s| s.server.max_body_bytes = 0, "server.max_body_bytes"),
            (
                |s| s.inference.queue_capacity = 0,
                "inference.queue_capacity",
            ),
            (
                |s| s.inference.max_batch_rows = 0,
                "inference.max_batch_rows",
            ),
            (
                |s| s.inference.validation_tolerance = -1.0,
                "inference.validation_tolerance",
            ),
            (
                |s| s.inference.validation_tolerance = f64::NAN,
                "inference.validation_tolerance",
            ),
            (|s| s.endpoints[0].name = "".into(), "endpoints[0].name"),
            (|s| s.endpoints[0].name = "a b".into(), "endpoints[0].name"),
            (
                |s| s.endpoints[0].name = ".hidden".into(),
                "endpoints[0].name",
            ),
            (
                |s| s.endpoints[0].name = "x".repeat(64),
                "endpoints[0].name",
            ),
            (
                |s| s.endpoints[0].served_entities.clear(),
                "endpoints[0].served_entities",
            ),
            (
                |s| {
                    let se = s.endpoints[0].served_entities[0].clone();
                    s.endpoints[0].served_entities.push(se);
                },
                "endpoints[0].served_entities[1].name",
            ),
            (
                |s| s.endpoints[0].served_entities[0].entity_name = "a/b".into(),
                "endpoints[0].served_entities[0].entity_name",
            ),
            (
                |s| s.endpoints[0].served_entities[0].entity_version = "".into(),
                "endpoints[0].served_entities[0].entity_version",
            ),
            (
                |s| s.endpoints[0].served_entities[0].name = Some("bad name".into()),
                "endpoints[0].served_entities[0].name",
            ),
        ];
        for (edit, want) in cases {
            let mut s = valid();
            edit(&mut s);
            let (key, message) = invalid_key(&s);
            assert_eq!(key, want, "{message}");
            assert!(!message.is_empty());
        }
    }

    #[test]
    fn messages_quote_the_bad_value() {
        let mut s = valid();
        s.server.listen = "nope".into();
        assert!(invalid_key(&s).1.contains("'nope' is not HOST:PORT"));
    }

    /// Settings from defaults and a YAML text, as `load` layers them.
    fn from_yaml(yaml: &str) -> Result<Settings, SettingsError> {
        let figment =
            Figment::from(Serialized::defaults(Settings::default())).merge(Yaml::string(yaml));
        let settings = Settings::layered(figment, None)?;
        settings.validate()?;
        Ok(settings)
    }

    #[test]
    fn a_value_outside_its_set_names_the_key_the_value_and_the_accepted_ones() {
        let cases = [
            ("registry: {kind: s3}", "registry.kind", "'s3' (known: file, mlflow, folder)"),
            (
                "features: {store: memcached}",
                "features.store",
                "'memcached' (known: embedded, redis)",
            ),
            ("engine: {default: gpu}", "engine.default", "'gpu' (known: auto, ort, tract)"),
            (
                "endpoints: [{name: a, served_entities: [{entity_name: m, entity_version: '1', engine: gpu}]}]",
                "endpoints[0].served_entities[0].engine",
                "'gpu' (known: auto, ort, tract)",
            ),
        ];
        for (yaml, want_key, want) in cases {
            match from_yaml(yaml) {
                Err(SettingsError::Invalid { key, message }) => {
                    assert_eq!(key, want_key, "{yaml}: {message}");
                    assert!(message.contains(want), "{yaml}: {message}");
                }
                other => panic!("{yaml}: {other:?}"),
            }
        }
        // The accepted spellings, as the config file writes them.
        let s = from_yaml(
            "registry: {kind: mlflow, uri: 'http://mlflow:5000'}\nfeatures: {store: redis}",
        )
        .unwrap();
        assert_eq!(s.registry.kind, RegistryKind::Mlflow);
        assert_eq!(s.features.store, StoreKind::Redis);
        let text = serde_yaml::to_string(&s).unwrap();
        assert!(
            text.contains("kind: mlflow") && text.contains("store: redis"),
            "{text}"
        );
    }

    #[test]
    fn duplicate_endpoint_names_point_at_the_second() {
        let mut s = valid();
        let ep = s.endpoints[0].clone();
        s.endpoints.push(ep);
        let (key, message) = invalid_key(&s);
        assert_eq!(key, "endpoints[1].name");
        assert!(message.contains("configured twice"), "{message}");
    }

    #[test]
    fn later_endpoints_are_indexed() {
        let mut s = valid();
        let mut ep = s.endpoints[0].clone();
        ep.name = "second".into();
        ep.served_entities[0].entity_version = "bad version".into();
        s.endpoints.push(ep);
        assert_eq!(
            invalid_key(&s).0,
            "endpoints[1].served_entities[0].entity_version"
        );
    }

    #[test]
    fn valid_names() {
        for ok in [
            "a",
            "iris-v2",
            "my_model.onnx",
            "champion",
            "12",
            &"x".repeat(63),
        ] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in ["", ".x", "a b", "a/b", "é", &"x".repeat(64)] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn edge_values_are_accepted() {
        let mut s = valid();
        s.inference.validation_tolerance = 0.0;
        s.server.listen = "0.0.0.0:0".into();
        s.auth.allow_anonymous = true;
        s.endpoints[0].served_entities[0].entity_version = "champion".into();
        s.endpoints[0].served_entities[0].name = Some("iris-1".into());
        s.validate().unwrap();
    }

    #[test]
    fn listening_beyond_loopback_needs_tokens_or_an_explicit_yes() {
        let mut s = valid();
        for open in ["0.0.0.0:8080", "[::]:8080", "10.1.2.3:80"] {
            s.server.listen = open.into();
            let (key, message) = invalid_key(&s);
            assert_eq!(key, "auth.enabled", "{open}");
            assert!(message.contains("auth.allow_anonymous: true"), "{message}");
            assert!(message.contains(open), "{message}");
        }
        s.auth.allow_anonymous = true;
        s.validate().unwrap();
        assert!(s.anonymous_beyond_loopback());
        s.auth.allow_anonymous = false;
        s.auth.enabled = true;
        s.validate().unwrap();
        assert!(!s.anonymous_beyond_loopback());
        // Loopback needs neither; an admin listener beyond it does.
        let mut s = valid();
        s.server.listen = "[::1]:0".into();
        s.validate().unwrap();
        s.server.admin_listen = Some("0.0.0.0:9000".into());
        let (key, message) = invalid_key(&s);
        assert_eq!(key, "auth.enabled");
        assert!(
            message.contains("server.admin_listen 0.0.0.0:9000"),
            "{message}"
        );
        s.server.admin_listen = Some("[::1]:9000".into());
        s.server.listen = "[::1]:9000".into();
        assert_eq!(invalid_key(&s).0, "server.admin_listen");
        s.server.listen = "[::1]:0".into();
        s.server.admin_listen = Some("127.0.0.1:9000".into());
        s.validate().unwrap();
        // The gRPC listener alike (beyond loopback it needs tokens); its own port.
        s.server.grpc_listen = Some("0.0.0.0:9001".into());
        let (key, message) = invalid_key(&s);
        assert_eq!(key, "auth.enabled");
        assert!(
            message.contains("server.grpc_listen 0.0.0.0:9001"),
            "{message}"
        );
        let mut open = s.clone();
        open.auth.allow_anonymous = true;
        assert!(open.anonymous_beyond_loopback());
        s.server.grpc_listen = Some("127.0.0.1:9000".into());
        assert_eq!(invalid_key(&s).0, "server.grpc_listen");
        s.server.grpc_listen = Some("not an address".into());
        assert_eq!(invalid_key(&s).0, "server.grpc_listen");
        s.server.grpc_listen = Some("127.0.0.1:0".into());
        s.validate().unwrap();
        s.server.tls = Some(tls::TlsSettings {
            cert_file: "cert.pem".into(),
            key_file: "key.pem".into(),
            reload_interval_ms: 1000,
            client_ca_file: None,
        });
        // gRPC is served inside TLS with the HTTP listener's certificate.
        s.validate().unwrap();
    }

    #[test]
    fn redaction_hides_every_secret_and_keeps_the_rest() {
        let mut s = valid();
        s.registry.token = Some("tok-123".into());
        s.registry.password = Some("pw-456".into());
        s.registry.username = Some("alice".into());
        s.registry.webhook_secret = Some("hook-789".into());
        s.registry.uri = Some("https://bob:uri-pw@mlflow:5000/x".into());
        s.features.redis.url = "redis://:redis-pw@cache:6379/0".into();
        s.inference_log
            .storage_options
            .insert("AWS_SECRET_ACCESS_KEY".into(), "s3-secret".into());
        s.inference_log
            .storage_options
            .insert("AWS_ENDPOINT_URL".into(), "http://127.0.0.1:9".into());
        s.registry
            .storage_options
            .insert("AZURE_STORAGE_ACCOUNT_KEY".into(), "artifact-secret".into());
        s.registry.storage_options.insert(
            "AZURE_STORAGE_ACCOUNT_NAME".into(),
            "artifact-account".into(),
        );
        let text = serde_yaml::to_string(&s.redacted()).unwrap();
        for secret in [
            "tok-123",
            "pw-456",
            "hook-789",
            "uri-pw",
            "redis-pw",
            "s3-secret",
            "artifact-secret",
        ] {
            assert!(!text.contains(secret), "{secret} printed:\n{text}");
        }
        for kept in [
            "alice",
            "bob",
            "cache:6379/0",
            "http://127.0.0.1:9",
            "mlflow:5000/x",
            "artifact-account",
        ] {
            assert!(text.contains(kept), "{kept} lost:\n{text}");
        }
    }

    #[test]
    fn bad_trusted_proxies_and_budgets_are_named() {
        let mut s = valid();
        s.server.trusted_proxies = vec!["10.0.0.0/8".into(), "nope".into()];
        let (key, message) = invalid_key(&s);
        assert_eq!(key, "server.trusted_proxies");
        assert!(message.contains("'nope'"), "{message}");
        let mut s = valid();
        s.server.max_inflight_body_bytes = s.server.max_body_bytes - 1;
        assert_eq!(invalid_key(&s).0, "server.max_inflight_body_bytes");
        let mut s = valid();
        s.limits.max_columns = 0;
        assert_eq!(invalid_key(&s).0, "limits.max_columns");
    }

    #[test]
    fn two_endpoints_cannot_share_inference_tables() {
        let mut s = valid();
        let mut other = s.endpoints[0].clone();
        other.name = "other".into();
        let capture = |prefix: Option<&str>| {
            serde_json::from_value(
                serde_json::json!({"enabled": true, "table_name_prefix": prefix}),
            )
            .unwrap()
        };
        s.endpoints[0].auto_capture_config = Some(capture(None));
        other.auto_capture_config = Some(capture(Some("IRIS")));
        s.endpoints.push(other);
        let (key, message) = invalid_key(&s);
        assert!(key.starts_with("endpoints[1].auto_capture_config"), "{key}");
        assert!(
            message.contains("iris") && message.contains("other"),
            "{message}"
        );
        s.endpoints[1].auto_capture_config = Some(capture(Some("other")));
        s.validate().unwrap();
    }

    #[test]
    fn missing_file_is_reported() {
        let path = Path::new("/nonexistent/modelgate-test.yaml");
        match Settings::load(Some(path), None) {
            Err(SettingsError::MissingFile(p)) => assert_eq!(p, path),
            other => panic!("{other:?}"),
        }
    }
}
