//! Who gets in and how much they may hold: auth refusals, refusals at a bound, request bodies
//! in flight, TLS certificate reloads.

use prometheus::{IntCounterVec, IntGauge};

use super::{make, Registrar};
use crate::error::Limit;

pub struct AccessMetrics {
    pub auth_refusals: IntCounterVec,
    /// Requests refused at a bound (`limit` from [`Limit::name`]).
    pub limit_refusals: IntCounterVec,
    /// Bytes of request bodies held by the requests in flight.
    pub inflight_body_bytes: IntGauge,
    pub tls_reloads: IntCounterVec,
}

impl AccessMetrics {
    pub fn new(r: &mut Registrar<'_>) -> Self {
        let m = Self {
            auth_refusals: r.add(make::counters(
                "modelgate_auth_refusals_total",
                "Requests refused for their bearer token, by error code: UNAUTHENTICATED (none or unknown), PERMISSION_DENIED (a token without the route's scope).",
                &["error_code"],
            )),
            limit_refusals: r.add(make::counters(
                "modelgate_limit_refusals_total",
                "Requests refused at a bound, by limit (body_bytes, inflight_body_bytes, body_read_timeout, columns, rows, cells, string_bytes, id_bytes, outputs, response_bytes, streams_per_connection, label_keys, labels, deadline: a job dropped or stopped because its caller's deadline passed); each is a setting (docs/operations.md).",
                &["limit"],
            )),
            inflight_body_bytes: r.add(make::gauge(
                "modelgate_inflight_body_bytes",
                "Bytes of request bodies, and of scoring answers not yet taken by their connections, held by the requests in flight (server.max_inflight_body_bytes bounds what new bodies may add).",
            )),
            tls_reloads: r.add(make::counters(
                "modelgate_tls_reloads_total",
                "Reloads of the TLS certificate and key after their files changed, by outcome (success, failure: the old certificate stays).",
                &["outcome"],
            )),
        };
        // Every bound shows from 0: an alert on a rate needs the series before the first refusal.
        for limit in Limit::ALL {
            m.limit_refusals.with_label_values(&[limit.name()]);
        }
        m
    }

    /// The refusals at `limit`.
    pub fn refusals(&self, limit: Limit) -> prometheus::IntCounter {
        self.limit_refusals.with_label_values(&[limit.name()])
    }
}
