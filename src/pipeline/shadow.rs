//! Shadow routes: a copy of the request for each shadow that samples it, run in the pool's
//! background after the caller has its answer; a full queue drops the copy (counted). A shadow
//! whose features live in a remote store waits for them on the async runtime, not on a worker.

use std::sync::Arc;
use std::time::Instant;

use crate::endpoint::{Generation, ServedEntity};
use crate::engine::outputs::check_rows;
use crate::features::join::Looked;
use crate::protocol::frame::Frame;

use super::score::Job;
use super::sinks::Sinks;

/// Queues the copies of `frame` for the shadow routes of the job's config. Logged requests
/// log the shadows' rows; monitored ones add their scorers to the request's.
pub fn mirror(job: &Job, frame: Arc<Frame>) {
    let generation = &job.generation;
    for route in &generation.router.shadows {
        if route.percent < 100 && fastrand::u8(..100) >= route.percent {
            continue;
        }
        let slot = &generation.slots[route.arm];
        let Some(entity) = slot.served() else {
            slot.metrics.shadow_failed.inc();
            continue;
        };
        let copy = Copy {
            // The copy keeps the config it was made under (its slot and routing key column).
            generation: generation.clone(),
            arm: route.arm,
            entity,
            frame: frame.clone(),
            sinks: job.sinks.clone(),
        };
        let remote = copy
            .entity
            .features
            .as_ref()
            .filter(|f| f.waits_for_store());
        match (remote, &job.runtime) {
            (Some(features), Some(runtime)) => {
                // A copy waiting for its features holds a place in the shadow queue
                // (`inference.shadow_queue_capacity`): a slow store cannot pile copies up.
                let Some(place) = job.pool.promise_background() else {
                    slot.metrics.shadow_dropped.inc();
                    continue;
                };
                let ignore = generation.settings.routing.key_column.as_deref();
                let lookup = features.lookup(&copy.frame, ignore);
                let pool = job.pool.clone();
                runtime.spawn(async move {
                    match lookup.await {
                        Ok(looked) => queue(&pool, copy, Some((place, looked))),
                        Err(_) => copy.slot().metrics.shadow_failed.inc(),
                    }
                });
            }
            _ => queue(&job.pool, copy, None),
        }
    }
}

/// One shadow's copy of a request.
struct Copy {
    generation: Arc<Generation>,
    arm: usize,
    entity: Arc<ServedEntity>,
    frame: Arc<Frame>,
    sinks: Sinks,
}

impl Copy {
    fn slot(&self) -> &crate::endpoint::EntitySlot {
        &self.generation.slots[self.arm]
    }

    /// Scores the copy (with its features when they were looked up already) and feeds the
    /// shadow's metrics, the monitor and the inference log.
    fn run(self, worker: usize, looked: Option<Looked>) {
        let started = Instant::now();
        let slot = self.slot();
        let m = &slot.metrics;
        let keep = self.sinks.keeps_inputs();
        let inferred = match looked {
            Some(looked) => self.entity.infer_looked(worker, looked, keep),
            None => {
                let ignore = self.generation.settings.routing.key_column.as_deref();
                self.entity.infer_joined(worker, &self.frame, ignore, keep)
            }
        };
        let (outputs, joined) = match inferred {
            Ok((outputs, joined)) if check_rows(&outputs, self.frame.rows()).is_ok() => {
                (outputs, joined)
            }
            Ok(_) | Err(_) => return m.shadow_failed.inc(),
        };
        let took = started.elapsed().as_secs_f64();
        m.shadow_duration.observe(took);
        m.shadow_succeeded.inc();
        let sinks = &self.sinks;
        let entity = &self.entity;
        if let Some(scorer) = sinks.observe(
            slot,
            entity,
            &self.frame,
            joined.as_ref(),
            &outputs,
            None,
            true,
        ) {
            sinks.expect_shadow(scorer);
        }
        if let Some(mut rows) = sinks.keep(&slot.name, entity, &self.frame, joined, outputs) {
            rows.shadow = true;
            rows.shadow_ms = Some(took * 1000.0);
            if let Some(log) = &sinks.log {
                log.log_shadow(rows);
            }
        }
    }
}

/// Queues the copy in the pool's background, in the place it was promised when it waited for
/// its features; a full queue drops it (counted).
fn queue(
    pool: &crate::engine::pool::InferencePool,
    copy: Copy,
    looked: Option<(crate::engine::pool::Promise, Looked)>,
) {
    let dropped = copy.slot().metrics.shadow_dropped.clone();
    let queued = match looked {
        Some((place, looked)) => pool.fulfil(place, move |worker| copy.run(worker, Some(looked))),
        None => pool.try_background(move |worker| copy.run(worker, None)),
    };
    if !queued {
        dropped.inc();
    }
}
