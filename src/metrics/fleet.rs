//! The fleet's shared store: whether it answers, how many replicas it knows, and the calls
//! judged on a replica's own counts while it did not answer.

use prometheus::{IntCounterVec, IntGauge};

use super::{make, Registrar};

pub struct FleetMetrics {
    pub store_up: IntGauge,
    pub replicas: IntGauge,
    pub fallback_calls: IntCounterVec,
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
        }
    }

    pub fn forget_endpoint(&self, endpoint: &str) {
        let _ = self.fallback_calls.remove_label_values(&[endpoint]);
    }
}
