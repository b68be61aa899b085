//! The writer thread: gathers queued records per table and commits a table's batch when it
//! is big enough or old enough, with retries; at close, commits everything within the deadline.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use deltalake::arrow::error::ArrowError;
use deltalake::arrow::record_batch::RecordBatch;

use super::delta::DeltaSink;
use super::record::{labels_batch, payload_batch, predictions_batch};
use super::{
    CallRecord, Capture, Entry, InferenceLogSettings, LabelRecord, ScoredRows, TableTarget,
};
use crate::metrics::Metrics;

/// Records of one table waiting for their commit.
struct Pending<T> {
    items: Vec<T>,
    rows: usize,
    bytes: usize,
    since: Option<Instant>,
}

impl<T> Default for Pending<T> {
    fn default() -> Self {
        Self {
            items: Vec::new(),
            rows: 0,
            bytes: 0,
            since: None,
        }
    }
}

impl<T> Pending<T> {
    fn push(&mut self, item: T, rows: usize, bytes: usize) {
        self.items.push(item);
        self.rows += rows;
        self.bytes += bytes;
        self.since.get_or_insert_with(Instant::now);
    }

    fn take(&mut self) -> Self {
        std::mem::take(self)
    }
}

enum Batch {
    Calls(Pending<CallRecord>),
    Scored(Pending<ScoredRows>),
    Labels(Pending<LabelRecord>),
}

/// The pending batches of one endpoint's tables.
struct Tables {
    capture: Arc<Capture>,
    calls: Pending<CallRecord>,
    scored: Pending<ScoredRows>,
    labels: Pending<LabelRecord>,
}

pub(super) struct Writer {
    rx: Receiver<Entry>,
    queued_bytes: Arc<AtomicUsize>,
    metrics: Arc<Metrics>,
    sink: DeltaSink,
    flush_rows: usize,
    flush_bytes: usize,
    interval: Duration,
    attempts: u32,
    /// Rows dropped by failed commits (for the outcome of `close`).
    dropped: usize,
    /// By payload table URI (a config update keeps its tables when their names stay).
    tables: HashMap<String, Tables>,
}

impl Writer {
    pub(super) fn new(
        settings: &InferenceLogSettings,
        rx: Receiver<Entry>,
        queued_bytes: Arc<AtomicUsize>,
        metrics: Arc<Metrics>,
        sink: DeltaSink,
    ) -> Self {
        Self {
            rx,
            queued_bytes,
            metrics,
            sink,
            flush_rows: settings.flush_rows,
            flush_bytes: settings.flush_bytes,
            interval: Duration::from_millis(settings.flush_interval_ms),
            attempts: settings.commit_attempts,
            dropped: 0,
            tables: HashMap::new(),
        }
    }

    /// Runs until closed; true when everything queued was committed.
    pub(super) fn run(mut self) -> bool {
        loop {
            let entry = if self.tables.values().any(has_rows) {
                match self.rx.recv_timeout(self.interval / 4) {
                    Ok(e) => Some(e),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => return self.finish(None),
                }
            } else {
                match self.rx.recv() {
                    Ok(e) => Some(e),
                    Err(_) => return self.finish(None),
                }
            };
            if let Some(Entry::Close { deadline }) = entry {
                return self.finish(Some(deadline));
            }
            if let Some(e) = entry {
                self.take(e);
            }
            self.flush_due(false, None);
        }
    }

    fn tables_of(&mut self, capture: &Arc<Capture>) -> &mut Tables {
        let t = self
            .tables
            .entry(capture.payload.uri.clone())
            .or_insert_with(|| Tables {
                capture: capture.clone(),
                calls: Pending::default(),
                scored: Pending::default(),
                labels: Pending::default(),
            });
        // Rows from a newer config carry its sampling fraction.
        if !Arc::ptr_eq(&t.capture, capture) {
            t.capture = capture.clone();
        }
        t
    }

    fn take(&mut self, entry: Entry) {
        match entry {
            Entry::Call {
                capture,
                call,
                scored,
                bytes,
            } => {
                let t = self.tables_of(&capture);
                t.calls.push(call, 1, bytes[0]);
                let mut scored_bytes = bytes[1];
                for s in scored {
                    let rows = s.rows();
                    t.scored.push(s, rows, std::mem::take(&mut scored_bytes));
                }
                // A call that scored nothing held no prediction bytes, but release any.
                self.queued_bytes.fetch_sub(scored_bytes, Ordering::AcqRel);
            }
            Entry::Shadow {
                capture,
                scored,
                bytes,
            } => {
                let rows = scored.rows();
                self.tables_of(&capture).scored.push(scored, rows, bytes);
            }
            Entry::Labels {
                capture,
                labels,
                mut bytes,
            } => {
                let t = self.tables_of(&capture);
                for l in labels {
                    t.labels.push(l, 1, std::mem::take(&mut bytes));
                }
                self.queued_bytes.fetch_sub(bytes, Ordering::AcqRel);
            }
            Entry::Close { .. } => {}
        }
    }

    /// Commits every batch that is due (all of them when `all`).
    fn flush_due(&mut self, all: bool, deadline: Option<Instant>) {
        let (flush_rows, flush_bytes, interval) =
            (self.flush_rows, self.flush_bytes, self.interval);
        let due = |rows: usize, bytes: usize, since: Option<Instant>| {
            rows > 0
                && (all
                    || rows >= flush_rows
                    || bytes >= flush_bytes
                    || since.is_some_and(|s| s.elapsed() >= interval))
        };
        let mut work = Vec::new();
        for t in self.tables.values_mut() {
            if due(t.calls.rows, t.calls.bytes, t.calls.since) {
                work.push((t.capture.clone(), Batch::Calls(t.calls.take())));
            }
            if due(t.scored.rows, t.scored.bytes, t.scored.since) {
                work.push((t.capture.clone(), Batch::Scored(t.scored.take())));
            }
            if due(t.labels.rows, t.labels.bytes, t.labels.since) {
                work.push((t.capture.clone(), Batch::Labels(t.labels.take())));
            }
        }
        for (capture, batch) in work {
            match batch {
                Batch::Calls(p) => {
                    let f = capture.sampling_fraction;
                    self.commit(
                        &capture,
                        &capture.payload,
                        p.rows,
                        p.bytes,
                        deadline,
                        || payload_batch(&p.items, f),
                    )
                }
                Batch::Scored(p) => self.commit(
                    &capture,
                    &capture.predictions,
                    p.rows,
                    p.bytes,
                    deadline,
                    || predictions_batch(&capture.endpoint, &p.items),
                ),
                Batch::Labels(p) => {
                    self.commit(&capture, &capture.labels, p.rows, p.bytes, deadline, || {
                        labels_batch(&p.items)
                    })
                }
            }
        }
    }

    /// Builds and commits one batch, retrying with backoff; rows that cannot be committed are
    /// counted as dropped. Their queue bytes are released either way.
    fn commit(
        &mut self,
        capture: &Capture,
        table: &TableTarget,
        rows: usize,
        bytes: usize,
        deadline: Option<Instant>,
        build: impl FnOnce() -> Result<RecordBatch, ArrowError>,
    ) {
        let endpoint = &*capture.endpoint;
        let labels = [endpoint, table.kind];
        let outcome = match build() {
            Err(e) => {
                tracing::error!(table = %table.uri, "cannot build the inference-log rows: {e}");
                Err("invalid_rows")
            }
            Ok(batch) => self.append_with_retries(capture, table, batch, deadline),
        };
        self.queued_bytes.fetch_sub(bytes, Ordering::AcqRel);
        match outcome {
            Ok(written) => {
                self.metrics
                    .log_rows
                    .with_label_values(&labels)
                    .inc_by(rows as u64);
                self.metrics
                    .log_bytes
                    .with_label_values(&labels)
                    .inc_by(written as u64);
            }
            Err(reason) => {
                self.dropped += rows;
                self.metrics
                    .log_dropped_rows
                    .with_label_values(&[endpoint, table.kind, reason])
                    .inc_by(rows as u64);
            }
        }
    }

    fn append_with_retries(
        &mut self,
        capture: &Capture,
        table: &TableTarget,
        batch: RecordBatch,
        deadline: Option<Instant>,
    ) -> Result<usize, &'static str> {
        let labels = [&*capture.endpoint, table.kind];
        let size = batch.get_array_memory_size();
        let mut backoff = Duration::from_millis(100);
        for attempt in 1..=self.attempts {
            let started = Instant::now();
            let result = self.sink.append(&table.uri, batch.clone());
            self.metrics
                .log_commit_duration
                .with_label_values(&labels)
                .observe(started.elapsed().as_secs_f64());
            match result {
                Ok(version) => {
                    tracing::debug!(table = %table.uri, version, rows = batch.num_rows(), "inference log committed");
                    return Ok(size);
                }
                Err(e) => {
                    tracing::warn!(table = %table.uri, attempt, "inference-log commit failed: {e}");
                    if attempt == self.attempts {
                        break;
                    }
                    if deadline.is_some_and(|d| Instant::now() + backoff > d) {
                        return Err("shutdown");
                    }
                    self.metrics
                        .log_commit_retries
                        .with_label_values(&labels)
                        .inc();
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
        tracing::error!(table = %table.uri, rows = batch.num_rows(), "inference-log rows dropped after {} attempts", self.attempts);
        Err("commit_failed")
    }

    /// Takes what is still queued and commits everything, within `deadline` when closing.
    fn finish(mut self, deadline: Option<Instant>) -> bool {
        self.dropped = 0;
        while let Ok(e) = self.rx.try_recv() {
            self.take(e);
        }
        self.flush_due(true, deadline);
        self.dropped == 0
    }
}

fn has_rows(t: &Tables) -> bool {
    t.calls.rows > 0 || t.scored.rows > 0 || t.labels.rows > 0
}
