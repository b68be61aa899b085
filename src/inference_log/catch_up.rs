//! Two threads share a shard's writer. Its own runs at `writer_nice`, so that encoding and
//! committing yield the core to requests; but on a saturated core a niced thread gets a few
//! percent of it, too little to keep up, and the queue would fill and drop rows. So a second
//! thread, at the serving threads' priority, takes the writer over while the shard holds more
//! than its part of a quarter of `queue_bytes` and commits everything pending, whatever the
//! batches' size or age, until the shard holds less than its part of an eighth. It also runs
//! the shutdown flush (the niced thread leaves that to it). Otherwise it sleeps.

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
    /// Bytes this shard holds (queued and not yet committed).
    shard_bytes: Arc<AtomicUsize>,
    marks: Marks,
    tick: Duration,
    stop: Arc<OnceLock<Instant>>,
    done: crossbeam_channel::Sender<bool>,
}

/// A shard's bytes from which the catch-up thread takes over, and at or under which it hands
/// back: its part of a quarter and of an eighth of the queue, below where
/// `backpressure: sample` starts thinning (half) and `reject` refusing (seven eighths).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Marks {
    pub start: usize,
    pub stop: usize,
}

impl Marks {
    /// For one of `shards` shards of a queue of `queue_bytes`; never when `catch_up` is off.
    pub(super) fn new(queue_bytes: usize, shards: usize, catch_up: bool) -> Self {
        let part = queue_bytes / shards.max(1);
        Self {
            start: if catch_up {
                (part / 4).max(1)
            } else {
                usize::MAX
            },
            stop: part / 8,
        }
    }
}

impl Shared {
    pub(super) fn new(
        writer: Writer,
        marks: Marks,
        shard_bytes: Arc<AtomicUsize>,
        stop: Arc<OnceLock<Instant>>,
        done: crossbeam_channel::Sender<bool>,
    ) -> Self {
        let tick = writer.tick();
        Self {
            writer: Mutex::new(writer),
            catching_up: AtomicBool::new(false),
            finished: AtomicBool::new(false),
            shard_bytes,
            marks,
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
        if !self.finished.swap(true, Ordering::AcqRel) {
            let _ = self.done.send(all_committed);
        }
    }

    fn closing(&self) -> bool {
        self.stop.get().is_some()
    }

    /// The niced thread: a look at the queue every tick, unless the catch-up thread has the
    /// writer or the log is closing.
    pub(super) fn run_niced(&self) {
        while !self.finished.load(Ordering::Acquire) {
            if !self.catching_up.load(Ordering::Acquire) && !self.closing() {
                let step = self.lock().step(false, Some(&self.catching_up));
                if let Step::Finished(all_committed) = step {
                    return self.finish(all_committed);
                }
            }
            std::thread::park_timeout(self.tick);
        }
    }

    /// The catch-up thread: idle until its shard is backed up or the log closes, then commits
    /// everything pending, look after look, until the backlog is small again (or, closing,
    /// until the writer has finished).
    pub(super) fn run_catch_up(&self) {
        while !self.finished.load(Ordering::Acquire) {
            std::thread::park_timeout(self.tick);
            let closing = self.closing();
            if !closing && self.shard_bytes.load(Ordering::Acquire) < self.marks.start {
                continue;
            }
            self.catching_up.store(true, Ordering::Release);
            let mut writer = self.lock();
            while !self.finished.load(Ordering::Acquire) {
                let committed = match writer.step(true, None) {
                    Step::Finished(all_committed) => return self.finish(all_committed),
                    Step::Committed(batches) => batches,
                };
                if !closing && self.shard_bytes.load(Ordering::Acquire) <= self.marks.stop {
                    break;
                }
                if committed == 0 {
                    // Close is on its way to this queue, or what arrived is not ours yet.
                    std::thread::park_timeout(Duration::from_millis(2));
                }
            }
            drop(writer);
            self.catching_up.store(false, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_shard_catches_up_on_its_part_of_the_queue() {
        let two = Marks::new(64 << 20, 2, true);
        assert_eq!((two.start, two.stop), (8 << 20, 4 << 20));
        assert_eq!(Marks::new(64 << 20, 1, false).start, usize::MAX);
        // A tiny queue: the thread starts at a byte and hands back when the shard is empty.
        assert_eq!(Marks::new(3, 4, true), Marks { start: 1, stop: 0 });
    }
}
