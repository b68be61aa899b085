//! The run's report: `report.json` (everything, for tools) and `report.md` (for people).

use std::fmt::Write;
use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;
use serde_json::Value;

use crate::summary::{Latency, LoadSummary};

/// One of the scenario's own checks.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: String,
    pub passed: bool,
    pub detail: String,
}

impl Check {
    pub fn new(name: &str, passed: bool, detail: impl Into<String>) -> Check {
        Check {
            name: name.to_owned(),
            passed,
            detail: detail.into(),
        }
    }

    /// No request failed (any status other than 2xx, or no response).
    pub fn no_failures(load: &LoadSummary) -> Check {
        Check::new(
            "no failed request",
            load.failed == 0 && load.requests > 0,
            format!("{} of {} requests failed", load.failed, load.requests),
        )
    }
}

/// What a scenario returns.
#[derive(Default)]
pub struct Outcome {
    pub load: Option<LoadSummary>,
    pub checks: Vec<Check>,
    /// Scenario figures for the JSON report.
    pub details: Value,
    /// The same for people: a markdown section.
    pub details_md: String,
}

#[derive(Debug, Serialize)]
pub struct TargetInfo {
    pub url: String,
    pub started_gateway: bool,
    pub gateway_bin: Option<String>,
    pub ort_dylib: Option<String>,
    /// How the started gateway ended.
    pub gateway_exit: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub scenario: String,
    pub started_at: String,
    pub finished_at: String,
    /// Every check passed and the run completed.
    pub passed: bool,
    /// Why the run stopped early, if it did.
    pub error: Option<String>,
    pub target: TargetInfo,
    pub settings: Value,
    pub load: Option<LoadSummary>,
    pub checks: Vec<Check>,
    pub details: Value,
    /// Goose's own reports (HTML, JSON, markdown), relative to the report dir.
    pub goose_reports: Vec<String>,
}

/// Writes report.json and report.md into `dir`.
pub fn write(dir: &Path, report: &Report, details_md: &str) -> Result<()> {
    let json = serde_json::to_string_pretty(report).context("serialising the report")?;
    std::fs::write(dir.join("report.json"), json + "\n").context("writing report.json")?;
    std::fs::write(dir.join("report.md"), markdown(report, details_md))
        .context("writing report.md")?;
    Ok(())
}

pub fn markdown(r: &Report, details_md: &str) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# modelgate load test: {}\n", r.scenario);
    let verdict = match (&r.error, r.passed) {
        (Some(_), _) => "**ERROR**",
        (None, true) => "**PASSED**",
        (None, false) => "**FAILED**",
    };
    let _ = writeln!(
        md,
        "{verdict}: started {}, finished {}.\n",
        r.started_at, r.finished_at
    );
    if let Some(e) = &r.error {
        let _ = writeln!(md, "```\n{e}\n```\n");
    }
    md.push_str("| | |\n| --- | --- |\n");
    let started = match &r.target.gateway_bin {
        Some(bin) => format!(
            "started from `{bin}`, ONNX Runtime {}",
            if r.target.ort_dylib.is_some() {
                "on"
            } else {
                "off (tract)"
            }
        ),
        None => "given with --url".to_owned(),
    };
    let _ = writeln!(md, "| target | {} ({started}) |", r.target.url);
    if let Some(exit) = &r.target.gateway_exit {
        let _ = writeln!(md, "| gateway | {exit} |");
    }
    let _ = writeln!(md, "| settings | {} |\n", settings_line(&r.settings));
    if let Some(load) = &r.load {
        md.push_str(&load_markdown(load));
    }
    if !r.checks.is_empty() {
        md.push_str("## Checks\n\n| check | result | detail |\n| --- | --- | --- |\n");
        for c in &r.checks {
            let _ = writeln!(
                md,
                "| {} | {} | {} |",
                cell(&c.name),
                if c.passed { "pass" } else { "**FAIL**" },
                cell(&c.detail)
            );
        }
        md.push('\n');
    }
    if !details_md.is_empty() {
        md.push_str(details_md);
        if !details_md.ends_with('\n') {
            md.push('\n');
        }
        md.push('\n');
    }
    md.push_str("## Files\n\n- `report.json`: everything above, and the per-second timeline\n");
    if r.target.gateway_bin.is_some() {
        md.push_str(
            "- `gateway.log`, `gateway-config.yaml`: the started gateway's stderr and config\n",
        );
    }
    for g in &r.goose_reports {
        let _ = writeln!(md, "- `{g}`: goose's own report");
    }
    md
}

fn settings_line(settings: &Value) -> String {
    match settings.as_object() {
        Some(map) => map
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => format!("{k} {s}"),
                other => format!("{k} {other}"),
            })
            .collect::<Vec<_>>()
            .join(", "),
        None => settings.to_string(),
    }
}

/// The load section: throughput, latency, statuses, served models, formats, errors.
pub fn load_markdown(l: &LoadSummary) -> String {
    let mut md = String::new();
    md.push_str("## Load\n\n| requests | failed | error rate | rows | elapsed | throughput | rows/s |\n| ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
    let _ = writeln!(
        md,
        "| {} | {} | {:.2} % | {} | {:.1} s | {:.1} req/s | {:.1} |\n",
        l.requests,
        l.failed,
        l.error_rate * 100.0,
        l.rows,
        l.elapsed_s,
        l.throughput_rps,
        l.rows_per_s
    );
    if l.late_answers > 0 {
        let _ = writeln!(
            md,
            "{} answers arrived after the planned duration: counted, but not in the throughput.\n",
            l.late_answers
        );
    }
    md.push_str("### Latency (ms)\n\n");
    md.push_str(&latency_table(&[
        ("corrected for coordinated omission", &l.latency),
        ("as measured", &l.latency_measured),
    ]));
    let co = &l.coordinated_omission;
    let _ = writeln!(
        md,
        "\nCoordinated-omission mitigation `{}`: goose added {} synthetic requests ({:.2} % of all), {} stall events.\n",
        co.mitigation, co.synthetic_requests, co.synthetic_percent, co.events
    );
    md.push_str("### Answers by status\n\n| status | answers |\n| --- | ---: |\n");
    for (status, n) in &l.statuses {
        let _ = writeln!(md, "| {status} | {n} |");
    }
    md.push('\n');
    if !l.served.is_empty() {
        let total: u64 = l.served.values().sum();
        md.push_str("### Answers by served model\n\n| served-model-name (version) | answers | share |\n| --- | ---: | ---: |\n");
        for (name, n) in &l.served {
            let _ = writeln!(
                md,
                "| {} | {n} | {:.1} % |",
                cell(name),
                *n as f64 * 100.0 / total as f64
            );
        }
        md.push('\n');
    }
    if !l.by_format.is_empty() {
        md.push_str("### By request format (ms, corrected)\n\n| format | requests | failed | p50 | p90 | p99 | p99.9 | max |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
        for f in &l.by_format {
            let t = &f.latency;
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                f.name,
                f.requests,
                f.failed,
                ms(t.p50_ms),
                ms(t.p90_ms),
                ms(t.p99_ms),
                ms(t.p99_9_ms),
                ms(t.max_ms)
            );
        }
        md.push('\n');
    }
    if !l.errors.is_empty() {
        md.push_str("### Errors\n\n| answers | error |\n| ---: | --- |\n");
        for (e, n) in &l.errors {
            let _ = writeln!(md, "| {n} | {} |", cell(e));
        }
        md.push('\n');
    }
    md
}

pub fn latency_table(rows: &[(&str, &Latency)]) -> String {
    let mut md = String::from(
        "| | count | mean | p50 | p90 | p99 | p99.9 | max |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    for (label, t) in rows {
        let _ = writeln!(
            md,
            "| {label} | {} | {} | {} | {} | {} | {} | {} |",
            t.count,
            ms(t.mean_ms),
            ms(t.p50_ms),
            ms(t.p90_ms),
            ms(t.p99_ms),
            ms(t.p99_9_ms),
            ms(t.max_ms)
        );
    }
    md
}

/// Milliseconds with three significant decimals below 10 ms.
pub fn ms(v: f64) -> String {
    if v < 10.0 {
        format!("{v:.3}")
    } else if v < 100.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.1}")
    }
}

/// Text safe in a table cell.
pub fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_has_the_sections() {
        let report = Report {
            scenario: "steady".into(),
            started_at: "a".into(),
            finished_at: "b".into(),
            passed: false,
            error: None,
            target: TargetInfo {
                url: "http://127.0.0.1:1".into(),
                started_gateway: false,
                gateway_bin: None,
                ort_dylib: None,
                gateway_exit: None,
            },
            settings: serde_json::json!({"rate": 5, "formats": "csv"}),
            load: None,
            checks: vec![Check::new("x | y", false, "1\n2")],
            details: Value::Null,
            goose_reports: vec!["goose/goose-report.html".into()],
        };
        let md = markdown(&report, "## Details\n");
        assert!(md.contains("**FAILED**"));
        assert!(md.contains("| x \\| y | **FAIL** | 1 2 |"));
        assert!(md.contains("rate 5, formats csv") || md.contains("formats csv, rate 5"));
        assert!(md.contains("## Details\n"));
        assert!(md.contains("`goose/goose-report.html`"));
    }

    #[test]
    fn milliseconds() {
        assert_eq!(ms(0.1234), "0.123");
        assert_eq!(ms(12.345), "12.35");
        assert_eq!(ms(123.45), "123.5");
    }
}
