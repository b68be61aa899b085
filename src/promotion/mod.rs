//! Promotion gates: an endpoint's challenger replaces its champion when its live, labelled
//! quality is better by a margin the data supports, and the replacement is rolled back when
//! the new champion's quality drops (docs/promotion.md). One thread looks at every endpoint
//! with `promotion` rules every `promotion.check_interval_ms`, so one decision at a time is
//! made per endpoint; in one process only (a fleet needs a lock in the shared store).

pub mod evaluation;
pub mod rules;
pub mod webhook;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tracing::{error, info, warn};

use self::evaluation::{Change, Evaluation, Look, Side, Step};
use crate::drift::MonitorConfig;
use crate::endpoint::control::ControlPlane;
use crate::endpoint::updater::{SwapOutcome, Trigger};
use crate::endpoint::{Endpoint, EntitySlot, Generation};
use crate::metrics::labels::{Outcome, PromotionState};
use crate::metrics::Metrics;
use crate::settings::promotion::{PromotionGlobals, PromotionSettings};

/// One endpoint's evaluation, shared by the promotion thread and the view.
type Shared = Arc<Mutex<Evaluation>>;

pub struct Promotions {
    control: Arc<ControlPlane>,
    /// None when monitoring is off: nothing is labelled, nothing is judged.
    monitor: Option<Arc<MonitorConfig>>,
    metrics: Arc<Metrics>,
    interval: Duration,
    webhook: Option<webhook::Webhook>,
    /// Each endpoint's evaluation, with the creation time of the endpoint it is about.
    evaluations: Mutex<HashMap<String, (u64, Shared)>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Promotions {
    pub fn new(
        control: Arc<ControlPlane>,
        monitor: Option<Arc<MonitorConfig>>,
        metrics: Arc<Metrics>,
        globals: &PromotionGlobals,
    ) -> Self {
        let webhook = match (&globals.webhook_url, &globals.webhook_secret) {
            (Some(url), Some(secret)) => Some(webhook::Webhook::new(
                url,
                secret,
                Duration::from_millis(globals.webhook_timeout_ms),
            )),
            _ => None,
        };
        Self {
            control,
            monitor,
            metrics,
            interval: Duration::from_millis(globals.check_interval_ms),
            webhook,
            evaluations: Mutex::new(HashMap::new()),
        }
    }

    /// Whether labelled quality is measured at all (promotion rules need it).
    pub fn monitoring(&self) -> bool {
        self.monitor.is_some()
    }

    /// Looks at every endpoint with promotion rules once, at `now_ms`, takes the steps they
    /// call for, and announces the decisions (to `webhook` too, when there is one).
    pub fn tick(&self, now_ms: i64, webhook: Option<&webhook::Sender>) {
        let mut live = Vec::new();
        for endpoint in self.control.endpoints.list() {
            if endpoint.generation().settings.promotion.is_none() {
                continue;
            }
            live.push(endpoint.name.clone());
            // One endpoint's panic (a bug) must not stop the others' evaluations for good.
            let looked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.look_at(&endpoint, now_ms, webhook)
            }));
            if looked.is_err() {
                error!(endpoint = %endpoint.name, "the promotion evaluation panicked; it is looked at again at the next check");
            }
        }
        let mut evaluations = lock(&self.evaluations);
        let gone: Vec<String> = evaluations
            .keys()
            .filter(|name| !live.contains(name))
            .cloned()
            .collect();
        for name in gone {
            evaluations.remove(&name);
            self.metrics.promotion.forget_endpoint(&name);
        }
    }

    /// One endpoint's look, its step and its announcements.
    fn look_at(&self, endpoint: &Arc<Endpoint>, now_ms: i64, webhook: Option<&webhook::Sender>) {
        let generation = endpoint.generation();
        let Some(settings) = &generation.settings.promotion else {
            return;
        };
        let Some(look) = self.look(&generation, settings, now_ms) else {
            return;
        };
        let evaluation = self.evaluation(endpoint, now_ms);
        let step = lock(&evaluation).step(&look, now_ms);
        if let Some(step) = step {
            // Done without the evaluation's lock: a view meanwhile shows the state before.
            let result = self.take(endpoint, &look, &step);
            lock(&evaluation).acted(&look, step, result, now_ms);
        }
        let (state, fresh) = {
            let mut e = lock(&evaluation);
            (e.state, e.take_fresh())
        };
        self.metrics.promotion.set_state(&endpoint.name, state);
        for event in fresh {
            self.announce(&endpoint.name, &event, webhook);
        }
    }

    /// The endpoint's evaluation; a new one for an endpoint deleted and created again under
    /// the same name (its served entities and their counts are new).
    fn evaluation(&self, endpoint: &Endpoint, now_ms: i64) -> Shared {
        let mut evaluations = lock(&self.evaluations);
        let entry = evaluations.entry(endpoint.name.clone()).or_insert_with(|| {
            (
                endpoint.created_ms,
                Arc::new(Mutex::new(Evaluation::new(now_ms))),
            )
        });
        if entry.0 != endpoint.created_ms {
            *entry = (
                endpoint.created_ms,
                Arc::new(Mutex::new(Evaluation::new(now_ms))),
            );
        }
        entry.1.clone()
    }

    /// The two sides as they are now; none when either is not in the config (the rules were
    /// checked against it, so only while a config changes) or monitoring is off.
    fn look(
        &self,
        generation: &Generation,
        settings: &PromotionSettings,
        now_ms: i64,
    ) -> Option<Look> {
        let monitor = self.monitor.as_ref()?;
        let side = |name: &str| -> Option<Side> {
            let slot: &Arc<EntitySlot> = generation.slots.iter().find(|s| &*s.name == name)?;
            Some(Side {
                served_entity: name.to_owned(),
                model: slot.settings.entity_name.clone(),
                alias_or_version: slot.settings.entity_version.clone(),
                version: slot.served().map(|e| e.meta.version.clone()),
                total: slot.monitor(monitor, now_ms).quality_total(),
            })
        };
        Some(Look {
            settings: settings.clone(),
            config_version: generation.config_version,
            traffic: generation.settings.traffic_config.clone(),
            champion: side(&settings.champion)?,
            challenger: side(&settings.challenger)?,
        })
    }

    /// Carries out a promotion or a rollback: the config version a traffic change made, or
    /// why it could not be done.
    fn take(&self, endpoint: &Endpoint, look: &Look, step: &Step) -> Result<Option<u64>, String> {
        let registry = &self.control.updater.registry;
        match step.change() {
            Change::Alias {
                model,
                alias,
                from_version,
                to_version,
            } => {
                // Moved only from where this evaluation saw it: an alias moved meanwhile (by
                // hand, or pinned elsewhere) is left alone.
                let now = registry
                    .resolve(model, alias)
                    .map_err(|e| format!("cannot read alias '{alias}': {e}"))?;
                if now != *from_version {
                    return Err(format!(
                        "alias '{alias}' of model '{model}' points at version {now}, not {from_version} as the champion serves: nothing moved"
                    ));
                }
                // Refuses a version that is archived or gone (never promoted).
                registry
                    .set_alias(model, alias, to_version)
                    .map_err(|e| e.to_string())?;
                info!(endpoint = %endpoint.name, model = %model, alias = %alias, version = %to_version, "promotion moved a registry alias");
                match self.follow_alias(endpoint, look, model, alias) {
                    Some(SwapOutcome::Failed(why) | SwapOutcome::RegistryUnavailable(why)) => {
                        // The alias must not point at a version its own endpoint cannot serve.
                        let restored = registry.set_alias(model, alias, from_version).map_or_else(
                            |e| format!("; moving it back failed too: {e}"),
                            |()| format!("; the alias is back on version {from_version}"),
                        );
                        self.follow_alias(endpoint, look, model, alias);
                        Err(format!(
                            "the champion could not serve version {to_version}: {why}{restored}"
                        ))
                    }
                    _ => Ok(None),
                }
            }
            Change::Traffic {
                to, from_config, ..
            } => {
                if let (Step::Promote(_), Some(version)) = (step, &look.challenger.version) {
                    // An archived version is not promoted, by alias or by traffic.
                    registry
                        .resolve(&look.challenger.model, version)
                        .map_err(|e| e.to_string())?;
                }
                self.control
                    .retraffic(&endpoint.name, *from_config, to.clone())
                    .map(Some)
                    .map_err(|e| e.to_string())
            }
        }
    }

    /// Refreshes every served entity that follows `alias` of `model` now, not at the next
    /// poll; how the endpoint's champion fared.
    fn follow_alias(
        &self,
        endpoint: &Endpoint,
        look: &Look,
        model: &str,
        alias: &str,
    ) -> Option<SwapOutcome> {
        let mut champion = None;
        for ep in self.control.endpoints.list() {
            for slot in &ep.generation().slots {
                if slot.settings.entity_name == model && slot.settings.entity_version == alias {
                    let outcome = self
                        .control
                        .updater
                        .refresh(slot, Trigger::Promotion, false);
                    if ep.name == endpoint.name && *slot.name == *look.champion.served_entity {
                        champion = Some(outcome);
                    }
                }
            }
        }
        champion
    }

    /// A decision's metric, log line and webhook.
    fn announce(
        &self,
        endpoint: &str,
        event: &evaluation::Event,
        webhook: Option<&webhook::Sender>,
    ) {
        self.metrics.promotion.decided(endpoint, event.decision);
        info!(endpoint = %endpoint, decision = event.decision.as_str(), "promotion: {}", event.message);
        let Some(webhook) = webhook else {
            return;
        };
        let body = json!({
            "endpoint": endpoint,
            "decision": event.decision,
            "state": event.state,
            "message": event.message,
            "at": event.at,
            "action": event.action,
            "comparison": event.comparison,
        })
        .to_string();
        match webhook.deliver(body.as_bytes(), crate::clock::now_s()) {
            Ok(()) => self.metrics.promotion.delivered(Outcome::Success),
            Err(e) => {
                self.metrics.promotion.delivered(Outcome::Failure);
                warn!(endpoint = %endpoint, "a promotion decision was not delivered to the webhook: {e}");
            }
        }
    }

    /// `GET .../promotion`: the rules, the state, the figures behind it and the decisions.
    pub fn view(&self, endpoint: &Endpoint) -> Value {
        let generation = endpoint.generation();
        let Some(settings) = &generation.settings.promotion else {
            return json!({
                "endpoint": endpoint.name,
                "state": PromotionState::Off,
                "reason": "the endpoint has no promotion rules: PUT them to .../promotion",
                "settings": null,
                "events": [],
            });
        };
        let Some(evaluation) = lock(&self.evaluations)
            .get(&endpoint.name)
            .filter(|(created, _)| *created == endpoint.created_ms)
            .map(|(_, e)| e.clone())
        else {
            return json!({
                "endpoint": endpoint.name,
                "state": PromotionState::Collecting,
                "reason": if self.monitor.is_some() { "not looked at yet" } else { "monitoring is off: labelled quality is not measured" },
                "dry_run": settings.dry_run,
                "settings": settings,
                "events": [],
            });
        };
        let e = lock(&evaluation);
        json!({
            "endpoint": endpoint.name,
            "state": e.state,
            "reason": e.reason,
            "dry_run": settings.dry_run,
            "settings": settings,
            "evaluation_started": crate::drift::report::iso(e.started_ms),
            "looked_at": crate::drift::report::iso(e.looked_ms),
            "champion": e.champion,
            "challenger": e.challenger,
            "comparison": e.comparison,
            "rules": e.rules,
            "action": e.action,
            "guard": e.guard,
            "events": e.events,
        })
    }

    /// Runs [`Promotions::tick`] every check interval on a thread of its own, until the
    /// handle is dropped.
    pub fn spawn(self: &Arc<Self>) -> std::io::Result<crate::periodic::Periodic> {
        let promotions = self.clone();
        // Made, used and dropped on the thread: a blocking HTTP client may not be made or
        // dropped on the async runtime.
        let mut sender: Option<Option<webhook::Sender>> = None;
        crate::periodic::spawn("modelgate-promotion", self.interval, move || {
            let sender = sender.get_or_insert_with(|| {
                promotions.webhook.as_ref().and_then(|w| {
                    w.connect()
                        .map_err(|e| warn!("promotion decisions will not be delivered: {e}"))
                        .ok()
                })
            });
            promotions.tick(crate::clock::now_ms() as i64, sender.as_ref());
        })
    }
}
