//! Traffic between served entities over real HTTP: weighted split, sticky keys, per-row split,
//! pinning, shadow copies, fallback, and the control plane (validation, 409, restart).

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const COLUMNS: [&str; 6] = [
    "Product",
    "Amount",
    "transactionCount",
    "isTimeout",
    "MaxProductAmount",
    "MaxDifferenceRatio",
];

/// Served entities `champion` (version 1) and `challenger` (version 2) with a split.
fn ab_entities(champion: i64, challenger: i64) -> Value {
    json!({
        "served_entities": [
            {"name": "champion", "entity_name": "transactions", "entity_version": "1"},
            {"name": "challenger", "entity_name": "transactions", "entity_version": "2"},
        ],
        "traffic_config": {"routes": [
            {"served_entity_name": "champion", "traffic_percentage": champion},
            {"served_entity_name": "challenger", "traffic_percentage": challenger},
        ]},
        "routing": {"key_column": "CustomerID"},
    })
}

const AB_YAML: &str = "  - name: ab
    served_entities:
      - {name: champion, entity_name: transactions, entity_version: '1'}
      - {name: challenger, entity_name: transactions, entity_version: '2'}
    traffic_config:
      routes:
        - {served_entity_name: champion, traffic_percentage: 90}
        - {served_entity_name: challenger, traffic_percentage: 10}
    routing: {key_column: CustomerID}
";

/// Fixture rows `rows` with a `CustomerID` column of `keys`.
fn keyed(rows: &[usize], keys: &[i64]) -> Value {
    let cases = cases(1);
    let data: Vec<Value> = rows
        .iter()
        .zip(keys)
        .map(|(&r, &k)| {
            let mut row = cases["data"][r % 64].as_array().unwrap().clone();
            row.push(json!(k));
            Value::Array(row)
        })
        .collect();
    let mut columns: Vec<Value> = COLUMNS.iter().map(|c| json!(c)).collect();
    columns.push(json!("CustomerID"));
    json!({"dataframe_split": {"columns": columns, "data": data}})
}

fn state(gw: &Gateway, name: &str) -> Value {
    gw.get(&format!("/api/2.0/serving-endpoints/{name}")).json()
}

/// Waits until the endpoint has no update in progress; returns its state.
fn settled(gw: &Gateway, name: &str) -> Value {
    let what = format!("endpoint {name} to finish updating");
    let _note = Waiting(&what);
    let mut s = Value::Null;
    eventually(Duration::from_secs(60), || {
        s = state(gw, name);
        s["state"]["config_update"] != "IN_PROGRESS"
    });
    s
}

fn arm_of_key(gw: &Gateway, endpoint: &str, key: i64) -> String {
    let r = gw.invoke(endpoint, &keyed(&[key as usize], &[key]));
    assert_eq!(r.status, 200, "{}", r.text);
    r.header("served-model-name").unwrap()
}

/// Says what was waited for when a wait in scope ends in a panic.
struct Waiting<'a>(&'a str);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("while waiting for {}", self.0);
        }
    }
}

fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let _note = Waiting(what);
    let mut value = None;
    eventually(Duration::from_secs(30), || {
        value = f();
        value.is_some()
    });
    value.unwrap_or_else(|| unreachable!("{what}"))
}

#[test]
fn ten_thousand_requests_split_ninety_ten_within_four_sigma() {
    let gw = start(&demo_config(AB_YAML, ""), true);
    let url = gw.url("/serving-endpoints/ab/invocations");
    // No key: each request draws its bucket at random.
    let body = one_row().to_string();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (url, body) = (url.clone(), body.clone());
            std::thread::spawn(move || {
                let client = client();
                let mut counts: HashMap<String, usize> = HashMap::new();
                for _ in 0..2500 {
                    let r = client
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(body.clone())
                        .send()
                        .unwrap();
                    assert_eq!(r.status(), 200);
                    let name = r.headers()["served-model-name"]
                        .to_str()
                        .unwrap()
                        .to_owned();
                    *counts.entry(name).or_default() += 1;
                }
                counts
            })
        })
        .collect();
    let mut counts: HashMap<String, usize> = HashMap::new();
    for t in threads {
        for (k, v) in t.join().unwrap() {
            *counts.entry(k).or_default() += v;
        }
    }
    let champion = counts["champion"] as f64;
    let sigma = (10_000.0f64 * 0.9 * 0.1).sqrt();
    assert_eq!(counts.len(), 2, "{counts:?}");
    assert!(
        (champion - 9000.0).abs() <= 4.0 * sigma,
        "champion answered {champion} of 10000 (expected 9000 +- {})",
        4.0 * sigma
    );
    // The arms' own series agree with what the responses said.
    for (arm, n) in &counts {
        let rows = gw
            .metric(&format!(
                "modelgate_predicted_rows_total{{endpoint=\"ab\",served_entity=\"{arm}\",shadow=\"false\"}}"
            ))
            .unwrap();
        assert_eq!(rows as usize, *n, "{arm}");
        let probabilities = gw
            .metric(&format!(
                "modelgate_predicted_probability_count{{endpoint=\"ab\",served_entity=\"{arm}\",shadow=\"false\"}}"
            ))
            .unwrap();
        assert_eq!(probabilities as usize, *n, "{arm}");
        let requests = gw
            .metric(&format!(
                "modelgate_requests_total{{endpoint=\"ab\",protocol=\"mlflow\",served_entity=\"{arm}\",status_class=\"2xx\"}}"
            ))
            .unwrap();
        assert_eq!(requests as usize, *n, "{arm}");
    }
}

#[test]
fn keys_stay_on_their_arm_and_a_split_change_moves_only_the_keys_it_must() {
    let gw = start(&demo_config(" []", ""), true);
    let created = gw.post_json(
        "/api/2.0/serving-endpoints",
        &json!({"name": "ab", "config": ab_entities(90, 10), "tags": [{"key": "team", "value": "fraud"}]}),
    );
    assert_eq!(created.status, 200, "{}", created.text);
    let s = settled(&gw, "ab");
    assert_eq!(s["state"]["ready"], "READY", "{s}");
    assert_eq!(s["state"]["config_update"], "NOT_UPDATING", "{s}");
    let listed = gw.get("/api/2.0/serving-endpoints").json();
    assert_eq!(listed["endpoints"][0]["name"], "ab");

    let keys: Vec<i64> = (1000..1400).collect();
    let before: Vec<String> = keys.iter().map(|&k| arm_of_key(&gw, "ab", k)).collect();
    // Asked again, every key answers from the same arm.
    for (k, arm) in keys.iter().zip(&before).step_by(7) {
        assert_eq!(&arm_of_key(&gw, "ab", *k), arm, "key {k}");
    }
    // The header carries the same key to the same arm, for requests without the column.
    for (k, arm) in keys.iter().zip(&before).take(40) {
        let r = gw.post_json_with(
            "/serving-endpoints/ab/invocations",
            &one_row(),
            &[("X-Routing-Key", &k.to_string())],
        );
        assert_eq!(&r.header("served-model-name").unwrap(), arm, "key {k}");
    }
    let on_challenger = before.iter().filter(|a| *a == "challenger").count();
    assert!((10..=80).contains(&on_challenger), "{on_challenger} of 400");

    // A batch whose rows have keys on both arms: split by row, answered in request order,
    // each row as its arm answers it alone.
    let mixed: Vec<usize> = (0..keys.len())
        .filter(|&i| before[i] == "challenger")
        .take(3)
        .chain((0..keys.len()).filter(|&i| before[i] == "champion").take(5))
        .collect();
    let batch_keys: Vec<i64> = mixed.iter().map(|&i| keys[i]).collect();
    let rows: Vec<usize> = (0..mixed.len()).collect();
    let r = gw.invoke("ab", &keyed(&rows, &batch_keys));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.header("served-model-name").as_deref(),
        Some("challenger, champion")
    );
    assert_eq!(r.header("served-model-version").as_deref(), Some("2, 1"));
    let batch = r.json()["predictions"].clone();
    for (i, (&row, &key)) in rows.iter().zip(&batch_keys).enumerate() {
        let alone = gw.invoke("ab", &keyed(&[row], &[key])).json()["predictions"][0].clone();
        // Same label; the probability within float32 noise of batching.
        assert_eq!(batch[i]["label"], alone["label"], "row {i}");
        let (p, q) = (
            batch[i]["probability"].as_f64().unwrap(),
            alone["probability"].as_f64().unwrap(),
        );
        assert!((p - q).abs() < 1e-5, "row {i}: {p} vs {q}");
    }
    assert!(
        gw.metric("modelgate_requests_total{endpoint=\"ab\",protocol=\"mlflow\",served_entity=\"_mixed\",status_class=\"2xx\"}")
            .is_some()
    );

    // 90/10 -> 80/20: only champion keys move, and only about a tenth of all keys.
    let r = gw.put_json("/api/2.0/serving-endpoints/ab/config", &ab_entities(80, 20));
    assert_eq!(r.status, 200, "{}", r.text);
    let s = settled(&gw, "ab");
    assert_eq!(s["config"]["config_version"], 2, "{s}");
    assert_eq!(
        s["config"]["traffic_config"]["routes"][1]["traffic_percentage"],
        20
    );
    let after: Vec<String> = keys.iter().map(|&k| arm_of_key(&gw, "ab", k)).collect();
    let mut moved = 0;
    for ((k, b), a) in keys.iter().zip(&before).zip(&after) {
        if b != a {
            assert_eq!(
                (b.as_str(), a.as_str()),
                ("champion", "challenger"),
                "key {k}"
            );
            moved += 1;
        }
    }
    // 400 keys, 10% of buckets move: 40 expected, 4 sigma = 24.
    assert!((16..=64).contains(&moved), "{moved} keys moved");

    // first_key: the same mixed batch goes whole to its first row's arm.
    let mut whole = ab_entities(80, 20);
    whole["routing"]["batch"] = json!("first_key");
    assert_eq!(
        gw.put_json("/api/2.0/serving-endpoints/ab/config", &whole)
            .status,
        200
    );
    let s = settled(&gw, "ab");
    assert_eq!(s["config"]["config_version"], 3, "{s}");
    let first_arm = &after[mixed[0]];
    let r = gw.invoke("ab", &keyed(&rows, &batch_keys));
    assert_eq!(r.header("served-model-name").as_ref(), Some(first_arm));

    assert_eq!(gw.delete("/api/2.0/serving-endpoints/ab").status, 200);
    assert_eq!(gw.invoke("ab", &one_row()).status, 404);
    assert_eq!(gw.get("/api/2.0/serving-endpoints/ab").status, 404);
}

#[test]
fn pinned_paths_bypass_the_routes() {
    let gw = start(&demo_config(AB_YAML, ""), true);
    for _ in 0..20 {
        let r = gw.post_json(
            "/serving-endpoints/ab/served-models/challenger/invocations",
            &one_row(),
        );
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.header("served-model-name").as_deref(), Some("challenger"));
    }
    let r = gw.post_json(
        "/serving-endpoints/ab/served-models/nobody/invocations",
        &one_row(),
    );
    assert!(
        r.mlflow_error(404).contains("no served entity 'nobody'"),
        "{}",
        r.text
    );

    let v2_body = json!({"inputs": [
        {"name": "Product", "shape": [1], "datatype": "BYTES", "data": ["Product A"]},
        {"name": "Amount", "shape": [1], "datatype": "FP64", "data": [132.75]},
        {"name": "transactionCount", "shape": [1], "datatype": "INT64", "data": [3]},
        {"name": "isTimeout", "shape": [1], "datatype": "BOOL", "data": [false]},
        {"name": "MaxProductAmount", "shape": [1], "datatype": "FP64", "data": [150.1]},
        {"name": "MaxDifferenceRatio", "shape": [1], "datatype": "FP64", "data": [0.12]},
    ]});
    for (path_version, version, arm) in [
        ("2", "2", "challenger"),
        ("challenger", "2", "challenger"),
        ("1", "1", "champion"),
    ] {
        let r = gw.post_json(
            &format!("/v2/models/ab/versions/{path_version}/infer"),
            &v2_body,
        );
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.json()["model_version"], version);
        assert_eq!(r.header("served-model-name").as_deref(), Some(arm));
    }
    let r = gw.post_json("/v2/models/ab/versions/7/infer", &v2_body);
    assert_eq!(r.status, 404, "{}", r.text);
    assert!(r.json()["error"]
        .as_str()
        .unwrap()
        .contains("version '7' is not served"));
    // A key column with no values routes as no key, and is then refused by name (no crash).
    let mut keyless = v2_body.clone();
    keyless["inputs"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "CustomerID", "shape": [1, 0], "datatype": "INT64", "data": []}));
    let r = gw.post_json("/v2/models/ab/infer", &keyless);
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(
        r.text.contains("'CustomerID' has shape [1, 0]"),
        "{}",
        r.text
    );
    let meta = gw.get("/v2/models/ab").json();
    assert_eq!(meta["versions"], json!(["1", "2"]));
}

#[test]
fn shadow_copies_never_change_the_answer_and_are_counted() {
    let endpoints = SHADOW_YAML.to_owned()
        + "  - name: half
    served_entities:
      - {name: champion, entity_name: transactions, entity_version: '1'}
      - {name: shadow, entity_name: transactions, entity_version: '2'}
    traffic_config:
      routes:
        - {served_entity_name: champion, traffic_percentage: 100}
        - {served_entity_name: shadow, shadow: true, shadow_percentage: 50}
  - name: plain
    served_entities:
      - {name: champion, entity_name: transactions, entity_version: '1'}
";
    let gw = start(&demo_config(&endpoints, ""), true);
    let n = 200;
    for i in 0..n {
        let body = split_body_from(i % 60, 1 + i % 5);
        let with_shadow = gw.invoke("sh", &body);
        let without = gw.invoke("plain", &body);
        assert_eq!(gw.invoke("half", &body).text, without.text);
        assert_eq!(with_shadow.status, 200, "{}", with_shadow.text);
        assert_eq!(with_shadow.text, without.text, "request {i}");
        assert_eq!(
            with_shadow.header("served-model-name").as_deref(),
            Some("champion")
        );
    }
    let label = |outcome: &str| {
        format!("modelgate_shadow_requests_total{{endpoint=\"sh\",outcome=\"{outcome}\",served_entity=\"shadow\"}}")
    };
    // Every request was copied once: scored, or dropped when the queue was full.
    let (ok, dropped) = wait_for("shadow copies to finish", || {
        let ok = gw.metric(&label("success")).unwrap_or(0.0);
        let dropped = gw.metric(&label("dropped")).unwrap_or(0.0);
        (ok + dropped == n as f64).then_some((ok, dropped))
    });
    assert!(ok > 0.0, "no copy was scored ({dropped} dropped)");
    assert_eq!(gw.metric(&label("error")), Some(0.0));
    let shadow_rows = gw
        .metric("modelgate_predicted_rows_total{endpoint=\"sh\",served_entity=\"shadow\",shadow=\"true\"}")
        .unwrap();
    assert!(shadow_rows >= ok, "{shadow_rows} rows for {ok} copies");
    // A 50% shadow copies about half: 100 expected of 200, 4 sigma = 28.
    let half = |outcome: &str| {
        gw.metric(&format!("modelgate_shadow_requests_total{{endpoint=\"half\",outcome=\"{outcome}\",served_entity=\"shadow\"}}"))
            .unwrap_or(0.0)
    };
    // Copies still running are not counted yet. Background work runs one job at a time
    // (two workers, one kept for requests) in the order it was queued: once a copy of `sh`
    // queued after all of them has been scored, every copy of `half` has finished.
    let scored = gw.metric(&label("success")).unwrap();
    let mut markers = 0;
    wait_for("a copy queued after the 50 % shadow's to be scored", || {
        assert_eq!(gw.invoke("sh", &one_row()).status, 200);
        markers += 1;
        wait_for("the marker copy to be counted", || {
            let ok = gw.metric(&label("success")).unwrap_or(0.0);
            let dropped = gw.metric(&label("dropped")).unwrap_or(0.0);
            (ok + dropped == (n + markers) as f64).then_some(())
        });
        (gw.metric(&label("success")).unwrap() > scored).then_some(())
    });
    let settled = half("success") + half("dropped") + half("error");
    assert!(
        (72.0..=128.0).contains(&settled),
        "{settled} of 200 requests copied at 50 %"
    );
    // Shadow answers are never counted as requests of the endpoint.
    assert!(gw
        .metric(
            "modelgate_requests_total{endpoint=\"sh\",protocol=\"mlflow\",served_entity=\"shadow\""
        )
        .is_none());
}

fn split_body_from(first: usize, n: usize) -> Value {
    let cases = cases(1);
    let rows: Vec<Value> = cases["data"].as_array().unwrap()[first..first + n].to_vec();
    json!({"dataframe_split": {"columns": cases["columns"], "data": rows}})
}

#[test]
fn a_full_shadow_queue_drops_copies_not_requests() {
    let gw = start(
        &demo_config(SHADOW_YAML, "  shadow_queue_capacity: 1\n"),
        true,
    );
    // Big batches from eight callers keep both workers busy with requests, which go first.
    let cases = cases(1);
    let rows: Vec<Value> = cases["data"]
        .as_array()
        .unwrap()
        .iter()
        .cycle()
        .take(2000)
        .cloned()
        .collect();
    let body = json!({"dataframe_split": {"columns": cases["columns"], "data": rows}}).to_string();
    let url = gw.url("/serving-endpoints/sh/invocations");
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let (url, body) = (url.clone(), body.clone());
            std::thread::spawn(move || {
                let client = client();
                for _ in 0..10 {
                    let r = client
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(body.clone())
                        .send()
                        .unwrap();
                    assert_eq!(r.status(), 200);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let label = |outcome: &str| {
        format!("modelgate_shadow_requests_total{{endpoint=\"sh\",outcome=\"{outcome}\",served_entity=\"shadow\"}}")
    };
    let (ok, dropped) = wait_for("shadow copies to finish", || {
        let ok = gw.metric(&label("success")).unwrap_or(0.0);
        let dropped = gw.metric(&label("dropped")).unwrap_or(0.0);
        (ok + dropped == 80.0).then_some((ok, dropped))
    });
    assert!(
        dropped > 0.0,
        "a one-slot queue under eight callers must drop ({ok} scored)"
    );
}

#[test]
fn an_arm_that_failed_to_load_falls_back_and_none_ready_is_503() {
    // Version 2 is a gradient-boosted model tract cannot load: that arm never loads.
    let endpoints = "  - name: ab
    served_entities:
      - {name: champion, entity_name: transactions, entity_version: '1', engine: tract}
      - {name: broken, entity_name: transactions, entity_version: '2', engine: tract}
    traffic_config:
      routes:
        - {served_entity_name: champion, traffic_percentage: 50}
        - {served_entity_name: broken, traffic_percentage: 50}
";
    let gw = start(&demo_config(endpoints, ""), false);
    for _ in 0..60 {
        let r = gw.invoke("ab", &one_row());
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.header("served-model-name").as_deref(), Some("champion"));
    }
    let fallbacks = gw
        .metric("modelgate_route_fallbacks_total{endpoint=\"ab\",served_entity=\"broken\"}")
        .unwrap();
    assert!(fallbacks > 10.0, "{fallbacks}");
    let s = state(&gw, "ab");
    assert_eq!(s["state"]["ready"], "READY");
    assert_eq!(s["state"]["config_update"], "UPDATE_FAILED");
    assert_eq!(
        s["config"]["served_entities"][1]["state"]["deployment"],
        "DEPLOYMENT_FAILED"
    );
    assert_eq!(gw.get("/readyz").status, 200);
    let r = gw.post_json(
        "/serving-endpoints/ab/served-models/broken/invocations",
        &one_row(),
    );
    assert!(r.mlflow_error(503).contains("'broken'"), "{}", r.text);

    // An endpoint with no arm that loads: created, NOT_READY, and 503 for its callers.
    let r = gw.post_json(
        "/api/2.0/serving-endpoints",
        &json!({"name": "dead", "config": {"served_entities": [
            {"entity_name": "transactions", "entity_version": "2", "engine": "tract"}]}}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let s = settled(&gw, "dead");
    assert_eq!(s["state"]["ready"], "NOT_READY", "{s}");
    assert_eq!(s["state"]["config_update"], "UPDATE_FAILED", "{s}");
    let entity = &s["config"]["served_entities"][0];
    assert_eq!(entity["state"]["deployment"], "DEPLOYMENT_FAILED", "{s}");
    assert!(
        entity["state"]["deployment_state_message"]
            .as_str()
            .unwrap()
            .contains("tract"),
        "{s}"
    );
    assert!(gw
        .invoke("dead", &one_row())
        .mlflow_error(503)
        .contains("no served entity"));
    // The server stays ready: a broken API endpoint does not take the others down.
    assert_eq!(gw.get("/readyz").status, 200);
}

#[test]
fn configs_are_refused_whole_and_a_second_update_gets_409() {
    // A slow warm-up keeps each load in progress long enough to collide with.
    let gw = start(&demo_config(AB_YAML, "  warmup_runs: 3000\n"), true);
    let before = state(&gw, "ab");
    let bad = json!({
        "served_entities": [
            {"name": "champion", "entity_name": "transactions", "entity_version": "1"},
            {"name": "champion", "entity_name": "transactions", "entity_version": "9"},
        ],
        "traffic_config": {"routes": [
            {"served_entity_name": "champion", "traffic_percentage": 120},
            {"served_entity_name": "ghost", "traffic_percentage": 5},
        ]},
    });
    let r = gw.put_json("/api/2.0/serving-endpoints/ab/config", &bad);
    assert_eq!(r.status, 400, "{}", r.text);
    let v = r.json();
    assert_eq!(v["error_code"], "INVALID_PARAMETER_VALUE");
    let fields: Vec<&str> = v["details"][0]["field_violations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        [
            "served_entities[1].name",
            "traffic_config.routes[0].traffic_percentage",
            "traffic_config.routes[1].served_entity_name",
            "traffic_config.routes",
        ],
        "{v}"
    );
    // Shape first, then the registry: a version that does not exist is named.
    let mut missing = ab_entities(50, 50);
    missing["served_entities"][1]["entity_version"] = json!("9");
    let r = gw.put_json("/api/2.0/serving-endpoints/ab/config", &missing);
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(
        r.text.contains("served_entities[1].entity_version") && r.text.contains("'9'"),
        "{}",
        r.text
    );
    // Wrong types name their field.
    let mut typed = ab_entities(50, 50);
    typed["traffic_config"]["routes"][0]["traffic_percentage"] = json!(50.5);
    let r = gw.put_json("/api/2.0/serving-endpoints/ab/config", &typed);
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(
        r.text
            .contains("traffic_config.routes[0].traffic_percentage"),
        "{}",
        r.text
    );
    // Nothing changed.
    let after = state(&gw, "ab");
    assert_eq!(after["config"], before["config"]);

    // A key the old config sends to its challenger (version 2): no arm of the new config has
    // that name or version, so an answer tells the configs apart.
    let key = (0..1000)
        .find(|&k| arm_of_key(&gw, "ab", k) == "challenger")
        .expect("a key of the challenger's 10 %");
    let served = |gw: &Gateway| {
        let r = gw.invoke("ab", &keyed(&[key as usize], &[key]));
        assert_eq!(r.status, 200, "{}", r.text);
        (
            r.header("served-model-name").unwrap(),
            r.header("served-model-version").unwrap(),
        )
    };
    let old = ("challenger".to_owned(), "2".to_owned());
    assert_eq!(served(&gw), old);

    // A valid update that loads a new served entity, and a second one while it runs.
    let mut next = ab_entities(50, 50);
    next["served_entities"][1]["name"] = json!("challenger-tract");
    next["served_entities"][1]["entity_version"] = json!("1");
    next["served_entities"][1]["engine"] = json!("tract");
    next["traffic_config"]["routes"][1]["served_entity_name"] = json!("challenger-tract");
    let r = gw.put_json("/api/2.0/serving-endpoints/ab/config", &next);
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["state"]["config_update"], "IN_PROGRESS");
    assert_eq!(r.json()["pending_config"]["config_version"], 2);
    let r = gw.put_json("/api/2.0/serving-endpoints/ab/config", &ab_entities(70, 30));
    assert_eq!(r.status, 409, "{}", r.text);
    assert_eq!(r.json()["error_code"], "RESOURCE_CONFLICT");
    // Meanwhile the old config answers: the key still gets the challenger, version 2. (The
    // warm-up, which holds every worker, keeps the update in progress well past this, as it
    // does for the 409 above.)
    assert_eq!(served(&gw), old, "answered during the update");
    // Until the publish, the old config; from it on, the new one, never the old one again.
    // The state's config is the published one: it changes with the publish.
    let new_config = |answer: &(String, String)| {
        (answer.0 == "champion" || answer.0 == "challenger-tract") && answer.1 == "1"
    };
    let (mut published, mut new_seen) = (false, false);
    eventually(Duration::from_secs(60), || {
        let answer = served(&gw);
        if published {
            assert!(new_config(&answer), "{answer:?} after the publish");
            return true;
        }
        if answer == old {
            assert!(!new_seen, "the old config answered after the new one");
        } else {
            assert!(new_config(&answer), "{answer:?}");
            new_seen = true;
        }
        published = state(&gw, "ab")["config"]["config_version"] == 2;
        false
    });
    let answer = served(&gw);
    assert!(new_config(&answer), "{answer:?} after the publish");
    let s = settled(&gw, "ab");
    assert_eq!(s["config"]["config_version"], 2, "{s}");
    assert_eq!(
        s["config"]["served_entities"][1]["name"],
        "challenger-tract"
    );
    assert!(s.get("pending_config").is_none(), "{s}");
    // The champion kept its loaded model: it was not reloaded by the update.
    assert_eq!(
        s["config"]["served_entities"][0]["loaded_at"],
        before["config"]["served_entities"][0]["loaded_at"]
    );

    // An update whose new entity fails to load leaves the running config serving.
    let mut broken = ab_entities(50, 50);
    broken["served_entities"][1]["engine"] = json!("tract");
    let r = gw.put_json("/api/2.0/serving-endpoints/ab/config", &broken);
    assert_eq!(r.status, 200, "{}", r.text);
    let s = settled(&gw, "ab");
    assert_eq!(s["state"]["config_update"], "UPDATE_FAILED", "{s}");
    assert_eq!(s["config"]["config_version"], 2, "{s}");
    assert!(
        s["last_config_update_error"]
            .as_str()
            .unwrap()
            .contains("challenger"),
        "{s}"
    );
    assert_eq!(gw.invoke("ab", &one_row()).status, 200);
    assert_eq!(
        gw.metric("modelgate_config_updates_total{endpoint=\"ab\",outcome=\"failure\"}"),
        Some(1.0)
    );
}

#[test]
fn config_file_splits_keep_their_keys_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let state = format!(
        "control:\n  state_file: {}\n",
        dir.path().join("s.json").display()
    );
    let gw = start(&demo_config(AB_YAML, &state), true);
    let keys: Vec<i64> = (0..80).collect();
    let arms: Vec<String> = keys.iter().map(|&k| arm_of_key(&gw, "ab", k)).collect();
    assert!(gw.terminate().success());
    // The same split with its routes in the other order: no key moves.
    let reordered = AB_YAML.replace(
        "        - {served_entity_name: champion, traffic_percentage: 90}\n        - {served_entity_name: challenger, traffic_percentage: 10}\n",
        "        - {served_entity_name: challenger, traffic_percentage: 10}\n        - {served_entity_name: champion, traffic_percentage: 90}\n",
    );
    assert_ne!(reordered, AB_YAML);
    let gw = start(&demo_config(&reordered, &state), true);
    let again: Vec<String> = keys.iter().map(|&k| arm_of_key(&gw, "ab", k)).collect();
    assert_eq!(arms, again);
}

#[test]
fn api_changes_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let state_file = dir.path().join("endpoints.json");
    let config = demo_config(
        &endpoint("t", "1", "tract"),
        &format!("control:\n  state_file: {}\n", state_file.display()),
    );
    let gw = start(&config, true);
    let r = gw.post_json(
        "/api/2.0/serving-endpoints",
        &json!({"name": "ab", "config": ab_entities(90, 10)}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    settled(&gw, "ab");
    let r = gw.put_json("/api/2.0/serving-endpoints/ab/config", &ab_entities(60, 40));
    assert_eq!(r.status, 200, "{}", r.text);
    let s = settled(&gw, "ab");
    assert_eq!(s["config"]["config_version"], 2);
    // What changes without a model load is saved too: tags, limits, grants.
    let r = gw.put_json(
        "/api/2.0/serving-endpoints/ab/rate-limits",
        &json!({"rate_limits": [{"calls": 100, "key": "user"}]}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let r = gw.put_json(
        "/api/2.0/permissions/serving-endpoints/ab",
        &json!({"access_control_list": [{"user_name": "etl", "permission_level": "CAN_QUERY"}]}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let tagged = reqwest::blocking::Client::new()
        .patch(gw.url("/api/2.0/serving-endpoints/ab/tags"))
        .json(&json!({"add_tags": [{"key": "team", "value": "risk"}]}))
        .send()
        .unwrap();
    assert_eq!(tagged.status(), 200);
    assert_eq!(gw.delete("/api/2.0/serving-endpoints/t").status, 200);
    let keys: Vec<i64> = (0..60).collect();
    let arms: Vec<String> = keys.iter().map(|&k| arm_of_key(&gw, "ab", k)).collect();
    assert!(state_file.exists());
    assert!(gw.terminate().success());

    let gw = start(&config, true);
    let s = settled(&gw, "ab");
    assert_eq!(s["state"]["ready"], "READY", "{s}");
    assert_eq!(s["config"]["config_version"], 2);
    assert_eq!(
        s["config"]["traffic_config"]["routes"][1]["traffic_percentage"],
        40
    );
    let again: Vec<String> = keys.iter().map(|&k| arm_of_key(&gw, "ab", k)).collect();
    assert_eq!(arms, again, "keys changed arms across the restart");
    assert_eq!(
        s["config"]["config_version"], 2,
        "no config version of their own"
    );
    assert_eq!(s["tags"], json!([{"key": "team", "value": "risk"}]), "{s}");
    assert_eq!(s["ai_gateway"]["rate_limits"][0]["calls"], 100, "{s}");
    let grants = gw.get("/api/2.0/permissions/serving-endpoints/ab").json();
    assert_eq!(
        grants["access_control_list"][1],
        json!({"user_name": "etl", "all_permissions": [{"permission_level": "CAN_QUERY", "inherited": false}]}),
        "{grants}"
    );
    // The config-file endpoint deleted through the API stays deleted.
    assert_eq!(gw.get("/api/2.0/serving-endpoints/t").status, 404);
    // Creating an existing name is refused.
    let r = gw.post_json(
        "/api/2.0/serving-endpoints",
        &json!({"name": "ab", "config": ab_entities(90, 10)}),
    );
    assert_eq!(r.status, 409);
    assert_eq!(r.json()["error_code"], "RESOURCE_ALREADY_EXISTS");
}
