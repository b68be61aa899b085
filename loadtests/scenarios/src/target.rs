//! The gateway a scenario loads: one given with --url (loopback unless allowed otherwise), or
//! one started for the scenario with a generated config.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use reqwest::Url;

use crate::cli::Common;
use crate::gateway::{Gateway, Launch};

#[path = "../../../tests/checkout/mod.rs"]
mod checkout;

/// The repository root (this package is `loadtests/scenarios` in it): its checkout as `cargo
/// run` (or `loadtests/scenario.sh`) names it, so that a binary a shared target folder built
/// in another checkout works on this one (see [`checkout::checkout`]).
pub fn repo() -> PathBuf {
    let root = checkout::checkout().join("../..");
    root.canonicalize().unwrap_or(root)
}

/// The gateway config for a scenario: its YAML, made once the temp dir exists.
pub struct Setup {
    pub yaml: String,
    /// The registry the gateway serves when the scenario owns it (a temp copy to move
    /// aliases in).
    pub registry: Option<PathBuf>,
}

/// The gateway being loaded.
pub struct Target {
    pub base: String,
    pub gateway: Option<Gateway>,
    /// The registry a scenario may move aliases in.
    pub registry: Option<PathBuf>,
    pub gateway_bin: Option<PathBuf>,
    pub ort_dylib: Option<PathBuf>,
    _workdir: Option<tempfile::TempDir>,
}

impl Target {
    /// A gateway given by URL: refused when it is not on loopback, unless allowed.
    pub fn remote(common: &Common, url: &str) -> Result<Target> {
        check_loopback(url, common.allow_remote)?;
        Ok(Target {
            base: url.trim_end_matches('/').to_owned(),
            gateway: None,
            registry: None,
            gateway_bin: None,
            ort_dylib: None,
            _workdir: None,
        })
    }

    /// Starts a gateway with the config `setup` makes in a fresh temp dir; its log and config
    /// go to `report_dir`.
    pub fn start(
        common: &Common,
        needs_ort: bool,
        report_dir: &Path,
        setup: impl FnOnce(&Path) -> Result<Setup>,
    ) -> Result<Target> {
        let bin = gateway_bin(common)?;
        let ort = ort_dylib(common, needs_ort)?;
        if needs_ort && ort.is_none() {
            bail!("this scenario serves version 2, which needs ONNX Runtime: set ORT_DYLIB_PATH or --ort-dylib");
        }
        let workdir = tempfile::Builder::new()
            .prefix("modelgate-loadtest-")
            .tempdir()
            .context("creating the gateway's temp dir")?;
        let setup = setup(workdir.path())?;
        let config = workdir.path().join("gateway.yaml");
        std::fs::write(&config, &setup.yaml).context("writing the gateway config")?;
        std::fs::write(report_dir.join("gateway-config.yaml"), &setup.yaml)
            .context("copying the gateway config to the report dir")?;
        let gateway = Gateway::start(&Launch {
            bin: &bin,
            config: &config,
            workdir: workdir.path(),
            ort_dylib: ort.as_deref(),
            log: &report_dir.join("gateway.log"),
            startup_timeout: Duration::from_secs(120),
        })?;
        eprintln!(
            "started {} (pid {}) at {}",
            bin.display(),
            gateway.pid().unwrap_or_default(),
            gateway.base
        );
        check_loopback(&gateway.base, false)?;
        Ok(Target {
            base: gateway.base.clone(),
            gateway: Some(gateway),
            registry: setup.registry,
            gateway_bin: Some(bin),
            ort_dylib: ort,
            _workdir: Some(workdir),
        })
    }

    /// Stops the started gateway (SIGTERM and drain); says how it ended.
    pub fn stop(&mut self) -> Option<String> {
        let mut gateway = self.gateway.take()?;
        Some(match gateway.stop() {
            Ok(status) if status.success() => "exited 0 after SIGTERM".to_owned(),
            Ok(status) => format!("{status} after SIGTERM; see gateway.log"),
            Err(e) => format!("{e:#}"),
        })
    }
}

/// Refuses a URL whose host is not a loopback address (or `localhost`) unless `allow`.
pub fn check_loopback(url: &str, allow: bool) -> Result<()> {
    let parsed = Url::parse(url).with_context(|| format!("--url '{url}' is not a URL"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        bail!("--url '{url}': only http and https");
    }
    let host = parsed
        .host_str()
        .unwrap_or_default()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if !loopback && !allow {
        bail!(
            "--url '{url}' is not a loopback address; load tests stay on this machine unless \
             --allow-remote is given"
        );
    }
    Ok(())
}

/// --gateway-bin, else the release binary in CARGO_TARGET_DIR, else in target/.
fn gateway_bin(common: &Common) -> Result<PathBuf> {
    if let Some(bin) = &common.gateway_bin {
        if !bin.is_file() {
            bail!("--gateway-bin {} does not exist", bin.display());
        }
        return Ok(bin.clone());
    }
    let mut tried = Vec::new();
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        tried.push(PathBuf::from(dir).join("release/modelgate"));
    }
    tried.push(repo().join("target/release/modelgate"));
    match tried.iter().find(|p| p.is_file()) {
        Some(p) => Ok(p.clone()),
        None => bail!(
            "no release gateway at {}: build it with `cargo build --release --bin modelgate` \
             (or give --gateway-bin, or --url of a running one)",
            tried
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(" or ")
        ),
    }
}

/// --ort-dylib, else ORT_DYLIB_PATH, else a library already fetched into .ort/; when the
/// scenario needs one and none is there, scripts/fetch-onnxruntime.sh fetches it.
fn ort_dylib(common: &Common, needed: bool) -> Result<Option<PathBuf>> {
    if let Some(p) = &common.ort_dylib {
        return Ok(Some(p.clone()));
    }
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        return Ok(Some(PathBuf::from(p)));
    }
    let fetched = std::fs::read_dir(repo().join(".ort"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libonnxruntime.so") && !n.contains(".part"))
        })
        .max();
    if fetched.is_some() || !needed {
        return Ok(fetched);
    }
    let script = repo().join("scripts/fetch-onnxruntime.sh");
    eprintln!("fetching ONNX Runtime with {}", script.display());
    let out = Command::new(&script)
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    if !out.status.success() {
        bail!(
            "{} failed: {}",
            script.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(Some(PathBuf::from(
        String::from_utf8_lossy(&out.stdout).trim(),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_unless_allowed() {
        for ok in [
            "http://127.0.0.1:8080",
            "http://127.3.2.1",
            "http://localhost:1/",
            "http://[::1]:8080",
            "https://LOCALHOST",
        ] {
            check_loopback(ok, false).unwrap();
        }
        for refused in [
            "http://10.0.0.1:8080",
            "http://example.com",
            "http://[2001:db8::1]/",
            "http://0.0.0.0:8080",
        ] {
            assert!(check_loopback(refused, false).is_err(), "{refused}");
            check_loopback(refused, true).unwrap();
        }
        assert!(check_loopback("ftp://127.0.0.1", true).is_err());
        assert!(check_loopback("not a url", true).is_err());
    }
}
