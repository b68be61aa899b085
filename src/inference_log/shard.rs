//! A writer shard: one queue, one writer (its niced thread and its catch-up thread, see
//! [`super::catch_up`]) with its Delta sink, and a compaction thread with a Delta runtime of
//! its own ([`super::compactor`]). Each table belongs to one shard, chosen from the
//! table's location, and an endpoint's payload, predictions and labels tables go to three
//! shards in a row: with two shards or more, one endpoint's tables are encoded and committed
//! on different cores, and no table is ever appended to by two writers of one process.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use super::priority::Priority;
use super::{catch_up, compactor, delta, writer, Entry, InferenceLogSettings};
use crate::metrics::Metrics;

pub(super) struct Shard {
    tx: crossbeam_channel::Sender<Entry>,
    /// The queue bytes this shard holds (queued and not yet committed).
    bytes: Arc<AtomicUsize>,
    /// From `bytes` at this mark the catch-up thread is woken.
    catch_up_at: usize,
    /// The niced writer thread, unparked when the queue crosses a batch's bytes and at close;
    /// otherwise it looks at its queue every tick (senders do not wake it).
    writer: std::thread::Thread,
    /// The thread that takes the writer over while the queue is backed up, unparked when the
    /// queue crosses that mark and at close.
    catch_up: std::thread::Thread,
    /// Told whether everything was committed, once the writer finished after close.
    done: Mutex<Option<crossbeam_channel::Receiver<bool>>>,
}

impl Shard {
    /// Starts shard `index` of `count`; `priority` is the writer's (its nice value absolute).
    pub(super) fn start(
        (index, count): (usize, usize),
        settings: &InferenceLogSettings,
        priority: Priority,
        queued_bytes: &Arc<AtomicUsize>,
        metrics: &Arc<Metrics>,
        stop: &Arc<OnceLock<Instant>>,
    ) -> std::io::Result<Self> {
        let (tx, rx) = crossbeam_channel::unbounded();
        let (done_tx, done_rx) = crossbeam_channel::bounded(1);
        let options: std::collections::HashMap<String, String> =
            settings.storage_options.clone().into_iter().collect();
        let sink = delta::DeltaSink::new(options, priority)?;
        let compactor = (settings.compact_every_commits > 0)
            .then(|| {
                compactor::Compactor::start(
                    index,
                    settings.compact_every_commits,
                    priority,
                    settings.compact_max_bytes,
                    metrics.clone(),
                    stop.clone(),
                )
            })
            .transpose()?;
        let bytes = Arc::new(AtomicUsize::new(0));
        let writer = writer::Writer::new(
            settings,
            rx,
            queued_bytes.clone(),
            bytes.clone(),
            metrics.clone(),
            sink,
            stop.clone(),
        )
        .with_compactor(compactor);
        let marks = catch_up::Marks::new(settings.queue_bytes, count, settings.catch_up);
        let shared = Arc::new(catch_up::Shared::new(
            writer,
            marks,
            bytes.clone(),
            stop.clone(),
            done_tx,
        ));
        // The last of the two to leave drops the writer, after `done` was sent: dropping the
        // Delta sink's runtime waits for its blocking tasks (say, requests to a store that
        // does not answer); `close` does not.
        let niced = shared.clone();
        let writer = std::thread::Builder::new()
            .name(format!("log-writer-{index}"))
            .spawn(move || {
                priority.lower_this_thread();
                niced.run_niced();
            })?
            .thread()
            .clone();
        let catch_up = std::thread::Builder::new()
            .name(format!("log-catch-up-{index}"))
            .spawn(move || shared.run_catch_up())?
            .thread()
            .clone();
        Ok(Self {
            tx,
            bytes,
            catch_up_at: marks.start,
            writer,
            catch_up,
            done: Mutex::new(Some(done_rx)),
        })
    }

    /// Queues `entry`, which holds `bytes` of the log's budget; wakes the catch-up thread
    /// when the shard crosses its mark (once per crossing, not per record).
    pub(super) fn send(&self, entry: Entry, bytes: usize) {
        let before = self.bytes.fetch_add(bytes, Ordering::AcqRel);
        // The writer holds the receiver until close; after that the log refuses first.
        let _ = self.tx.send(entry);
        if before < self.catch_up_at && before + bytes >= self.catch_up_at {
            self.catch_up.unpark();
        }
    }

    pub(super) fn wake_writer(&self) {
        self.writer.unpark();
    }

    pub(super) fn wake_catch_up(&self) {
        self.catch_up.unpark();
    }

    /// Records waiting in this shard's queue.
    pub(super) fn queued_records(&self) -> usize {
        self.tx.len()
    }

    /// The writer's answer after close: whether everything was committed; false when it does
    /// not come by `until` (or was taken already).
    pub(super) fn wait_done(&self, until: Instant) -> bool {
        let done = self.done.lock().unwrap_or_else(|e| e.into_inner()).take();
        done.is_some_and(|rx| rx.recv_deadline(until).unwrap_or(false))
    }
}
