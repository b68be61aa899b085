//! `hot-swap`: steady load while the endpoint's version is swapped back and forth, by moving
//! the alias it follows in the registry (a temp copy of the demo registry when the scenario
//! starts the gateway) or by a control-plane config update. Every request must succeed, every
//! swap must be served within --swap-timeout, and both versions must have answered.

use std::fmt::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::watch;

use super::{throttled, Ctx};
use crate::admin::Admin;
use crate::cli::{HotSwapArgs, SwapVia};
use crate::report::{Check, Outcome};

/// How a swap is made.
#[derive(Clone)]
enum How {
    /// Rewrite `alias` in `<registry>/<model>/aliases.yaml`; with `reload`, also ask the
    /// gateway to reload at once.
    Alias {
        file: PathBuf,
        alias: String,
        reload: bool,
    },
    /// PUT the endpoint's config with the served entity at the other version.
    Config { model: String },
}

/// What every swap needs.
#[derive(Clone)]
struct Swapper {
    admin: Admin,
    endpoint: String,
    /// The served entity swapped.
    served: String,
    how: How,
    timeout: Duration,
}

#[derive(Debug, Clone, Serialize)]
struct Swap {
    at_s: f64,
    from: u32,
    to: u32,
    ok: bool,
    /// From the change to the endpoint serving the new version.
    took_ms: f64,
    message: String,
}

pub async fn run(ctx: &Ctx<'_>, args: &HotSwapArgs) -> Result<Outcome> {
    let [a, b] = args.versions[..] else {
        bail!("--versions takes exactly two versions, e.g. 1,2");
    };
    let endpoint = ctx.common.endpoint.clone();
    let state = ctx.admin.endpoint(&endpoint).await?;
    let entity = state["config"]["served_entities"]
        .get(0)
        .cloned()
        .context("the endpoint has no served entity")?;
    let served = text(&entity["name"]).context("the served entity has no name")?;
    let model = text(&entity["entity_name"]).unwrap_or_else(|| "transactions".to_owned());
    let start: u32 = text(&entity["served_version"])
        .and_then(|v| v.parse().ok())
        .context("the served entity serves no version yet")?;
    let entities = state["config"]["served_entities"]
        .as_array()
        .map_or(0, Vec::len);
    if args.swap_via == SwapVia::Config && entities > 1 {
        bail!("--swap-via config replaces the endpoint's config with one served entity; this endpoint has {entities}: use --swap-via alias");
    }
    let original = text(&entity["entity_version"]).unwrap_or_else(|| start.to_string());
    let how = match args.swap_via {
        SwapVia::Config => How::Config { model },
        SwapVia::Alias => {
            let alias = text(&entity["entity_version"]).unwrap_or_default();
            if alias.is_empty() || alias.parse::<u64>().is_ok() {
                bail!("the endpoint serves version '{alias}', not an alias: use --swap-via config");
            }
            let registry = ctx.registry.clone().or_else(|| args.registry.clone()).context(
                "--swap-via alias needs the registry the gateway serves: --registry DIR (or let the scenario start the gateway)",
            )?;
            How::Alias {
                file: registry.join(&model).join("aliases.yaml"),
                alias,
                reload: args.reload,
            }
        }
    };
    let swapper = Swapper {
        admin: ctx.admin.clone(),
        endpoint: endpoint.clone(),
        served,
        how,
        timeout: args.swap_timeout,
    };
    let (stop_tx, stop_rx) = watch::channel(false);
    let task = tokio::spawn(swapper.clone().run(
        args.swap_every,
        (start, if start == a { b } else { a }),
        stop_rx,
    ));
    let loaded = ctx
        .load(
            "hot-swap",
            "hot-swap",
            &throttled(ctx.common, &args.pace),
            Arc::new(ctx.mix()),
        )
        .await;
    let _ = stop_tx.send(true);
    let swaps = task.await.context("the swapping task")?;
    let (load, _) = loaded?;
    // Leave a gateway this tool did not start as it was (a config swap puts back the entity
    // version it had, an alias or a number).
    if !ctx.started_gateway {
        let now = swaps.iter().rev().find(|s| s.ok).map_or(start, |s| s.to);
        let rewritten = matches!(swapper.how, How::Config { .. }) && !swaps.is_empty();
        if now != start || rewritten {
            let back = swapper
                .swap(now, start, Some(&original), Instant::now())
                .await;
            eprintln!("hot-swap: back to version {start}: {}", back.message);
        }
    }
    let done = swaps.iter().filter(|s| s.ok).count();
    let failed: Vec<&Swap> = swaps.iter().filter(|s| !s.ok).collect();
    let answered = |v: u32| {
        load.served
            .iter()
            .filter(|(k, _)| k.ends_with(&format!("(v{v})")))
            .map(|(_, n)| n)
            .sum::<u64>()
    };
    let (by_a, by_b) = (answered(a), answered(b));
    let checks = vec![
        Check::no_failures(&load),
        Check::new(
            "swaps served",
            done > 0 && failed.is_empty(),
            match failed.first() {
                Some(f) => format!(
                    "{} of {} swaps failed; first: {} -> {}: {}",
                    failed.len(),
                    swaps.len(),
                    f.from,
                    f.to,
                    f.message
                ),
                None => format!("{done} swaps, each served within {:?}", args.swap_timeout),
            },
        ),
        Check::new(
            "both versions answered",
            by_a > 0 && by_b > 0,
            format!("version {a}: {by_a} answers, version {b}: {by_b}"),
        ),
    ];
    let took: Vec<f64> = swaps.iter().filter(|s| s.ok).map(|s| s.took_ms).collect();
    let mut md = format!(
        "## Swaps\n\n{} swaps by {}, each {:?} after the previous one was served; {done} served, {} failed. Time from the change to the new version serving: {}.\n\n\
         | # | at s | from | to | result | ms | message |\n| ---: | ---: | ---: | ---: | --- | ---: | --- |\n",
        swaps.len(),
        match &swapper.how {
            How::Alias { reload: true, .. } => "moving the alias, then POST .../reload",
            How::Alias { .. } => "moving the alias (the gateway's file watch)",
            How::Config { .. } => "PUT .../config",
        },
        args.swap_every,
        failed.len(),
        spread(&took)
    );
    for (i, s) in swaps.iter().enumerate() {
        let _ = writeln!(
            md,
            "| {} | {:.1} | {} | {} | {} | {:.0} | {} |",
            i + 1,
            s.at_s,
            s.from,
            s.to,
            if s.ok { "served" } else { "**failed**" },
            s.took_ms,
            crate::report::cell(&s.message)
        );
    }
    Ok(Outcome {
        checks,
        details: json!({"swaps": swaps, "answers_by_version": {a.to_string(): by_a, b.to_string(): by_b}}),
        details_md: md,
        load: Some(load),
    })
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// "min / median / max ms" of the swap times.
fn spread(took: &[f64]) -> String {
    if took.is_empty() {
        return "none".to_owned();
    }
    let mut sorted = took.to_vec();
    sorted.sort_by(f64::total_cmp);
    format!(
        "{:.0} / {:.0} / {:.0} ms (min / median / max)",
        sorted[0],
        sorted[sorted.len() / 2],
        sorted[sorted.len() - 1]
    )
}

impl Swapper {
    /// Swaps between the two versions, `every` after the previous swap, until told to stop.
    async fn run(
        self,
        every: Duration,
        (start, other): (u32, u32),
        mut stop: watch::Receiver<bool>,
    ) -> Vec<Swap> {
        let t0 = Instant::now();
        let mut current = start;
        let mut swaps = Vec::new();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = stop.changed() => break,
            }
            if *stop.borrow() {
                break;
            }
            let to = if current == start { other } else { start };
            let s = self.swap(current, to, None, t0).await;
            eprintln!(
                "hot-swap: {} -> {}: {} ({:.0} ms)",
                s.from, s.to, s.message, s.took_ms
            );
            if s.ok {
                current = to;
            }
            swaps.push(s);
        }
        swaps
    }

    /// One swap to version `to` (a config swap writes `entity_version` when given), then
    /// the endpoint's state polled until the served entity serves `to`.
    async fn swap(&self, from: u32, to: u32, entity_version: Option<&str>, t0: Instant) -> Swap {
        let began = Instant::now();
        let mut record = Swap {
            at_s: began.duration_since(t0).as_secs_f64(),
            from,
            to,
            ok: false,
            took_ms: 0.0,
            message: String::new(),
        };
        let version = entity_version.map_or_else(|| to.to_string(), str::to_owned);
        if let Err(e) = self.change(to, &version).await {
            record.message = format!("{e:#}");
            return record;
        }
        let until = began + self.timeout;
        loop {
            match self.admin.endpoint(&self.endpoint).await {
                Ok(state) => {
                    let entity = state["config"]["served_entities"]
                        .as_array()
                        .and_then(|all| all.iter().find(|e| e["name"] == *self.served));
                    let version = entity.and_then(|e| text(&e["served_version"]));
                    let update = state["state"]["config_update"].as_str().unwrap_or_default();
                    if version.as_deref() == Some(&to.to_string()) && update != "IN_PROGRESS" {
                        record.ok = true;
                        record.message = format!("serving version {to}");
                        break;
                    }
                    if update == "UPDATE_FAILED" {
                        record.message = format!(
                            "UPDATE_FAILED: {}",
                            entity.map_or(Value::Null, |e| e["last_swap"].clone())
                        );
                        break;
                    }
                }
                Err(e) => record.message = format!("{e:#}"),
            }
            if Instant::now() >= until {
                record.message = format!(
                    "not serving version {to} after {:?}; {}",
                    self.timeout, record.message
                );
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        record.took_ms = began.elapsed().as_secs_f64() * 1000.0;
        record
    }

    /// Moves the alias to `to`, or puts the endpoint's config with `entity_version`.
    async fn change(&self, to: u32, entity_version: &str) -> Result<()> {
        let endpoint = &self.endpoint;
        match &self.how {
            How::Alias {
                file,
                alias,
                reload,
            } => {
                move_alias(file, alias, to)?;
                if *reload {
                    let path = format!("/api/2.0/serving-endpoints/{endpoint}/reload");
                    let (status, body) =
                        self.admin.call(reqwest::Method::POST, &path, None).await?;
                    if !(200..300).contains(&status) {
                        bail!("POST {path}: {status} {body}");
                    }
                }
            }
            How::Config { model } => {
                let path = format!("/api/2.0/serving-endpoints/{endpoint}/config");
                let body = json!({"served_entities": [
                    {"name": self.served, "entity_name": model, "entity_version": entity_version}
                ]});
                let (status, answer) = self
                    .admin
                    .call(reqwest::Method::PUT, &path, Some(&body))
                    .await?;
                if !(200..300).contains(&status) {
                    bail!("PUT {path}: {status} {answer}");
                }
            }
        }
        Ok(())
    }
}

/// Points `alias` at `version` in an aliases.yaml, keeping its other lines: written to a
/// temporary file and renamed over the old one, as the README asks.
fn move_alias(file: &Path, alias: &str, version: u32) -> Result<()> {
    let old =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let new = with_alias(&old, alias, version);
    let tmp = file.with_extension(format!("yaml.tmp-{}", std::process::id()));
    std::fs::write(&tmp, new).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, file).with_context(|| format!("renaming over {}", file.display()))
}

fn with_alias(yaml: &str, alias: &str, version: u32) -> String {
    let mut out = String::new();
    let mut found = false;
    for line in yaml.lines() {
        let key = line.split(':').next().unwrap_or_default().trim();
        if key == alias && !line.starts_with([' ', '\t']) {
            let _ = writeln!(out, "{alias}: {version}");
            found = true;
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    if !found {
        let _ = writeln!(out, "{alias}: {version}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moves_one_alias() {
        assert_eq!(
            with_alias("champion: 1\nchallenger: 2\n", "champion", 2),
            "champion: 2\nchallenger: 2\n"
        );
        assert_eq!(
            with_alias("challenger: 2", "champion", 1),
            "challenger: 2\nchampion: 1\n"
        );
        assert_eq!(
            with_alias("# c\nchampion_old: 3\nchampion: 1\n", "champion", 2),
            "# c\nchampion_old: 3\nchampion: 2\n"
        );
    }

    #[test]
    fn spreads() {
        assert_eq!(spread(&[]), "none");
        assert_eq!(
            spread(&[5.0, 1.0, 3.0]),
            "1 / 3 / 5 ms (min / median / max)"
        );
    }
}
