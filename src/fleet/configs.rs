//! The endpoint configs a fleet shares through Redis: one record per endpoint name, each with
//! a revision that every change raises by one. A change is a compare-and-set on the revision
//! the replica built it on (a Lua script, so that it is one atomic step in Redis); a config
//! update that loads models first holds a claim on the name, so that a second update through
//! another replica is refused while it loads. Every change raises the store's revision and is
//! announced on a pub/sub channel; replicas poll the revision as well, so a lost message only
//! delays a change.
//!
//! What a record holds is the endpoint layer's business: here it is an opaque text (JSON).
//! A deleted endpoint keeps its revision with no config (a tombstone), so that a replica
//! holding an older state learns of the deletion.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::settings::fleet::FleetSettings;

pub use super::conn::StoreError;
use super::conn::{connect, Conn};

/// One endpoint's record: its revision and config (none: deleted).
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub revision: u64,
    pub config: Option<String>,
}

/// Every record, read in one atomic step.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Snapshot {
    /// The store's revision: the number of changes made since its data began.
    pub revision: u64,
    /// Made with the store's data: a new epoch means the data was lost (or flushed) and begun
    /// again, so revisions seen before mean nothing.
    pub epoch: String,
    pub records: BTreeMap<String, Record>,
}

/// What a change expects of the record it replaces.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Expect {
    /// The record is at this revision (0: the store never held one).
    Revision(u64),
    /// No config (never held, or deleted): a creation.
    Absent,
    /// The record is below this revision, which the change then takes (a replica writing
    /// back what a store restored from an older copy lost: the newest write-back wins).
    Below(u64),
}

/// How a change or a claim ended.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Outcome {
    /// Made: the record is now at this revision (a claim: still at it).
    Done(u64),
    /// The record is not as expected: it is at this revision, with a config or not.
    Changed { revision: u64, exists: bool },
    /// Another replica holds the name's claim (a config update loading).
    Claimed,
}

/// The claim token of a change made whoever holds the claim (a delete), which ends the claim.
pub const ANY_CLAIM: &str = "*";

/// Compares the record with what the change expects and checks the claim; the common head of
/// the two scripts below. KEYS: revisions, configs, claim. ARGV: name, expected revision (or
/// "absent", or "below:N"), claim token ("": none, [`ANY_CLAIM`]: any).
const CHECK: &str = r#"
local cur = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
local exists = redis.call('HEXISTS', KEYS[2], ARGV[1])
local below = nil
if string.sub(ARGV[2], 1, 6) == 'below:' then below = tonumber(string.sub(ARGV[2], 7)) end
if ARGV[2] == 'absent' then
  if exists == 1 then return {'changed', cur, exists} end
elseif below then
  if cur >= below then return {'changed', cur, exists} end
elseif cur ~= tonumber(ARGV[2]) then
  return {'changed', cur, exists}
end
local holder = redis.call('GET', KEYS[3])
if holder and holder ~= ARGV[3] and ARGV[3] ~= '*' then return {'claimed', cur, exists} end
"#;

/// Makes a change. KEYS: revisions, configs, claim, revision. ARGV: as [`CHECK`], then the
/// config ("" deletes), the channel.
const COMMIT: &str = r#"
local rev = below or (cur + 1)
redis.call('HSET', KEYS[1], ARGV[1], rev)
if ARGV[4] == '' then
  redis.call('HDEL', KEYS[2], ARGV[1])
else
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[4])
end
if ARGV[3] ~= '' then redis.call('DEL', KEYS[3]) end
redis.call('INCR', KEYS[4])
redis.call('PUBLISH', ARGV[5], ARGV[1])
return {'done', rev, exists}
"#;

/// Takes the name's claim. KEYS: as [`CHECK`] (and the revision, unused). ARGV: as
/// [`CHECK`], then the claim's time to live in ms.
const CLAIM: &str = r#"
redis.call('SET', KEYS[3], ARGV[3], 'PX', ARGV[4])
return {'done', cur, exists}
"#;

/// Renews (ARGV[2] > 0: for that many ms) or lets go of (0) a claim still held with ARGV[1].
const KEEP_CLAIM: &str = r#"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if tonumber(ARGV[2]) > 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
else
  redis.call('DEL', KEYS[1])
end
return 1
"#;

/// Every record and the store's revision, with its epoch (made on first use). KEYS: revisions,
/// configs, revision, epoch. ARGV: an epoch to make when there is none.
const SNAPSHOT: &str = r#"
local epoch = redis.call('GET', KEYS[4])
if not epoch then
  redis.call('SET', KEYS[4], ARGV[1])
  epoch = ARGV[1]
end
return {redis.call('GET', KEYS[3]) or '0', epoch, redis.call('HGETALL', KEYS[1]), redis.call('HGETALL', KEYS[2])}
"#;

/// How long the subscriber listens on one connection before it looks whether it should stop.
const LISTEN: Duration = Duration::from_secs(10);

/// The store of the fleet's endpoint configs (blocking calls: use off the async workers).
pub struct ConfigStore {
    conn: Conn,
    prefix: String,
}

impl ConfigStore {
    pub fn new(settings: &FleetSettings) -> Result<Self, String> {
        Ok(Self {
            conn: Conn::open(settings)?,
            prefix: format!("{}:control", settings.key_prefix),
        })
    }

    /// The store, as messages name it (no password).
    pub fn shown(&self) -> &str {
        self.conn.shown()
    }

    fn key(&self, what: &str) -> String {
        format!("{}:{what}", self.prefix)
    }

    /// The channel each change is announced on (the endpoint's name as the message).
    pub fn channel(&self) -> String {
        self.key("changes")
    }

    fn claim_key(&self, name: &str) -> String {
        format!("{}:claim:{name}", self.prefix)
    }

    /// The store's revision and epoch (none before its first snapshot): a cheap look for
    /// whether anything changed.
    pub fn revision(&self) -> Result<(u64, Option<String>), StoreError> {
        let (revision, epoch) = (self.key("revision"), self.key("epoch"));
        self.conn.run(|c| {
            let (rev, epoch): (Option<u64>, Option<String>) =
                redis::cmd("MGET").arg(&revision).arg(&epoch).query(c)?;
            Ok((rev.unwrap_or(0), epoch))
        })
    }

    /// Every record, in one atomic step.
    pub fn snapshot(&self) -> Result<Snapshot, StoreError> {
        let keys = [
            self.key("revisions"),
            self.key("configs"),
            self.key("revision"),
            self.key("epoch"),
        ];
        let fresh = uuid::Uuid::new_v4().to_string();
        self.conn.run(|c| {
            let (revision, epoch, revisions, configs): (
                u64,
                String,
                BTreeMap<String, u64>,
                BTreeMap<String, String>,
            ) = redis::cmd("EVAL")
                .arg(SNAPSHOT)
                .arg(keys.len())
                .arg(&keys)
                .arg(&fresh)
                .query(c)?;
            let mut configs = configs;
            let records = revisions
                .into_iter()
                .map(|(name, revision)| {
                    let config = configs.remove(&name);
                    (name, Record { revision, config })
                })
                .collect();
            Ok(Snapshot {
                revision,
                epoch,
                records,
            })
        })
    }

    /// Replaces (or, with `config` none, deletes) `name`'s config if its record is as
    /// `expect`ed and no other replica holds its claim; `claim` (the token of
    /// [`ConfigStore::claim`]) lets go of this replica's claim in the same step.
    pub fn commit(
        &self,
        name: &str,
        expect: Expect,
        config: Option<&str>,
        claim: Option<&str>,
    ) -> Result<Outcome, StoreError> {
        let extra = [config.unwrap_or("").to_owned(), self.channel()];
        self.checked(COMMIT, name, expect, claim.unwrap_or(""), &extra)
    }

    /// Claims `name` for `ttl` (renew it with [`ConfigStore::keep_claim`]) if its record is at
    /// `revision` and no other replica holds the claim.
    pub fn claim(
        &self,
        name: &str,
        revision: u64,
        token: &str,
        ttl: Duration,
    ) -> Result<Outcome, StoreError> {
        let extra = [(ttl.as_millis().max(1) as u64).to_string()];
        self.checked(CLAIM, name, Expect::Revision(revision), token, &extra)
    }

    /// Runs [`CHECK`] then `script` on `name`'s record: KEYS revisions, configs, claim,
    /// revision; ARGV name, expectation, claim token, then `extra`.
    fn checked(
        &self,
        script: &str,
        name: &str,
        expect: Expect,
        token: &str,
        extra: &[String],
    ) -> Result<Outcome, StoreError> {
        let keys = [
            self.key("revisions"),
            self.key("configs"),
            self.claim_key(name),
            self.key("revision"),
        ];
        let script = format!("{CHECK}{script}");
        self.conn.run_once(|c| {
            redis::cmd("EVAL")
                .arg(&script)
                .arg(keys.len())
                .arg(&keys)
                .arg(name)
                .arg(expected(expect))
                .arg(token)
                .arg(extra)
                .query(c)
                .and_then(outcome)
        })
    }

    /// Renews this replica's claim on `name` for `ttl`, or with `ttl` none lets go of it;
    /// whether it still held it.
    pub fn keep_claim(
        &self,
        name: &str,
        token: &str,
        ttl: Option<Duration>,
    ) -> Result<bool, StoreError> {
        let key = self.claim_key(name);
        let ms = ttl.map_or(0, |t| t.as_millis().max(1) as u64);
        self.conn.run(|c| {
            let held: i64 = redis::cmd("EVAL")
                .arg(KEEP_CLAIM)
                .arg(1)
                .arg(&key)
                .arg(token)
                .arg(ms)
                .query(c)?;
            Ok(held == 1)
        })
    }

    /// Calls `wake` for each change announced, on a thread of its own, until the handle is
    /// dropped; reconnects after a failure (the replicas' polling covers the gap).
    pub fn subscribe(
        &self,
        wake: impl Fn() + Send + 'static,
    ) -> std::io::Result<crate::periodic::Periodic> {
        let client = self.conn.client().clone();
        let channel = self.channel();
        let timeout = self.conn.timeout();
        // A step listens for [`LISTEN`] at most, so that a dropped handle ends the thread.
        crate::periodic::spawn(
            "modelgate-fleet-changes",
            Duration::from_millis(200),
            move || {
                let Ok(mut conn) = connect(&client, timeout, timeout) else {
                    return;
                };
                let mut pubsub = conn.as_pubsub();
                if pubsub.subscribe(&channel).is_err()
                    || pubsub
                        .set_read_timeout(Some(Duration::from_secs(1)))
                        .is_err()
                {
                    return;
                }
                // Changes made while this thread was not listening.
                wake();
                let began = std::time::Instant::now();
                while began.elapsed() < LISTEN {
                    match pubsub.get_message() {
                        Ok(_) => wake(),
                        Err(e) if e.is_timeout() => {}
                        Err(_) => return,
                    }
                }
            },
        )
    }
}

fn expected(expect: Expect) -> String {
    match expect {
        Expect::Revision(r) => r.to_string(),
        Expect::Absent => "absent".into(),
        Expect::Below(r) => format!("below:{r}"),
    }
}

fn outcome((what, revision, exists): (String, u64, i64)) -> redis::RedisResult<Outcome> {
    Ok(match what.as_str() {
        "done" => Outcome::Done(revision),
        "claimed" => Outcome::Claimed,
        _ => Outcome::Changed {
            revision,
            exists: exists == 1,
        },
    })
}
