//! A batch whose rows route to different arms: one sub-batch per serving arm, predictions
//! written back in the request's row order.

use std::sync::Arc;
use std::time::Instant;

use crate::drift::monitor::Scorer;
use crate::endpoint::ServedEntity;
use crate::engine::outputs::check_rows;
use crate::engine::NamedTensor;
use crate::error::RequestError;
use crate::features::join::Joined;
use crate::protocol::frame::Frame;

use super::encode::write_split;
use super::request::{Failure, ServedBy};
use super::score::{Answering, Plan};

/// One serving arm's share of the batch.
struct Part {
    arm: usize,
    entity: Arc<ServedEntity>,
    /// The rows' places in the request.
    rows: Vec<usize>,
}

/// Scores `frame` with row `r` routed to `routed_of_row[r]`. Returns who served it and when
/// inference ended.
pub(super) fn score_split(
    plan: &Plan,
    worker: usize,
    frame: &Arc<Frame>,
    routed_of_row: &[usize],
    answer: &mut Answering,
) -> Result<(ServedBy, Instant), Failure> {
    let generation = &plan.generation;
    let (parts, part_of_row) = group_rows(plan, routed_of_row)?;
    let ignore = generation.settings.routing.key_column.as_deref();
    let sinks = &plan.sinks;
    let mut scored: Vec<(Arc<Frame>, Vec<NamedTensor>, Option<Joined>)> =
        Vec::with_capacity(parts.len());
    let mut scorers: Vec<Scorer> = Vec::new();
    for part in &parts {
        let slot = &generation.slots[part.arm];
        let failed = Failure::by(&slot.name);
        let rows = Arc::new(frame.take_rows(&part.rows));
        let (outputs, joined) = part
            .entity
            .infer_joined(worker, &rows, ignore, sinks.keeps_inputs())
            .map_err(failed)?;
        check_rows(&outputs, part.rows.len()).map_err(|m| failed(RequestError::Internal(m)))?;
        scorers.extend(sinks.observe(
            slot,
            &part.entity,
            &rows,
            joined.as_ref(),
            &outputs,
            Some(part.rows.clone()),
            false,
        ));
        scored.push((rows, outputs, joined));
    }
    let t2 = Instant::now();
    if let Some(first) = parts.first() {
        // Labels are joined per request: its rows wait once, with every arm's scorer.
        sinks.expect(frame.clone(), &first.entity, scorers);
    }
    let writers: Vec<_> = parts
        .iter()
        .zip(&scored)
        .map(|(p, (_, outputs, _))| (&p.entity.meta.outputs, outputs.as_slice()))
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
    for (part, (rows, outputs, joined)) in parts.into_iter().zip(scored) {
        let slot_name = &generation.slots[part.arm].name;
        if let Some(mut kept) = sinks.keep(slot_name, &part.entity, &rows, joined, outputs) {
            kept.request_rows = Some(part.rows);
            answer.logged.push(kept);
        }
    }
    Ok((served, t2))
}

/// Routed arms resolve to serving ones first (fallbacks), then rows group by the serving arm.
/// Returns the parts and each row's part.
fn group_rows(plan: &Plan, routed_of_row: &[usize]) -> Result<(Vec<Part>, Vec<usize>), Failure> {
    let generation = &plan.generation;
    // (routed arm, its part)
    let mut part_of_routed: Vec<(usize, usize)> = Vec::new();
    let mut parts: Vec<Part> = Vec::new();
    let mut part_of_row = Vec::with_capacity(routed_of_row.len());
    for (row, &routed) in routed_of_row.iter().enumerate() {
        let part = match part_of_routed.iter().find(|(r, _)| *r == routed) {
            Some(&(_, p)) => p,
            None => {
                let (serving, entity) = generation.routed_entity(routed)?;
                let p = match parts.iter().position(|p| p.arm == serving) {
                    Some(p) => p,
                    None => {
                        parts.push(Part {
                            arm: serving,
                            entity,
                            rows: Vec::new(),
                        });
                        parts.len() - 1
                    }
                };
                part_of_routed.push((routed, p));
                p
            }
        };
        parts[part].rows.push(row);
        part_of_row.push(part);
    }
    Ok((parts, part_of_row))
}
