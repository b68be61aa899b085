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
use crate::fleet::configs::{ConfigStore, Expect, Outcome, Record, Snapshot};
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
    /// The revision of each endpoint's record this replica serves (or made).
    revisions: HashMap<String, u64>,
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

    fn synced(&self) {
        let was = self.in_sync.swap(true, Ordering::AcqRel);
        if !was {
            info!(store = %self.store.shown(), "serving the fleet's endpoint configs");
        }
        *lock(&self.detail) = None;
        self.metrics.fleet.configs_in_sync.set(1);
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
            .map_err(|e| ControlError::StoreUnavailable(e.to_string()))?;
        let revision = refused(name, outcome, expect)?;
        lock(&self.known)
            .revisions
            .insert(name.to_owned(), revision);
        Ok(revision)
    }

    /// Claims `name` for a config update that loads models; the claim's token.
    pub(super) fn claim(&self, name: &str) -> Result<String, ControlError> {
        let token = uuid::Uuid::new_v4().to_string();
        let revision = self.revision(name);
        let outcome = self
            .store
            .claim(name, revision, &token, self.claim_ttl)
            .map_err(|e| ControlError::StoreUnavailable(e.to_string()))?;
        refused(name, outcome, Expect::Revision(revision))?;
        lock(&self.claims).insert(name.to_owned(), token.clone());
        Ok(token)
    }

    /// Lets go of a claim whose update will not be made.
    pub(super) fn release(&self, name: &str, token: &str) {
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
    /// Serving it (or loading it, in the background).
    Done(Option<ConfigChange>),
    /// The endpoint is being updated here: looked at again at the next look.
    Later,
    /// It cannot be served here; said and counted, not tried again until it changes.
    Failed(String),
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
        if lock(&fleet.known).seen.as_ref() == Some(&look) {
            return fleet.synced();
        }
        let snapshot = match fleet.store.snapshot() {
            Ok(s) => s,
            Err(e) => return fleet.out_of_sync(e.to_string()),
        };
        match self.apply_snapshot(fleet, &snapshot) {
            Ok(()) => fleet.synced(),
            Err(why) => fleet.out_of_sync(why),
        }
    }

    /// Applies what changed in `snapshot`, and writes to the store what it never held.
    fn apply_snapshot(
        self: &Arc<Self>,
        fleet: &FleetConfigs,
        snapshot: &Snapshot,
    ) -> Result<(), String> {
        let _saving = self.lock_saves();
        let mut later = Vec::new();
        let mut changed = false;
        {
            let mut known = lock(&fleet.known);
            if known.epoch.as_deref() != Some(snapshot.epoch.as_str()) {
                if known.epoch.is_some() {
                    warn!("the fleet's shared store lost its data (or was flushed): every replica writes back the endpoint configs it serves");
                }
                known.revisions.clear();
                known.epoch = Some(snapshot.epoch.clone());
            }
            for (name, record) in &snapshot.records {
                if record.revision <= known.revisions.get(name).copied().unwrap_or(0) {
                    continue;
                }
                match self.apply_record(name, record) {
                    Applied::Done(change) => {
                        if let Some(change) = change {
                            fleet
                                .metrics
                                .fleet
                                .configs_applied
                                .with_label_values(&[change.as_str()])
                                .inc();
                            changed = true;
                        }
                        known.revisions.insert(name.clone(), record.revision);
                    }
                    Applied::Later => later.push(name.clone()),
                    Applied::Failed(why) => {
                        error!(endpoint = %name, "{why}");
                        fleet
                            .metrics
                            .fleet
                            .configs_applied
                            .with_label_values(&[ConfigChange::Failed.as_str()])
                            .inc();
                        known.revisions.insert(name.clone(), record.revision);
                    }
                }
            }
        }
        // What this replica serves and the store never held (a state file older than the
        // fleet, or a store that lost its data) is written back, unless another replica wrote
        // its own first.
        // A name this replica knows a record of is in the store already (made here after
        // the snapshot was read).
        let unknown =
            |name: &str| !snapshot.records.contains_key(name) && fleet.revision(name) == 0;
        for endpoint in self.endpoints.list() {
            if !unknown(&endpoint.name) || !endpoint.managed.load(Ordering::Acquire) {
                continue;
            }
            let saved = saved_endpoint(&endpoint, &endpoint.generation());
            if let Err(e) = fleet.commit(&endpoint.name, Expect::Revision(0), Some(&saved), None) {
                later.push(format!("{} ({e})", endpoint.name));
            }
        }
        for name in self.config_endpoints.iter() {
            if unknown(name) && !self.endpoints.contains(name) {
                if let Err(e) = fleet.commit(name, Expect::Revision(0), None, None) {
                    later.push(format!("{name} ({e})"));
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
            Err(format!("applied at the next look: {}", later.join(", ")))
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
        match self.endpoints.get(name) {
            None => {
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
                self.in_background(endpoint, guard, move |plane, ep| {
                    let failures = plane.load(&fresh);
                    if !failures.is_empty() {
                        let message = format!("the fleet's config_version {version} does not load on this replica: {}", failures.join("; "));
                        error!(endpoint = %ep.name, "{message}");
                        plane.metrics.fleet.configs_applied.with_label_values(&[ConfigChange::Failed.as_str()]).inc();
                        ep.with_control(|c| c.failure = Some(message));
                        return;
                    }
                    if !plane.endpoints.holds(&ep) {
                        return;
                    }
                    ep.publish(next);
                    ep.with_control(|c| c.failure = None);
                    info!(endpoint = %ep.name, config_version = version, "endpoint config updated through another replica");
                    if let Err(e) = plane.save() {
                        warn!(endpoint = %ep.name, "{e}");
                    }
                });
                Applied::Done(Some(ConfigChange::Updated))
            }
        }
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
