//! Where a request's job runs: inline on the HTTP worker that decoded it, or on the pool.
//!
//! Handing a job to a pool worker and its answer back costs two thread wake-ups, more than a
//! microsecond model takes. So (by default: `inference.inline.max_us` is 100) a small job runs
//! where it is: a body of at most `inference.inline.max_body_bytes`, to an endpoint whose every
//! served version has been measured (`ServedEntity::cost`: warm-up runs, then its small
//! requests) to infer within `inference.inline.max_us` on average, read by an HTTP worker (a
//! current-thread runtime, whose inline jobs of one turn run in a row:
//! [`InferencePool::run_inline`]). Everything else goes to the pool, which bounds its queue
//! and keeps the HTTP workers free for I/O: a version not measured yet, an endpoint with
//! batching on, and gRPC's calls, whose threads have no inline sessions of their own.

use crate::endpoint::Generation;
use crate::engine::pool::InferencePool;
use crate::metrics::labels::Lane;
use crate::settings::inference::InlineSettings;

/// The lane of a request with `body_len` bytes to `generation`.
pub fn choose(
    pool: &InferencePool,
    inline: &InlineSettings,
    generation: &Generation,
    body_len: usize,
) -> Lane {
    if !pool.runs_inline()
        || !inline.enabled()
        || body_len > inline.max_body_bytes
        || !crate::engine::pool::on_current_thread_runtime()
    {
        return Lane::Pool;
    }
    let bound = inline.max_inference();
    let mut served = 0;
    for slot in generation.slots.iter() {
        // A batch gathers requests on the pool's workers.
        if slot.batching.is_some() {
            return Lane::Pool;
        }
        let Some(entity) = slot.served() else {
            continue;
        };
        if !entity.cost.within(bound) {
            return Lane::Pool;
        }
        served += 1;
    }
    if served == 0 {
        Lane::Pool
    } else {
        Lane::Inline
    }
}

/// Whether a request's inference times feed its version's cost: only small requests, the
/// ones the cost decides about, and only when any may run inline.
pub fn measures(inline: &InlineSettings, body_len: usize) -> bool {
    inline.enabled() && body_len <= inline.max_body_bytes
}
