//! Picks a request's arm: a table of 100 buckets, each owned by one split route, so an integer
//! percentage is an exact number of buckets. A routing key hashes (salted with the endpoint's
//! name, so experiments on different endpoints are independent) to a fixed bucket, which keeps
//! a key on its arm while the table is unchanged; a request without a key takes a random bucket.
//!
//! When the split changes, the new table is derived from the old one: a bucket keeps its owner
//! while that owner still has room, and only the buckets a shrinking route gives up move to a
//! growing one. So a change from 90/10 to 80/20 moves exactly the keys of 10 buckets.

use serde::{Deserialize, Serialize};

use super::config::EndpointSettings;

pub const BUCKETS: usize = 100;

/// FNV-1a over the salt and key, then a 64-bit finaliser (splitmix) to spread short keys.
/// Fixed here so assignments hold across restarts and builds.
pub fn key_hash(salt: &str, key: &[u8]) -> u64 {
    finish_key_hash(salted(salt), key)
}

/// The FNV-1a state after the salt and its separator (computed once per router).
fn salted(salt: &str) -> u64 {
    fnv(
        0xcbf2_9ce4_8422_2325,
        salt.as_bytes().iter().chain([0xffu8].iter()),
    )
}

fn fnv<'a>(mut h: u64, bytes: impl Iterator<Item = &'a u8>) -> u64 {
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// [`key_hash`] from the salted state.
fn finish_key_hash(salted: u64, key: &[u8]) -> u64 {
    let mut h = fnv(salted, key.iter());
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// Which split route owns each bucket, by served entity name, as persisted: runs of
/// `(name, count)` in bucket order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct BucketTable(pub Vec<(String, usize)>);

impl BucketTable {
    fn expand(&self) -> Vec<Option<&str>> {
        let mut out: Vec<Option<&str>> = self
            .0
            .iter()
            .flat_map(|(name, n)| std::iter::repeat_n(Some(name.as_str()), *n))
            .collect();
        out.resize(BUCKETS, None);
        out
    }

    fn compress(owners: &[&str]) -> Self {
        let mut runs: Vec<(String, usize)> = Vec::new();
        for &o in owners {
            match runs.last_mut() {
                Some((name, n)) if name == o => *n += 1,
                _ => runs.push((o.to_owned(), 1)),
            }
        }
        Self(runs)
    }

    /// The table for `shares` (name, percent; summing to 100), moving as few buckets as
    /// possible away from `previous`.
    pub fn rebalance(previous: Option<&BucketTable>, shares: &[(String, usize)]) -> Self {
        let old = previous.map(BucketTable::expand).unwrap_or_default();
        let mut room: Vec<usize> = shares.iter().map(|(_, p)| *p).collect();
        let mut owners: Vec<Option<&str>> = vec![None; BUCKETS];
        // A bucket stays with its owner while the owner has room.
        for (b, owner) in old.iter().enumerate() {
            if let Some(i) = owner.and_then(|o| shares.iter().position(|(n, _)| n == o)) {
                if room[i] > 0 {
                    room[i] -= 1;
                    owners[b] = Some(shares[i].0.as_str());
                }
            }
        }
        // The rest go to routes that need more, in route order.
        let mut next = 0;
        for slot in owners.iter_mut().filter(|o| o.is_none()) {
            while next < room.len() && room[next] == 0 {
                next += 1;
            }
            if next == room.len() {
                break;
            }
            room[next] -= 1;
            *slot = Some(shares[next].0.as_str());
        }
        let owners: Vec<&str> = owners.into_iter().flatten().collect();
        Self::compress(&owners)
    }

    /// Is this a table for exactly these shares?
    pub fn matches(&self, shares: &[(String, usize)]) -> bool {
        let total: usize = self.0.iter().map(|(_, n)| n).sum();
        total == BUCKETS
            && shares.iter().all(|(name, p)| {
                self.0
                    .iter()
                    .filter(|(n, _)| n == name)
                    .map(|(_, c)| c)
                    .sum::<usize>()
                    == *p
            })
    }
}

/// A mirror: the arm (index into the endpoint's served entities) and the percent it copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShadowRoute {
    pub arm: usize,
    pub percent: u8,
}

/// The compiled routes of one endpoint config.
#[derive(Debug, Clone)]
pub struct Router {
    /// The hash state after the endpoint's name: keys hash from here.
    salted: u64,
    /// Bucket -> arm index.
    buckets: Vec<usize>,
    pub table: BucketTable,
    /// Split arms with a share above zero, largest share first (the fallback order).
    pub split_arms: Vec<usize>,
    pub shadows: Vec<ShadowRoute>,
}

impl Router {
    /// Compiles a validated config; `previous` is the table of the config it replaces.
    pub fn compile(settings: &EndpointSettings, previous: Option<&BucketTable>) -> Self {
        let names: Vec<String> = settings
            .served_entities
            .iter()
            .map(|s| s.served_name())
            .collect();
        let arm = |name: &str| names.iter().position(|n| n == name).unwrap_or(0);
        let (mut shares, mut shadows) = (Vec::new(), Vec::new());
        match &settings.traffic_config {
            None => shares.push((names.first().cloned().unwrap_or_default(), BUCKETS)),
            Some(tc) => {
                for r in &tc.routes {
                    if r.shadow {
                        shadows.push(ShadowRoute {
                            arm: arm(&r.served_entity_name),
                            percent: r.shadow_percentage.unwrap_or(100).clamp(0, 100) as u8,
                        });
                    } else if r.traffic_percentage > 0 {
                        shares.push((
                            r.served_entity_name.clone(),
                            r.traffic_percentage.clamp(0, 100) as usize,
                        ));
                    }
                }
            }
        }
        let table = match previous {
            Some(t) if t.matches(&shares) => t.clone(),
            _ => BucketTable::rebalance(previous, &shares),
        };
        let buckets = table
            .0
            .iter()
            .flat_map(|(name, n)| std::iter::repeat_n(arm(name), *n))
            .collect();
        let mut split_arms: Vec<(usize, usize)> =
            shares.iter().map(|(n, p)| (arm(n), *p)).collect();
        split_arms.sort_by_key(|a| std::cmp::Reverse(a.1));
        Self {
            salted: salted(&settings.name),
            buckets,
            table,
            split_arms: split_arms.into_iter().map(|(a, _)| a).collect(),
            shadows,
        }
    }

    pub fn bucket_of(&self, key: &[u8]) -> usize {
        (finish_key_hash(self.salted, key) % BUCKETS as u64) as usize
    }

    /// The arm of a routing key.
    pub fn by_key(&self, key: &[u8]) -> usize {
        self.buckets[self.bucket_of(key)]
    }

    /// The arm of a request without a key.
    pub fn random(&self) -> usize {
        self.buckets[fastrand::usize(..BUCKETS)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoint::config::{Route, RoutingSettings, ServedEntitySettings, TrafficConfig};

    fn split(shares: &[(&str, i64)]) -> EndpointSettings {
        EndpointSettings {
            name: "e".into(),
            served_entities: shares
                .iter()
                .map(|(n, _)| {
                    let mut s = ServedEntitySettings::new("m", "1");
                    s.name = Some((*n).into());
                    s
                })
                .collect(),
            traffic_config: Some(TrafficConfig {
                routes: shares
                    .iter()
                    .map(|(n, p)| Route {
                        served_entity_name: (*n).into(),
                        traffic_percentage: *p,
                        shadow: false,
                        shadow_percentage: None,
                    })
                    .collect(),
            }),
            routing: RoutingSettings::default(),
            auto_capture_config: None,
            rate_limits: Vec::new(),
            ..Default::default()
        }
    }

    fn counts(r: &Router, arms: usize) -> Vec<usize> {
        let mut c = vec![0; arms];
        for &a in &r.buckets {
            c[a] += 1;
        }
        c
    }

    #[test]
    fn buckets_are_the_percentages() {
        let r = Router::compile(&split(&[("a", 90), ("b", 10)]), None);
        assert_eq!(counts(&r, 2), [90, 10]);
        assert_eq!(r.split_arms, [0, 1]);
        let r = Router::compile(&split(&[("a", 0), ("b", 100)]), None);
        assert_eq!(counts(&r, 2), [0, 100]);
        assert_eq!(r.split_arms, [1]);
    }

    #[test]
    fn a_change_moves_only_the_buckets_it_must() {
        // Three arms, where laying the ranges out again would move twice as much.
        let before = Router::compile(&split(&[("a", 50), ("b", 30), ("c", 20)]), None);
        let after = Router::compile(
            &split(&[("a", 40), ("b", 30), ("c", 30)]),
            Some(&before.table),
        );
        assert_eq!(counts(&after, 3), [40, 30, 30]);
        let moved: Vec<(usize, usize)> = before
            .buckets
            .iter()
            .zip(&after.buckets)
            .filter(|(x, y)| x != y)
            .map(|(x, y)| (*x, *y))
            .collect();
        assert_eq!(moved.len(), 10);
        assert!(moved.iter().all(|&m| m == (0, 2)), "{moved:?}");
    }

    #[test]
    fn an_unchanged_split_keeps_its_table_and_a_new_arm_takes_free_buckets() {
        let a = Router::compile(&split(&[("a", 90), ("b", 10)]), None);
        let same = Router::compile(&split(&[("a", 90), ("b", 10)]), Some(&a.table));
        assert_eq!(a.buckets, same.buckets);
        let three = Router::compile(&split(&[("a", 80), ("b", 10), ("c", 10)]), Some(&a.table));
        let moved = a
            .buckets
            .iter()
            .zip(&three.buckets)
            .filter(|(x, y)| x != y)
            .count();
        assert_eq!(moved, 10);
        assert_eq!(counts(&three, 3), [80, 10, 10]);
    }

    #[test]
    fn keys_are_stable_and_spread_evenly() {
        let r = Router::compile(&split(&[("a", 50), ("b", 50)]), None);
        // A key keeps its arm in a router compiled anew from the same split (another replica,
        // a restart), and the keys reach both arms.
        let again = Router::compile(&split(&[("a", 50), ("b", 50)]), None);
        let arms: Vec<usize> = (0..1000u32)
            .map(|k| r.by_key(k.to_string().as_bytes()))
            .collect();
        for (k, arm) in (0..1000u32).zip(&arms) {
            assert_eq!(again.by_key(k.to_string().as_bytes()), *arm, "key {k}");
        }
        assert!(arms.contains(&0) && arms.contains(&1), "{arms:?}");
        // A fixed hash: the same key lands in the same bucket in every build (the value is
        // the FNV-1a + splitmix of "e", 0xff, "1234"; saved bucket tables depend on it).
        assert_eq!(key_hash("e", b"1234"), 13_727_281_932_586_330_421);
        assert_eq!(r.bucket_of(b"1234"), 21);
        assert_ne!(key_hash("e", b"1234"), key_hash("f", b"1234"));
        let mut per_bucket = [0usize; BUCKETS];
        for k in 0..100_000u32 {
            per_bucket[r.bucket_of(k.to_string().as_bytes())] += 1;
        }
        // 1000 expected per bucket; a 5-sigma band is about +-160.
        assert!(
            per_bucket.iter().all(|&n| (840..=1160).contains(&n)),
            "{per_bucket:?}"
        );
    }

    #[test]
    fn the_table_survives_serialisation() {
        let r = Router::compile(&split(&[("a", 90), ("b", 10)]), None);
        let json = serde_json::to_string(&r.table).unwrap();
        assert_eq!(json, r#"[["a",90],["b",10]]"#);
        let back: BucketTable = serde_json::from_str(&json).unwrap();
        assert_eq!(back, r.table);
    }
}
