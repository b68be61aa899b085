//! The side channels of a scored batch: row counts and prediction histograms, the monitor
//! (profiles, predictions waiting for labels), and what the inference log keeps. One hook
//! for every path that scores rows: the whole request, a split batch's arms, shadow copies.

use std::sync::Arc;

use bytes::Bytes;

use crate::drift::monitor::{RequestMonitor, Scorer};
use crate::endpoint::{EntitySlot, ServedEntity};
use crate::engine::NamedTensor;
use crate::features::join::Joined;
use crate::inference_log::{
    CallRecord, Capture, InferenceLog, Inputs, PackedColumns, ScoredRows, Unlogged,
};
use crate::metrics::ArmMetrics;
use crate::protocol::frame::Frame;
use crate::version::VersionMeta;

/// A request that the inference log keeps: where, and under which id and time.
#[derive(Clone)]
pub struct LogTicket {
    pub log: Arc<InferenceLog>,
    pub capture: Arc<Capture>,
    pub request_id: Arc<str>,
    /// The request id's bits that decide whether it is sampled ([`crate::inference_log::RequestId`]).
    pub sample_bits: u64,
    /// Arrival, microseconds since the Unix epoch.
    pub time_us: i64,
}

impl LogTicket {
    /// The payload row of this request, answered with `status_code` and `response`.
    pub fn call(
        &self,
        status_code: u16,
        request: Option<Bytes>,
        response: Bytes,
        requester: Option<&str>,
    ) -> CallRecord {
        CallRecord {
            request_id: self.request_id.clone(),
            client_request_id: None,
            time_us: self.time_us,
            status_code,
            execution_ms: None,
            request,
            response: Some(response),
            served_entity: None,
            logging_error_codes: Vec::new(),
            requester: requester.map(str::to_owned),
            sampling_fraction: self.capture.sampling_fraction,
        }
    }

    /// Queues this request's payload row and the rows it scored
    /// ([`InferenceLog::log_call`]); handed back under `backpressure: reject` when they do not
    /// fit, for the caller to refuse the request.
    pub fn log(self, call: CallRecord, scored: Vec<ScoredRows>) -> Result<(), Unlogged> {
        (self.log).log_call(self.capture, self.sample_bits, call, scored)
    }

    /// As [`LogTicket::log`], for a call answered whatever happens (an error): rows that do
    /// not fit are counted as dropped.
    pub fn log_answered(self, call: CallRecord, scored: Vec<ScoredRows>) {
        let log = self.log.clone();
        if let Err(unlogged) = self.log(call, scored) {
            log.count_unlogged(unlogged);
        }
    }

    /// Queues the rows a shadow served entity scored for this request's copy.
    pub fn log_shadow(&self, rows: ScoredRows) {
        (self.log).log_shadow(self.capture.clone(), self.sample_bits, rows);
    }

    /// The prediction rows of this request that `served_entity` scored.
    pub fn rows(
        &self,
        served_entity: &Arc<str>,
        meta: Arc<VersionMeta>,
        inputs: Inputs,
        outputs: Vec<NamedTensor>,
    ) -> ScoredRows {
        ScoredRows {
            request_id: self.request_id.clone(),
            time_us: self.time_us,
            served_entity: served_entity.clone(),
            meta,
            shadow: false,
            inputs,
            outputs,
            request_rows: None,
            stages: None,
            shadow_ms: None,
        }
    }
}

/// Where a request's scored rows go besides the answer.
#[derive(Clone, Default)]
pub struct Sinks {
    /// Set when this request is logged to the endpoint's inference tables.
    pub log: Option<LogTicket>,
    /// Set when monitoring is on.
    pub monitor: Option<RequestMonitor>,
}

impl Sinks {
    /// Whether the joined inputs are wanted after inference (the log and the monitor read them).
    pub fn keeps_inputs(&self) -> bool {
        self.log.is_some() || self.monitor.is_some()
    }

    /// After inference of `scored` (the rows `slot` answered): counts them and their predicted
    /// probabilities, and profiles them for the monitor. Returns the scorer that waits for the
    /// rows' labels (binary classifiers). `request_rows`: the rows' places in the request,
    /// when a batch was split.
    #[allow(clippy::too_many_arguments)]
    pub fn observe(
        &self,
        slot: &EntitySlot,
        entity: &ServedEntity,
        scored: &Frame,
        joined: Option<&Joined>,
        outputs: &[NamedTensor],
        request_rows: Option<Vec<usize>>,
        shadow: bool,
    ) -> Option<Scorer> {
        record_rows(&slot.metrics, entity, outputs, scored.rows(), shadow);
        let monitor = self.monitor.as_ref()?;
        // The monitor profiles what the model took: the joined frame when features joined.
        let (model_frame, defaulted) = match joined {
            Some(j) => (&j.frame, j.defaulted.as_slice()),
            None => (scored, &[][..]),
        };
        monitor.observe(
            slot.monitor(&monitor.config, monitor.now_ms),
            entity.monitored(),
            model_frame,
            defaulted,
            outputs,
            request_rows,
        )
    }

    /// The request's predictions wait for labels with the scorers of its arms.
    pub fn expect(&self, request: Arc<Frame>, entity: &ServedEntity, scorers: Vec<Scorer>) {
        if let Some(monitor) = &self.monitor {
            monitor.expect(request, &entity.meta, scorers);
        }
    }

    /// A shadow's scorer joins the request's that waits for labels.
    pub fn expect_shadow(&self, scorer: Scorer) {
        if let Some(monitor) = &self.monitor {
            monitor.add_shadow(scorer);
        }
    }

    /// What the inference log keeps of rows `slot_name` scored: the joined inputs when
    /// features joined, else the frame as scored.
    pub fn keep(
        &self,
        slot_name: &Arc<str>,
        entity: &Arc<ServedEntity>,
        scored: &Arc<Frame>,
        joined: Option<Joined>,
        outputs: Vec<NamedTensor>,
    ) -> Option<ScoredRows> {
        let log = self.log.as_ref()?;
        let inputs = match joined {
            Some(j) => Inputs::Joined(PackedColumns::pack(j.env)),
            None => Inputs::Frame(scored.clone()),
        };
        Some(log.rows(slot_name, entity.meta.clone(), inputs, outputs))
    }
}

/// Counts an arm's scored rows and their predicted probabilities.
fn record_rows(
    m: &ArmMetrics,
    entity: &ServedEntity,
    outputs: &[NamedTensor],
    rows: usize,
    shadow: bool,
) {
    let (count, hist) = if shadow {
        (&m.shadow_rows, &m.shadow_probability)
    } else {
        (&m.rows, &m.probability)
    };
    count.inc_by(rows as u64);
    // One flush for the whole batch instead of an atomic add per row.
    let local = hist.local();
    entity
        .meta
        .outputs
        .for_each_probability(outputs, rows, |p| local.observe(p));
    local.flush();
}
