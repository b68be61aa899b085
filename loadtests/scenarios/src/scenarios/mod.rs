//! The scenarios. Each makes the gateway config it needs (when it starts the gateway), runs
//! its load through goose, and returns its figures and checks.

mod ab;
mod burst;
mod drift;
mod hot_swap;
mod ramp;
mod steady;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use modelgate::demo::bodies::Columns;
use serde_json::{json, Value};

use crate::admin::Admin;
use crate::attack::{self, Run, Shape};
use crate::cli::{Common, Pace, Scenario};
use crate::config::{self, Base};
use crate::report::Outcome;
use crate::summary::LoadSummary;
use crate::tally::{Counts, Tally};
use crate::target::Setup;
use crate::traffic::{Generator, Mix, Workload};

/// What a scenario runs with.
pub struct Ctx<'a> {
    pub common: &'a Common,
    pub base: String,
    pub admin: Admin,
    pub report_dir: PathBuf,
    /// The registry the started gateway serves, when the scenario owns it.
    pub registry: Option<PathBuf>,
    pub started_gateway: bool,
    pub generator: Generator,
}

impl Ctx<'_> {
    /// The usual traffic: what a caller knows (customer, time, product, amount; the gateway
    /// looks up the rest), every configured format, batches of 1..=--max-batch rows.
    pub fn mix(&self) -> Mix {
        Mix {
            generator: self.generator.clone(),
            endpoint: self.common.endpoint.clone(),
            formats: self.common.formats(),
            max_batch: self.common.max_batch as usize,
            columns: Columns::Raw,
        }
    }

    /// One goose run of `shape` with `workload`; goose's reports go under `goose/<sub>`.
    pub async fn load(
        &self,
        label: &str,
        sub: &str,
        shape: &Shape,
        workload: Arc<dyn Workload>,
    ) -> Result<(LoadSummary, Counts)> {
        // Requests in flight when the run ends are answered within its last moments.
        let window = shape.planned() + Duration::from_millis(500);
        let tally = Arc::new(Tally::new(self.common.max_requests, Some(window)));
        let goose_dir = self.report_dir.join("goose").join(sub);
        let run = Run {
            label,
            host: &self.base,
            goose_dir: &goose_dir,
        };
        let metrics = attack::execute(self.common, &run, shape, workload, tally.clone()).await?;
        let counts = tally.counts();
        let summary = LoadSummary::new(&metrics, &counts, self.common.co_mitigation.as_str());
        Ok((summary, counts))
    }
}

/// A constant arrival rate for the whole --duration.
pub fn throttled(common: &Common, pace: &Pace) -> Shape {
    Shape::Users {
        users: pace.users.max(1),
        run_time: common.duration,
        rate: Some(pace.rate.max(1)),
    }
}

/// The gateway config the scenario needs, made in the gateway's temp dir `workdir`.
pub fn setup(scenario: &Scenario, models: &Path, workdir: &Path) -> Result<Setup> {
    let common = scenario.common();
    let mut base = Base {
        models,
        registry: models,
        workdir,
        endpoint: &common.endpoint,
        inference_log: common.inference_log,
    };
    Ok(match scenario {
        Scenario::Steady(_) | Scenario::Ramp(_) | Scenario::Burst(_) => Setup {
            yaml: config::single(&base, "champion", ""),
            registry: None,
        },
        Scenario::HotSwap(_) => {
            let registry = config::copy_registry(models, &workdir.join("registry"))?;
            base.registry = &registry;
            Setup {
                yaml: config::single(&base, "champion", ""),
                registry: Some(registry.clone()),
            }
        }
        Scenario::Ab(a) => Setup {
            yaml: config::ab(&base, &a.champion, &a.challenger, a.challenger_percent),
            registry: None,
        },
        Scenario::Drift(d) => {
            // Version 1 without its feature spec: the users send the model's inputs, computed
            // along the generator's stream, so that only the knob moves their distributions
            // (the embedded feature tables are a fixed snapshot).
            let registry = config::copy_registry(models, &workdir.join("registry"))?;
            config::drop_feature_spec(&registry, "1")?;
            base.registry = &registry;
            Setup {
                yaml: config::single(&base, "1", &config::short_windows(drift::window(d))),
                registry: Some(registry.clone()),
            }
        }
    })
}

pub async fn run(scenario: &Scenario, ctx: &Ctx<'_>) -> Result<Outcome> {
    match scenario {
        Scenario::Steady(a) => steady::run(ctx, a).await,
        Scenario::Ramp(a) => ramp::run(ctx, a).await,
        Scenario::Burst(a) => burst::run(ctx, a).await,
        Scenario::HotSwap(a) => hot_swap::run(ctx, a).await,
        Scenario::Ab(a) => ab::run(ctx, a).await,
        Scenario::Drift(a) => drift::run(ctx, a).await,
    }
}

/// The options a run used, for the report.
pub fn settings(scenario: &Scenario) -> Value {
    let c = scenario.common();
    let formats: Vec<&str> = c
        .formats()
        .into_iter()
        .map(crate::traffic::format_name)
        .collect();
    let mut s = json!({
        "endpoint": c.endpoint,
        "duration_s": c.duration.as_secs(),
        "max_requests": c.max_requests,
        "batch_rows": format!("1..={}", c.max_batch),
        "formats": formats.join(","),
        "seed": c.seed,
        "co_mitigation": c.co_mitigation.as_str(),
    });
    let extra = match scenario {
        Scenario::Steady(a) => json!({"rate": a.pace.rate, "users": a.pace.users}),
        Scenario::Ramp(a) => json!({
            "step_s": a.step.as_secs(), "start_users": a.start_users, "max_users": a.max_users,
            "min_gain": a.min_gain, "max_error_rate": a.max_error_rate, "p99_factor": a.p99_factor,
            "p99_floor_ms": a.p99_floor_ms,
        }),
        Scenario::Burst(a) => json!({
            "calm_rate": a.calm_rate, "burst_rate": a.burst_rate,
            "burst_every_s": a.burst_every.as_secs(), "burst_length_s": a.burst_length.as_secs(),
            "user_rate": a.user_rate,
        }),
        Scenario::HotSwap(a) => json!({
            "rate": a.pace.rate, "users": a.pace.users, "swap_every_s": a.swap_every.as_secs(),
            "swap_via": format!("{:?}", a.swap_via).to_lowercase(), "reload": a.reload,
            "versions": a.versions,
        }),
        Scenario::Ab(a) => json!({
            "rate": a.pace.rate, "users": a.pace.users, "keys": a.keys,
            "challenger_percent": a.challenger_percent, "tolerance": a.tolerance,
            "header_share": a.header_share,
        }),
        Scenario::Drift(a) => json!({
            "rate": a.pace.rate, "users": a.pace.users, "drift_to": a.drift_to,
            "label_delay_s": a.label_delay.as_secs_f64(), "window_s": drift::window(a),
        }),
    };
    if let (Some(s), Some(extra)) = (s.as_object_mut(), extra.as_object()) {
        s.extend(extra.clone());
    }
    s
}
