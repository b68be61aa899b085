//! `GET /`: the status page. One server-rendered HTML page, no script, that reloads itself
//! every few seconds: each endpoint with its served entities (model, the version or alias
//! asked for, the version served, engine, traffic share, what a loading entity is doing), live
//! requests per second and p50/p99 from the in-process histograms, drift and quality per served
//! entity, and each one's last swap. Built from the same views the API answers
//! (`GET /api/2.0/serving-endpoints/{name}` and `.../monitoring`), so the two never disagree.
//! A `manage` route: it shows what the control plane shows, under the same tokens.

use std::fmt::Write;
use std::time::Instant;

use actix_web::{web, HttpResponse};
use serde_json::Value;

use super::error::ApiError;
use super::AppState;
use crate::drift::report::EntityReport;
use crate::endpoint::view::endpoint_json;
use crate::metrics::live::{ArmKey, Live, LiveSampler};
use crate::pipeline::Gateway;
use crate::promotion::Promotions;

/// Seconds between the page's reloads.
pub const REFRESH_SECONDS: u32 = 5;

pub async fn page(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let (gateway, live) = (state.gateway.clone(), state.live.clone());
    let promotions = state.promotions.clone();
    // Monitoring's reports close windows and take the served entities' locks: off the worker.
    let html = web::block(move || render(&gateway, &promotions, &live, Instant::now()))
        .await
        .map_err(|e| ApiError::blocked("the status page was not rendered", e))?;
    Ok(HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header(("cache-control", "no-store"))
        // No script, no frames, nothing fetched: only its own inline style.
        .insert_header((
            "content-security-policy",
            "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
        ))
        .insert_header(("x-content-type-options", "nosniff"))
        .body(html))
}

/// The whole page.
pub fn render(
    gateway: &Gateway,
    promotions: &Promotions,
    sampler: &LiveSampler,
    now: Instant,
) -> String {
    let live = sampler.look(&gateway.metrics().serving.request_duration, now);
    let endpoints = gateway.endpoints();
    let mut out = String::with_capacity(16 * 1024);
    let ready = gateway.is_ready();
    let _ = write!(
        out,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"{REFRESH_SECONDS}\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>modelgate</title><style>{STYLE}</style></head><body>\
         <header><h1>modelgate <small>{}</small></h1>\
         <p><span class=\"{}\" id=\"readiness\">{}</span> · {} endpoint{} · \
         reloads every {REFRESH_SECONDS} s · rates and latencies over the last {}</p></header>",
        esc(env!("CARGO_PKG_VERSION")),
        if ready { "ok" } else { "bad" },
        if ready { "ready" } else { "not ready" },
        endpoints.len(),
        if endpoints.len() == 1 { "" } else { "s" },
        live.values()
            .next()
            .map(|l| format!("{:.0} s", l.over_seconds))
            .unwrap_or_else(|| "few seconds".into()),
    );
    if endpoints.is_empty() {
        out.push_str(
            "<p>No endpoint yet: create one with <code>POST /api/2.0/serving-endpoints</code>.</p>",
        );
    }
    for endpoint in &endpoints {
        let view = endpoint_json(endpoint);
        let reports = gateway.monitoring_reports(endpoint);
        let activities: Vec<(String, Value)> = endpoint
            .generation()
            .slots
            .iter()
            .filter_map(|s| {
                Some((
                    s.name.to_string(),
                    serde_json::to_value(s.activity.view()?).ok()?,
                ))
            })
            .collect();
        let promotion = promotions.view(endpoint);
        render_endpoint(&mut out, &view, &reports, &activities, &live);
        promotion_line(&mut out, &promotion);
        out.push_str("</section>");
    }
    out.push_str(
        "<footer>JSON: <code>/api/2.0/serving-endpoints</code>, <code>/readyz</code>, \
         <code>/metrics</code></footer></body></html>\n",
    );
    out
}

fn render_endpoint(
    out: &mut String,
    view: &Value,
    reports: &[EntityReport],
    activities: &[(String, Value)],
    live: &std::collections::HashMap<ArmKey, Live>,
) {
    let name = text(&view["name"]);
    let ready = view["state"]["ready"] == "READY";
    let config = &view["config"];
    let routes = config["traffic_config"]["routes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let drift = reports.iter().any(|r| r.drift);
    let _ = write!(
        out,
        "<section class=\"endpoint\" data-endpoint=\"{n}\"><h2>{n} \
         <span class=\"{}\">{}</span>{}</h2>\
         <p>config version {} · {}</p>\
         <table><thead><tr><th>served entity</th><th>model</th><th>asked for</th>\
         <th>serving</th><th>engine</th><th>traffic</th><th>state</th><th>req/s</th>\
         <th>p50</th><th>p99</th><th>drift</th><th>quality (since load)</th>\
         <th>last swap</th></tr></thead><tbody>",
        if ready { "ok" } else { "bad" },
        if ready { "ready" } else { "not ready" },
        if drift {
            " <span class=\"bad\">drift</span>"
        } else {
            ""
        },
        text(&config["config_version"]),
        esc(&config_update(&view["state"]["config_update"])),
        n = esc(&name),
    );
    for entity in config["served_entities"].as_array().into_iter().flatten() {
        let served = text(&entity["name"]);
        let report = reports.iter().find(|r| r.served_entity == served);
        let activity = activities
            .iter()
            .find(|(n, _)| *n == served)
            .map(|(_, a)| a);
        let figures = live.get(&(name.clone(), served.clone()));
        let _ = write!(
            out,
            "<tr data-served-entity=\"{s}\"><td>{s}</td><td>{}</td><td>{}</td>\
             <td class=\"version\">{}</td><td>{}</td><td class=\"traffic\">{}</td><td>{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&text(&entity["entity_name"])),
            esc(&text(&entity["entity_version"])),
            esc(&or_dash(text(&entity["served_version"]))),
            esc(&or_dash(text(&entity["served_engine"]))),
            esc(&traffic(&routes, &served)),
            state_cell(entity, activity),
            figures
                .map(|l| format!("{:.1}", l.requests_per_second))
                .unwrap_or_else(|| "0.0".into()),
            millis(figures.and_then(|l| l.p50)),
            millis(figures.and_then(|l| l.p99)),
            drift_cell(report),
            quality_cell(report),
            swap_cell(&entity["last_swap"]),
            s = esc(&served),
        );
    }
    out.push_str("</tbody></table>");
}

/// The endpoint's promotion state and why, under its table (nothing without rules).
fn promotion_line(out: &mut String, view: &Value) {
    let state = text(&view["state"]);
    if state == "off" {
        return;
    }
    let class = match state.as_str() {
        "promoted" | "passed" => "ok",
        "rolled_back" | "refused" => "bad",
        _ => "",
    };
    let _ = write!(
        out,
        "<p class=\"promotion\">promotion: <span class=\"{class}\">{}</span>{} · {}</p>",
        esc(&state.replace('_', " ")),
        if view["dry_run"] == true {
            " (dry run)"
        } else {
            ""
        },
        esc(&text(&view["reason"])),
    );
}

/// `90 %`, `shadow`, or `—` for a served entity no route names.
fn traffic(routes: &[Value], served: &str) -> String {
    let Some(route) = routes.iter().find(|r| r["served_entity_name"] == served) else {
        return "—".into();
    };
    if route["shadow"] == true {
        return match route["shadow_percentage"].as_u64() {
            Some(p) => format!("shadow {p} %"),
            None => "shadow".into(),
        };
    }
    format!("{} %", text(&route["traffic_percentage"]))
}

fn config_update(v: &Value) -> String {
    match v.as_str() {
        Some("IN_PROGRESS") => "an update is in progress".into(),
        Some("UPDATE_FAILED") => "the last update failed".into(),
        _ => "no update in progress".into(),
    }
}

/// Ready, or what it is doing (and how far a download has got), or why it failed.
fn state_cell(entity: &Value, activity: Option<&Value>) -> String {
    if let Some(a) = activity {
        let step = text(&a["step"]);
        let bytes = match (a["bytes_done"].as_u64(), a["bytes_total"].as_u64()) {
            (Some(done), Some(total)) if total > 0 => format!(
                " {:.1} of {:.1} MB ({:.0} %)",
                done as f64 / 1e6,
                total as f64 / 1e6,
                done as f64 * 100.0 / total as f64
            ),
            (Some(done), _) => format!(" {:.1} MB", done as f64 / 1e6),
            _ => String::new(),
        };
        let version = a["version"]
            .as_str()
            .map(|v| format!(" version {v}"))
            .unwrap_or_default();
        return format!(
            "<span class=\"busy\">{}</span>",
            esc(&format!("{step}{version}{bytes}"))
        );
    }
    let deployment = text(&entity["state"]["deployment"]);
    let (class, word) = match deployment.as_str() {
        "DEPLOYMENT_READY" => ("ok", "ready"),
        "DEPLOYMENT_FAILED" => ("bad", "failed"),
        _ => ("busy", "loading"),
    };
    format!(
        "<span class=\"{class}\" title=\"{}\">{word}</span>",
        esc(&text(&entity["state"]["deployment_state_message"]))
    )
}

fn drift_cell(report: Option<&EntityReport>) -> String {
    let Some(r) = report else {
        return "—".into();
    };
    if !r.baseline {
        return "<span title=\"the version has no baseline.json\">no baseline</span>".into();
    }
    match r.status {
        None => "<span title=\"not enough values yet\">collecting</span>".into(),
        Some(status) => {
            let word = serde_json::to_value(status)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            let class = if r.drift { "bad" } else { "ok" };
            format!("<span class=\"{class}\">{}</span>", esc(&word))
        }
    }
}

fn quality_cell(report: Option<&EntityReport>) -> String {
    let Some(total) = report.and_then(|r| r.quality.iter().find(|q| q.window == "total")) else {
        return "—".into();
    };
    let f = &total.figures;
    if f.labels == 0 {
        return "no labels".into();
    }
    let figure = |name: &str, v: Option<f64>| v.map(|v| format!("{name} {v:.3}"));
    let parts: Vec<String> = [
        figure("F1", f.f1),
        figure("AUC", f.auc),
        figure("accuracy", f.accuracy),
    ]
    .into_iter()
    .flatten()
    .collect();
    esc(&format!("{} · {} labels", parts.join(" · "), f.labels))
}

fn swap_cell(swap: &Value) -> String {
    if swap.is_null() {
        return "—".into();
    }
    let outcome = text(&swap["outcome"]);
    let class = if outcome == "success" { "ok" } else { "bad" };
    let when = swap["at"]
        .as_f64()
        .and_then(|s| chrono::DateTime::from_timestamp_millis((s * 1000.0) as i64))
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_default();
    format!(
        "<span class=\"{class}\" title=\"{}\">{}</span> {} → {} ({}, {})",
        esc(&text(&swap["message"])),
        esc(&outcome),
        esc(&or_dash(text(&swap["from_version"]))),
        esc(&or_dash(text(&swap["to_version"]))),
        esc(&text(&swap["trigger"])),
        esc(&when),
    )
}

fn millis(seconds: Option<f64>) -> String {
    match seconds {
        Some(s) if s < 0.01 => format!("{:.2} ms", s * 1e3),
        Some(s) => format!("{:.1} ms", s * 1e3),
        None => "—".into(),
    }
}

/// A JSON value as plain text (strings without their quotes; null as empty).
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn or_dash(s: String) -> String {
    if s.is_empty() {
        "—".into()
    } else {
        s
    }
}

/// Text made safe inside HTML elements and quoted attributes.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}\
h1 small{font-weight:normal;color:#777;font-size:60%}\
h2{margin:1.2em 0 .2em}table{border-collapse:collapse;width:100%}\
th,td{border-bottom:1px solid #ddd;padding:.3em .6em;text-align:left;vertical-align:top}\
th{background:#f4f4f4;font-weight:600}td.num{text-align:right;white-space:nowrap;font-variant-numeric:tabular-nums}\
.ok{color:#176d2c}.bad{color:#b00020;font-weight:600}.busy{color:#8a5a00}\
footer{margin-top:2em;color:#777}code{background:#f4f4f4;padding:0 .2em}";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_and_traffic_reads_the_routes() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        let routes: Vec<Value> = serde_json::from_str(
            r#"[{"served_entity_name": "a", "traffic_percentage": 90},
                {"served_entity_name": "b", "traffic_percentage": 10},
                {"served_entity_name": "s", "shadow": true, "shadow_percentage": 25}]"#,
        )
        .unwrap();
        assert_eq!(traffic(&routes, "a"), "90 %");
        assert_eq!(traffic(&routes, "s"), "shadow 25 %");
        assert_eq!(traffic(&routes, "z"), "—");
        assert_eq!(millis(Some(0.0012)), "1.20 ms");
        assert_eq!(millis(None), "—");
    }
}
