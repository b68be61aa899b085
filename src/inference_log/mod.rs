//! Inference tables: every call, scored row and label of an endpoint with
//! `auto_capture_config` appended to Delta tables (`<prefix>_payload`, `<prefix>_predictions`,
//! `<prefix>_labels`), off the request path.
//!
//! The request path only hands records to a queue bounded in bytes (a full queue drops the
//! record and counts it); one writer thread batches them by rows, bytes or age and commits one
//! Delta version per table and batch, retrying failed commits with backoff. At shutdown the
//! queue is flushed within a deadline. See docs/inference-tables.md.

mod compact;
pub mod delta;
pub mod labels;
mod priority;
pub mod record;
pub mod rows;
mod writer;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::metrics::labels::{DropReason, LogTable};
use crate::metrics::Metrics;
use crate::settings::capture::AutoCaptureConfig;
pub use crate::settings::inference_log::InferenceLogSettings;
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
    bits: u64,
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
}

impl Capture {
    pub fn samples(&self, id: &RequestId) -> bool {
        self.sampling_fraction >= 1.0 || id.bits < self.threshold
    }
}

pub(crate) enum Entry {
    Call {
        capture: Arc<Capture>,
        call: CallRecord,
        scored: Vec<ScoredRows>,
        bytes: [usize; 2],
    },
    Shadow {
        capture: Arc<Capture>,
        scored: ScoredRows,
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

/// The queue in front of the writer thread.
pub struct InferenceLog {
    settings: InferenceLogSettings,
    /// The writer thread, unparked when a batch's worth of bytes is queued and at `close`;
    /// otherwise it looks at the queue on its own tick (senders do not wake it).
    writer: std::thread::Thread,
    tx: crossbeam_channel::Sender<Entry>,
    queued_bytes: Arc<AtomicUsize>,
    metrics: Arc<Metrics>,
    closed: AtomicBool,
    /// Held (shared) by every call from its `closed` check to its send, and taken alone by
    /// `close` to set `closed`: so every record let in is in the queue before `Entry::Close`,
    /// where the writer's last drain finds it, and none is sent unseen after that.
    gate: std::sync::RwLock<()>,
    /// The shutdown deadline, set once by `close`; the writer starts no attempt after it.
    stop: Arc<OnceLock<Instant>>,
    done: Mutex<Option<crossbeam_channel::Receiver<bool>>>,
}

impl InferenceLog {
    /// Starts the writer thread.
    pub fn start(settings: InferenceLogSettings, metrics: Arc<Metrics>) -> std::io::Result<Self> {
        // s3:// (and s3a://) tables: the Delta crate's S3 store, registered once per process.
        static OBJECT_STORES: std::sync::Once = std::sync::Once::new();
        OBJECT_STORES.call_once(|| deltalake::aws::register_handlers(None));
        let (tx, rx) = crossbeam_channel::unbounded();
        let (done_tx, done_rx) = crossbeam_channel::bounded(1);
        let queued_bytes = Arc::new(AtomicUsize::new(0));
        // One absolute value for the writer and the I/O threads it starts (they inherit its).
        let nice = priority::target(settings.writer_nice);
        let sink = delta::DeltaSink::new(
            settings
                .storage_options
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            nice,
        )?;
        let stop = Arc::new(OnceLock::new());
        let writer = writer::Writer::new(
            &settings,
            rx,
            queued_bytes.clone(),
            metrics.clone(),
            sink,
            stop.clone(),
        );
        let thread = std::thread::Builder::new()
            .name("inference-log".into())
            .spawn(move || {
                priority::lower_this_thread(nice);
                let mut writer = writer;
                let all_committed = writer.run();
                let _ = done_tx.send(all_committed);
                // Only then: dropping the Delta sink's runtime waits for its blocking tasks
                // (say, requests to a store that does not answer); `close` does not.
                drop(writer);
            })?
            .thread()
            .clone();
        Ok(Self {
            settings,
            writer: thread,
            tx,
            queued_bytes,
            metrics,
            closed: AtomicBool::new(false),
            gate: std::sync::RwLock::new(()),
            stop,
            done: Mutex::new(Some(done_rx)),
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
        Some(Capture {
            endpoint: Arc::from(endpoint),
            sampling_fraction: f,
            threshold: (f * u64::MAX as f64) as u64,
            payload: target(LogTable::Payload),
            predictions: target(LogTable::Predictions),
            labels: target(LogTable::Labels),
        })
    }

    /// Takes `bytes` of queue space (the bytes queued before them), or counts the records'
    /// rows dropped, per table.
    fn reserve(
        &self,
        bytes: usize,
        capture: &Capture,
        rows: &[(LogTable, usize)],
    ) -> Option<usize> {
        let reason = if self.closed.load(Ordering::Acquire) {
            DropReason::Shutdown
        } else {
            let before = self.queued_bytes.fetch_add(bytes, Ordering::AcqRel);
            if before + bytes <= self.settings.queue_bytes {
                return Some(before);
            }
            self.queued_bytes.fetch_sub(bytes, Ordering::AcqRel);
            DropReason::QueueFull
        };
        for &(table, n) in rows.iter().filter(|(_, n)| *n > 0) {
            self.metrics
                .log
                .dropped_rows
                .with_label_values(&[&*capture.endpoint, table.as_str(), reason.as_str()])
                .inc_by(n as u64);
        }
        None
    }

    /// Logs a call and the rows it scored, together: both are queued or both dropped.
    pub fn log_call(&self, capture: Arc<Capture>, mut call: CallRecord, scored: Vec<ScoredRows>) {
        let _open = self.open();
        call.cap_payloads(self.settings.max_payload_bytes);
        let bytes = [
            call.approx_bytes(),
            scored.iter().map(ScoredRows::approx_bytes).sum(),
        ];
        let rows: usize = scored.iter().map(ScoredRows::rows).sum();
        let drops = [(LogTable::Payload, 1), (LogTable::Predictions, rows)];
        let total = bytes[0] + bytes[1];
        if let Some(before) = self.reserve(total, &capture, &drops) {
            self.send(
                Entry::Call {
                    capture,
                    call,
                    scored,
                    bytes,
                },
                before,
                total,
            );
        }
    }

    /// Logs the rows a shadow served entity scored for a copy of a request.
    pub fn log_shadow(&self, capture: Arc<Capture>, scored: ScoredRows) {
        let _open = self.open();
        let bytes = scored.approx_bytes();
        let drops = [(LogTable::Predictions, scored.rows())];
        if let Some(before) = self.reserve(bytes, &capture, &drops) {
            let entry = Entry::Shadow {
                capture,
                scored,
                bytes,
            };
            self.send(entry, before, bytes);
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
        let entry = Entry::Labels {
            capture,
            labels,
            bytes,
        };
        self.send(entry, before, bytes);
        Ok(())
    }

    /// The shared side of `gate`, for one call from its `closed` check to its send.
    fn open(&self) -> std::sync::RwLockReadGuard<'_, ()> {
        self.gate.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `entry`, which took `bytes` of the queue on top of `before`. The writer is woken
    /// when the queue crosses a batch's bytes (`flush_bytes`), so a burst commits without
    /// waiting for its tick: once per crossing, not per record.
    fn send(&self, entry: Entry, before: usize, bytes: usize) {
        // The writer holds the receiver until `close`; after that `reserve` refuses first.
        let _ = self.tx.send(entry);
        let at = self.settings.flush_bytes;
        if before < at && before + bytes >= at {
            self.writer.unpark();
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
        (self.queued_bytes.load(Ordering::Relaxed), self.tx.len())
    }

    /// Stops taking records and waits until everything queued is committed, or `deadline`
    /// passes: no commit attempt starts after it, one in flight is abandoned, and every row
    /// left is counted as dropped (`reason="shutdown"`). True when it all made it.
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
        let _ = self.tx.send(Entry::Close);
        self.writer.unpark();
        let done = self.done.lock().unwrap_or_else(|e| e.into_inner()).take();
        match done {
            Some(rx) => rx
                .recv_timeout(deadline + Duration::from_secs(2))
                .unwrap_or(false),
            None => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The nice values of this process's threads named `name` (from /proc).
    #[cfg(target_os = "linux")]
    fn nice_of_threads(name: &str) -> Vec<i32> {
        let mut found = Vec::new();
        for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
            let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
            if comm.trim_end() != name {
                continue;
            }
            let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
            // Fields after the parenthesised name: state is field 3, nice field 19.
            // A thread that ended between the two reads: its stat is gone.
            let Some(end) = stat.rfind(')') else { continue };
            let after = &stat[end + 2..];
            found.push(after.split(' ').nth(16).unwrap().parse().unwrap());
        }
        found
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
                        log.log_call(capture.clone(), CallRecord::for_tests(), Vec::new());
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

    #[cfg(target_os = "linux")]
    #[test]
    fn the_writer_runs_nicer_than_the_serving_threads() {
        let dir = tempfile::tempdir().unwrap();
        let settings = InferenceLogSettings {
            writer_nice: 3,
            ..Default::default()
        };
        let want = priority::target(3);
        let log = start_in(&dir, settings, &Arc::new(Metrics::new()));
        let deadline = Instant::now() + Duration::from_secs(10);
        while !nice_of_threads("inference-log").contains(&want) {
            assert!(
                Instant::now() < deadline,
                "no writer thread at nice {want}: {:?}",
                nice_of_threads("inference-log")
            );
            std::thread::sleep(Duration::from_millis(5));
        }
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
