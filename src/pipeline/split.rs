//! A batch whose rows route to different arms: one sub-batch per serving arm, predictions
//! written back in the request's row order.

use std::sync::Arc;
use std::time::Instant;

use crate::drift::monitor::Scorer;
use crate::endpoint::ServedEntity;
use crate::engine::outputs::check_rows;
use crate::engine::NamedTensor;
use crate::error::RequestError;
use crate::features::join::{Joined, Looked};
use crate::protocol::frame::Frame;

use super::encode::write_split;
use super::request::{Failure, ServedBy};
use super::score::{infer, Answering, Job};

/// One serving arm's share of the batch.
struct Part {
    arm: usize,
    entity: Arc<ServedEntity>,
    /// The rows' places in the request.
    rows: Vec<usize>,
    /// Those rows.
    frame: Arc<Frame>,
}

/// A batch's parts, and each row's part.
pub(super) struct Parts {
    parts: Vec<Part>,
    part_of_row: Vec<usize>,
}

impl Parts {
    /// Each part's arm, served entity and rows, in order.
    pub fn units(&self) -> impl Iterator<Item = (usize, &ServedEntity, &Frame)> {
        self.parts.iter().map(|p| (p.arm, &*p.entity, &*p.frame))
    }
}

/// Routed arms resolve to serving ones first (fallbacks), then rows group by the serving arm:
/// row `r` of `frame` is routed to `routed_of_row[r]`.
pub(super) fn route(job: &Job, frame: &Frame, routed_of_row: &[usize]) -> Result<Parts, Failure> {
    let generation = &job.generation;
    // (routed arm, its part)
    let mut part_of_routed: Vec<(usize, usize)> = Vec::new();
    let mut parts: Vec<(usize, Arc<ServedEntity>, Vec<usize>)> = Vec::new();
    let mut part_of_row = Vec::with_capacity(routed_of_row.len());
    for (row, &routed) in routed_of_row.iter().enumerate() {
        let part = match part_of_routed.iter().find(|(r, _)| *r == routed) {
            Some(&(_, p)) => p,
            None => {
                let (serving, entity) = generation.routed_entity(routed)?;
                let p = match parts.iter().position(|(arm, _, _)| *arm == serving) {
                    Some(p) => p,
                    None => {
                        parts.push((serving, entity, Vec::new()));
                        parts.len() - 1
                    }
                };
                part_of_routed.push((routed, p));
                p
            }
        };
        parts[part].2.push(row);
        part_of_row.push(part);
    }
    let parts = parts
        .into_iter()
        .map(|(arm, entity, rows)| Part {
            frame: Arc::new(frame.take_rows(&rows)),
            arm,
            entity,
            rows,
        })
        .collect();
    Ok(Parts { parts, part_of_row })
}

/// Scores each part (with `looked`, its features awaited before this job, in part order),
/// and writes the predictions in the request's row order. Returns who served it and when
/// inference ended.
pub(super) fn finish(
    job: &Job,
    worker: usize,
    frame: &Arc<Frame>,
    parts: Parts,
    mut looked: impl Iterator<Item = Option<Looked>>,
    answer: &mut Answering,
) -> Result<(ServedBy, Instant), Failure> {
    let generation = &job.generation;
    let Parts { parts, part_of_row } = parts;
    let sinks = &job.sinks;
    let mut scored: Vec<(Vec<NamedTensor>, Option<Joined>)> = Vec::with_capacity(parts.len());
    let mut scorers: Vec<Scorer> = Vec::new();
    for part in &parts {
        let slot = &generation.slots[part.arm];
        let failed = Failure::by(&slot.name);
        let looked = looked.next().flatten();
        let (outputs, joined) = infer(
            job,
            worker,
            &part.entity,
            &slot.name,
            &part.frame,
            looked,
            sinks.keeps_inputs(),
            &mut answer.marks,
        )
        .map_err(failed)?;
        check_rows(&outputs, part.rows.len()).map_err(|m| failed(RequestError::Internal(m)))?;
        scorers.extend(sinks.observe(
            slot,
            &part.entity,
            &part.frame,
            joined.as_ref(),
            &outputs,
            Some(part.rows.clone()),
            false,
        ));
        scored.push((outputs, joined));
    }
    let inferred = Instant::now();
    if let Some(first) = parts.first() {
        // Labels are joined per request: its rows wait once, with every arm's scorer.
        sinks.expect(frame.clone(), &first.entity, scorers);
    }
    let writers: Vec<_> = parts
        .iter()
        .zip(&scored)
        .map(|(p, (outputs, _))| (&p.entity.meta.outputs, outputs.as_slice()))
        .collect();
    write_split(&writers, &part_of_row, &mut answer.buf);
    let name = |a: usize| generation.slots[a].name.clone();
    let served = if parts.len() == 1 {
        ServedBy::One(name(parts[0].arm), parts[0].entity.meta.clone())
    } else {
        ServedBy::Mixed(
            parts
                .iter()
                .map(|p| (name(p.arm), p.entity.meta.clone()))
                .collect(),
        )
    };
    for (part, (outputs, joined)) in parts.into_iter().zip(scored) {
        let slot_name = &generation.slots[part.arm].name;
        if let Some(mut kept) = sinks.keep(slot_name, &part.entity, &part.frame, joined, outputs) {
            kept.request_rows = Some(part.rows);
            answer.logged.push(kept);
        }
    }
    Ok((served, inferred))
}
