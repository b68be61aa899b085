//! What the users saw, counted beside goose's own metrics: answers by status, by served model
//! (the `served-model-name` and `served-model-version` headers), rows, error messages, and a
//! per-second timeline. Goose's metrics give the latency percentiles; this gives what goose
//! does not look at.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::traffic::{Answer, Request};

/// Error messages kept (the rest are counted under "other").
const MAX_ERROR_KINDS: usize = 20;

pub struct Tally {
    inner: Mutex<Inner>,
    max_requests: u64,
    /// How long the load is planned to last: answers after it (stragglers of the end, or of
    /// a stall) count, but not toward throughput.
    window: Option<Duration>,
}

#[derive(Default)]
struct Inner {
    first_sent: Option<Instant>,
    /// The last answer within the window.
    last_done: Option<Instant>,
    answered: u64,
    /// Answers and their rows within the window.
    in_window: u64,
    in_window_rows: u64,
    succeeded: u64,
    failed: u64,
    rows: u64,
    statuses: BTreeMap<String, u64>,
    served: BTreeMap<String, u64>,
    errors: BTreeMap<String, u64>,
    seconds: Vec<Second>,
}

/// One second of the run, counted from the first request sent.
#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct Second {
    pub requests: u64,
    pub failed: u64,
    /// Response times measured by this tool (not corrected), summed and the largest.
    #[serde(skip)]
    pub total_us: u64,
    pub max_ms: f64,
}

impl Second {
    pub fn mean_ms(&self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            self.total_us as f64 / self.requests as f64 / 1000.0
        }
    }
}

/// A copy of the counts.
#[derive(Debug, Clone, Serialize)]
pub struct Counts {
    pub answered: u64,
    /// Answers that arrived within the planned window, and their rows: what throughput is
    /// computed from.
    pub in_window: u64,
    pub in_window_rows: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub rows: u64,
    /// First request sent to the last answer within the planned window.
    pub elapsed_s: f64,
    pub statuses: BTreeMap<String, u64>,
    pub served: BTreeMap<String, u64>,
    pub errors: BTreeMap<String, u64>,
    pub timeline: Vec<Second>,
}

impl Tally {
    pub fn new(max_requests: u64, window: Option<Duration>) -> Tally {
        Tally {
            inner: Mutex::new(Inner::default()),
            max_requests,
            window,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Notes that a request is about to go out.
    pub fn sending(&self, at: Instant) {
        self.lock().first_sent.get_or_insert(at);
    }

    /// Counts an answer that arrived at `done` and took `took` (goose's response time); once
    /// --max-requests answers are in, stops the load (goose's killswitch).
    pub fn record(&self, request: &Request, answer: &Answer, done: Instant, took: Duration) {
        let answered = {
            let mut t = self.lock();
            let first = *t
                .first_sent
                .get_or_insert(done.checked_sub(took).unwrap_or(done));
            let rows = request.rows.len() as u64;
            if self.window.is_none_or(|w| done <= first + w) {
                t.last_done = Some(t.last_done.map_or(done, |d| d.max(done)));
                t.in_window += 1;
                t.in_window_rows += rows;
            }
            t.answered += 1;
            t.rows += rows;
            let ok = answer.ok();
            if ok {
                t.succeeded += 1;
            } else {
                t.failed += 1;
            }
            let status = match answer.status {
                Some(s) => s.to_string(),
                None => "no response".to_owned(),
            };
            *t.statuses.entry(status).or_default() += 1;
            if let Some(name) = &answer.served_name {
                let key = match &answer.served_version {
                    Some(v) => format!("{name} (v{v})"),
                    None => name.clone(),
                };
                *t.served.entry(key).or_default() += 1;
            }
            if let Some(error) = &answer.error {
                let key = match answer.status {
                    Some(s) => format!("{s}: {error}"),
                    None => error.clone(),
                };
                let kinds = t.errors.len();
                match t.errors.get_mut(&key) {
                    Some(n) => *n += 1,
                    None if kinds < MAX_ERROR_KINDS => {
                        t.errors.insert(key, 1);
                    }
                    None => *t.errors.entry("other".to_owned()).or_default() += 1,
                }
            }
            let second = done.saturating_duration_since(first).as_secs() as usize;
            if t.seconds.len() <= second {
                t.seconds.resize(second + 1, Second::default());
            }
            let s = &mut t.seconds[second];
            s.requests += 1;
            if !ok {
                s.failed += 1;
            }
            s.total_us += took.as_micros() as u64;
            s.max_ms = s.max_ms.max(took.as_secs_f64() * 1000.0);
            t.answered
        };
        if answered == self.max_requests {
            goose::trigger_killswitch("--max-requests reached");
        }
    }

    pub fn counts(&self) -> Counts {
        let t = self.lock();
        let elapsed_s = match (t.first_sent, t.last_done) {
            (Some(a), Some(b)) => b.saturating_duration_since(a).as_secs_f64(),
            _ => 0.0,
        };
        Counts {
            answered: t.answered,
            in_window: t.in_window,
            in_window_rows: t.in_window_rows,
            succeeded: t.succeeded,
            failed: t.failed,
            rows: t.rows,
            elapsed_s,
            statuses: t.statuses.clone(),
            served: t.served.clone(),
            errors: t.errors.clone(),
            timeline: t.seconds.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(rows: usize) -> Request {
        let generator = crate::traffic::Generator::new(3);
        Request {
            name: "csv",
            path: "/".into(),
            content_type: "text/csv",
            body: Vec::new(),
            headers: Vec::new(),
            rows: generator.take(rows),
            key: None,
        }
    }

    #[test]
    fn counts_statuses_models_and_seconds() {
        let tally = Tally::new(1_000, Some(Duration::from_secs(2)));
        let t0 = Instant::now();
        let ok = Answer {
            status: Some(200),
            served_name: Some("champion".into()),
            served_version: Some("1".into()),
            ..Answer::default()
        };
        let busy = Answer {
            status: Some(503),
            error: Some("queue full".into()),
            ..Answer::default()
        };
        let lost = Answer {
            error: Some("connection refused".into()),
            ..Answer::default()
        };
        let ms = Duration::from_millis;
        tally.sending(t0);
        tally.record(&request(2), &ok, t0 + ms(3), ms(3));
        tally.record(&request(1), &ok, t0 + ms(1505), ms(5));
        tally.record(&request(1), &busy, t0 + ms(1), ms(1));
        tally.record(&request(1), &lost, t0 + ms(1), ms(1));
        tally.record(&request(3), &ok, t0 + ms(2500), ms(900));
        let c = tally.counts();
        assert_eq!((c.answered, c.succeeded, c.failed, c.rows), (5, 3, 2, 8));
        assert_eq!((c.in_window, c.in_window_rows), (4, 5));
        assert_eq!(c.statuses["200"], 3);
        assert_eq!(c.statuses["503"], 1);
        assert_eq!(c.statuses["no response"], 1);
        assert_eq!(c.served["champion (v1)"], 3);
        assert_eq!(c.errors["503: queue full"], 1);
        assert_eq!(c.errors["connection refused"], 1);
        assert_eq!(c.timeline.len(), 3);
        assert_eq!(c.timeline[0].requests, 3);
        assert_eq!(c.timeline[1].requests, 1);
        assert!((c.elapsed_s - 1.505).abs() < 1e-6);
    }
}
