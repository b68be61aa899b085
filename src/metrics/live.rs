//! Live request rates and latency quantiles per served entity, for the status page: the
//! difference between two looks at `modelgate_request_duration_seconds` (the in-process
//! histograms Prometheus scrapes), so a figure covers the last few seconds, not the process's
//! life.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use prometheus::core::Collector;
use prometheus::HistogramVec;

/// Looks closer together than this reuse the last figures (a short interval says little).
const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// `(endpoint, served entity)`.
pub type ArmKey = (String, String);

/// One served entity's traffic over the interval between two looks.
#[derive(Debug, Clone, PartialEq)]
pub struct Live {
    pub requests_per_second: f64,
    /// Seconds; absent without requests in the interval.
    pub p50: Option<f64>,
    pub p99: Option<f64>,
    /// The interval the figures cover, in seconds.
    pub over_seconds: f64,
}

/// Counts and cumulative bucket counts (upper bound, count) of one served entity.
#[derive(Debug, Clone, Default, PartialEq)]
struct Counts {
    count: u64,
    buckets: Vec<(f64, u64)>,
}

struct Look {
    at: Instant,
    counts: HashMap<ArmKey, Counts>,
    figures: HashMap<ArmKey, Live>,
}

/// The previous look, kept between page loads.
pub struct LiveSampler {
    started: Instant,
    last: Mutex<Option<Look>>,
}

impl Default for LiveSampler {
    fn default() -> Self {
        Self {
            started: Instant::now(),
            last: Mutex::new(None),
        }
    }
}

impl LiveSampler {
    /// Figures since the previous look (since the start, the first time), by served entity.
    pub fn look(&self, durations: &HistogramVec, now: Instant) -> HashMap<ArmKey, Live> {
        let counts = snapshot(durations);
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(prev) = last.as_ref() {
            if now.duration_since(prev.at) < MIN_INTERVAL {
                return prev.figures.clone();
            }
        }
        let (since, before) = match last.take() {
            Some(prev) => (prev.at, prev.counts),
            None => (self.started, HashMap::new()),
        };
        let seconds = now.duration_since(since).as_secs_f64().max(1e-3);
        let figures: HashMap<ArmKey, Live> = counts
            .iter()
            .map(|(key, now_counts)| {
                let delta = difference(now_counts, before.get(key));
                let live = Live {
                    requests_per_second: delta.count as f64 / seconds,
                    p50: quantile(&delta, 0.5),
                    p99: quantile(&delta, 0.99),
                    over_seconds: seconds,
                };
                (key.clone(), live)
            })
            .collect();
        *last = Some(Look {
            at: now,
            counts,
            figures: figures.clone(),
        });
        figures
    }
}

/// Every series summed per `(endpoint, served_entity)` (over protocols and status classes).
fn snapshot(durations: &HistogramVec) -> HashMap<ArmKey, Counts> {
    let mut out: HashMap<ArmKey, Counts> = HashMap::new();
    for family in durations.collect() {
        for m in family.get_metric() {
            let label = |name: &str| {
                m.get_label()
                    .iter()
                    .find(|l| l.name() == name)
                    .map(|l| l.value().to_owned())
                    .unwrap_or_default()
            };
            let h = m.get_histogram();
            let entry = out
                .entry((label("endpoint"), label("served_entity")))
                .or_default();
            entry.count += h.get_sample_count();
            let buckets = h.get_bucket();
            if entry.buckets.is_empty() {
                entry.buckets = buckets
                    .iter()
                    .map(|b| (b.upper_bound(), b.cumulative_count()))
                    .collect();
            } else {
                for (sum, b) in entry.buckets.iter_mut().zip(buckets) {
                    sum.1 += b.cumulative_count();
                }
            }
        }
    }
    out
}

fn difference(now: &Counts, before: Option<&Counts>) -> Counts {
    let Some(before) = before else {
        return now.clone();
    };
    Counts {
        count: now.count.saturating_sub(before.count),
        buckets: now
            .buckets
            .iter()
            .zip(
                before
                    .buckets
                    .iter()
                    .map(|b| b.1)
                    .chain(std::iter::repeat(0)),
            )
            .map(|(&(le, n), b)| (le, n.saturating_sub(b)))
            .collect(),
    }
}

/// Prometheus's `histogram_quantile`: linear within the bucket that holds the rank; a rank in
/// the open top bucket gives the highest finite bound.
fn quantile(c: &Counts, q: f64) -> Option<f64> {
    if c.count == 0 {
        return None;
    }
    let rank = q * c.count as f64;
    let (mut lower, mut below) = (0.0, 0u64);
    for &(le, cumulative) in &c.buckets {
        if cumulative as f64 >= rank {
            if le.is_infinite() {
                return Some(lower);
            }
            let inside = (cumulative - below) as f64;
            let share = if inside > 0.0 {
                (rank - below as f64) / inside
            } else {
                1.0
            };
            return Some(lower + (le - lower) * share);
        }
        (lower, below) = (le, cumulative);
    }
    Some(lower)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn durations() -> HistogramVec {
        HistogramVec::new(
            prometheus::HistogramOpts::new("d", "d").buckets(vec![0.001, 0.01, 0.1]),
            &["endpoint", "served_entity", "protocol", "status_class"],
        )
        .unwrap()
    }

    #[test]
    fn figures_cover_the_interval_between_looks_summed_over_protocols() {
        let h = durations();
        let sampler = LiveSampler::default();
        let t0 = Instant::now();
        for _ in 0..10 {
            h.with_label_values(&["e", "a", "mlflow", "2xx"])
                .observe(0.05);
        }
        sampler.look(&h, t0 + Duration::from_secs(2));
        for i in 0..100 {
            let protocol = if i % 2 == 0 { "mlflow" } else { "v2" };
            h.with_label_values(&["e", "a", protocol, "2xx"])
                .observe(0.0005);
        }
        let live = sampler.look(&h, t0 + Duration::from_secs(4));
        let a = &live[&("e".to_owned(), "a".to_owned())];
        // 100 requests in the last 2 s, all under 1 ms: the earlier slow ones are not in it.
        assert_eq!(a.requests_per_second, 50.0);
        assert_eq!(a.p50, Some(0.0005));
        assert!(a.p99.unwrap() <= 0.001);
        // A look right after gives the same figures; one later with no traffic gives none.
        assert_eq!(
            sampler.look(&h, t0 + Duration::from_millis(4500))[&("e".into(), "a".into())],
            *a
        );
        let idle = sampler.look(&h, t0 + Duration::from_secs(6));
        assert_eq!(idle[&("e".into(), "a".into())].p99, None);
    }

    #[test]
    fn a_rank_in_the_open_bucket_gives_the_highest_bound() {
        let c = Counts {
            count: 4,
            buckets: vec![(0.001, 0), (0.01, 0), (0.1, 1), (f64::INFINITY, 4)],
        };
        assert_eq!(quantile(&c, 0.99), Some(0.1));
        assert_eq!(quantile(&c, 0.25), Some(0.1));
    }
}
