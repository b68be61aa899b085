//! Inference tables: every call, scored row and label of an endpoint with
//! `auto_capture_config` appended to Delta tables (`<prefix>_payload`, `<prefix>_predictions`,
//! `<prefix>_labels`), off the request path.
//!
//! The request path only hands records to a queue bounded in bytes (when it is full, the
//! endpoint's `backpressure` drops and counts the record, logs a smaller share, or refuses the
//! request); one writer batches them by rows, bytes or age and commits one Delta version per
//! table and batch, retrying failed commits with backoff. It runs niced, and a thread at normal
//! priority catches up on a backlog ([`catch_up`]). At shutdown the queue is flushed within a
//! deadline. See docs/inference-tables.md.

mod catch_up;
mod compact;
mod compactor;
pub mod delta;
pub mod labels;
mod packed;
mod priority;
pub mod record;
pub mod rows;
mod shard;
mod small_writes;
mod writer;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crate::metrics::labels::{DropReason, LogTable};
use crate::metrics::Metrics;
use crate::settings::capture::{AutoCaptureConfig, Backpressure};
pub use crate::settings::inference_log::InferenceLogSettings;
pub use packed::PackedColumns;
pub use record::{CallRecord, Inputs, LabelRecord, ScoredRows};

/// Where an endpoint's tables are; here because only the writer needs it.
impl InferenceLogSettings {
    /// Where the tables of a capture config live.
    fn table_root(&self, capture: &AutoCaptureConfig) -> String {
        let mut root = self.location.trim_end_matches('/').to_owned();
        for part in [&capture.catalog_name, &capture.schema_name]
            .into_iter()
            .flatten()
        {
            root.push('/');
            root.push_str(part);
        }
        root
    }
}

/// A request's id (`databricks_request_id`, the `x-request-id` response header), random, and
/// the bits that decide whether it is sampled.
#[derive(Debug, Clone)]
pub struct RequestId {
    pub text: Arc<str>,
    pub bits: u64,
}

impl RequestId {
    pub fn new() -> Self {
        let bytes = fastrand::u128(..).to_le_bytes();
        let id = uuid::Builder::from_random_bytes(bytes).into_uuid();
        let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
        let text: &str = id.hyphenated().encode_lower(&mut buf);
        Self {
            text: Arc::from(text),
            bits: u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")),
        }
    }
}

/// The longest `x-request-id` a caller may choose.
pub const MAX_CALLER_ID_BYTES: usize = 128;

impl RequestId {
    /// The caller's own id (`x-request-id`, over HTTP or gRPC) when it is 1 to 128 bytes of
    /// ASCII letters, digits and `-_.:/+=@`, else a fresh UUID: a malformed one is replaced, not
    /// refused, so a proxy's odd id does not fail the call.
    pub fn from_caller(given: Option<&[u8]>) -> Self {
        let valid = |v: &&[u8]| {
            (1..=MAX_CALLER_ID_BYTES).contains(&v.len())
                && v.iter()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:/+=@".contains(b))
        };
        match given
            .filter(valid)
            .and_then(|v| std::str::from_utf8(v).ok())
        {
            Some(text) => Self::chosen(text),
            None => Self::new(),
        }
    }

    /// A caller's own id, already checked. Its sampling bits are a hash keyed per
    /// process, so a caller cannot pick ids that are never logged.
    fn chosen(text: &str) -> Self {
        use std::hash::BuildHasher;
        static KEY: std::sync::OnceLock<std::collections::hash_map::RandomState> =
            std::sync::OnceLock::new();
        Self {
            text: Arc::from(text),
            bits: KEY.get_or_init(Default::default).hash_one(text),
        }
    }
}

impl Default for RequestId {
    fn default() -> Self {
        Self::new()
    }
}

/// One table of a capture.
pub struct TableTarget {
    pub uri: String,
    /// The table's name suffix and the `table` label of the metrics.
    pub kind: LogTable,
}

/// An endpoint's capture config, resolved once per endpoint config.
pub struct Capture {
    pub endpoint: Arc<str>,
    pub sampling_fraction: f64,
    /// Requests whose id bits are below this are logged.
    threshold: u64,
    pub payload: TableTarget,
    pub predictions: TableTarget,
    pub labels: TableTarget,
    /// What happens to this endpoint's requests when the queue fills.
    pub backpressure: Backpressure,
    /// The writer shards of the payload, predictions and labels tables ([`shard`]).
    shards: [usize; 3],
    /// The queue bytes of this endpoint's latest call that could fit the queue at all: what
    /// `backpressure: reject` expects the next one to need.
    last_call_bytes: AtomicUsize,
}

impl Capture {
    pub fn samples(&self, id: &RequestId) -> bool {
        self.sampling_fraction >= 1.0 || id.bits < self.threshold
    }

    /// Whether a sampled request whose id has `bits` is still logged `level` halvings below the
    /// sampling fraction: the same bits decide, so a request kept at a level is kept at every
    /// lower one (its payload and prediction rows go together).
    fn keeps(&self, bits: u64, level: u32) -> bool {
        level == 0 || bits < self.threshold >> level
    }
}

/// The most halvings of the sampling fraction `backpressure: sample` applies (1/512).
const MAX_SAMPLE_LEVEL: u32 = 9;

/// A call that an endpoint with `backpressure: reject` could not log (the queue is full): the
/// caller refuses the request instead of answering it, or has its rows counted as dropped with
/// [`InferenceLog::count_unlogged`].
#[must_use = "refuse the request or count its rows"]
pub struct Unlogged {
    capture: Arc<Capture>,
    rows: [(LogTable, usize); 2],
}

/// How full the queue is, for the error of a refused request.
#[derive(Debug, Clone, Copy)]
pub struct Backlog {
    pub queued_bytes: usize,
    pub queue_bytes: usize,
}

/// At most one warning per [`DropWarning::EVERY_MS`] about rows not logged, with the count
/// since the last one: a log line per dropped row would flood stderr exactly when the server is
/// busiest.
#[derive(Default)]
struct DropWarning {
    next_ms: std::sync::atomic::AtomicU64,
    pending: std::sync::atomic::AtomicU64,
}

impl DropWarning {
    const EVERY_MS: u64 = 10_000;

    /// Adds `rows`; when a warning is due at `now_ms`, the rows it reports (taken).
    fn note(&self, now_ms: u64, rows: u64) -> Option<u64> {
        self.pending.fetch_add(rows, Ordering::AcqRel);
        let next = self.next_ms.load(Ordering::Acquire);
        if now_ms < next {
            return None;
        }
        self.next_ms
            .compare_exchange(
                next,
                now_ms + Self::EVERY_MS,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .ok()?;
        Some(self.pending.swap(0, Ordering::AcqRel))
    }
}

pub(crate) enum Entry {
    /// A payload row.
    Call {
        capture: Arc<Capture>,
        call: CallRecord,
        bytes: usize,
    },
    /// The rows one call (or its shadow copy) scored.
    Scored {
        capture: Arc<Capture>,
        scored: Vec<ScoredRows>,
        bytes: usize,
    },
    Labels {
        capture: Arc<Capture>,
        labels: Vec<LabelRecord>,
        bytes: usize,
    },
    /// Sent by `close` after it set the deadline.
    Close,
}

/// Why labels were not accepted.
#[derive(Debug, thiserror::Error)]
pub enum EnqueueError {
    #[error("the inference log queue is full: retry later")]
    Full,
    #[error("the inference log is shut down")]
    Closed,
}

/// The queue in front of the writers: one byte budget over the shards' queues.
pub struct InferenceLog {
    settings: InferenceLogSettings,
    shards: Vec<shard::Shard>,
    queued_bytes: Arc<AtomicUsize>,
    metrics: Arc<Metrics>,
    closed: AtomicBool,
    /// Held (shared) by every call from its `closed` check to its send, and taken alone by
    /// `close` to set `closed`: so every record let in is in the queue before `Entry::Close`,
    /// where the writer's last drain finds it, and none is sent unseen after that.
    gate: std::sync::RwLock<()>,
    /// The shutdown deadline, set once by `close`; the writers start no attempt after it.
    stop: Arc<OnceLock<Instant>>,
    warning: DropWarning,
}

impl InferenceLog {
    /// Starts the writers: `inference_log.writers` shards, or one per core the process may run
    /// on, at most four.
    pub fn start(settings: InferenceLogSettings, metrics: Arc<Metrics>) -> std::io::Result<Self> {
        let queued_bytes = Arc::new(AtomicUsize::new(0));
        // One absolute value for the writers, their compaction and their runtimes. Not the
        // idle class for an object store's tables: compaction shares the writer's open table,
        // and with it the store's pooled connections, which are driven by the runtime that
        // opened them, the writer's and the catch-up thread's commits included.
        let priority = priority::Priority {
            nice: priority::target(settings.writer_nice),
            idle: settings.writer_sched_idle && settings.is_local(),
        };
        let stop = Arc::new(OnceLock::new());
        let count = settings.writer_shards();
        let shards = (0..count)
            .map(|i| {
                shard::Shard::start(
                    (i, count),
                    &settings,
                    priority,
                    &queued_bytes,
                    &metrics,
                    &stop,
                )
            })
            .collect::<std::io::Result<Vec<_>>>()?;
        Ok(Self {
            settings,
            shards,
            queued_bytes,
            metrics,
            closed: AtomicBool::new(false),
            gate: std::sync::RwLock::new(()),
            stop,
            warning: DropWarning::default(),
        })
    }

    /// The capture of an endpoint config, when it logs.
    pub fn capture(&self, endpoint: &str, config: &AutoCaptureConfig) -> Option<Capture> {
        if !config.enabled {
            return None;
        }
        let root = self.settings.table_root(config);
        let prefix = config.prefix(endpoint);
        let target = |kind: LogTable| TableTarget {
            uri: format!("{root}/{prefix}_{}", kind.as_str()),
            kind,
        };
        let f = config.sampling_fraction.clamp(0.0, 1.0);
        // The tables' place, not the endpoint's name, picks the shards: tables that outlive
        // their endpoint (deleted, then made again) stay with one writer.
        let first = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            (&root, prefix).hash(&mut h);
            h.finish() as usize
        };
        let n = self.shards.len();
        Some(Capture {
            endpoint: Arc::from(endpoint),
            sampling_fraction: f,
            threshold: (f * u64::MAX as f64) as u64,
            payload: target(LogTable::Payload),
            predictions: target(LogTable::Predictions),
            labels: target(LogTable::Labels),
            backpressure: config.backpressure,
            shards: [first % n, (first + 1) % n, (first + 2) % n],
            last_call_bytes: AtomicUsize::new(0),
        })
    }

    /// Takes `bytes` of queue space: the bytes queued before them, or why not.
    fn reserve(&self, bytes: usize) -> Result<usize, DropReason> {
        if self.closed.load(Ordering::Acquire) {
            return Err(DropReason::Shutdown);
        }
        let before = self.queued_bytes.fetch_add(bytes, Ordering::AcqRel);
        if before + bytes <= self.settings.queue_bytes {
            return Ok(before);
        }
        self.queued_bytes.fetch_sub(bytes, Ordering::AcqRel);
        Err(DropReason::QueueFull)
    }

    /// Counts rows not logged, per table, and warns (at most every ten seconds) while the
    /// queue turns them away.
    fn count_dropped(&self, capture: &Capture, rows: &[(LogTable, usize)], reason: DropReason) {
        for &(table, n) in rows.iter().filter(|(_, n)| *n > 0) {
            (self.metrics.log)
                .dropped(&capture.endpoint, table, reason)
                .inc_by(n as u64);
        }
        if reason != DropReason::Shutdown {
            self.warn_behind(capture, reason.as_str(), rows.iter().map(|r| r.1).sum());
        }
    }

    /// The rate-limited warning that the writer is behind.
    fn warn_behind(&self, capture: &Capture, what: &str, rows: usize) {
        let now_ms = crate::clock::now_ms();
        if let Some(rows) = self.warning.note(now_ms, rows as u64) {
            let backlog = self.backlog();
            tracing::warn!(
                endpoint = %capture.endpoint,
                latest = what,
                "the inference-log writer is behind: {rows} rows not logged (or of requests refused) in the last {} s or so (queue at {} of inference_log.queue_bytes = {}; auto_capture_config.backpressure decides what gives; modelgate_inference_log_dropped_rows_total and limit_refusals_total{{limit=\"inference_log_queue\"}} count them)",
                DropWarning::EVERY_MS / 1000,
                backlog.queued_bytes,
                backlog.queue_bytes,
            );
        }
    }

    /// How full the queue is.
    pub fn backlog(&self) -> Backlog {
        Backlog {
            queued_bytes: self.queued_bytes.load(Ordering::Relaxed),
            queue_bytes: self.settings.queue_bytes,
        }
    }

    /// Halvings of the sampling fraction `backpressure: sample` applies now: none below half
    /// the queue, then one more for every further sixteenth of it taken.
    fn sample_level(&self) -> u32 {
        let queued = self.queued_bytes.load(Ordering::Relaxed) as u128;
        let cap = self.settings.queue_bytes as u128;
        if queued * 2 < cap {
            return 0;
        }
        let past_half = queued.saturating_sub(cap / 2);
        (1 + past_half * 16 / cap).min(u128::from(MAX_SAMPLE_LEVEL)) as u32
    }

    /// The backlog, when an endpoint with `backpressure: reject` refuses new requests: once
    /// the queue is seven eighths full, or could not hold another call as large as the
    /// endpoint's latest (a request's record is made after it is scored, so refusing only
    /// when it does not fit would waste the scoring of many).
    pub fn refuses_new(&self, capture: &Capture) -> Option<Backlog> {
        if capture.backpressure != Backpressure::Reject {
            return None;
        }
        let backlog = self.backlog();
        let (queued, cap) = (backlog.queued_bytes as u128, backlog.queue_bytes as u128);
        let expected = capture.last_call_bytes.load(Ordering::Relaxed) as u128;
        let refuse = queued * 8 >= cap * 7 || queued + expected > cap;
        if refuse {
            // The rows are not known before the request is scored: its payload row.
            self.warn_behind(capture, "refused", 1);
        }
        refuse.then_some(backlog)
    }

    /// Logs a call and the rows it scored, together: both are queued or both left out. A call
    /// that `sample_bits` (its request id's) leave out under `backpressure: sample` is counted
    /// (`sampled_down`); one that does not fit the queue is counted (`queue_full`), or under
    /// `backpressure: reject` handed back for the caller to refuse.
    pub fn log_call(
        &self,
        capture: Arc<Capture>,
        sample_bits: u64,
        mut call: CallRecord,
        scored: Vec<ScoredRows>,
    ) -> Result<(), Unlogged> {
        let _open = self.open();
        let rows: usize = scored.iter().map(ScoredRows::rows).sum();
        let drops = [(LogTable::Payload, 1), (LogTable::Predictions, rows)];
        if capture.backpressure == Backpressure::Sample {
            let level = self.sample_level();
            if !capture.keeps(sample_bits, level) {
                self.count_dropped(&capture, &drops, DropReason::SampledDown);
                return Ok(());
            }
            call.sampling_fraction = capture.sampling_fraction / f64::from(1u32 << level);
        }
        call.cap_payloads(self.settings.max_payload_bytes);
        let bytes = [
            call.approx_bytes(),
            scored.iter().map(ScoredRows::approx_bytes).sum(),
        ];
        let total = bytes[0] + bytes[1];
        if total <= self.settings.queue_bytes {
            capture.last_call_bytes.store(total, Ordering::Relaxed);
        }
        match self.reserve(total) {
            Ok(before) => {
                let [payload, predictions, _] = capture.shards;
                if !scored.is_empty() {
                    let entry = Entry::Scored {
                        capture: capture.clone(),
                        scored,
                        bytes: bytes[1],
                    };
                    self.send(predictions, entry, bytes[1]);
                }
                let entry = Entry::Call {
                    capture,
                    call,
                    bytes: bytes[0],
                };
                self.send(payload, entry, bytes[0]);
                self.wake_on_crossing(before, total);
                Ok(())
            }
            // A call larger than the whole queue could never be logged: refusing it would ask
            // for a retry that cannot succeed, so it is answered and its rows counted.
            Err(DropReason::QueueFull)
                if capture.backpressure == Backpressure::Reject
                    && total <= self.settings.queue_bytes =>
            {
                self.warn_behind(&capture, "refused", drops.iter().map(|d| d.1).sum());
                Err(Unlogged {
                    capture,
                    rows: drops,
                })
            }
            Err(reason) => {
                self.count_dropped(&capture, &drops, reason);
                Ok(())
            }
        }
    }

    /// Counts the rows of a call that was not refused although it could not be logged.
    pub fn count_unlogged(&self, unlogged: Unlogged) {
        self.count_dropped(&unlogged.capture, &unlogged.rows, DropReason::QueueFull);
    }

    /// Logs the rows a shadow served entity scored for a copy of a request (`sample_bits`: its
    /// id's, as for [`InferenceLog::log_call`]).
    pub fn log_shadow(&self, capture: Arc<Capture>, sample_bits: u64, scored: ScoredRows) {
        let _open = self.open();
        let drops = [(LogTable::Predictions, scored.rows())];
        if capture.backpressure == Backpressure::Sample
            && !capture.keeps(sample_bits, self.sample_level())
        {
            self.count_dropped(&capture, &drops, DropReason::SampledDown);
            return;
        }
        let bytes = scored.approx_bytes();
        match self.reserve(bytes) {
            Ok(before) => {
                let shard = capture.shards[1];
                let entry = Entry::Scored {
                    capture,
                    scored: vec![scored],
                    bytes,
                };
                self.send(shard, entry, bytes);
                self.wake_on_crossing(before, bytes);
            }
            Err(reason) => self.count_dropped(&capture, &drops, reason),
        }
    }

    /// Queues labels; unlike calls, a full queue is an error the caller retries on.
    pub fn log_labels(
        &self,
        capture: Arc<Capture>,
        labels: Vec<LabelRecord>,
    ) -> Result<(), EnqueueError> {
        let _open = self.open();
        if self.closed.load(Ordering::Acquire) {
            return Err(EnqueueError::Closed);
        }
        let bytes = labels.iter().map(LabelRecord::approx_bytes).sum();
        let before = self.queued_bytes.fetch_add(bytes, Ordering::AcqRel);
        if before + bytes > self.settings.queue_bytes {
            self.queued_bytes.fetch_sub(bytes, Ordering::AcqRel);
            return Err(EnqueueError::Full);
        }
        let shard = capture.shards[2];
        let entry = Entry::Labels {
            capture,
            labels,
            bytes,
        };
        self.send(shard, entry, bytes);
        self.wake_on_crossing(before, bytes);
        Ok(())
    }

    /// The shared side of `gate`, for one call from its `closed` check to its send.
    fn open(&self) -> std::sync::RwLockReadGuard<'_, ()> {
        self.gate.read().unwrap_or_else(|e| e.into_inner())
    }

    fn send(&self, shard: usize, entry: Entry, bytes: usize) {
        self.shards[shard].send(entry, bytes);
    }

    /// After `bytes` were queued on top of `before`: the writers are woken when the queue
    /// crosses a batch's bytes (`flush_bytes`), so a burst commits without waiting for their
    /// tick; once per crossing, not per record.
    fn wake_on_crossing(&self, before: usize, bytes: usize) {
        let at = self.settings.flush_bytes;
        if before < at && before + bytes >= at {
            self.shards.iter().for_each(shard::Shard::wake_writer);
        }
    }

    /// Labels per call and key columns per label the labels API takes.
    pub fn label_bounds(&self) -> (usize, usize) {
        (
            self.settings.max_labels_per_request,
            self.settings.max_keys_per_label,
        )
    }

    /// Bytes and records waiting for the writer (the queue-depth gauges).
    pub fn depth(&self) -> (usize, usize) {
        let records = self.shards.iter().map(shard::Shard::queued_records).sum();
        (self.queued_bytes.load(Ordering::Relaxed), records)
    }

    /// Stops taking records and waits until everything queued is committed, or `deadline`
    /// passes: no commit attempt starts after it, one in flight is abandoned (unless it is
    /// already writing its commit: that one may finish within a second), and every row left is
    /// counted as dropped (`reason="shutdown"`). True when it all made it.
    pub fn close(&self, deadline: Duration) -> bool {
        let already = {
            let _shut = self.gate.write().unwrap_or_else(|e| e.into_inner());
            self.closed.swap(true, Ordering::AcqRel)
        };
        if already {
            return true;
        }
        // Set before the writer hears of it: an attempt in flight (or backing off) sees it.
        let _ = self.stop.set(Instant::now() + deadline);
        for shard in &self.shards {
            shard.send(Entry::Close, 0);
            shard.wake_writer();
            shard.wake_catch_up();
        }
        let until = Instant::now() + deadline + Duration::from_secs(2);
        // Every shard is waited for, even after one said no.
        let answers: Vec<bool> = self.shards.iter().map(|s| s.wait_done(until)).collect();
        answers.into_iter().all(|committed| committed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The priorities of the threads named `name`, once there is one (by `deadline`).
    #[cfg(target_os = "linux")]
    fn threads_named(name: &str, deadline: Instant) -> Vec<priority::Priority> {
        loop {
            let found = priority::tests::priorities_of_threads(name);
            if !found.is_empty() {
                return found;
            }
            assert!(Instant::now() < deadline, "no {name} thread");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// A log writing under `dir`, with `settings` otherwise.
    fn start_in(
        dir: &tempfile::TempDir,
        settings: InferenceLogSettings,
        metrics: &Arc<Metrics>,
    ) -> InferenceLog {
        let settings = InferenceLogSettings {
            location: dir.path().display().to_string(),
            ..settings
        };
        InferenceLog::start(settings, metrics.clone()).unwrap()
    }

    /// Callers logging while the log closes: every call is committed or counted as dropped at
    /// shutdown, none lost between the two.
    #[test]
    fn every_call_around_close_is_committed_or_counted() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = Arc::new(Metrics::new());
        let settings = InferenceLogSettings {
            flush_interval_ms: 10,
            ..Default::default()
        };
        let log = start_in(&dir, settings, &metrics);
        let config: AutoCaptureConfig = serde_json::from_str("{}").unwrap();
        let capture = Arc::new(log.capture("e", &config).unwrap());
        let sent = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    while !log.closed.load(Ordering::Acquire) {
                        let call = CallRecord::for_tests();
                        let _ = log.log_call(capture.clone(), 0, call, Vec::new());
                        sent.fetch_add(1, Ordering::AcqRel);
                    }
                });
            }
            while sent.load(Ordering::Acquire) < 2000 {
                std::thread::yield_now();
            }
            assert!(log.close(Duration::from_secs(30)));
        });
        let payload = |m: &prometheus::IntCounterVec, l: &[&str]| m.with_label_values(l).get();
        let committed = payload(&metrics.log.rows, &["e", "payload"]);
        let dropped = payload(
            &metrics.log.dropped_rows,
            &["e", "payload", DropReason::Shutdown.as_str()],
        );
        assert_eq!(
            committed + dropped,
            sent.load(Ordering::Acquire) as u64,
            "committed {committed}, dropped {dropped}"
        );
        assert_eq!(log.depth().0, 0, "every byte released");
    }

    /// A commit still writing when the shutdown deadline falls is waited for, briefly: its rows
    /// are in the table and counted as committed, not as dropped.
    #[test]
    fn a_commit_writing_at_the_deadline_is_counted_as_committed() {
        use crate::testing;
        use small_writes::delayed_puts;
        const LIMIT: Duration = Duration::from_secs(20);
        let dir = tempfile::tempdir().unwrap();
        let metrics = Arc::new(Metrics::new());
        // Batches of exactly ten calls, by a writer that a busy machine does not starve.
        let settings = InferenceLogSettings {
            flush_rows: 10,
            flush_interval_ms: 600_000,
            writer_sched_idle: false,
            ..Default::default()
        };
        let log = start_in(&dir, settings, &metrics);
        let config: AutoCaptureConfig = serde_json::from_str("{}").unwrap();
        let capture = Arc::new(log.capture("e", &config).unwrap());
        let committed = || metrics.log.rows.with_label_values(&["e", "payload"]).get();
        let ten_calls = || {
            for _ in 0..10 {
                let call = CallRecord::for_tests();
                assert!(log.log_call(capture.clone(), 0, call, Vec::new()).is_ok());
            }
        };
        let eventually =
            |what: &str, done: &dyn Fn() -> bool| testing::eventually(what, LIMIT, done);
        // The table made by a first commit, then its log entries slowed to 600 ms.
        ten_calls();
        eventually("the first calls were never committed", &|| {
            committed() == 10
        });
        let table = std::path::PathBuf::from(&capture.payload.uri);
        let folder = dir.path().file_name().unwrap().to_string_lossy();
        let inside = table.strip_prefix(dir.path()).unwrap().display();
        let marker = format!("{folder}/{inside}/_delta_log/");
        delayed_puts::delay(&marker, Duration::from_millis(600));
        ten_calls();
        // The deadline falls 100 ms after their commit starts writing its log entry.
        eventually("no commit", &|| delayed_puts::started(&marker) == 1);
        let all_committed = log.close(Duration::from_millis(100));
        let dropped = metrics
            .log
            .dropped_rows
            .with_label_values(&["e", "payload", DropReason::Shutdown.as_str()])
            .get();
        // Every call lands in the table either way (the entry, once sent, is written): what
        // was told of them must say so.
        let uri = &capture.payload.uri;
        eventually("the calls never reached the table", &|| {
            compactor::tests::live_files_and_rows(uri).1 == 20
        });
        assert_eq!((all_committed, committed(), dropped), (true, 20, 0));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_writers_run_nicer_than_the_serving_threads_and_catch_up_beside_them() {
        use priority::tests::priorities_of_threads;
        use priority::Priority;
        for idle in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let settings = InferenceLogSettings {
                writer_nice: 15,
                writer_sched_idle: idle,
                writers: 2,
                ..Default::default()
            };
            let want = Priority {
                nice: priority::target(15),
                idle,
            };
            let catch_up_io = Priority {
                nice: priority::target(0),
                idle: false,
            };
            let log = start_in(&dir, settings, &Arc::new(Metrics::new()));
            let deadline = Instant::now() + Duration::from_secs(10);
            // Other tests' logs run threads of the same names (at their own priorities).
            // The sink's niced runtime ("inference-log-io": the kernel keeps 15 characters)
            // commits for the niced thread: never in the idle class.
            let niced_io = want.without_idle();
            for (name, want) in [
                ("log-writer-0", want),
                ("log-writer-1", want),
                ("log-compact-0", want),
                ("log-compact-1", want),
                ("log-compact-io", want),
                ("inference-log-i", niced_io),
            ] {
                while !priorities_of_threads(name).contains(&want) {
                    assert!(
                        Instant::now() < deadline,
                        "no {name} thread at {want:?}: {:?}",
                        priorities_of_threads(name)
                    );
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
            // The runtime the catch-up thread commits on: at the serving priority, so that the
            // serving threads do not starve it, and never in the idle class (every log's).
            let found = threads_named("log-catch-up-io", deadline);
            assert!(found.iter().all(|p| *p == catch_up_io), "{found:?}");
            let helpers = priorities_of_threads("inference-log-i");
            assert!(helpers.iter().all(|p| !p.idle), "{helpers:?}");
            // Each shard starts its catch-up thread beside its writer: waited for, not assumed.
            let serving = Priority {
                nice: priority::target(0),
                idle: false,
            };
            for name in ["log-catch-up-0", "log-catch-up-1"] {
                let found = threads_named(name, deadline);
                assert!(found.iter().all(|p| *p == serving), "{name}: {found:?}");
            }
            assert!(log.close(Duration::from_secs(5)));
        }
    }

    #[test]
    fn drops_are_warned_about_at_most_every_ten_seconds_with_their_count() {
        let w = DropWarning::default();
        assert_eq!(w.note(1_000_000, 3), Some(3), "the first drop warns");
        assert_eq!(w.note(1_000_001, 4), None);
        assert_eq!(w.note(1_009_999, 5), None);
        assert_eq!(
            w.note(1_010_000, 1),
            Some(10),
            "every row since the last warning"
        );
        assert_eq!(w.note(1_010_001, 1), None);
    }

    #[test]
    fn sampling_halves_for_every_sixteenth_past_half_the_queue() {
        let dir = tempfile::tempdir().unwrap();
        let settings = InferenceLogSettings {
            queue_bytes: 1600,
            ..Default::default()
        };
        let log = start_in(&dir, settings, &Arc::new(Metrics::new()));
        let level_at = |queued: usize| {
            log.queued_bytes.store(queued, Ordering::Release);
            log.sample_level()
        };
        let levels: Vec<u32> = [0, 799, 800, 899, 900, 1000, 1599, 1600]
            .into_iter()
            .map(level_at)
            .collect();
        assert_eq!(levels, [0, 0, 1, 1, 2, 3, 8, 9]);
        log.queued_bytes.store(0, Ordering::Release);

        let config: AutoCaptureConfig =
            serde_json::from_str(r#"{"sampling_fraction": 0.5, "backpressure": "sample"}"#)
                .unwrap();
        let capture = log.capture("e", &config).unwrap();
        // Half the requests are sampled (bits below 2^63); two halvings below, an eighth.
        assert!(capture.keeps((1 << 63) - 1, 0));
        assert!(capture.keeps((1 << 61) - 1, 2) && !capture.keeps(1 << 61, 2));
        assert!(log.close(Duration::from_secs(5)));
    }

    #[test]
    fn reject_refuses_from_seven_eighths_or_when_a_call_like_the_last_would_not_fit() {
        let dir = tempfile::tempdir().unwrap();
        let settings = InferenceLogSettings {
            queue_bytes: 8000,
            ..Default::default()
        };
        let log = start_in(&dir, settings, &Arc::new(Metrics::new()));
        let config = |policy: &str| -> AutoCaptureConfig {
            serde_json::from_str(&format!(r#"{{"backpressure": "{policy}"}}"#)).unwrap()
        };
        let reject = log.capture("e", &config("reject")).unwrap();
        let drop = log.capture("d", &config("drop")).unwrap();
        let refuses = |queued: usize, last: usize| {
            log.queued_bytes.store(queued, Ordering::Release);
            reject.last_call_bytes.store(last, Ordering::Release);
            log.refuses_new(&reject).is_some()
        };
        assert!(!refuses(6999, 0) && refuses(7000, 0));
        assert!(!refuses(5000, 3000) && refuses(5000, 3001));
        log.queued_bytes.store(8000, Ordering::Release);
        assert!(log.refuses_new(&drop).is_none(), "only reject refuses");
        log.queued_bytes.store(0, Ordering::Release);
        assert!(log.close(Duration::from_secs(5)));
    }

    #[test]
    fn locations_are_folders_file_or_s3_urls() {
        let problem = |location: &str| {
            InferenceLogSettings {
                location: location.into(),
                ..Default::default()
            }
            .problem()
            .map(|(key, message)| format!("{key}: {message}"))
        };
        for ok in [
            "tables",
            "/var/log/t",
            "file:///var/t",
            "s3://bucket/p",
            "s3a://b",
        ] {
            assert_eq!(problem(ok), None, "{ok}");
        }
        assert!(problem("gs://b/t")
            .unwrap()
            .contains("'gs://' is not supported"));
        assert!(problem("s3://").unwrap().contains("names no bucket"));
        assert!(problem(" ").unwrap().starts_with("location:"));
    }
}
