//! The alerting rules and the Grafana dashboard against real tools (Debian's `prometheus`
//! package, through `MODELGATE_PROMETHEUS` or scripts/prometheus.sh): promtool checks and
//! unit-tests deploy/prometheus/rules.yml and lints the gateway's `/metrics`; a real Prometheus
//! on a free loopback port scrapes a gateway with the rules loaded and is queried back; the
//! rules' and the dashboard's expressions name only metric families and labels the gateway
//! defines (the registry's descriptors, `Metrics::families`).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

const RULES: &str = "deploy/prometheus/rules.yml";
const RULE_TESTS: &str = "deploy/prometheus/rules.test.yml";
const DASHBOARD: &str = "deploy/grafana/modelgate.json";

/// The alert groups of rules.yml, and its recording group.
const GROUPS: [&str; 4] = [
    "modelgate-recording",
    "modelgate-requests",
    "modelgate-models",
    "modelgate-data",
];

fn prometheus_binary() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        common::path_from_env_or_script("MODELGATE_PROMETHEUS", "scripts/prometheus.sh")
    })
    .clone()
}

/// promtool comes with prometheus, in the same folder.
fn promtool() -> PathBuf {
    prometheus_binary().with_file_name("promtool")
}

/// Runs promtool from the repository root; its stdout and stderr, or a panic with both.
fn promtool_run(args: &[&str], stdin: Option<&[u8]>) -> String {
    let mut child = Command::new(promtool())
        .args(args)
        .current_dir(common::repo())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running {}: {e}", promtool().display()));
    {
        let mut input = child.stdin.take().unwrap();
        if let Some(bytes) = stdin {
            input.write_all(bytes).unwrap();
        }
    }
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "promtool {} failed ({}):\n{text}",
        args.join(" "),
        out.status
    );
    text
}

#[test]
fn the_rules_pass_promtool_check_and_their_unit_tests() {
    let out = promtool_run(&["check", "rules", RULES], None);
    assert!(out.contains("SUCCESS"), "{out}");
    let out = promtool_run(&["test", "rules", RULE_TESTS], None);
    assert!(out.contains("SUCCESS"), "{out}");
}

// ------------------------------------------------------------------ what the gateway defines

struct Family {
    labels: Vec<String>,
    histogram: bool,
}

/// The metric families the gateway registers, with their labels: the registry's own
/// descriptors (`Metrics::families`), not the source text.
fn families() -> BTreeMap<String, Family> {
    let metrics = modelgate::metrics::Metrics::new();
    let out: BTreeMap<String, Family> = metrics
        .families()
        .iter()
        .map(|f| {
            let family = Family {
                labels: f.labels.clone(),
                histogram: f.kind == prometheus::proto::MetricType::HISTOGRAM,
            };
            (f.name.clone(), family)
        })
        .collect();
    assert!(
        out.len() >= 30
            && out.contains_key("modelgate_quality")
            && out.values().any(|f| f.histogram),
        "the registry's families: {:?}",
        out.keys().collect::<Vec<_>>()
    );
    out
}

/// Every series name a query may use, with the labels it carries (beyond job and instance).
struct Names {
    series: BTreeMap<String, BTreeSet<String>>,
}

impl Names {
    fn new(families: &BTreeMap<String, Family>) -> Names {
        let mut series = BTreeMap::new();
        for (name, f) in families {
            let labels: BTreeSet<String> = f.labels.iter().cloned().collect();
            if f.histogram {
                let mut with_le = labels.clone();
                with_le.insert("le".to_owned());
                series.insert(format!("{name}_bucket"), with_le);
                series.insert(format!("{name}_sum"), labels.clone());
                series.insert(format!("{name}_count"), labels);
            } else {
                series.insert(name.clone(), labels);
            }
        }
        Names { series }
    }

    fn all_labels(&self) -> BTreeSet<String> {
        self.series.values().flatten().cloned().collect()
    }

    /// A recording rule `level:metric:operations` carries the labels its level names
    /// (`endpoint_served_entity` = endpoint, served_entity).
    fn add_recording(&mut self, record: &str) -> BTreeSet<String> {
        let known = self.all_labels();
        let level = record.split(':').next().unwrap();
        let mut labels = BTreeSet::new();
        let mut current = String::new();
        for piece in level.split('_') {
            if !current.is_empty() {
                current.push('_');
            }
            current.push_str(piece);
            if known.contains(&current) {
                labels.insert(std::mem::take(&mut current));
            }
        }
        assert!(
            current.is_empty(),
            "recording rule {record}: its level names labels no family has"
        );
        self.series.insert(record.to_owned(), labels.clone());
        labels
    }
}

// ------------------------------------------------------------------ reading PromQL

#[derive(Debug, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Op(String),
    Punct(char),
    Other,
}

fn tokens(expr: &str) -> Vec<Tok> {
    let chars: Vec<char> = expr.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '"' || c == '\'' {
            let mut s = String::new();
            i += 1;
            while i < chars.len() && chars[i] != c {
                if chars[i] == '\\' {
                    i += 1;
                }
                s.push(chars[i]);
                i += 1;
            }
            i += 1;
            out.push(Tok::Str(s));
        } else if c == '$' {
            // A Grafana variable: $name or ${name}.
            i += 1;
            if i < chars.len() && chars[i] == '{' {
                while i < chars.len() && chars[i] != '}' {
                    i += 1;
                }
                i += 1;
            } else {
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
            }
            out.push(Tok::Other);
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
            {
                i += 1;
            }
            out.push(Tok::Ident(chars[start..i].iter().collect()));
        } else if c.is_ascii_digit() || c == '.' {
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
            out.push(Tok::Other);
        } else {
            let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
            if ["=~", "!~", "!=", "==", ">=", "<="].contains(&two.as_str()) {
                out.push(Tok::Op(two));
                i += 2;
            } else if c == '=' {
                out.push(Tok::Op("=".to_owned()));
                i += 1;
            } else {
                out.push(Tok::Punct(c));
                i += 1;
            }
        }
    }
    out
}

/// What an expression refers to: series names with the label names matched on each, and the
/// labels it groups or matches by.
#[derive(Default, Debug)]
struct Refs {
    series: Vec<(String, Vec<String>)>,
    grouping: Vec<String>,
}

/// Operators and aggregations (`sum by (...) (...)` has no parenthesis after `sum`).
const KEYWORDS: [&str; 18] = [
    "and", "or", "unless", "offset", "bool", "inf", "nan", "sum", "min", "max", "avg", "count",
    "group", "stddev", "stdvar", "topk", "bottomk", "quantile",
];
const GROUPING: [&str; 6] = [
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

fn refs(expr: &str) -> Refs {
    let toks = tokens(expr);
    let mut r = Refs::default();
    let mut i = 0;
    while i < toks.len() {
        match &toks[i] {
            Tok::Ident(id) if GROUPING.contains(&id.as_str()) => {
                i += 1;
                if toks.get(i) == Some(&Tok::Punct('(')) {
                    while i < toks.len() && toks[i] != Tok::Punct(')') {
                        if let Tok::Ident(l) = &toks[i] {
                            r.grouping.push(l.clone());
                        }
                        i += 1;
                    }
                }
                i += 1;
            }
            Tok::Ident(id)
                if KEYWORDS.contains(&id.to_lowercase().as_str())
                    || toks.get(i + 1) == Some(&Tok::Punct('(')) =>
            {
                i += 1;
            }
            Tok::Ident(_) | Tok::Punct('{') => {
                let name = match &toks[i] {
                    Tok::Ident(id) => {
                        i += 1;
                        Some(id.clone())
                    }
                    _ => None,
                };
                let mut matched = Vec::new();
                let mut names_from_matcher = Vec::new();
                if toks.get(i) == Some(&Tok::Punct('{')) {
                    i += 1;
                    while i < toks.len() && toks[i] != Tok::Punct('}') {
                        if let (Some(Tok::Ident(l)), Some(Tok::Op(_)), Some(Tok::Str(v))) =
                            (toks.get(i), toks.get(i + 1), toks.get(i + 2))
                        {
                            if l == "__name__" {
                                names_from_matcher.extend(v.split('|').map(str::to_owned));
                            } else {
                                matched.push(l.clone());
                            }
                            i += 3;
                        } else {
                            i += 1;
                        }
                    }
                    i += 1;
                }
                for n in name.into_iter().chain(names_from_matcher) {
                    r.series.push((n, matched.clone()));
                }
            }
            _ => i += 1,
        }
    }
    r
}

/// Checks one expression against the names: problems, one a line.
fn check_expr(names: &Names, expr: &str, legend: &str, extra_series: &[&str]) -> Vec<String> {
    let r = refs(expr);
    let mut problems = Vec::new();
    let mut available: BTreeSet<String> = ["job", "instance"].map(str::to_owned).into();
    for (series, matched) in &r.series {
        if extra_series.contains(&series.as_str()) {
            continue;
        }
        let Some(labels) = names.series.get(series) else {
            problems.push(format!("`{series}` is no metric of the gateway in: {expr}"));
            continue;
        };
        available.extend(labels.iter().cloned());
        for l in matched {
            if !labels.contains(l) && l != "job" && l != "instance" {
                problems.push(format!("`{series}` has no label `{l}` in: {expr}"));
            }
        }
    }
    if r.series.is_empty() {
        problems.push(format!("no metric in: {expr}"));
    }
    let legend_labels = legend
        .split("{{")
        .skip(1)
        .filter_map(|s| s.split("}}").next())
        .map(|s| s.trim().to_owned());
    for l in r.grouping.iter().cloned().chain(legend_labels) {
        if !available.contains(&l) {
            problems.push(format!("label `{l}` is on none of its series in: {expr}"));
        }
    }
    problems
}

// ------------------------------------------------------------------ the files

fn rules() -> serde_yaml::Value {
    let text = std::fs::read_to_string(common::repo().join(RULES)).unwrap();
    serde_yaml::from_str(&text).unwrap()
}

fn dashboard() -> Value {
    let text = std::fs::read_to_string(common::repo().join(DASHBOARD)).unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{DASHBOARD} is not JSON: {e}"))
}

/// Every (expression, legend) of the dashboard's panels, with the panel's title.
fn dashboard_targets(d: &Value) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    let mut panels: Vec<&Value> = d["panels"].as_array().unwrap().iter().collect();
    while let Some(p) = panels.pop() {
        if let Some(inner) = p["panels"].as_array() {
            panels.extend(inner);
        }
        for t in p["targets"].as_array().into_iter().flatten() {
            out.push((
                p["title"].as_str().unwrap().to_owned(),
                t["expr"].as_str().unwrap().to_owned(),
                t["legendFormat"].as_str().unwrap_or("").to_owned(),
            ));
        }
    }
    out
}

/// The dashboard's template variable queries `label_values(selector, label)`.
fn variable_queries(d: &Value) -> Vec<(String, String, String)> {
    d["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["type"] == "query")
        .map(|v| {
            let q = v["query"].as_str().unwrap();
            let inner = q
                .strip_prefix("label_values(")
                .and_then(|s| s.strip_suffix(')'))
                .unwrap_or_else(|| panic!("variable query {q} is not label_values(...)"));
            let (selector, label) = inner.rsplit_once(',').unwrap();
            (
                v["name"].as_str().unwrap().to_owned(),
                selector.trim().to_owned(),
                label.trim().to_owned(),
            )
        })
        .collect()
}

/// Names with the recording rules of rules.yml added; checks each recording rule's labels.
fn names_with_recordings() -> Names {
    let mut names = Names::new(&families());
    for group in rules()["groups"].as_sequence().unwrap() {
        for rule in group["rules"].as_sequence().unwrap() {
            if let Some(record) = rule["record"].as_str() {
                let expr = rule["expr"].as_str().unwrap();
                let labels = names.add_recording(record);
                let grouped: BTreeSet<String> = refs(expr).grouping.into_iter().collect();
                assert!(
                    labels.is_subset(&grouped),
                    "{record}: its name promises {labels:?}, it keeps {grouped:?}"
                );
            }
        }
    }
    names
}

#[test]
fn the_rules_and_the_dashboard_name_only_what_the_gateway_exports() {
    let names = names_with_recordings();
    let mut problems = Vec::new();

    // Alerts: every one with `for`, a severity and the three annotations.
    let mut alerts = 0;
    for group in rules()["groups"].as_sequence().unwrap() {
        let group_name = group["name"].as_str().unwrap();
        assert!(GROUPS.contains(&group_name), "unknown group {group_name}");
        for rule in group["rules"].as_sequence().unwrap() {
            let expr = rule["expr"].as_str().unwrap();
            // `up` is Prometheus' own series for each target.
            problems.extend(check_expr(&names, expr, "", &["up"]));
            let Some(alert) = rule["alert"].as_str() else {
                continue;
            };
            alerts += 1;
            assert!(rule["for"].as_str().is_some(), "{alert}: no `for`");
            let severity = rule["labels"]["severity"].as_str().unwrap_or("");
            assert!(
                ["critical", "warning", "info"].contains(&severity),
                "{alert}: severity {severity:?}"
            );
            let a = &rule["annotations"];
            assert!(
                a["summary"].as_str().is_some_and(|s| !s.is_empty()),
                "{alert}: summary"
            );
            assert!(
                a["description"].as_str().is_some_and(|s| !s.is_empty()),
                "{alert}: description"
            );
            assert!(
                a["runbook"]
                    .as_str()
                    .is_some_and(|s| s.starts_with("docs/operations.md#")),
                "{alert}: runbook"
            );
            // Labels named in the annotations exist on the alert's series.
            let text = format!(
                "{}{}",
                a["summary"].as_str().unwrap(),
                a["description"].as_str().unwrap()
            );
            let r = refs(expr);
            let mut available: BTreeSet<String> = ["job", "instance"].map(str::to_owned).into();
            for (series, _) in &r.series {
                available.extend(names.series.get(series).into_iter().flatten().cloned());
            }
            for part in text.split("$labels.").skip(1) {
                let l: String = part
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !available.contains(&l) {
                    problems.push(format!(
                        "{alert}: annotation label `{l}` is not on its series"
                    ));
                }
            }
        }
    }
    assert!(alerts >= 10, "only {alerts} alerts in {RULES}");

    // Dashboard: shape, then every expression.
    let d = dashboard();
    assert!(
        d["schemaVersion"].as_u64().is_some_and(|v| v >= 36),
        "schemaVersion"
    );
    let vars: BTreeMap<&str, &Value> = d["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["name"].as_str().unwrap(), v))
        .collect();
    assert_eq!(vars["datasource"]["type"], "datasource");
    assert_eq!(vars["datasource"]["query"], "prometheus");
    for v in ["endpoint", "served_entity"] {
        assert_eq!(vars[v]["type"], "query", "variable {v}");
    }
    let mut ids = BTreeSet::new();
    for p in d["panels"].as_array().unwrap() {
        let id = p["id"].as_u64().unwrap();
        assert!(ids.insert(id), "panel id {id} twice");
        assert!(p["gridPos"]["w"].as_u64().is_some(), "panel {id}: gridPos");
        if p["type"] != "row" {
            assert_eq!(
                p["datasource"]["uid"], "${datasource}",
                "panel {id}: datasource"
            );
            for t in p["targets"].as_array().unwrap() {
                assert_eq!(
                    t["datasource"]["uid"], "${datasource}",
                    "panel {id}: target datasource"
                );
            }
        }
    }
    let targets = dashboard_targets(&d);
    assert!(targets.len() >= 30, "only {} queries", targets.len());
    for (title, expr, legend) in &targets {
        problems.extend(
            check_expr(&names, expr, legend, &[])
                .into_iter()
                .map(|p| format!("panel {title:?}: {p}")),
        );
    }
    for (name, selector, label) in variable_queries(&d) {
        problems.extend(
            check_expr(&names, &selector, &format!("{{{{{label}}}}}"), &[])
                .into_iter()
                .map(|p| format!("variable {name}: {p}")),
        );
    }
    // Every family the gateway defines is on the dashboard.
    let used: BTreeSet<String> = targets
        .iter()
        .flat_map(|(_, e, _)| refs(e).series.into_iter().map(|(s, _)| s))
        .collect();
    for (name, f) in families() {
        let shown = if f.histogram {
            ["_bucket", "_sum", "_count"]
                .iter()
                .any(|s| used.contains(&format!("{name}{s}")))
        } else {
            used.contains(&name)
        };
        if !shown {
            problems.push(format!("{name} is on no panel of {DASHBOARD}: add one"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

// ------------------------------------------------------------------ a real Prometheus

/// A `prometheus` on a free loopback port with its own storage; killed when dropped.
struct Prometheus {
    child: Child,
    base: String,
    dir: tempfile::TempDir,
}

impl Prometheus {
    /// Scrapes `target` (host:port) every second and evaluates rules.yml every second.
    fn start(target: &str) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
                 rule_files:\n  - {}\n\
                 scrape_configs:\n  - job_name: modelgate\n    static_configs:\n      - targets: ['{target}']\n",
                common::repo().join(RULES).display()
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let mut child = Command::new(prometheus_binary())
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            // Port 0: it binds a port of its own and says which in its log.
            .arg("--web.listen-address=127.0.0.1:0")
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", prometheus_binary().display()));
        let log_path = dir.path().join("prometheus.log");
        let port = common::wait_for(
            "Prometheus to say its port",
            Duration::from_secs(60),
            || {
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("prometheus exited ({status}):\n{log}");
                }
                listening_port(&log)
            },
        );
        let mut p = Prometheus {
            child,
            base: format!("http://127.0.0.1:{port}"),
            dir,
        };
        let client = common::client();
        let ready = p.base.clone() + "/-/ready";
        p.wait_for("Prometheus to be ready", Duration::from_secs(60), |p| {
            if let Ok(Some(status)) = p.child.try_wait() {
                panic!("prometheus exited ({status}):\n{}", p.log());
            }
            let r = client.get(&ready).send().ok()?;
            (r.status().as_u16() == 200).then_some(())
        });
        p
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }
}

/// The port in Prometheus's `msg="Listening on" address=127.0.0.1:PORT` line.
fn listening_port(log: &str) -> Option<u16> {
    let line = log.lines().find(|l| l.contains("msg=\"Listening on\""))?;
    let digits = line.split("address=127.0.0.1:").nth(1)?;
    let digits: String = digits.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok().filter(|&port| port != 0)
}

impl Prometheus {
    /// Polls `f` every 200 ms up to `limit`; panics with the log when it never answers.
    fn wait_for<T>(
        &mut self,
        what: &str,
        limit: Duration,
        mut f: impl FnMut(&mut Self) -> Option<T>,
    ) -> T {
        let start = Instant::now();
        loop {
            if let Some(v) = f(self) {
                return v;
            }
            if start.elapsed() > limit {
                panic!(
                    "waited {limit:?} for {what}; prometheus log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// `GET /api/v1/{path}` (query string already encoded): its `data`, or a panic.
    fn api(&self, path_and_query: &str) -> Value {
        let url = format!("{}/api/v1/{path_and_query}", self.base);
        let r = common::client().get(&url).send().unwrap();
        let status = r.status().as_u16();
        let body: Value = r.json().unwrap_or(Value::Null);
        assert!(
            status == 200 && body["status"] == "success",
            "{url}: {status} {body}"
        );
        body["data"].clone()
    }

    /// An instant query's result vector.
    fn query(&self, promql: &str) -> Vec<Value> {
        let data = self.api(&format!("query?query={}", encode(promql)));
        data["result"].as_array().cloned().unwrap_or_default()
    }

    /// The value of a query that answers one series, if it does.
    fn value(&self, promql: &str) -> Option<f64> {
        let result = self.query(promql);
        let v = result.first()?;
        v["value"][1].as_str()?.parse().ok()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Percent-encoding of a query parameter.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A dashboard expression as Grafana sends it, for one endpoint and every other value.
fn substitute(expr: &str) -> String {
    expr.replace("$__rate_interval", "1m")
        .replace("$endpoint", "tx")
        .replace("$served_entity", ".*")
        .replace("$window", ".*")
}

#[test]
fn prometheus_scrapes_the_gateway_and_evaluates_the_rules() {
    let gw = common::start(
        &common::demo_config(&common::endpoint("tx", "1", "tract"), ""),
        false,
    );
    let body: Value = serde_json::from_str(
        &std::fs::read_to_string(
            common::demo_registry().join("transactions/1/serving_input_example.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let rows_per_request = body["dataframe_split"]["data"].as_array().unwrap().len();
    const REQUESTS: usize = 7;
    for _ in 0..REQUESTS {
        let r = gw.invoke("tx", &body);
        assert_eq!(r.status, 200, "{}", r.text);
    }
    let bad = gw.post(
        "/serving-endpoints/tx/invocations",
        "application/json",
        "{bad",
    );
    assert_eq!(bad.status, 400, "{}", bad.text);

    // The exposition passes promtool's linter.
    let exposition = gw.get("/metrics");
    assert_eq!(exposition.status, 200);
    let lint = promtool_run(&["check", "metrics"], Some(exposition.text.as_bytes()));
    assert!(
        lint.trim().is_empty(),
        "promtool check metrics complains about the gateway's /metrics:\n{lint}"
    );
    // Every family the gateway shows is one the static check knows.
    let families = families();
    for line in exposition.text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let name = rest.split(' ').next().unwrap();
            assert!(
                families.contains_key(name),
                "{name} is exported but is not one of the registry's families"
            );
        }
    }

    let target = gw.base.trim_start_matches("http://").to_owned();
    let mut prom = Prometheus::start(&target);
    let wait = Duration::from_secs(60);

    prom.wait_for("the gateway's target to be up", wait, |p| {
        (p.value("up{job=\"modelgate\"}") == Some(1.0)).then_some(())
    });
    let sent = REQUESTS as f64;
    prom.wait_for("the requests sent to show", wait, |p| {
        let v = p.value("sum(modelgate_requests_total{endpoint=\"tx\", status_class=\"2xx\"})");
        (v == Some(sent)).then_some(())
    });
    assert_eq!(
        prom.value("modelgate_request_errors_total{endpoint=\"tx\", error_code=\"BAD_REQUEST\"}"),
        Some(1.0)
    );
    // Monitoring's gauges: the since-load drift window counts every scored row.
    let rows = (REQUESTS * rows_per_request) as f64;
    assert_eq!(
        prom.value(
            "modelgate_drift_window_values{endpoint=\"tx\", feature=\"Amount\", kind=\"count\", window=\"total\"}"
        ),
        Some(rows)
    );
    assert_eq!(
        prom.value("modelgate_quality{endpoint=\"tx\", metric=\"labels\", window=\"total\"}"),
        Some(0.0)
    );
    assert_eq!(prom.value("modelgate_inference_queue_depth"), Some(0.0));
    assert_eq!(
        prom.value("modelgate_served_model_info{endpoint=\"tx\", version=\"1\", engine=\"tract\"}"),
        Some(1.0)
    );

    // The rules are loaded, and every one evaluates without error on the gateway's series.
    let groups = prom.wait_for("every rule to be evaluated cleanly", wait, |p| {
        let data = p.api("rules");
        let groups = data["groups"].as_array().cloned().unwrap_or_default();
        let names: BTreeSet<String> = groups
            .iter()
            .map(|g| g["name"].as_str().unwrap().to_owned())
            .collect();
        let expected: BTreeSet<String> = GROUPS.iter().map(|s| s.to_string()).collect();
        assert_eq!(names, expected, "rule groups");
        let rules: Vec<&Value> = groups
            .iter()
            .flat_map(|g| g["rules"].as_array().unwrap())
            .collect();
        for r in &rules {
            assert_ne!(
                r["health"], "err",
                "rule {} fails: {}",
                r["name"], r["lastError"]
            );
        }
        rules.iter().all(|r| r["health"] == "ok").then_some(groups)
    });
    let alerting = groups
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
        .filter(|r| r["type"] == "alerting")
        .count();
    assert!(alerting >= 10, "{alerting} alerting rules loaded");
    prom.wait_for("a recorded request rate", wait, |p| {
        p.value("endpoint:modelgate_requests:rate5m{endpoint=\"tx\"}")
    });
    // A healthy gateway sets nothing off.
    let alerts = prom.api("alerts");
    let firing: Vec<&Value> = alerts["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["state"] == "firing")
        .collect();
    assert!(firing.is_empty(), "alerts firing: {firing:?}");

    // Every dashboard query is valid PromQL for this Prometheus, and the variables find tx.
    let d = dashboard();
    for (title, expr, _) in dashboard_targets(&d) {
        let q = substitute(&expr);
        let url = format!("{}/api/v1/query?query={}", prom.base, encode(&q));
        let body: Value = common::client().get(&url).send().unwrap().json().unwrap();
        assert_eq!(body["status"], "success", "panel {title:?}: {q}: {body}");
    }
    for (name, selector, label) in variable_queries(&d) {
        let values = prom.api(&format!(
            "label/{label}/values?match%5B%5D={}",
            encode(&substitute(&selector))
        ));
        let values: Vec<&str> = values
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        let expected = match name.as_str() {
            "endpoint" => "tx",
            "served_entity" => "transactions-1",
            _ => "total",
        };
        assert!(
            values.contains(&expected),
            "variable {name}: {values:?} lacks {expected}"
        );
    }
    drop(prom);
}
