//! A fleet of gateways that share rate-limit counts through a real `redis-server`
//! (`fleet.redis_url`): three processes on 127.0.0.1, called in turn, admit about the limit
//! together rather than the limit each; without the store each admits its share on its own
//! counts, serving goes on, and the fleet finds the store again when it is back.

mod common;

use std::time::Duration;

use common::redis::Redis;
use common::Gateway;

/// Calls per minute of the limited endpoints.
const LIMIT: usize = 30;
const REPLICAS: usize = 3;

/// Endpoints `tx` and `tx2` with an endpoint-wide limit of [`LIMIT`], and `open` without one.
fn config(redis_port: u16) -> String {
    let limited = |name: &str| {
        format!(
            "  - name: {name}\n    served_entities:\n      - {{entity_name: transactions, entity_version: '1', engine: tract}}\n    rate_limits:\n      - {{calls: {LIMIT}, key: endpoint}}\n"
        )
    };
    let endpoints = format!(
        "{}{}  - name: open\n    served_entities:\n      - {{entity_name: transactions, entity_version: '1', engine: tract}}\n",
        limited("tx"),
        limited("tx2")
    );
    common::demo_config(
        &endpoints,
        &format!(
            "fleet:\n  redis_url: redis://127.0.0.1:{redis_port}\n  sync_interval_ms: 50\n  replica_ttl_ms: 5000\n"
        ),
    )
}

/// Calls `endpoint` `n` times, one replica after the other; the calls answered 200 (every
/// other answer must be 429).
fn call_in_turn(fleet: &[Gateway], endpoint: &str, n: usize) -> usize {
    let mut admitted = 0;
    for i in 0..n {
        let reply = fleet[i % fleet.len()].invoke(endpoint, &common::join_rows(1));
        match reply.status {
            200 => admitted += 1,
            429 => assert!(
                reply
                    .text
                    .contains(&format!("rate limit of {LIMIT} calls per minute")),
                "{}",
                reply.text
            ),
            other => panic!("{other}: {}", reply.text),
        }
    }
    admitted
}

/// Calls `tx` three times its limit in one clock minute, spread over the fleet: about the
/// limit is admitted, not three times it. The bound while the store answers
/// (docs/operations.md): less than LIMIT + REPLICAS x ceil(LIMIT / REPLICAS), what replicas
/// can admit before they see each other's calls; a few over LIMIT in practice, depending on
/// how calls fall between syncs.
fn admit_about_the_limit(fleet: &[Gateway]) {
    let admitted = common::in_one_clock_minute(|| call_in_turn(fleet, "tx", 3 * LIMIT));
    let bound = LIMIT + REPLICAS * LIMIT.div_ceil(REPLICAS);
    assert!(
        (LIMIT..bound).contains(&admitted),
        "{admitted} of {} calls admitted across the fleet, limit {LIMIT}",
        3 * LIMIT
    );
}

#[test]
fn a_rate_limit_counts_across_the_fleet_and_falls_back_to_each_replicas_share() {
    let mut redis = Redis::start();
    let port = redis.port;
    let fleet: Vec<Gateway> = (0..REPLICAS)
        .map(|_| common::start(&config(port), false))
        .collect();
    // Each replica sees the others through their heartbeats.
    common::metric_everywhere(&fleet, "modelgate_fleet_replicas", REPLICAS as f64);
    common::metric_everywhere(&fleet, "modelgate_fleet_store_up", 1.0);

    // Three times the limit, spread over the fleet: about the limit is admitted.
    admit_about_the_limit(&fleet);

    // The store goes away: serving goes on, and each replica admits its share of the limit
    // (LIMIT / REPLICAS, the last fleet size it saw) on its own counts, and says so.
    redis.stop();
    common::metric_everywhere(&fleet, "modelgate_fleet_store_up", 0.0);
    for gw in &fleet {
        assert_eq!(gw.invoke("open", &common::join_rows(1)).status, 200);
    }
    let admitted = common::in_one_clock_minute(|| call_in_turn(&fleet, "tx2", 3 * LIMIT));
    assert_eq!(admitted, LIMIT, "each replica's share of {LIMIT}");
    for gw in &fleet {
        let fallback = gw
            .metric("modelgate_rate_limit_fallback_calls_total{endpoint=\"tx2\"}")
            .unwrap_or(0.0);
        assert!(fallback >= LIMIT as f64, "{fallback}");
    }

    // The store is back: every replica finds it again by itself.
    let _redis = Redis::restart_on(port);
    common::metric_everywhere(&fleet, "modelgate_fleet_store_up", 1.0);
    common::metric_everywhere(&fleet, "modelgate_fleet_replicas", REPLICAS as f64);
}

/// Replicas with one config route a key alike (the key's hash and the split's buckets depend
/// on the endpoint's config alone, no shared state needed), and the split holds.
#[test]
fn a_routing_key_gets_the_same_arm_from_every_replica() {
    let endpoint = "  - name: ab\n    served_entities:\n      - {name: champion, entity_name: transactions, entity_version: '1', engine: tract}\n      - {name: challenger, entity_name: transactions, entity_version: '1', engine: tract}\n    traffic_config:\n      routes:\n        - {served_entity_name: champion, traffic_percentage: 90}\n        - {served_entity_name: challenger, traffic_percentage: 10}\n";
    let fleet: Vec<Gateway> = (0..2)
        .map(|_| common::start(&common::demo_config(endpoint, ""), false))
        .collect();
    // A gateway serves once one arm is loaded; a request for an arm still loading goes to the
    // other. Both arms serve on both replicas before keys are compared.
    for gw in &fleet {
        common::wait_for("both arms to serve", Duration::from_secs(60), || {
            let view = gw.get("/api/2.0/serving-endpoints/ab").json();
            let entities = view["config"]["served_entities"].as_array()?.clone();
            (entities.len() == 2 && entities.iter().all(|e| e["served_version"] == "1"))
                .then_some(())
        });
    }
    let arm = |gw: &Gateway, key: usize| {
        let reply = gw.post_json_with(
            "/serving-endpoints/ab/invocations",
            &common::join_rows(1),
            &[("X-Routing-Key", &key.to_string())],
        );
        assert_eq!(reply.status, 200, "{}", reply.text);
        reply.header("served-model-name").unwrap()
    };
    let keys = 400;
    let arms: Vec<(String, String)> = (0..keys)
        .map(|k| (arm(&fleet[0], k), arm(&fleet[1], k)))
        .collect();
    for (k, (a, b)) in arms.iter().enumerate() {
        assert_eq!(a, b, "key {k}: {a} on one replica, {b} on the other");
    }
    // 10 % of 400 keys: 40, within 4 sigma (sqrt(400 x 0.1 x 0.9) = 6).
    let on_challenger = arms.iter().filter(|(a, _)| a == "challenger").count();
    assert!(
        (16..=64).contains(&on_challenger),
        "{on_challenger} of {keys}"
    );
}

/// Replicas whose clocks differ by a few seconds (libfaketime: one 3 s ahead, one 3 s behind)
/// still see each other (heartbeats are aged by Redis's clock, not by each replica's) and
/// count a limit together.
#[test]
fn replicas_whose_clocks_differ_by_seconds_still_count_together() {
    let faketime = common::path_from_env_or_script("MODELGATE_FAKETIME", "scripts/faketime.sh");
    let redis = Redis::start();
    let skews = [None, Some(3), Some(-3)];
    let fleet: Vec<Gateway> = skews
        .iter()
        .map(|skew| {
            let offset = skew.map(|s: i64| format!("{s:+}s"));
            let env: Vec<(&str, &str)> = match &offset {
                Some(o) => vec![
                    ("LD_PRELOAD", faketime.to_str().unwrap()),
                    ("FAKETIME", o.as_str()),
                    ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
                ],
                None => Vec::new(),
            };
            common::try_start(&config(redis.port), false, &env).unwrap()
        })
        .collect();
    // The skew is real: each replica dates its answers by its own clock.
    for (gw, skew) in fleet.iter().zip(skews) {
        let date = gw.get("/livez").header("date").expect("a Date header");
        let theirs = chrono::DateTime::parse_from_rfc2822(&date)
            .unwrap()
            .timestamp();
        let ours = chrono::Utc::now().timestamp();
        let expected = skew.unwrap_or(0);
        assert!(
            (theirs - ours - expected).abs() <= 1,
            "{date}: {theirs} vs {ours}"
        );
    }
    // Six seconds between the extreme clocks, heartbeats kept 5 s: every replica still sees
    // the three, sync after sync.
    common::metric_everywhere(&fleet, "modelgate_fleet_replicas", REPLICAS as f64);
    let watch_until = std::time::Instant::now() + Duration::from_secs(2);
    while std::time::Instant::now() < watch_until {
        for gw in &fleet {
            assert_eq!(gw.metric("modelgate_fleet_replicas"), Some(REPLICAS as f64));
        }
    }
    // Away from a minute's edges (every replica's clock in the same minute), the limit counts
    // across the fleet as without skew.
    common::wait_for(
        "the middle of a clock minute",
        Duration::from_secs(61),
        || {
            let second = chrono::Utc::now().timestamp() % 60;
            (5..=30).contains(&second).then_some(())
        },
    );
    admit_about_the_limit(&fleet);
}
