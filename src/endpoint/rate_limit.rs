//! Per-endpoint rate limits in Databricks' shape (`rate_limits: [{calls, key, renewal_period}]`):
//! at most `calls` requests per minute for the whole endpoint (`key: endpoint`) or per caller
//! (`key: user`: the token's name, or the client address when tokens are off). Fixed windows
//! of one clock minute: cheap, and what Databricks documents (calls per minute). With a fleet
//! (`fleet.redis_url`) the counts are the fleet's ([`crate::fleet`]).

use std::sync::{Arc, Mutex};

use crate::fleet::{CounterKey, FleetCounts};
use crate::sharded_map::{ShardedMap, Table};

pub use crate::settings::endpoint::{RateLimit, RateLimitKey, RenewalPeriod};

/// Callers counted apart within one minute; beyond it the rest share one count (memory stays
/// bounded whatever the callers).
const MAX_KEYS: usize = 100_000;
const SHARED_KEY: &str = "_other";

/// One minute's counts. With up to [`MAX_KEYS`] callers, a single table grew by moving them
/// all at once, and a new minute freed them all at once, each for milliseconds with the
/// limit's lock held (`cargo bench --bench rate_limit`): so the counts are split over many
/// small tables ([`ShardedMap`]), and the last minute's are freed a table a call.
#[derive(Default)]
struct Window {
    minute: u64,
    counts: ShardedMap<String, u64>,
    /// Past minutes' tables that hold callers, not yet freed: a call this limit counts frees
    /// one. A minute adds at most as many as this limit counted calls in it, so they drain as
    /// fast as they come.
    retired: Vec<Table<String, u64>>,
}

/// The counters of an endpoint config's limits.
pub struct RateLimiter {
    limits: Vec<(RateLimit, Mutex<Window>)>,
    /// The fleet's counts, the endpoint's name in them and each limit's name in them, when
    /// replicas share counts.
    fleet: Option<Fleet>,
}

struct Fleet {
    counts: Arc<FleetCounts>,
    endpoint: Arc<str>,
    /// Per limit: its place, calls and key kind (a changed list counts afresh).
    limit_ids: Vec<Arc<str>>,
}

impl RateLimiter {
    /// None without limits. With `fleet` (the counts replicas share, and the endpoint's name),
    /// the limits are the fleet's.
    pub fn new(limits: &[RateLimit], fleet: Option<(Arc<FleetCounts>, &str)>) -> Option<Self> {
        (!limits.is_empty()).then(|| Self {
            limits: limits
                .iter()
                .map(|l| (l.clone(), Mutex::new(Window::default())))
                .collect(),
            fleet: fleet.map(|(counts, endpoint)| Fleet {
                counts,
                endpoint: endpoint.into(),
                limit_ids: limits
                    .iter()
                    .enumerate()
                    .map(|(i, l)| {
                        let kind = match l.key {
                            RateLimitKey::Endpoint | RateLimitKey::UserGroup => "endpoint",
                            RateLimitKey::User | RateLimitKey::ServicePrincipal => "user",
                        };
                        format!("{i}-{}-{kind}", l.calls).into()
                    })
                    .collect(),
            }),
        })
    }

    /// Counts a call by `requester` at `now_ms`; `Err((calls, seconds to wait))` when a limit
    /// is reached (the call is not counted then).
    pub fn check(&self, requester: &str, now_ms: u64) -> Result<(), (u64, u64)> {
        if let Some(fleet) = &self.fleet {
            return self.check_fleet(fleet, requester, now_ms);
        }
        self.check_here(requester, now_ms)
    }

    fn wait(now_ms: u64) -> u64 {
        (60 - (now_ms / 1000) % 60).max(1)
    }

    fn check_fleet(&self, fleet: &Fleet, requester: &str, now_ms: u64) -> Result<(), (u64, u64)> {
        let minute = now_ms / 60_000;
        let mut keys: Vec<(CounterKey, u64)> = Vec::with_capacity(self.limits.len());
        for ((limit, _), id) in self.limits.iter().zip(&fleet.limit_ids) {
            if !limit.counts(requester) {
                continue;
            }
            let caller = match limit.key {
                RateLimitKey::Endpoint | RateLimitKey::UserGroup => String::new(),
                RateLimitKey::User | RateLimitKey::ServicePrincipal => requester.to_owned(),
            };
            let key = CounterKey {
                endpoint: fleet.endpoint.clone(),
                limit: id.clone(),
                caller,
                minute,
            };
            keys.push((key, limit.calls));
        }
        if keys.is_empty() {
            return Ok(());
        }
        match fleet.counts.admit(&mut keys, now_ms) {
            None => Ok(()),
            Some(i) => Err((keys[i].1, Self::wait(now_ms))),
        }
    }

    fn check_here(&self, requester: &str, now_ms: u64) -> Result<(), (u64, u64)> {
        let minute = now_ms / 60_000;
        // Past minutes' tables, freed once the locks are let go (declared first, dropped
        // last): one a limit a call, so that no call frees a whole minute of callers and no
        // limit's tables pile up behind another's. Allocated only while some wait.
        let mut past: Vec<Table<String, u64>> = Vec::new();
        let mut windows: Vec<_> = self
            .limits
            .iter()
            .map(|(l, w)| (l, w.lock().unwrap_or_else(|e| e.into_inner())))
            .collect();
        // All limits are checked before any counts: a refused call uses no allowance.
        for (limit, w) in &mut windows {
            if !limit.counts(requester) {
                continue;
            }
            if w.minute != minute {
                w.minute = minute;
                let ended = std::mem::take(&mut w.counts).into_tables();
                w.retired
                    .extend(ended.into_iter().filter(|t| !t.is_empty()));
            }
            past.extend(w.retired.pop());
            let key = key_of(limit.key, requester, w);
            if w.counts.get(key).copied().unwrap_or(0) >= limit.calls {
                return Err((limit.calls, Self::wait(now_ms)));
            }
        }
        for (limit, w) in windows.iter_mut().filter(|(l, _)| l.counts(requester)) {
            let key = key_of(limit.key, requester, w);
            match w.counts.get_mut(key) {
                Some(n) => *n += 1,
                None => {
                    w.counts.get_or_insert_with(key.to_owned(), || 1);
                }
            }
        }
        Ok(())
    }
}

fn key_of<'a>(key: RateLimitKey, requester: &'a str, w: &Window) -> &'a str {
    match key {
        // Refused by the config's check; counted as one endpoint-wide limit if it got here.
        RateLimitKey::Endpoint | RateLimitKey::UserGroup => "",
        _ if w.counts.len() < MAX_KEYS || w.counts.get(requester).is_some() => requester,
        RateLimitKey::User | RateLimitKey::ServicePrincipal => SHARED_KEY,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(calls: u64, key: RateLimitKey) -> RateLimit {
        RateLimit {
            key,
            ..RateLimit::per_endpoint(calls)
        }
    }

    #[test]
    fn calls_per_minute_per_endpoint_and_per_user() {
        let r = RateLimiter::new(
            &[
                limit(3, RateLimitKey::Endpoint),
                limit(2, RateLimitKey::User),
            ],
            None,
        )
        .unwrap();
        let t = 60_000 * 1000 + 15_000; // 15 s into a minute
        assert!(r.check("ann", t).is_ok());
        assert!(r.check("ann", t).is_ok());
        // ann's own limit; the refused call is not counted against the endpoint.
        assert_eq!(r.check("ann", t), Err((2, 45)));
        assert!(r.check("bob", t).is_ok());
        assert_eq!(r.check("cy", t + 1000), Err((3, 44)));
        // The next minute starts over.
        assert!(r.check("ann", t + 45_000).is_ok());
        assert!(RateLimiter::new(&[], None).is_none());
    }

    /// A new minute does not free the last one's callers at once: its tables go one a call,
    /// and the new minute counts from nothing.
    #[test]
    fn a_minute_of_many_callers_is_freed_a_table_a_call() {
        let r = RateLimiter::new(&[limit(10, RateLimitKey::User)], None).unwrap();
        let retired = |r: &RateLimiter| r.limits[0].1.lock().unwrap().retired.len();
        let held = |r: &RateLimiter| -> usize {
            let w = r.limits[0].1.lock().unwrap();
            w.retired.iter().map(|t| t.len()).sum()
        };
        let t = 60_000 * 1000;
        for n in 0..1000 {
            assert!(r.check(&format!("c{n}"), t).is_ok());
        }
        assert_eq!(retired(&r), 0);
        // 1,000 callers over 256 tables: nearly all of them hold some, and those wait.
        assert!(r.check("c0", t + 60_000).is_ok());
        let waiting = retired(&r);
        assert!(waiting > crate::sharded_map::SHARDS - 30, "{waiting}");
        assert!(r.check("c1", t + 60_000).is_ok());
        assert_eq!(retired(&r), waiting - 1);
        let w = r.limits[0].1.lock().unwrap();
        assert_eq!((w.counts.get("c0"), w.counts.len()), (Some(&1), 2));
        drop(w);
        // A quiet minute later, what is left of the busy one still goes a table a call (the
        // quiet minute's own one or two tables join it).
        let before = held(&r);
        assert!(before > 900, "{before}");
        assert!(r.check("c2", t + 120_000).is_ok());
        assert!(held(&r) > before - 100, "{} of {before}", held(&r));
    }

    /// With two per-caller limits each frees its own past tables: freeing one table a call
    /// across both let the second limit's pile up (a minute adds up to as many tables to each
    /// as it had calls).
    #[test]
    fn every_limit_frees_its_own_past_minute() {
        let r = RateLimiter::new(
            &[limit(10, RateLimitKey::User), limit(20, RateLimitKey::User)],
            None,
        )
        .unwrap();
        let retired = |r: &RateLimiter, i: usize| r.limits[i].1.lock().unwrap().retired.len();
        let t = 60_000 * 1000;
        for n in 0..1000 {
            assert!(r.check(&format!("c{n}"), t).is_ok());
        }
        assert!(r.check("c0", t + 60_000).is_ok());
        let waiting = (retired(&r, 0), retired(&r, 1));
        for n in 1..=10 {
            assert!(r.check(&format!("c{n}"), t + 60_000).is_ok());
        }
        assert_eq!(
            (retired(&r, 0), retired(&r, 1)),
            (waiting.0 - 10, waiting.1 - 10)
        );
    }

    /// The AI gateway's limit for one principal counts that caller only.
    #[test]
    fn a_limit_with_a_principal_counts_that_caller_alone() {
        let r = RateLimiter::new(
            &[RateLimit {
                principal: Some("etl".into()),
                ..limit(1, RateLimitKey::ServicePrincipal)
            }],
            None,
        )
        .unwrap();
        let t = 60_000 * 1000;
        assert!(r.check("etl", t).is_ok());
        assert_eq!(r.check("etl", t), Err((1, 60)));
        assert!(r.check("ann", t).is_ok());
        assert!(r.check("ann", t).is_ok());
    }

    #[test]
    fn databricks_shape_parses() {
        let l: Vec<RateLimit> = serde_json::from_str(
            r#"[{"calls": 100, "key": "user", "renewal_period": "minute"}, {"calls": 5}]"#,
        )
        .unwrap();
        assert_eq!(l[0], limit(100, RateLimitKey::User));
        assert_eq!(l[1], limit(5, RateLimitKey::Endpoint));
        assert!(
            serde_json::from_str::<RateLimit>(r#"{"calls": 1, "renewal_period": "hour"}"#).is_err()
        );
    }
}
