//! A real load balancer in front of a fleet: Debian's `haproxy` (scripts/haproxy.sh) on a free
//! loopback port, round robin over the gateways, each health-checked on `/readyz` every 200 ms,
//! a connection refused by a stopped gateway tried again on another (`option redispatch`).
//! Every answer names the gateway that gave it (`X-Served-By: r<index>`).

use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct Haproxy {
    child: Child,
    pub base: String,
    _dir: tempfile::TempDir,
}

impl Haproxy {
    /// A balancer over the gateways at `backends` (base URLs `http://127.0.0.1:PORT`).
    pub fn start(backends: &[&str]) -> Haproxy {
        let binary = super::path_from_env_or_script("MODELGATE_HAPROXY", "scripts/haproxy.sh");
        let dir = tempfile::tempdir().unwrap();
        for _ in 0..5 {
            let port = super::free_port();
            let servers: String = backends
                .iter()
                .enumerate()
                .map(|(i, url)| {
                    let addr = url.trim_start_matches("http://");
                    format!("  server r{i} {addr} check\n")
                })
                .collect();
            let config = format!(
                "global\n  maxconn 2000\ndefaults\n  mode http\n  timeout connect 1s\n  timeout client 30s\n  timeout server 30s\n  retries 3\n  option redispatch\nfrontend fleet\n  bind 127.0.0.1:{port}\n  default_backend gateways\nbackend gateways\n  balance roundrobin\n  option httpchk GET /readyz\n  http-check expect status 200\n  default-server inter 200ms fall 2 rise 2\n  http-response set-header X-Served-By %[srv_name]\n{servers}"
            );
            let path = dir.path().join("haproxy.cfg");
            std::fs::write(&path, config).unwrap();
            let check = Command::new(&binary)
                .args(["-c", "-q", "-f", path.to_str().unwrap()])
                .status()
                .expect("haproxy -c");
            assert!(check.success(), "haproxy refused its config");
            let mut child = Command::new(&binary)
                .args(["-db", "-f", path.to_str().unwrap()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("starting haproxy");
            let base = format!("http://127.0.0.1:{port}");
            let up = super::wait_for("haproxy to answer", Duration::from_secs(10), || {
                if let Ok(Some(_)) = child.try_wait() {
                    return Some(false);
                }
                let reply = super::client().get(format!("{base}/livez")).send().ok()?;
                reply.headers().contains_key("x-served-by").then_some(true)
            });
            if up {
                return Haproxy {
                    child,
                    base,
                    _dir: dir,
                };
            }
        }
        panic!("haproxy did not start on five free ports");
    }

    /// Waits until every one of `servers` (r<index>) is seen answering through the balancer.
    pub fn wait_for_all(&self, servers: usize) {
        let mut seen = std::collections::HashSet::new();
        super::wait_for(
            "every gateway behind haproxy",
            Duration::from_secs(30),
            || {
                let reply = super::client()
                    .get(format!("{}/readyz", self.base))
                    .send()
                    .ok()?;
                if reply.status().is_success() {
                    let by = reply
                        .headers()
                        .get("x-served-by")?
                        .to_str()
                        .ok()?
                        .to_owned();
                    seen.insert(by);
                }
                (seen.len() == servers).then_some(())
            },
        );
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
