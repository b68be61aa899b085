//! Access control and overload protection over real HTTP: bearer tokens with scopes, the bound
//! on requests in flight, per-endpoint rate limits, and the request deadline.

mod common;

use std::time::Duration;

use common::{demo_config, Gateway};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

fn sha(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

const ENDPOINT: &str = "  - name: tx\n    served_entities:\n      - {entity_name: transactions, entity_version: '1', engine: tract}\n";

fn rows(n: usize) -> Value {
    common::join_rows(n)
}

fn with_token(
    gw: &Gateway,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &Value,
) -> common::Reply {
    let client = common::client();
    let mut req = match method {
        "GET" => client.get(gw.url(path)),
        _ => client
            .post(gw.url(path))
            .header("content-type", "application/json")
            .body(body.to_string()),
    };
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    common::reply(req.send().unwrap())
}

#[test]
fn tokens_with_scopes_guard_the_routes() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens.yaml");
    std::fs::write(
        &tokens,
        format!(
            "tokens:\n  - {{name: app, sha256: {}, scopes: [query]}}\n  - {{name: ops, sha256: {}, scopes: [query, manage]}}\n",
            sha("query-secret"),
            sha("manage-secret")
        ),
    )
    .unwrap();
    let extra = format!(
        "auth:\n  enabled: true\n  tokens_file: {}\n  open_metrics: false\n",
        tokens.display()
    );
    let gw = common::start(&demo_config(ENDPOINT, &extra), false);
    let invoke = "/serving-endpoints/tx/invocations";
    let body = rows(1);

    let none = with_token(&gw, "POST", invoke, None, &body);
    assert!(none.mlflow_error(401).contains("needs a bearer token"));
    assert_eq!(none.header("www-authenticate").as_deref(), Some("Bearer"));
    let unknown = with_token(&gw, "POST", invoke, Some("guess"), &body);
    assert_eq!(unknown.json()["error_code"], "UNAUTHENTICATED");
    assert_eq!(
        with_token(&gw, "POST", invoke, Some("query-secret"), &body).status,
        200
    );
    // V2 errors keep the V2 shape.
    let v2 = with_token(&gw, "POST", "/v2/models/tx/infer", None, &json!({}));
    assert_eq!(v2.status, 401);
    assert!(v2.json()["error"]
        .as_str()
        .unwrap()
        .contains("bearer token"));

    let create = json!({"name": "other", "config": {"served_entities": [
        {"entity_name": "transactions", "entity_version": "1", "engine": "tract"}]}});
    let denied = with_token(
        &gw,
        "POST",
        "/api/2.0/serving-endpoints",
        Some("query-secret"),
        &create,
    );
    let message = denied.mlflow_error(403);
    assert!(
        message.contains("token 'app' does not have the 'manage' scope"),
        "{message}"
    );
    let created = with_token(
        &gw,
        "POST",
        "/api/2.0/serving-endpoints",
        Some("manage-secret"),
        &create,
    );
    assert_eq!(created.status, 200, "{}", created.text);

    // Health stays open; metrics were closed by the config.
    assert_eq!(with_token(&gw, "GET", "/readyz", None, &body).status, 200);
    assert_eq!(with_token(&gw, "GET", "/metrics", None, &body).status, 401);
    let metrics = with_token(&gw, "GET", "/metrics", Some("query-secret"), &body).text;
    assert!(
        metrics.contains("modelgate_auth_refusals_total{error_code=\"UNAUTHENTICATED\"} 4"),
        "{metrics}"
    );
    assert!(metrics.contains("modelgate_auth_refusals_total{error_code=\"PERMISSION_DENIED\"} 1"));

    // The status page shows what the control plane shows: the manage scope.
    let page = |token| with_token(&gw, "GET", "/", token, &body);
    assert_eq!(page(None).status, 401);
    assert_eq!(page(Some("query-secret")).status, 403);
    let shown = page(Some("manage-secret"));
    assert_eq!(shown.status, 200);
    assert!(
        shown.text.contains("data-endpoint=\"tx\""),
        "{}",
        shown.text
    );
    // No token text in the logs.
    let stderr = gw.stderr.lock().unwrap().clone();
    assert!(!stderr.contains("query-secret") && !stderr.contains("manage-secret"));
}

#[test]
fn a_missing_token_list_stops_the_start() {
    let err = common::try_start(
        &demo_config(ENDPOINT, "auth:\n  enabled: true\n"),
        false,
        &[],
    )
    .err()
    .expect("auth without tokens must not start");
    assert!(err.contains("no token is configured"), "{err}");
    // Tokens from the environment.
    let env = format!(
        "[{{name: env, sha256: {}, scopes: [query]}}]",
        sha("from-env")
    );
    let gw = common::try_start(
        &demo_config(ENDPOINT, "auth:\n  enabled: true\n"),
        false,
        &[("MODELGATE_TOKENS", &env)],
    )
    .unwrap();
    let ok = with_token(
        &gw,
        "POST",
        "/serving-endpoints/tx/invocations",
        Some("from-env"),
        &rows(1),
    );
    assert_eq!(ok.status, 200, "{}", ok.text);
}

#[test]
fn a_flood_beyond_the_bound_gets_429_with_retry_after() {
    let gw = common::start(
        &demo_config(ENDPOINT, "server:\n  max_concurrent_requests: 2\n"),
        false,
    );
    // Batches big enough that callers overlap.
    let body = rows(500);
    let statuses: Vec<(u16, Option<String>)> = std::thread::scope(|s| {
        let callers: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(|| {
                    (0..6)
                        .map(|_| {
                            let r = gw.invoke("tx", &body);
                            (r.status, r.header("retry-after"))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        callers
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let refused: Vec<_> = statuses.iter().filter(|(s, _)| *s == 429).collect();
    assert!(!refused.is_empty(), "no 429 in {statuses:?}");
    assert!(refused.iter().all(|(_, r)| r.as_deref() == Some("1")));
    assert!(
        statuses.iter().all(|(s, _)| *s == 200 || *s == 429),
        "{statuses:?}"
    );
    assert!(statuses.iter().any(|(s, _)| *s == 200));
    let reply = gw.invoke("tx", &rows(1));
    assert_eq!(reply.status, 200, "the bound frees up: {}", reply.text);
    assert!(gw
        .metric(
            "modelgate_request_errors_total{endpoint=\"tx\",error_code=\"REQUEST_LIMIT_EXCEEDED\"}"
        )
        .is_some());
}

#[test]
fn rate_limits_per_endpoint_and_per_user() {
    let endpoint = format!(
        "{ENDPOINT}    rate_limits:\n      - {{calls: 3, key: endpoint, renewal_period: minute}}\n"
    );
    let gw = common::start(&demo_config(&endpoint, ""), false);
    // The three calls, the refused fourth, a config update and one more call, in one window.
    let (passed, limited, after_update) = common::in_one_clock_minute(|| {
        let passed: Vec<u16> = (0..3).map(|_| gw.invoke("tx", &rows(1)).status).collect();
        let limited = gw.invoke("tx", &rows(1));
        // A config update keeps the limits and the minute's count.
        let config = json!({"served_entities": [
            {"entity_name": "transactions", "entity_version": "1", "engine": "tract"}]});
        let updated = gw.put_json("/api/2.0/serving-endpoints/tx/config", &config);
        assert_eq!(updated.status, 200, "{}", updated.text);
        common::wait_for("the update to finish", Duration::from_secs(30), || {
            let state = gw.get("/api/2.0/serving-endpoints/tx").json();
            (state["state"]["config_update"] == "NOT_UPDATING").then_some(())
        });
        (passed, limited, gw.invoke("tx", &rows(1)).status)
    });
    assert_eq!(passed, [200, 200, 200]);
    let message = limited.mlflow_error(429);
    assert!(
        message.contains("rate limit of 3 calls per minute"),
        "{message}"
    );
    assert_eq!(limited.json()["error_code"], "REQUEST_LIMIT_EXCEEDED");
    let wait: u64 = limited.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    assert_eq!(after_update, 429);

    // Per user, created through the control plane in Databricks' shape.
    let create = json!({"name": "peruser", "config": {"served_entities": [
        {"entity_name": "transactions", "entity_version": "1", "engine": "tract"}]},
        "rate_limits": [{"calls": 2, "key": "user", "renewal_period": "minute"}]});
    let created = gw.post_json("/api/2.0/serving-endpoints", &create);
    assert_eq!(created.status, 200, "{}", created.text);
    common::wait_for("peruser to be ready", Duration::from_secs(30), || {
        let state = gw.get("/api/2.0/serving-endpoints/peruser").json();
        (state["state"]["ready"] == "READY").then_some(())
    });
    // Two calls pass in a clock minute (the window) and the third is refused.
    let statuses = common::in_one_clock_minute(|| {
        (0..3)
            .map(|_| gw.invoke("peruser", &rows(1)).status)
            .collect::<Vec<u16>>()
    });
    assert_eq!(statuses, [200, 200, 429]);
    let bad = json!({"name": "bad", "config": {"served_entities": [
        {"entity_name": "transactions", "entity_version": "1"}]},
        "rate_limits": [{"calls": 0}]});
    let refused = gw.post_json("/api/2.0/serving-endpoints", &bad);
    assert!(refused.mlflow_error(400).contains("rate_limits[0].calls"));
}

#[test]
fn a_request_past_its_deadline_gets_504() {
    let gw = common::start(
        &demo_config(ENDPOINT, "server:\n  request_timeout_ms: 1\n"),
        false,
    );
    let reply = gw.invoke("tx", &rows(5000));
    let message = reply.mlflow_error(504);
    assert!(message.contains("deadline of 1 ms"), "{message}");
    assert_eq!(reply.json()["error_code"], "DEADLINE_EXCEEDED");
}
