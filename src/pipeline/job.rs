//! A request's work, inline on its HTTP worker or on the inference pool ([`super::lane`]): one
//! job, or two when its features live in a remote store (the lookup is awaited between them,
//! holding no thread). Shadow copies are queued after the answer is on its way; the pool's
//! refusals become errors.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use crate::engine::pool::{InferencePool, SubmitError};
use crate::error::RequestError;
use crate::metrics::labels::Lane;

use super::request::{Failure, Scored};
use super::score::{await_lookups, finish, route, Job, Lookup, Routed, Started};
use super::shadow::mirror;

/// What the first job ends with.
enum Step {
    Scored(Scored),
    /// Routed, waiting for its features from a remote store.
    Waiting(Box<Routed>, Vec<Option<Lookup>>),
}

/// Runs `f` in `lane`: here, or on a pool worker (awaited).
async fn run_in<T, F, G>(pool: &InferencePool, lane: Lane, f: F) -> Result<T, SubmitError>
where
    T: Send + 'static,
    F: FnOnce(usize) -> (T, Option<G>) + Send + 'static,
    G: FnOnce(),
{
    match lane {
        Lane::Inline => pool.run_inline(f),
        Lane::Pool => pool.run_then(f).await,
    }
}

/// Runs `job`'s request (`body`) in `lane`.
pub async fn run(
    pool: &InferencePool,
    lane: Lane,
    job: Job,
    body: Bytes,
) -> Result<Scored, Failure> {
    // The config, for the endpoint's name in a refusal (no copy of it per request).
    let generation = job.generation.clone();
    let refused = |e| refused(&generation.settings.name, e);
    let job = Arc::new(job);
    let submitted = Instant::now();
    let job_copy = job.clone();
    let first = run_in(pool, lane, move |worker| {
        let job = job_copy;
        let step =
            route(&job, &body, submitted).and_then(|routed| match routed.start_lookups(&job)? {
                Some(Started::Waiting(lookups)) => Ok(Step::Waiting(Box::new(routed), lookups)),
                Some(Started::Ready(looked)) => {
                    finish(&job, worker, routed, looked).map(Step::Scored)
                }
                None => finish(&job, worker, routed, Vec::new()).map(Step::Scored),
            });
        with_shadow(step, &job)
    })
    .await
    .map_err(refused)??;
    let (routed, lookups) = match first {
        Step::Scored(scored) => return Ok(scored),
        Step::Waiting(routed, lookups) => (routed, lookups),
    };
    // Dropped here when the caller's deadline passes (or it hangs up) while the store has
    // not answered: counted as a job stopped at its deadline, as the pool counts skipped ones.
    let unanswered = Abandoned(job.deadline.as_ref());
    let looked = await_lookups(lookups).await;
    // Answered (a value or the store's error): not a deadline refusal.
    std::mem::forget(unanswered);
    let looked = looked?;
    let submitted = Instant::now();
    let mut routed = *routed;
    run_in(pool, lane, move |worker| {
        routed.resume(submitted);
        let step = job
            .check_deadline("after the feature lookup")
            .map_err(Failure::from)
            .and_then(|()| finish(&job, worker, routed, looked))
            .map(Step::Scored);
        with_shadow(step, &job)
    })
    .await
    .map_err(refused)?
    .map(|step| match step {
        Step::Scored(scored) => scored,
        Step::Waiting(..) => unreachable!("the second job always finishes"),
    })
}

/// Counts a deadline refusal when dropped: a request whose lookup was still waiting.
struct Abandoned<'a>(Option<&'a super::admission::Deadline>);

impl Drop for Abandoned<'_> {
    fn drop(&mut self) {
        if let Some(deadline) = self.0 {
            deadline.count_refusal();
        }
    }
}

/// The step, and the shadow copies to queue once it is handed over (when it is an answer).
fn with_shadow(
    mut step: Result<Step, Failure>,
    job: &Arc<Job>,
) -> (Result<Step, Failure>, Option<impl FnOnce()>) {
    let frame = match &mut step {
        Ok(Step::Scored(s)) => s.shadow.take(),
        _ => None,
    };
    let shadow = frame.map(|f| {
        let job = job.clone();
        move || mirror(&job, f)
    });
    (step, shadow)
}

/// The pool's refusal of a job, as the caller's error.
fn refused(endpoint: &str, e: SubmitError) -> Failure {
    match e {
        SubmitError::Full(n) => RequestError::Overloaded(format!(
            "the inference queue is full ({n} requests waiting): retry later"
        )),
        SubmitError::Panicked(message) | SubmitError::Failed(message) => {
            tracing::error!(endpoint, "inference panicked: {message}");
            RequestError::Internal(format!("inference failed unexpectedly: {message}"))
        }
        SubmitError::Closed => RequestError::Unavailable("the server is shutting down".into()),
    }
    .into()
}
