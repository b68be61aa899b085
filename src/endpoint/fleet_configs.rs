//! The control plane of a fleet: every replica serves the endpoint configs the shared store
//! (`fleet.redis_url`) holds. A change through one replica is made in the store first, by
//! compare-and-set on the record's revision that replica last applied (a replica that has not
//! seen the latest change gets 409, as does a second update while one loads anywhere in the
//! fleet); the other replicas apply it when they next look, at once on its announcement and
//! every `fleet.config_poll_ms` in any case. A replica that cannot reach the store serves the
//! last configs it knew, says so (`/readyz`, `modelgate_fleet_configs_in_sync`), refuses
//! changes (503) and catches up by itself. The state file stays each replica's own copy, for a
//! start while the store is away.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tracing::{error, info, warn};

use super::control::{ControlError, ControlPlane};
use super::persist::{SavedEndpoint, StateFile};
use super::{Endpoint, Generation, PendingConfig};
use crate::clock::now_ms;
use crate::fleet::configs::{ConfigStore, Expect, Outcome, Record};
use crate::metrics::labels::ConfigChange;
use crate::metrics::Metrics;
use crate::settings::fleet::FleetSettings;

/// What this replica knows of the store.
#[derive(Default)]
struct Known {
    /// The store's epoch (its data's beginning) the revisions below belong to.
    epoch: Option<String>,
    /// The store's revision and epoch at the last look that applied everything.
    seen: Option<(u64, Option<String>)>,
    /// The revision of each endpoint's record this replica serves (or made): the one its
    /// changes build on.
    revisions: HashMap<String, u64>,
    /// Records that did not apply here, tried again after a pause.
    failing: HashMap<String, Failing>,
}

/// A record that did not apply on this replica.
struct Failing {
    revision: u64,
    attempts: u32,
    retry_at_ms: u64,
    why: String,
}

/// How the replica stands with the fleet's configs, for `/readyz`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FleetStatus {
    /// Serving what the store holds (its last look answered and applied everything).
    pub in_sync: bool,
    /// When the store last answered (ms since the epoch; 0: never since the start).
    pub store_answered_ms: u64,
    /// The store, password hidden.
    pub store: String,
    /// What is wrong, while not in sync.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// The fleet's side of a control plane (none for one process).
pub struct FleetConfigs {
    store: ConfigStore,
    known: Mutex<Known>,
    /// The claims this replica holds (endpoint -> token), renewed at each look.
    claims: Mutex<HashMap<String, String>>,
    claim_ttl: Duration,
    poll: Duration,
    answered_ms: AtomicU64,
    in_sync: AtomicBool,
    /// Why the last look did not end in sync.
    detail: Mutex<Option<String>>,
    metrics: Arc<Metrics>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl FleetConfigs {
    pub fn new(settings: &FleetSettings, metrics: Arc<Metrics>) -> Result<Self, String> {
        let poll = Duration::from_millis(settings.config_poll_ms);
        Ok(Self {
            store: ConfigStore::new(settings)?,
            known: Mutex::default(),
            claims: Mutex::default(),
            claim_ttl: (poll * 10).max(Duration::from_secs(5)),
            poll,
            answered_ms: AtomicU64::new(0),
            in_sync: AtomicBool::new(false),
            detail: Mutex::new(Some("the shared store has not been read yet".into())),
            metrics,
        })
    }

    /// The state to start from: the store's records over the state file's, and what the store
    /// never held from the state file (it is written to the store at the first look). `None`
    /// when the store does not answer: the replica starts on its state file alone.
    pub fn starting_state(&self, file: &StateFile) -> Option<StateFile> {
        let snapshot = match self.store.snapshot() {
            Ok(s) => s,
            Err(e) => {
                warn!("{e}; starting on the endpoint configs of this replica's state file");
                self.out_of_sync(e.to_string());
                return None;
            }
        };
        let mut state = StateFile::new(Vec::new(), Vec::new());
        state.tables = file.tables.clone();
        for (name, record) in &snapshot.records {
            match &record.config {
                None => state.deleted.push(name.clone()),
                Some(text) => match parse(name, text) {
                    Ok(saved) => state.endpoints.push(saved),
                    // Left to the first look, which says so and counts it.
                    Err(e) => warn!("{e}"),
                },
            }
        }
        let held = |n: &str| snapshot.records.contains_key(n);
        state.endpoints.extend(
            file.endpoints
                .iter()
                .filter(|s| !held(&s.endpoint.name))
                .cloned(),
        );
        state
            .deleted
            .extend(file.deleted.iter().filter(|n| !held(n)).cloned());
        let mut known = lock(&self.known);
        known.epoch = Some(snapshot.epoch.clone());
        // Records that could not be read stay unknown: the first look says so and counts them.
        known.revisions = snapshot
            .records
            .iter()
            .filter(|(n, r)| {
                r.config.is_none() || state.endpoints.iter().any(|s| &s.endpoint.name == *n)
            })
            .map(|(n, r)| (n.clone(), r.revision))
            .collect();
        info!(
            store = %self.store.shown(),
            revision = snapshot.revision,
            endpoints = snapshot.records.values().filter(|r| r.config.is_some()).count(),
            "endpoint configs read from the fleet's shared store"
        );
        Some(state)
    }

    /// How this replica stands with the fleet's configs.
    pub fn status(&self) -> FleetStatus {
        FleetStatus {
            in_sync: self.in_sync.load(Ordering::Acquire),
            store_answered_ms: self.answered_ms.load(Ordering::Acquire),
            store: self.store.shown().to_owned(),
            detail: lock(&self.detail).clone(),
        }
    }

    fn out_of_sync(&self, why: String) {
        let was = self.in_sync.swap(false, Ordering::AcqRel);
        if was {
            warn!(
                "the fleet's endpoint configs are out of reach; serving the last ones known: {why}"
            );
        }
        *lock(&self.detail) = Some(format!(
            "serving the last endpoint configs this replica knew: {why}"
        ));
        self.metrics.fleet.configs_in_sync.set(0);
    }

    /// Serving every config of the store at `revision`.
    fn synced(&self, revision: u64) {
        let was = self.in_sync.swap(true, Ordering::AcqRel);
        if !was {
            info!(store = %self.store.shown(), "serving the fleet's endpoint configs");
        }
        *lock(&self.detail) = None;
        self.metrics.fleet.configs_in_sync.set(1);
        self.metrics.fleet.configs_revision.set(revision as i64);
    }

    /// The revision of `name`'s record this replica serves (0: none).
    pub(super) fn revision(&self, name: &str) -> u64 {
        lock(&self.known).revisions.get(name).copied().unwrap_or(0)
    }

    /// Makes a change in the store; the new revision, which this replica now serves.
    pub(super) fn commit(
        &self,
        name: &str,
        expect: Expect,
        config: Option<&SavedEndpoint>,
        claim: Option<&str>,
    ) -> Result<u64, ControlError> {
        let text = config.map(|c| serde_json::to_string(c).expect("settings serialize"));
        if claim.is_some() {
            // Ended by this change, or left to lapse.
            lock(&self.claims).remove(name);
        }
        let outcome = self
            .store
            .commit(name, expect, text.as_deref(), claim)
            .map_err(|e| match e.maybe_done() {
                true => ControlError::StoreUncertain(e.to_string()),
                false => ControlError::StoreUnavailable(e.to_string()),
            })?;
        let revision = refused(name, outcome, expect)?;
        lock(&self.known)
            .revisions
            .insert(name.to_owned(), revision);
        Ok(revision)
    }

    /// Claims `name` at `revision` for a config update that loads models; the claim's token.
    fn claim(&self, name: &str, revision: u64) -> Result<String, ControlError> {
        let token = uuid::Uuid::new_v4().to_string();
        let outcome = self
            .store
            .claim(name, revision, &token, self.claim_ttl)
            .map_err(|e| ControlError::StoreUnavailable(e.to_string()))?;
        refused(name, outcome, Expect::Revision(revision))?;
        lock(&self.claims).insert(name.to_owned(), token.clone());
        Ok(token)
    }

    /// Lets go of a claim whose update will not be made.
    fn release(&self, name: &str, token: &str) {
        lock(&self.claims).remove(name);
        if let Err(e) = self.store.keep_claim(name, token, None) {
            // It lapses by itself.
            warn!(endpoint = %name, "{e}");
        }
    }

    fn renew_claims(&self) {
        let claims: Vec<(String, String)> = lock(&self.claims)
            .iter()
            .map(|(n, t)| (n.clone(), t.clone()))
            .collect();
        for (name, token) in claims {
            if let Err(e) = self.store.keep_claim(&name, &token, Some(self.claim_ttl)) {
                warn!(endpoint = %name, "the claim of a config update was not renewed: {e}");
            }
        }
    }
}

/// A claim on an endpoint for a config update: let go of when dropped (the update failed,
/// panicked or never started) unless the update's change was made.
pub(super) struct HeldClaim {
    plane: Arc<ControlPlane>,
    name: String,
    pub token: String,
    /// The revision the update builds on.
    pub revision: u64,
    made: bool,
}

impl HeldClaim {
    /// Claims `name` through `plane`'s fleet store.
    pub(super) fn take(
        plane: &Arc<ControlPlane>,
        fleet: &FleetConfigs,
        name: &str,
    ) -> Result<Self, ControlError> {
        let revision = fleet.revision(name);
        let token = fleet.claim(name, revision)?;
        Ok(Self {
            plane: plane.clone(),
            name: name.to_owned(),
            token,
            revision,
            made: false,
        })
    }

    /// The update's change was made (which ended the claim in the store).
    pub(super) fn made(&mut self) {
        self.made = true;
    }
}

impl Drop for HeldClaim {
    fn drop(&mut self) {
        if let (false, Some(fleet)) = (self.made, &self.plane.fleet) {
            fleet.release(&self.name, &self.token);
        }
    }
}

/// A change's outcome as the control plane answers it.
fn refused(name: &str, outcome: Outcome, expect: Expect) -> Result<u64, ControlError> {
    match outcome {
        Outcome::Done(revision) => Ok(revision),
        Outcome::Claimed => Err(ControlError::Busy(name.to_owned())),
        Outcome::Changed { exists: true, .. } if expect == Expect::Absent => {
            Err(ControlError::AlreadyExists(name.to_owned()))
        }
        Outcome::Changed { .. } => Err(ControlError::ChangedElsewhere(name.to_owned())),
    }
}

fn parse(name: &str, text: &str) -> Result<SavedEndpoint, String> {
    let saved: SavedEndpoint = serde_json::from_str(text).map_err(|e| {
        format!("the fleet's config of endpoint '{name}' cannot be read by this replica ({e})")
    })?;
    if saved.endpoint.name != name {
        return Err(format!(
            "the fleet's config of endpoint '{name}' names endpoint '{}'",
            saved.endpoint.name
        ));
    }
    if let Some(v) = saved.endpoint.violations("").into_iter().next() {
        return Err(format!(
            "the fleet's config of endpoint '{name}' is not valid here: {v}"
        ));
    }
    Ok(saved)
}

/// How applying one record went.
enum Applied {
    /// Serving it now.
    Done(Option<ConfigChange>),
    /// Its new served entities load in the background; served (and known) once they have.
    Loading,
    /// The endpoint is being updated here: looked at again at the next look.
    Later,
    /// It cannot be served here (unreadable, or invalid for this replica).
    Failed(String),
}

/// The first retry of a record that did not apply waits this long, doubling up to [`MAX_RETRY_MS`].
const FIRST_RETRY_MS: u64 = 1_000;
const MAX_RETRY_MS: u64 = 60_000;

impl FleetConfigs {
    /// Records that `name` serves `revision` now.
    fn served(&self, name: &str, revision: u64) {
        let mut known = lock(&self.known);
        known.revisions.insert(name.to_owned(), revision);
        known.failing.remove(name);
    }

    /// Records that `name`'s `revision` did not apply here: said, counted, and tried again
    /// after a growing pause (or at once when the record changes).
    fn failed(&self, name: &str, revision: u64, why: String) {
        error!(endpoint = %name, "{why}");
        let mut known = lock(&self.known);
        let attempts = match known.failing.get(name) {
            Some(f) if f.revision == revision => f.attempts + 1,
            _ => 1,
        };
        let pause = (FIRST_RETRY_MS << (attempts - 1).min(6)).min(MAX_RETRY_MS);
        known.failing.insert(
            name.to_owned(),
            Failing {
                revision,
                attempts,
                retry_at_ms: now_ms() + pause,
                why,
            },
        );
        drop(known);
        // Said at once, not at the next look (and then counted).
        if let Some(detail) = self.failing_detail() {
            self.out_of_sync(detail);
        }
        self.count(ConfigChange::Failed);
    }

    /// The store's epoch the known revisions belong to.
    fn epoch(&self) -> Option<String> {
        lock(&self.known).epoch.clone()
    }

    /// What does not apply here, while something does not.
    fn failing_detail(&self) -> Option<String> {
        let known = lock(&self.known);
        let mut failing: Vec<String> = known
            .failing
            .iter()
            .map(|(name, f)| format!("{name} ({}; tried again after a pause)", f.why))
            .collect();
        failing.sort();
        (!failing.is_empty())
            .then(|| format!("not serving the fleet's config of {}", failing.join(", ")))
    }

    fn count(&self, change: ConfigChange) {
        self.metrics
            .fleet
            .configs_applied
            .with_label_values(&[change.as_str()])
            .inc();
    }
}

impl ControlPlane {
    /// Looks at the store and applies every change this replica has not: what the fleet's
    /// thread does at each look.
    pub fn follow_fleet(self: &Arc<Self>) {
        let Some(fleet) = &self.fleet else {
            return;
        };
        fleet.renew_claims();
        let look = match fleet.store.revision() {
            Ok(look) => look,
            Err(e) => return fleet.out_of_sync(e.to_string()),
        };
        fleet.answered_ms.store(now_ms(), Ordering::Release);
        let (unchanged, retry_due) = {
            let known = lock(&fleet.known);
            let now = now_ms();
            (
                known.seen.as_ref() == Some(&look),
                known.failing.values().any(|f| now >= f.retry_at_ms),
            )
        };
        if !unchanged || retry_due {
            // Read under the saves' lock, so that no change of this replica falls between
            // the read and its application (it would look like a store gone back).
            if let Err(why) = self.apply_snapshot(fleet) {
                return fleet.out_of_sync(why);
            }
        }
        match fleet.failing_detail() {
            Some(why) => fleet.out_of_sync(why),
            None => fleet.synced(look.0),
        }
    }

    /// Applies what changed in `snapshot`, and writes to the store what it never held (or
    /// lost: a store restored from an older copy gets the newer configs back).
    fn apply_snapshot(self: &Arc<Self>, fleet: &FleetConfigs) -> Result<(), String> {
        let _saving = self.lock_saves();
        let snapshot = &fleet.store.snapshot().map_err(|e| e.to_string())?;
        let mut later = Vec::new();
        let now = now_ms();
        // What to write back (the store is behind this replica), and what to apply.
        let (write_back, to_apply) = {
            let mut known = lock(&fleet.known);
            let mut write_back = Vec::new();
            if known.epoch.as_deref() != Some(snapshot.epoch.as_str()) {
                if known.epoch.is_some() {
                    warn!("the fleet's shared store lost its data (or was flushed): every replica writes back the endpoint configs it serves");
                }
                known.revisions.clear();
                known.failing.clear();
                known.epoch = Some(snapshot.epoch.clone());
            } else {
                // A store restored from an older copy of its data keeps its epoch but goes
                // back in revisions: what this replica knows newer is written back.
                let store_revision = |n: &str| snapshot.records.get(n).map_or(0, |r| r.revision);
                let behind: Vec<(String, u64)> = known
                    .revisions
                    .iter()
                    .filter(|(n, r)| **r > store_revision(n))
                    .map(|(n, r)| (n.clone(), *r))
                    .collect();
                let went_back = known
                    .seen
                    .as_ref()
                    .is_some_and(|(r, _)| *r > snapshot.revision);
                if !behind.is_empty() || went_back {
                    warn!(
                        endpoints = behind.len(),
                        "the fleet's shared store went back to an older copy of its data: the newer endpoint configs are written back"
                    );
                }
                for (name, _) in &behind {
                    known.revisions.remove(name);
                }
                write_back = behind;
            }
            let to_apply: Vec<(&String, &Record)> = snapshot
                .records
                .iter()
                .filter(|(name, record)| {
                    record.revision > known.revisions.get(*name).copied().unwrap_or(0)
                        && !write_back.iter().any(|(n, _)| n == *name)
                })
                // A record that failed here waits for its retry (said by `failing_detail`).
                .filter(|(name, record)| match known.failing.get(*name) {
                    Some(f) => f.revision != record.revision || now >= f.retry_at_ms,
                    None => true,
                })
                .collect();
            (write_back, to_apply)
        };
        for (name, mine) in write_back {
            let config = self
                .endpoints
                .get(&name)
                .filter(|e| e.managed.load(Ordering::Acquire))
                .map(|e| saved_endpoint(&e, &e.generation()));
            let deleted = config.is_none() && !self.endpoints.contains(&name);
            if config.is_none() && !deleted {
                // Served from the config file only: nothing newer to write.
                continue;
            }
            // At the revision this replica knew, if the store is still below it: of several
            // replicas writing back, the one that knew the newest wins.
            match fleet.commit(&name, Expect::Below(mine), config.as_ref(), None) {
                Ok(_) => {}
                Err(e @ (ControlError::StoreUnavailable(_) | ControlError::StoreUncertain(_))) => {
                    return Err(e.to_string());
                }
                Err(e) => later.push(format!("{name} ({e})")),
            }
        }
        let mut changed = false;
        for (name, record) in to_apply {
            match self.apply_record(name, record) {
                Applied::Done(change) => {
                    if let Some(change) = change {
                        fleet.count(change);
                        changed = true;
                    }
                    fleet.served(name, record.revision);
                }
                // Served (or recorded as failing) when the load ends.
                Applied::Loading => {}
                Applied::Later => later.push(name.clone()),
                Applied::Failed(why) => fleet.failed(name, record.revision, why),
            }
        }
        // What this replica serves and the store never held (a state file older than the
        // fleet, or a store that lost its data) is written back, unless another replica wrote
        // its own first. A name this replica knows a record of is in the store already (made
        // here after the snapshot was read).
        let unknown =
            |name: &str| !snapshot.records.contains_key(name) && fleet.revision(name) == 0;
        for endpoint in self.endpoints.list() {
            if !unknown(&endpoint.name) || !endpoint.managed.load(Ordering::Acquire) {
                continue;
            }
            let saved = saved_endpoint(&endpoint, &endpoint.generation());
            match fleet.commit(&endpoint.name, Expect::Revision(0), Some(&saved), None) {
                Ok(_) => {}
                Err(e @ (ControlError::StoreUnavailable(_) | ControlError::StoreUncertain(_))) => {
                    return Err(e.to_string());
                }
                Err(e) => later.push(format!("{} ({e})", endpoint.name)),
            }
        }
        for name in self.config_endpoints.iter() {
            if unknown(name) && !self.endpoints.contains(name) {
                match fleet.commit(name, Expect::Revision(0), None, None) {
                    Ok(_) => {}
                    Err(
                        e @ (ControlError::StoreUnavailable(_) | ControlError::StoreUncertain(_)),
                    ) => {
                        return Err(e.to_string());
                    }
                    Err(e) => later.push(format!("{name} ({e})")),
                }
            }
        }
        if changed {
            if let Err(e) = self.write_state() {
                warn!(
                    "the fleet's configs serve but this replica's state file was not written: {e}"
                );
            }
        }
        if later.is_empty() {
            lock(&fleet.known).seen = Some((snapshot.revision, Some(snapshot.epoch.clone())));
            Ok(())
        } else {
            Err(format!(
                "not serving the fleet's config yet: {}",
                later.join(", ")
            ))
        }
    }

    /// Serves `record` of endpoint `name` (call with the saves' lock held).
    fn apply_record(self: &Arc<Self>, name: &str, record: &Record) -> Applied {
        let Some(text) = &record.config else {
            let Some(removed) = self.endpoints.remove(name) else {
                return Applied::Done(None);
            };
            self.forget(&removed);
            info!(endpoint = %name, "endpoint deleted through another replica");
            return Applied::Done(Some(ConfigChange::Deleted));
        };
        let saved = match parse(name, text) {
            Ok(s) => s,
            Err(why) => return Applied::Failed(why),
        };
        let existing = self.endpoints.get(name);
        // Deleted and created again through another replica: another endpoint, not an update.
        let recreated = |e: &&Arc<Endpoint>| {
            !e.from_config_file
                && e.managed.load(Ordering::Acquire)
                && e.created_ms != saved.created_ms
        };
        if let Some(old) = existing.as_ref().filter(recreated) {
            let Some(_claimed) = old.begin_update() else {
                return Applied::Later;
            };
            if let Some(removed) = self.endpoints.remove(name) {
                self.forget(&removed);
            }
            return self.apply_created(name, saved);
        }
        match existing {
            None => self.apply_created(name, saved),
            Some(endpoint) => {
                let Some(guard) = endpoint.begin_update() else {
                    return Applied::Later;
                };
                let current = endpoint.generation();
                endpoint.managed.store(true, Ordering::Release);
                if current.settings == saved.endpoint
                    && current.config_version == saved.config_version
                    && current.router.table == saved.buckets
                {
                    return Applied::Done(None);
                }
                let version = saved.config_version;
                let next = Generation::build(
                    saved.endpoint,
                    Some(&current),
                    Some(&saved.buckets),
                    &self.shared,
                    version,
                );
                let fresh = next.new_slots(Some(&current));
                if fresh.is_empty() {
                    endpoint.publish(next);
                    info!(endpoint = %name, config_version = version, "endpoint config changed through another replica");
                    return Applied::Done(Some(ConfigChange::Updated));
                }
                endpoint.with_control(|c| {
                    c.pending = Some(PendingConfig {
                        settings: next.settings.clone(),
                        config_version: version,
                        start_ms: now_ms(),
                    })
                });
                let revision = record.revision;
                let epoch = self.fleet.as_ref().and_then(FleetConfigs::epoch);
                self.in_background(endpoint, guard, move |plane, ep| {
                    let Some(fleet) = &plane.fleet else {
                        return;
                    };
                    let failures = plane.load(&fresh);
                    if !failures.is_empty() {
                        let message = format!("the fleet's config_version {version} does not load on this replica, which serves its previous config: {}", failures.join("; "));
                        ep.with_control(|c| c.failure = Some(message.clone()));
                        if fleet.epoch() == epoch {
                            fleet.failed(&ep.name, revision, message);
                        }
                        return;
                    }
                    let saving = plane.lock_saves();
                    if !plane.endpoints.holds(&ep) {
                        return;
                    }
                    ep.publish(next);
                    ep.with_control(|c| c.failure = None);
                    // A revision of data the store has since lost means nothing now.
                    if fleet.epoch() == epoch {
                        fleet.served(&ep.name, revision);
                    }
                    fleet.count(ConfigChange::Updated);
                    info!(endpoint = %ep.name, config_version = version, "endpoint config updated through another replica");
                    if let Err(e) = plane.write_state() {
                        warn!(endpoint = %ep.name, "{e}");
                    }
                    drop(saving);
                });
                Applied::Loading
            }
        }
    }

    /// Creates endpoint `name` as another replica did; its models load in the background
    /// (it is served, not ready, meanwhile, as a created endpoint is).
    fn apply_created(self: &Arc<Self>, name: &str, saved: SavedEndpoint) -> Applied {
        let generation = Generation::build(
            saved.endpoint,
            None,
            Some(&saved.buckets),
            &self.shared,
            saved.config_version,
        );
        let from_config_file = self.config_endpoints.contains(name);
        let endpoint = Arc::new(Endpoint::new(
            generation,
            saved.created_ms,
            true,
            from_config_file,
        ));
        let guard = endpoint
            .begin_update()
            .expect("a new endpoint is not being updated");
        if !self.endpoints.insert(endpoint.clone()) {
            return Applied::Later;
        }
        info!(endpoint = %name, "endpoint created through another replica");
        let slots = endpoint.generation().slots.clone();
        self.in_background(endpoint, guard, move |plane, ep| {
            let failures = plane.load(&slots);
            if !failures.is_empty() {
                warn!(endpoint = %ep.name, "created without some served entities: {}", failures.join("; "));
            }
        });
        Applied::Done(Some(ConfigChange::Created))
    }

    /// Follows the store on threads of their own until the handles are dropped: one looks
    /// every `fleet.config_poll_ms`, one listens for announcements and wakes the first.
    pub fn spawn_fleet(self: &Arc<Self>) -> std::io::Result<Vec<crate::periodic::Periodic>> {
        let Some(fleet) = &self.fleet else {
            return Ok(Vec::new());
        };
        let plane = self.clone();
        let looks = crate::periodic::spawn("modelgate-fleet-configs", fleet.poll, move || {
            plane.follow_fleet()
        })?;
        let waker = looks.waker();
        let announcements = fleet.store.subscribe(move || waker.unpark())?;
        Ok(vec![looks, announcements])
    }

    /// The fleet's status, with a fleet.
    pub fn fleet_status(&self) -> Option<FleetStatus> {
        self.fleet.as_ref().map(FleetConfigs::status)
    }
}

/// What the state file and the store keep of `endpoint`, serving `generation`.
pub fn saved_endpoint(endpoint: &Endpoint, generation: &Generation) -> SavedEndpoint {
    SavedEndpoint {
        endpoint: generation.settings.clone(),
        buckets: generation.router.table.clone(),
        config_version: generation.config_version,
        created_ms: endpoint.created_ms,
    }
}
