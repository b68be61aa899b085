//! Monitoring profiles the replicas publish for each other: every few seconds each replica
//! writes, per endpoint, the windows (bin counts, category counts, confusion counts, AUC
//! histograms) of each served entity it monitors into the endpoint's hash
//! (`<prefix>:profiles:<endpoint>`, one field per replica and served entity) and reads the
//! others' back; a monitoring report adds the others' windows, as last read, to its own. What a profile holds is
//! the drift layer's business (opaque JSON here, with the time it was published).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use crate::settings::fleet::FleetSettings;

use super::conn::{Conn, StoreError};

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
    /// The others' profiles by endpoint, with when each was published, as last read.
    cache: Mutex<HashMap<String, Vec<(u64, Published)>>>,
}

impl ProfileStore {
    pub fn new(settings: &FleetSettings, keep: Duration) -> Result<Self, String> {
        Ok(Self {
            conn: Conn::open(settings)?,
            prefix: format!("{}:profiles", settings.key_prefix),
            replica: uuid::Uuid::new_v4().to_string(),
            keep,
            cache: Mutex::default(),
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

    /// Reads the other replicas' profiles of `endpoints` back (one round trip), for
    /// [`ProfileStore::others`]; removes those older than the keep time (replicas gone).
    pub fn refresh(&self, endpoints: &[String], now_ms: u64) -> Result<(), StoreError> {
        let mut pipe = redis::pipe();
        for endpoint in endpoints {
            pipe.cmd("HGETALL").arg(self.key(endpoint));
        }
        let all: Vec<Vec<(String, String)>> = self.conn.run(|c| pipe.query(c))?;
        let keep = self.keep.as_millis() as u64;
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
                if now_ms.saturating_sub(at) > keep {
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
            fresh.insert(endpoint.clone(), theirs);
        }
        // Best effort: another replica may remove them as well.
        let _ = self.conn.run(|c| gone.query::<()>(c));
        *self.cache.lock().unwrap_or_else(|e| e.into_inner()) = fresh;
        Ok(())
    }

    /// The other replicas' profiles of `endpoint` as the last [`ProfileStore::refresh`] read
    /// them, within the keep time of `now_ms` (no round trip: reports and scrapes never wait
    /// for the store).
    pub fn others(&self, endpoint: &str, now_ms: u64) -> Vec<Published> {
        let keep = self.keep.as_millis() as u64;
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(endpoint)
            .into_iter()
            .flatten()
            .filter(|(at, _)| now_ms.saturating_sub(*at) <= keep)
            .map(|(_, p)| p.clone())
            .collect()
    }
}
