//! A run's figures: throughput and counts from the tally, latency percentiles from goose's
//! metrics, corrected for coordinated omission (goose's backfilled synthetic times) and as
//! measured.

use std::collections::BTreeMap;

use goose::metrics::{GooseMetrics, GooseRequestMetricTimingData, TimeBuckets};
use serde::Serialize;

use crate::tally::Counts;

/// Response-time percentiles in milliseconds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Latency {
    pub count: usize,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p99_9_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    pub fn of(data: &GooseRequestMetricTimingData) -> Latency {
        let ms = |us: u64| us as f64 / 1000.0;
        Latency {
            count: data.counter,
            mean_ms: if data.counter == 0 {
                0.0
            } else {
                data.total_time_us as f64 / data.counter as f64 / 1000.0
            },
            p50_ms: ms(data.percentile_us(0.5)),
            p90_ms: ms(data.percentile_us(0.9)),
            p99_ms: ms(data.percentile_us(0.99)),
            p99_9_ms: ms(data.percentile_us(0.999)),
            max_ms: ms(data.maximum_time_us),
        }
    }
}

/// One request name's figures (the names are the request formats).
#[derive(Debug, Clone, Serialize)]
pub struct ByName {
    pub name: String,
    pub requests: usize,
    pub failed: usize,
    pub latency: Latency,
}

/// Coordinated-omission mitigation: what goose added.
#[derive(Debug, Clone, Serialize)]
pub struct CoInfo {
    pub mitigation: String,
    pub synthetic_requests: u64,
    pub synthetic_percent: f64,
    pub events: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct LoadSummary {
    pub requests: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub error_rate: f64,
    pub rows: u64,
    /// First request sent to the last answer within the planned duration.
    pub elapsed_s: f64,
    /// Answers within the planned duration per second of it.
    pub throughput_rps: f64,
    pub rows_per_s: f64,
    /// Answers that arrived after the planned duration (left out of the throughput).
    pub late_answers: u64,
    /// Corrected for coordinated omission (measured times plus goose's synthetic ones).
    pub latency: Latency,
    /// As measured, without the synthetic times.
    pub latency_measured: Latency,
    pub coordinated_omission: CoInfo,
    /// Answers by HTTP status ("no response" for transport errors).
    pub statuses: BTreeMap<String, u64>,
    /// Answers by `served-model-name` (and `served-model-version`).
    pub served: BTreeMap<String, u64>,
    /// Error messages and their counts.
    pub errors: BTreeMap<String, u64>,
    pub by_format: Vec<ByName>,
    /// Requests per second over the run, for a glance at its shape.
    pub timeline_rps: Vec<u64>,
    /// Requests goose counted (a cross-check of `requests`).
    pub goose_requests: usize,
}

impl LoadSummary {
    pub fn new(metrics: &GooseMetrics, counts: &Counts, mitigation: &str) -> LoadSummary {
        let mut names: Vec<&String> = metrics.requests.keys().collect();
        names.sort();
        let by_format = names
            .iter()
            .map(|key| {
                let r = &metrics.requests[*key];
                ByName {
                    name: r.path.clone(),
                    requests: r.success_count + r.fail_count,
                    failed: r.fail_count,
                    latency: Latency::of(corrected(r)),
                }
            })
            .collect();
        let all = metrics.requests.values();
        let latency = Latency::of(&merge(all.clone().map(corrected)));
        let latency_measured = Latency::of(&merge(all.clone().map(|r| &r.raw_data)));
        let goose_requests = all.map(|r| r.success_count + r.fail_count).sum();
        let co = metrics.coordinated_omission_metrics.as_ref();
        let per_s = |n: u64| {
            if counts.elapsed_s > 0.0 {
                n as f64 / counts.elapsed_s
            } else {
                0.0
            }
        };
        LoadSummary {
            requests: counts.answered,
            succeeded: counts.succeeded,
            failed: counts.failed,
            error_rate: if counts.answered == 0 {
                0.0
            } else {
                counts.failed as f64 / counts.answered as f64
            },
            rows: counts.rows,
            elapsed_s: counts.elapsed_s,
            throughput_rps: per_s(counts.in_window),
            rows_per_s: per_s(counts.in_window_rows),
            late_answers: counts.answered - counts.in_window,
            latency,
            latency_measured,
            coordinated_omission: CoInfo {
                mitigation: mitigation.to_owned(),
                synthetic_requests: co.map_or(0, |c| c.synthetic_requests),
                synthetic_percent: co.map_or(0.0, |c| f64::from(c.synthetic_percentage)),
                events: co.map_or(0, |c| c.co_events.len()),
            },
            statuses: counts.statuses.clone(),
            served: counts.served.clone(),
            errors: counts.errors.clone(),
            by_format,
            timeline_rps: counts.timeline.iter().map(|s| s.requests).collect(),
            goose_requests,
        }
    }
}

/// A request's times with goose's synthetic ones when it added any.
fn corrected(r: &goose::metrics::GooseRequestMetricAggregate) -> &GooseRequestMetricTimingData {
    r.coordinated_omission_data.as_ref().unwrap_or(&r.raw_data)
}

/// The union of several requests' times (goose keeps them per request name).
fn merge<'a>(
    parts: impl Iterator<Item = &'a GooseRequestMetricTimingData>,
) -> GooseRequestMetricTimingData {
    let mut buckets: BTreeMap<u64, usize> = BTreeMap::new();
    let mut out = GooseRequestMetricTimingData::default();
    for part in parts {
        if part.counter == 0 {
            continue;
        }
        for (bucket, count) in part.times_us.iter() {
            *buckets.entry(*bucket).or_default() += *count;
        }
        if out.counter == 0 || part.minimum_time_us < out.minimum_time_us {
            out.minimum_time_us = part.minimum_time_us;
        }
        out.maximum_time_us = out.maximum_time_us.max(part.maximum_time_us);
        out.total_time_us += part.total_time_us;
        out.counter += part.counter;
    }
    let mut times = TimeBuckets::new();
    for (bucket, count) in buckets {
        times.insert(bucket, count);
    }
    out.times_us = times;
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timing(times_us: &[u64]) -> GooseRequestMetricTimingData {
        // Every time under 128 us has its own bucket, keyed by itself.
        let mut out = GooseRequestMetricTimingData::default();
        let mut buckets = BTreeMap::new();
        for &t in times_us {
            *buckets.entry(t).or_insert(0usize) += 1;
        }
        for (b, c) in buckets {
            out.times_us.insert(b, c);
        }
        out.minimum_time_us = *times_us.iter().min().unwrap();
        out.maximum_time_us = *times_us.iter().max().unwrap();
        out.total_time_us = times_us.iter().sum();
        out.counter = times_us.len();
        out
    }

    #[test]
    fn merged_percentiles_cover_every_part() {
        let a = timing(&(1..=50).collect::<Vec<_>>());
        let b = timing(&(51..=100).collect::<Vec<_>>());
        let m = merge([&a, &b].into_iter());
        assert_eq!(m.counter, 100);
        assert_eq!(m.minimum_time_us, 1);
        assert_eq!(m.maximum_time_us, 100);
        let l = Latency::of(&m);
        assert_eq!(l.p50_ms, 0.05);
        assert_eq!(l.p99_ms, 0.099);
        assert_eq!(l.max_ms, 0.1);
        assert!((l.mean_ms - 0.0505).abs() < 1e-12);
        assert_eq!(Latency::of(&merge(std::iter::empty())).count, 0);
    }
}
