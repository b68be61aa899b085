//! The control plane: create, update and delete endpoints at run time, as Databricks' serving
//! endpoints API does. A config is checked whole (every violation named, every model version
//! resolved in the registry) before anything changes. An update loads its new served entities
//! in the background and publishes the new config with one atomic store only when all of them
//! loaded; otherwise the running config stays and the endpoint shows `UPDATE_FAILED`. A second
//! update while one runs is refused. Every accepted change is saved to the state file and,
//! in a fleet, made in the shared store first (`fleet_configs`).

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use tracing::{error, info, warn};

use super::config::{EndpointConfig, EndpointSettings, Violation};
use super::directory::Endpoints;
use super::fleet_configs::{saved_endpoint, FleetConfigs, HeldClaim};
use super::persist::{self, StateFile};
use super::updater::{SwapOutcome, Trigger, Updater};
use super::{Endpoint, EntitySlot, Generation, PendingConfig, UpdateGuard};
use crate::clock::now_ms;
use crate::error::RequestError;
use crate::fleet::configs::Expect;
use crate::metrics::labels::Outcome;
use crate::metrics::Metrics;
use crate::registry::RegistryError;

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("the endpoint config is invalid: {}", join(.0))]
    Invalid(Vec<Violation>),
    #[error("endpoint '{0}' does not exist")]
    NotFound(String),
    #[error("endpoint '{0}' already exists")]
    AlreadyExists(String),
    #[error(
        "endpoint '{0}' is being updated; wait until its config_update is no longer IN_PROGRESS"
    )]
    Busy(String),
    #[error("the model registry is unreachable: {0}")]
    RegistryUnavailable(String),
    #[error("endpoint '{endpoint}' changed meanwhile (now at config_version {config_version})")]
    Changed {
        endpoint: String,
        config_version: u64,
    },
    #[error("endpoint '{0}' changed meanwhile through another replica; read it again and retry")]
    ChangedElsewhere(String),
    #[error("nothing changed: {0}")]
    StoreUnavailable(String),
    #[error(
        "the change may or may not have been made (read the endpoint again before retrying): {0}"
    )]
    StoreUncertain(String),
    #[error(transparent)]
    Persist(#[from] persist::PersistError),
}

fn join(v: &[Violation]) -> String {
    v.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

pub struct ControlPlane {
    pub endpoints: Arc<Endpoints>,
    pub updater: Arc<Updater>,
    pub metrics: Arc<Metrics>,
    /// What the generations it builds are built with.
    pub(super) shared: super::Shared,
    /// Where accepted changes are saved; `None` keeps them in memory only.
    pub state_file: Option<PathBuf>,
    /// Endpoints of the config file (a deleted one is remembered as deleted).
    pub config_endpoints: HashSet<String>,
    /// One save at a time, each writing the whole current state.
    save_lock: Mutex<()>,
    /// The configs shared by a fleet (none: this process alone).
    pub(super) fleet: Option<FleetConfigs>,
}

impl ControlPlane {
    pub fn new(
        endpoints: Arc<Endpoints>,
        updater: Arc<Updater>,
        shared: super::Shared,
        state_file: Option<PathBuf>,
        config_endpoints: HashSet<String>,
        fleet: Option<FleetConfigs>,
    ) -> Self {
        Self {
            endpoints,
            updater,
            metrics: shared.metrics.clone(),
            shared,
            state_file,
            config_endpoints,
            save_lock: Mutex::new(()),
            fleet,
        }
    }

    /// Held while the endpoints change and are saved.
    pub(super) fn lock_saves(&self) -> std::sync::MutexGuard<'_, ()> {
        self.save_lock.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Checks the config whole: its shape, then that every served entity's model version or
    /// alias exists in the registry.
    pub fn check(&self, settings: &EndpointSettings) -> Result<(), ControlError> {
        let mut violations = settings.violations("");
        if !violations.is_empty() {
            return Err(ControlError::Invalid(violations));
        }
        for (j, se) in settings.served_entities.iter().enumerate() {
            match self
                .updater
                .registry
                .resolve(&se.entity_name, &se.entity_version)
            {
                Ok(_) => {}
                Err(RegistryError::Unreachable(e)) => {
                    return Err(ControlError::RegistryUnavailable(e))
                }
                Err(e) => violations.push(Violation {
                    key: format!("served_entities[{j}].entity_version"),
                    message: format!(
                        "model '{}' version or alias '{}' cannot be served: {e}",
                        se.entity_name, se.entity_version
                    ),
                }),
            }
        }
        if violations.is_empty() {
            Ok(())
        } else {
            Err(ControlError::Invalid(violations))
        }
    }

    /// The violation of `settings` when its inference tables are another endpoint's (as it
    /// serves, or as its pending update would make it). Call with `save_lock` held, so that two
    /// changes cannot both take the same tables.
    fn shared_tables(&self, settings: &EndpointSettings) -> Result<(), ControlError> {
        if settings.table_location().is_none() {
            return Ok(());
        }
        for other in self.endpoints.list() {
            if other.name == settings.name {
                continue;
            }
            let pending = other.control().pending.map(|p| p.settings);
            let serving = other.generation();
            for theirs in [Some(&serving.settings), pending.as_ref()]
                .into_iter()
                .flatten()
            {
                if let Some(location) = settings.shared_tables(theirs) {
                    return Err(ControlError::Invalid(vec![
                        settings.shared_tables_violation(&other.name, &location, "")
                    ]));
                }
            }
        }
        Ok(())
    }

    /// Creates an endpoint; its served entities load in the background (`NOT_READY` and
    /// `IN_PROGRESS` until they do).
    pub fn create(
        self: &Arc<Self>,
        settings: EndpointSettings,
    ) -> Result<Arc<Endpoint>, ControlError> {
        if self.endpoints.contains(&settings.name) {
            return Err(ControlError::AlreadyExists(settings.name));
        }
        self.check(&settings)?;
        let generation = Generation::build(settings.clone(), None, None, &self.shared, 1);
        // A config-file endpoint deleted and created again still holds readiness, as it does
        // after a restart.
        let from_config_file = self.config_endpoints.contains(&settings.name);
        let endpoint = Arc::new(Endpoint::new(generation, now_ms(), true, from_config_file));
        let guard = endpoint
            .begin_update()
            .expect("a new endpoint is not being updated");
        endpoint.with_control(|c| {
            c.pending = Some(PendingConfig {
                settings,
                config_version: 1,
                start_ms: now_ms(),
            })
        });
        {
            // Insert and save as one step: a delete or create of the same name waits.
            let _saving = self.lock_saves();
            self.shared_tables(&endpoint.generation().settings)?;
            if self.endpoints.contains(&endpoint.name) {
                return Err(ControlError::AlreadyExists(endpoint.name.clone()));
            }
            if let Some(fleet) = &self.fleet {
                let saved = saved_endpoint(&endpoint, &endpoint.generation());
                fleet.commit(&endpoint.name, Expect::Absent, Some(&saved), None)?;
            }
            if !self.endpoints.insert(endpoint.clone()) {
                return Err(ControlError::AlreadyExists(endpoint.name.clone()));
            }
            if let Err(e) = self.write_state() {
                if self.fleet.is_none() {
                    // Not saved, not created: a restart would not know it.
                    self.endpoints.remove(&endpoint.name);
                    return Err(e);
                }
            }
        }
        info!(endpoint = %endpoint.name, "endpoint created through the control plane");
        let slots = endpoint.generation().slots.clone();
        self.in_background(endpoint.clone(), guard, move |plane, ep| {
            // A served entity that fails shows it in its own state; a reload retries it.
            let failures = plane.load(&slots);
            if !failures.is_empty() {
                warn!(endpoint = %ep.name, "created without some served entities: {}", failures.join("; "));
            }
            ep.with_control(|c| c.pending = None);
            plane.count(&ep.name, failures.is_empty());
        });
        Ok(endpoint)
    }

    /// Replaces an endpoint's served entities and routes; what `config` leaves out (routing,
    /// inference tables, rate limits) is kept. Answers at once; the new config serves when every
    /// new served entity has loaded.
    pub fn update(
        self: &Arc<Self>,
        name: &str,
        config: EndpointConfig,
    ) -> Result<Arc<Endpoint>, ControlError> {
        let endpoint = self
            .endpoints
            .get(name)
            .ok_or_else(|| ControlError::NotFound(name.to_owned()))?;
        // Claimed first: the config the update keeps from cannot change under it.
        let guard = endpoint
            .begin_update()
            .ok_or_else(|| ControlError::Busy(name.to_owned()))?;
        let current = endpoint.generation();
        let settings = config.update(name.to_owned(), Some(&current.settings));
        self.check(&settings)?;
        let version = current.config_version + 1;
        let claim = {
            // Checked and claimed as one step: another change waits for it.
            let _saving = self.lock_saves();
            self.shared_tables(&settings)?;
            // In a fleet, no other replica changes the endpoint while its models load.
            let claim = match &self.fleet {
                Some(fleet) => Some(HeldClaim::take(self, fleet, name)?),
                None => None,
            };
            endpoint.with_control(|c| {
                c.pending = Some(PendingConfig {
                    settings: settings.clone(),
                    config_version: version,
                    start_ms: now_ms(),
                })
            });
            claim
        };
        self.in_background(endpoint.clone(), guard, move |plane, ep| {
            let next = Generation::build(settings, Some(&current), None, &plane.shared, version);
            let fresh = next.new_slots(Some(&current));
            let mut failures = plane.load(&fresh);
            if failures.is_empty() {
                // An alias that moved while these loaded (the watcher and webhooks only follow
                // published configs) is followed before publishing.
                failures = plane.load(&fresh);
            }
            let mut claim = claim;
            let held = plane.endpoints.holds(&ep);
            // Made in the fleet's store first, with the same lock as the saves; a claim whose
            // change is not made is let go of when it drops.
            let saving = plane.lock_saves();
            if let (Some(fleet), Some(claim), true) =
                (&plane.fleet, claim.as_mut(), failures.is_empty() && held)
            {
                let saved = saved_endpoint(&ep, &next);
                let expect = Expect::Revision(claim.revision);
                match fleet.commit(&ep.name, expect, Some(&saved), Some(&claim.token)) {
                    Ok(_) => claim.made(),
                    Err(e) => failures.push(format!("the fleet's store did not take it: {e}")),
                }
            }
            if !failures.is_empty() {
                drop(saving);
                let message = failures.join("; ");
                error!(endpoint = %ep.name, "config update failed, the running config stays: {message}");
                ep.with_control(|c| {
                    c.pending = None;
                    c.failure = Some(message);
                });
                plane.count(&ep.name, false);
                return;
            }
            if !held {
                // Deleted meanwhile: nothing to publish.
                return;
            }
            ep.publish(next);
            drop(saving);
            ep.managed.store(true, Ordering::Relaxed);
            ep.with_control(|c| {
                c.pending = None;
                c.failure = None;
            });
            plane.count(&ep.name, true);
            info!(endpoint = %ep.name, config_version = version, "endpoint config updated");
            if let Err(e) = plane.save() {
                error!(endpoint = %ep.name, "{e}");
                ep.with_control(|c| {
                    c.failure = Some(format!(
                        "the new config serves but was not saved, so a restart would lose it: {e}"
                    ))
                });
            }
        });
        Ok(endpoint)
    }

    /// Changes what needs no model load (tags, description, rate limits, inference tables,
    /// usage tracking, permissions): `change` edits a copy of the endpoint's settings, which
    /// are checked, published at once (served entities, their versions and the config version
    /// stay) and saved. Refused while a config update runs.
    pub fn amend(
        self: &Arc<Self>,
        name: &str,
        change: impl FnOnce(&mut EndpointSettings) -> Result<(), ControlError>,
    ) -> Result<Arc<Endpoint>, ControlError> {
        self.change_settings(name, None, change)
    }

    /// Replaces an endpoint's routes at once (the served entities, loaded already, stay): a
    /// new config version, checked and saved as [`ControlPlane::amend`] does, made only when
    /// the endpoint is still at config version `expected_version` (else a conflict: its
    /// config changed meanwhile). Answers the config version it made.
    pub fn retraffic(
        self: &Arc<Self>,
        name: &str,
        expected_version: u64,
        traffic: super::config::TrafficConfig,
    ) -> Result<u64, ControlError> {
        let endpoint = self.change_settings(name, Some(expected_version), |s| {
            s.traffic_config = Some(traffic);
            Ok(())
        })?;
        info!(endpoint = %name, "endpoint routes replaced");
        Ok(endpoint.generation().config_version)
    }

    /// [`ControlPlane::amend`]; with `new_version`, a new config version made only from that
    /// one.
    fn change_settings(
        self: &Arc<Self>,
        name: &str,
        new_version: Option<u64>,
        change: impl FnOnce(&mut EndpointSettings) -> Result<(), ControlError>,
    ) -> Result<Arc<Endpoint>, ControlError> {
        let endpoint = self
            .endpoints
            .get(name)
            .ok_or_else(|| ControlError::NotFound(name.to_owned()))?;
        let _guard = endpoint
            .begin_update()
            .ok_or_else(|| ControlError::Busy(name.to_owned()))?;
        let current = endpoint.generation();
        if new_version.is_some_and(|v| v != current.config_version) {
            return Err(ControlError::Changed {
                endpoint: name.to_owned(),
                config_version: current.config_version,
            });
        }
        let mut settings = current.settings.clone();
        change(&mut settings)?;
        let violations = settings.violations("");
        if !violations.is_empty() {
            return Err(ControlError::Invalid(violations));
        }
        let _saving = self.lock_saves();
        self.shared_tables(&settings)?;
        let next = Generation::build(
            settings,
            Some(&current),
            None,
            &self.shared,
            current.config_version + u64::from(new_version.is_some()),
        );
        if let Some(fleet) = &self.fleet {
            let saved = saved_endpoint(&endpoint, &next);
            let revision = fleet.revision(name);
            fleet.commit(name, Expect::Revision(revision), Some(&saved), None)?;
        }
        let was_managed = endpoint.managed.swap(true, Ordering::AcqRel);
        endpoint.publish(next);
        if let Err(e) = self.write_state() {
            if self.fleet.is_some() {
                // The fleet's store holds it: this replica's copy is written at the next save.
                warn!(endpoint = %name, "{e}");
                return Ok(endpoint);
            }
            // Not saved, not changed: a restart would not know it.
            endpoint.restore(current);
            endpoint.managed.store(was_managed, Ordering::Release);
            return Err(e);
        }
        info!(endpoint = %name, "endpoint settings changed through the control plane");
        Ok(endpoint)
    }

    /// Removes an endpoint; requests in flight finish on what they loaded.
    pub fn delete(&self, name: &str) -> Result<(), ControlError> {
        let _saving = self.lock_saves();
        if !self.endpoints.contains(name) {
            return Err(ControlError::NotFound(name.to_owned()));
        }
        if let Some(fleet) = &self.fleet {
            // A delete goes before an update loading anywhere (whose claim it ends), as here.
            let expect = Expect::Revision(fleet.revision(name));
            fleet.commit(name, expect, None, Some(crate::fleet::configs::ANY_CLAIM))?;
        }
        let removed = self
            .endpoints
            .remove(name)
            .ok_or_else(|| ControlError::NotFound(name.to_owned()))?;
        if let Err(e) = self.write_state() {
            if self.fleet.is_none() {
                // Not saved, not deleted: it would come back at the next start.
                self.endpoints.insert(removed);
                return Err(e);
            }
            warn!(endpoint = %name, "{e}");
        }
        self.forget(&removed);
        info!(endpoint = %name, "endpoint deleted through the control plane");
        Ok(())
    }

    /// Forgets a removed endpoint's metric series.
    pub(super) fn forget(&self, removed: &Endpoint) {
        let served: Vec<String> = removed
            .generation()
            .slots
            .iter()
            .map(|s| s.name.to_string())
            .collect();
        self.metrics.forget_endpoint(&removed.name, &served);
    }

    /// Loads each slot's version; the reasons of those that did not load.
    pub fn load(&self, slots: &[Arc<EntitySlot>]) -> Vec<String> {
        slots
            .iter()
            .filter_map(|slot| {
                let outcome = self.updater.refresh(slot, Trigger::Config, false);
                match outcome {
                    _ if slot.is_ready() => None,
                    SwapOutcome::Failed(m) => Some(format!("served entity '{}': {m}", slot.name)),
                    SwapOutcome::RegistryUnavailable(m) => Some(format!(
                        "served entity '{}': the model registry is unreachable: {m}",
                        slot.name
                    )),
                    _ => Some(format!(
                        "served entity '{}': its version's files are still being written; update again",
                        slot.name
                    )),
                }
            })
            .collect()
    }

    fn count(&self, endpoint: &str, success: bool) {
        let outcome = if success {
            Outcome::Success
        } else {
            Outcome::Failure
        };
        self.metrics.swaps.count_config_update(endpoint, outcome);
    }

    pub(super) fn in_background(
        self: &Arc<Self>,
        endpoint: Arc<Endpoint>,
        guard: UpdateGuard,
        work: impl FnOnce(&ControlPlane, Arc<Endpoint>) + Send + 'static,
    ) {
        let plane = self.clone();
        // The update's loads are children of the span of the call that asked for them.
        let traced = crate::trace::current();
        let spawned = std::thread::Builder::new()
            .name("modelgate-config-update".into())
            .spawn(move || {
                let _guard = guard;
                crate::trace::within(traced, || work(&plane, endpoint));
            });
        if let Err(e) = spawned {
            error!("cannot start a config update thread: {e}");
        }
    }

    /// Writes every managed endpoint's current config to the state file.
    pub fn save(&self) -> Result<(), ControlError> {
        let _one = self.lock_saves();
        self.write_state()
    }

    /// [`ControlPlane::save`] for a caller holding `save_lock`.
    pub(super) fn write_state(&self) -> Result<(), ControlError> {
        let Some(path) = &self.state_file else {
            return Ok(());
        };
        let endpoints = self.endpoints.list();
        let saved = endpoints
            .iter()
            .filter(|e| e.managed.load(Ordering::Relaxed))
            .map(|e| saved_endpoint(e, &e.generation()))
            .collect();
        let mut deleted: Vec<String> = self
            .config_endpoints
            .iter()
            .filter(|n| !self.endpoints.contains(n))
            .cloned()
            .collect();
        deleted.sort();
        let mut state = StateFile::new(saved, deleted);
        state.tables = endpoints
            .iter()
            .filter(|e| !e.managed.load(Ordering::Relaxed))
            .map(|e| (e.name.clone(), e.generation().router.table.clone()))
            .collect();
        persist::save(path, &state).map_err(|e| {
            warn!("{e}");
            ControlError::Persist(e)
        })
    }
}

/// The control plane's errors as the API answers them (Databricks' codes).
impl From<ControlError> for RequestError {
    fn from(e: ControlError) -> Self {
        let message = e.to_string();
        match e {
            ControlError::Invalid(violations) => RequestError::InvalidParameters {
                message,
                violations: violations.into_iter().map(|v| (v.key, v.message)).collect(),
            },
            ControlError::NotFound(_) => RequestError::NotFound(message),
            ControlError::AlreadyExists(_) => RequestError::AlreadyExists(message),
            ControlError::Busy(_)
            | ControlError::Changed { .. }
            | ControlError::ChangedElsewhere(_) => RequestError::Conflict(message),
            ControlError::RegistryUnavailable(_)
            | ControlError::StoreUnavailable(_)
            | ControlError::StoreUncertain(_) => RequestError::Unavailable(message),
            ControlError::Persist(_) => RequestError::Internal(message),
        }
    }
}
