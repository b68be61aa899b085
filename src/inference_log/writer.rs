//! A shard's writer (driven by its niced thread or its catch-up thread, [`super::catch_up`]):
//! gathers queued records per table and commits a table's batch when it
//! is big enough or old enough, with retries; at close, commits everything within the deadline.
//!
//! A batch is the unit of failure: a panic while converting or committing one is caught, its
//! rows are counted as dropped (`reason="writer_panic"`) and the writer goes on with the next.
//! Each batch carries a number in the writer's Delta application transaction, so a retry never
//! appends a batch that an earlier attempt committed. Once `close` sets the deadline, no attempt
//! starts after it, one in flight is abandoned at it, and every row left is counted
//! (`reason="shutdown"`).

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, TryRecvError};
use deltalake::arrow::error::ArrowError;
use deltalake::arrow::record_batch::RecordBatch;

use super::compactor::{Compactor, Job};
use super::delta::{Appended, DeltaSink, SinkError, Txn};
use super::priority::{drop_in_turns, turn_begins, PauseEvery};
use super::record::{labels_batch, payload_batch, predictions_batch};
use super::{
    CallRecord, Capture, Entry, InferenceLogSettings, LabelRecord, ScoredRows, TableTarget,
};
use crate::metrics::labels::DropReason;
use crate::metrics::Metrics;

/// How long, past the deadline, the writer may ask a table whether an abandoned attempt
/// committed (inside the 2 s `close` waits beyond the deadline).
const ABANDONED_CHECK: Duration = Duration::from_millis(1000);

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

    /// The batch, leaving room for as many items next time (at most `most`): the next batch
    /// fills a vector of its size instead of growing one through every doubling, each a fresh
    /// block and a copy of what it held.
    fn take(&mut self, most: usize) -> Self {
        let room = self.items.len().min(most);
        std::mem::replace(
            self,
            Self {
                items: Vec::with_capacity(room),
                ..Self::default()
            },
        )
    }
}

/// What one look at the queue did.
pub(super) enum Step {
    /// Batches committed (or counted as dropped).
    Committed(usize),
    /// `close` was heard: everything was committed (true) or counted.
    Finished(bool),
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

/// Queue entries taken between two pause points.
const ENTRIES_BETWEEN_PAUSES: usize = 64;

pub(super) struct Writer {
    rx: Receiver<Entry>,
    /// The log's byte budget, and this shard's part of it: both released as rows are
    /// committed or counted.
    queued_bytes: Arc<AtomicUsize>,
    shard_bytes: Arc<AtomicUsize>,
    metrics: Arc<Metrics>,
    sink: DeltaSink,
    /// Set once `close` was heard and everything committed or counted (the outcome).
    finished: Option<bool>,
    flush_rows: usize,
    flush_bytes: usize,
    interval: Duration,
    attempts: u32,
    /// Rows dropped by this writer (failed commits, panics, the deadline).
    dropped: usize,
    /// Of those, the rows dropped once `close` was called (its outcome).
    dropped_closing: usize,
    /// By payload table URI (a config update keeps its tables when their names stay); hashed
    /// with ahash, as every record looks its tables up (the URIs are the operator's).
    tables: HashMap<String, Tables, ahash::RandomState>,
    /// The shutdown deadline, set once by `close`.
    stop: Arc<OnceLock<Instant>>,
    /// This writer's Delta application id: one per process run.
    app_id: Arc<str>,
    /// The number of the last batch given to `commit` (its transaction version).
    batch_seq: i64,
    /// The shard's compaction thread, which says how many commits a table has between two
    /// compactions; none when `compact_every_commits` is 0.
    compactor: Option<Compactor>,
    /// This writer's commits to each table since its last compaction.
    since_compaction: HashMap<String, u32>,
}

impl Writer {
    pub(super) fn new(
        settings: &InferenceLogSettings,
        rx: Receiver<Entry>,
        queued_bytes: Arc<AtomicUsize>,
        shard_bytes: Arc<AtomicUsize>,
        metrics: Arc<Metrics>,
        sink: DeltaSink,
        stop: Arc<OnceLock<Instant>>,
    ) -> Self {
        let app_id = format!("modelgate-{}", uuid::Uuid::new_v4());
        Self {
            rx,
            queued_bytes,
            shard_bytes,
            metrics,
            sink,
            finished: None,
            flush_rows: settings.flush_rows,
            flush_bytes: settings.flush_bytes,
            interval: Duration::from_millis(settings.flush_interval_ms),
            attempts: settings.commit_attempts,
            dropped: 0,
            dropped_closing: 0,
            tables: HashMap::default(),
            stop,
            app_id: app_id.into(),
            batch_seq: 0,
            compactor: None,
            since_compaction: HashMap::new(),
        }
    }

    /// The writer, asking `compactor` for its tables' compactions (without one it compacts
    /// nothing).
    pub(super) fn with_compactor(mut self, compactor: Option<Compactor>) -> Self {
        self.compactor = compactor;
        self
    }

    /// Gives back queue bytes (of the log and of this shard).
    fn release(&self, bytes: usize) {
        self.queued_bytes.fetch_sub(bytes, Ordering::AcqRel);
        self.shard_bytes.fetch_sub(bytes, Ordering::AcqRel);
    }

    /// True once the shutdown deadline has passed.
    fn past_deadline(&self) -> bool {
        self.stop.get().is_some_and(|d| Instant::now() >= *d)
    }

    /// Sleeps `pause`, unless the shutdown deadline comes first: false then (at once).
    fn back_off(&self, pause: Duration) -> bool {
        let until = Instant::now() + pause;
        loop {
            if self.stop.get().is_some_and(|d| *d < until) {
                return false;
            }
            let now = Instant::now();
            if now >= until {
                return true;
            }
            std::thread::sleep((until - now).min(Duration::from_millis(20)));
        }
    }

    /// How long the writer sleeps between looks at its queue: short beside the flush interval,
    /// so a batch commits at most a tick late, and long enough that a busy server's records
    /// are taken in bulk rather than each waking the writer (a wake-up per logged request
    /// costs the serving core a context switch).
    pub(super) fn tick(&self) -> Duration {
        (self.interval / 10).clamp(Duration::from_millis(5), Duration::from_millis(100))
    }

    /// One look at the queue: takes what is queued and commits the batches that are due (every
    /// pending one when `all`), stopping between commits once `yield_to` is set. Senders never
    /// wake the writer (it does not block on the channel); its threads call this every tick,
    /// or sooner when [`super::InferenceLog`] unparks them. `Some(all committed)` once `close`
    /// was heard and everything was committed or counted.
    pub(super) fn step(&mut self, all: bool, yield_to: Option<&AtomicBool>) -> Step {
        // The thread has just been given the core: its turn starts now, not at its last yield.
        turn_begins();
        if let Some(all_committed) = self.finished {
            return Step::Finished(all_committed);
        }
        // A backlog is thousands of entries: the drain pauses as the batch builds do.
        let mut pace = PauseEvery::new(ENTRIES_BETWEEN_PAUSES);
        loop {
            match self.rx.try_recv() {
                Ok(Entry::Close) | Err(TryRecvError::Disconnected) => {
                    let all_committed = self.finish();
                    self.finished = Some(all_committed);
                    return Step::Finished(all_committed);
                }
                Ok(e) => self.take(e),
                Err(TryRecvError::Empty) => break,
            }
            pace.step();
        }
        Step::Committed(self.flush_due(all, yield_to))
    }

    fn tables_of(&mut self, capture: &Arc<Capture>) -> &mut Tables {
        // Looked up before inserting: the entry API would copy the key for every record.
        let uri = &capture.payload.uri;
        if !self.tables.contains_key(uri) {
            self.tables.insert(
                uri.clone(),
                Tables {
                    capture: capture.clone(),
                    calls: Pending::default(),
                    scored: Pending::default(),
                    labels: Pending::default(),
                },
            );
        }
        let t = self.tables.get_mut(uri).expect("inserted above");
        // The newer config's capture (its backpressure, for what it still holds).
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
                bytes,
            } => self.tables_of(&capture).calls.push(call, 1, bytes),
            Entry::Scored {
                capture,
                scored,
                mut bytes,
            } => {
                let t = self.tables_of(&capture);
                for s in scored {
                    let rows = s.rows();
                    t.scored.push(s, rows, std::mem::take(&mut bytes));
                }
                // Nothing scored held no bytes, but release any.
                self.release(bytes);
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
                self.release(bytes);
            }
            Entry::Close => {}
        }
    }

    /// Commits every batch that is due (all of them when `all`), one at a time, until
    /// `yield_to` is set (the rest stay pending for the next look); how many it committed (or
    /// counted as dropped).
    fn flush_due(&mut self, all: bool, yield_to: Option<&AtomicBool>) -> usize {
        let (flush_rows, flush_bytes, interval) =
            (self.flush_rows, self.flush_bytes, self.interval);
        let due = |rows: usize, bytes: usize, since: Option<Instant>| {
            rows > 0
                && (all
                    || rows >= flush_rows
                    || bytes >= flush_bytes
                    || since.is_some_and(|s| s.elapsed() >= interval))
        };
        let uris: Vec<String> = self.tables.keys().cloned().collect();
        let mut batches = 0;
        for uri in uris {
            for kind in 0..3 {
                if yield_to.is_some_and(|y| y.load(Ordering::Acquire)) {
                    return batches;
                }
                let Some(t) = self.tables.get_mut(&uri) else {
                    break;
                };
                let batch = match kind {
                    0 if due(t.calls.rows, t.calls.bytes, t.calls.since) => {
                        Batch::Calls(t.calls.take(flush_rows))
                    }
                    1 if due(t.scored.rows, t.scored.bytes, t.scored.since) => {
                        Batch::Scored(t.scored.take(flush_rows))
                    }
                    2 if due(t.labels.rows, t.labels.bytes, t.labels.since) => {
                        Batch::Labels(t.labels.take(flush_rows))
                    }
                    _ => continue,
                };
                let capture = t.capture.clone();
                self.commit_batch(capture, batch);
                batches += 1;
            }
        }
        batches
    }

    fn commit_batch(&mut self, capture: Arc<Capture>, batch: Batch) {
        match batch {
            Batch::Calls(p) => self.commit_pending(&capture, &capture.payload, p, payload_batch),
            Batch::Scored(p) => self.commit_pending(&capture, &capture.predictions, p, |items| {
                predictions_batch(&capture.endpoint, items)
            }),
            Batch::Labels(p) => self.commit_pending(&capture, &capture.labels, p, labels_batch),
        }
    }

    /// [`Writer::commit`]s `pending`'s rows, built by `build`, then drops its records in
    /// pieces ([`drop_in_turns`]).
    fn commit_pending<T>(
        &mut self,
        capture: &Capture,
        table: &TableTarget,
        pending: Pending<T>,
        build: impl FnOnce(&[T]) -> Result<RecordBatch, ArrowError>,
    ) {
        let items = pending.items;
        self.commit(capture, table, pending.rows, pending.bytes, || {
            build(&items)
        });
        drop_in_turns(items);
    }

    /// Builds and commits one batch, retrying with backoff; rows that cannot be committed are
    /// counted as dropped, by reason. Their queue bytes are released either way. A panic in
    /// `build` or the commit drops this batch only (`reason="writer_panic"`).
    fn commit(
        &mut self,
        capture: &Capture,
        table: &TableTarget,
        rows: usize,
        bytes: usize,
        build: impl FnOnce() -> Result<RecordBatch, ArrowError>,
    ) {
        self.batch_seq += 1;
        let txn = Txn {
            app_id: self.app_id.clone(),
            version: self.batch_seq,
        };
        let endpoint = &*capture.endpoint;
        let labels = [endpoint, table.kind.as_str()];
        let outcome = if self.past_deadline() {
            // No new attempt past the shutdown deadline.
            Err(DropReason::Shutdown)
        } else {
            let attempt = catch_unwind(AssertUnwindSafe(|| match build() {
                Err(e) => {
                    tracing::error!(table = %table.uri, "cannot build the inference-log rows: {e}");
                    Err(DropReason::InvalidRows)
                }
                Ok(batch) => self.append_with_retries(capture, table, &batch, &txn),
            }));
            attempt.unwrap_or_else(|panic| {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                tracing::error!(table = %table.uri, rows, "the inference-log writer panicked on a batch; its rows are dropped and logging goes on: {what}");
                // Whatever the sink held for the table may be half-updated.
                self.sink.forget(&table.uri);
                Err(DropReason::WriterPanic)
            })
        };
        self.release(bytes);
        match outcome {
            Ok(written) => {
                self.metrics
                    .log
                    .rows
                    .with_label_values(&labels)
                    .inc_by(rows as u64);
                self.metrics
                    .log
                    .bytes
                    .with_label_values(&labels)
                    .inc_by(written as u64);
                self.compact_when_due(capture, table);
            }
            Err(reason) => {
                self.dropped += rows;
                if self.stop.get().is_some() {
                    self.dropped_closing += rows;
                }
                self.metrics
                    .log
                    .dropped_rows
                    .with_label_values(&[endpoint, table.kind.as_str(), reason.as_str()])
                    .inc_by(rows as u64);
            }
        }
    }

    /// Counts a commit to `table` and asks the shard's compaction thread to compact the table
    /// every [`Compactor::every`] of them; not once closing (the deadline is for what is queued).
    /// The count starts again whether the compaction is taken, skipped or fails.
    fn compact_when_due(&mut self, capture: &Capture, table: &TableTarget) {
        let Some(compactor) = &self.compactor else {
            return;
        };
        if self.stop.get().is_some() {
            return;
        }
        let since = self.since_compaction.entry(table.uri.clone()).or_default();
        *since += 1;
        if *since < compactor.every {
            return;
        }
        *since = 0;
        let Some(opened) = self.sink.opened(&table.uri) else {
            return;
        };
        let job = Job {
            uri: table.uri.clone(),
            table: opened,
            endpoint: capture.endpoint.clone(),
            kind: table.kind,
        };
        compactor.ask(job);
    }

    fn append_with_retries(
        &mut self,
        capture: &Capture,
        table: &TableTarget,
        batch: &RecordBatch,
        txn: &Txn,
    ) -> Result<usize, DropReason> {
        let labels = [&*capture.endpoint, table.kind.as_str()];
        let size = batch.get_array_memory_size();
        let mut backoff = Duration::from_millis(100);
        for attempt in 1..=self.attempts {
            if self.past_deadline() {
                return Err(DropReason::Shutdown);
            }
            let started = Instant::now();
            // A retry first asks the table whether an earlier attempt committed the batch.
            let result = self
                .sink
                .append(&table.uri, batch, txn, attempt > 1, &self.stop);
            self.metrics
                .log
                .commit_duration
                .with_label_values(&labels)
                .observe(started.elapsed().as_secs_f64());
            match result {
                Ok(Appended::Committed(version)) => {
                    tracing::debug!(table = %table.uri, version, rows = batch.num_rows(), "inference log committed");
                    return Ok(size);
                }
                Ok(Appended::AlreadyCommitted) => {
                    tracing::info!(table = %table.uri, rows = batch.num_rows(), "inference-log batch found committed by an earlier attempt: not appended again");
                    return Ok(size);
                }
                Err(SinkError::Abandoned { .. }) => {
                    // Cut at the deadline: committed only if the table says so, quickly.
                    let landed = self.sink.has_committed(&table.uri, txn, ABANDONED_CHECK);
                    if landed == Some(true) {
                        return Ok(size);
                    }
                    tracing::warn!(table = %table.uri, rows = batch.num_rows(), "inference-log commit abandoned at the shutdown deadline");
                    return Err(DropReason::Shutdown);
                }
                Err(e) => {
                    tracing::warn!(table = %table.uri, attempt, "inference-log commit failed: {e}");
                    if attempt == self.attempts {
                        break;
                    }
                    if !self.back_off(backoff) {
                        return Err(DropReason::Shutdown);
                    }
                    self.metrics
                        .log
                        .commit_retries
                        .with_label_values(&labels)
                        .inc();
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
        tracing::error!(table = %table.uri, rows = batch.num_rows(), "inference-log rows dropped after {} attempts", self.attempts);
        Err(DropReason::CommitFailed)
    }

    /// Takes what is still queued and commits everything, within the deadline when closing.
    fn finish(&mut self) -> bool {
        while let Ok(e) = self.rx.try_recv() {
            self.take(e);
        }
        self.flush_due(true, None);
        if self.dropped_closing > 0 {
            tracing::error!(
                rows = self.dropped_closing,
                "inference-log rows not committed at shutdown (counted in modelgate_inference_log_dropped_rows_total)"
            );
        }
        self.dropped_closing == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::expr::Value;
    use crate::metrics::labels::LogTable;
    use crate::settings::capture::AutoCaptureConfig;

    #[test]
    fn a_taken_batch_leaves_room_for_one_as_large_up_to_the_flush_size() {
        let mut p = Pending::default();
        for i in 0..100 {
            p.push(i, 1, 8);
        }
        let batch = p.take(1000);
        assert_eq!(
            (batch.items.len(), batch.rows, batch.bytes),
            (100, 100, 800)
        );
        assert_eq!((p.items.len(), p.rows, p.bytes, p.since), (0, 0, 0, None));
        assert!(p.items.capacity() >= 100, "room for the next batch");
        for i in 0..100 {
            p.push(i, 1, 8);
        }
        p.take(10);
        assert!(p.items.capacity() < 100, "no more than the flush size kept");
    }

    fn label(text: &str) -> LabelRecord {
        LabelRecord {
            received_us: 0,
            request_id: Some(format!("r-{text}")),
            row_index: None,
            event_time_us: None,
            keys: vec![("k".into(), Value::Int(1))],
            label: Some(1.0),
            label_text: text.into(),
        }
    }

    fn capture(root: &std::path::Path) -> Arc<Capture> {
        let settings = InferenceLogSettings {
            location: root.display().to_string(),
            ..Default::default()
        };
        let config: AutoCaptureConfig = serde_json::from_str("{}").unwrap();
        let target = |kind: LogTable| TableTarget {
            uri: format!(
                "{}/{}_{}",
                settings.location,
                config.prefix("e"),
                kind.as_str()
            ),
            kind,
        };
        Arc::new(Capture {
            endpoint: Arc::from("e"),
            sampling_fraction: 1.0,
            threshold: u64::MAX,
            payload: target(LogTable::Payload),
            predictions: target(LogTable::Predictions),
            labels: target(LogTable::Labels),
            backpressure: Default::default(),
            shards: [0; 3],
            last_call_bytes: Default::default(),
        })
    }

    fn writer(metrics: &Arc<Metrics>, queued: &Arc<AtomicUsize>) -> Writer {
        let (_tx, rx) = crossbeam_channel::unbounded();
        Writer::new(
            &InferenceLogSettings::default(),
            rx,
            queued.clone(),
            Arc::new(AtomicUsize::new(queued.load(Ordering::Acquire))),
            metrics.clone(),
            DeltaSink::new(HashMap::new(), 0).unwrap(),
            Arc::new(OnceLock::new()),
        )
    }

    #[test]
    fn a_panic_in_one_batch_drops_that_batch_only_and_logging_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let capture = capture(dir.path());
        let metrics = Arc::new(Metrics::new());
        let queued = Arc::new(AtomicUsize::new(300));
        let mut w = writer(&metrics, &queued);
        let dropped = |reason: &str| {
            metrics
                .log
                .dropped_rows
                .with_label_values(&["e", "labels", reason])
                .get()
        };
        let written = || metrics.log.rows.with_label_values(&["e", "labels"]).get();

        let first = [label("a")];
        w.commit(&capture, &capture.labels, 1, 100, || labels_batch(&first));
        // A bug in one batch's conversion (a panic, whatever its cause).
        w.commit(
            &capture,
            &capture.labels,
            3,
            100,
            || -> Result<RecordBatch, ArrowError> { panic!("a bug in one batch") },
        );
        assert_eq!(dropped("writer_panic"), 3);
        let later = [label("b"), label("c")];
        w.commit(&capture, &capture.labels, 2, 100, || labels_batch(&later));

        assert_eq!(
            written(),
            3,
            "the batches before and after the panic are committed"
        );
        assert_eq!(w.dropped, 3);
        assert_eq!(
            queued.load(Ordering::Acquire),
            0,
            "every batch's bytes released"
        );
        let log = dir.path().join("e_labels/_delta_log");
        let commits = std::fs::read_dir(&log)
            .unwrap()
            .filter(|f| {
                let f = f.as_ref().unwrap().file_name();
                f.to_string_lossy().ends_with(".json")
            })
            .count();
        assert_eq!(commits, 3, "create, first batch and the later batch");
    }
}
