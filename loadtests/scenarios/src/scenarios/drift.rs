//! `drift`: steady traffic of the model's own inputs (the six columns the generator computes
//! along its stream; the started gateway serves version 1 without its feature spec, whose
//! lookups would read a fixed snapshot); halfway, the generator's drift knob turns
//! (`set_drift_to`, `set_drift(true)`). Each answered request's labels (the generator's `label` of each row)
//! are posted --label-delay later through `POST .../labels`, by the answer's `x-request-id`.
//! The monitoring report is read at the flip and once the last window closed: the drift flag
//! before and after, and the quality figures from the labels.

use std::collections::VecDeque;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use modelgate::demo::bodies::Columns;
use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::watch;

use super::{throttled, Ctx};
use crate::admin::Admin;
use crate::cli::DriftArgs;
use crate::report::{cell, Check, Outcome};
use crate::traffic::{Answer, Mix, Request, Workload};

/// How long the end waits for the open monitoring window to close (a gateway given with
/// --url may have 5-minute windows).
const MAX_CLOSE_WAIT_MS: i64 = 30_000;

/// At most this many labels per call (the API takes 10,000).
const LABELS_PER_CALL: usize = 5_000;

/// The monitoring window of the started gateway, seconds: a fifth of the run unless given,
/// so windows close before and after the flip.
pub fn window(args: &DriftArgs) -> u64 {
    args.window
        .unwrap_or(args.common.duration.as_secs() / 5)
        .max(1)
}

struct Waiting {
    due: Instant,
    request_id: String,
    labels: Vec<i64>,
}

struct Labelled {
    mix: Mix,
    delay: Duration,
    waiting: Mutex<VecDeque<Waiting>>,
    /// Answers without an x-request-id (their labels cannot be posted).
    without_id: AtomicU64,
}

impl Labelled {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Waiting>> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The waiting labels due by `now` (all of them with `all`).
    fn due(&self, now: Instant, all: bool) -> Vec<Waiting> {
        let mut waiting = self.lock();
        let n = waiting.iter().take_while(|w| all || w.due <= now).count();
        waiting.drain(..n).collect()
    }

    fn next_due(&self) -> Option<Instant> {
        self.lock().front().map(|w| w.due)
    }
}

impl Workload for Labelled {
    fn next_request(&self) -> Request {
        self.mix.next_request()
    }

    fn answered(&self, request: &Request, answer: &Answer) {
        if !answer.ok() {
            return;
        }
        match &answer.request_id {
            Some(id) => self.lock().push_back(Waiting {
                due: Instant::now() + self.delay,
                request_id: id.clone(),
                labels: request.rows.iter().map(|t| t.label).collect(),
            }),
            None => {
                self.without_id.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// What the labels API answered, added up.
#[derive(Debug, Default, Clone, Serialize)]
struct LabelStats {
    calls: u64,
    failed_calls: u64,
    sent: u64,
    accepted: u64,
    joined: u64,
    unmatched: u64,
    duplicate: u64,
    invalid: u64,
    errors: Vec<String>,
}

/// Posts labels as they fall due until stopped, then the rest as they fall due.
async fn poster(
    admin: Admin,
    endpoint: String,
    labelled: Arc<Labelled>,
    mut stop: watch::Receiver<bool>,
) -> LabelStats {
    let path = format!("/api/2.0/serving-endpoints/{endpoint}/labels");
    let mut stats = LabelStats::default();
    loop {
        let stopping = *stop.borrow();
        let due = labelled.due(Instant::now(), false);
        let rows: Vec<Value> =
            due.iter()
                .flat_map(|w| {
                    w.labels.iter().enumerate().map(
                        |(i, l)| json!({"request_id": w.request_id, "row_index": i, "label": l}),
                    )
                })
                .collect();
        for chunk in rows.chunks(LABELS_PER_CALL) {
            post(&admin, &path, chunk, &mut stats).await;
        }
        match (stopping, labelled.next_due()) {
            (true, None) => break,
            (true, Some(next)) => tokio::time::sleep_until(next.into()).await,
            (false, _) => {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                    _ = stop.changed() => {}
                }
            }
        }
    }
    stats
}

async fn post(admin: &Admin, path: &str, labels: &[Value], stats: &mut LabelStats) {
    let body = json!({ "labels": labels });
    stats.calls += 1;
    stats.sent += labels.len() as u64;
    // A full label queue answers 503 with Retry-After: try again a few times.
    for attempt in 0..5 {
        match admin.call(reqwest::Method::POST, path, Some(&body)).await {
            Ok((status, answer)) if (200..300).contains(&status) => {
                let n = |v: &Value| v.as_u64().unwrap_or(0);
                stats.accepted += n(&answer["accepted"]);
                let m = &answer["monitoring"];
                stats.joined += n(&m["joined"]);
                stats.unmatched += n(&m["unmatched"]);
                stats.duplicate += n(&m["duplicate"]);
                stats.invalid += n(&m["invalid"]);
                return;
            }
            Ok((503, _)) if attempt < 4 => tokio::time::sleep(Duration::from_secs(1)).await,
            Ok((status, answer)) => {
                note(stats, format!("{status} {answer}"));
                return;
            }
            Err(e) => {
                note(stats, format!("{e:#}"));
                return;
            }
        }
    }
}

fn note(stats: &mut LabelStats, error: String) {
    stats.failed_calls += 1;
    if stats.errors.len() < 5 {
        stats.errors.push(error);
    }
}

/// A closed window of the served entity, as the monitoring report shows it.
#[derive(Debug, Clone, Serialize)]
struct Window {
    window: String,
    start: String,
    end: Option<String>,
    status: Option<String>,
    drift: bool,
    amount_psi: Option<f64>,
    amount_status: Option<String>,
    /// Columns whose status is drift.
    drifted: Vec<String>,
}

fn windows(report: &Value) -> Vec<Window> {
    let entity = &report["served_entities"][0];
    entity["windows"]
        .as_array()
        .map(|all| {
            all.iter()
                .map(|w| {
                    let columns = w["columns"].as_array().cloned().unwrap_or_default();
                    let amount = columns.iter().find(|c| c["name"] == "Amount");
                    Window {
                        window: w["window"].as_str().unwrap_or_default().to_owned(),
                        start: w["start"].as_str().unwrap_or_default().to_owned(),
                        end: w["end"].as_str().map(str::to_owned),
                        status: w["status"].as_str().map(str::to_owned),
                        drift: w["drift"].as_bool().unwrap_or(false),
                        amount_psi: amount.and_then(|c| c["vs_baseline"]["psi"].as_f64()),
                        amount_status: amount.and_then(|c| c["status"].as_str().map(str::to_owned)),
                        drifted: columns
                            .iter()
                            .filter(|c| c["status"] == "drift")
                            .filter_map(|c| c["name"].as_str().map(str::to_owned))
                            .collect(),
                    }
                })
                .collect()
        })
        .unwrap_or_default()
}

fn time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// The closed (non-total) window that lies wholly before or wholly after `flip`.
fn closed(windows: &[Window], flip: DateTime<Utc>, after: bool) -> Option<&Window> {
    windows.iter().filter(|w| w.window != "total").find(|w| {
        let (Some(start), Some(end)) = (time(&w.start), w.end.as_deref().and_then(time)) else {
            return false;
        };
        if after {
            start >= flip
        } else {
            end <= flip
        }
    })
}

/// The since-load quality figures of the served entity.
fn quality_total(report: &Value) -> Option<Value> {
    report["served_entities"][0]["quality"]
        .as_array()?
        .iter()
        .find(|q| q["window"] == "total")
        .cloned()
}

pub async fn run(ctx: &Ctx<'_>, args: &DriftArgs) -> Result<Outcome> {
    let endpoint = ctx.common.endpoint.clone();
    let mix = Mix {
        columns: Columns::Model,
        ..ctx.mix()
    };
    let labelled = Arc::new(Labelled {
        mix,
        delay: args.label_delay,
        waiting: Mutex::new(VecDeque::new()),
        without_id: AtomicU64::new(0),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let poster = tokio::spawn(poster(
        ctx.admin.clone(),
        endpoint.clone(),
        labelled.clone(),
        stop_rx,
    ));
    let started = Instant::now();
    let flip = {
        let admin = ctx.admin.clone();
        let generator = ctx.generator.clone();
        let (half, to, endpoint) = (ctx.common.duration / 2, args.drift_to, endpoint.clone());
        tokio::spawn(async move {
            tokio::time::sleep(half).await;
            generator.drift(to);
            let (at, instant) = (Utc::now(), Instant::now());
            eprintln!("drift: the knob turned (Beta parameters 10 -> {to})");
            (at, instant, admin.monitoring(&endpoint).await)
        })
    };
    let loaded = ctx
        .load(
            "drift",
            "drift",
            &throttled(ctx.common, &args.pace),
            labelled.clone(),
        )
        .await;
    let _ = stop_tx.send(true);
    let labels = poster.await.context("the label task")?;
    let (load, _) = loaded?;
    let (flipped_at, flipped, before) = flip.await.context("the drift knob task")?;
    let before = before.context("reading monitoring at the flip")?;
    let flip_s = flipped.duration_since(started).as_secs_f64();
    // Let the window holding the last answers close (windows are aligned to the epoch).
    let width_ms = before["windows"]
        .as_array()
        .and_then(|w| w.first())
        .and_then(Value::as_str)
        .and_then(width_ms)
        .unwrap_or(window(args) as i64 * 1000);
    let now_ms = Utc::now().timestamp_millis();
    let close_ms = (now_ms / width_ms + 1) * width_ms - now_ms + 300;
    if close_ms <= MAX_CLOSE_WAIT_MS {
        tokio::time::sleep(Duration::from_millis(close_ms as u64)).await;
    } else {
        eprintln!(
            "drift: the open monitoring window closes in {} s; not waiting for it",
            close_ms / 1000
        );
    }
    let after = ctx.admin.monitoring(&endpoint).await?;

    let before_windows = windows(&before);
    let after_windows = windows(&after);
    let pre = closed(&before_windows, flipped_at, false);
    let post = closed(&after_windows, flipped_at, true);
    let quality = quality_total(&after);
    let without_id = labelled.without_id.load(Ordering::Relaxed);
    let checks = vec![
        Check::no_failures(&load),
        Check::new(
            "drift flagged after the knob",
            post.is_some_and(|w| w.drift),
            match post {
                Some(w) => format!(
                    "window {} from {}: drift {}, Amount PSI {}, drifted {:?}",
                    w.window,
                    w.start,
                    w.drift,
                    w.amount_psi.map_or("n/a".to_owned(), |p| format!("{p:.3}")),
                    w.drifted
                ),
                None => format!(
                    "no closed window lies wholly after the flip (the gateway's windows: {}): lengthen --duration or shorten --window",
                    after["windows"]
                ),
            },
        ),
        Check::new(
            "no drift before the knob",
            pre.is_none_or(|w| !w.drift),
            match pre {
                Some(w) => format!(
                    "window {} from {}: drift {}, Amount PSI {}",
                    w.window,
                    w.start,
                    w.drift,
                    w.amount_psi.map_or("n/a".to_owned(), |p| format!("{p:.3}"))
                ),
                None => "not judged: no closed window lay wholly before the flip".to_owned(),
            },
        ),
        Check::new(
            "labels joined",
            labels.sent > 0
                && labels.joined == labels.sent
                && labels.failed_calls == 0
                && without_id == 0,
            format!(
                "{} labels in {} calls: {} joined, {} unmatched, {} duplicate, {} invalid, {} calls failed, {without_id} answers without x-request-id",
                labels.sent,
                labels.calls,
                labels.joined,
                labels.unmatched,
                labels.duplicate,
                labels.invalid,
                labels.failed_calls
            ),
        ),
        Check::new(
            "quality figures",
            quality.as_ref().is_some_and(|q| q["labels"].as_u64().unwrap_or(0) > 0),
            quality
                .as_ref()
                .map_or("no quality for the total window".to_owned(), |q| {
                    format!("{} labels in the total window", q["labels"])
                }),
        ),
    ];
    let md = markdown(
        args,
        flip_s,
        &before,
        &after,
        &before_windows,
        &after_windows,
        &labels,
    );
    Ok(Outcome {
        checks,
        details: json!({
            "flip_at": flipped_at.to_rfc3339(),
            "flip_after_s": flip_s,
            "drift_to": args.drift_to,
            "drift_before": before["drift"],
            "drift_after": after["drift"],
            "windows_before": before_windows,
            "windows_after": after_windows,
            "quality_total": quality,
            "labels": labels,
            "monitoring_after": after,
        }),
        details_md: md,
        load: Some(load),
    })
}

/// "4s", "5m", "1h", "1d" in milliseconds.
fn width_ms(text: &str) -> Option<i64> {
    let (n, unit) = text.split_at(text.len().checked_sub(1)?);
    let n: i64 = n.parse().ok()?;
    let scale = match unit {
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    (n > 0).then_some(n * scale)
}

fn markdown(
    args: &DriftArgs,
    flip_s: f64,
    before: &Value,
    after: &Value,
    before_windows: &[Window],
    after_windows: &[Window],
    labels: &LabelStats,
) -> String {
    let mut md = format!(
        "## Drift\n\nThe knob turned {flip_s:.1} s into the run (Beta parameters 10 -> {}). \
         Endpoint drift flag: **{}** at the flip, **{}** at the end. Labels were posted {:?} \
         after each answer.\n\n\
         | read | window | start | end | status | drift | Amount PSI | drifted columns |\n| --- | --- | --- | --- | --- | --- | ---: | --- |\n",
        args.drift_to,
        before["drift"],
        after["drift"],
        args.label_delay
    );
    for (read, list) in [
        ("at the flip", before_windows),
        ("at the end", after_windows),
    ] {
        for w in list {
            let _ = writeln!(
                md,
                "| {read} | {} | {} | {} | {} | {} | {} | {} |",
                w.window,
                w.start,
                w.end.as_deref().unwrap_or(""),
                w.status.as_deref().unwrap_or("n/a"),
                w.drift,
                w.amount_psi.map_or("n/a".to_owned(), |p| format!("{p:.3}")),
                cell(&w.drifted.join(", "))
            );
        }
    }
    md.push_str(
        "\n### Quality from the posted labels\n\nBy label arrival: the last closed window, the \
         open one, and the total since the version loaded.\n\n",
    );
    let quality = after["served_entities"][0]["quality"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if quality.is_empty() {
        md.push_str("No quality figures.\n");
    } else {
        md.push_str("| window | start | labels | tp | fp | fn | tn | accuracy | precision | recall | f1 | log loss | auc |\n| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
    }
    for q in &quality {
        let f = |k: &str| match &q[k] {
            Value::Number(n) if n.is_f64() => format!("{:.4}", n.as_f64().unwrap_or(f64::NAN)),
            Value::Number(n) => n.to_string(),
            Value::String(s) => s.clone(),
            _ => "n/a".to_owned(),
        };
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            f("window"),
            f("start"),
            f("labels"),
            f("tp"),
            f("fp"),
            f("fn"),
            f("tn"),
            f("accuracy"),
            f("precision"),
            f("recall"),
            f("f1"),
            f("log_loss"),
            f("auc")
        );
    }
    let _ = writeln!(
        md,
        "\nLabels: {} sent in {} calls; {} accepted, {} joined, {} unmatched, {} duplicate, {} invalid; {} calls failed.",
        labels.sent,
        labels.calls,
        labels.accepted,
        labels.joined,
        labels.unmatched,
        labels.duplicate,
        labels.invalid,
        labels.failed_calls
    );
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widths() {
        assert_eq!(width_ms("4s"), Some(4_000));
        assert_eq!(width_ms("5m"), Some(300_000));
        assert_eq!(width_ms("1d"), Some(86_400_000));
        assert_eq!(width_ms("x"), None);
        assert_eq!(width_ms(""), None);
        assert_eq!(width_ms("0s"), None);
    }

    #[test]
    fn windows_before_and_after_the_flip() {
        let report = json!({"served_entities": [{"windows": [
            {"window": "4s", "start": "2026-11-23T10:00:04.000Z", "end": "2026-11-23T10:00:08.000Z",
             "status": "drift", "drift": true,
             "columns": [{"name": "Amount", "status": "drift", "vs_baseline": {"psi": 0.4}},
                         {"name": "Product", "status": "ok", "vs_baseline": {"psi": 0.001}}]},
            {"window": "total", "start": "2026-11-23T09:59:58.000Z", "end": null,
             "status": "warn", "drift": false, "columns": []}
        ], "quality": [{"window": "total", "labels": 10}]}]});
        let w = windows(&report);
        assert_eq!(w.len(), 2);
        assert_eq!(w[0].amount_psi, Some(0.4));
        assert_eq!(w[0].drifted, vec!["Amount".to_owned()]);
        let flip = time("2026-11-23T10:00:03.000Z").unwrap();
        assert_eq!(
            closed(&w, flip, true).map(|w| w.window.as_str()),
            Some("4s")
        );
        assert!(closed(&w, flip, false).is_none());
        let late = time("2026-11-23T10:00:09.000Z").unwrap();
        assert!(closed(&w, late, false).is_some());
        assert_eq!(quality_total(&report).unwrap()["labels"], 10);
    }
}
