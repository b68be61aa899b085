//! A request's work, inline on its HTTP worker or on the inference pool ([`super::lane`]): one
//! job, or two when its features live in a remote store (the lookup is awaited between them,
//! holding no thread). Shadow copies are queued after the answer is on its way; the pool's
//! refusals become errors.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use crate::engine::pool::{InferencePool, Responder, SubmitError};
use crate::error::RequestError;
use crate::metrics::labels::Lane;

use super::request::{Failure, Scored};
use super::score::{await_lookups, finish_then, route, Deliver, Job, Lookup, Routed, Started};
use super::shadow::mirror;

/// What the first job ends with.
enum Step {
    Scored(Scored),
    /// Routed, waiting for its features from a remote store (since the instant it holds, when
    /// the request is traced).
    Waiting(Box<Routed>, Vec<Option<Lookup>>, Option<Instant>),
}

/// The caller's end of a job's answer.
type Respond = Responder<Result<Step, Failure>>;

/// Runs `f` in `lane`: here, or on a pool worker; awaits what it (or the batch it hands its
/// answer to) sends.
async fn run_in<F>(
    pool: &InferencePool,
    lane: Lane,
    f: F,
) -> Result<Result<Step, Failure>, SubmitError>
where
    F: FnOnce(usize, Respond) + Send + 'static,
{
    match lane {
        Lane::Inline => pool.run_inline(f).await,
        Lane::Pool => pool.run_responding(f).await,
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
    let first = run_in(pool, lane, move |worker, respond| {
        let job = job_copy;
        let mut routed = match route(&job, &body, submitted) {
            Ok(routed) => routed,
            Err(e) => return respond.send(Err(e)),
        };
        let lookup_started = job.traced.then(Instant::now);
        match routed.start_lookups(&job) {
            Err(e) => respond.send(Err(e)),
            Ok(Some(Started::Waiting(lookups))) => {
                respond.send(Ok(Step::Waiting(Box::new(routed), lookups, lookup_started)))
            }
            Ok(Some(Started::Ready(looked, store))) => {
                // Answered before the job looked (or nothing to ask): a lookup all the same.
                if let Some(started) = lookup_started {
                    routed.looked_up(store.map(Arc::from).as_ref(), started);
                }
                let answer = ToCaller::new(&job, respond);
                finish_then(&job, worker, routed, looked, answer)
            }
            Ok(None) => {
                let answer = ToCaller::new(&job, respond);
                finish_then(&job, worker, routed, Vec::new(), answer)
            }
        }
    })
    .await
    .map_err(refused)??;
    let (mut routed, lookups, lookup_started) = match first {
        Step::Scored(scored) => return Ok(scored),
        Step::Waiting(routed, lookups, started) => (routed, lookups, started),
    };
    let store: Option<Arc<str>> = (job.traced)
        .then(|| lookups.iter().flatten().next().map(|l| Arc::from(l.store)))
        .flatten();
    // Dropped here when the caller's deadline passes (or it hangs up) while the store has
    // not answered: counted as a job stopped at its deadline, as the pool counts skipped ones.
    let unanswered = Abandoned(job.deadline.as_ref());
    let looked = await_lookups(lookups).await;
    // Answered (a value or the store's error): not a deadline refusal.
    std::mem::forget(unanswered);
    let looked = looked?;
    if let Some(started) = lookup_started {
        routed.looked_up(store.as_ref(), started);
    }
    let submitted = Instant::now();
    let mut routed = *routed;
    run_in(pool, lane, move |worker, respond| {
        routed.resume(submitted);
        match job.check_deadline("after the feature lookup") {
            Err(e) => respond.send(Err(e.into())),
            Ok(()) => {
                let answer = ToCaller::new(&job, respond);
                finish_then(&job, worker, routed, looked, answer)
            }
        }
    })
    .await
    .map_err(refused)?
    .map(|step| match step {
        Step::Scored(scored) => scored,
        Step::Waiting(..) => unreachable!("the second job always finishes"),
    })
}

/// Where a scored request goes: to its caller, then its shadow copies to the queue (the
/// caller never waits for them).
struct ToCaller {
    job: Arc<Job>,
    respond: Respond,
}

impl ToCaller {
    fn new(job: &Arc<Job>, respond: Respond) -> Self {
        Self {
            job: job.clone(),
            respond,
        }
    }
}

impl Deliver for ToCaller {
    fn gone(&self) -> bool {
        self.respond.is_gone()
    }

    fn deliver(self, result: Result<Scored, Failure>) {
        let (step, shadow) = with_shadow(result.map(Step::Scored), &self.job);
        self.respond.send(step);
        if let Some(shadow) = shadow {
            shadow();
        }
    }
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
