//! The Redis online store against a real `redis-server` (Debian's package) on a free loopback
//! port: bulk load, joins equal to the models script's, and an outage under load.

mod common;

use std::sync::atomic::Ordering::SeqCst;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::time::{Duration, Instant};

use common::redis::{load_features, Redis};
use common::*;
use serde_json::{json, Value};

fn config(port: u16) -> String {
    let tables = demo_feature_tables().replace(
        "features:\n",
        &format!("features:\n  store: redis\n  redis: {{url: 'redis://127.0.0.1:{port}', timeout_ms: 100, connect_timeout_ms: 200}}\n"),
    );
    format!(
        "{tables}registry:\n  path: {}\ninference:\n  workers: 2\nendpoints:\n{}",
        demo_registry().display(),
        endpoint("v1", "1", "ort")
    )
}

fn check_predictions(gw: &Gateway, f: &Value) {
    let r = gw.invoke(
        "v1",
        &json!({"dataframe_split": {"columns": f["columns"], "data": f["data"]}}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let predictions = r.json()["predictions"].as_array().unwrap().clone();
    assert_eq!(predictions.len(), f["data"].as_array().unwrap().len());
    for (i, p) in predictions.iter().enumerate() {
        let want = f["v1"]["probabilities"][i][1].as_f64().unwrap();
        let got = p["probability"].as_f64().unwrap();
        assert!((got - want).abs() < 1e-5, "row {i}: {got} vs {want}");
        assert_eq!(p["label"], f["v1"]["label"][i], "row {i}");
    }
}

#[test]
fn redis_joins_like_the_embedded_store_and_survives_an_outage() {
    let mut redis = Redis::start();
    let config = config(redis.port);
    let out = load_features(&config);
    assert!(
        out.contains("transaction_count_ft: 27 rows loaded"),
        "{out}"
    );
    assert!(out.contains("product_3minute_max_price_ft:"), "{out}");
    let gw = start(&config, true);
    let f = join_cases();
    check_predictions(&gw, &f);
    assert!(gw
        .metric("modelgate_feature_lookup_duration_seconds_count{store=\"redis\"}")
        .is_some_and(|n| n >= 1.0));

    // Callers keep sending while Redis goes away and comes back. They can be paused: a
    // caller counts itself active before it looks at the pause flag, so once the flag is set
    // and no caller is active, none sends until it is cleared.
    let body = json!({"dataframe_split": {"columns": f["columns"], "data": [f["data"][0]]}});
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let paused = std::sync::Arc::new(AtomicBool::new(false));
    let active = std::sync::Arc::new(AtomicUsize::new(0));
    let sent = std::sync::Arc::new(AtomicUsize::new(0));
    let callers: Vec<_> = (0..3)
        .map(|_| {
            let (url, body, stop, paused, active, sent) = (
                gw.url("/serving-endpoints/v1/invocations"),
                body.to_string(),
                stop.clone(),
                paused.clone(),
                active.clone(),
                sent.clone(),
            );
            std::thread::spawn(move || {
                let client = client();
                let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
                while !stop.load(SeqCst) {
                    active.fetch_add(1, SeqCst);
                    if paused.load(SeqCst) {
                        active.fetch_sub(1, SeqCst);
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    }
                    let r = client
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(body.clone())
                        .send()
                        .unwrap();
                    active.fetch_sub(1, SeqCst);
                    sent.fetch_add(1, SeqCst);
                    *statuses.entry(r.status().as_u16()).or_default() += 1;
                }
                statuses
            })
        })
        .collect();
    let pause = |on: bool| {
        paused.store(on, SeqCst);
        if on {
            eventually(Duration::from_secs(30), || active.load(SeqCst) == 0);
        }
    };
    // The callers are under way before Redis goes.
    let before = sent.load(SeqCst);
    eventually(Duration::from_secs(30), || sent.load(SeqCst) >= before + 10);

    // Redis goes away under load. Then, with the callers paused so that every counted lookup
    // is one of ours: docs/features.md, "Redis": a lookup while Redis is down counts as
    // `timed_out` and follows each feature's policy. The demo's spec (models/transactions/1/
    // feature_spec.yaml): transactionCount and isTimeout default, MaxProductAmount rejects.
    // So each one-row request is a 422 naming MaxProductAmount, its key and table; each
    // counts one `timed_out` for all three features and one `defaulted` for the first two.
    redis.stop();
    let callers_during_outage = sent.load(SeqCst);
    eventually(Duration::from_secs(30), || {
        sent.load(SeqCst) >= callers_during_outage + 3
    });
    pause(true);
    let value = |feature: &str, table: &str, outcome: &str| {
        gw.metric(&format!(
            "modelgate_feature_values_total{{feature=\"{feature}\",outcome=\"{outcome}\",table=\"{table}\"}}"
        ))
        .unwrap_or(0.0)
    };
    let (counts, prices) = ("transaction_count_ft", "product_3minute_max_price_ft");
    let counted = |v: &dyn Fn(&str, &str, &str) -> f64| {
        [
            v("transactionCount", counts, "timed_out"),
            v("isTimeout", counts, "timed_out"),
            v("MaxProductAmount", prices, "timed_out"),
            v("transactionCount", counts, "defaulted"),
            v("isTimeout", counts, "defaulted"),
            v("MaxProductAmount", prices, "present"),
            v("transactionCount", counts, "present"),
        ]
    };
    let at_outage = counted(&value);
    let started = Instant::now();
    const OUTAGE_REQUESTS: usize = 20;
    for _ in 0..OUTAGE_REQUESTS {
        let r = gw.invoke("v1", &body);
        assert_eq!(r.status, 422, "{}", r.text);
        assert!(
            r.text.contains(&format!(
                "row 0: feature 'MaxProductAmount' for Product={} in table '{prices}' could not be looked up (the online store did not answer in time)",
                f["data"][0][2].as_str().unwrap()
            )),
            "{}",
            r.text
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "lookups did not honour the deadline"
    );
    let n = OUTAGE_REQUESTS as f64;
    let grown: Vec<f64> = counted(&value)
        .iter()
        .zip(at_outage)
        .map(|(after, before)| after - before)
        .collect();
    assert_eq!(
        grown,
        [n, n, n, n, n, 0.0, 0.0],
        "timed_out (3 features), defaulted (2), present (2) during the outage"
    );
    pause(false);

    // Back, reloaded: the gateway recovers by itself.
    let _redis = Redis::restart_on(redis.port);
    load_features(&config);
    eventually(Duration::from_secs(30), || {
        gw.invoke("v1", &body).status == 200
    });
    check_predictions(&gw, &f);
    // The callers are answered again, too.
    let back = sent.load(SeqCst);
    eventually(Duration::from_secs(30), || sent.load(SeqCst) >= back + 10);
    stop.store(true, SeqCst);
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    for c in callers {
        for (s, n) in c.join().unwrap() {
            *statuses.entry(s).or_default() += n;
        }
    }
    assert!(
        statuses.keys().all(|s| *s == 200 || *s == 422),
        "callers saw {statuses:?}"
    );
    assert!(statuses.get(&200).is_some_and(|n| *n > 0), "{statuses:?}");
}

/// A TCP relay between the gateway and Redis that can hold Redis's replies back: the lookups
/// sent while it holds are seen (a condition to wait on) and never answered.
struct Relay {
    port: u16,
    holding: std::sync::Arc<std::sync::atomic::AtomicBool>,
    sent_while_holding: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Relay {
    fn start(redis_port: u16) -> Relay {
        use std::io::{Read, Write};
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let holding = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let sent = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (h, s) = (holding.clone(), sent.clone());
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = std::net::TcpStream::connect(("127.0.0.1", redis_port)) else {
                    continue;
                };
                let (mut c_in, mut s_out) =
                    (client.try_clone().unwrap(), server.try_clone().unwrap());
                let (mut s_in, mut c_out) = (server, client);
                let (h1, s1) = (h.clone(), s.clone());
                std::thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    while let Ok(n @ 1..) = c_in.read(&mut buf) {
                        if h1.load(Ordering::Acquire) {
                            s1.fetch_add(1, Ordering::AcqRel);
                        }
                        if s_out.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                });
                let h2 = h.clone();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    while let Ok(n @ 1..) = s_in.read(&mut buf) {
                        // Held replies are dropped: the caller waits until its deadline.
                        if !h2.load(Ordering::Acquire) && c_out.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        Relay {
            port,
            holding,
            sent_while_holding: sent,
        }
    }
}

/// A request waiting for Redis holds no inference worker: with one worker and Redis's replies
/// held back, a request that needs no lookup is answered while the other still waits (before
/// the lookup was awaited off the pool, it waited for the lookup's deadline behind it).
#[test]
fn a_request_waiting_for_redis_holds_no_inference_worker() {
    use std::sync::atomic::Ordering;
    let _redis = Redis::start();
    let redis_port = _redis.port;
    load_features(&config(redis_port));
    let relay = Relay::start(redis_port);
    let config = config(relay.port)
        .replace("timeout_ms: 100", "timeout_ms: 3000")
        .replace("workers: 2", "workers: 1");
    let gw = start(&config, true);
    let f = join_cases();
    // Connected and answering through the relay first.
    check_predictions(&gw, &f);

    relay.holding.store(true, Ordering::Release);
    let waiting = json!({"dataframe_split": {"columns": f["columns"], "data": [f["data"][0]]}});
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::scope(|s| {
        s.spawn(|| {
            let reply = gw.invoke("v1", &waiting);
            done_tx.send(("lookup", reply.status)).unwrap();
        });
        // The lookup has reached the relay: its request holds no worker now, or the only one.
        eventually(Duration::from_secs(20), || {
            relay.sent_while_holding.load(Ordering::Acquire) > 0
        });
        // Every column the model takes, sent by the caller: nothing to look up.
        let complete = json!({"dataframe_split": {
            "columns": ["Product", "Amount", "transactionCount", "isTimeout", "MaxProductAmount", "MaxDifferenceRatio"],
            "data": [["Product A", 12.5, 3, false, 20.0, 0.38]]}});
        let reply = gw.invoke("v1", &complete);
        assert_eq!(reply.status, 200, "{}", reply.text);
        done_tx.send(("no lookup", reply.status)).unwrap();
        let first = done_rx.recv().unwrap();
        assert_eq!(
            first.0, "no lookup",
            "the request without a lookup waited behind the one waiting for Redis"
        );
        // The waiting one ends at the store's deadline, by its features' policies.
        let second = done_rx.recv().unwrap();
        assert_eq!(second.0, "lookup");
    });
}

/// A request whose caller's deadline passes while Redis has not answered gets its 504, and is
/// counted as a job stopped at its deadline (it never reaches a worker's own check).
#[test]
fn a_deadline_passing_during_the_lookup_is_counted() {
    use std::sync::atomic::Ordering;
    let redis = Redis::start();
    load_features(&config(redis.port));
    let relay = Relay::start(redis.port);
    let config = config(relay.port).replace("timeout_ms: 100", "timeout_ms: 3000")
        + "server:\n  request_timeout_ms: 300\n";
    let gw = start(&config, true);
    let f = join_cases();
    check_predictions(&gw, &f);
    // A request the join refuses before its lookup is sent names who refused it.
    let untyped = json!({"dataframe_split": {"columns": ["CustomerID", "TransactionTimestamp", "Product", "Amount"],
        "data": [[1240, "2026-11-22T10:19:05Z", "Product A", "not a number"]]}});
    let refused = gw.invoke("v1", &untyped);
    assert_eq!(refused.status, 400, "{}", refused.text);
    assert!(refused
        .header("served-model-name")
        .is_some_and(|n| !n.is_empty()));
    let deadline = "modelgate_limit_refusals_total{limit=\"deadline\"}";
    let before = gw.metric(deadline).unwrap();
    relay.holding.store(true, Ordering::Release);
    let waiting = json!({"dataframe_split": {"columns": f["columns"], "data": [f["data"][0]]}});
    let reply = gw.invoke("v1", &waiting);
    assert_eq!(reply.status, 504, "{}", reply.text);
    assert!(relay.sent_while_holding.load(Ordering::Acquire) > 0);
    gw.wait_for_metric(deadline, before + 1.0);
}
