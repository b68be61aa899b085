//! `fleet`: what the replicas of one deployment share through Redis. Off without `redis_url`
//! (one process needs nothing). The endpoint configs of the control plane, rate-limit counts,
//! relayed labels and monitoring profiles (docs/operations.md, "Scaling out").

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct FleetSettings {
    /// The shared store (`redis://[user:password@]host:port[/db]`); none: every replica
    /// counts alone.
    pub redis_url: Option<String>,
    /// Every key the fleet writes starts with `<key_prefix>:`; replicas of one deployment
    /// share it, two deployments on one Redis must not.
    pub key_prefix: String,
    /// How often a replica adds its calls to the fleet's counts and reads them back.
    pub sync_interval_ms: u64,
    /// The deadline of one round trip to the store.
    pub timeout_ms: u64,
    /// A replica that has not synced for this long no longer counts as one of the fleet.
    /// Heartbeats are aged by Redis's clock, so the replicas' clocks need not agree.
    pub replica_ttl_ms: u64,
    /// How often a replica looks whether the fleet's endpoint configs changed (a change's
    /// announcement wakes it sooner). A config update's claim on its endpoint, renewed at each
    /// look, lapses max(5 s, 10 looks) after its replica stops (killed while loading).
    pub config_poll_ms: u64,
    /// How often a replica publishes its monitoring profiles (every served entity's windows)
    /// for the others' reports: a report reads the others' as of their last publication.
    pub profile_interval_ms: u64,
}

impl Default for FleetSettings {
    fn default() -> Self {
        Self {
            redis_url: None,
            key_prefix: "modelgate".into(),
            sync_interval_ms: 100,
            timeout_ms: 250,
            replica_ttl_ms: 10_000,
            config_poll_ms: 500,
            profile_interval_ms: 2_000,
        }
    }
}

impl FleetSettings {
    /// The first problem, as (key under `fleet`, message).
    pub fn problem(&self) -> Option<(String, String)> {
        if let Some(url) = &self.redis_url {
            // This build's Redis client speaks plain TCP (no `rediss://`).
            let ok = reqwest::Url::parse(url).is_ok_and(|u| u.scheme() == "redis" && u.has_host());
            if !ok {
                return Some((
                    "redis_url".into(),
                    format!(
                        "'{}' is not a redis://host[:port][/db] URL (TLS, rediss://, is not supported)",
                        super::redact::redact_url(url)
                    ),
                ));
            }
        }
        let prefix_ok = !self.key_prefix.is_empty()
            && self.key_prefix.len() <= 64
            && self
                .key_prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !prefix_ok {
            return Some((
                "key_prefix".into(),
                "must be 1 to 64 letters, digits, '-', '_' or '.'".into(),
            ));
        }
        for (key, value, range) in [
            ("sync_interval_ms", self.sync_interval_ms, 10..=60_000),
            ("timeout_ms", self.timeout_ms, 1..=60_000),
            ("replica_ttl_ms", self.replica_ttl_ms, 5_000..=3_600_000),
            ("config_poll_ms", self.config_poll_ms, 50..=60_000),
            (
                "profile_interval_ms",
                self.profile_interval_ms,
                100..=600_000,
            ),
        ] {
            if !range.contains(&value) {
                return Some((
                    key.into(),
                    format!("{value} is outside {}..={}", range.start(), range.end()),
                ));
            }
        }
        if self.replica_ttl_ms < 2 * self.sync_interval_ms {
            return Some((
                "replica_ttl_ms".into(),
                format!(
                    "{} is under two sync intervals ({} ms): live replicas would drop out",
                    self.replica_ttl_ms,
                    2 * self.sync_interval_ms
                ),
            ));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_setting_is_checked() {
        assert_eq!(FleetSettings::default().problem(), None);
        let with = |f: fn(&mut FleetSettings)| {
            let mut s = FleetSettings {
                redis_url: Some("redis://:pw@redis:6379/2".into()),
                ..Default::default()
            };
            f(&mut s);
            s.problem().map(|(key, _)| key)
        };
        assert_eq!(with(|_| {}), None);
        assert_eq!(
            with(|s| s.redis_url = Some("rediss://redis".into())).as_deref(),
            Some("redis_url")
        );
        assert_eq!(
            with(|s| s.redis_url = Some("not a url".into())).as_deref(),
            Some("redis_url")
        );
        assert_eq!(
            with(|s| s.key_prefix = "a:b".into()).as_deref(),
            Some("key_prefix")
        );
        assert_eq!(
            with(|s| s.sync_interval_ms = 5).as_deref(),
            Some("sync_interval_ms")
        );
        assert_eq!(
            with(|s| s.config_poll_ms = 10).as_deref(),
            Some("config_poll_ms")
        );
        assert_eq!(
            with(|s| s.replica_ttl_ms = 1_000).as_deref(),
            Some("replica_ttl_ms")
        );
        assert_eq!(
            with(|s| {
                s.sync_interval_ms = 3_000;
                s.replica_ttl_ms = 5_000;
            })
            .as_deref(),
            Some("replica_ttl_ms")
        );
        // The password stays out of the message.
        let s = FleetSettings {
            redis_url: Some("http://:secret-pw@redis".into()),
            ..Default::default()
        };
        assert!(!s.problem().unwrap().1.contains("secret-pw"));
    }
}
