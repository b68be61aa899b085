//! Admission: whether a request is taken in (requests in flight, the endpoint's rate limits),
//! and its deadline, checked between stages and by the caller's timer.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::endpoint::Generation;
use crate::error::{Limit, RequestError};
use crate::protocol::limits::DecodeLimits;
use crate::settings::inference::InlineSettings;

/// Bounds on the scoring requests a gateway takes.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Requests in flight at once; beyond it 429.
    pub max_in_flight: usize,
    /// A request's deadline from its arrival; beyond it 504.
    pub timeout: Option<Duration>,
    /// Bounds on what one request may hold, checked while decoding.
    pub decode: DecodeLimits,
    /// Which jobs may run on the HTTP worker (`inference.inline`).
    pub inline: InlineSettings,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_in_flight: usize::MAX,
            timeout: None,
            decode: Default::default(),
            inline: Default::default(),
        }
    }
}

/// The count of requests in flight, with its bound.
pub struct Admission {
    in_flight: AtomicUsize,
    max_in_flight: usize,
}

/// One request in flight, counted until it is dropped.
pub struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Admission {
    pub fn new(max_in_flight: usize) -> Self {
        Self {
            in_flight: AtomicUsize::new(0),
            max_in_flight,
        }
    }

    /// Takes a request in: within the bound on requests in flight and the endpoint's rate
    /// limits (counted for `requester` at `now_ms`), or refused with when to retry.
    pub fn admit(
        &self,
        generation: &Generation,
        requester: Option<&str>,
        now_ms: u64,
    ) -> Result<InFlight<'_>, RequestError> {
        let before = self.in_flight.fetch_add(1, Ordering::AcqRel);
        let counted = InFlight(&self.in_flight);
        if before >= self.max_in_flight {
            return Err(RequestError::TooManyRequests {
                message: format!(
                    "the gateway is at its limit of {} requests in flight (server.max_concurrent_requests): retry later",
                    self.max_in_flight
                ),
                retry_after_s: 1,
            });
        }
        if let Some(limiter) = &generation.rate_limiter {
            if let Err((calls, wait)) = limiter.check(requester.unwrap_or(""), now_ms) {
                return Err(RequestError::TooManyRequests {
                    message: format!(
                        "endpoint '{}' is over its rate limit of {calls} calls per minute: retry in {wait} s",
                        generation.settings.name
                    ),
                    retry_after_s: wait,
                });
            }
        }
        Ok(counted)
    }
}

/// When the caller stops waiting: a job started after it is not run, and a long one stops
/// between stages, each counted in `limit_refusals_total{limit="deadline"}`.
#[derive(Clone)]
pub struct Deadline {
    at: Instant,
    /// The timeout it came from, named in the refusal.
    timeout: Duration,
    refusals: prometheus::IntCounter,
}

impl Deadline {
    pub fn new(received: Instant, timeout: Duration, refusals: prometheus::IntCounter) -> Self {
        Self {
            at: received + timeout,
            timeout,
            refusals,
        }
    }

    /// Counts a job stopped because its caller's deadline passed (or the caller went).
    pub fn count_refusal(&self) {
        self.refusals.inc();
    }

    /// A job whose caller has gone does no more work: refused (and counted) once `now` is
    /// past the deadline; `when` says at which stage.
    pub fn check(&self, now: Instant, when: &str) -> Result<(), RequestError> {
        if now < self.at {
            return Ok(());
        }
        self.refusals.inc();
        Err(RequestError::limit(
            Limit::Deadline,
            format!("{}: passed {when}, not run further", expired(self.timeout)),
        ))
    }
}

/// Runs `work` within the caller's timeout from `received`, if there is one. Not an `async
/// fn`: one would hold `work` twice (as its argument and as the future it awaits), and the
/// request's future is moved whole on every request.
pub fn within<T>(
    timeout: Option<Duration>,
    received: Instant,
    work: impl std::future::Future<Output = Result<T, super::Failure>>,
) -> impl std::future::Future<Output = Result<T, super::Failure>> {
    use futures_util::future::{Either, FutureExt};
    let Some(limit) = timeout else {
        return Either::Left(work);
    };
    let left = limit.saturating_sub(received.elapsed());
    Either::Right(tokio::time::timeout(left, work).map(move |r| {
        r.unwrap_or_else(|_| Err(RequestError::DeadlineExceeded(expired(limit)).into()))
    }))
}

/// The same words whichever fires first, the caller's timer or a job's check.
fn expired(timeout: Duration) -> String {
    format!(
        "the request did not finish within its deadline of {} ms (server.request_timeout_ms)",
        timeout.as_millis()
    )
}
