//! Monitoring profiles the replicas publish for each other: every few seconds each replica
//! writes, per endpoint, the windows (bin counts, category counts, confusion counts, AUC
//! histograms) of each served entity it monitors into the endpoint's hash
//! (`<prefix>:profiles:<endpoint>`, one field per replica and served entity) and reads the
//! others' back; a monitoring report adds the others' windows, as last read (while the store is
//! down, until they are older than the keep time), to its own. What a profile holds is
//! the drift layer's business (opaque JSON here, with the time it was published).

use std::collections::HashMap;
use std::time::Duration;

use crate::settings::fleet::FleetSettings;

use super::conn::{Conn, StoreError};

/// Profiles (replicas times served entities, replicas restarted within the keep time
/// included) a report adds up per endpoint at most; the newest are kept.
pub const MAX_PROFILES_PER_ENDPOINT: usize = 256;

/// Whether a profile published at `published_ms` is older than `keep` at `now_ms` (the store's
/// rule, and a replica's own for the profiles it read before the store went away).
pub fn expired(published_ms: u64, now_ms: u64, keep: Duration) -> bool {
    now_ms.saturating_sub(published_ms) > keep.as_millis() as u64
}

/// One replica's profile of one served entity.
#[derive(Debug, Clone, PartialEq)]
pub struct Published {
    pub served_entity: String,
    pub profile: String,
}

/// The fleet's monitoring profiles.
pub struct ProfileStore {
    conn: Conn,
    prefix: String,
    /// This replica (its own profiles are read from memory, not back from the store).
    replica: String,
    /// How long a replica's profiles count after its last publication (longer than any
    /// window it kept).
    keep: Duration,
}

impl ProfileStore {
    pub fn new(settings: &FleetSettings, keep: Duration) -> Result<Self, String> {
        Ok(Self {
            conn: Conn::open(settings)?,
            prefix: format!("{}:profiles", settings.key_prefix),
            replica: uuid::Uuid::new_v4().to_string(),
            keep,
        })
    }

    fn key(&self, endpoint: &str) -> String {
        format!("{}:{endpoint}", self.prefix)
    }

    /// Writes this replica's profiles, as (endpoint, served entity, profile), at `now_ms`,
    /// in one round trip.
    pub fn publish(&self, profiles: &[(String, Published)], now_ms: u64) -> Result<(), StoreError> {
        if profiles.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for (endpoint, p) in profiles {
            let key = self.key(endpoint);
            let field = format!("{}/{}", self.replica, p.served_entity);
            pipe.cmd("HSET")
                .arg(&key)
                .arg(field)
                .arg(format!("{now_ms}\n{}", p.profile))
                .ignore();
            pipe.cmd("PEXPIRE")
                .arg(&key)
                .arg(self.keep.as_millis() as u64)
                .ignore();
        }
        self.conn.run(|c| pipe.query::<()>(c))
    }

    /// How long a replica's profiles count after it published them.
    pub fn keep(&self) -> Duration {
        self.keep
    }

    /// Reads the other replicas' profiles of `endpoints` back (one round trip), by endpoint,
    /// each with the time it was published; removes those older than the keep time (replicas
    /// gone).
    pub fn others(
        &self,
        endpoints: &[String],
        now_ms: u64,
    ) -> Result<HashMap<String, Vec<(u64, Published)>>, StoreError> {
        let mut pipe = redis::pipe();
        for endpoint in endpoints {
            pipe.cmd("HGETALL").arg(self.key(endpoint));
        }
        let all: Vec<Vec<(String, String)>> = self.conn.run(|c| pipe.query(c))?;
        let mut gone = redis::pipe();
        let mut fresh = HashMap::new();
        for (endpoint, fields) in endpoints.iter().zip(all) {
            let mut theirs = Vec::new();
            for (field, value) in fields {
                let (Some((replica, served_entity)), Some((at, profile))) =
                    (field.split_once('/'), value.split_once('\n'))
                else {
                    continue;
                };
                let at: u64 = at.parse().unwrap_or(0);
                if expired(at, now_ms, self.keep) {
                    gone.cmd("HDEL")
                        .arg(self.key(endpoint))
                        .arg(&field)
                        .ignore();
                } else if replica != self.replica {
                    theirs.push((
                        at,
                        Published {
                            served_entity: served_entity.to_owned(),
                            profile: profile.to_owned(),
                        },
                    ));
                }
            }
            if theirs.len() > MAX_PROFILES_PER_ENDPOINT {
                // The newest count: a fleet restarted many times within the keep time.
                theirs.sort_by_key(|p| std::cmp::Reverse(p.0));
                theirs.truncate(MAX_PROFILES_PER_ENDPOINT);
            }
            fresh.insert(endpoint.clone(), theirs);
        }
        // Best effort: another replica may remove them as well.
        let _ = self.conn.run(|c| gone.query::<()>(c));
        Ok(fresh)
    }
}
