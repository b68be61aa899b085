//! A shard's writer (driven by its niced thread or its catch-up thread, [`super::catch_up`]):
//! gathers queued records per table and commits a table's batch when it
//! is big enough or old enough, with retries; at close, commits everything within the deadline.
//!
//! The niced thread gives way to the catch-up thread at its next pause point, even in the middle
//! of converting or encoding a batch: nothing is written then, and the batch's records go back
//! to the front of what is pending.
//!
//! A batch is the unit of failure: a panic while converting or committing one is caught, its
//! rows are counted as dropped (`reason="writer_panic"`) and the writer goes on with the next.
//! Each batch carries a number in the writer's Delta application transaction, so a retry never
//! appends a batch that an earlier attempt committed. Once `close` sets the deadline, no attempt
//! starts after it, one in flight is abandoned at it (unless it is already writing its commit:
//! that one may finish within a second), and every row left is counted (`reason="shutdown"`).

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, TryRecvError};
use deltalake::arrow::error::ArrowError;
use deltalake::arrow::record_batch::RecordBatch;

use super::compactor::{Compactor, Job};
use super::delta::{Appended, DeltaSink, Io, SinkError, Txn, PAST_DEADLINE};
use super::priority::{
    asked_to_give_way, drop_in_turns, giving_way_to, turn_begins, GaveWay, PauseEvery,
};
use super::record::{gave_way, labels_batch, payload_batch, predictions_batch};
use super::{
    CallRecord, Capture, Entry, InferenceLogSettings, LabelRecord, ScoredRows, TableTarget,
};
use crate::metrics::labels::DropReason;
use crate::metrics::Metrics;

/// The least time the writer asks a table whether an abandoned attempt committed, even when
/// the attempt spent all of [`PAST_DEADLINE`] finishing its commit (a table is read afresh).
const LEAST_CHECK: Duration = Duration::from_millis(500);

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

    /// Puts a batch that was not committed back in front of what arrived since it was taken:
    /// the table's rows keep their order, and the batch its age.
    fn put_back(&mut self, mut batch: Self) {
        batch.items.append(&mut self.items);
        batch.rows += self.rows;
        batch.bytes += self.bytes;
        batch.since = match (batch.since, self.since) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        *self = batch;
    }
}

/// Which thread takes a look at the queue, and so how.
#[derive(Clone, Copy)]
pub(super) enum Turn<'a> {
    /// The niced thread: commits the batches that are due, on the niced runtime, and gives way
    /// at its next pause point once `give_way_to` is set.
    Niced { give_way_to: &'a Arc<AtomicBool> },
    /// The catch-up thread: commits every pending batch, its I/O on its own runtime.
    CatchUp,
}

/// Why an attempt's batch is not in the table.
enum Uncommitted {
    Dropped(DropReason),
    GaveWay,
}

impl From<DropReason> for Uncommitted {
    fn from(reason: DropReason) -> Self {
        Self::Dropped(reason)
    }
}

/// Work left for after the writer's lock is released: a committed batch's records, freed in
/// turns ([`drop_in_turns`]) where they hold no other thread up.
pub(super) type Leftover = Box<dyn FnOnce() + Send>;

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
    /// The records of batches committed since the last [`Writer::leftovers`].
    leftovers: Vec<Leftover>,
    /// Where the current look's Delta I/O runs.
    io: Io,
    /// Set when the niced thread took `close` off the queue: the shutdown flush is the
    /// catch-up thread's.
    close_heard: bool,
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
            leftovers: Vec::new(),
            io: Io::Niced,
            close_heard: false,
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

    /// One look at the queue, by `turn`'s thread: takes what is queued and commits the batches
    /// that are due (every pending one for the catch-up thread). The niced thread stops, at its
    /// next pause point, once asked to give way. Senders never wake the writer (it does not
    /// block on the channel); its threads call this every tick, or sooner when
    /// [`super::InferenceLog`] unparks them. `Finished` once `close` was heard and everything
    /// was committed or counted.
    pub(super) fn step(&mut self, turn: Turn<'_>) -> Step {
        // The thread has just been given the core: its turn starts now, not at its last yield.
        turn_begins();
        if let Some(all_committed) = self.finished {
            return Step::Finished(all_committed);
        }
        let looked = match turn {
            Turn::Niced { give_way_to } => {
                self.io = Io::Niced;
                giving_way_to(give_way_to, || self.look(false))
            }
            Turn::CatchUp => {
                self.io = Io::CatchUp;
                self.look(true)
            }
        };
        match looked {
            Some(batches) => Step::Committed(batches),
            // `close` sets the deadline before it queues its entry, and then wakes the
            // catch-up thread: the flush runs there, at the serving threads' priority.
            None if matches!(turn, Turn::Niced { .. }) && self.stop.get().is_some() => {
                self.close_heard = true;
                Step::Committed(0)
            }
            None => {
                // The shutdown flush gives way to nothing.
                let all_committed = self.finish();
                self.finished = Some(all_committed);
                Step::Finished(all_committed)
            }
        }
    }

    /// The records of the batches committed since the last call, to be freed once the writer
    /// is released.
    pub(super) fn leftovers(&mut self) -> Vec<Leftover> {
        std::mem::take(&mut self.leftovers)
    }

    /// Takes what is queued and commits what is due (everything when `all`): how many batches;
    /// `None` once `close` was heard.
    fn look(&mut self, all: bool) -> Option<usize> {
        if self.close_heard {
            return None;
        }
        // A backlog is thousands of entries: the drain pauses as the batch builds do, and a
        // niced thread asked to give way stops taking (what it took stays pending).
        let mut pace = PauseEvery::new(ENTRIES_BETWEEN_PAUSES);
        loop {
            match self.rx.try_recv() {
                Ok(Entry::Close) | Err(TryRecvError::Disconnected) => return None,
                Ok(e) => self.take(e),
                Err(TryRecvError::Empty) => break,
            }
            if pace.step().is_err() {
                return Some(0);
            }
        }
        Some(self.flush_due(all))
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

    /// Commits every batch that is due (all of them when `all`), one at a time, until the
    /// thread is asked to give way (the rest, and a batch it was building, stay pending for the
    /// next look); how many it committed (or counted as dropped).
    fn flush_due(&mut self, all: bool) -> usize {
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
                if asked_to_give_way() {
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
                match self.commit_batch(&capture, batch) {
                    None => batches += 1,
                    Some(back) => {
                        self.put_back(&capture, back);
                        return batches;
                    }
                }
            }
        }
        batches
    }

    /// Commits `batch`; gives it back when the writer gave way.
    fn commit_batch(&mut self, capture: &Arc<Capture>, batch: Batch) -> Option<Batch> {
        match batch {
            Batch::Calls(p) => self
                .commit_pending(capture, &capture.payload, p, payload_batch)
                .map(Batch::Calls),
            Batch::Scored(p) => self
                .commit_pending(capture, &capture.predictions, p, |items| {
                    predictions_batch(&capture.endpoint, items)
                })
                .map(Batch::Scored),
            Batch::Labels(p) => self
                .commit_pending(capture, &capture.labels, p, labels_batch)
                .map(Batch::Labels),
        }
    }

    /// Puts a batch the writer gave way on back in front of its table's pending records.
    fn put_back(&mut self, capture: &Arc<Capture>, batch: Batch) {
        let t = self.tables_of(capture);
        match batch {
            Batch::Calls(p) => t.calls.put_back(p),
            Batch::Scored(p) => t.scored.put_back(p),
            Batch::Labels(p) => t.labels.put_back(p),
        }
    }

    /// [`Writer::commit`]s `pending`'s rows, built by `build`, and leaves its records to be
    /// freed in pieces ([`drop_in_turns`]) once the writer is released; gives `pending` back
    /// when the writer gave way.
    fn commit_pending<T: Send + 'static>(
        &mut self,
        capture: &Capture,
        table: &TableTarget,
        pending: Pending<T>,
        build: impl FnOnce(&[T]) -> Result<RecordBatch, ArrowError>,
    ) -> Option<Pending<T>> {
        let (rows, bytes) = (pending.rows, pending.bytes);
        let items = &pending.items;
        match self.commit(capture, table, rows, bytes, || build(items)) {
            Err(GaveWay) => Some(pending),
            Ok(()) => {
                let items = pending.items;
                self.leftovers.push(Box::new(move || drop_in_turns(items)));
                None
            }
        }
    }

    /// Builds and commits one batch, retrying with backoff; rows that cannot be committed are
    /// counted as dropped, by reason. Their queue bytes are released either way, unless the
    /// writer gave way (the batch is still pending then). A panic in `build` or the commit
    /// drops this batch only (`reason="writer_panic"`).
    fn commit(
        &mut self,
        capture: &Capture,
        table: &TableTarget,
        rows: usize,
        bytes: usize,
        build: impl FnOnce() -> Result<RecordBatch, ArrowError>,
    ) -> Result<(), GaveWay> {
        self.batch_seq += 1;
        let txn = Txn {
            app_id: self.app_id.clone(),
            version: self.batch_seq,
        };
        let endpoint = &*capture.endpoint;
        let labels = [endpoint, table.kind.as_str()];
        let outcome = if self.past_deadline() {
            // No new attempt past the shutdown deadline.
            Err(Uncommitted::Dropped(DropReason::Shutdown))
        } else {
            let attempt = catch_unwind(AssertUnwindSafe(|| match build() {
                Err(e) if gave_way(&e) => Err(Uncommitted::GaveWay),
                Err(e) => {
                    tracing::error!(table = %table.uri, "cannot build the inference-log rows: {e}");
                    Err(DropReason::InvalidRows.into())
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
                Err(DropReason::WriterPanic.into())
            })
        };
        let outcome = match outcome {
            Ok(written) => Ok(written),
            Err(Uncommitted::Dropped(reason)) => Err(reason),
            Err(Uncommitted::GaveWay) => return Err(GaveWay),
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
        Ok(())
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
    ) -> Result<usize, Uncommitted> {
        let labels = [&*capture.endpoint, table.kind.as_str()];
        let size = batch.get_array_memory_size();
        let mut backoff = Duration::from_millis(100);
        for attempt in 1..=self.attempts {
            if self.past_deadline() {
                return Err(DropReason::Shutdown.into());
            }
            let started = Instant::now();
            // A retry first asks the table whether an earlier attempt committed the batch.
            let result = self
                .sink
                .append(&table.uri, batch, txn, attempt > 1, self.io, &self.stop);
            if !matches!(result, Ok(Appended::GaveWay)) {
                self.metrics
                    .log
                    .commit_duration
                    .with_label_values(&labels)
                    .observe(started.elapsed().as_secs_f64());
            }
            match result {
                Ok(Appended::Committed(version)) => {
                    tracing::debug!(table = %table.uri, version, rows = batch.num_rows(), "inference log committed");
                    return Ok(size);
                }
                Ok(Appended::AlreadyCommitted) => {
                    tracing::info!(table = %table.uri, rows = batch.num_rows(), "inference-log batch found committed by an earlier attempt: not appended again");
                    return Ok(size);
                }
                Ok(Appended::GaveWay) => return Err(Uncommitted::GaveWay),
                Err(SinkError::Abandoned { .. }) => {
                    if self.landed_anyway(&table.uri, txn) {
                        return Ok(size);
                    }
                    tracing::warn!(table = %table.uri, rows = batch.num_rows(), "inference-log commit abandoned at the shutdown deadline");
                    return Err(DropReason::Shutdown.into());
                }
                Err(e) => {
                    tracing::warn!(table = %table.uri, attempt, "inference-log commit failed: {e}");
                    if attempt == self.attempts {
                        break;
                    }
                    if !self.back_off(backoff) {
                        // A commit waited for past the deadline may have failed after its
                        // log entry landed.
                        if self.landed_anyway(&table.uri, txn) {
                            return Ok(size);
                        }
                        return Err(DropReason::Shutdown.into());
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
        Err(DropReason::CommitFailed.into())
    }

    /// Whether an attempt cut by the shutdown deadline committed after all: the table is asked
    /// in what is left of [`PAST_DEADLINE`] after the deadline, or [`LEAST_CHECK`] if longer.
    fn landed_anyway(&mut self, uri: &str, txn: &Txn) -> bool {
        let limit = self.stop.get().map_or(LEAST_CHECK, |deadline| {
            (*deadline + PAST_DEADLINE)
                .saturating_duration_since(Instant::now())
                .max(LEAST_CHECK)
        });
        self.sink.has_committed(uri, txn, limit) == Some(true)
    }

    /// Takes what is still queued and commits everything, within the deadline when closing.
    fn finish(&mut self) -> bool {
        while let Ok(e) = self.rx.try_recv() {
            self.take(e);
        }
        self.flush_due(true);
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
pub(super) mod tests {
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

    #[test]
    fn a_batch_put_back_goes_in_front_of_what_arrived_since_with_its_age() {
        let mut p = Pending::default();
        p.push(1, 1, 8);
        p.push(2, 2, 8);
        let mut taken = p.take(10);
        p.push(3, 1, 8);
        // The taken batch is the older (times passed in, not waited for).
        let older = Instant::now();
        taken.since = Some(older);
        p.since = Some(older + Duration::from_millis(5));
        p.put_back(taken);
        assert_eq!((p.items, p.rows, p.bytes), (vec![1, 2, 3], 4, 24));
        assert_eq!(p.since, Some(older), "as old as its oldest record");
        let mut empty = Pending::default();
        empty.put_back(Pending::<u8>::default());
        assert_eq!((empty.rows, empty.since), (0, None));
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

    /// The capture of endpoint `e`, its tables under `root`.
    pub(in crate::inference_log) fn capture(root: &std::path::Path) -> Arc<Capture> {
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

    /// A writer with the default settings for endpoint `e`'s tables in a temp dir, its queue,
    /// and the log's and the shard's byte counts, both at `bytes` (what the test queues).
    pub(in crate::inference_log) struct Fixture {
        pub dir: tempfile::TempDir,
        pub capture: Arc<Capture>,
        pub metrics: Arc<Metrics>,
        pub queued: Arc<AtomicUsize>,
        pub shard: Arc<AtomicUsize>,
        pub tx: crossbeam_channel::Sender<Entry>,
        pub writer: Writer,
    }

    pub(in crate::inference_log) fn fixture(bytes: usize) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let capture = capture(dir.path());
        let metrics = Arc::new(Metrics::new());
        let queued = Arc::new(AtomicUsize::new(bytes));
        let shard = Arc::new(AtomicUsize::new(bytes));
        let (tx, rx) = crossbeam_channel::unbounded();
        let writer = Writer::new(
            &InferenceLogSettings::default(),
            rx,
            queued.clone(),
            shard.clone(),
            metrics.clone(),
            DeltaSink::new(
                HashMap::new(),
                crate::inference_log::priority::Priority::SERVING,
            )
            .unwrap(),
            Arc::new(OnceLock::new()),
        );
        Fixture {
            dir,
            capture,
            metrics,
            queued,
            shard,
            tx,
            writer,
        }
    }

    #[test]
    fn a_panic_in_one_batch_drops_that_batch_only_and_logging_goes_on() {
        let Fixture {
            dir,
            capture,
            metrics,
            queued,
            writer: mut w,
            ..
        } = fixture(300);
        let dropped = |reason: &str| {
            metrics
                .log
                .dropped_rows
                .with_label_values(&["e", "labels", reason])
                .get()
        };
        let written = || metrics.log.rows.with_label_values(&["e", "labels"]).get();

        let first = [label("a")];
        let committed = w.commit(&capture, &capture.labels, 1, 100, || labels_batch(&first));
        assert_eq!(committed, Ok(()));
        // A bug in one batch's conversion (a panic, whatever its cause).
        let panicked = w.commit(
            &capture,
            &capture.labels,
            3,
            100,
            || -> Result<RecordBatch, ArrowError> { panic!("a bug in one batch") },
        );
        assert_eq!(panicked, Ok(()), "settled: its rows counted as dropped");
        assert_eq!(dropped("writer_panic"), 3);
        let later = [label("b"), label("c")];
        let committed = w.commit(&capture, &capture.labels, 2, 100, || labels_batch(&later));
        assert_eq!(committed, Ok(()));

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

    /// The niced thread asked to give way in the middle of converting a batch: nothing is
    /// written or counted, its bytes are still held, and the batch goes back in front of the
    /// records that come after it, to be committed by the next look (once, in order).
    #[test]
    fn a_batch_given_up_mid_build_goes_back_in_front_and_is_committed_once() {
        use crate::inference_log::compact::tests::live_files;
        use deltalake::arrow::array::AsArray;
        use deltalake::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

        let Fixture {
            dir: _dir,
            capture,
            metrics,
            queued,
            tx,
            writer: mut w,
            ..
        } = fixture(2000);
        let labels = |range: std::ops::Range<usize>| Entry::Labels {
            capture: capture.clone(),
            labels: range.map(|i| label(&format!("{i:04}"))).collect(),
            bytes: 1000,
        };
        w.take(labels(0..200));
        let uri = capture.payload.uri.clone();

        let asked = Arc::new(AtomicBool::new(true));
        let pending = w.tables.get_mut(&uri).unwrap().labels.take(10_000);
        let back = giving_way_to(&asked, || {
            w.commit_pending(&capture, &capture.labels, pending, labels_batch)
        });
        let back = back.expect("given back: the build stops at its first pause point");
        assert_eq!((back.items.len(), back.rows, back.bytes), (200, 200, 1000));
        let count = |m: &prometheus::IntCounterVec, l: &[&str]| m.with_label_values(l).get();
        assert_eq!(count(&metrics.log.rows, &["e", "labels"]), 0);
        let dropped = ["invalid_rows", "writer_panic", "commit_failed", "shutdown"]
            .map(|r| count(&metrics.log.dropped_rows, &["e", "labels", r]));
        assert_eq!(dropped, [0; 4], "nothing counted as dropped");
        assert_eq!(queued.load(Ordering::Acquire), 2000, "its bytes still held");
        assert!(
            !std::path::Path::new(&capture.labels.uri).exists(),
            "nothing written"
        );

        // As `flush_due` does at once; what arrives later is taken behind it.
        w.put_back(&capture, Batch::Labels(back));
        tx.send(labels(200..250)).unwrap();
        assert!(matches!(w.step(Turn::CatchUp), Step::Committed(1)));
        assert_eq!(count(&metrics.log.rows, &["e", "labels"]), 250);
        assert_eq!(queued.load(Ordering::Acquire), 0, "every byte released");

        // Read back: the 200 given up, then the 50 that came after them, each once.
        let mut read = Vec::new();
        for (file, _) in live_files(&capture.labels.uri) {
            let bytes = std::fs::read(std::path::Path::new(&capture.labels.uri).join(file));
            let reader =
                ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes.unwrap()))
                    .unwrap()
                    .build()
                    .unwrap();
            for batch in reader {
                let batch = batch.unwrap();
                let column = batch
                    .column_by_name("label_text")
                    .unwrap()
                    .as_string::<i32>();
                read.extend(column.iter().map(|t| t.unwrap().to_owned()));
            }
        }
        let want: Vec<String> = (0..250).map(|i| format!("{i:04}")).collect();
        assert_eq!(read, want);
    }

    /// The niced thread that takes `close` off the queue leaves the shutdown flush to the
    /// catch-up thread (at the serving threads' priority), which commits everything.
    #[test]
    fn a_close_the_niced_thread_takes_is_flushed_by_the_catch_up_thread() {
        let Fixture {
            dir: _dir,
            capture,
            metrics,
            queued,
            tx,
            writer: mut w,
            ..
        } = fixture(1000);
        let labels = (0..10).map(|i| label(&i.to_string())).collect();
        tx.send(Entry::Labels {
            capture: capture.clone(),
            labels,
            bytes: 1000,
        })
        .unwrap();
        // As `close` does: the deadline first, then the entry.
        let _ = w.stop.set(Instant::now() + Duration::from_secs(30));
        tx.send(Entry::Close).unwrap();
        let committed = || metrics.log.rows.with_label_values(&["e", "labels"]).get();

        let not_asked = Arc::new(AtomicBool::new(false));
        let niced = w.step(Turn::Niced {
            give_way_to: &not_asked,
        });
        assert!(matches!(niced, Step::Committed(0)));
        assert_eq!(committed(), 0, "not flushed by the niced thread");
        assert!(matches!(w.step(Turn::CatchUp), Step::Finished(true)));
        assert_eq!(committed(), 10);
        assert_eq!(queued.load(Ordering::Acquire), 0);
    }
}
