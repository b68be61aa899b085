//! `burst`: a calm rate with short bursts. Each user sends --user-rate requests per second
//! (goose's wait time between requests); a goose test plan switches between the users of the
//! calm rate and those of the burst rate.

use std::fmt::Write;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Result};
use serde_json::json;

use super::Ctx;
use crate::attack::Shape;
use crate::cli::BurstArgs;
use crate::report::{ms, Check, Outcome};
use crate::tally::Second;

pub async fn run(ctx: &Ctx<'_>, args: &BurstArgs) -> Result<Outcome> {
    let every = args.burst_every.as_secs();
    let length = args.burst_length.as_secs();
    if length >= every {
        bail!("--burst-length ({length}s) must be shorter than --burst-every ({every}s)");
    }
    let user_rate = args.user_rate.max(1);
    let calm = args.calm_rate.div_ceil(user_rate).max(1);
    let burst = args.burst_rate.div_ceil(user_rate).max(calm);
    let plan = plan(ctx.common.duration.as_secs(), every, length, calm, burst);
    let shape = Shape::Plan {
        plan: plan.clone(),
        pause: Duration::from_micros(1_000_000 / user_rate as u64),
    };
    let (load, counts) = ctx
        .load("burst", "burst", &shape, Arc::new(ctx.mix()))
        .await?;
    let is_burst = |second: usize| (second as u64 % every) >= every - length;
    let (mut calm_phase, mut burst_phase) = (Phase::default(), Phase::default());
    // The last second is partial: left out of the phase figures.
    let whole = counts.timeline.len().saturating_sub(1);
    for (i, s) in counts.timeline[..whole].iter().enumerate() {
        if is_burst(i) {
            burst_phase.add(s);
        } else {
            calm_phase.add(s);
        }
    }
    let delivered = burst_phase.rps() >= 0.5 * args.burst_rate as f64;
    let checks = vec![
        Check::no_failures(&load),
        Check::new(
            "bursts delivered",
            delivered,
            format!(
                "{:.1} req/s in bursts (target {}), {:.1} req/s calm (target {})",
                burst_phase.rps(),
                args.burst_rate,
                calm_phase.rps(),
                args.calm_rate
            ),
        ),
    ];
    let mut md = format!(
        "## Bursts\n\nGoose test plan `{plan}`: {calm} users calm, {burst} in a burst, each \
         sending {user_rate} req/s; a {length} s burst every {every} s.\n\n\
         | phase | seconds | req/s | failed | mean ms | max ms |\n| --- | ---: | ---: | ---: | ---: | ---: |\n"
    );
    for (name, p) in [("calm", &calm_phase), ("burst", &burst_phase)] {
        let _ = writeln!(
            md,
            "| {name} | {} | {:.1} | {} | {} | {} |",
            p.seconds,
            p.rps(),
            p.failed,
            ms(p.mean_ms()),
            ms(p.max_ms)
        );
    }
    md.push_str("\nPer second (measured, not corrected):\n\n| s | phase | requests | failed | mean ms | max ms |\n| ---: | --- | ---: | ---: | ---: | ---: |\n");
    for (i, s) in counts.timeline.iter().enumerate() {
        let _ = writeln!(
            md,
            "| {i} | {} | {} | {} | {} | {} |",
            if is_burst(i) { "burst" } else { "calm" },
            s.requests,
            s.failed,
            ms(s.mean_ms()),
            ms(s.max_ms)
        );
    }
    Ok(Outcome {
        checks,
        details: json!({
            "test_plan": plan,
            "calm_users": calm,
            "burst_users": burst,
            "calm": calm_phase.json(),
            "burst": burst_phase.json(),
            "timeline": counts.timeline,
        }),
        details_md: md,
        load: Some(load),
    })
}

/// Calm, then a burst at the end of every `every` seconds, for `total` seconds; then stop.
fn plan(total: u64, every: u64, length: u64, calm: usize, burst: usize) -> String {
    let mut steps = vec![format!("{calm},0s")];
    let mut t = 0;
    while t + every <= total {
        steps.push(format!("{calm},{}s", every - length));
        steps.push(format!("{burst},0s"));
        steps.push(format!("{burst},{length}s"));
        steps.push(format!("{calm},0s"));
        t += every;
    }
    if total > t {
        steps.push(format!("{calm},{}s", total - t));
    }
    steps.push("0,0s".to_owned());
    steps.join(";")
}

#[derive(Default)]
struct Phase {
    seconds: u64,
    requests: u64,
    failed: u64,
    total_us: f64,
    max_ms: f64,
}

impl Phase {
    fn add(&mut self, s: &Second) {
        self.seconds += 1;
        self.requests += s.requests;
        self.failed += s.failed;
        self.total_us += s.mean_ms() * 1000.0 * s.requests as f64;
        self.max_ms = self.max_ms.max(s.max_ms);
    }

    fn rps(&self) -> f64 {
        if self.seconds == 0 {
            0.0
        } else {
            self.requests as f64 / self.seconds as f64
        }
    }

    fn mean_ms(&self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            self.total_us / self.requests as f64 / 1000.0
        }
    }

    fn json(&self) -> serde_json::Value {
        json!({
            "seconds": self.seconds, "requests": self.requests, "failed": self.failed,
            "rps": self.rps(), "mean_ms": self.mean_ms(), "max_ms": self.max_ms,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans() {
        assert_eq!(
            plan(20, 8, 2, 2, 20),
            "2,0s;2,6s;20,0s;20,2s;2,0s;2,6s;20,0s;20,2s;2,0s;2,4s;0,0s"
        );
        assert_eq!(plan(3, 8, 2, 1, 5), "1,0s;1,3s;0,0s");
    }
}
