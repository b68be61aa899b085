//! What the replicas of one deployment share through Redis (`fleet.redis_url`); one process
//! needs none of it. The endpoint configs of the control plane (`configs`), labels relayed to
//! the replica holding their predictions (`labels`), monitoring profiles every replica adds to
//! its reports (`profiles`), and the counts of
//! rate limits (here), so that a limit of R calls a minute admits about R across the fleet
//! rather than R per replica.
//!
//! Each replica judges and counts its calls where they arrive (no round trip on the request
//! path). Every `fleet.sync_interval_ms` a thread of its own writes the replica's own count of
//! each counter it changed into the counter's hash in Redis (one field per replica: a write
//! sent twice counts once, and a Redis that lost its data gets the counts back from the
//! replicas) and reads the hash back, with the replica's heartbeat, in one pipelined round
//! trip. Between two syncs a replica admits at most its share, 1/N of the headroom it last saw
//! (N the live replicas). When the store has not answered for a while, each replica admits R/N
//! calls a minute on its own counts (N the last fleet size it saw), and says so in a metric.
//! docs/operations.md, "Rate limits across replicas", states the error bounds.

pub mod configs;
pub mod conn;
pub mod labels;
pub mod profiles;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tracing::{info, warn};

use crate::metrics::Metrics;
use crate::settings::fleet::FleetSettings;

/// Counters held at once; beyond, new callers share one (memory stays bounded).
pub const MAX_COUNTERS: usize = 100_000;
/// The key new callers share beyond [`MAX_COUNTERS`].
pub const SHARED_KEY: &str = "_other";
/// How long the store keeps a minute's counter (the minute and the next, with margin).
const COUNTER_TTL_S: u64 = 180;
/// Counters written and read in one round trip at most; the rest wait for the next sync.
pub const MAX_PER_SYNC: usize = 5_000;

/// Marks replica ARGV[1] alive at Redis's time, forgets those silent for ARGV[2] ms, and
/// counts the rest. KEYS: the heartbeat set.
const HEARTBEAT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
return redis.call('ZCARD', KEYS[1])
"#;

/// The sum of a hash's values (each replica's count), as `HVALS` gives them.
fn sum_of_values(v: &redis::Value) -> u64 {
    <Vec<u64> as redis::FromRedisValue>::from_redis_value_ref(v)
        .map(|counts| counts.iter().sum())
        .unwrap_or(0)
}

/// One limit's count of one caller (or of the endpoint) in one clock minute.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CounterKey {
    pub endpoint: Arc<str>,
    /// The limit: its place in the endpoint's list, its calls and key kind (a changed list
    /// counts afresh).
    pub limit: Arc<str>,
    /// The caller, or empty for an endpoint-wide limit.
    pub caller: String,
    pub minute: u64,
}

impl CounterKey {
    fn redis_key(&self, prefix: &str) -> String {
        format!(
            "{prefix}:rl:{}:{}:{}:{}",
            self.endpoint, self.limit, self.minute, self.caller
        )
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Counter {
    /// The fleet's count at the last sync that read it, this replica's calls included.
    fleet: u64,
    /// This replica's calls this minute.
    ours: u64,
    /// `ours` as the last sync that read the fleet's count wrote it.
    ours_synced: u64,
    /// When the last sync read it (ms since the epoch; 0: never).
    read_ms: u64,
}

/// The fleet's rate-limit counts as this replica knows them.
pub struct FleetCounts {
    prefix: String,
    /// This replica in the fleet's heartbeat set.
    replica: String,
    counters: Mutex<HashMap<CounterKey, Counter>>,
    /// Live replicas at the last sync (at least 1).
    replicas: AtomicU64,
    /// When the last sync succeeded (ms since the epoch; 0: never).
    synced_ms: AtomicU64,
    stale_after_ms: u64,
    replica_ttl_ms: u64,
    metrics: Arc<Metrics>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl FleetCounts {
    pub fn new(settings: &FleetSettings, metrics: Arc<Metrics>) -> Self {
        Self {
            prefix: settings.key_prefix.clone(),
            replica: uuid::Uuid::new_v4().to_string(),
            counters: Mutex::new(HashMap::new()),
            replicas: AtomicU64::new(1),
            synced_ms: AtomicU64::new(0),
            // A sync's period is its interval plus its round trip, and a reconnect may take two
            // timeouts: out of touch only past all of that.
            stale_after_ms: 3 * settings.sync_interval_ms + 2 * settings.timeout_ms,
            replica_ttl_ms: settings.replica_ttl_ms,
            metrics,
        }
    }

    /// Live replicas at the last sync.
    pub fn replicas(&self) -> u64 {
        self.replicas.load(Ordering::Relaxed).max(1)
    }

    /// Whether the store answered lately (three sync intervals and two timeouts) at `now_ms`.
    pub fn in_touch(&self, now_ms: u64) -> bool {
        let synced = self.synced_ms.load(Ordering::Acquire);
        synced > 0 && now_ms.saturating_sub(synced) <= self.stale_after_ms
    }

    /// Whether each `(counter, calls)` has room for one more call at `now_ms`: none, and the
    /// call is counted in each; else the index of the first counter without room.
    pub fn admit(&self, keys: &mut [(CounterKey, u64)], now_ms: u64) -> Option<usize> {
        let in_touch = self.in_touch(now_ms);
        let n = self.replicas();
        let mut counters = lock(&self.counters);
        for (key, _) in keys.iter_mut() {
            if counters.len() >= MAX_COUNTERS && !counters.contains_key(key) {
                key.caller = SHARED_KEY.into();
            }
        }
        let refused_by = keys.iter().position(|(key, calls)| {
            let c = counters.get(key).copied().unwrap_or_default();
            if in_touch {
                let since_sync = c.ours - c.ours_synced;
                let headroom = calls.saturating_sub(c.fleet);
                since_sync >= headroom.div_ceil(n)
            } else {
                c.ours >= calls.div_ceil(n)
            }
        });
        if refused_by.is_none() {
            for (key, _) in keys.iter() {
                match counters.get_mut(key) {
                    Some(c) => c.ours += 1,
                    None => {
                        counters.insert(
                            key.clone(),
                            Counter {
                                ours: 1,
                                ..Counter::default()
                            },
                        );
                    }
                }
            }
        }
        drop(counters);
        if let (false, Some((key, _))) = (in_touch, keys.first()) {
            self.metrics
                .fleet
                .fallback_calls
                .with_label_values(&[&key.endpoint])
                .inc();
        }
        refused_by
    }

    /// Drops the counters of minutes before the last (also while the store is away, so they
    /// never pile up).
    fn purge(&self, now_ms: u64) {
        let minute = now_ms / 60_000;
        lock(&self.counters).retain(|k, _| k.minute + 1 >= minute);
    }

    /// The counters a sync sends: those changed since their last sync, and those of this
    /// minute not read for a second (to learn the other replicas' calls); the changed ones
    /// first, at most [`MAX_PER_SYNC`].
    fn batch(&self, now_ms: u64) -> Vec<(CounterKey, u64)> {
        let minute = now_ms / 60_000;
        let counters = lock(&self.counters);
        let mut changed = Vec::new();
        let mut stale = Vec::new();
        for (k, c) in counters.iter() {
            if c.ours != c.ours_synced {
                changed.push((k.clone(), c.ours));
            } else if k.minute == minute && now_ms.saturating_sub(c.read_ms) >= 1_000 {
                stale.push((k.clone(), c.ours));
            }
        }
        changed.extend(stale);
        changed.truncate(MAX_PER_SYNC);
        changed
    }

    /// Writes this replica's count of each counter in `batch` and reads the fleet's back, with
    /// its heartbeat. Idempotent: a round trip that failed after Redis applied it is sent again
    /// with the same counts.
    fn sync(&self, conn: &mut redis::Connection, now_ms: u64) -> redis::RedisResult<()> {
        let batch = self.batch(now_ms);
        let mut pipe = redis::pipe();
        for (key, ours) in &batch {
            let name = key.redis_key(&self.prefix);
            pipe.cmd("HSET")
                .arg(&name)
                .arg(&self.replica)
                .arg(*ours)
                .ignore();
            pipe.cmd("EXPIRE").arg(&name).arg(COUNTER_TTL_S).ignore();
            pipe.cmd("HVALS").arg(&name);
        }
        // The heartbeat, aged by Redis's clock: replicas whose clocks differ still agree
        // on who is alive.
        pipe.cmd("EVAL")
            .arg(HEARTBEAT)
            .arg(1)
            .arg(format!("{}:replicas", self.prefix))
            .arg(&self.replica)
            .arg(self.replica_ttl_ms);
        let answer: Vec<redis::Value> = pipe.query(conn)?;
        if answer.len() != batch.len() + 1 {
            return Err(redis::RedisError::from((
                redis::ErrorKind::Parse,
                "an answer of another length",
                format!("{} values for {} counters", answer.len(), batch.len()),
            )));
        }
        let totals: Vec<u64> = answer[..batch.len()].iter().map(sum_of_values).collect();
        let replicas = <u64 as redis::FromRedisValue>::from_redis_value_ref(&answer[batch.len()])
            .unwrap_or(1)
            .max(1);
        let mut counters = lock(&self.counters);
        for ((key, ours), total) in batch.iter().zip(totals) {
            if let Some(c) = counters.get_mut(key) {
                c.ours_synced = *ours;
                c.read_ms = now_ms;
                // Never below what the fleet was known to hold (a store that lost its data
                // gets the counts back as the replicas write them).
                c.fleet = total.max(*ours);
            }
        }
        drop(counters);
        self.replicas.store(replicas, Ordering::Relaxed);
        self.synced_ms.store(now_ms.max(1), Ordering::Release);
        self.metrics.fleet.replicas.set(replicas as i64);
        Ok(())
    }

    /// Syncs every `sync_interval_ms` on a thread of its own until the handle is dropped.
    pub fn spawn(
        self: &Arc<Self>,
        settings: &FleetSettings,
    ) -> std::io::Result<crate::periodic::Periodic> {
        let store = conn::Conn::open(settings).map_err(std::io::Error::other)?;
        let counts = self.clone();
        let mut up = None;
        let interval = Duration::from_millis(settings.sync_interval_ms);
        crate::periodic::spawn("modelgate-fleet", interval, move || {
            counts.purge(crate::clock::now_ms());
            match store.run(|c| counts.sync(c, crate::clock::now_ms())) {
                Ok(()) => {
                    if up != Some(true) {
                        info!(store = %store.shown(), replicas = counts.replicas(), "the fleet's shared store answers");
                        up = Some(true);
                    }
                }
                // Logged once, when the outage begins.
                Err(e) if up != Some(false) => {
                    warn!("{e}; rate limits fall back to each replica's share");
                    up = Some(false);
                }
                Err(_) => {}
            }
            // Up while calls are judged on the fleet's counts: down once they are not.
            let in_touch = counts.in_touch(crate::clock::now_ms());
            counts.metrics.fleet.store_up.set(i64::from(in_touch));
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts() -> FleetCounts {
        FleetCounts::new(&FleetSettings::default(), Arc::new(Metrics::new()))
    }

    fn key(caller: &str, minute: u64) -> CounterKey {
        CounterKey {
            endpoint: "e".into(),
            limit: "0-10-user".into(),
            caller: caller.into(),
            minute,
        }
    }

    /// Sets what the last sync said (the fleet's counts and size), as a sync would.
    fn synced(f: &FleetCounts, fleet: &[(CounterKey, u64)], replicas: u64, now_ms: u64) {
        let mut counters = lock(&f.counters);
        for (k, total) in fleet {
            let c = counters.entry(k.clone()).or_default();
            c.fleet = *total;
            c.ours_synced = c.ours;
            c.read_ms = now_ms;
        }
        f.replicas.store(replicas, Ordering::Relaxed);
        f.synced_ms.store(now_ms, Ordering::Release);
    }

    fn admitted(f: &FleetCounts, caller: &str, calls: u64, now_ms: u64) -> bool {
        f.admit(&mut [(key(caller, 1), calls)], now_ms).is_none()
    }

    #[test]
    fn between_syncs_a_replica_admits_its_share_of_the_headroom() {
        let f = counts();
        let now = 60_000 + 500;
        // Three replicas, 4 of 10 calls counted fleet-wide: this one may take ceil(6 / 3) = 2.
        synced(&f, &[(key("ann", 1), 4)], 3, now);
        assert!(admitted(&f, "ann", 10, now));
        assert!(admitted(&f, "ann", 10, now));
        assert!(!admitted(&f, "ann", 10, now));
        // The next sync says 9 (ours and the others'): ceil(1 / 3) = 1 more.
        synced(&f, &[(key("ann", 1), 9)], 3, now + 100);
        assert!(admitted(&f, "ann", 10, now + 100));
        assert!(!admitted(&f, "ann", 10, now + 100));
        synced(&f, &[(key("ann", 1), 10)], 3, now + 200);
        assert!(!admitted(&f, "ann", 10, now + 200));
        // Another caller has its own count.
        assert!(admitted(&f, "bob", 10, now + 200));
    }

    #[test]
    fn without_the_store_each_replica_admits_its_share_of_the_limit_on_its_own_counts() {
        let f = counts();
        synced(&f, &[], 3, 1_000);
        // Three intervals and two timeouts without a sync: out of touch.
        let later = 1_000 + 3 * 100 + 2 * 250 + 1;
        assert!(!f.in_touch(later));
        assert_eq!(f.admit(&mut [(key("ann", 1), 10)], later), None);
        assert!(admitted(&f, "ann", 10, later));
        assert!(admitted(&f, "ann", 10, later));
        assert!(admitted(&f, "ann", 10, later));
        // ceil(10 / 3) = 4 on this replica's own count.
        assert!(!admitted(&f, "ann", 10, later));
    }

    #[test]
    fn a_refused_call_counts_nowhere_and_the_first_full_counter_is_named() {
        let f = counts();
        synced(&f, &[(key("", 1), 0)], 1, 1_000);
        let mut keys = [(key("", 1), 100), (key("ann", 1), 1)];
        assert_eq!(f.admit(&mut keys, 1_000), None);
        assert_eq!(f.admit(&mut keys, 1_000), Some(1));
        let endpoint = lock(&f.counters)[&key("", 1)];
        assert_eq!((endpoint.ours, endpoint.ours_synced), (1, 0));
    }

    #[test]
    fn a_sync_sends_changed_counters_first_then_unread_ones_and_old_minutes_go() {
        let f = counts();
        let minute = 60_000;
        // ann and bob in minute 1; bob synced just now, cy a second ago; an old minute too.
        synced(&f, &[(key("bob", 1), 5), (key("cy", 1), 5)], 1, minute);
        assert!(admitted(&f, "ann", 10, minute + 1));
        lock(&f.counters).insert(
            key("old", 0),
            Counter {
                ours: 3,
                ..Counter::default()
            },
        );
        let keys = |b: Vec<(CounterKey, u64)>| -> Vec<String> {
            b.into_iter().map(|(k, _)| k.caller).collect()
        };
        // At 0.5 s: only what changed (ann, and the old minute's unsent count).
        let mut sent = keys(f.batch(minute + 500));
        sent.sort();
        assert_eq!(sent, ["ann", "old"]);
        // At 1 s, also the counters of this minute not read for a second.
        let sent = keys(f.batch(minute + 1_000));
        assert_eq!(sent.len(), 4, "{sent:?}");
        assert!(
            sent[..2].iter().all(|c| c == "ann" || c == "old"),
            "{sent:?}"
        );
        // Two minutes on, minute 0 goes; minute 1 (the last) stays.
        f.purge(2 * minute + 1);
        let left: Vec<String> = lock(&f.counters).keys().map(|k| k.caller.clone()).collect();
        assert!(
            !left.contains(&"old".to_owned()) && left.len() == 3,
            "{left:?}"
        );
    }
}
