//! Test harness: runs the real `modelgate` binary on 127.0.0.1:0 with a config written to a temp
//! dir, and talks to it over real HTTP.
#![allow(dead_code)]

pub mod certs;
pub mod haproxy;
pub mod mlflow;
pub mod redis;
pub mod s3;
pub mod throttle;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::Value;

#[path = "../checkout/mod.rs"]
mod checkout;

/// The checkout under test (see [`checkout::checkout`]).
pub fn repo() -> PathBuf {
    checkout::checkout()
}

pub fn demo_registry() -> PathBuf {
    repo().join("models")
}

/// A tool's path: the environment variable `var` when set, else what the repo script `script`
/// prints (it installs the tool once and caches it).
pub fn path_from_env_or_script(var: &str, script: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(var) {
        return PathBuf::from(p);
    }
    let out = Command::new(repo().join(script))
        .output()
        .unwrap_or_else(|e| panic!("running {script}: {e}"));
    assert!(
        out.status.success(),
        "{script} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

/// Python with models/requirements.txt and MLflow (a scikit-learn user's environment):
/// `MODELGATE_TRAIN_PYTHON`, else the venv the repo script makes (once).
pub fn train_python() -> PathBuf {
    path_from_env_or_script("MODELGATE_TRAIN_PYTHON", "scripts/train-venv.sh")
}

/// Runs `cmd` to its end, which must succeed (else its stderr is the panic); its stdout.
pub fn succeed(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `libonnxruntime.so`: `ORT_DYLIB_PATH`, else fetched by the repo script (once per test binary).
pub fn ort_dylib() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| path_from_env_or_script("ORT_DYLIB_PATH", "scripts/fetch-onnxruntime.sh"))
        .clone()
}

pub struct Gateway {
    pub child: Child,
    pub base: String,
    /// The admin listener's base URL (`server.admin_listen`), when there is one.
    pub admin: Option<String>,
    /// The gRPC listener's HOST:PORT (`server.grpc_listen`), when there is one.
    pub grpc: Option<String>,
    pub stderr: std::sync::Arc<std::sync::Mutex<String>>,
    _dir: tempfile::TempDir,
}

/// What a run needs: the config YAML body (registry and endpoints) and whether to give it ort.
pub fn start(config_yaml: &str, with_ort: bool) -> Gateway {
    try_start(config_yaml, with_ort, &[]).unwrap_or_else(|e| panic!("gateway did not start: {e}"))
}

/// Starts the gateway; `Err(stderr)` when it exits before listening.
pub fn try_start(
    config_yaml: &str,
    with_ort: bool,
    env: &[(&str, &str)],
) -> Result<Gateway, String> {
    start_until(config_yaml, with_ort, env, "modelgate listening on ")
}

/// Starts the gateway and returns as soon as it is live (its listener answers `/livez`), before
/// its models have loaded.
pub fn start_live(config_yaml: &str, with_ort: bool, env: &[(&str, &str)]) -> Gateway {
    start_until(config_yaml, with_ort, env, "modelgate live on ")
        .unwrap_or_else(|e| panic!("gateway did not start: {e}"))
}

/// Starts the gateway and returns when it prints the line starting with `line` (its address
/// follows); `Err(stderr)` when it exits first.
fn start_until(
    config_yaml: &str,
    with_ort: bool,
    env: &[(&str, &str)],
    line: &str,
) -> Result<Gateway, String> {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    // The demo versions look features up: every run gets the demo's online tables unless the
    // config names its own.
    let config_yaml = if config_yaml.contains("\nfeatures:") || config_yaml.starts_with("features:")
    {
        config_yaml.to_owned()
    } else {
        format!("{}{config_yaml}", demo_feature_tables())
    };
    // What it writes for itself (state file, MLflow cache) goes to its own folder, not the
    // repository's `.modelgate/`, which every test would share.
    let config_yaml = if config_yaml.contains("\ndata_dir:") {
        config_yaml
    } else {
        format!(
            "data_dir: {}\n{config_yaml}",
            dir.path().join("data").display()
        )
    };
    std::fs::write(&config, config_yaml).unwrap();
    let args = ["serve", "--config", config.to_str().unwrap()];
    spawn_until(&args, repo(), dir, with_ort, env, line)
}

/// Runs `modelgate ARGS --listen 127.0.0.1:0` in `cwd` (no config file unless ARGS name one)
/// until it listens; `Err(stderr)` when it exits first. It gets ONNX Runtime.
pub fn start_args(args: &[&str], cwd: &Path) -> Result<Gateway, String> {
    start_args_env(args, cwd, &[])
}

/// As [`start_args`], with tract only (no ONNX Runtime library to load).
pub fn start_args_tract(args: &[&str], cwd: &Path) -> Result<Gateway, String> {
    let dir = tempfile::tempdir().unwrap();
    spawn_until(
        args,
        cwd.to_owned(),
        dir,
        false,
        &[],
        "modelgate listening on ",
    )
}

/// As [`start_args`], with `env` set for it.
pub fn start_args_env(args: &[&str], cwd: &Path, env: &[(&str, &str)]) -> Result<Gateway, String> {
    let dir = tempfile::tempdir().unwrap();
    spawn_until(
        args,
        cwd.to_owned(),
        dir,
        true,
        env,
        "modelgate listening on ",
    )
}

/// Spawns the gateway with `args` and waits for the line starting with `line`; `dir` lives as
/// long as the gateway.
fn spawn_until(
    args: &[&str],
    cwd: PathBuf,
    dir: tempfile::TempDir,
    with_ort: bool,
    env: &[(&str, &str)],
    line: &str,
) -> Result<Gateway, String> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_modelgate"));
    cmd.args(args)
        .args(["--listen", "127.0.0.1:0"])
        .current_dir(cwd)
        .env("RUST_LOG", "warn")
        .env_remove("ORT_DYLIB_PATH")
        // The allocator's settings are the binary's own unless a test sets them.
        .env_remove("MIMALLOC_ALLOW_THP")
        .env_remove("MIMALLOC_ARENA_PURGE_MULT")
        .env_remove("MIMALLOC_PURGE_DELAY")
        .env_remove("MIMALLOC_ARENA_MAX_OBJECT_SIZE")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if with_ort {
        cmd.env("ORT_DYLIB_PATH", ort_dylib());
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawning modelgate");
    let stderr_buf = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let stderr_reader = {
        let mut stderr = child.stderr.take().unwrap();
        let buf = stderr_buf.clone();
        std::thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            while let Ok(n) = stderr.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                buf.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&chunk[..n]));
            }
        })
    };
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let mut admin = None;
    let mut grpc = None;
    let base = loop {
        match lines.next() {
            Some(Ok(text)) => {
                if let Some(addr) = text.strip_prefix("modelgate gRPC listening on ") {
                    grpc = Some(addr.trim().to_owned());
                }
                if let Some(addr) = text.strip_prefix("modelgate admin API listening on ") {
                    admin = Some(addr.trim().to_owned());
                }
                if let Some(rest) = text.strip_prefix(line) {
                    break rest
                        .split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_owned();
                }
            }
            _ => {
                let _ = child.wait();
                // Its stderr is whole once the reader has seen it close.
                let _ = stderr_reader.join();
                return Err(stderr_buf.lock().unwrap().clone());
            }
        }
    };
    // Keep draining stdout so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Ok(Gateway {
        child,
        base,
        admin,
        grpc,
        stderr: stderr_buf,
        _dir: dir,
    })
}

/// An MLflow model folder `into/name` whose model takes every input from the request: the
/// demo's version 1 without its feature spec.
pub fn version_without_spec(into: &Path, name: &str) -> PathBuf {
    let folder = into.join(name);
    std::fs::create_dir_all(&folder).unwrap();
    for entry in std::fs::read_dir(demo_registry().join("transactions/1")).unwrap() {
        let entry = entry.unwrap();
        if entry.file_name() != "feature_spec.yaml" {
            std::fs::copy(entry.path(), folder.join(entry.file_name())).unwrap();
        }
    }
    folder
}

/// The `features:` section of the demo's online tables (the files `models/train.py` writes).
pub fn demo_feature_tables() -> String {
    let dir = demo_registry().join("feature_tables");
    format!(
        "features:\n  tables:\n    - {{name: transaction_count_ft, path: {}, primary_keys: [CustomerID], event_timestamp: eventTimestamp}}\n    - {{name: product_3minute_max_price_ft, path: {}, primary_keys: [Product], timestamp_key: LookupTimestamp}}\n",
        dir.join("transaction_count_ft.jsonl").display(),
        dir.join("product_3minute_max_price_ft.jsonl").display()
    )
}

/// A config serving the demo registry with the given endpoints YAML (a list under `endpoints:`).
pub fn demo_config(endpoints_yaml: &str, extra: &str) -> String {
    format!(
        "registry:\n  path: {}\ninference:\n  workers: 2\n{extra}\nendpoints:\n{endpoints_yaml}",
        demo_registry().display()
    )
}

/// Endpoint `sh`: version 1 answers, every request is copied to version 2 (`shadow`).
pub const SHADOW_YAML: &str = "  - name: sh
    served_entities:
      - {name: champion, entity_name: transactions, entity_version: '1'}
      - {name: shadow, entity_name: transactions, entity_version: '2'}
    traffic_config:
      routes:
        - {served_entity_name: champion, traffic_percentage: 100}
        - {served_entity_name: shadow, shadow: true}
";

pub fn endpoint(name: &str, version: &str, engine: &str) -> String {
    format!(
        "  - name: {name}\n    served_entities:\n      - entity_name: transactions\n        entity_version: \"{version}\"\n        engine: {engine}\n"
    )
}

/// A demo body of `n` raw rows (the features looked up by the gateway): the join cases'
/// rows, repeated.
pub fn join_rows(n: usize) -> Value {
    let cases = join_cases();
    let data: Vec<Value> = cases["data"]
        .as_array()
        .unwrap()
        .iter()
        .cycle()
        .take(n)
        .cloned()
        .collect();
    serde_json::json!({"dataframe_split": {"columns": cases["columns"], "data": data}})
}

/// Minutes since the Unix epoch: the rate limits' windows.
pub fn clock_minute() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 60
}

/// Runs `calls` within one clock minute, a rate limit's window. When a minute boundary falls
/// inside them their counts are split across two windows: the minute after (a fresh window)
/// is waited for and they run again. Deterministic whatever the second the test starts at.
pub fn in_one_clock_minute<T>(mut calls: impl FnMut() -> T) -> T {
    loop {
        let before = clock_minute();
        let out = calls();
        let after = clock_minute();
        if before == after {
            return out;
        }
        wait_for("a fresh clock minute", Duration::from_secs(61), || {
            (clock_minute() != after).then_some(())
        });
    }
}

pub fn client() -> reqwest::blocking::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    }

    /// The MLflow error body's message, asserting its shape and status.
    pub fn mlflow_error(&self, status: u16) -> String {
        assert_eq!(
            self.status, status,
            "unexpected status; body: {}",
            self.text
        );
        let v = self.json();
        assert!(v["error_code"].is_string(), "no error_code in {v}");
        v["message"]
            .as_str()
            .unwrap_or_else(|| panic!("no message in {v}"))
            .to_owned()
    }
}

impl Gateway {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn get(&self, path: &str) -> Reply {
        reply(client().get(self.url(path)).send().unwrap())
    }

    pub fn post(
        &self,
        path: &str,
        content_type: &str,
        body: impl Into<reqwest::blocking::Body>,
    ) -> Reply {
        reply(
            client()
                .post(self.url(path))
                .header("content-type", content_type)
                .body(body)
                .send()
                .unwrap(),
        )
    }

    pub fn post_json(&self, path: &str, body: &Value) -> Reply {
        self.post(path, "application/json", body.to_string())
    }

    /// A JSON POST with extra headers.
    pub fn post_json_with(&self, path: &str, body: &Value, headers: &[(&str, &str)]) -> Reply {
        let mut req = client()
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body.to_string());
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        reply(req.send().unwrap())
    }

    pub fn invoke(&self, endpoint: &str, body: &Value) -> Reply {
        self.post_json(&format!("/serving-endpoints/{endpoint}/invocations"), body)
    }

    pub fn put_json(&self, path: &str, body: &Value) -> Reply {
        reply(
            client()
                .put(self.url(path))
                .header("content-type", "application/json")
                .body(body.to_string())
                .send()
                .unwrap(),
        )
    }

    pub fn delete(&self, path: &str) -> Reply {
        reply(client().delete(self.url(path)).send().unwrap())
    }

    /// A Prometheus sample's value: the line starting with `line_prefix` (name and labels).
    /// Waits until the metric line reaches `at_least` (within a minute); its value then.
    pub fn wait_for_metric(&self, line_prefix: &str, at_least: f64) -> f64 {
        let what = format!("{line_prefix} to reach {at_least}");
        wait_for(&what, Duration::from_secs(60), || {
            self.metric(line_prefix).filter(|v| *v >= at_least)
        })
    }

    pub fn metric(&self, line_prefix: &str) -> Option<f64> {
        self.get("/metrics")
            .text
            .lines()
            .find(|l| l.starts_with(line_prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        signal_term(&self.child);
        wait_timeout(&mut self.child, Duration::from_secs(30))
            .expect("gateway did not exit after SIGTERM")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

pub fn signal_term(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

pub fn wait_timeout(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return Some(s);
        }
        if std::time::Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn reply(resp: reqwest::blocking::Response) -> Reply {
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().unwrap();
    Reply {
        status,
        headers,
        text,
    }
}

/// A free TCP port on 127.0.0.1 (for the servers tests start).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The feature-join fixture: raw requests, the joined rows and both versions' outputs.
pub fn join_cases() -> Value {
    let path = repo().join("tests/fixtures/transactions_join_cases.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The Python-made fixture of a version: inputs and onnxruntime's outputs.
pub fn cases(version: u32) -> Value {
    let path = repo().join(format!("tests/fixtures/transactions_v{version}_cases.json"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The first `n` rows of a fixture as a `dataframe_split` body.
pub fn split_body(cases: &Value, n: usize) -> Value {
    let rows: Vec<Value> = cases["data"]
        .as_array()
        .unwrap()
        .iter()
        .take(n)
        .cloned()
        .collect();
    serde_json::json!({ "dataframe_split": { "columns": cases["columns"], "data": rows } })
}

/// Checks an MLflow answer's predictions, in order, against the fixture's label and Python's
/// probability of rows `rows`; `what` names the call in a failure.
pub fn assert_python_predictions(preds: &Value, cases: &Value, rows: &[usize], what: &str) {
    for (i, &r) in rows.iter().enumerate() {
        assert_eq!(
            preds[i]["label"], cases["label"][r],
            "{what}: row {r} in {preds}"
        );
        let got = preds[i]["probability"].as_f64().unwrap();
        let want = cases["probabilities"][r][1].as_f64().unwrap();
        assert!(
            (got - want).abs() <= 1e-5,
            "{what}: row {r}: {got} vs python {want}"
        );
    }
}

/// One demo row as a `dataframe_split` body.
pub fn one_row() -> Value {
    serde_json::json!({ "dataframe_split": {
        "columns": ["Product", "Amount", "transactionCount", "isTimeout", "MaxProductAmount", "MaxDifferenceRatio"],
        "data": [["Product A", 132.75, 3, false, 150.1, 0.12]]
    }})
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Polls `probe` until it gives a value, every 20 ms; panics naming `what` when `limit`
/// passes first. The polling loop of the tests (the helpers that start mlflow, Redis and
/// Prometheus keep their own, with their start-up errors): no test waits by sleeping a fixed
/// time.
pub fn wait_for<T>(what: &str, limit: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: not within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Polls `condition` until it holds; panics when `limit` passes first.
pub fn eventually(limit: Duration, mut condition: impl FnMut() -> bool) {
    wait_for("the condition", limit, || condition().then_some(()));
}

/// Load from `threads` callers while `during` runs: each caller calls `call(thread)` again
/// and again until `during` returns; every result, by caller. For tests that change
/// something under traffic.
pub fn hammer<T: Send>(
    threads: usize,
    call: impl Fn(usize) -> T + Sync,
    during: impl FnOnce(),
) -> Vec<Vec<T>> {
    use std::sync::atomic::{AtomicBool, Ordering};
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let callers: Vec<_> = (0..threads)
            .map(|t| {
                let (call, stop) = (&call, &stop);
                s.spawn(move || {
                    let mut out = Vec::new();
                    while !stop.load(Ordering::Acquire) {
                        out.push(call(t));
                    }
                    out
                })
            })
            .collect();
        during();
        stop.store(true, Ordering::Release);
        callers.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

/// Runs `cmd` (`what` names it in the failure) and gives its stdout; panics with its stderr
/// when it fails.
pub fn stdout_of(cmd: &mut std::process::Command, what: &str) -> Vec<u8> {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The Python with the third-party clients (`databricks-sdk`) the client tests drive
/// (`MODELGATE_CLIENTS_PYTHON`, else made once by scripts/clients-venv.sh).
pub fn clients_python() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        path_from_env_or_script("MODELGATE_CLIENTS_PYTHON", "scripts/clients-venv.sh")
    })
    .clone()
}

/// The Python with `deltalake` and `duckdb`, the independent readers of the inference tables
/// (`MODELGATE_DELTA_PYTHON`, else made once by scripts/delta-venv.sh).
pub fn delta_python() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| path_from_env_or_script("MODELGATE_DELTA_PYTHON", "scripts/delta-venv.sh"))
        .clone()
}

/// The demo registry copied into `dir` with version 1 served without its feature spec: the
/// caller sends the six model columns (as the demo generator computes them).
pub fn registry_without_spec(dir: &Path) -> PathBuf {
    let registry = dir.join("models");
    copy_dir(&demo_registry(), &registry);
    std::fs::remove_file(registry.join("transactions/1/feature_spec.yaml")).unwrap();
    registry
}

/// Waits until every gateway of `fleet` shows the sample `name` at `value`.
pub fn metric_everywhere(fleet: &[Gateway], name: &str, value: f64) {
    for gw in fleet {
        wait_for(
            &format!("{name} at {value}"),
            Duration::from_secs(20),
            || (gw.metric(name) == Some(value)).then_some(()),
        );
    }
}

/// Scores `batch` on endpoint `endpoint` in the model's columns (`dataframe_split`), as the
/// demo generator computes them; the reply, checked to be 200.
pub fn score_model_columns(
    gw: &Gateway,
    endpoint: &str,
    batch: &[modelgate::demo::Transaction],
) -> Reply {
    use modelgate::demo::bodies::{render, Columns, Format};
    let body = render(batch, Columns::Model, Format::DataframeSplit);
    let reply = gw.post(
        &format!("/serving-endpoints/{endpoint}/invocations"),
        body.content_type,
        body.bytes.to_vec(),
    );
    assert_eq!(reply.status, 200, "{}", reply.text);
    reply
}
