//! What the gateway shows besides answers: the Prometheus scrape (gauges sampled now), the
//! monitoring report of each served entity, and the outcome of joining posted labels.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use serde_json::json;
use tracing::warn;

use crate::drift::monitor::{LabelOutcomes, MonitorSnapshot};
use crate::drift::report::EntityReport;
use crate::endpoint::Endpoint;
use crate::error::RequestError;
use crate::inference_log::LabelRecord;
use crate::metrics::labels::LabelOutcome;

use super::gateway::{FleetProfiles, TheirProfile};

use super::Gateway;

impl Gateway {
    /// The Prometheus exposition, with gauges sampled now.
    pub fn render_metrics(&self) -> Vec<u8> {
        self.render_metrics_of(None)
    }

    /// [`Gateway::render_metrics`] of one endpoint's series only, or of all (`None`).
    pub fn render_metrics_of(&self, endpoint: Option<&str>) -> Vec<u8> {
        let (bytes, records) = self.log.depth();
        let m = &self.metrics;
        m.log.queue_bytes.set(bytes as i64);
        m.log.queue_records.set(records as i64);
        m.serving
            .inference_queue_depth
            .set(self.pool.queued() as i64);
        // Jobs the pool skipped since the last scrape: their callers' deadlines had passed
        // (or they hung up) before a worker took them.
        let skipped = self.pool.abandoned();
        let seen = self.pool_abandoned_seen.swap(skipped, Ordering::AcqRel);
        self.deadline_refusals.inc_by(skipped.saturating_sub(seen));
        m.swaps
            .loaded_versions
            .set(crate::endpoint::live_versions() as i64);
        let reports: Vec<_> = match self.monitoring {
            None => Vec::new(),
            Some(_) => self
                .endpoints()
                .into_iter()
                .map(|e| (self.monitoring_reports(&e), e))
                .collect(),
        };
        // The monitoring gauges are cleared and set again: one scrape at a time, so another
        // never renders them half set.
        let _one_scrape = self.scrape.lock().unwrap_or_else(|e| e.into_inner());
        if self.monitoring.is_some() {
            let m = &self.metrics.monitoring;
            m.clear();
            for (entities, endpoint) in &reports {
                for report in entities {
                    m.publish(&endpoint.name, report);
                }
                m.publish_pending(&endpoint.name, &endpoint.pending_labels);
            }
        }
        match endpoint {
            Some(name) => self.metrics.render_endpoint(name),
            None => self.metrics.render(),
        }
    }

    /// The drift and quality report of each served entity of `endpoint` that has been
    /// monitored (closing the windows that ended); in a fleet, over every replica's counts.
    pub fn monitoring_reports(&self, endpoint: &Endpoint) -> Vec<EntityReport> {
        self.monitoring_reports_of(endpoint, true)
    }

    /// [`Gateway::monitoring_reports`], of this replica's counts alone unless `fleet_wide`.
    pub fn monitoring_reports_of(
        &self,
        endpoint: &Endpoint,
        fleet_wide: bool,
    ) -> Vec<EntityReport> {
        let now = crate::drift::monitor::now_ms();
        let Some(config) = &self.monitoring else {
            return Vec::new();
        };
        let others = match (&self.profiles, fleet_wide) {
            (Some(_), true) => Some(self.others_profiles(&endpoint.name)),
            _ => None,
        };
        endpoint
            .generation()
            .slots
            .iter()
            .map(|s| {
                let theirs: Vec<&MonitorSnapshot> = others
                    .iter()
                    .flat_map(|o| o.iter())
                    .filter(|p| *p.served_entity == *s.name)
                    .map(|p| &p.snapshot)
                    .collect();
                let served = s.served();
                let serving = served.as_ref().map(|e| e.monitored());
                let (mut report, added) = s
                    .monitor(config, now)
                    .report_with(&s.name, now, &theirs, serving);
                if others.is_some() {
                    report.replicas = Some(1 + added);
                }
                if report.model.is_none() {
                    // Nothing scored yet: show what the slot serves.
                    let served = s.served();
                    report.model = served.as_ref().map(|e| e.meta.model.clone());
                    report.version = served.as_ref().map(|e| e.meta.version.clone());
                    report.baseline = served.is_some_and(|e| e.profile.is_some());
                }
                report
            })
            .collect()
    }

    /// The other replicas' profiles of `endpoint`, by served entity, as the publishing thread
    /// last read them (no round trip: reports and scrapes never wait for the store).
    fn others_profiles(&self, endpoint: &str) -> Arc<Vec<TheirProfile>> {
        self.fleet_profiles
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(endpoint)
            .cloned()
            .unwrap_or_default()
    }

    /// Writes every served entity's monitoring profile for the other replicas of a fleet, and
    /// reads theirs back.
    pub fn publish_profiles(&self) {
        let (Some(store), Some(config)) = (&self.profiles, &self.monitoring) else {
            return;
        };
        let now = crate::drift::monitor::now_ms();
        let mut profiles = Vec::new();
        for endpoint in self.endpoints() {
            for slot in &endpoint.generation().slots {
                let Some(snapshot) = slot.monitor(config, now).snapshot(now) else {
                    continue;
                };
                let profile = serde_json::to_string(&snapshot).expect("counts serialize");
                profiles.push((
                    endpoint.name.clone(),
                    crate::fleet::profiles::Published {
                        served_entity: slot.name.to_string(),
                        profile,
                    },
                ));
            }
        }
        let at = now.max(0) as u64;
        if let Err(e) = store.publish(&profiles, at) {
            warn!("this replica's monitoring profiles were not published to the fleet: {e}");
        }
        // The others' profiles, read once for the reports until the next round.
        let names: Vec<String> = self.endpoints().iter().map(|e| e.name.clone()).collect();
        let published = match store.others(&names, at) {
            Ok(p) => p,
            Err(e) => {
                warn!("the other replicas' monitoring profiles were not read (reports add up those read before, until they are older than {} s): {e}", store.keep().as_secs());
                let mut cached = self
                    .fleet_profiles
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                age_out(&mut cached, at, store.keep());
                return;
            }
        };
        let parsed = published
            .into_iter()
            .map(|(endpoint, profiles)| {
                let snapshots: Vec<TheirProfile> = profiles
                    .into_iter()
                    .filter_map(|(published_ms, p)| {
                        let snapshot = serde_json::from_str(&p.profile)
                            .map_err(|e| warn!(endpoint = %endpoint, "a replica's monitoring profile cannot be read: {e}"))
                            .ok()?;
                        Some(TheirProfile {
                            served_entity: p.served_entity,
                            published_ms,
                            snapshot,
                        })
                    })
                    .collect();
                (endpoint, Arc::new(snapshots))
            })
            .collect();
        *self
            .fleet_profiles
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = parsed;
    }

    /// V2 model metadata of `model` (an endpoint) at `version` (a served entity's name or the
    /// model version it serves), else of its largest route: the versions it answers with, the
    /// platform and the tensors.
    pub fn v2_model_metadata(
        &self,
        model: &str,
        version: Option<&str>,
    ) -> Result<serde_json::Value, crate::error::RequestError> {
        let (generation, entity) = self.v2_target(model, version)?;
        // Every version the model name answers with: the served versions of its routed entities.
        let versions: Vec<String> = match version {
            Some(_) => vec![entity.meta.version.clone()],
            None => {
                let mut versions: Vec<String> = Vec::new();
                for &arm in &generation.router.split_arms {
                    if let Some(e) = generation.slots[arm].served() {
                        if !versions.contains(&e.meta.version) {
                            versions.push(e.meta.version.clone());
                        }
                    }
                }
                versions
            }
        };
        let tensors = |specs: &[crate::engine::TensorSpec]| -> Vec<serde_json::Value> {
            specs
                .iter()
                .map(|s| serde_json::json!({ "name": s.name, "datatype": s.elem.v2_name(), "shape": s.v2_shape() }))
                .collect()
        };
        Ok(serde_json::json!({
            "name": model,
            "versions": versions,
            // The platform name the V2 specification lists for ONNX models.
            "platform": "onnx_onnxv1",
            "inputs": tensors(entity.loaded.inputs()),
            "outputs": tensors(entity.loaded.outputs()),
        }))
    }

    /// The endpoints that serve registered model `model`, and the served entities serving it
    /// (an MLflow webhook about the model refreshes them).
    pub fn serving_model(
        &self,
        model: &str,
    ) -> (
        Vec<String>,
        Vec<std::sync::Arc<crate::endpoint::EntitySlot>>,
    ) {
        let mut names = Vec::new();
        let mut slots = Vec::new();
        for ep in self.endpoints() {
            let generation = ep.generation();
            let serving: Vec<_> = generation
                .slots
                .iter()
                .filter(|s| s.settings.entity_name == model)
                .cloned()
                .collect();
            if !serving.is_empty() {
                names.push(ep.name.clone());
                slots.extend(serving);
            }
        }
        (names, slots)
    }

    /// The monitoring page of an endpoint: drift per served entity and feature, the flags,
    /// the quality of labelled predictions by window with every served entity side by side
    /// (champion against challenger), and the labels still pending. Blocking: it closes
    /// windows and takes the served entities' locks.
    /// In a fleet the figures are over every replica's counts, unless `fleet_wide` is false
    /// (this replica's alone).
    pub fn monitoring_view(
        &self,
        endpoint: &Endpoint,
        fleet_wide: bool,
    ) -> Result<serde_json::Value, RequestError> {
        let Some(config) = &self.monitoring else {
            return Err(RequestError::bad(
                "monitoring is off (monitoring.enabled: false)",
            ));
        };
        let reports = self.monitoring_reports_of(endpoint, fleet_wide);
        let mut comparison: Vec<serde_json::Value> = Vec::new();
        for report in &reports {
            for q in &report.quality {
                let at = match comparison.iter().position(|c| c["window"] == q.window) {
                    Some(i) => i,
                    None => {
                        comparison.push(json!({"window": q.window, "served_entities": {}}));
                        comparison.len() - 1
                    }
                };
                comparison[at]["served_entities"][&report.served_entity] = json!(q.figures);
            }
        }
        let pending = endpoint.pending_labels.figures();
        let scope = match (&self.profiles, fleet_wide) {
            (None, _) => None,
            (Some(_), true) => Some("fleet"),
            (Some(_), false) => Some("replica"),
        };
        let mut view = json!({
            "endpoint": endpoint.name,
            "time": crate::drift::report::iso(crate::drift::monitor::now_ms()),
            "windows": config.widths.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            "min_count": config.min_count,
            "thresholds": config.thresholds,
            "drift": reports.iter().any(|r| r.drift),
            "served_entities": reports,
            "quality_comparison": comparison,
            "labels": {
                "pending_rows": pending.rows,
                "pending_bytes": pending.bytes,
            },
        });
        if let Some(scope) = scope {
            view["scope"] = json!(scope);
        }
        Ok(view)
    }

    /// Joins posted labels to the predictions waiting for them, noting the place of each
    /// unmatched label; not counted (see [`Gateway::count_labels`]).
    pub(super) fn join_labels(
        &self,
        endpoint: &Endpoint,
        labels: &[LabelRecord],
        unmatched: &mut Vec<usize>,
    ) -> Option<LabelOutcomes> {
        let config = self.monitoring.as_ref()?;
        let now = crate::drift::monitor::now_ms();
        Some(
            endpoint
                .pending_labels
                .join_noting_unmatched(&config.labels, labels, now, unmatched),
        )
    }

    /// Counts labels by outcome.
    pub(super) fn count_labels(&self, endpoint: &str, out: &LabelOutcomes) {
        let counter = &self.metrics.monitoring.labels;
        for (outcome, n) in [
            (LabelOutcome::Joined, out.joined),
            (LabelOutcome::Unmatched, out.unmatched),
            (LabelOutcome::Duplicate, out.duplicate),
            (LabelOutcome::Invalid, out.invalid),
            (LabelOutcome::Forwarded, out.forwarded),
        ] {
            if n > 0 {
                counter
                    .with_label_values(&[endpoint, outcome.as_str()])
                    .inc_by(n);
            }
        }
    }
}

/// Drops the other replicas' profiles published more than `keep` before `now` (the store
/// would have removed them): while the store cannot be read, a replica that went away stops
/// counting in the reports once its profiles are that old, as it would with the store up.
fn age_out(cached: &mut FleetProfiles, now: u64, keep: std::time::Duration) {
    use crate::fleet::profiles::expired;
    cached.retain(|_, profiles| {
        if profiles.iter().any(|p| expired(p.published_ms, now, keep)) {
            Arc::make_mut(profiles).retain(|p| !expired(p.published_ms, now, keep));
        }
        !profiles.is_empty()
    });
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::drift::quality::QualityCounts;
    use crate::drift::window::Windowed;

    fn theirs(served_entity: &str, published_ms: u64) -> TheirProfile {
        let quality = Windowed::new(QualityCounts::default(), &[], 1, 0).snapshot();
        TheirProfile {
            served_entity: served_entity.into(),
            published_ms,
            snapshot: MonitorSnapshot {
                model: "m".into(),
                version: "1".into(),
                drift: None,
                quality,
            },
        }
    }

    #[test]
    fn profiles_read_before_an_outage_stop_counting_once_older_than_the_keep_time() {
        let keep = Duration::from_secs(3600);
        let mut cached = FleetProfiles::new();
        cached.insert(
            "tx".into(),
            Arc::new(vec![theirs("champion", 1_000), theirs("challenger", 5_000)]),
        );
        cached.insert("other".into(), Arc::new(vec![theirs("champion", 2_000)]));

        // Within the keep time of every one: all kept.
        age_out(&mut cached, 1_000 + 3_600_000, keep);
        assert_eq!(cached["tx"].len(), 2);
        assert_eq!(cached["other"].len(), 1);

        // Past the first's and the other endpoint's: those go, an endpoint left empty too.
        age_out(&mut cached, 2_001 + 3_600_000, keep);
        let left: Vec<&str> = cached["tx"]
            .iter()
            .map(|p| p.served_entity.as_str())
            .collect();
        assert_eq!(left, ["challenger"]);
        assert!(!cached.contains_key("other"));

        age_out(&mut cached, 5_001 + 3_600_000, keep);
        assert!(cached.is_empty());
    }
}
