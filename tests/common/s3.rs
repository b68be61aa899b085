//! A real S3-compatible server for the object-store tests: moto's standalone server (PyPI
//! `moto[server]`, installed in the Delta readers' virtualenv) on a free loopback port.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub struct MotoServer {
    child: Child,
    pub endpoint: String,
}

impl MotoServer {
    /// Starts the server with `python` (which has moto) and waits until it answers.
    pub fn start(python: &Path) -> Self {
        let port = super::free_port();
        let child = Command::new(python)
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting moto's S3 server");
        let server = Self {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if super::client().get(&server.endpoint).send().is_ok() {
                return server;
            }
            assert!(Instant::now() < deadline, "moto's server did not come up");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Creates a bucket and returns its name.
    pub fn create_bucket(&self, name: &str) -> String {
        let reply = super::client()
            .put(format!("{}/{name}", self.endpoint))
            .send()
            .expect("creating a bucket");
        assert!(reply.status().is_success(), "bucket: {}", reply.status());
        name.to_owned()
    }

    /// What a Delta client needs to reach it (the gateway's `inference_log.storage_options`).
    pub fn storage_options(&self) -> Value {
        json!({
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": "us-east-1",
            "AWS_ALLOW_HTTP": "true",
        })
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
