//! Two threads share a shard's writer. Its own runs at `writer_nice` (and, for local tables,
//! in the idle scheduling class), so that encoding and committing yield the core to requests;
//! but on a saturated core a niced thread gets a few percent of it (in the idle class, a
//! fraction of one), too little to keep up, and the queue would fill and drop rows. So a second
//! thread, at the serving threads' priority, takes the writer over while the shard holds more
//! than its part of a quarter of `queue_bytes` and commits everything pending, whatever the
//! batches' size or age, until the shard holds less than its part of an eighth. It also runs
//! the shutdown flush (the niced thread leaves that to it). Otherwise it sleeps.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use super::writer::{Leftover, Step, Turn, Writer};

pub(super) struct Shared {
    writer: Mutex<Writer>,
    /// Set while the catch-up thread wants or holds the writer: the niced thread stays off it
    /// (and gives way at its next pause point when it sees it set).
    catching_up: Arc<AtomicBool>,
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
            catching_up: Arc::new(AtomicBool::new(false)),
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
                let turn = Turn::Niced {
                    give_way_to: &self.catching_up,
                };
                let (step, leftovers) = {
                    let mut writer = self.lock();
                    (writer.step(turn), writer.leftovers())
                };
                // Freed with the writer released: the catch-up thread may be waiting for it.
                free(leftovers);
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
                let step = writer.step(Turn::CatchUp);
                free(writer.leftovers());
                let committed = match step {
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

fn free(leftovers: Vec<Leftover>) {
    for free in leftovers {
        free();
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

    /// Pins the calling thread to the first CPU this process may use.
    #[cfg(target_os = "linux")]
    fn pin_to_first_cpu() {
        // SAFETY: the set is a plain bit mask, read and written by the two calls for this thread.
        unsafe {
            let mut allowed: libc::cpu_set_t = std::mem::zeroed();
            let size = std::mem::size_of::<libc::cpu_set_t>();
            assert_eq!(libc::sched_getaffinity(0, size, &mut allowed), 0);
            let cpu = (0..libc::CPU_SETSIZE as usize)
                .find(|&c| libc::CPU_ISSET(c, &allowed))
                .expect("a CPU to run on");
            let mut one: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut one);
            assert_eq!(libc::sched_setaffinity(0, size, &one), 0);
        }
    }

    /// The case the catch-up thread is for: a saturated core, where the niced thread gets a
    /// few percent of it, in the middle of a large commit when the backlog crosses the mark.
    /// The catch-up thread must get the writer at the niced thread's next pause point, not
    /// when its commit ends (tens of seconds away here), and commit every row once.
    #[cfg(target_os = "linux")]
    #[test]
    fn the_catch_up_thread_gets_the_writer_from_a_starved_niced_thread_mid_commit() {
        use crate::inference_log::priority::Priority;
        use crate::inference_log::record::CallRecord;
        use crate::inference_log::writer::tests::{fixture, Fixture};
        use crate::inference_log::Entry;

        if std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
            eprintln!("skipped: the catch-up thread needs a CPU the starved thread is not on");
            return;
        }
        const ROWS: usize = 40_000;
        const BYTES: usize = 100;
        let total = ROWS * BYTES;
        let Fixture {
            dir: _dir,
            capture,
            metrics,
            queued,
            shard,
            tx,
            writer,
        } = fixture(total);
        let body = bytes::Bytes::from(format!("{{\"inputs\": [{}]}}", "0.5, ".repeat(14)));
        for _ in 0..ROWS {
            let call = CallRecord {
                request: Some(body.clone()),
                response: Some(body.clone()),
                ..CallRecord::for_tests()
            };
            let capture = capture.clone();
            let bytes = BYTES;
            tx.send(Entry::Call {
                capture,
                call,
                bytes,
            })
            .unwrap();
        }
        let stop = Arc::new(OnceLock::new());
        let (done_tx, done_rx) = crossbeam_channel::bounded(1);
        // Above what the shard holds: the catch-up thread starts when the test says.
        let marks = Marks {
            start: total + 1,
            stop: 1,
        };
        let shared = Arc::new(Shared::new(
            writer,
            marks,
            shard.clone(),
            stop.clone(),
            done_tx,
        ));

        let niced = {
            let shared = shared.clone();
            std::thread::spawn(move || {
                pin_to_first_cpu();
                // The writer's lowest: nice 19 in the idle scheduling class.
                Priority {
                    nice: 19,
                    idle: true,
                }
                .lower_this_thread();
                shared.run_niced();
            })
        };
        // It has taken the whole queue and holds the writer: it is committing the batch.
        // (Started on a CPU of its own: a starved thread would take minutes to take it.)
        let deadline = Instant::now() + Duration::from_secs(60);
        while !(tx.is_empty() && shared.writer.try_lock().is_err()) {
            assert!(
                Instant::now() < deadline,
                "the niced thread never took the queue"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        // Now it shares its CPU with two threads at the serving priority that never sleep: a
        // saturated core, of which it gets under 1 %.
        /// Stops the spinners however the test ends (an assertion failing included).
        struct Stop(Arc<AtomicBool>);
        impl Drop for Stop {
            fn drop(&mut self) {
                self.0.store(false, Ordering::Relaxed);
            }
        }
        let spinning = Arc::new(AtomicBool::new(true));
        let stop_spinning = Stop(spinning.clone());
        let spinners: Vec<_> = (0..2)
            .map(|_| {
                let spinning = spinning.clone();
                std::thread::spawn(move || {
                    pin_to_first_cpu();
                    while spinning.load(Ordering::Relaxed) {
                        std::hint::spin_loop();
                    }
                })
            })
            .collect();
        let committed = || metrics.log.rows.with_label_values(&["e", "payload"]).get();
        assert_eq!(
            committed(),
            0,
            "the niced thread was meant to be starved mid-commit"
        );

        let asked = Instant::now();
        shard.fetch_add(1, Ordering::AcqRel);
        let catch_up = {
            let shared = shared.clone();
            std::thread::spawn(move || shared.run_catch_up())
        };
        // Here the niced thread's commit alone would take minutes; the catch-up thread's
        // takes under a second (debug build, 2 cores), after the niced thread's next pause
        // point. The bound leaves room for a CI machine busy with other tests.
        let bound = Duration::from_secs(30);
        while committed() < ROWS as u64 && asked.elapsed() < bound {
            std::thread::sleep(Duration::from_millis(5));
        }
        let took = asked.elapsed();
        drop(stop_spinning);
        for spinner in spinners {
            spinner.join().unwrap();
        }
        assert_eq!(
            committed(),
            ROWS as u64,
            "{took:?} after the catch-up thread asked for the writer, the niced thread still had it"
        );

        let _ = stop.set(Instant::now() + Duration::from_secs(30));
        tx.send(Entry::Close).unwrap();
        assert_eq!(done_rx.recv_timeout(Duration::from_secs(60)), Ok(true));
        niced.join().unwrap();
        catch_up.join().unwrap();
        assert_eq!(committed(), ROWS as u64, "every row once");
        assert_eq!(queued.load(Ordering::Acquire), 0, "every byte released");
    }
}
