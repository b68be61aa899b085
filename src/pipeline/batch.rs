//! A request that joins its served entity's batch (`served_entities[].batching`): joined and
//! bound on its own worker, inferred in one engine call with the others of the batch
//! ([`crate::engine::batch`]), then checked, fed to the side channels, encoded and logged on
//! its own, on the worker that ran the batch.

use std::sync::Arc;

use crate::endpoint::{ServedEntity, SlotBatching};
use crate::engine::batch::{Item, Waiting};
use crate::engine::{EngineError, NamedTensor};
use crate::error::RequestError;
use crate::features::join::Joined;
use crate::protocol::frame::Frame;

use super::encode::Reply;
use super::marks::Stage;
use super::request::Failure;
use super::score::{
    answer_whole, conclude, Answering, Deliver, Job, Lookups, Routed, Times, Units,
};

/// The batching a request joins: its whole request goes to one served entity with batching
/// on, which can take batches, and it has no more rows than a batch.
pub(super) fn joins<'a>(job: &'a Job, routed: &Routed) -> Option<&'a SlotBatching> {
    let Units::Whole { arm, entity } = &routed.units else {
        return None;
    };
    let batching = job.generation.slots[*arm].batching.as_ref()?;
    (entity.batch.unbatchable().is_none() && routed.frame.rows() <= batching.limits.max_rows)
        .then_some(batching)
}

/// Joins and binds the request here, and hands it to its served entity's batch.
pub(super) fn submit(
    job: &Arc<Job>,
    worker: usize,
    routed: Routed,
    looked: Lookups,
    batching: &SlotBatching,
    deliver: impl Deliver,
) {
    let Routed {
        mut times,
        frame,
        reply,
        client_request_id,
        units,
    } = routed;
    let Units::Whole { arm, entity } = units else {
        unreachable!("only whole requests join a batch (see `joins`)");
    };
    let slot = &job.generation.slots[arm];
    let keep = reply.echoes_features() || job.sinks.keeps_inputs();
    let looked = looked.into_iter().next().flatten();
    let joining = times.marks.now();
    let (inputs, joined) = match entity.bind_request(&frame, looked, job.ignored_column(), keep) {
        Ok(bound) => bound,
        Err(e) => return deliver.deliver(Err(Failure::by(&slot.name)(e))),
    };
    if let (Some(start), Some(bound)) = (joining, times.marks.now()) {
        times.marks.add(Stage::Join, start, bound, Some(&slot.name));
        // Its inference is the batch's wait and run, until its outputs come back.
        times.batched = Some(bound);
    }
    let rows = frame.rows();
    let waiting = Box::new(InBatch {
        job: job.clone(),
        arm,
        entity: entity.clone(),
        frame,
        reply,
        joined,
        times,
        client_request_id,
        deliver,
    });
    let item = Item {
        inputs,
        rows,
        waiting,
    };
    entity
        .batch
        .submit(&job.pool, worker, batching.limits, item, &batching.sizes);
}

/// A request waiting in a batch for its outputs, with all it needs to answer.
struct InBatch<D> {
    job: Arc<Job>,
    arm: usize,
    entity: Arc<ServedEntity>,
    frame: Arc<Frame>,
    reply: Reply,
    joined: Option<Joined>,
    times: Times,
    client_request_id: Option<String>,
    deliver: D,
}

impl<D: Deliver> Waiting for InBatch<D> {
    fn gone(&self) -> bool {
        self.deliver.gone()
    }

    /// Its caller went (deadline or hang-up) while it waited: counted as a skipped job.
    fn abandon(self: Box<Self>) {
        self.job.pool.count_abandoned();
    }

    fn resume(self: Box<Self>, _worker: usize, outputs: Result<Vec<NamedTensor>, EngineError>) {
        let InBatch {
            job,
            arm,
            entity,
            frame,
            reply,
            joined,
            times,
            client_request_id,
            deliver,
        } = *self;
        let failed = Failure::by(&job.generation.slots[arm].name);
        let result = outputs
            .map_err(|e| failed(RequestError::Internal(e.to_string())))
            .and_then(|outputs| {
                let mut times = times;
                if let (Some(start), Some(now)) = (times.batched, times.marks.now()) {
                    let served = &job.generation.slots[arm].name;
                    times.marks.add(Stage::Infer, start, now, Some(served));
                }
                let mut answer =
                    Answering::for_rows(frame.rows(), std::mem::take(&mut times.marks));
                let (served, inferred) = answer_whole(
                    &job,
                    &frame,
                    arm,
                    entity,
                    outputs,
                    joined,
                    &reply,
                    &mut answer,
                )?;
                conclude(
                    &job,
                    frame,
                    answer,
                    served,
                    times,
                    inferred,
                    client_request_id,
                )
            });
        deliver.deliver(result);
    }
}
