//! Changes what an endpoint serves, off the request path: resolve the configured version or
//! alias, load the version, check that it fits the endpoint, validate and warm it (the loader),
//! then publish it with one atomic store. A request keeps the version it started with; the old
//! version is dropped when its last request ends. A version that fails any step is never
//! published: the old one keeps serving and the endpoint shows `UPDATE_FAILED` with the reason.

use std::sync::Arc;

use tracing::{error, info, warn};

use super::activity::{Clears, Step};
use super::journal::Level;
use super::loader::{load_served_entity, LoadContext, LoadError};
use super::{ConfigUpdate, EntitySlot, Pin, ServedEntity, SwapRecord};
use crate::clock::now_ms;
use crate::engine::pool::InferencePool;
use crate::engine::{EngineChoice, Engines};
use crate::metrics::labels::Outcome;
use crate::metrics::Metrics;
use crate::registry::{Registry, RegistryError};
use crate::settings::InferenceSettings;

/// What started an update; named in logs and in an endpoint's state (`last_swap.trigger`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Trigger {
    Startup,
    Watch,
    Poll,
    Admin,
    Webhook,
    Rollback,
    /// A promotion (or its rollback) moved the alias the served entity follows.
    Promotion,
    /// A served entity added by a config update (or an endpoint created) through the control
    /// plane.
    Config,
}

impl Trigger {
    pub const ALL: [Self; 8] = [
        Self::Startup,
        Self::Watch,
        Self::Poll,
        Self::Admin,
        Self::Webhook,
        Self::Rollback,
        Self::Promotion,
        Self::Config,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Startup => "startup",
            Self::Watch => "watch",
            Self::Poll => "poll",
            Self::Admin => "admin",
            Self::Webhook => "webhook",
            Self::Rollback => "rollback",
            Self::Promotion => "promotion",
            Self::Config => "config",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SwapOutcome {
    /// Already serving the target version (or the target is still being written).
    Unchanged {
        version: Option<String>,
    },
    Swapped {
        from: Option<String>,
        to: String,
    },
    Failed(String),
    /// The registry did not answer; nothing changed and the caller should retry later.
    RegistryUnavailable(String),
}

pub struct Updater {
    pub registry: Arc<dyn Registry>,
    pub engines: Engines,
    pub pool: Arc<InferencePool>,
    pub inference: InferenceSettings,
    pub default_engine: EngineChoice,
    pub metrics: Arc<Metrics>,
    /// The online store of versions with a feature spec.
    pub store: Option<Arc<dyn crate::features::store::OnlineStore>>,
    /// Each refresh is a span (`registry.refresh`) when tracing is on; the registry's calls
    /// are its children.
    pub tracer: Option<Arc<crate::trace::Tracer>>,
}

/// Seconds since the Unix epoch.
fn now() -> f64 {
    crate::clock::now_ms() as f64 / 1000.0
}

impl Updater {
    /// Serves what the endpoint's config resolves to now, if it is not served already. With
    /// tracing on, a span `registry.refresh` (a child of this thread's span, else a new
    /// trace); a timer's or a file watch's refresh that changed nothing exports none.
    pub fn refresh(&self, slot: &EntitySlot, trigger: Trigger, force: bool) -> SwapOutcome {
        use crate::trace::{ActiveSpan, SpanKind};
        let mut span = ActiveSpan::enter(
            self.tracer.as_ref(),
            None,
            "registry.refresh",
            SpanKind::Internal,
        );
        let outcome = self.refresh_now(slot, trigger, force);
        if let Some(span) = &mut span {
            span.attr("modelgate.served_entity", slot.name.to_string());
            span.attr("modelgate.model", slot.settings.entity_name.clone());
            span.attr("modelgate.trigger", trigger.as_str());
            match &outcome {
                SwapOutcome::Unchanged { .. }
                    if matches!(trigger, Trigger::Poll | Trigger::Watch) =>
                {
                    span.discard()
                }
                SwapOutcome::Unchanged { version } => {
                    span.attr("modelgate.version", version.clone().unwrap_or_default())
                }
                SwapOutcome::Swapped { to, .. } => span.attr("modelgate.version", to.clone()),
                SwapOutcome::Failed(m) | SwapOutcome::RegistryUnavailable(m) => {
                    span.fail(m.clone())
                }
            }
        }
        outcome
    }

    fn refresh_now(&self, slot: &EntitySlot, trigger: Trigger, force: bool) -> SwapOutcome {
        let _update = slot.update_lock.lock().unwrap_or_else(|e| e.into_inner());
        let _clears = Clears(&slot.activity);
        // A served entity's every poll resolves its alias: shown only while it serves nothing.
        if !slot.is_ready() {
            slot.activity.enter(Step::Resolving, None, now_ms());
        }
        let cfg = &slot.settings;
        let target = match self.registry.resolve(&cfg.entity_name, &cfg.entity_version) {
            Ok(v) => v,
            Err(RegistryError::Unreachable(e)) => return self.unavailable(slot, trigger, e),
            Err(e) => {
                return self.fail(
                    slot,
                    trigger,
                    None,
                    format!("cannot resolve '{}': {e}", cfg.entity_version),
                )
            }
        };
        let pinned = slot.with_state(|s| match &s.pinned {
            // A rollback holds until the alias moves somewhere else.
            Some(pin) if pin.alias_target == target && !force => Some(pin.version.clone()),
            Some(_) => {
                s.pinned = None;
                None
            }
            None => None,
        });
        let target = pinned.unwrap_or(target);
        let current = slot.served();
        if !force && current.as_ref().is_some_and(|c| c.meta.version == target) {
            // Serving what the config asks for: an earlier failed attempt no longer matters.
            slot.with_state(|s| {
                if s.config_update == ConfigUpdate::UpdateFailed {
                    s.config_update = ConfigUpdate::NotUpdating;
                }
            });
            return SwapOutcome::Unchanged {
                version: Some(target),
            };
        }
        // A timer does not retry a version that already failed: registry versions do not
        // change in place, and file changes (watch), webhooks and admin reloads do retry.
        let failed_before = slot.state().last_swap.is_some_and(|r| {
            r.outcome == Outcome::Failure && r.to_version.as_deref() == Some(target.as_str())
        });
        if trigger == Trigger::Poll && failed_before && !force {
            return SwapOutcome::Unchanged {
                version: current.map(|c| c.meta.version.clone()),
            };
        }
        self.swap_to(slot, current, &target, trigger)
    }

    /// Serves the version that was served before the last swap, and holds it there until the
    /// alias moves again.
    pub fn rollback(&self, slot: &EntitySlot) -> SwapOutcome {
        let _update = slot.update_lock.lock().unwrap_or_else(|e| e.into_inner());
        let Some(previous) = slot.state().previous_version else {
            return SwapOutcome::Failed(format!(
                "served entity '{}' of endpoint '{}' has no previous version to roll back to",
                slot.name, slot.endpoint
            ));
        };
        let cfg = &slot.settings;
        // The pin holds while the alias stays where it is now; without knowing where that is,
        // the next refresh would undo the rollback.
        let alias_target = match self.registry.resolve(&cfg.entity_name, &cfg.entity_version) {
            Ok(v) => v,
            Err(RegistryError::Unreachable(e)) => {
                return self.unavailable(slot, Trigger::Rollback, e)
            }
            Err(_) => String::new(),
        };
        let outcome = self.swap_to(slot, slot.served(), &previous, Trigger::Rollback);
        if matches!(outcome, SwapOutcome::Swapped { .. }) {
            slot.with_state(|s| {
                s.pinned = Some(Pin {
                    version: previous,
                    alias_target,
                })
            });
        }
        outcome
    }

    fn swap_to(
        &self,
        slot: &EntitySlot,
        current: Option<Arc<ServedEntity>>,
        version: &str,
        trigger: Trigger,
    ) -> SwapOutcome {
        let from = current.as_ref().map(|c| c.meta.version.clone());
        slot.with_state(|s| s.config_update = ConfigUpdate::InProgress);
        let ctx = LoadContext {
            registry: self.registry.as_ref(),
            engines: &self.engines,
            pool: &self.pool,
            inference: &self.inference,
            default_engine: self.default_engine,
            replaces: current.as_deref(),
            store: self.store.as_ref(),
            metrics: Some(&self.metrics),
            journal: Some(&slot.journal),
            activity: Some(&slot.activity),
        };
        let cfg = &slot.settings;
        slot.journal.begin_load(
            now_ms(),
            &format!(
                "loading model '{}' version {version} (trigger: {}; serving: {})",
                cfg.entity_name,
                trigger.as_str(),
                from.as_deref().unwrap_or("nothing yet")
            ),
        );
        let started = std::time::Instant::now();
        let loaded = match load_served_entity(&ctx, cfg, version) {
            Ok(l) => l,
            Err(LoadError::Registry(RegistryError::Incomplete { path })) => {
                // Files still being written: the next event or poll tries again.
                slot.with_state(|s| s.config_update = previous_update_state(s));
                let waiting = format!(
                    "version files under {} are still being written; waiting",
                    path.display()
                );
                slot.journal.load_step(now_ms(), Level::Info, &waiting);
                info!(endpoint = %slot.endpoint, served_entity = %slot.name, version, "{waiting}");
                return SwapOutcome::Unchanged { version: from };
            }
            Err(LoadError::Registry(RegistryError::Unreachable(e))) => {
                slot.with_state(|s| s.config_update = previous_update_state(s));
                return self.unavailable(slot, trigger, e);
            }
            Err(e) => {
                self.metrics
                    .swaps
                    .model_load_duration
                    .with_label_values(&[&slot.endpoint, Outcome::Failure.as_str()])
                    .observe(started.elapsed().as_secs_f64());
                return self.fail(slot, trigger, Some(version), e.to_string());
            }
        };
        let entity = loaded.entity;
        self.metrics
            .swaps
            .model_load_duration
            .with_label_values(&[&slot.endpoint, Outcome::Success.as_str()])
            .observe(loaded.seconds);
        let old = slot.publish(entity.clone());
        drop(old);
        self.metrics
            .swaps
            .model_swaps
            .with_label_values(&[&slot.endpoint, Outcome::Success.as_str()])
            .inc();
        info!(
            endpoint = %slot.endpoint, served_entity = %slot.name, trigger = trigger.as_str(), from = ?from, to = %entity.meta.version,
            engine = %entity.engine, seconds = loaded.seconds, "serving a new version"
        );
        slot.journal.load_step(
            now_ms(),
            Level::Info,
            &format!(
                "serving version {} on {} (loaded in {:.3} s; before: {})",
                entity.meta.version,
                entity.engine,
                loaded.seconds,
                from.as_deref().unwrap_or("nothing")
            ),
        );
        slot.with_state(|s| {
            s.config_update = ConfigUpdate::NotUpdating;
            if from.as_deref() != Some(version) {
                s.previous_version = from.clone();
            }
            s.last_swap = Some(SwapRecord {
                outcome: Outcome::Success,
                trigger,
                from_version: from.clone(),
                to_version: Some(entity.meta.version.clone()),
                message: None,
                at: now(),
            });
        });
        SwapOutcome::Swapped {
            from,
            to: entity.meta.version.clone(),
        }
    }

    /// The registry is down: keep serving what is served, count it, let the caller back off.
    fn unavailable(&self, slot: &EntitySlot, trigger: Trigger, message: String) -> SwapOutcome {
        warn!(endpoint = %slot.endpoint, served_entity = %slot.name, trigger = trigger.as_str(), "the model registry is unreachable, the served version stays: {message}");
        slot.journal.record(
            now_ms(),
            Level::Warn,
            &format!("the model registry is unreachable, the served version stays: {message}"),
        );
        self.metrics
            .swaps
            .registry_errors
            .with_label_values(&[&slot.endpoint])
            .inc();
        SwapOutcome::RegistryUnavailable(message)
    }

    fn fail(
        &self,
        slot: &EntitySlot,
        trigger: Trigger,
        version: Option<&str>,
        message: String,
    ) -> SwapOutcome {
        error!(endpoint = %slot.endpoint, served_entity = %slot.name, trigger = trigger.as_str(), version = ?version, "update failed, the served version stays: {message}");
        let line = format!(
            "update to version {} failed ({}), the served version stays: {message}",
            version.unwrap_or("?"),
            trigger.as_str()
        );
        match version {
            // A load that failed: the last line of its build log.
            Some(_) => slot.journal.load_step(now_ms(), Level::Error, &line),
            None => slot.journal.record(now_ms(), Level::Error, &line),
        }
        self.metrics
            .swaps
            .model_swaps
            .with_label_values(&[&slot.endpoint, Outcome::Failure.as_str()])
            .inc();
        let from = slot.served().map(|c| c.meta.version.clone());
        slot.with_state(|s| {
            s.config_update = ConfigUpdate::UpdateFailed;
            s.last_swap = Some(SwapRecord {
                outcome: Outcome::Failure,
                trigger,
                from_version: from,
                to_version: version.map(str::to_owned),
                message: Some(message.clone()),
                at: now(),
            });
        });
        SwapOutcome::Failed(message)
    }
}

/// After a deferred load, the state goes back to what the last attempt left.
fn previous_update_state(s: &super::UpdateState) -> ConfigUpdate {
    match &s.last_swap {
        Some(r) if r.outcome == Outcome::Failure => ConfigUpdate::UpdateFailed,
        _ => ConfigUpdate::NotUpdating,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_swap_record_keeps_its_json_words() {
        for t in Trigger::ALL {
            assert_eq!(serde_json::to_value(t).unwrap(), t.as_str());
        }
        for o in Outcome::ALL {
            assert_eq!(serde_json::to_value(o).unwrap(), o.as_str());
        }
        let record = SwapRecord {
            outcome: Outcome::Failure,
            trigger: Trigger::Webhook,
            from_version: Some("1".into()),
            to_version: Some("2".into()),
            message: Some("no".into()),
            at: 1.5,
        };
        assert_eq!(
            serde_json::to_value(&record).unwrap(),
            serde_json::json!({"outcome": "failure", "trigger": "webhook", "from_version": "1",
                "to_version": "2", "message": "no", "at": 1.5})
        );
    }
}
