//! One goose run: a configuration built from the scenario's load shape, one goose scenario
//! whose single transaction sends the workload's next request, and goose's metrics back.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use goose::config::GooseConfiguration;
use goose::goose::{GooseMethod, GooseRequest, Scenario, Transaction, TransactionFunction};
use goose::metrics::GooseMetrics;
use goose::GooseAttack;

use crate::cli::Common;
use crate::tally::Tally;
use crate::traffic::{Answer, Workload};

/// How fast goose starts the users of a [`Shape::Users`].
const STARTS_PER_SECOND: usize = 1000;

/// The load's shape.
#[derive(Debug, Clone)]
pub enum Shape {
    /// `users` start at once and run for `run_time`; with `rate`, goose throttles them all
    /// together to that many requests per second (a constant arrival rate), else each sends
    /// as fast as it is answered (closed loop).
    Users {
        users: usize,
        run_time: Duration,
        rate: Option<usize>,
    },
    /// A goose test plan ("users,time;...") of users that each wait `pause` between requests.
    Plan { plan: String, pause: Duration },
}

impl Shape {
    /// How long the load is planned to last, its start included.
    pub fn planned(&self) -> Duration {
        match self {
            Shape::Users {
                run_time, users, ..
            } => *run_time + Duration::from_secs_f64(*users as f64 / STARTS_PER_SECOND as f64),
            Shape::Plan { plan, .. } => plan
                .split(';')
                .filter_map(|step| step.split(',').nth(1))
                .filter_map(|t| crate::cli::parse_duration(t).ok())
                .sum(),
        }
    }
}

/// Where goose writes its own reports, and what the run is called on the console.
pub struct Run<'a> {
    pub label: &'a str,
    pub host: &'a str,
    pub goose_dir: &'a Path,
}

/// Runs goose with `shape` until it ends (or --max-requests stops it).
pub async fn execute(
    common: &Common,
    run: &Run<'_>,
    shape: &Shape,
    workload: Arc<dyn Workload>,
    tally: Arc<Tally>,
) -> Result<GooseMetrics> {
    std::fs::create_dir_all(run.goose_dir)
        .with_context(|| format!("creating {}", run.goose_dir.display()))?;
    let args = arguments(common, run, shape);
    let config = GooseConfiguration::parse_args_default(&args)
        .map_err(|e| anyhow!("goose refused its options {args:?}: {e}"))?;
    let mut scenario = Scenario::new(run.label)
        .register_transaction(Transaction::new(send(workload, tally)).set_name("score"));
    if let Shape::Users {
        users,
        rate: Some(_),
        ..
    } = shape
    {
        // Goose's first cadence sample of a user runs from when the user was made to when
        // its loop starts, and users start one by one (each builds its HTTP client): the
        // first users share the throttle with fewer others, their early cadence is short,
        // and goose takes the steady cadence that follows for stalls. So no user sends
        // before every user has started.
        let barrier = Arc::new(tokio::sync::Barrier::new((*users).max(1)));
        scenario = scenario.register_transaction(
            Transaction::new(gate(barrier))
                .set_name("start")
                .set_on_start(),
        );
    }
    if let Shape::Plan { pause, .. } = shape {
        scenario = scenario
            .set_wait_time(*pause, *pause)
            .map_err(|e| anyhow!("goose wait time: {e}"))?;
    }
    eprintln!("{}: goose {}", run.label, args.join(" "));
    GooseAttack::initialize_with_config(config)
        .map_err(|e| anyhow!("goose: {e}"))?
        .register_scenario(scenario)
        .execute()
        .await
        .map_err(|e| anyhow!("goose run '{}' failed: {e}", run.label))
}

/// Goose's command line for the run.
fn arguments(common: &Common, run: &Run, shape: &Shape) -> Vec<String> {
    let mut args: Vec<String> = vec!["--host".into(), run.host.into()];
    match shape {
        Shape::Users {
            users,
            run_time,
            rate,
        } => {
            let users = (*users).max(1);
            args.extend([
                "--users".into(),
                users.to_string(),
                // All at once: users started one by one under a shared throttle would see
                // their share of the rate, and so their cadence, shrink as the others start,
                // which goose's coordinated-omission mitigation takes for stalls.
                "--increase-rate".into(),
                STARTS_PER_SECOND.to_string(),
                "--run-time".into(),
                format!("{}s", run_time.as_secs().max(1)),
                // One measurement from the first request: the start is short, and this
                // tool's own counts cover it too.
                "--no-reset-metrics".into(),
            ]);
            if let Some(rate) = rate {
                args.extend(["--throttle-requests".into(), (*rate).max(1).to_string()]);
            }
        }
        Shape::Plan { plan, .. } => args.extend(["--test-plan".into(), plan.clone()]),
    }
    args.extend([
        "--co-mitigation".into(),
        common.co_mitigation.as_str().into(),
        "--timeout".into(),
        common.request_timeout.to_string(),
        "--no-gzip".into(),
        "--no-telnet".into(),
    ]);
    if !common.goose_console {
        args.extend(["--quiet".into(), "--no-print-metrics".into()]);
    }
    for ext in ["html", "json", "md"] {
        args.push("--report-file".into());
        args.push(
            run.goose_dir
                .join(format!("goose-report.{ext}"))
                .display()
                .to_string(),
        );
    }
    args.extend(common.goose_args.iter().cloned());
    args
}

/// A transaction that waits for every user to reach it (at most 30 s).
fn gate(barrier: Arc<tokio::sync::Barrier>) -> TransactionFunction {
    Arc::new(move |_user| {
        let barrier = barrier.clone();
        Box::pin(async move {
            let _ = tokio::time::timeout(Duration::from_secs(30), barrier.wait()).await;
            Ok(())
        })
    })
}

/// The transaction: the workload's next request through goose's client (so goose times it),
/// then the answer read and counted.
fn send(workload: Arc<dyn Workload>, tally: Arc<Tally>) -> TransactionFunction {
    Arc::new(move |user| {
        let workload = workload.clone();
        let tally = tally.clone();
        Box::pin(async move {
            let mut request = workload.next_request();
            let body = std::mem::take(&mut request.body);
            let mut builder = user
                .get_request_builder(&GooseMethod::Post, &request.path)?
                .header("content-type", request.content_type)
                .body(body);
            for (name, value) in &request.headers {
                builder = builder.header(*name, value);
            }
            let goose_request = GooseRequest::builder()
                .method(GooseMethod::Post)
                .path(request.path.as_str())
                .name(request.name)
                .set_request_builder(builder)
                .build();
            tally.sending(Instant::now());
            // Fails only when the run ends while the request waits for the throttle.
            let goose = user.request(goose_request).await?;
            // Goose's time: from passing the throttle to the response headers.
            let took = Duration::from_micros(goose.request.response_time_micros());
            let answer = Answer::read(goose.response).await;
            tally.record(&request, &answer, Instant::now(), took);
            workload.answered(&request, &answer);
            Ok(())
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn goose_accepts_the_arguments() {
        let cli = crate::cli::Cli::parse_from(["x", "steady", "--", "--request-log", "r.csv"]);
        let common = cli.scenario.common();
        let run = Run {
            label: "t",
            host: "http://127.0.0.1:1",
            goose_dir: Path::new("/tmp/g"),
        };
        for shape in [
            Shape::Users {
                users: 3,
                run_time: Duration::from_secs(2),
                rate: Some(50),
            },
            Shape::Users {
                users: 3,
                run_time: Duration::from_secs(2),
                rate: None,
            },
            Shape::Plan {
                plan: "2,0s;2,3s;10,0s;10,1s;2,0s;2,3s;0,0s".into(),
                pause: Duration::from_millis(100),
            },
        ] {
            let args = arguments(common, &run, &shape);
            let config = GooseConfiguration::parse_args_default(&args)
                .unwrap_or_else(|e| panic!("{args:?}: {e}"));
            assert_eq!(config.report_file.len(), 3);
            assert_eq!(config.host.as_deref(), Some("http://127.0.0.1:1"));
        }
    }

    #[test]
    fn planned_durations() {
        let plan = Shape::Plan {
            plan: "2,0s;2,6s;20,0s;20,2s;2,0s;2,1m;0,0s".into(),
            pause: Duration::from_millis(100),
        };
        assert_eq!(plan.planned(), Duration::from_secs(68));
        let users = Shape::Users {
            users: 8,
            run_time: Duration::from_secs(20),
            rate: None,
        };
        assert_eq!(users.planned(), Duration::from_millis(20_008));
        let throttled = Shape::Users {
            users: 8,
            run_time: Duration::from_secs(20),
            rate: Some(100),
        };
        assert_eq!(throttled.planned(), Duration::from_millis(20_008));
    }
}
