//! Shadow routes: a copy of the request for each shadow that samples it, run in the pool's
//! background after the caller has its answer; a full queue drops the copy (counted).

use std::sync::Arc;
use std::time::Instant;

use crate::engine::outputs::check_rows;
use crate::protocol::frame::Frame;

use super::score::Job;

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
        let frame = frame.clone();
        // The job keeps the config it was copied under (its slot and routing key column).
        let (job_generation, arm, sinks) = (generation.clone(), route.arm, job.sinks.clone());
        let queued = job.pool.try_background(move |worker| {
            let started = Instant::now();
            let slot = &job_generation.slots[arm];
            let m = &slot.metrics;
            let ignore = job_generation.settings.routing.key_column.as_deref();
            match entity.infer_joined(worker, &frame, ignore, sinks.keeps_inputs()) {
                Ok((outputs, joined)) if check_rows(&outputs, frame.rows()).is_ok() => {
                    let took = started.elapsed().as_secs_f64();
                    m.shadow_duration.observe(took);
                    m.shadow_succeeded.inc();
                    let scorer =
                        sinks.observe(slot, &entity, &frame, joined.as_ref(), &outputs, None, true);
                    if let Some(scorer) = scorer {
                        sinks.expect_shadow(scorer);
                    }
                    if let Some(mut rows) = sinks.keep(&slot.name, &entity, &frame, joined, outputs)
                    {
                        rows.shadow = true;
                        rows.shadow_ms = Some(took * 1000.0);
                        if let Some(log) = &sinks.log {
                            log.log.log_shadow(log.capture.clone(), rows);
                        }
                    }
                }
                Ok(_) | Err(_) => m.shadow_failed.inc(),
            }
        });
        if !queued {
            slot.metrics.shadow_dropped.inc();
        }
    }
}
