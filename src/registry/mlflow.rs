//! The MLflow Model Registry over its REST API: aliases, stages (read as aliases) and version
//! numbers resolve to versions; a version's artifacts come through the tracking server's
//! artifact proxy into a local cache, one folder per model and version, downloaded into a
//! temporary folder, checked against the listed sizes and renamed into place (so a cached
//! version is whole, and is never downloaded twice).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reqwest::blocking::{Client, RequestBuilder};
use reqwest::{StatusCode, Url};
use serde_json::Value;

use super::file::load_model_dir;
use super::{object_files, Download, ModelVersion, Registry, RegistryError};
use crate::progress::{Progress, Unit};
use crate::settings::RegistrySettings;

/// Stage names MLflow still accepts; `Archived` versions are never served.
const STAGES: [&str; 2] = ["Production", "Staging"];
const COMPLETE_MARKER: &str = ".modelgate-complete";
/// Deadline of one artifact download (`registry.timeout_seconds` bounds the other calls).
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(600);

enum Auth {
    Bearer(String),
    Basic(String, String),
}

pub struct MlflowRegistry {
    base: Url,
    client: Client,
    auth: Option<Auth>,
    cache: PathBuf,
    /// Options of the object store artifacts may be in (environment, then settings).
    store_options: std::collections::BTreeMap<String, String>,
    /// `registry.max_version_bytes`.
    max_version_bytes: u64,
}

/// An API failure, before it is given the caller's meaning.
enum ApiError {
    /// 404, or MLflow's RESOURCE_DOES_NOT_EXIST / "not found" answers.
    NotFound,
    Registry(RegistryError),
}

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> Self {
        Self::Registry(e)
    }
}

impl ApiError {
    /// Gives a not-found its meaning for this call.
    fn or_not_found(self, not_found: impl FnOnce() -> RegistryError) -> RegistryError {
        match self {
            Self::NotFound => not_found(),
            Self::Registry(e) => e,
        }
    }
}

fn env_or(value: &Option<String>, var: &str) -> Option<String> {
    value
        .clone()
        .or_else(|| std::env::var(var).ok())
        .filter(|s| !s.is_empty())
}

impl MlflowRegistry {
    pub fn new(settings: &RegistrySettings) -> Result<Self, RegistryError> {
        let uri = settings.uri.clone().unwrap_or_default();
        let invalid = |message: String| RegistryError::Invalid {
            path: PathBuf::from(&uri),
            message,
        };
        let mut base = Url::parse(&uri).map_err(|e| invalid(format!("not a URL: {e}")))?;
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let client = Client::builder()
            .timeout(Duration::from_secs(settings.timeout_seconds))
            .connect_timeout(Duration::from_secs(settings.timeout_seconds.min(5)))
            .build()
            .map_err(|e| invalid(format!("cannot build an HTTP client: {e}")))?;
        let auth = match (
            env_or(&settings.token, "MLFLOW_TRACKING_TOKEN"),
            env_or(&settings.username, "MLFLOW_TRACKING_USERNAME"),
        ) {
            (Some(token), _) => Some(Auth::Bearer(token)),
            (None, Some(user)) => Some(Auth::Basic(
                user,
                env_or(&settings.password, "MLFLOW_TRACKING_PASSWORD").unwrap_or_default(),
            )),
            (None, None) => None,
        };
        Ok(Self {
            base,
            client,
            auth,
            store_options: object_files::options(&settings.storage_options),
            max_version_bytes: settings.max_version_bytes,
            cache: settings.cache_dir.clone().unwrap_or_else(|| {
                PathBuf::from(crate::settings::DEFAULT_DATA_DIR).join("mlflow-cache")
            }),
        })
    }

    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(
                segments
                    .iter()
                    .flat_map(|s| s.split('/'))
                    .filter(|s| !s.is_empty()),
            );
        }
        url
    }

    fn authed(&self, req: RequestBuilder) -> RequestBuilder {
        match &self.auth {
            Some(Auth::Bearer(token)) => req.bearer_auth(token),
            Some(Auth::Basic(user, password)) => req.basic_auth(user, Some(password)),
            None => req,
        }
    }

    fn send(
        &self,
        req: RequestBuilder,
        what: &str,
    ) -> Result<reqwest::blocking::Response, ApiError> {
        let unreachable = |e: reqwest::Error| RegistryError::Unreachable(format!("{what}: {e}"));
        let mut request = self.authed(req).build().map_err(unreachable)?;
        let method = match *request.method() {
            reqwest::Method::GET => "GET",
            reqwest::Method::POST => "POST",
            _ => "HTTP",
        };
        // Without credentials: the span's `url.full` goes to the trace collector.
        let url = crate::settings::redact::redact_url(request.url().as_str());
        // Within a traced refresh: a child span, and its `traceparent` on the request.
        let resp = crate::trace::client_call(method, &url, |headers| {
            for (name, value) in headers {
                if let Ok(value) = value.parse() {
                    request.headers_mut().insert(name, value);
                }
            }
            // The error's text without the URL (it may hold credentials).
            let resp = self.client.execute(request).map_err(|e| e.without_url())?;
            let status = resp.status().as_u16();
            Ok((resp, status))
        })
        .map_err(unreachable)?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let body = resp.text().unwrap_or_default();
        let parsed: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        let code = parsed["error_code"].as_str().unwrap_or("");
        let message = parsed["message"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or(body);
        if status == StatusCode::NOT_FOUND
            || code == "RESOURCE_DOES_NOT_EXIST"
            || (code == "INVALID_PARAMETER_VALUE" && message.contains("not found"))
        {
            return Err(ApiError::NotFound);
        }
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            return Err(RegistryError::Unreachable(format!("{what}: {status} {message}")).into());
        }
        let hint = match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                " (check registry.token or registry.username)"
            }
            _ => "",
        };
        Err(RegistryError::Refused(format!("{what}: {status} {message}{hint}")).into())
    }

    fn get_json(
        &self,
        segments: &[&str],
        query: &[(&str, &str)],
        what: &str,
    ) -> Result<Value, ApiError> {
        let resp = self.send(self.client.get(self.url(segments)).query(query), what)?;
        resp.json::<Value>().map_err(|e| {
            RegistryError::Unreachable(format!("{what}: the answer is not JSON: {e}")).into()
        })
    }

    fn model_version(&self, model: &str, version: &str) -> Result<Value, RegistryError> {
        let v = self
            .get_json(
                &["api/2.0/mlflow/model-versions/get"],
                &[("name", model), ("version", version)],
                "model-versions/get",
            )
            .map_err(|e| {
                e.or_not_found(|| RegistryError::VersionNotFound {
                    model: model.into(),
                    version: version.into(),
                })
            })?;
        let mv = v["model_version"].clone();
        if mv["current_stage"] == "Archived" {
            return Err(RegistryError::Refused(format!(
                "model '{model}' version {version} is archived: archived versions are not served"
            )));
        }
        Ok(mv)
    }

    /// What a not-found on `version` of `model` means: no such model, else no such version.
    fn missing_version(&self, model: &str, version: &str) -> RegistryError {
        let model_found = self.get_json(
            &["api/2.0/mlflow/registered-models/get"],
            &[("name", model)],
            "registered-models/get",
        );
        match model_found {
            Err(ApiError::NotFound) => RegistryError::ModelNotFound(model.into()),
            _ => RegistryError::VersionNotFound {
                model: model.into(),
                version: version.into(),
            },
        }
    }

    /// Where a version's files are: under the artifact proxy or in an object store.
    fn artifacts(&self, mv: &Value) -> Result<Artifacts, RegistryError> {
        let source = mv["source"].as_str().unwrap_or_default();
        let refuse =
            |why: &str| RegistryError::Refused(format!("model version source '{source}' {why}"));
        if let Some(found) = Artifacts::at(source) {
            return Ok(found);
        }
        if let Some(id) = source.strip_prefix("models:/") {
            return self.logged_model_artifacts(id, &refuse);
        }
        let Some(rest) = source.strip_prefix("runs:/") else {
            return Err(refuse("is neither runs:/, models:/, mlflow-artifacts:/ nor an object-store location (s3://, gs://, abfss://, file:)"));
        };
        let (run_id, path) = rest.split_once('/').unwrap_or((rest, ""));
        let run = self
            .get_json(
                &["api/2.0/mlflow/runs/get"],
                &[("run_id", run_id)],
                "runs/get",
            )
            .map_err(|e| e.or_not_found(|| refuse("names a run that does not exist")))?;
        let root = run["run"]["info"]["artifact_uri"]
            .as_str()
            .unwrap_or_default();
        let location = format!("{}/{}", root.trim_end_matches('/'), path.trim_matches('/'));
        Artifacts::at(location.trim_end_matches('/')).ok_or_else(|| {
            refuse(&format!(
                "has artifacts at '{root}', neither behind the tracking server's artifact proxy nor in an object store this build reads"
            ))
        })
    }

    /// Where an MLflow 3 logged model's files are: its source is `models:/<model id>`, and the
    /// tracking server knows its `artifact_uri`.
    fn logged_model_artifacts(
        &self,
        id: &str,
        refuse: &dyn Fn(&str) -> RegistryError,
    ) -> Result<Artifacts, RegistryError> {
        if !safe_name(id) {
            return Err(refuse("does not name a logged model"));
        }
        let model = self
            .get_json(
                &["api/2.0/mlflow/logged-models", id],
                &[],
                "logged-models/get",
            )
            .map_err(|e| e.or_not_found(|| refuse("names a logged model that does not exist")))?;
        let root = model["model"]["info"]["artifact_uri"]
            .as_str()
            .unwrap_or_default();
        Artifacts::at(root).ok_or_else(|| {
            refuse(&format!(
                "has artifacts at '{root}', neither behind the tracking server's artifact proxy nor in an object store this build reads"
            ))
        })
    }

    /// The files under the artifact folder `remote`, with their local paths under `local` and
    /// their listed sizes.
    fn list_files(
        &self,
        remote: &str,
        local: &Path,
        out: &mut Vec<RemoteFile>,
    ) -> Result<(), RegistryError> {
        let listing = self
            .get_json(
                &["api/2.0/mlflow-artifacts/artifacts"],
                &[("path", remote)],
                "artifact listing",
            )
            .map_err(|e| {
                e.or_not_found(|| {
                    RegistryError::Refused(format!("artifacts '{remote}' do not exist"))
                })
            })?;
        let files = listing["files"].as_array().cloned().unwrap_or_default();
        if files.is_empty() {
            return Err(RegistryError::Refused(format!(
                "artifact folder '{remote}' is empty"
            )));
        }
        for f in files {
            // Listed paths are relative to the listed folder in some servers, full in others.
            let full = f["path"].as_str().unwrap_or_default();
            let name = full.rsplit('/').next().unwrap_or(full);
            if name.is_empty() || name == "." || name == ".." {
                continue;
            }
            let remote_path = format!("{remote}/{name}");
            if f["is_dir"].as_bool().unwrap_or(false) {
                self.list_files(&remote_path, &local.join(name), out)?;
                continue;
            }
            let size = f["file_size"]
                .as_u64()
                .or_else(|| f["file_size"].as_str().and_then(|s| s.parse().ok()));
            out.push(RemoteFile {
                remote: remote_path,
                local: local.join(name),
                size,
            });
        }
        Ok(())
    }

    /// Copies the artifact folder `remote` into `local`, checking every file's size, telling
    /// `progress` (and the log, every few seconds) how far it has got.
    fn download_dir(
        &self,
        what: &str,
        remote: &str,
        local: &Path,
        progress: &Download,
    ) -> Result<(), RegistryError> {
        let mut files = Vec::new();
        self.list_files(remote, local, &mut files)?;
        let listed: u64 = files.iter().filter_map(|f| f.size).sum();
        let has_mlmodel = files.iter().any(|f| f.local == local.join("MLmodel"));
        super::check_listing(remote, has_mlmodel, listed, self.max_version_bytes)?;
        // A file listed without a size leaves the total unknown.
        let total = if files.iter().all(|f| f.size.is_some()) {
            listed
        } else {
            0
        };
        progress.begin(total);
        let mut shown = Progress::start(&format!("downloading {what}"), total, Unit::Bytes);
        for file in files {
            if let Some(dir) = file.local.parent() {
                std::fs::create_dir_all(dir).map_err(|e| RegistryError::io(dir, e))?;
            }
            let remote_path = &file.remote;
            let mut resp = self
                .send(
                    self.client
                        .get(self.url(&["api/2.0/mlflow-artifacts/artifacts", remote_path]))
                        // Model files can be large: the call deadline is for metadata calls.
                        .timeout(DOWNLOAD_TIMEOUT),
                    "artifact download",
                )
                .map_err(|e| {
                    e.or_not_found(|| {
                        RegistryError::Refused(format!("artifact '{remote_path}' vanished"))
                    })
                })?;
            let cut = |e: std::io::Error| {
                RegistryError::Unreachable(format!("artifact '{remote_path}': {e}"))
            };
            let mut out = std::fs::File::create(&file.local)
                .map_err(|e| RegistryError::io(&file.local, e))?;
            let mut got = 0u64;
            let mut buf = vec![0u8; 256 * 1024];
            loop {
                let n = std::io::Read::read(&mut resp, &mut buf).map_err(cut)?;
                if n == 0 {
                    break;
                }
                got += n as u64;
                // More than listed: stop reading at once instead of filling the disk.
                if file.size.is_some_and(|size| got > size) {
                    break;
                }
                std::io::Write::write_all(&mut out, &buf[..n])
                    .map_err(|e| RegistryError::io(&file.local, e))?;
                progress.advance(n as u64);
                let received = progress.bytes().0;
                super::check_received(remote, received, self.max_version_bytes)?;
                shown.set(received);
            }
            if let Some(size) = file.size.filter(|size| *size != got) {
                return Err(RegistryError::Unreachable(format!(
                    "artifact '{remote_path}' came with {}{got} bytes, the listing says {size}",
                    if got > size { "more than " } else { "" }
                )));
            }
            // Flushed to disk, so the cache's rename publishes whole files even after a crash.
            out.sync_all()
                .map_err(|e| RegistryError::io(&file.local, e))?;
        }
        Ok(())
    }
}

/// Where a version's files are.
enum Artifacts {
    /// A path under the tracking server's artifact proxy (`mlflow-artifacts:/`).
    Proxied(String),
    /// An object-store location (`s3://...`), read directly.
    Stored(String),
}

impl Artifacts {
    fn at(location: &str) -> Option<Self> {
        if let Some(path) = location.strip_prefix("mlflow-artifacts:/") {
            return Some(Self::Proxied(path.trim_matches('/').to_owned()));
        }
        object_files::is_object_location(location).then(|| Self::Stored(location.to_owned()))
    }
}

/// One file of a version's artifacts.
struct RemoteFile {
    remote: String,
    local: PathBuf,
    /// As listed (some servers list none).
    size: Option<u64>,
}

fn safe_name(s: &str) -> bool {
    !s.is_empty() && !s.starts_with('.') && !s.contains(['/', '\\'])
}

impl Registry for MlflowRegistry {
    fn resolve(&self, model: &str, version_or_alias: &str) -> Result<String, RegistryError> {
        if !version_or_alias.is_empty() && version_or_alias.chars().all(|c| c.is_ascii_digit()) {
            self.model_version(model, version_or_alias)?;
            return Ok(version_or_alias.to_owned());
        }
        let alias_missing = || RegistryError::AliasNotFound {
            model: model.into(),
            alias: version_or_alias.into(),
        };
        // A stage's latest version, or an alias's version: one lookup, a different answer path.
        let (path, key, what, version_at) = match STAGES
            .iter()
            .find(|s| s.eq_ignore_ascii_case(version_or_alias))
        {
            Some(stage) => (
                "api/2.0/mlflow/registered-models/get-latest-versions",
                ("stages", *stage),
                "get-latest-versions",
                "/model_versions/0/version",
            ),
            None => (
                "api/2.0/mlflow/registered-models/alias",
                ("alias", version_or_alias),
                "registered-models/alias",
                "/model_version/version",
            ),
        };
        let answer = self
            .get_json(&[path], &[("name", model), key], what)
            .map_err(|e| e.or_not_found(alias_missing))?;
        let version = answer
            .pointer(version_at)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(alias_missing)?;
        // An alias may point at an archived version: refuse it here, naming the alias.
        self.model_version(model, &version)?;
        Ok(version)
    }

    fn fetch(
        &self,
        model: &str,
        version: &str,
        progress: &Download,
    ) -> Result<ModelVersion, RegistryError> {
        if !safe_name(model) || !safe_name(version) {
            return Err(RegistryError::VersionNotFound {
                model: model.into(),
                version: version.into(),
            });
        }
        let dir = self.cache.join(model).join(version);
        // Asked even for a cached version: it may have been archived since.
        let mv = self.model_version(model, version)?;
        if dir.join(COMPLETE_MARKER).exists() {
            return load_model_dir(model, version, &dir);
        }
        let artifacts = self.artifacts(&mv)?;
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let tmp = self.cache.join(model).join(format!(
            ".{version}.partial.{}.{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let what = format!("model '{model}' version {version}");
        let downloaded = match &artifacts {
            Artifacts::Proxied(remote) => self.download_dir(&what, remote, &tmp, progress),
            Artifacts::Stored(location) => object_files::download(
                location,
                &tmp,
                &self.store_options,
                self.max_version_bytes,
                &what,
                progress,
            ),
        };
        let result = downloaded.and_then(|()| {
            std::fs::write(tmp.join(COMPLETE_MARKER), b"")
                .map_err(|e| RegistryError::io(&tmp, e))?;
            match std::fs::rename(&tmp, &dir) {
                Ok(()) => Ok(()),
                // Another download finished first: its copy is as good.
                Err(_) if dir.join(COMPLETE_MARKER).exists() => Ok(()),
                Err(e) => Err(RegistryError::io(&dir, e)),
            }
        });
        if tmp.exists() {
            let _ = std::fs::remove_dir_all(&tmp);
        }
        result?;
        load_model_dir(model, version, &dir)
    }

    fn moves_aliases(&self) -> bool {
        true
    }

    /// MLflow's "Set Registered Model Alias" call, once the version is known to be served.
    fn set_alias(&self, model: &str, alias: &str, version: &str) -> Result<(), RegistryError> {
        super::check_alias_move(alias, version)?;
        // A missing or archived version is refused: MLflow itself would take an archived one.
        self.resolve(model, version).map_err(|e| match e {
            RegistryError::VersionNotFound { .. } => self.missing_version(model, version),
            e => e,
        })?;
        let body = serde_json::json!({"name": model, "alias": alias, "version": version});
        self.send(
            self.client
                .post(self.url(&["api/2.0/mlflow/registered-models/alias"]))
                .json(&body),
            "registered-models/alias (set)",
        )
        .map_err(|e| e.or_not_found(|| self.missing_version(model, version)))?;
        Ok(())
    }

    fn describe(&self) -> String {
        format!(
            "MLflow model registry at {} (cache {})",
            crate::settings::redact_url(self.base.as_str()),
            self.cache.display()
        )
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpListener;

    use super::*;
    use crate::settings::trace::TracingSettings;
    use crate::trace::{SpanContext, Tracer};

    /// The head of the one request `listener` gets, answered 404 (the version does not exist).
    fn one_request_head(listener: TcpListener) -> std::thread::JoinHandle<String> {
        std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && conn.read(&mut byte).unwrap() == 1 {
                head.push(byte[0]);
            }
            let body = r#"{"error_code":"RESOURCE_DOES_NOT_EXIST","message":"not found"}"#;
            let answer = format!(
                "HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            conn.write_all(answer.as_bytes()).unwrap();
            String::from_utf8(head).unwrap()
        })
    }

    /// The `traceparent` a registry call sends inside `span` (none outside any span).
    fn sent_traceparent(span: Option<SpanContext>) -> Option<SpanContext> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let uri = format!("http://{}", listener.local_addr().unwrap());
        let head = one_request_head(listener);
        let registry = MlflowRegistry::new(&RegistrySettings {
            uri: Some(uri),
            ..Default::default()
        })
        .unwrap();
        let metrics = crate::metrics::Metrics::new();
        let tracing = TracingSettings {
            enabled: true,
            endpoint: Some("http://127.0.0.1:9".into()),
            ..Default::default()
        };
        let tracer = Tracer::start(&tracing, &metrics.trace).unwrap();
        let current = span.map(|s| (tracer.clone(), s));
        let answer = crate::trace::within(current, || registry.resolve("transactions", "7"));
        assert!(answer.is_err());
        tracer.close(std::time::Instant::now());
        let head = head.join().unwrap().to_ascii_lowercase();
        let value = head.lines().find_map(|l| l.strip_prefix("traceparent: "))?;
        Some(SpanContext::from_headers(value, None).unwrap())
    }

    #[test]
    fn an_unsampled_trace_still_sends_its_traceparent_and_no_span_sends_none() {
        let unsampled = SpanContext::root(false);
        let sent = sent_traceparent(Some(unsampled.clone())).expect("a traceparent");
        assert_eq!(sent.trace_id, unsampled.trace_id);
        assert!(!sent.sampled);
        assert_eq!(sent_traceparent(None), None);
    }

    #[test]
    fn a_traced_registry_call_carries_its_spans_traceparent() {
        let refresh = SpanContext::root(true);
        let sent = sent_traceparent(Some(refresh.clone())).expect("a traceparent");
        assert_eq!(sent.trace_id, refresh.trace_id);
        assert_ne!(
            sent.span_id, refresh.span_id,
            "the call's own span, not its parent's"
        );
        assert!(sent.sampled);
    }
}
