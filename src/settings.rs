//! Typed configuration: built-in defaults -> YAML file -> environment (`MODELGATE__SECTION__KEY`)
//! -> command-line flags, validated once at start with errors that name the key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Yaml};
use figment::Figment;
use serde::{Deserialize, Serialize};

use crate::endpoint::config::Violation;
pub use crate::endpoint::config::{EndpointSettings, ServedEntitySettings};
use crate::engine::EngineChoice;

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

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub server: ServerSettings,
    pub registry: RegistrySettings,
    pub engine: EngineSettings,
    pub inference: InferenceSettings,
    pub control: ControlSettings,
    pub features: FeatureSettings,
    /// Inference tables: where and how endpoints with `auto_capture_config` log.
    pub inference_log: crate::inference_log::InferenceLogSettings,
    /// Drift and quality monitoring of every served entity (docs/monitoring.md).
    pub monitoring: crate::drift::MonitoringSettings,
    /// Bearer tokens with scopes (docs/operations.md).
    pub auth: crate::http::auth::AuthSettings,
    /// Bounds on what one request may hold (docs/operations.md, "Limits").
    pub limits: crate::protocol::limits::DecodeLimits,
    pub endpoints: Vec<EndpointSettings>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct FeatureSettings {
    /// Online tables of the embedded store, each loaded from a snapshot file at start.
    pub tables: Vec<crate::features::store::TableSettings>,
    /// Reload the tables when their snapshot files change (embedded store).
    pub watch: bool,
    /// `embedded` (tables in process, from the snapshot files) or `redis`.
    pub store: String,
    pub redis: crate::features::redis_store::RedisSettings,
}

impl Default for FeatureSettings {
    fn default() -> Self {
        Self {
            tables: Vec::new(),
            watch: true,
            store: "embedded".into(),
            redis: Default::default(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSettings {
    /// Address to listen on; port 0 picks a free port (the bound address is logged).
    pub listen: String,
    /// HTTP worker threads; 0 means one per core.
    pub http_workers: usize,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// How long in-flight requests may take to finish after SIGTERM.
    pub shutdown_timeout_seconds: u64,
    /// Scoring requests in flight at once; beyond it 429 with `Retry-After`.
    pub max_concurrent_requests: usize,
    /// A scoring request's deadline from its arrival, in ms (0: none); beyond it 504.
    pub request_timeout_ms: u64,
    /// HTTPS with these PEM files (reloaded when they change); plain HTTP without.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<crate::http::tls::TlsSettings>,
    /// A second listener (HOST:PORT) for the admin API (routes of the `manage` scope); when set,
    /// those routes answer only there and scoring only on `listen`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_listen: Option<String>,
    /// Bytes of request bodies held at once by all requests in flight; beyond it 503.
    pub max_inflight_body_bytes: usize,
    /// How long a request body may take to arrive, in ms; beyond it 408.
    pub body_read_timeout_ms: u64,
    /// Open connections at once, over all HTTP workers; beyond it new ones wait in the backlog.
    pub max_connections: usize,
    /// Requests in flight at once on one connection (HTTP/2 streams); beyond it 429.
    pub max_streams_per_connection: usize,
    /// Peers (addresses or CIDR ranges) whose `X-Forwarded-For` names the caller, for rate
    /// limits per user and the inference tables' `requester` when no token names it.
    pub trusted_proxies: Vec<String>,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            http_workers: 0,
            max_body_bytes: 16 * 1024 * 1024,
            shutdown_timeout_seconds: 30,
            max_concurrent_requests: 1024,
            request_timeout_ms: 30_000,
            tls: None,
            admin_listen: None,
            max_inflight_body_bytes: 256 * 1024 * 1024,
            body_read_timeout_ms: 10_000,
            max_connections: 10_000,
            max_streams_per_connection: 128,
            trusted_proxies: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RegistrySettings {
    /// `file`: MLflow model directories under `path`; `mlflow`: an MLflow tracking server's
    /// model registry at `uri`.
    pub kind: String,
    /// MLflow tracking server, e.g. `http://mlflow:5000`.
    pub uri: Option<String>,
    /// Bearer token for the MLflow server (else `MLFLOW_TRACKING_TOKEN`).
    pub token: Option<String>,
    /// Basic-auth user and password for the MLflow server (else `MLFLOW_TRACKING_USERNAME` /
    /// `MLFLOW_TRACKING_PASSWORD`).
    pub username: Option<String>,
    pub password: Option<String>,
    /// Where downloaded MLflow versions are kept, one folder per model and version.
    pub cache_dir: PathBuf,
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
            kind: "file".into(),
            uri: None,
            token: None,
            username: None,
            password: None,
            cache_dir: PathBuf::from(".modelgate-cache"),
            timeout_seconds: 10,
            webhook_secret: None,
            path: PathBuf::from("models"),
            watch: true,
            poll_interval_seconds: 10,
            settle_ms: 200,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct EngineSettings {
    /// `libonnxruntime.so`; when unset, `ORT_DYLIB_PATH` is used.
    pub ort_dylib_path: Option<PathBuf>,
    /// Refuse to start when ONNX Runtime does not load (instead of falling back to tract).
    pub require_ort: bool,
    /// Engine for served entities that do not choose one.
    pub default: EngineChoice,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct InferenceSettings {
    /// Inference worker threads; 0 means one per core.
    pub workers: usize,
    /// Requests that may wait for a worker; beyond it requests get 503 at once.
    pub queue_capacity: usize,
    /// Request copies waiting for shadow served entities; beyond it copies are dropped (and
    /// counted), never the caller's request.
    pub shadow_queue_capacity: usize,
    /// Most rows one request may carry.
    pub max_batch_rows: usize,
    /// Runs of the input example after load, before a version serves.
    pub warmup_runs: usize,
    /// Largest absolute difference from a version's expected output that still validates.
    pub validation_tolerance: f64,
}

impl Default for InferenceSettings {
    fn default() -> Self {
        Self {
            workers: 0,
            queue_capacity: 1024,
            shadow_queue_capacity: 256,
            max_batch_rows: 10_000,
            warmup_runs: 3,
            validation_tolerance: 1e-4,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct ControlSettings {
    /// Where endpoints created or changed through the control plane are kept across restarts.
    /// Defaults to `<config file stem>.endpoints.json` beside the config file (or
    /// `modelgate.endpoints.json` in the working directory without one).
    pub state_file: Option<PathBuf>,
}

/// What stands for a secret in printed settings and logs.
pub const REDACTED: &str = "<redacted>";

/// A URL with its password (`scheme://user:password@host`) replaced, for logs and errors.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            let shown = if userinfo.contains(':') {
                format!("{user}:{REDACTED}")
            } else if user.is_empty() {
                String::new()
            } else {
                // `redis://token@host`: a lone user part is a password to Redis.
                REDACTED.to_owned()
            };
            format!("{scheme}://{shown}@{host}{path}")
        }
        None => url.to_owned(),
    }
}

/// Store options whose names say they hold a credential.
fn is_secret_option(key: &str) -> bool {
    let key = key.to_ascii_uppercase();
    [
        "SECRET",
        "TOKEN",
        "PASSWORD",
        "SESSION",
        "KEY",
        "CREDENTIAL",
        "SAS",
    ]
    .iter()
    .any(|w| key.contains(w))
}

/// `<dir>/<stem>.endpoints.json` beside the config file, else in the working directory.
fn default_state_file(config: Option<&Path>) -> PathBuf {
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

impl Settings {
    /// Layers defaults, the file (when given), the environment and CLI overrides, then validates.
    pub fn load(file: Option<&Path>, listen_override: Option<&str>) -> Result<Self, SettingsError> {
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
        let mut settings: Settings = figment.extract().map_err(Box::new)?;
        if settings.control.state_file.is_none() {
            settings.control.state_file = Some(default_state_file(file));
        }
        settings.validate()?;
        Ok(settings)
    }

    pub fn listen_addr(&self) -> Result<SocketAddr, SettingsError> {
        self.server.listen.parse().map_err(|e| {
            invalid(
                "server.listen",
                format!("'{}' is not HOST:PORT: {e}", self.server.listen),
            )
        })
    }

    /// These settings with every secret replaced by [`REDACTED`], for `check-config` and logs:
    /// registry credentials, the webhook secret, passwords in URLs, store credentials.
    pub fn redacted(&self) -> Settings {
        let mut s = self.clone();
        let hide = |v: &mut Option<String>| {
            if v.is_some() {
                *v = Some(REDACTED.to_owned());
            }
        };
        hide(&mut s.registry.token);
        hide(&mut s.registry.password);
        hide(&mut s.registry.webhook_secret);
        s.registry.uri = s.registry.uri.as_deref().map(redact_url);
        s.features.redis.url = redact_url(&s.features.redis.url);
        for (key, value) in s.inference_log.storage_options.iter_mut() {
            if is_secret_option(key) {
                *value = REDACTED.to_owned();
            }
        }
        s
    }

    /// The admin listener's address, when the admin API has its own.
    pub fn admin_addr(&self) -> Result<Option<SocketAddr>, SettingsError> {
        let Some(listen) = &self.server.admin_listen else {
            return Ok(None);
        };
        listen.parse().map(Some).map_err(|e| {
            invalid(
                "server.admin_listen",
                format!("'{listen}' is not HOST:PORT: {e}"),
            )
        })
    }

    /// The decode limits, with the row bound of `inference.max_batch_rows`.
    pub fn decode_limits(&self) -> crate::protocol::limits::DecodeLimits {
        crate::protocol::limits::DecodeLimits {
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
            && (beyond(self.listen_addr().ok()) || beyond(self.admin_addr().ok().flatten()))
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
        self.check_exposure()?;
        if let Some(bad) = self
            .server
            .trusted_proxies
            .iter()
            .find(|p| crate::http::proxy::parse_range(p).is_none())
        {
            return Err(invalid(
                "server.trusted_proxies",
                format!("'{bad}' is not an IP address or CIDR range (10.0.0.0/8, ::1/128)"),
            ));
        }
        for (key, value) in [
            ("server.max_body_bytes", self.server.max_body_bytes),
            (
                "server.max_inflight_body_bytes",
                self.server.max_inflight_body_bytes,
            ),
            ("server.max_connections", self.server.max_connections),
            (
                "server.max_streams_per_connection",
                self.server.max_streams_per_connection,
            ),
        ] {
            if value == 0 {
                return Err(invalid(key, "must be above 0"));
            }
        }
        if self.server.max_inflight_body_bytes < self.server.max_body_bytes {
            return Err(invalid(
                "server.max_inflight_body_bytes",
                "must be at least server.max_body_bytes (else the largest body is never taken)",
            ));
        }
        if self.server.body_read_timeout_ms == 0 {
            return Err(invalid("server.body_read_timeout_ms", "must be above 0"));
        }
        if let Some((key, message)) = self.limits.problem() {
            return Err(invalid(key, message));
        }
        match self.registry.kind.as_str() {
            "file" => {}
            "mlflow" => {
                let uri = self.registry.uri.as_deref().unwrap_or("");
                if !(uri.starts_with("http://") || uri.starts_with("https://")) {
                    return Err(invalid(
                        "registry.uri",
                        format!("the mlflow registry needs an http(s) URI of the tracking server, got '{uri}'"),
                    ));
                }
                if self.registry.timeout_seconds == 0 {
                    return Err(invalid("registry.timeout_seconds", "must be above 0"));
                }
            }
            other => {
                return Err(invalid(
                    "registry.kind",
                    format!("unknown registry kind '{other}' (known: file, mlflow)"),
                ))
            }
        }
        if self.registry.poll_interval_seconds == 0 {
            return Err(invalid("registry.poll_interval_seconds", "must be above 0"));
        }
        if !matches!(self.features.store.as_str(), "embedded" | "redis") {
            return Err(invalid(
                "features.store",
                format!(
                    "unknown store '{}' (known: embedded, redis)",
                    self.features.store
                ),
            ));
        }
        if self.inference.shadow_queue_capacity == 0 {
            return Err(invalid(
                "inference.shadow_queue_capacity",
                "must be above 0",
            ));
        }
        if self.server.max_concurrent_requests == 0 {
            return Err(invalid("server.max_concurrent_requests", "must be above 0"));
        }
        if self.inference.queue_capacity == 0 {
            return Err(invalid("inference.queue_capacity", "must be above 0"));
        }
        if self.inference.max_batch_rows == 0 {
            return Err(invalid("inference.max_batch_rows", "must be above 0"));
        }
        if self.inference.validation_tolerance.is_nan() || self.inference.validation_tolerance < 0.0
        {
            return Err(invalid(
                "inference.validation_tolerance",
                "must be a number >= 0",
            ));
        }
        if let Some((key, message)) = self.monitoring.problems().into_iter().next() {
            return Err(invalid(key, message));
        }
        if let Some((key, message)) = self.inference_log.problem() {
            return Err(invalid(format!("inference_log.{key}"), message));
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
        }
        // Two endpoints logging into one set of inference tables would mix their rows.
        if let Some(Violation { key, message }) =
            crate::endpoint::config::shared_table_violations(&self.endpoints)
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

    fn valid() -> Settings {
        Settings {
            endpoints: vec![EndpointSettings {
                name: "iris".into(),
                served_entities: vec![ServedEntitySettings::new("iris-model", "1")],
                traffic_config: None,
                routing: Default::default(),
                auto_capture_config: None,
                rate_limits: Vec::new(),
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
        assert_eq!(s.registry.kind, "file");
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
            (|s| s.registry.kind = "s3".into(), "registry.kind"),
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
        s.registry.kind = "s3".into();
        assert!(invalid_key(&s).1.contains("'s3'"));
        let mut s = valid();
        s.server.listen = "nope".into();
        assert!(invalid_key(&s).1.contains("'nope' is not HOST:PORT"));
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
        let text = serde_yaml::to_string(&s.redacted()).unwrap();
        for secret in [
            "tok-123",
            "pw-456",
            "hook-789",
            "uri-pw",
            "redis-pw",
            "s3-secret",
        ] {
            assert!(!text.contains(secret), "{secret} printed:\n{text}");
        }
        for kept in [
            "alice",
            "bob",
            "cache:6379/0",
            "http://127.0.0.1:9",
            "mlflow:5000/x",
        ] {
            assert!(text.contains(kept), "{kept} lost:\n{text}");
        }
    }

    #[test]
    fn urls_lose_their_passwords_only() {
        assert_eq!(
            redact_url("redis://user:pw@host:6379/1"),
            "redis://user:<redacted>@host:6379/1"
        );
        assert_eq!(redact_url("redis://:pw@host"), "redis://:<redacted>@host");
        assert_eq!(redact_url("redis://token@host"), "redis://<redacted>@host");
        assert_eq!(redact_url("redis://host:6379"), "redis://host:6379");
        assert_eq!(redact_url("not a url"), "not a url");
        assert_eq!(
            redact_url("http://h/p?q=a@b"),
            "http://h/p?q=a@b",
            "an @ past the host is not userinfo"
        );
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
