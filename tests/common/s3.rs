//! A real S3-compatible server for the object-store tests: moto's standalone server (PyPI
//! `moto[server]`, installed in the Delta readers' virtualenv) on a free loopback port.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

pub struct MotoServer {
    child: Child,
    pub endpoint: String,
}

impl MotoServer {
    /// Starts the server with `python` (which has moto) and waits until it answers as S3. A
    /// port taken between choosing it and binding it ends the child: another one is tried.
    pub fn start(python: &Path) -> Self {
        for _ in 0..5 {
            if let Some(server) = Self::start_on(python, super::free_port()) {
                return server;
            }
        }
        panic!("moto's server did not start on any of five free ports");
    }

    fn start_on(python: &Path, port: u16) -> Option<Self> {
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
        let mut server = Self {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let up = super::wait_for("moto's server to answer", Duration::from_secs(60), || {
            if let Ok(Some(_)) = server.child.try_wait() {
                return Some(false);
            }
            // Its own answer (S3's bucket list), not another server's on a taken port.
            let reply = super::client().get(&server.endpoint).send().ok()?;
            reply
                .text()
                .ok()
                .filter(|t| t.contains("ListAllMyBucketsResult"))
                .map(|_| true)
        });
        up.then_some(server)
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
