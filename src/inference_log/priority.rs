//! The writer's threads at a lower CPU priority than the serving threads.
//!
//! Encoding and committing a batch is CPU work of tens of milliseconds, and on a busy core it
//! competes with the HTTP workers. With a higher nice value the scheduler gives the writer a
//! smaller share while requests are runnable, so a commit spreads over idle moments instead of
//! holding the core for its whole length; on an idle core it runs at full speed. In Linux's
//! idle scheduling class ([`Priority::idle`]) a serving thread that wakes also takes the core
//! from it at once, rather than when the writer's turn ends. Its loops also yield the core
//! every [`TURN`] ([`pause_point`]), and stop there when another thread asks for the writer
//! ([`giving_way_to`]).

use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a writer thread computes before it offers the core to a waiting thread.
///
/// A lower priority makes the writer's turns on a busy core rarer, not shorter: the kernel
/// takes the core from a thread that does not block at its tick (every 4 ms at the common
/// `HZ=250`), so a commit's encoding held a core for 4 to 6 ms at a time and every request that
/// arrived meanwhile waited that long (the logged closed-loop p99). The writer's loops call
/// [`pause_point`], which yields after this much work: a turn is then a quarter of a
/// millisecond, and on an idle core the yield returns at once.
pub const TURN: Duration = Duration::from_micros(250);

thread_local! {
    /// When the calling thread's current turn began (its first pause point, or the last one
    /// that yielded).
    static TURN_BEGAN: Cell<Option<Instant>> = const { Cell::new(None) };
    /// Set while the calling thread runs work that gives way once this flag is set.
    static GIVE_WAY_TO: RefCell<Option<Arc<AtomicBool>>> = const { RefCell::new(None) };
    /// Tests: the pause points the calling thread passes before the next one answers
    /// [`GaveWay`], to ask at an exact point of the work ([`test_hooks::giving_way_after`]).
    #[cfg(test)]
    static ASKED_AFTER: Cell<Option<usize>> = const { Cell::new(None) };
}

/// The work was stopped at a pause point because another thread asked for what it held (the
/// catch-up thread, for the writer): nothing of it was written, and it is to be done again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the inference-log writer gave way to its catch-up thread")]
pub struct GaveWay;

/// Runs `work` with the calling thread's pause points answering [`GaveWay`] once `flag` is
/// set: a niced thread on a saturated core gets a few percent of it, and a commit it has begun
/// would hold the writer for seconds.
pub fn giving_way_to<R>(flag: &Arc<AtomicBool>, work: impl FnOnce() -> R) -> R {
    /// Puts back the flag the thread had before when `work` returns or unwinds.
    struct Restore(Option<Arc<AtomicBool>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let before = self.0.take();
            GIVE_WAY_TO.with(|f| *f.borrow_mut() = before);
        }
    }
    let before = GIVE_WAY_TO.with(|f| f.borrow_mut().replace(flag.clone()));
    let _restore = Restore(before);
    work()
}

/// Whether the calling thread has been asked to give way (see [`giving_way_to`]).
pub fn asked_to_give_way() -> bool {
    GIVE_WAY_TO.with(|f| {
        f.borrow()
            .as_ref()
            .is_some_and(|flag| flag.load(Ordering::Acquire))
    })
}

/// Starts the calling thread's turn: called when a writer thread wakes to work, so that the
/// time it slept or waited does not count as work.
pub fn turn_begins() {
    TURN_BEGAN.with(|began| began.set(Some(Instant::now())));
}

/// A place in the writer's work where it may stop for a moment: once [`TURN`] has passed
/// since the thread's turn began (its last yield, or [`turn_begins`]), it yields the core
/// (`sched_yield`) to any thread waiting for it. Costs a clock read otherwise; called every
/// few dozen rows. [`GaveWay`] when the thread was asked to give way: the work stops here,
/// without yielding first (a thread in the idle class that yields may wait long for the core
/// again).
pub fn pause_point() -> Result<(), GaveWay> {
    if asked_to_give_way() {
        return Err(GaveWay);
    }
    #[cfg(test)]
    if test_hooks::asked_here() {
        return Err(GaveWay);
    }
    TURN_BEGAN.with(|began| match at_pause(began.get(), Instant::now()) {
        Pause::Yield => {
            std::thread::yield_now();
            began.set(Some(Instant::now()));
        }
        Pause::Go { turn_began } => began.set(Some(turn_began)),
    });
    // Asked during the yield: answered at the next pause point, a few dozen rows on.
    Ok(())
}

/// What a pause point does.
#[derive(Debug, PartialEq, Eq)]
enum Pause {
    /// The turn has lasted [`TURN`]: offer the core, then start a new turn.
    Yield,
    /// Go on; the turn began then (now, for a thread's first pause point).
    Go { turn_began: Instant },
}

/// A pause point reached at `now` by a thread whose turn began at `began`.
fn at_pause(began: Option<Instant>, now: Instant) -> Pause {
    match began {
        Some(at) if now.saturating_duration_since(at) >= TURN => Pause::Yield,
        Some(at) => Pause::Go { turn_began: at },
        None => Pause::Go { turn_began: now },
    }
}

/// Calls [`pause_point`] once every `every` steps of a loop (rows converted, entries taken).
pub struct PauseEvery {
    every: usize,
    since: usize,
}

impl PauseEvery {
    pub const fn new(every: usize) -> Self {
        Self { every, since: 0 }
    }

    /// One step done: a pause point after every `every` of them.
    pub fn step(&mut self) -> Result<(), GaveWay> {
        self.since += 1;
        if self.since < self.every {
            return Ok(());
        }
        self.since = 0;
        pause_point()
    }
}

/// Drops `items` in pieces with a [`pause_point`] between them: a committed batch's records
/// are ten thousand sets of buffers freed cold, milliseconds of work in one go. Freeing is
/// never given up half done (the niced thread frees outside the writer's lock instead).
pub fn drop_in_turns<T>(mut items: Vec<T>) {
    const PIECE: usize = 256;
    while !items.is_empty() {
        items.truncate(items.len().saturating_sub(PIECE));
        let _ = pause_point();
    }
}

/// The nice value `by` above the calling thread's (capped at 19), computed once so that
/// threads started from an already lowered one (a runtime's helper threads, started by its
/// lowered worker) land on the same value rather than lower still.
pub fn target(by: i32) -> i32 {
    (current().unwrap_or(0) + by.max(0)).min(19)
}

/// Where a thread of the inference log runs beside the serving threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Priority {
    /// Its nice value (from [`target`]).
    pub nice: i32,
    /// Whether it runs in Linux's idle scheduling class (`SCHED_IDLE`), below every nice
    /// value: a thread of another class that wakes preempts it at once, and on a core that
    /// never idles it gets a fraction of a percent (the catch-up thread, which stays out of
    /// this class, commits the backlog then).
    pub idle: bool,
}

impl Priority {
    /// At the serving threads' priority: lowering to it leaves a thread as it is.
    pub const SERVING: Self = Self {
        nice: 0,
        idle: false,
    };

    /// The same nice value, out of the idle class.
    pub fn without_idle(self) -> Self {
        Self {
            idle: false,
            ..self
        }
    }

    /// Lowers the calling thread to this priority; never raises it. A failure is logged, not
    /// fatal.
    pub fn lower_this_thread(self) {
        lower_nice(self.nice);
        if self.idle {
            idle_this_thread();
        }
    }
}

/// Puts the calling thread in the idle scheduling class (Linux: per thread). Leaving the class
/// needs a privilege the gateway does not assume (`CAP_SYS_NICE`, or a raised `RLIMIT_NICE`),
/// so the thread is in it for good, and so is every thread it starts: such a thread only hands
/// work to runtimes whose helper threads must stay out of the class, and waits (their helper
/// threads are started by the thread that first needs them). A refusal is logged once.
#[cfg(target_os = "linux")]
fn idle_this_thread() {
    static WARNED: std::sync::Once = std::sync::Once::new();
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: gettid takes nothing; sched_setscheduler reads the parameter it is handed.
    let rc = unsafe { libc::sched_setscheduler(libc::gettid(), libc::SCHED_IDLE, &param) };
    if rc != 0 {
        let e = std::io::Error::last_os_error();
        WARNED.call_once(|| tracing::warn!(error = %e, "could not put the inference log's threads in the idle scheduling class; they stay at their nice value"));
    }
}

#[cfg(not(target_os = "linux"))]
fn idle_this_thread() {}

/// Sets the calling thread's nice value to `nice` when that is lower in priority than it has
/// (Linux: per thread). A failure is logged, not fatal: the thread then runs at the serving
/// threads' priority.
fn lower_nice(nice: i32) {
    if current().is_some_and(|now| now >= nice) {
        return;
    }
    if let Err(e) = set_nice(nice) {
        tracing::warn!(nice, error = %e, "could not lower the inference-log writer's priority");
    }
}

/// The calling thread's nice value (Linux; elsewhere none).
#[cfg(target_os = "linux")]
fn current() -> Option<i32> {
    // SAFETY: gettid and getpriority take and return plain integers; errno is cleared first
    // since -1 is also a valid nice value.
    unsafe {
        *libc::__errno_location() = 0;
        let now = libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t);
        (now != -1 || *libc::__errno_location() == 0).then_some(now)
    }
}

#[cfg(not(target_os = "linux"))]
fn current() -> Option<i32> {
    None
}

#[cfg(target_os = "linux")]
fn set_nice(nice: i32) -> std::io::Result<()> {
    // SAFETY: gettid and setpriority take and return plain integers.
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, nice) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
fn set_nice(_nice: i32) -> std::io::Result<()> {
    // Elsewhere nice applies to the whole process, which would slow the serving threads too.
    Ok(())
}

/// Test hooks of pause points (all platforms).
#[cfg(test)]
pub(crate) mod test_hooks {
    use super::*;

    /// Runs `work` with the calling thread's pause points passing `points` and answering
    /// [`GaveWay`] at the next one (once); panics if `work` never reached it.
    pub(crate) fn giving_way_after<R>(points: usize, work: impl FnOnce() -> R) -> R {
        ASKED_AFTER.with(|n| n.set(Some(points)));
        let done = work();
        let left = ASKED_AFTER.with(|n| n.replace(None));
        assert_eq!(left, None, "the work passed fewer pause points than asked");
        done
    }

    /// Whether this pause point is the one [`giving_way_after`] asked for.
    pub(super) fn asked_here() -> bool {
        ASKED_AFTER.with(|n| match n.get() {
            Some(0) => {
                n.set(None);
                true
            }
            Some(left) => {
                n.set(Some(left - 1));
                false
            }
            None => false,
        })
    }
}

#[cfg(all(test, target_os = "linux"))]
pub(crate) mod tests {
    use super::*;

    fn this_thread() -> i32 {
        current().expect("getpriority")
    }

    fn turn_began() -> Option<Instant> {
        TURN_BEGAN.with(Cell::get)
    }

    #[test]
    fn a_pause_point_yields_once_the_turn_has_lasted_its_length() {
        let began = Instant::now();
        let go = Pause::Go { turn_began: began };
        assert_eq!(at_pause(Some(began), began), go);
        let almost = began + TURN - Duration::from_micros(1);
        assert_eq!(at_pause(Some(began), almost), go);
        assert_eq!(at_pause(Some(began), began + TURN), Pause::Yield);
        // A clock read from before the turn began ends nothing.
        assert_eq!(
            at_pause(Some(began + TURN), began),
            Pause::Go {
                turn_began: began + TURN
            }
        );
        // A thread's first pause point starts its turn.
        assert_eq!(at_pause(None, began), go);
    }

    #[test]
    fn a_threads_first_pause_point_starts_its_turn() {
        // The decision itself is `at_pause`'s (above); this is the thread's record of it.
        std::thread::spawn(|| {
            assert_eq!(turn_began(), None);
            pause_point().unwrap();
            let began = turn_began().expect("the first pause point starts a turn");
            turn_begins();
            assert!(turn_began().unwrap() >= began);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn pause_every_counts_its_steps() {
        std::thread::spawn(|| {
            let mut pace = PauseEvery::new(3);
            pace.step().unwrap();
            pace.step().unwrap();
            assert_eq!(turn_began(), None, "no pause point before the third step");
            pace.step().unwrap();
            assert!(turn_began().is_some(), "a pause point at the third");
            assert_eq!(pace.since, 0);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn pause_points_answer_gave_way_once_asked_and_only_inside_the_work() {
        std::thread::spawn(|| {
            let flag = Arc::new(AtomicBool::new(false));
            assert_eq!(pause_point(), Ok(()));
            giving_way_to(&flag, || {
                assert_eq!(pause_point(), Ok(()), "not asked yet");
                flag.store(true, Ordering::Release);
                assert_eq!(pause_point(), Err(GaveWay));
                let mut pace = PauseEvery::new(2);
                assert_eq!(
                    pace.step(),
                    Ok(()),
                    "only every second step is a pause point"
                );
                assert_eq!(pace.step(), Err(GaveWay));
            });
            // Nested work with a flag of its own leaves the outer one in place.
            let outer = Arc::new(AtomicBool::new(true));
            giving_way_to(&outer, || {
                giving_way_to(&Arc::new(AtomicBool::new(false)), || {
                    assert_eq!(pause_point(), Ok(()));
                });
                assert_eq!(pause_point(), Err(GaveWay));
            });
            assert_eq!(
                pause_point(),
                Ok(()),
                "the flag is not this thread's after the work"
            );
            // Nor after work that panicked.
            let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                giving_way_to(&flag, || panic!("a bug in the work"))
            }));
            assert!(unwound.is_err());
            assert!(!asked_to_give_way());
            assert_eq!(pause_point(), Ok(()));
        })
        .join()
        .unwrap();
    }

    #[test]
    fn records_dropped_in_turns_are_all_dropped() {
        let shared = std::rc::Rc::new(());
        let items: Vec<_> = (0..1000).map(|_| shared.clone()).collect();
        drop_in_turns(items);
        assert_eq!(std::rc::Rc::strong_count(&shared), 1);
    }

    /// The calling thread's scheduling class.
    fn class_of_this_thread() -> i32 {
        // SAFETY: takes and returns a plain integer.
        let policy = unsafe { libc::sched_getscheduler(0) };
        assert!(policy >= 0, "sched_getscheduler");
        policy
    }

    #[test]
    fn a_thread_is_lowered_alone() {
        let before = this_thread();
        let want = target(7);
        assert_eq!(want, (before + 7).min(19));
        let niced = Priority {
            nice: want,
            idle: false,
        };
        let (lowered, child) = std::thread::spawn(move || {
            niced.lower_this_thread();
            // A thread it starts inherits the value; lowering it to the same target again
            // leaves it there (not 7 lower still).
            let child = std::thread::spawn(move || {
                niced.lower_this_thread();
                this_thread()
            });
            (
                (this_thread(), class_of_this_thread()),
                child.join().unwrap(),
            )
        })
        .join()
        .unwrap();
        assert_eq!(lowered, (want, libc::SCHED_OTHER));
        assert_eq!(child, want);
        assert_eq!(this_thread(), before, "only the calling thread changes");
    }

    /// The scheduling priorities of this process's threads named `name` (from /proc).
    pub(crate) fn priorities_of_threads(name: &str) -> Vec<Priority> {
        let mut found = Vec::new();
        for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
            let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
            if comm.trim_end() != name {
                continue;
            }
            let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
            // Fields after the parenthesised name: state is field 3, nice field 19, the
            // scheduling policy field 41. A thread that ended between the two reads: its stat
            // is gone.
            let Some(end) = stat.rfind(')') else { continue };
            let fields: Vec<&str> = stat[end + 2..].split(' ').collect();
            let policy: i32 = fields[38].parse().unwrap();
            found.push(Priority {
                nice: fields[16].parse().unwrap(),
                idle: policy == libc::SCHED_IDLE,
            });
        }
        found
    }

    #[test]
    fn an_idle_class_thread_stays_in_it_with_the_threads_it_starts() {
        let want = Priority {
            nice: target(3),
            idle: true,
        };
        let (lowered, child) = std::thread::spawn(move || {
            want.lower_this_thread();
            let lowered = (this_thread(), class_of_this_thread());
            // A runtime's helper threads start from the thread that first needs them.
            let child = std::thread::spawn(|| (this_thread(), class_of_this_thread()));
            (lowered, child.join().unwrap())
        })
        .join()
        .unwrap();
        assert_eq!(lowered, (want.nice, libc::SCHED_IDLE));
        assert_eq!(child, (want.nice, libc::SCHED_IDLE));
        assert_eq!(
            class_of_this_thread(),
            libc::SCHED_OTHER,
            "only the calling thread changes"
        );
    }
}
