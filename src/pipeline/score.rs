//! The job a pool worker runs for one request: decode, route, join and infer, encode, with
//! the side channels fed after inference. Public so the benchmarks measure what the server runs.

use std::sync::Arc;
use std::time::Instant;

use crate::endpoint::resolve::{Assignment, RouteHints};
use crate::endpoint::Generation;
use crate::engine::outputs::check_rows;
use crate::engine::pool::InferencePool;
use crate::error::RequestError;
use crate::inference_log::ScoredRows;
use crate::protocol::frame::Frame;
use crate::protocol::limits::DecodeLimits;

use super::admission::Deadline;
use super::decode::decode;
use super::encode::Reply;
use super::request::{Failure, Format, Scored, ServedBy, Timings};
use super::sinks::Sinks;

/// Everything one request's job needs, loaded once when it starts.
pub struct Plan {
    pub generation: Arc<Generation>,
    /// A served entity named by the request's path; no routing.
    pub pinned: Option<usize>,
    /// The routing-key header's value.
    pub header_key: Option<Vec<u8>>,
    pub format: Format,
    /// Bounds on what the request may hold (`max_rows` included).
    pub limits: DecodeLimits,
    pub deadline: Option<Deadline>,
    /// Where shadow copies run.
    pub pool: Arc<InferencePool>,
    pub sinks: Sinks,
}

impl Plan {
    /// Refused once the caller's deadline has passed; `when` names the stage.
    fn check_deadline(&self, when: &str) -> Result<(), RequestError> {
        match &self.deadline {
            Some(d) => d.check(Instant::now(), when),
            None => Ok(()),
        }
    }
}

/// Decodes, validates, routes, joins and infers, and encodes one request on pool worker
/// `worker`. `submitted`: when it was queued (the queue stage's time).
pub fn score(
    plan: &Plan,
    worker: usize,
    body: &[u8],
    submitted: Instant,
) -> Result<Scored, Failure> {
    let t0 = Instant::now();
    plan.check_deadline("before it started")?;
    let decoded = decode(&plan.format, body, &plan.limits, plan.sinks.log.is_some())?;
    decoded.frame.validate(plan.limits.max_rows)?;
    plan.check_deadline("after decoding")?;
    // Shared with the shadow jobs and the inference log without a copy.
    let frame = Arc::new(decoded.frame);
    let reply = decoded.reply;
    let rows = frame.rows();
    let generation = &plan.generation;
    let t1 = Instant::now();
    let mut answer = Answering {
        buf: Vec::with_capacity(64 + rows * 48),
        logged: Vec::new(),
    };
    let hints = RouteHints {
        pinned: plan.pinned,
        header_key: plan.header_key.as_deref(),
        whole_batch: matches!(plan.format, Format::V2 { .. }),
    };
    let (served, t2) = match generation.assign(hints, &frame) {
        Assignment::Whole(arm) => score_whole(plan, worker, &frame, arm, &reply, &mut answer)?,
        Assignment::Rows(arm_of_row) => {
            super::split::score_split(plan, worker, &frame, &arm_of_row, &mut answer)?
        }
    };
    plan.limits.response(answer.buf.len())?;
    let t3 = Instant::now();
    let timings = Timings {
        queued: (t0 - submitted).as_secs_f64(),
        decode: (t1 - t0).as_secs_f64(),
        inference: (t2 - t1).as_secs_f64(),
        encode: (t3 - t2).as_secs_f64(),
        rows,
    };
    for s in &mut answer.logged {
        s.stages = Some(timings);
    }
    Ok(Scored {
        shadow: (!generation.router.shadows.is_empty()).then_some(frame),
        body: answer.buf,
        timings,
        served,
        logged: answer.logged,
        client_request_id: decoded.client_request_id,
    })
}

/// What a request's scoring writes: the answer's bytes, and the rows the log keeps.
pub(super) struct Answering {
    pub buf: Vec<u8>,
    pub logged: Vec<ScoredRows>,
}

/// One arm answers the whole request. Returns who served it and when inference ended.
fn score_whole(
    plan: &Plan,
    worker: usize,
    frame: &Arc<Frame>,
    arm: usize,
    reply: &Reply,
    answer: &mut Answering,
) -> Result<(ServedBy, Instant), Failure> {
    let generation = &plan.generation;
    // A pin answers from its own served entity or not at all; a route falls back.
    let (arm, entity) = if plan.pinned.is_some() {
        (arm, generation.ready_entity(arm)?)
    } else {
        generation.routed_entity(arm)?
    };
    let slot = &generation.slots[arm];
    let failed = Failure::by(&slot.name);
    reply.check_outputs(&entity).map_err(failed)?;
    let ignore = generation.settings.routing.key_column.as_deref();
    let keep = reply.echoes_features() || plan.sinks.keeps_inputs();
    let (outputs, joined) = entity
        .infer_joined(worker, frame, ignore, keep)
        .map_err(failed)?;
    let rows = frame.rows();
    // Encoders index outputs by row: a model whose outputs are not one row per input row is
    // refused here, not by a panic.
    check_rows(&outputs, rows).map_err(|m| failed(RequestError::Internal(m)))?;
    plan.check_deadline("after inference").map_err(failed)?;
    let t2 = Instant::now();
    let sinks = &plan.sinks;
    if let Some(scorer) =
        sinks.observe(slot, &entity, frame, joined.as_ref(), &outputs, None, false)
    {
        sinks.expect(frame.clone(), &entity, vec![scorer]);
    }
    reply
        .write(
            &generation.settings.name,
            &entity,
            &outputs,
            rows,
            joined.as_ref(),
            &mut answer.buf,
        )
        .map_err(failed)?;
    answer
        .logged
        .extend(sinks.keep(&slot.name, &entity, frame, joined, outputs));
    Ok((ServedBy::One(slot.name.clone(), entity.meta.clone()), t2))
}
