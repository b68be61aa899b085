//! Three gateways share their endpoint configs through a real `redis-server`
//! (`fleet.redis_url`): an endpoint created, re-split or deleted through one replica is served
//! by every replica within 2 s; two overlapping updates through two replicas: one is refused (409), and the fleet ends on one config; a
//! replica restarted with a stale state file serves the fleet's config; without the store every
//! replica serves what it knew, refuses changes and catches up when the store is back (even
//! one that lost its data).

mod common;

use std::time::{Duration, Instant};

use common::redis::Redis;
use common::Gateway;
use serde_json::{json, Value};

const REPLICAS: usize = 3;
/// The longest a change may take to reach every replica (the bound).
const PROPAGATION: Duration = Duration::from_secs(2);

/// A fleet config: endpoint `base` from the config file, the store on `redis_port`, and the
/// replica's own data folder (its state file) when given.
fn config(redis_port: u16, data_dir: Option<&std::path::Path>) -> String {
    let data = data_dir
        .map(|d| format!("\ndata_dir: {}\n", d.display()))
        .unwrap_or_default();
    common::demo_config(
        &common::endpoint("base", "1", "tract"),
        &format!(
            "{data}fleet:\n  redis_url: redis://127.0.0.1:{redis_port}\n  config_poll_ms: 500\n"
        ),
    )
}

fn view(gw: &Gateway, name: &str) -> Option<Value> {
    let r = gw.get(&format!("/api/2.0/serving-endpoints/{name}"));
    (r.status == 200).then(|| r.json())
}

/// The config version a replica knows of `name` (serving or loading), if it knows the
/// endpoint.
fn known_version(gw: &Gateway, name: &str) -> Option<u64> {
    let v = view(gw, name)?;
    v["pending_config"]["config_version"]
        .as_u64()
        .or_else(|| v["config"]["config_version"].as_u64())
}

/// How long each replica took to satisfy `applied` after `since`; panics past `limit`.
fn propagation(
    fleet: &[Gateway],
    since: Instant,
    limit: Duration,
    applied: impl Fn(&Gateway) -> bool,
) -> Vec<Duration> {
    fleet
        .iter()
        .map(|gw| {
            let deadline = since + limit;
            loop {
                if applied(gw) {
                    return since.elapsed();
                }
                assert!(
                    Instant::now() < deadline,
                    "a replica did not apply the change within {limit:?}"
                );
                std::thread::sleep(Duration::from_millis(10));
            }
        })
        .collect()
}

fn split(champion: u32) -> Value {
    json!({"routes": [
        {"served_entity_name": "champion", "traffic_percentage": champion},
        {"served_entity_name": "challenger", "traffic_percentage": 100 - champion}
    ]})
}

fn ab_config(champion: u32) -> Value {
    json!({
        "served_entities": [
            {"name": "champion", "entity_name": "transactions", "entity_version": "1", "engine": "tract"},
            {"name": "challenger", "entity_name": "transactions", "entity_version": "1", "engine": "tract"}
        ],
        "traffic_config": split(champion)
    })
}

/// Whether `gw` serves `name` with both arms loaded.
fn serves_both_arms(gw: &Gateway, name: &str) -> bool {
    view(gw, name).is_some_and(|v| {
        v["state"]["ready"] == "READY"
            && v["config"]["served_entities"].as_array().is_some_and(|e| {
                e.len() == 2
                    && e.iter()
                        .all(|s| s["state"]["deployment"] == "DEPLOYMENT_READY")
            })
    })
}

/// Once the fleet is in sync, creates `ab` (50/50) through the first replica and waits until
/// every replica serves both arms.
fn create_ab_everywhere(fleet: &[Gateway]) {
    common::metric_everywhere(fleet, "modelgate_fleet_configs_in_sync", 1.0);
    let r = fleet[0].post_json(
        "/api/2.0/serving-endpoints",
        &json!({"name": "ab", "config": ab_config(50)}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    for gw in fleet {
        wait_until_served(gw, "ab");
    }
}

fn wait_until_served(gw: &Gateway, name: &str) {
    common::wait_for(
        &format!("{name} to serve both arms"),
        Duration::from_secs(60),
        || serves_both_arms(gw, name).then_some(()),
    );
}

fn arm(gw: &Gateway, key: Option<&str>) -> String {
    let headers: Vec<(&str, &str)> = key.map(|k| ("X-Routing-Key", k)).into_iter().collect();
    let r = gw.post_json_with(
        "/serving-endpoints/ab/invocations",
        &common::join_rows(1),
        &headers,
    );
    assert_eq!(r.status, 200, "{}", r.text);
    r.header("served-model-name").unwrap()
}

#[test]
fn an_endpoint_created_resplit_and_deleted_through_one_replica_is_served_by_every_replica() {
    let redis = Redis::start();
    let fleet: Vec<Gateway> = (0..REPLICAS)
        .map(|_| common::start(&config(redis.port, None), false))
        .collect();
    common::metric_everywhere(&fleet, "modelgate_fleet_configs_in_sync", 1.0);
    let mut delays = Vec::new();

    // Created through replica 0: every replica knows it within 2 s, and serves it once its
    // models have loaded.
    let create = json!({"name": "ab", "config": ab_config(50)});
    let began = Instant::now();
    let r = fleet[0].post_json("/api/2.0/serving-endpoints", &create);
    assert_eq!(r.status, 200, "{}", r.text);
    delays.extend(propagation(&fleet, began, PROPAGATION, |gw| {
        known_version(gw, "ab") == Some(1)
    }));
    for gw in &fleet {
        wait_until_served(gw, "ab");
    }

    // Re-split in turn through each replica (each change built on the last: every replica
    // has applied it before the next goes through another).
    for (i, champion) in [90, 10, 70, 30, 90].into_iter().enumerate() {
        let through = &fleet[i % REPLICAS];
        let version = known_version(through, "ab").unwrap();
        let began = Instant::now();
        let r = through.put_json("/api/2.0/serving-endpoints/ab/config", &ab_config(champion));
        assert_eq!(r.status, 200, "{}", r.text);
        delays.extend(propagation(&fleet, began, PROPAGATION, |gw| {
            view(gw, "ab").is_some_and(|v| {
                v["config"]["config_version"] == version + 1
                    && v["config"]["traffic_config"] == split(champion)
            })
        }));
    }
    delays.sort();
    let p99 = delays[(delays.len() * 99).div_ceil(100) - 1];
    println!(
        "fleet config propagation over {} replica-changes: median {:?}, p99 {:?}",
        delays.len(),
        delays[delays.len() / 2],
        p99
    );

    // The 90/10 split holds fleet-wide (within 4 sigma), and a routing key gets the same arm
    // from every replica (the bucket table travels with the config).
    let calls = 600;
    let champion = (0..calls)
        .filter(|i| arm(&fleet[i % REPLICAS], None) == "champion")
        .count() as f64;
    let sigma = (calls as f64 * 0.9 * 0.1).sqrt();
    assert!(
        (champion - 0.9 * calls as f64).abs() <= 4.0 * sigma,
        "{champion} of {calls} calls to the 90% arm"
    );
    for key in 0..100 {
        let key = format!("customer-{key}");
        let first = arm(&fleet[0], Some(&key));
        for gw in &fleet[1..] {
            assert_eq!(arm(gw, Some(&key)), first, "key {key}");
        }
    }

    // Deleted through replica 2: gone everywhere within 2 s.
    let began = Instant::now();
    let r = fleet[2].delete("/api/2.0/serving-endpoints/ab");
    assert_eq!(r.status, 200, "{}", r.text);
    propagation(&fleet, began, PROPAGATION, |gw| view(gw, "ab").is_none());
    // Counted by the replicas that applied it, not by the one it went through.
    for (i, gw) in fleet.iter().enumerate() {
        let deleted = gw
            .metric("modelgate_fleet_config_changes_applied_total{change=\"deleted\"}")
            .unwrap_or(0.0);
        assert_eq!(deleted, if i == 2 { 0.0 } else { 1.0 }, "replica {i}");
    }
    // The config file's endpoint, deleted through one replica, stays deleted everywhere.
    let r = fleet[1].delete("/api/2.0/serving-endpoints/base");
    assert_eq!(r.status, 200, "{}", r.text);
    propagation(&fleet, Instant::now(), PROPAGATION, |gw| {
        view(gw, "base").is_none()
    });
}

#[test]
fn two_updates_at_once_through_two_replicas_end_in_one_config_and_a_conflict() {
    let redis = Redis::start();
    let fleet: Vec<Gateway> = (0..2)
        .map(|_| common::start(&config(redis.port, None), false))
        .collect();
    common::metric_everywhere(&fleet, "modelgate_fleet_configs_in_sync", 1.0);
    let mut conflicts = 0;
    for round in 0..6 {
        // Each update serves a new served entity (a model load): the first claims the
        // endpoint for the fleet while it loads.
        let body = |who: usize| {
            json!({"served_entities": [{
                "name": format!("r{round}-{who}"), "entity_name": "transactions",
                "entity_version": "1", "engine": "tract"
            }]})
        };
        let barrier = std::sync::Barrier::new(2);
        let replies: Vec<common::Reply> = std::thread::scope(|s| {
            let calls: Vec<_> = (0..2)
                .map(|who| {
                    let (gw, barrier, body) = (&fleet[who], &barrier, body(who));
                    s.spawn(move || {
                        barrier.wait();
                        gw.put_json("/api/2.0/serving-endpoints/base/config", &body)
                    })
                })
                .collect();
            calls.into_iter().map(|c| c.join().unwrap()).collect()
        });
        let mut won = Vec::new();
        for (who, r) in replies.iter().enumerate() {
            match r.status {
                200 => won.push(who),
                409 => {
                    let message = r.json()["message"].as_str().unwrap_or_default().to_owned();
                    assert!(
                        message.contains("is being updated")
                            || message.contains("changed meanwhile through another replica"),
                        "{message}"
                    );
                    conflicts += 1;
                }
                other => panic!("{other}: {}", r.text),
            }
        }
        // What serves is the same everywhere: the one update that won (or, when the two did
        // not overlap, the later).
        let settled = common::wait_for("the fleet to agree", Duration::from_secs(60), || {
            let names: Vec<String> = fleet
                .iter()
                .map(|gw| {
                    let v = view(gw, "base")?;
                    (v["state"]["config_update"] == "NOT_UPDATING")
                        .then(|| {
                            v["config"]["served_entities"][0]["name"]
                                .as_str()
                                .map(str::to_owned)
                        })
                        .flatten()
                })
                .collect::<Option<_>>()?;
            (names.iter().all(|n| n == &names[0])).then(|| names[0].clone())
        });
        assert!(
            won.iter().any(|who| settled == format!("r{round}-{who}")),
            "round {round}: {settled} serves, the updates that won: {won:?}"
        );
    }
    assert!(
        conflicts > 0,
        "no update was refused in six rounds of two at once"
    );
}

#[test]
fn a_replica_restarted_with_a_stale_state_file_serves_the_fleets_config() {
    let redis = Redis::start();
    let dirs: Vec<tempfile::TempDir> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let start = |i: usize| common::start(&config(redis.port, Some(dirs[i].path())), false);
    let a = start(0);
    let mut b = Some(start(1));
    let r = a.post_json(
        "/api/2.0/serving-endpoints",
        &json!({"name": "ab", "config": ab_config(50)}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let b_now = b.as_ref().unwrap();
    propagation(
        std::slice::from_ref(b_now),
        Instant::now(),
        PROPAGATION,
        |gw| known_version(gw, "ab") == Some(1),
    );
    common::wait_for("b to save ab", Duration::from_secs(30), || {
        let state = std::fs::read_to_string(dirs[1].path().join("config.endpoints.json")).ok()?;
        state.contains("\"ab\"").then_some(())
    });
    wait_until_served(&a, "ab");
    // b stops; the fleet re-splits ab without it. Its state file still says 50/50.
    b.take().unwrap().terminate();
    let r = a.put_json("/api/2.0/serving-endpoints/ab/config", &ab_config(80));
    assert_eq!(r.status, 200, "{}", r.text);
    // Started again, b serves the fleet's config from its first answer.
    let b = start(1);
    let v = view(&b, "ab").expect("ab on the restarted replica");
    assert_eq!(v["config"]["config_version"], 2, "{v}");
    assert_eq!(v["config"]["traffic_config"], split(80), "{v}");
    // It started on the fleet's config (read at its start), not on its file's and then
    // changed.
    let applied = b.metric("modelgate_fleet_config_changes_applied_total{change=\"updated\"}");
    assert_eq!(applied, None, "the restarted replica applied an update");
}

#[test]
fn without_the_store_replicas_serve_what_they_knew_and_catch_up_when_it_is_back() {
    let mut redis = Redis::start();
    let port = redis.port;
    let mut fleet: Vec<Gateway> = (0..2)
        .map(|_| common::start(&config(port, None), false))
        .collect();
    create_ab_everywhere(&fleet);

    // The store goes away (and its data with it): serving goes on, /readyz and the metric say
    // which configs serve, and a change is refused with the reason.
    redis.stop();
    common::metric_everywhere(&fleet, "modelgate_fleet_configs_in_sync", 0.0);
    for gw in &fleet {
        arm(gw, None);
        let ready = gw.get("/readyz");
        assert_eq!(ready.status, 200, "{}", ready.text);
        let fleet_status = &ready.json()["fleet"];
        assert_eq!(fleet_status["in_sync"], false, "{fleet_status}");
        assert!(
            fleet_status["detail"]
                .as_str()
                .unwrap_or_default()
                .contains("serving the last endpoint configs this replica knew"),
            "{fleet_status}"
        );
    }
    let refused = fleet[1].put_json("/api/2.0/serving-endpoints/ab/config", &ab_config(90));
    assert_eq!(refused.status, 503, "{}", refused.text);
    assert!(
        refused.text.contains("nothing changed") && refused.text.contains("shared store"),
        "{}",
        refused.text
    );

    // Back, empty: the replicas write back what they serve (a replica started now finds
    // it), and changes flow again.
    let _redis = Redis::restart_on(port);
    common::metric_everywhere(&fleet, "modelgate_fleet_configs_in_sync", 1.0);
    let newcomer = common::start(&config(port, None), false);
    let v = view(&newcomer, "ab").expect("ab on a replica started after the outage");
    assert_eq!(v["config"]["traffic_config"], split(50), "{v}");
    wait_until_served(&newcomer, "ab");
    fleet.push(newcomer);
    let r = fleet[1].put_json("/api/2.0/serving-endpoints/ab/config", &ab_config(90));
    assert_eq!(r.status, 200, "{}", r.text);
    propagation(&fleet, Instant::now(), PROPAGATION, |gw| {
        view(gw, "ab").is_some_and(|v| v["config"]["traffic_config"] == split(90))
    });
}

/// The store's rules, one call at a time against a real Redis: what a creation, a change on
/// a stale revision, a claim and a delete each find.
#[test]
fn the_config_store_compares_and_sets_and_a_claim_lapses_without_its_replica() {
    use modelgate::fleet::configs::{ConfigStore, Expect, Outcome, ANY_CLAIM};
    use modelgate::settings::fleet::FleetSettings;

    let redis = Redis::start();
    let store = ConfigStore::new(&FleetSettings {
        redis_url: Some(format!("redis://127.0.0.1:{}", redis.port)),
        ..Default::default()
    })
    .unwrap();
    let first = store.snapshot().unwrap();
    assert_eq!((first.revision, first.records.len()), (0, 0));

    // A creation expects no config; a second one finds it.
    assert_eq!(
        store
            .commit("e", Expect::Absent, Some("{1}"), None)
            .unwrap(),
        Outcome::Done(1)
    );
    assert_eq!(
        store
            .commit("e", Expect::Absent, Some("{x}"), None)
            .unwrap(),
        Outcome::Changed {
            revision: 1,
            exists: true
        }
    );
    // A change built on an old revision is refused; on the current one, made.
    assert_eq!(
        store
            .commit("e", Expect::Revision(0), Some("{x}"), None)
            .unwrap(),
        Outcome::Changed {
            revision: 1,
            exists: true
        }
    );
    assert_eq!(
        store
            .commit("e", Expect::Revision(1), Some("{2}"), None)
            .unwrap(),
        Outcome::Done(2)
    );

    // A claim keeps every other change out while its replica renews it...
    let ttl = Duration::from_millis(300);
    assert_eq!(store.claim("e", 2, "a", ttl).unwrap(), Outcome::Done(2));
    assert_eq!(store.claim("e", 2, "b", ttl).unwrap(), Outcome::Claimed);
    assert_eq!(
        store
            .commit("e", Expect::Revision(2), Some("{b}"), None)
            .unwrap(),
        Outcome::Claimed
    );
    // Renewed by its holder (its time to live, on Redis's clock, starts again), and only by
    // its holder.
    let client = redis::Client::open(format!("redis://127.0.0.1:{}", redis.port)).unwrap();
    let mut conn = client.get_connection().unwrap();
    let ttl_left = |conn: &mut redis::Connection| -> i64 {
        redis::cmd("PTTL")
            .arg("modelgate:control:claim:e")
            .query(conn)
            .unwrap()
    };
    assert!(store
        .keep_claim("e", "a", Some(Duration::from_secs(60)))
        .unwrap());
    assert!(ttl_left(&mut conn) > 30_000);
    assert!(!store.keep_claim("e", "b", Some(ttl)).unwrap());
    assert!(ttl_left(&mut conn) > 30_000);
    assert!(store.keep_claim("e", "a", Some(ttl)).unwrap());
    assert_eq!(store.claim("e", 2, "b", ttl).unwrap(), Outcome::Claimed);
    // ...and lapses once it stops (a replica killed while its models load).
    common::wait_for("the claim to lapse", Duration::from_secs(5), || {
        (store.claim("e", 2, "b", ttl).unwrap() == Outcome::Done(2)).then_some(())
    });
    assert!(!store.keep_claim("e", "a", Some(ttl)).unwrap());
    // The holder's change ends its claim; a delete goes before anyone's.
    assert_eq!(
        store
            .commit("e", Expect::Revision(2), Some("{3}"), Some("b"))
            .unwrap(),
        Outcome::Done(3)
    );
    assert_eq!(store.claim("e", 3, "c", ttl).unwrap(), Outcome::Done(3));
    assert_eq!(
        store
            .commit("e", Expect::Revision(3), None, Some(ANY_CLAIM))
            .unwrap(),
        Outcome::Done(4)
    );
    // The deleted endpoint keeps its revision (replicas that knew it learn of the deletion),
    // and may be created again.
    let snapshot = store.snapshot().unwrap();
    let e = &snapshot.records["e"];
    assert_eq!((e.revision, e.config.clone()), (4, None));
    assert_eq!(snapshot.revision, 4);
    assert_eq!(store.revision().unwrap(), (4, Some(snapshot.epoch.clone())));
    assert_eq!(
        store
            .commit("e", Expect::Absent, Some("{5}"), None)
            .unwrap(),
        Outcome::Done(5)
    );
    // A write-back takes the revision its replica knew, if the store is below it: the
    // newest of several wins.
    assert_eq!(
        store
            .commit("e", Expect::Below(9), Some("{9}"), None)
            .unwrap(),
        Outcome::Done(9)
    );
    assert_eq!(
        store
            .commit("e", Expect::Below(7), Some("{7}"), None)
            .unwrap(),
        Outcome::Changed {
            revision: 9,
            exists: true
        }
    );
    assert_eq!(
        store.snapshot().unwrap().records["e"].config.as_deref(),
        Some("{9}")
    );
    // The epoch stays while the data does (a store that lost it makes another).
    assert_eq!(store.snapshot().unwrap().epoch, first.epoch);
}

#[test]
fn a_replica_started_while_the_store_is_down_serves_its_own_and_joins_when_it_is_back() {
    let mut redis = Redis::start();
    let port = redis.port;
    let first = common::start(&config(port, None), false);
    common::metric_everywhere(
        std::slice::from_ref(&first),
        "modelgate_fleet_configs_in_sync",
        1.0,
    );
    redis.stop();
    // Started with no store: it serves the config file's endpoint and says it is out of sync.
    let late = common::start(&config(port, None), false);
    assert_eq!(late.invoke("base", &common::join_rows(1)).status, 200);
    let ready = late.get("/readyz");
    assert_eq!(ready.status, 200, "{}", ready.text);
    assert_eq!(ready.json()["fleet"]["in_sync"], false, "{}", ready.text);
    assert_eq!(late.metric("modelgate_fleet_configs_in_sync"), Some(0.0));
    // The store is back: both find it, and a change through the first reaches the late one.
    let _redis = Redis::restart_on(port);
    let fleet = [first, late];
    common::metric_everywhere(&fleet, "modelgate_fleet_configs_in_sync", 1.0);
    let r = fleet[0].post_json(
        "/api/2.0/serving-endpoints",
        &json!({"name": "ab", "config": ab_config(50)}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    propagation(&fleet, Instant::now(), PROPAGATION, |gw| {
        known_version(gw, "ab") == Some(1)
    });
}

/// A change whose models do not load on one replica (here: it has no ONNX Runtime) is not
/// served there: that replica keeps its config, says so, and refuses changes built on it
/// (409) rather than undoing the fleet's change.
#[test]
fn a_change_that_does_not_load_on_a_replica_is_not_served_there_nor_undone_by_it() {
    let redis = Redis::start();
    let with_ort = common::start(&config(redis.port, None), true);
    let without_ort = common::start(&config(redis.port, None), false);
    let fleet = [with_ort, without_ort];
    common::metric_everywhere(&fleet, "modelgate_fleet_configs_in_sync", 1.0);
    let on_ort = json!({"served_entities": [
        {"name": "o", "entity_name": "transactions", "entity_version": "1", "engine": "ort"}
    ]});
    let r = fleet[0].put_json("/api/2.0/serving-endpoints/base/config", &on_ort);
    assert_eq!(r.status, 200, "{}", r.text);
    common::wait_for(
        "the update to serve where it loads",
        Duration::from_secs(60),
        || {
            let v = view(&fleet[0], "base")?;
            (v["config"]["config_version"] == 2 && v["state"]["config_update"] == "NOT_UPDATING")
                .then_some(())
        },
    );
    // The replica without ONNX Runtime keeps serving version 1 of the config and says why.
    let failed = "modelgate_fleet_config_changes_applied_total{change=\"failed\"}";
    fleet[1].wait_for_metric(failed, 1.0);
    let v = view(&fleet[1], "base").unwrap();
    assert_eq!(v["config"]["config_version"], 1, "{v}");
    assert_eq!(fleet[1].invoke("base", &common::join_rows(1)).status, 200);
    let ready = fleet[1].get("/readyz").json();
    assert_eq!(ready["fleet"]["in_sync"], false, "{ready}");
    assert!(
        ready["fleet"]["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("base"),
        "{ready}"
    );
    // A change through it would build on version 1: refused, the fleet's change stands.
    let resplit = json!({"served_entities": [
        {"name": "t", "entity_name": "transactions", "entity_version": "1", "engine": "tract"}
    ]});
    let r = fleet[1].put_json("/api/2.0/serving-endpoints/base/config", &resplit);
    assert_eq!(r.status, 409, "{}", r.text);
    assert!(
        r.text.contains("changed meanwhile through another replica")
            || r.text.contains("is being updated"),
        "{}",
        r.text
    );
    let v = view(&fleet[0], "base").unwrap();
    assert_eq!(v["config"]["served_entities"][0]["name"], "o", "{v}");
}

/// A Redis restored from an older copy of its data (a snapshot, a lagging failover) keeps its
/// epoch but goes back in revisions: the replicas write the newer configs back, and changes
/// go on.
#[test]
fn a_store_restored_from_an_older_copy_gets_the_newer_configs_back() {
    let redis = Redis::start();
    let fleet: Vec<Gateway> = (0..2)
        .map(|_| common::start(&config(redis.port, None), false))
        .collect();
    create_ab_everywhere(&fleet);
    // The store's control keys now: the "older copy".
    let client = redis::Client::open(format!("redis://127.0.0.1:{}", redis.port)).unwrap();
    let mut conn = client.get_connection().unwrap();
    let keys = ["modelgate:control:revisions", "modelgate:control:configs"];
    let older: Vec<Vec<(String, String)>> = keys
        .iter()
        .map(|k| redis::cmd("HGETALL").arg(*k).query(&mut conn).unwrap())
        .collect();
    let older_revision: String = redis::cmd("GET")
        .arg("modelgate:control:revision")
        .query(&mut conn)
        .unwrap();
    // Two changes the older copy does not have (so that the store's revision after the
    // write-back is below the one the replicas served before the restore).
    for (through, champion) in [(1, 90), (0, 80)] {
        let r =
            fleet[through].put_json("/api/2.0/serving-endpoints/ab/config", &ab_config(champion));
        assert_eq!(r.status, 200, "{}", r.text);
        propagation(&fleet, Instant::now(), PROPAGATION, |gw| {
            view(gw, "ab").is_some_and(|v| v["config"]["traffic_config"] == split(champion))
        });
    }
    // Restored: the 50/50 split again, at the older revisions.
    // In one step, as a restore is.
    let mut restore = redis::pipe();
    restore.atomic();
    for (key, fields) in keys.iter().zip(&older) {
        restore.cmd("HSET").arg(*key);
        for (f, v) in fields {
            restore.arg(f).arg(v);
        }
        restore.ignore();
    }
    restore
        .cmd("SET")
        .arg("modelgate:control:revision")
        .arg(&older_revision)
        .ignore();
    let _: () = restore.query(&mut conn).unwrap();
    let _: () = redis::cmd("PUBLISH")
        .arg("modelgate:control:changes")
        .arg("ab")
        .query(&mut conn)
        .unwrap();
    // The replicas write 80/20 back: a replica started now serves it, and a change through
    // either goes through.
    common::wait_for(
        "the newer config written back",
        Duration::from_secs(10),
        || {
            let configs: Vec<(String, String)> =
                redis::cmd("HGETALL").arg(keys[1]).query(&mut conn).ok()?;
            configs
                .iter()
                .any(|(n, c)| n == "ab" && c.contains("\"traffic_percentage\":80"))
                .then_some(())
        },
    );
    // Every replica serves the store's configs at its revision (the gauge says which).
    let revision: f64 = redis::cmd("GET")
        .arg("modelgate:control:revision")
        .query::<String>(&mut conn)
        .unwrap()
        .parse()
        .unwrap();
    common::metric_everywhere(&fleet, "modelgate_fleet_configs_revision", revision);
    let newcomer = common::start(&config(redis.port, None), false);
    let v = view(&newcomer, "ab").unwrap();
    assert_eq!(v["config"]["traffic_config"], split(80), "{v}");
    for gw in &fleet {
        assert_eq!(
            view(gw, "ab").unwrap()["config"]["traffic_config"],
            split(80)
        );
    }
    let r = fleet[0].put_json("/api/2.0/serving-endpoints/ab/config", &ab_config(70));
    assert_eq!(r.status, 200, "{}", r.text);
}
