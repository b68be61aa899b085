//! `ramp`: closed-loop users (each sends as soon as it is answered), doubling step by step,
//! one goose run per step, until throughput stops rising, errors appear or p99 blows up. The
//! knee is the best step before that.

use std::fmt::Write;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use serde::Serialize;
use serde_json::json;

use super::Ctx;
use crate::attack::Shape;
use crate::cli::RampArgs;
use crate::report::{ms, Check, Outcome};
use crate::summary::LoadSummary;

#[derive(Serialize)]
struct Step {
    users: usize,
    /// Why this step counts as saturated, if it does.
    saturated: Option<String>,
    load: LoadSummary,
}

pub async fn run(ctx: &Ctx<'_>, args: &RampArgs) -> Result<Outcome> {
    let started = Instant::now();
    let budget = ctx.common.duration;
    let max_users = args.max_users.max(1);
    let mut users = args.start_users.clamp(1, max_users);
    let mix = Arc::new(ctx.mix());
    let mut steps: Vec<Step> = Vec::new();
    let end = loop {
        if !steps.is_empty() && started.elapsed() + args.step > budget {
            break "the --duration budget was spent";
        }
        let shape = Shape::Users {
            users,
            run_time: args.step,
            rate: None,
        };
        let label = format!("ramp-{users}-users");
        let sub = format!("step-{users:04}-users");
        let (load, _) = ctx.load(&label, &sub, &shape, mix.clone()).await?;
        let saturated = judge(&steps, &load, args);
        eprintln!(
            "{label}: {:.1} req/s, p99 {} ms (corrected), {:.2} % errors{}",
            load.throughput_rps,
            ms(load.latency.p99_ms),
            load.error_rate * 100.0,
            saturated
                .as_deref()
                .map_or(String::new(), |s| format!(": saturated ({s})"))
        );
        let stop = saturated.is_some();
        steps.push(Step {
            users,
            saturated,
            load,
        });
        if stop {
            break "saturated";
        }
        if users >= max_users {
            break "--max-users reached";
        }
        users = (users * 2).min(max_users);
    };
    let saturated = steps.last().is_some_and(|s| s.saturated.is_some());
    // The best step among those before the saturated one.
    let before = if saturated {
        &steps[..steps.len() - 1]
    } else {
        &steps[..]
    };
    let knee = before
        .iter()
        .max_by(|a, b| a.load.throughput_rps.total_cmp(&b.load.throughput_rps));
    let mut checks = vec![Check::new(
        "saturation reached",
        saturated,
        match steps.last() {
            Some(Step {
                users,
                saturated: Some(why),
                ..
            }) => format!("at {users} users: {why}"),
            _ => format!("not reached ({end}); raise --max-users or --duration"),
        },
    )];
    if let Some(k) = knee {
        checks.push(Check::new(
            "errors at the knee",
            k.load.error_rate <= args.max_error_rate,
            format!(
                "{:.2} % of {} requests at {} users",
                k.load.error_rate * 100.0,
                k.load.requests,
                k.users
            ),
        ));
    }
    let details_md = markdown(&steps, knee, end);
    let details = json!({
        "knee": knee.map(|k| json!({
            "users": k.users,
            "throughput_rps": k.load.throughput_rps,
            "p99_ms": k.load.latency.p99_ms,
        })),
        "ended": end,
        "steps": steps,
    });
    Ok(Outcome {
        load: knee.map(|k| k.load.clone()),
        checks,
        details,
        details_md,
    })
}

/// Why `load` (the step after `steps`) is saturated, if it is.
fn judge(steps: &[Step], load: &LoadSummary, args: &RampArgs) -> Option<String> {
    if load.requests == 0 {
        return Some("no request was answered".to_owned());
    }
    if load.error_rate > args.max_error_rate {
        return Some(format!(
            "error rate {:.2} % above {:.2} %",
            load.error_rate * 100.0,
            args.max_error_rate * 100.0
        ));
    }
    let first = steps.first()?;
    let p99_limit = (first.load.latency.p99_ms * args.p99_factor).max(args.p99_floor_ms);
    if load.latency.p99_ms > p99_limit {
        return Some(format!(
            "p99 {} ms above {} ms ({} x the first step's {} ms, at least {} ms)",
            ms(load.latency.p99_ms),
            ms(p99_limit),
            args.p99_factor,
            ms(first.load.latency.p99_ms),
            args.p99_floor_ms
        ));
    }
    let best = steps
        .iter()
        .map(|s| s.load.throughput_rps)
        .fold(0.0, f64::max);
    if load.throughput_rps < best * (1.0 + args.min_gain) {
        return Some(format!(
            "throughput {:.1} req/s is less than {:.0} % above the best so far ({:.1})",
            load.throughput_rps,
            args.min_gain * 100.0,
            best
        ));
    }
    None
}

fn markdown(steps: &[Step], knee: Option<&Step>, end: &str) -> String {
    let mut md = String::from("## Ramp\n\n");
    match knee {
        Some(k) => {
            let _ = writeln!(
                md,
                "Knee: **{} users, {:.1} req/s**, p99 {} ms (corrected). The Load section above is that step; the run ended because {end}.\n",
                k.users,
                k.load.throughput_rps,
                ms(k.load.latency.p99_ms)
            );
        }
        None => {
            let _ = writeln!(md, "No knee: the run ended because {end}.\n");
        }
    }
    md.push_str("| users | req/s | rows/s | errors | p50 | p90 | p99 | p99.9 | max | synthetic | saturated |\n| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n");
    for s in steps {
        let l = &s.load;
        let t = &l.latency;
        let _ = writeln!(
            md,
            "| {} | {:.1} | {:.1} | {:.2} % | {} | {} | {} | {} | {} | {} | {} |",
            s.users,
            l.throughput_rps,
            l.rows_per_s,
            l.error_rate * 100.0,
            ms(t.p50_ms),
            ms(t.p90_ms),
            ms(t.p99_ms),
            ms(t.p99_9_ms),
            ms(t.max_ms),
            l.coordinated_omission.synthetic_requests,
            s.saturated.as_deref().unwrap_or("")
        );
    }
    md.push_str("\nLatencies in ms, corrected for coordinated omission.\n");
    md
}
