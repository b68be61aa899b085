//! A real `mlflow server` (sqlite store, artifacts in a temp dir, 127.0.0.1, a port it binds
//! itself) and the REST calls a data scientist's client makes: log a model's files to a run,
//! register a version from `runs:/<run>/model`, move aliases and stages.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use reqwest::blocking::RequestBuilder;
use serde_json::{json, Value};

use super::client;

/// The admin MLflow's auth app creates at start (the password comes from the environment).
pub const ADMIN: (&str, &str) = ("admin", "modelgate-admin-pw");

/// The `mlflow` command: `MODELGATE_MLFLOW`, else the venv the repo script makes (once).
pub fn mlflow_command() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        super::path_from_env_or_script("MODELGATE_MLFLOW", "scripts/mlflow-venv.sh")
    })
    .clone()
}

pub struct MlflowServer {
    child: Child,
    pub uri: String,
    dir: tempfile::TempDir,
    experiment_id: String,
    /// Basic-auth credentials when the server runs MLflow's auth app.
    auth: Option<(String, String)>,
}

/// Where a server without an artifact proxy has its runs keep their artifacts.
struct Store {
    root: String,
    env: Vec<(String, String)>,
}

impl MlflowServer {
    pub fn start() -> Self {
        Self::start_with(false)
    }

    /// A server that requires basic auth (`--app-name basic-auth`).
    pub fn start_with_auth() -> Self {
        Self::start_with(true)
    }

    /// A server that does not proxy artifacts: runs keep them under `artifact_root` (an
    /// `s3://` location), written and read there by clients with `env` (the store's
    /// endpoint and credentials).
    pub fn start_with_artifact_root(artifact_root: &str, env: &[(&str, &str)]) -> Self {
        let store = Store {
            root: artifact_root.to_owned(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        Self::spawn(tempfile::tempdir().unwrap(), false, Some(store))
    }

    fn start_with(auth: bool) -> Self {
        let mut server = Self::spawn(tempfile::tempdir().unwrap(), auth, None);
        server.experiment_id = server.call(
            "POST",
            "experiments/create",
            json!({"name": "modelgate-tests"}),
        )["experiment_id"]
            .as_str()
            .unwrap()
            .to_owned();
        server
    }

    /// Starts `mlflow server` on port 0: the server binds a port the system picks (nothing can
    /// take it between a pick and the bind) and says which in its log.
    fn spawn(dir: tempfile::TempDir, auth: bool, store: Option<Store>) -> Self {
        let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
        let mut cmd = Command::new(mlflow_command());
        cmd.arg("server");
        match &store {
            Some(store) => {
                cmd.args([
                    "--no-serve-artifacts",
                    "--default-artifact-root",
                    &store.root,
                ])
                .envs(store.env.iter().cloned());
            }
            None => {
                cmd.arg("--artifacts-destination")
                    .arg(dir.path().join("artifacts"));
            }
        }
        if auth {
            // The auth app needs a fixed secret for its CSRF protection.
            cmd.args(["--app-name", "basic-auth"])
                .env("MLFLOW_FLASK_SERVER_SECRET_KEY", "modelgate-tests")
                .env("MLFLOW_AUTH_ADMIN_PASSWORD", ADMIN.1);
        }
        let child = cmd
            .args([
                "--backend-store-uri",
                &format!("sqlite:///{}", dir.path().join("mlflow.db").display()),
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--workers",
                "1",
            ])
            // The auth app keeps its user database in the working directory.
            .current_dir(dir.path())
            // Webhooks to the gateway on loopback over http (refused by default, rightly).
            .env("MLFLOW_WEBHOOK_ALLOWED_SCHEMES", "http,https")
            .env("MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS", "true")
            .env("MLFLOW_WEBHOOK_CACHE_TTL", "1")
            // Its own process group: `mlflow server` forks uvicorn and job runners, which must
            // all stop with it.
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting mlflow server");
        let mut server = Self {
            child,
            uri: String::new(),
            dir,
            experiment_id: String::new(),
            auth: auth.then(|| (ADMIN.0.to_owned(), ADMIN.1.to_owned())),
        };
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("mlflow server exited ({status}): {}", server.log());
            }
            if server.uri.is_empty() {
                if let Some(port) = listening_port(&server.log()) {
                    server.uri = format!("http://127.0.0.1:{port}");
                }
            }
            if !server.uri.is_empty() {
                let health = server.request(client().get(format!("{}/health", server.uri)));
                if health.send().is_ok_and(|r| r.status().is_success()) {
                    return server;
                }
            }
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "mlflow server did not come up: {}",
                server.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Adds the server's credentials, when it needs them.
    pub fn request(&self, req: RequestBuilder) -> RequestBuilder {
        match &self.auth {
            Some((user, password)) => req.basic_auth(user, Some(password)),
            None => req,
        }
    }

    /// Where the server keeps artifacts (`--artifacts-destination`).
    pub fn artifacts_dir(&self) -> PathBuf {
        self.dir.path().join("artifacts")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// Stops the server and every process it forked (to test an unreachable registry).
    pub fn stop(&mut self) {
        // The child leads its own process group (see `spawn`): signal that group only, and
        // only while the child has not been reaped (its id could be reused after).
        if self.child.try_wait().ok().flatten().is_none() {
            if let Ok(pgid) = libc::pid_t::try_from(self.child.id()) {
                if pgid > 1 {
                    // SAFETY: killpg only sends a signal; the group is the server's own.
                    unsafe { libc::killpg(pgid, libc::SIGKILL) };
                }
            }
        }
        let _ = self.child.wait();
    }

    /// A registry REST call under `/api/2.0/mlflow/`; panics on failure.
    pub fn call(&self, method: &str, path: &str, body: Value) -> Value {
        let url = format!("{}/api/2.0/mlflow/{path}", self.uri);
        let req = match method {
            "DELETE" => client().delete(url).json(&body),
            "PATCH" => client().patch(url).json(&body),
            _ => client().post(url).json(&body),
        };
        let resp = self.request(req).send().unwrap();
        let status = resp.status();
        let text = resp.text().unwrap();
        assert!(
            status.is_success(),
            "{method} {path} {body}: {status} {text}"
        );
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    /// Logs the files of `model_dir` to a new run as its `model` artifact; returns the run id.
    pub fn log_model(&self, model_dir: &Path) -> String {
        let run = self.call(
            "POST",
            "runs/create",
            json!({"experiment_id": self.experiment_id}),
        );
        let run_id = run["run"]["info"]["run_id"].as_str().unwrap().to_owned();
        let root = run["run"]["info"]["artifact_uri"]
            .as_str()
            .unwrap()
            .trim_start_matches("mlflow-artifacts:/")
            .trim_matches('/')
            .to_owned();
        for entry in std::fs::read_dir(model_dir).unwrap() {
            let entry = entry.unwrap();
            let url = format!(
                "{}/api/2.0/mlflow-artifacts/artifacts/{root}/model/{}",
                self.uri,
                entry.file_name().to_str().unwrap()
            );
            let upload = client().put(url).body(std::fs::read(entry.path()).unwrap());
            let resp = self.request(upload).send().unwrap();
            assert!(
                resp.status().is_success(),
                "upload: {}",
                resp.text().unwrap()
            );
        }
        run_id
    }

    /// Registers `model_dir` as the next version of `name` (creating the model the first time).
    pub fn register(&self, name: &str, model_dir: &Path) -> String {
        let create = client().post(format!(
            "{}/api/2.0/mlflow/registered-models/create",
            self.uri
        ));
        let _ = self.request(create).json(&json!({"name": name})).send();
        let run_id = self.log_model(model_dir);
        let v = self.call(
            "POST",
            "model-versions/create",
            json!({"name": name, "source": format!("runs:/{run_id}/model"), "run_id": run_id}),
        );
        v["model_version"]["version"].as_str().unwrap().to_owned()
    }

    /// `modelgate serve --model models:/MODEL@ALIAS --registry-uri` this server, in `cwd` with
    /// `env`, once it serves.
    pub fn serve_alias(
        &self,
        model: &str,
        alias: &str,
        cwd: &Path,
        env: &[(&str, &str)],
    ) -> super::Gateway {
        let source = format!("models:/{model}@{alias}");
        let args = ["serve", "--model", &source, "--registry-uri", &self.uri];
        super::start_args_env(&args, cwd, env).unwrap_or_else(|e| panic!("did not start: {e}"))
    }

    pub fn set_alias(&self, name: &str, alias: &str, version: &str) {
        self.call(
            "POST",
            "registered-models/alias",
            json!({"name": name, "alias": alias, "version": version}),
        );
    }

    pub fn transition(&self, name: &str, version: &str, stage: &str) {
        self.call(
            "POST",
            "model-versions/transition-stage",
            json!({"name": name, "version": version, "stage": stage, "archive_existing_versions": false}),
        );
    }
}

/// The port in the server's "running on" line (uvicorn; gunicorn says "Listening at").
fn listening_port(log: &str) -> Option<u16> {
    [
        "Uvicorn running on http://127.0.0.1:",
        "Listening at: http://127.0.0.1:",
    ]
    .iter()
    .find_map(|marker| {
        let rest = &log[log.find(marker)? + marker.len()..];
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok().filter(|&port| port != 0)
    })
}

impl Drop for MlflowServer {
    fn drop(&mut self) {
        self.stop();
    }
}
