//! Following a real MLflow Model Registry (`mlflow server`, PyPI mlflow 3.17.2).

mod common;

use std::time::{Duration, Instant};

use common::mlflow::MlflowServer;
use common::*;
use serde_json::{json, Value};

fn state(gw: &Gateway, endpoint: &str) -> Value {
    gw.get(&format!("/api/2.0/serving-endpoints/{endpoint}"))
        .json()
}

fn served(gw: &Gateway, endpoint: &str) -> String {
    state(gw, endpoint)["config"]["served_entities"][0]["served_version"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn wait_until(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn config(server: &MlflowServer, cache: &std::path::Path, extra: &str) -> String {
    config_at(&server.uri, cache, extra)
}

/// [`config`] with the tracking server reached at `uri` (through a proxy, say).
fn config_at(uri: &str, cache: &std::path::Path, extra: &str) -> String {
    format!(
        "registry:\n  kind: mlflow\n  uri: {}\n  cache_dir: {}\n  poll_interval_seconds: 1\n{extra}inference:\n  workers: 2\n  warmup_runs: 1\nendpoints:\n  - name: champion\n    served_entities: [{{entity_name: transactions, entity_version: champion}}]\n  - name: production\n    served_entities: [{{entity_name: transactions, entity_version: Production}}]\n",
        uri,
        cache.display()
    )
}

#[test]
fn follows_mlflow_aliases_and_stages_through_its_rest_api() {
    let server = MlflowServer::start();
    let v1 = server.register("transactions", &demo_registry().join("transactions/1"));
    let v2 = server.register("transactions", &demo_registry().join("transactions/2"));
    assert_eq!((v1.as_str(), v2.as_str()), ("1", "2"));
    server.set_alias("transactions", "champion", "1");
    server.transition("transactions", "1", "Production");
    let cache = tempfile::tempdir().unwrap();
    let gw = start(&config(&server, cache.path(), ""), true);

    // Downloaded into the cache, validated, served.
    assert_eq!(
        gw.invoke("champion", &one_row())
            .header("served-model-version")
            .as_deref(),
        Some("1")
    );
    assert_eq!(
        gw.invoke("production", &one_row())
            .header("served-model-version")
            .as_deref(),
        Some("1")
    );
    assert!(cache.path().join("transactions/1/MLmodel").exists());
    assert!(cache.path().join("transactions/1/model.onnx").exists());

    // The alias moves: the poll follows it.
    server.set_alias("transactions", "champion", "2");
    wait_until(
        "champion to serve version 2",
        Duration::from_secs(20),
        || served(&gw, "champion") == "2",
    );
    let s = state(&gw, "champion");
    assert_eq!(
        s["config"]["served_entities"][0]["last_swap"]["trigger"],
        "poll"
    );
    assert_eq!(
        s["config"]["served_entities"][0]["entity_version"],
        "champion"
    );
    assert_eq!(
        gw.invoke("champion", &one_row())
            .header("served-model-version")
            .as_deref(),
        Some("2")
    );

    // A stage is read as an alias.
    server.transition("transactions", "2", "Production");
    wait_until(
        "production to serve version 2",
        Duration::from_secs(20),
        || served(&gw, "production") == "2",
    );

    // Archived versions are never served: the endpoint keeps what it has.
    server.transition("transactions", "2", "Archived");
    let reply = gw.post_json(
        "/api/2.0/serving-endpoints/champion/reload?force=true",
        &json!({}),
    );
    assert_eq!(reply.status, 409, "{}", reply.text);
    assert!(
        reply.json()["message"]
            .as_str()
            .unwrap()
            .contains("archived"),
        "{}",
        reply.text
    );
    assert_eq!(served(&gw, "champion"), "2");

    // A cached version is not downloaded again: with the server's copy gone, it still loads.
    std::fs::remove_dir_all(server_artifacts(&server)).unwrap();
    server.set_alias("transactions", "champion", "1");
    wait_until(
        "champion back on version 1",
        Duration::from_secs(20),
        || served(&gw, "champion") == "1",
    );
    assert_eq!(
        state(&gw, "champion")["state"]["config_update"],
        "NOT_UPDATING"
    );

    // An alias that goes away: the endpoint keeps serving and says why it cannot follow.
    server.call(
        "DELETE",
        "registered-models/alias",
        json!({"name": "transactions", "alias": "champion"}),
    );
    wait_until("the update to fail", Duration::from_secs(20), || {
        state(&gw, "champion")["state"]["config_update"] == "UPDATE_FAILED"
    });
    assert!(
        state(&gw, "champion")["config"]["served_entities"][0]["last_swap"]["message"]
            .as_str()
            .unwrap()
            .contains("no alias 'champion'")
    );
    assert_eq!(gw.invoke("champion", &one_row()).status, 200);
}

/// `Registry::set_alias` (what a promotion and its rollback call) moves the alias through
/// MLflow's REST API, and never onto an archived version. Blocking calls: a plain `#[test]`.
#[test]
fn set_alias_moves_an_mlflow_alias_and_refuses_an_archived_version() {
    use modelgate::registry::mlflow::MlflowRegistry;
    use modelgate::registry::{Registry, RegistryError};
    use modelgate::settings::{RegistryKind, RegistrySettings};

    let server = MlflowServer::start();
    server.register("transactions", &demo_registry().join("transactions/1"));
    server.register("transactions", &demo_registry().join("transactions/2"));
    server.set_alias("transactions", "champion", "1");
    let cache = tempfile::tempdir().unwrap();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let registry = MlflowRegistry::new(&RegistrySettings {
        kind: RegistryKind::Mlflow,
        uri: Some(server.uri.clone()),
        cache_dir: Some(cache.path().to_owned()),
        ..Default::default()
    })
    .unwrap();
    // The server's own answer, not only ours.
    let server_alias = || -> Value {
        let url = format!(
            "{}/api/2.0/mlflow/registered-models/alias?name=transactions&alias=champion",
            server.uri
        );
        let v: Value = server
            .request(client().get(url))
            .send()
            .unwrap()
            .json()
            .unwrap();
        v["model_version"]["version"].clone()
    };

    registry.set_alias("transactions", "champion", "2").unwrap();
    assert_eq!(registry.resolve("transactions", "champion").unwrap(), "2");
    assert_eq!(server_alias(), "2");

    // A rollback onto an archived version is refused; the alias stays where it was.
    server.transition("transactions", "1", "Archived");
    match registry.set_alias("transactions", "champion", "1") {
        Err(RegistryError::Refused(m)) => assert!(m.contains("archived"), "{m}"),
        other => panic!("moved onto an archived version: {other:?}"),
    }
    assert_eq!(server_alias(), "2");
    assert_eq!(registry.resolve("transactions", "champion").unwrap(), "2");

    // Missing versions and models, and stages, are refused too.
    assert!(matches!(
        registry.set_alias("transactions", "champion", "9"),
        Err(RegistryError::VersionNotFound { .. })
    ));
    assert!(matches!(
        registry.set_alias("nope", "champion", "1"),
        Err(RegistryError::ModelNotFound(_))
    ));
    match registry.set_alias("transactions", "Production", "2") {
        Err(RegistryError::Refused(m)) => assert!(m.contains("use an alias"), "{m}"),
        other => panic!("moved a stage: {other:?}"),
    }
}

fn server_artifacts(server: &MlflowServer) -> std::path::PathBuf {
    server.artifacts_dir()
}

#[test]
fn an_unreachable_registry_leaves_the_served_versions_serving() {
    let mut server = MlflowServer::start();
    server.register("transactions", &demo_registry().join("transactions/1"));
    server.set_alias("transactions", "champion", "1");
    server.transition("transactions", "1", "Production");
    let cache = tempfile::tempdir().unwrap();
    let gw = start(
        &config(&server, cache.path(), "  timeout_seconds: 2\n"),
        false,
    );
    assert_eq!(gw.invoke("champion", &one_row()).status, 200);
    server.stop();
    let reply = gw.post_json("/api/2.0/serving-endpoints/champion/reload", &json!({}));
    assert_eq!(reply.status, 503, "{}", reply.text);
    assert_eq!(reply.json()["outcome"], "registry_unavailable");
    // The poll (not only the admin call) sees the outage, for every endpoint.
    let count = |endpoint: &str| -> f64 {
        gw.metric(&format!(
            "modelgate_registry_unreachable_total{{endpoint=\"{endpoint}\"}} "
        ))
        .unwrap_or(0.0)
    };
    let after_reload = count("champion");
    wait_until(
        "the poll to count the outage",
        Duration::from_secs(20),
        || count("champion") > after_reload && count("production") >= 1.0,
    );
    for _ in 0..20 {
        assert_eq!(gw.invoke("champion", &one_row()).status, 200);
    }
    assert_eq!(state(&gw, "champion")["state"]["ready"], "READY");
    assert_eq!(gw.get("/readyz").status, 200);
}

#[test]
fn signed_mlflow_webhooks_refresh_at_once_and_forged_ones_are_refused() {
    let server = MlflowServer::start();
    server.register("transactions", &demo_registry().join("transactions/1"));
    server.register("transactions", &demo_registry().join("transactions/2"));
    server.set_alias("transactions", "champion", "1");
    server.transition("transactions", "1", "Production");
    let cache = tempfile::tempdir().unwrap();
    // Polling once an hour: only the webhook can make the endpoint follow within the test.
    let config = config(&server, cache.path(), "  webhook_secret: s3cr3t\n")
        .replace("poll_interval_seconds: 1", "poll_interval_seconds: 3600");
    let gw = start(&config, true);
    assert_eq!(served(&gw, "champion"), "1");

    // Before MLflow has a webhook, nothing but a delivery can move the endpoint: the registry
    // moves to version 2, and forged deliveries saying so must change nothing.
    server.set_alias("transactions", "champion", "2");
    let body = r#"{"entity": "model_version_alias", "action": "created", "data": {"name": "transactions", "alias": "champion", "version": "2"}}"#;
    // A delivery of `body`, signed with `secret`, else with a made-up signature.
    let deliver = |id: &str, secret: Option<&str>| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            .to_string();
        let signature = match secret {
            Some(secret) => sign(secret, id, &now, body),
            None => "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".to_owned(),
        };
        client()
            .post(gw.url("/api/2.0/webhooks/mlflow"))
            .header("content-type", "application/json")
            .header("x-mlflow-delivery-id", id)
            .header("x-mlflow-timestamp", &now)
            .header("x-mlflow-signature", signature)
            .body(body)
            .send()
            .unwrap()
    };
    let forged = deliver("forged-1", None);
    assert_eq!(forged.status().as_u16(), 401);
    assert!(forged
        .text()
        .unwrap()
        .contains("the signature does not match"));
    assert_eq!(
        deliver("forged-2", Some("not-the-secret"))
            .status()
            .as_u16(),
        401
    );
    let unsigned = gw.post_json(
        "/api/2.0/webhooks/mlflow",
        &serde_json::from_str::<Value>(body).unwrap(),
    );
    assert_eq!(unsigned.status, 401);
    // A refused delivery reloads nothing: watched for a window in which an accepted one is
    // seen to act (checked next, against the same window). Acting starts the update at once
    // (IN_PROGRESS while the version loads), however long the load then takes.
    let acting = |gw: &Gateway| {
        let s = state(gw, "champion");
        s["state"]["config_update"] == "IN_PROGRESS" || served(gw, "champion") == "2"
    };
    let window = Duration::from_secs(3);
    let watched = Instant::now();
    while watched.elapsed() < window {
        assert!(!acting(&gw), "a refused delivery reloaded");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The same delivery signed with the secret is accepted and acts within the window; the
    // version it loads is then served (the load may take longer on a busy machine).
    let signed = deliver("signed-1", Some("s3cr3t"));
    assert_eq!(signed.status().as_u16(), 200);
    wait_until("the signed delivery to act", window, || acting(&gw));
    wait_until(
        "the signed delivery to swap in version 2",
        Duration::from_secs(60),
        || served(&gw, "champion") == "2",
    );
    assert_eq!(
        state(&gw, "champion")["config"]["served_entities"][0]["last_swap"]["trigger"],
        "webhook"
    );

    // MLflow's own deliveries, signed by MLflow: with a webhook subscribed, moving the alias
    // back swaps version 1 in. MLflow caches its list of webhooks (1 s in tests), so moves
    // made before the cache holds the new webhook are not delivered: the alias is set again
    // until one is.
    let hook = server.call(
        "POST",
        "webhooks",
        json!({
            "name": "modelgate",
            "url": gw.url("/api/2.0/webhooks/mlflow"),
            "events": [
                {"entity": "MODEL_VERSION", "action": "CREATED"},
                {"entity": "MODEL_VERSION_ALIAS", "action": "CREATED"},
                {"entity": "MODEL_VERSION_ALIAS", "action": "DELETED"}
            ],
            "secret": "s3cr3t",
            "status": "ACTIVE"
        }),
    );
    let hook_id = hook["webhook"]["webhook_id"].as_str().unwrap().to_owned();
    let limit = Instant::now() + Duration::from_secs(30);
    'delivered: loop {
        assert!(
            Instant::now() < limit,
            "no MLflow delivery swapped version 1 in: {}",
            server.log()
        );
        server.set_alias("transactions", "champion", "1");
        let set = Instant::now();
        while set.elapsed() < Duration::from_secs(2) {
            if served(&gw, "champion") == "1" {
                break 'delivered;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    assert_eq!(
        state(&gw, "champion")["config"]["served_entities"][0]["last_swap"]["trigger"],
        "webhook"
    );
    // MLflow's own signed test delivery is accepted.
    let test = server.call("POST", &format!("webhooks/{hook_id}/test"), json!({}));
    assert_eq!(test["result"]["success"], true, "{test}");
}

/// MLflow's signature of a delivery: base64 HMAC-SHA256 of `id.timestamp.body`.
fn sign(secret: &str, id: &str, timestamp: &str, body: &str) -> String {
    use base64::Engine;
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    )
}

#[test]
fn registry_credentials_are_sent_and_a_refusal_names_the_setting() {
    let server = MlflowServer::start_with_auth();
    server.register("transactions", &demo_registry().join("transactions/1"));
    server.set_alias("transactions", "champion", "1");
    server.transition("transactions", "1", "Production");
    let cache = tempfile::tempdir().unwrap();
    let without = config(&server, cache.path(), "");
    let err = try_start(&without, false, &[])
        .err()
        .expect("must not start without credentials");
    assert!(
        err.contains("401") && err.contains("check registry.token or registry.username"),
        "{err}"
    );
    let (user, password) = common::mlflow::ADMIN;
    let with = config(
        &server,
        cache.path(),
        &format!("  username: {user}\n  password: {password}\n"),
    );
    let gw = start(&with, false);
    assert_eq!(gw.invoke("champion", &one_row()).status, 200);
    // The same credentials from MLflow's own environment variables.
    let cache = tempfile::tempdir().unwrap();
    let gw = try_start(
        &config(&server, cache.path(), ""),
        false,
        &[
            ("MLFLOW_TRACKING_USERNAME", user),
            ("MLFLOW_TRACKING_PASSWORD", password),
        ],
    )
    .unwrap();
    assert_eq!(gw.invoke("production", &one_row()).status, 200);
}

/// A version of 200 MB: the gateway is live from the start (the chart's liveness and startup
/// probes ask `/livez`), `/readyz` shows the download's bytes while it runs, the log says how
/// far it got, and the version serves once it is whole.
const PADDING: u64 = 200_000_000;

/// Registers a copy of demo version 1 with 200 MB more (as large a model's weights are) and
/// points `champion` and `Production` at it.
fn register_large(server: &MlflowServer) -> String {
    let version = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(demo_registry().join("transactions/1")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), version.path().join(entry.file_name())).unwrap();
    }
    // An artifact as large as a large model's weights (the version's files all download).
    let padding = std::fs::File::create(version.path().join("weights.bin")).unwrap();
    padding.set_len(PADDING).unwrap();
    let v = server.register("transactions", version.path());
    drop(version);
    server.set_alias("transactions", "champion", &v);
    server.transition("transactions", &v, "Production");
    v
}

#[test]
fn a_large_version_downloads_while_the_gateway_is_live_and_shows_its_progress() {
    let server = MlflowServer::start();
    let v = register_large(&server);
    // 50 MB/s: the download takes 4 s here, whatever the machine's disk and loopback do.
    let slow = common::throttle::Throttle::start(&server.uri, 50_000_000);
    let cache = tempfile::tempdir().unwrap();
    let gw = start_live(
        &config_at(&slow.uri, cache.path(), ""),
        true,
        &[("RUST_LOG", "warn,modelgate::progress=info")],
    );

    // The endpoint's state shows it too (its served entity's `activity`).
    let mut in_state = false;
    let (done, total) = wait_for(
        "a download in progress on /readyz and in the endpoint's state",
        Duration::from_secs(120),
        || {
            assert_eq!(gw.get("/livez").status, 200, "/livez during the load");
            // MLflow's scoring server's health answer: not until the model serves.
            assert_eq!(gw.get("/ping").status, 404, "/ping during the load");
            let entity = &state(&gw, "champion")["config"]["served_entities"][0];
            in_state |= entity["activity"]["step"] == "downloading";
            let ready = gw.get("/readyz");
            assert_eq!(
                ready.status, 503,
                "ready before its download was seen: {}",
                ready.text
            );
            let body: Value = ready.json();
            let entity = &body["endpoints"][0]["served_entities"][0];
            let activity = &entity["activity"];
            let bytes = (
                activity["bytes_done"].as_u64()?,
                activity["bytes_total"].as_u64()?,
            );
            let downloading = activity["step"] == "downloading" && bytes.0 > 0 && bytes.0 < bytes.1;
            (downloading && in_state).then_some(bytes)
        },
    );
    assert!(total > PADDING && done < total, "{done} of {total}");
    wait_for("the version to serve", Duration::from_secs(120), || {
        assert_eq!(gw.get("/livez").status, 200, "/livez during the load");
        (gw.get("/readyz").status == 200).then_some(())
    });
    let ready: Value = gw.get("/readyz").json();
    assert!(
        ready["endpoints"][0]["served_entities"][0]
            .get("activity")
            .is_none(),
        "{ready}"
    );
    assert_eq!(
        gw.invoke("champion", &one_row())
            .header("served-model-version")
            .as_deref(),
        Some(v.as_str())
    );
    let log = gw.stderr.lock().unwrap().clone();
    assert!(
        log.contains(&format!(
            "downloading model 'transactions' version {v}: {:.1} MB",
            total as f64 / 1e6
        )),
        "{log}"
    );
}

/// `serve --model models:/NAME@ALIAS --registry-uri URL`: one endpoint named after the model,
/// following its alias, with no config file.
#[test]
fn a_registry_model_is_served_with_one_command_and_follows_its_alias() {
    let server = MlflowServer::start();
    let work = tempfile::tempdir().unwrap();
    let v1 = server.register("fraud", &version_without_spec(work.path(), "v1"));
    server.set_alias("fraud", "champion", &v1);
    let gw = server.serve_alias("fraud", "champion", work.path(), &[]);
    let reply = gw.invoke("fraud", &one_row());
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.header("served-model-version").as_deref(), Some("1"));
    // Downloaded into the data directory of its working directory.
    assert!(work
        .path()
        .join(".modelgate/mlflow-cache/fraud/1/MLmodel")
        .exists());
    let v2 = server.register("fraud", &version_without_spec(work.path(), "v2"));
    server.set_alias("fraud", "champion", &v2);
    wait_until(
        "the alias move to be served",
        Duration::from_secs(30),
        || {
            gw.invoke("fraud", &one_row())
                .header("served-model-version")
                .as_deref()
                == Some("2")
        },
    );
}

/// SIGTERM while the first version downloads (40 s at 5 MB/s): the gateway exits at once,
/// cleanly, without waiting for the download.
#[test]
fn a_shutdown_during_a_download_exits_at_once() {
    let server = MlflowServer::start();
    register_large(&server);
    let slow = common::throttle::Throttle::start(&server.uri, 5_000_000);
    let cache = tempfile::tempdir().unwrap();
    let mut gw = start_live(&config_at(&slow.uri, cache.path(), ""), true, &[]);
    wait_for(
        "the download to be under way",
        Duration::from_secs(60),
        || {
            let ready: Value = gw.get("/readyz").json();
            let activity = &ready["endpoints"][0]["served_entities"][0]["activity"];
            (activity["bytes_done"].as_u64()? > 0).then_some(())
        },
    );
    let asked = Instant::now();
    signal_term(&gw.child);
    let status = wait_timeout(&mut gw.child, Duration::from_secs(10))
        .expect("the gateway did not exit within 10 s of SIGTERM");
    assert!(status.success(), "{status}");
    assert!(asked.elapsed() < Duration::from_secs(10));
}
