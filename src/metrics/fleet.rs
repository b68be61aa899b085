//! The fleet's shared store: whether it answers, how many replicas it knows, the calls judged
//! on a replica's own counts while it did not answer, and whether the replica serves the
//! fleet's latest endpoint configs.

use prometheus::{IntCounterVec, IntGauge};

use super::{make, Registrar};

pub struct FleetMetrics {
    pub store_up: IntGauge,
    pub replicas: IntGauge,
    pub fallback_calls: IntCounterVec,
    pub configs_in_sync: IntGauge,
    pub configs_revision: IntGauge,
    pub configs_applied: IntCounterVec,
}

impl FleetMetrics {
    pub fn new(r: &mut Registrar<'_>) -> Self {
        Self {
            store_up: r.add(make::gauge(
                "modelgate_fleet_store_up",
                "1 while calls are judged on the fleet's counts (the shared store, fleet.redis_url, answered lately), 0 while they are judged on this replica's own (and always 0 without a fleet).",
            )),
            replicas: r.add(make::gauge(
                "modelgate_fleet_replicas",
                "Replicas that synced with the fleet's shared store within fleet.replica_ttl_ms, as the last sync saw them (0 without a fleet).",
            )),
            fallback_calls: r.add(make::counters(
                "modelgate_rate_limit_fallback_calls_total",
                "Calls to rate-limited endpoints judged (admitted or refused) on this replica's own counts, limit / replicas, because the fleet's shared store had not answered lately (three sync intervals and two timeouts).",
                &["endpoint"],
            )),
            configs_in_sync: r.add(make::gauge(
                "modelgate_fleet_configs_in_sync",
                "1 while this replica serves the endpoint configs the fleet's shared store holds (its last look, every fleet.config_poll_ms or at a change's announcement, answered and everything it found was applied or is loading), 0 while it serves the last configs it knew: the store does not answer, or a change did not apply here (/readyz says which; and always 0 without a fleet).",
            )),
            configs_revision: r.add(make::gauge(
                "modelgate_fleet_configs_revision",
                "The revision of the fleet's shared store (the config changes made since its data began) whose configs this replica serves in full, as of its last look; replicas that agree serve the same configs (0 without a fleet).",
            )),
            configs_applied: r.add(make::counters(
                "modelgate_fleet_config_changes_applied_total",
                "Endpoint config changes made through other replicas (or found in the store at start) that this replica applied, by what the change was: created, updated, deleted; failed when the change's record could not be read or its models did not load here.",
                &["change"],
            )),
        }
    }

    pub fn forget_endpoint(&self, endpoint: &str) {
        let _ = self.fallback_calls.remove_label_values(&[endpoint]);
    }
}
