//! Promotion gates: each endpoint's decisions, where its evaluation stands, and the webhook
//! deliveries that announce decisions.

use prometheus::{IntCounterVec, IntGaugeVec};

use super::labels::{Outcome, PromotionDecision, PromotionState};
use super::{make, Registrar};

pub struct PromotionMetrics {
    pub decisions: IntCounterVec,
    pub state: IntGaugeVec,
    pub webhook_deliveries: IntCounterVec,
}

impl PromotionMetrics {
    pub fn new(r: &mut Registrar<'_>) -> Self {
        Self {
            decisions: r.add(make::counters(
                "modelgate_promotion_decisions_total",
                "Decisions of an endpoint's promotion evaluation (promoted, rolled_back, refused, passed in a dry run, reset).",
                &["endpoint", "decision"],
            )),
            state: r.add(make::gauges(
                "modelgate_promotion_state",
                "1 for the state an endpoint's promotion evaluation is in, 0 for the others.",
                &["endpoint", "state"],
            )),
            webhook_deliveries: r.add(make::counters(
                "modelgate_promotion_webhook_deliveries_total",
                "Promotion decisions POSTed to promotion.webhook_url, by outcome (success, failure).",
                &["outcome"],
            )),
        }
    }

    pub fn decided(&self, endpoint: &str, decision: PromotionDecision) {
        self.decisions
            .with_label_values(&[endpoint, decision.as_str()])
            .inc();
    }

    /// Sets `endpoint`'s state series: 1 for `now`, 0 for the others.
    pub fn set_state(&self, endpoint: &str, now: PromotionState) {
        for state in PromotionState::ALL {
            self.state
                .with_label_values(&[endpoint, state.as_str()])
                .set(i64::from(*state == now));
        }
    }

    pub fn delivered(&self, outcome: Outcome) {
        self.webhook_deliveries
            .with_label_values(&[outcome.as_str()])
            .inc();
    }

    /// Removes an endpoint's series (deleted, or its promotion removed).
    pub fn forget_endpoint(&self, endpoint: &str) {
        for state in PromotionState::ALL {
            let _ = self.state.remove_label_values(&[endpoint, state.as_str()]);
        }
        for decision in PromotionDecision::ALL {
            let _ = self
                .decisions
                .remove_label_values(&[endpoint, decision.as_str()]);
        }
    }
}
