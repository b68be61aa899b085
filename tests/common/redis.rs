//! A real `redis-server` (Debian's package, or the one `scripts/redis-server.sh` finds) on a
//! free loopback port, retried when another process takes the port first.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Redis {
    child: Child,
    pub port: u16,
}

impl Redis {
    /// A server on a free port. The port was free when picked, not reserved: another process
    /// may take it before redis-server binds, so a start that finds it taken tries another
    /// (a few times).
    pub fn start() -> Redis {
        let mut last = String::new();
        for _ in 0..5 {
            match Self::try_start_on(super::free_port()) {
                Ok(redis) => return redis,
                Err(why) => last = why,
            }
        }
        panic!("redis-server did not start on 5 free ports: {last}");
    }

    /// A server on `port` again (a restart after an outage: the gateway knows this port);
    /// retries a few times while the port is taken.
    pub fn restart_on(port: u16) -> Redis {
        let mut last = String::new();
        for _ in 0..5 {
            match Self::try_start_on(port) {
                Ok(redis) => return redis,
                Err(why) => last = why,
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("redis-server did not start again on port {port}: {last}");
    }

    /// Ready when redis-server itself says so in its log (a PONG alone could come from a
    /// server that took the port first); `Err` when it exits instead (e.g. the port is taken).
    fn try_start_on(port: u16) -> Result<Redis, String> {
        let binary =
            super::path_from_env_or_script("MODELGATE_REDIS_SERVER", "scripts/redis-server.sh");
        let log = tempfile::NamedTempFile::new().unwrap();
        let mut child = Command::new(binary)
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--logfile",
                log.path().to_str().unwrap(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting redis-server");
        let start = Instant::now();
        loop {
            let text = std::fs::read_to_string(log.path()).unwrap_or_default();
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("redis-server exited ({status}): {text}"));
            }
            if text.contains("Ready to accept connections") {
                break;
            }
            if start.elapsed() > Duration::from_secs(10) {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("redis-server did not start: {text}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut redis = Redis { child, port };
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            redis.stop();
            return Err(format!(
                "redis-server on {port} does not accept connections"
            ));
        }
        Ok(redis)
    }

    /// Stops (or resumes) the process: its socket stays open and nothing answers.
    pub fn pause(&self, paused: bool) {
        let signal = if paused { libc::SIGSTOP } else { libc::SIGCONT };
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, signal) }, 0);
    }

    pub fn stop(&mut self) {
        // A paused server is resumed first, so that it can die.
        let _ = unsafe { libc::kill(self.child.id() as i32, libc::SIGCONT) };
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `modelgate features load` with this config (its online tables into the store it names);
/// its stdout.
pub fn load_features(config: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.yaml");
    std::fs::write(&file, config).unwrap();
    super::succeed(
        Command::new(env!("CARGO_BIN_EXE_modelgate"))
            .args(["features", "load", "--config", file.to_str().unwrap()])
            .current_dir(super::repo()),
    )
}
