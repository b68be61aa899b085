//! `modelgate-loadtest`: load-test scenarios against modelgate, built on goose.
//!
//! `modelgate-loadtest <scenario> [options]` starts the release gateway with a config made for
//! the scenario (or loads the one given with --url), runs the scenario's load through goose,
//! checks what the scenario promises, and writes report.json and report.md (plus goose's own
//! reports) into the report dir. Exit status: 0 when every check passed, 1 when one failed,
//! 2 when the run could not complete. See docs/loadtests.md.

mod admin;
mod attack;
mod cli;
mod config;
mod gateway;
mod report;
mod scenarios;
mod summary;
mod tally;
mod target;
mod traffic;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use clap::Parser;

use crate::admin::Admin;
use crate::cli::{Cli, Scenario};
use crate::report::{Outcome, Report, TargetInfo};
use crate::scenarios::Ctx;
use crate::target::Target;
use crate::traffic::Generator;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli.scenario) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Runs the scenario and writes its reports; true when every check passed.
fn run(scenario: &Scenario) -> Result<bool> {
    scenario.validate().map_err(|e| anyhow!(e))?;
    let common = scenario.common();
    let started_at = chrono::Utc::now();
    let report_dir = common.report_dir.clone().unwrap_or_else(|| {
        target::repo().join("loadtests/reports").join(format!(
            "{}-{}",
            scenario.name(),
            started_at.format("%Y%m%dT%H%M%SZ")
        ))
    });
    // A --url that is refused stops the run before anything is written.
    let remote = match &common.url {
        Some(url) => Some(Target::remote(common, url)?),
        None => None,
    };
    std::fs::create_dir_all(&report_dir)
        .with_context(|| format!("creating {}", report_dir.display()))?;
    let models = common
        .models
        .clone()
        .unwrap_or_else(|| target::repo().join("models"));
    let mut target = match remote {
        Some(target) => target,
        None => Target::start(common, scenario.needs_ort(), &report_dir, |workdir| {
            scenarios::setup(scenario, &models, workdir)
        })?,
    };
    eprintln!(
        "{}: loading {} for {:?}; reports in {}",
        scenario.name(),
        target.base,
        common.duration,
        report_dir.display()
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let outcome = runtime.block_on(async {
        let admin = Admin::new(&target.base)?;
        admin.wait_ready(Duration::from_secs(60)).await?;
        let ctx = Ctx {
            common,
            base: target.base.clone(),
            admin,
            report_dir: report_dir.clone(),
            registry: target.registry.clone(),
            started_gateway: target.gateway.is_some(),
            generator: Generator::new(common.seed),
        };
        scenarios::run(scenario, &ctx).await
    });
    runtime.shutdown_timeout(Duration::from_secs(2));
    let gateway_exit = target.stop();
    let (outcome, error) = match outcome {
        Ok(o) => (o, None),
        Err(e) => (Outcome::default(), Some(format!("{e:#}"))),
    };
    let passed = error.is_none() && outcome.checks.iter().all(|c| c.passed);
    let report = Report {
        scenario: scenario.name().to_owned(),
        started_at: started_at.to_rfc3339(),
        finished_at: chrono::Utc::now().to_rfc3339(),
        passed,
        error: error.clone(),
        target: TargetInfo {
            url: target.base.clone(),
            started_gateway: target.gateway_bin.is_some(),
            gateway_bin: target.gateway_bin.as_ref().map(|p| p.display().to_string()),
            ort_dylib: target.ort_dylib.as_ref().map(|p| p.display().to_string()),
            gateway_exit,
        },
        settings: scenarios::settings(scenario),
        load: outcome.load,
        checks: outcome.checks,
        details: outcome.details,
        goose_reports: goose_reports(&report_dir),
    };
    report::write(&report_dir, &report, &outcome.details_md)?;
    print_summary(&report, &report_dir);
    match error {
        Some(e) => Err(anyhow!(e)),
        None => Ok(passed),
    }
}

/// The files goose wrote, relative to the report dir.
fn goose_reports(report_dir: &Path) -> Vec<String> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(&report_dir.join("goose"), &mut files);
    files.sort();
    files
        .iter()
        .filter_map(|p| p.strip_prefix(report_dir).ok())
        .map(|p| p.display().to_string())
        .collect()
}

fn print_summary(report: &Report, dir: &Path) {
    println!(
        "{}: {}",
        report.scenario,
        if report.error.is_some() {
            "ERROR"
        } else if report.passed {
            "PASSED"
        } else {
            "FAILED"
        }
    );
    if let Some(l) = &report.load {
        println!(
            "  {} requests ({} failed) in {:.1} s: {:.1} req/s; corrected p50 {} p99 {} p99.9 {} max {} ms",
            l.requests,
            l.failed,
            l.elapsed_s,
            l.throughput_rps,
            report::ms(l.latency.p50_ms),
            report::ms(l.latency.p99_ms),
            report::ms(l.latency.p99_9_ms),
            report::ms(l.latency.max_ms)
        );
    }
    for c in &report.checks {
        println!(
            "  [{}] {}: {}",
            if c.passed { "pass" } else { "FAIL" },
            c.name,
            c.detail
        );
    }
    println!("  report: {}", dir.join("report.md").display());
}
