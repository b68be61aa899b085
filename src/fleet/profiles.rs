//! Monitoring profiles the replicas publish for each other: every few seconds each replica
//! writes, per endpoint, the windows (bin counts, category counts, confusion counts, AUC
//! histograms) of each served entity it monitors into the endpoint's hash
//! (`<prefix>:profiles:<endpoint>`, one field per replica and served entity); a monitoring
//! report reads the hash back and adds the others' windows to its own. What a profile holds is
//! the drift layer's business (opaque JSON here, with the time it was published).

use std::sync::Mutex;
use std::time::Duration;

use crate::settings::fleet::FleetSettings;

use super::configs::StoreError;

/// One replica's profile of one served entity.
#[derive(Debug, Clone, PartialEq)]
pub struct Published {
    pub served_entity: String,
    pub profile: String,
}

/// The fleet's monitoring profiles.
pub struct ProfileStore {
    client: redis::Client,
    shown: String,
    timeout: Duration,
    prefix: String,
    /// This replica (its own profiles are read from memory, not back from the store).
    replica: String,
    /// How long a replica's profiles count after its last publication (longer than any
    /// window it kept).
    keep: Duration,
    conn: Mutex<Option<redis::Connection>>,
}

impl ProfileStore {
    pub fn new(settings: &FleetSettings, keep: Duration) -> Result<Self, String> {
        let url = settings.redis_url.clone().unwrap_or_default();
        let client =
            redis::Client::open(url.as_str()).map_err(|e| format!("fleet.redis_url: {e}"))?;
        Ok(Self {
            client,
            shown: crate::settings::redact::redact_url(&url),
            timeout: Duration::from_millis(settings.timeout_ms),
            prefix: format!("{}:profiles", settings.key_prefix),
            replica: uuid::Uuid::new_v4().to_string(),
            keep,
            conn: Mutex::new(None),
        })
    }

    fn key(&self, endpoint: &str) -> String {
        format!("{}:{endpoint}", self.prefix)
    }

    fn with_conn<T>(
        &self,
        f: impl FnOnce(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> Result<T, StoreError> {
        let fail = |source| StoreError::new(&self.shown, source);
        let mut slot = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_none() {
            let conn = self
                .client
                .get_connection_with_timeout(self.timeout)
                .and_then(|c| {
                    c.set_read_timeout(Some(self.timeout))?;
                    c.set_write_timeout(Some(self.timeout))?;
                    Ok(c)
                })
                .map_err(fail)?;
            *slot = Some(conn);
        }
        let conn = slot.as_mut().expect("connected above");
        f(conn).map_err(|e| {
            *slot = None;
            fail(e)
        })
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
        self.with_conn(|c| pipe.query::<()>(c))
    }

    /// The other replicas' profiles of `endpoint` published within the keep time of
    /// `now_ms` (older ones, of replicas gone, are removed).
    pub fn others(&self, endpoint: &str, now_ms: u64) -> Result<Vec<Published>, StoreError> {
        let key = self.key(endpoint);
        let all: Vec<(String, String)> =
            self.with_conn(|c| redis::cmd("HGETALL").arg(&key).query(c))?;
        let keep = self.keep.as_millis() as u64;
        let mut gone = Vec::new();
        let mut out = Vec::new();
        for (field, value) in all {
            let Some((replica, served_entity)) = field.split_once('/') else {
                continue;
            };
            let Some((at, profile)) = value.split_once('\n') else {
                continue;
            };
            let at: u64 = at.parse().unwrap_or(0);
            if now_ms.saturating_sub(at) > keep {
                gone.push(field.clone());
                continue;
            }
            if replica != self.replica {
                out.push(Published {
                    served_entity: served_entity.to_owned(),
                    profile: profile.to_owned(),
                });
            }
        }
        if !gone.is_empty() {
            // Best effort: another reader may remove them as well.
            let _ = self.with_conn(|c| redis::cmd("HDEL").arg(&key).arg(&gone).query::<()>(c));
        }
        Ok(out)
    }
}
