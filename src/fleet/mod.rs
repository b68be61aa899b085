//! What the replicas of one deployment share through Redis (`fleet.redis_url`); one process
//! needs none of it. For now, the counts of rate limits (`rate_limits`), so that a limit of R
//! calls a minute admits about R across the fleet rather than R per replica.
//!
//! Each replica counts its calls where they arrive (no round trip on the request path) and,
//! every `fleet.sync_interval_ms`, adds them to the fleet's counters in Redis and reads the
//! totals back, with its heartbeat, in one pipelined round trip on a thread of its own. Between
//! two syncs a replica admits at most its share, 1/N of the headroom it last saw (N the live
//! replicas): the fleet exceeds R only by what replicas admit before they see each other's
//! calls, at most one share each (docs/operations.md states the bound). When the store has not
//! answered for three intervals, each replica admits R/N calls a minute on its own counts (N
//! the last fleet size it saw), and says so in a metric.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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
    /// The fleet's count at the last sync, this replica's calls included.
    fleet: u64,
    /// This replica's calls since the last sync began.
    pending: u64,
    /// This replica's calls sent in the sync under way.
    in_flight: u64,
    /// This replica's calls this minute (what the fallback counts).
    local: u64,
}

/// How a call fared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admission {
    /// The index (in the keys asked about) of the first counter with no room; none: admitted.
    pub refused_by: Option<usize>,
    /// Judged on this replica's own counts: the store has not answered lately.
    pub fallback: bool,
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
            stale_after_ms: 3 * settings.sync_interval_ms,
            replica_ttl_ms: settings.replica_ttl_ms,
            metrics,
        }
    }

    /// Live replicas at the last sync.
    pub fn replicas(&self) -> u64 {
        self.replicas.load(Ordering::Relaxed).max(1)
    }

    /// Whether the store answered within the last three sync intervals at `now_ms`.
    pub fn in_touch(&self, now_ms: u64) -> bool {
        let synced = self.synced_ms.load(Ordering::Acquire);
        synced > 0 && now_ms.saturating_sub(synced) <= self.stale_after_ms
    }

    /// Whether each `(counter, calls)` has room for one more call at `now_ms`; when all do,
    /// the call is counted in each.
    pub fn admit(&self, keys: &mut [(CounterKey, u64)], now_ms: u64) -> Admission {
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
                let ours = c.pending + c.in_flight;
                let headroom = calls.saturating_sub(c.fleet);
                ours >= headroom.div_ceil(n)
            } else {
                c.local >= calls.div_ceil(n)
            }
        });
        if refused_by.is_none() {
            for (key, _) in keys.iter() {
                let c = counters.entry(key.clone()).or_default();
                c.pending += 1;
                c.local += 1;
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
        Admission {
            refused_by,
            fallback: !in_touch,
        }
    }

    /// Adds this replica's calls to the fleet's counters and reads them back, with its
    /// heartbeat; on an error the calls wait for the next sync.
    fn sync(&self, conn: &mut redis::Connection, now_ms: u64) -> redis::RedisResult<()> {
        let minute = now_ms / 60_000;
        let batch: Vec<(CounterKey, u64)> = {
            let mut counters = lock(&self.counters);
            counters.retain(|k, _| k.minute + 1 >= minute);
            counters
                .iter_mut()
                .map(|(k, c)| {
                    let delta = c.pending;
                    c.in_flight += delta;
                    c.pending = 0;
                    (k.clone(), delta)
                })
                .collect()
        };
        let mut pipe = redis::pipe();
        for (key, delta) in &batch {
            let name = key.redis_key(&self.prefix);
            pipe.cmd("INCRBY").arg(&name).arg(*delta);
            pipe.cmd("EXPIRE").arg(&name).arg(COUNTER_TTL_S).ignore();
        }
        let set = format!("{}:replicas", self.prefix);
        pipe.cmd("ZADD")
            .arg(&set)
            .arg(now_ms)
            .arg(&self.replica)
            .ignore();
        pipe.cmd("ZREMRANGEBYSCORE")
            .arg(&set)
            .arg("-inf")
            .arg(now_ms.saturating_sub(self.replica_ttl_ms))
            .ignore();
        pipe.cmd("ZCARD").arg(&set);
        let answer: redis::RedisResult<Vec<u64>> = pipe.query(conn);
        let mut counters = lock(&self.counters);
        let totals = match answer {
            Ok(totals) if totals.len() == batch.len() + 1 => totals,
            other => {
                for (key, delta) in &batch {
                    if let Some(c) = counters.get_mut(key) {
                        c.in_flight -= delta;
                        c.pending += delta;
                    }
                }
                return other.and_then(|t| {
                    Err(redis::RedisError::from((
                        redis::ErrorKind::Parse,
                        "an answer of another length",
                        format!("{} values for {} counters", t.len(), batch.len()),
                    )))
                });
            }
        };
        for ((key, delta), total) in batch.iter().zip(&totals) {
            if let Some(c) = counters.get_mut(key) {
                c.in_flight -= delta;
                c.fleet = *total;
            }
        }
        drop(counters);
        let replicas = totals.last().copied().unwrap_or(1).max(1);
        self.replicas.store(replicas, Ordering::Relaxed);
        self.synced_ms.store(now_ms.max(1), Ordering::Release);
        self.metrics.fleet.replicas.set(replicas as i64);
        Ok(())
    }

    /// Syncs every `sync_interval_ms` on a thread of its own until the handle is dropped.
    pub fn spawn(self: &Arc<Self>, settings: &FleetSettings) -> std::io::Result<SyncHandle> {
        let url = settings.redis_url.clone().unwrap_or_default();
        let client = redis::Client::open(url.as_str())
            .map_err(|e| std::io::Error::other(format!("fleet.redis_url: {e}")))?;
        let timeout = Duration::from_millis(settings.timeout_ms);
        let interval = Duration::from_millis(settings.sync_interval_ms);
        let stop = Arc::new(AtomicBool::new(false));
        let (counts, stopped) = (self.clone(), stop.clone());
        let shown = crate::settings::redact::redact_url(&url);
        let thread = std::thread::Builder::new()
            .name("modelgate-fleet".into())
            .spawn(move || {
                let mut conn: Option<redis::Connection> = None;
                let mut up = None;
                while !stopped.load(Ordering::Acquire) {
                    let result = match conn.as_mut() {
                        Some(c) => counts.sync(c, crate::clock::now_ms()),
                        None => connect(&client, timeout).and_then(|mut c| {
                            let r = counts.sync(&mut c, crate::clock::now_ms());
                            conn = Some(c);
                            r
                        }),
                    };
                    let ok = result.is_ok();
                    if up != Some(ok) {
                        match &result {
                            Ok(()) => info!(store = %shown, replicas = counts.replicas(), "the fleet's shared store answers"),
                            Err(e) => warn!(store = %shown, "the fleet's shared store does not answer; rate limits fall back to each replica's share: {e}"),
                        }
                        up = Some(ok);
                    }
                    counts.metrics.fleet.store_up.set(i64::from(ok));
                    if !ok {
                        conn = None;
                    }
                    std::thread::park_timeout(interval);
                }
            })?;
        Ok(SyncHandle {
            stop,
            thread: Some(thread),
        })
    }
}

fn connect(client: &redis::Client, timeout: Duration) -> redis::RedisResult<redis::Connection> {
    let conn = client.get_connection_with_timeout(timeout)?;
    conn.set_read_timeout(Some(timeout))?;
    conn.set_write_timeout(Some(timeout))?;
    Ok(conn)
}

/// The sync thread; dropping it stops the thread after its current round trip.
pub struct SyncHandle {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for SyncHandle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
        }
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
            c.pending = 0;
        }
        f.replicas.store(replicas, Ordering::Relaxed);
        f.synced_ms.store(now_ms, Ordering::Release);
    }

    fn admitted(f: &FleetCounts, caller: &str, calls: u64, now_ms: u64) -> bool {
        f.admit(&mut [(key(caller, 1), calls)], now_ms)
            .refused_by
            .is_none()
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
        // Three intervals without a sync: out of touch.
        let later = 1_000 + 301;
        let a = f.admit(&mut [(key("ann", 1), 10)], later);
        assert_eq!((a.refused_by, a.fallback), (None, true));
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
        assert_eq!(f.admit(&mut keys, 1_000).refused_by, None);
        assert_eq!(f.admit(&mut keys, 1_000).refused_by, Some(1));
        let endpoint = lock(&f.counters)[&key("", 1)];
        assert_eq!((endpoint.pending, endpoint.local), (1, 1));
    }
}
