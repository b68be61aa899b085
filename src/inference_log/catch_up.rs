//! Two threads share the writer. Its own runs at `writer_nice`, so that encoding and committing
//! yield the core to requests; but on a saturated core a niced thread gets a few percent of it,
//! too little to keep up, and the queue would fill and drop rows. So a second thread, at the
//! serving threads' priority, takes the writer over while the queue holds more than a quarter
//! of `queue_bytes` (or the log is closing) and commits everything pending until less than an
//! eighth is left. It never runs while the niced writer keeps up; when it does, it trades some
//! tail latency for every request logged.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use super::writer::{Step, Writer};

pub(super) struct Shared {
    writer: Mutex<Writer>,
    /// Set while the catch-up thread wants or holds the writer: the niced thread stays off it
    /// (and stops between commits when it sees it set).
    catching_up: AtomicBool,
    /// Set once the writer has finished (after `close`): both threads leave.
    finished: AtomicBool,
    queued_bytes: Arc<AtomicUsize>,
    /// Queue bytes from which the catch-up thread takes over, and under which it hands back.
    start_at: usize,
    stop_at: usize,
    tick: Duration,
    stop: Arc<OnceLock<Instant>>,
    done: crossbeam_channel::Sender<bool>,
}

impl Shared {
    /// Catches up only at `close` when `catch_up` is off (`inference_log.catch_up`).
    pub(super) fn new(
        writer: Writer,
        queue_bytes: usize,
        catch_up: bool,
        queued_bytes: Arc<AtomicUsize>,
        stop: Arc<OnceLock<Instant>>,
        done: crossbeam_channel::Sender<bool>,
    ) -> Self {
        let tick = writer.tick();
        Self {
            writer: Mutex::new(writer),
            catching_up: AtomicBool::new(false),
            finished: AtomicBool::new(false),
            queued_bytes,
            start_at: if catch_up {
                catch_up_at(queue_bytes)
            } else {
                usize::MAX
            },
            stop_at: queue_bytes / 8,
            tick,
            stop,
            done,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Writer> {
        // A panic that got past the writer's own per-batch guard left it usable.
        self.writer.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn finish(&self, all_committed: bool) {
        self.finished.store(true, Ordering::Release);
        let _ = self.done.send(all_committed);
    }

    /// The niced thread: a look at the queue every tick, unless the catch-up thread has it.
    pub(super) fn run_niced(&self) {
        while !self.finished.load(Ordering::Acquire) {
            if !self.catching_up.load(Ordering::Acquire) {
                let step = self.lock().step(false, Some(&self.catching_up));
                if let Step::Finished(all_committed) = step {
                    return self.finish(all_committed);
                }
            }
            std::thread::park_timeout(self.tick);
        }
    }

    /// The catch-up thread: idle until the queue is backed up or the log closes, then commits
    /// everything pending, look after look, until the backlog is small again.
    pub(super) fn run_catch_up(&self) {
        while !self.finished.load(Ordering::Acquire) {
            std::thread::park_timeout(self.tick);
            let closing = self.stop.get().is_some();
            if !closing && self.queued_bytes.load(Ordering::Acquire) < self.start_at {
                continue;
            }
            self.catching_up.store(true, Ordering::Release);
            let mut writer = self.lock();
            loop {
                let committed = match writer.step(true, None) {
                    Step::Finished(all_committed) => return self.finish(all_committed),
                    Step::Committed(batches) => batches,
                };
                if !closing && self.queued_bytes.load(Ordering::Acquire) < self.stop_at {
                    break;
                }
                if committed == 0 {
                    // The backlog is another shard's (the queue's bytes are shared), or close
                    // is on its way to this queue: look again shortly rather than spin.
                    std::thread::park_timeout(Duration::from_millis(2));
                }
            }
            drop(writer);
            self.catching_up.store(false, Ordering::Release);
        }
    }
}

/// Queue bytes from which the catch-up thread takes the writer over: a quarter of the queue,
/// below where `backpressure: sample` starts thinning (half) and `reject` refusing (7/8).
pub(super) fn catch_up_at(queue_bytes: usize) -> usize {
    queue_bytes / 4
}
