//! Starting and stopping a gateway process for a scenario: the release `modelgate` binary on
//! a free loopback port with a config written to a temp dir, its stderr in the report dir.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// What the gateway prints on stdout once it accepts connections, followed by its base URL.
const LISTENING: &str = "modelgate listening on ";

/// How to start one gateway.
pub struct Launch<'a> {
    pub bin: &'a Path,
    pub config: &'a Path,
    /// Its working directory (the state file and inference tables land beside the config).
    pub workdir: &'a Path,
    /// `ORT_DYLIB_PATH` for it; without one it runs tract (no version 2).
    pub ort_dylib: Option<&'a Path>,
    /// Where its stderr goes.
    pub log: &'a Path,
    pub startup_timeout: Duration,
}

/// A running gateway; stopped with SIGTERM by [`Gateway::stop`], or when dropped.
pub struct Gateway {
    child: Option<Child>,
    pub base: String,
}

impl Gateway {
    pub fn start(launch: &Launch) -> Result<Gateway> {
        let log = File::create(launch.log)
            .with_context(|| format!("creating {}", launch.log.display()))?;
        let mut cmd = Command::new(launch.bin);
        cmd.arg("serve")
            .arg("--config")
            .arg(launch.config)
            .args(["--listen", "127.0.0.1:0"])
            .current_dir(launch.workdir)
            .env("RUST_LOG", "warn")
            .env_remove("ORT_DYLIB_PATH")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log));
        if let Some(ort) = launch.ort_dylib {
            cmd.env("ORT_DYLIB_PATH", ort);
        }
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting {}", launch.bin.display()))?;
        let stdout = child.stdout.take().context("the gateway's stdout")?;
        let (tx, rx) = mpsc::channel();
        // Reads the address, then keeps draining stdout so the gateway never blocks on it.
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = line.strip_prefix(LISTENING) {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(addr.trim().to_owned());
                    }
                }
            }
        });
        let mut gateway = Gateway {
            child: Some(child),
            base: String::new(),
        };
        match rx.recv_timeout(launch.startup_timeout) {
            Ok(base) => {
                gateway.base = base;
                Ok(gateway)
            }
            Err(_) => {
                let status = gateway.stop().ok();
                bail!(
                    "the gateway did not start within {:?} ({}); its log {}:\n{}",
                    launch.startup_timeout,
                    status.map_or("still running, killed".to_owned(), |s| s.to_string()),
                    launch.log.display(),
                    tail(launch.log, 40)
                )
            }
        }
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGTERM, then waits for the drain (up to 45 s: the gateway's own shutdown timeout is
    /// 30 s plus the inference log's deadline); SIGKILL after that.
    pub fn stop(&mut self) -> Result<ExitStatus> {
        let Some(mut child) = self.child.take() else {
            bail!("the gateway was already stopped");
        };
        terminate(&child);
        if let Some(status) = wait_for(&mut child, Duration::from_secs(45))? {
            return Ok(status);
        }
        let _ = child.kill();
        let status = child.wait().context("waiting for the killed gateway")?;
        bail!("the gateway did not exit within 45 s of SIGTERM and was killed ({status})")
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            terminate(&child);
            if !matches!(wait_for(&mut child, Duration::from_secs(10)), Ok(Some(_))) {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

fn terminate(child: &Child) {
    if let Ok(pid) = libc::pid_t::try_from(child.id()) {
        // SAFETY: kill(2) with the id of a child this process spawned and has not reaped.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
    }
}

fn wait_for(child: &mut Child, limit: Duration) -> Result<Option<ExitStatus>> {
    let until = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().context("waiting for the gateway")? {
            return Ok(Some(status));
        }
        if Instant::now() >= until {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The last `lines` lines of a text file (empty when it cannot be read).
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
