//! The bounded inference worker pool, and the inline lane beside it.
//!
//! A fixed set of OS threads takes jobs from one bounded queue. A job learns its worker index,
//! so an engine that needs a session per thread (ort) picks its own without contention. When
//! the queue is full the caller is refused at once (503), never parked. A job that panics is
//! reported to its caller as an error and its worker lives on.
//!
//! A small job (the pipeline decides which: a small body on a version measured fast) may
//! instead run on the calling thread, an HTTP worker, with [`InferencePool::run_inline`]: no
//! hand-off between threads, which on one core costs more than a microsecond model. Each
//! calling thread takes a session index of its own above the workers' (`workers..sessions`).

use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use crossbeam_channel::{bounded, select_biased, Receiver, RecvTimeoutError, Sender, TrySendError};

type Job = Box<dyn FnOnce(usize) + Send + 'static>;

#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("the inference queue is full ({0} requests waiting)")]
    Full(usize),
    #[error("the inference pool is shut down")]
    Closed,
    #[error("inference panicked: {0}")]
    Panicked(String),
    /// A job of [`InferencePool::run_on_each_worker`] returned an error.
    #[error("{0}")]
    Failed(String),
}

pub struct InferencePool {
    sender: Sender<Job>,
    /// Work nobody waits for (shadow copies): a worker takes it only when no request waits.
    background: Sender<Job>,
    workers: usize,
    capacity: usize,
    handles: Mutex<Vec<JoinHandle<()>>>,
    /// One `run_on_each_worker` at a time: two barrier groups could each hold some workers
    /// and wait for the others forever.
    broadcast: Mutex<()>,
    /// Jobs skipped because their caller had gone (deadline passed, client disconnected).
    abandoned: Arc<std::sync::atomic::AtomicU64>,
    /// Background work promised a place but not queued yet (a shadow copy waiting for its
    /// features): it counts against the background queue's capacity.
    promised: Arc<AtomicUsize>,
    background_capacity: usize,
    /// Session indices for jobs run inline, above the workers' (0: never inline).
    inline_sessions: usize,
    /// Work that waits for later requests (a batch), run by the next free worker when due.
    deferred: Arc<Deferred>,
}

/// The longest a worker waits for a request while deferred work is pending.
const DEFERRED_POLL: std::time::Duration = std::time::Duration::from_micros(100);

/// Work put off until `due`, or until no request is queued: the workers look here before
/// taking a job (and at least every 100 µs while it is pending), so it does not wait behind an
/// idle queue. A worker that finds the queue empty yields once before running it, so requests
/// the HTTP workers are reading on the same core can still join (at one connection the yield finds nothing to run and costs a syscall).
#[derive(Default)]
struct Deferred {
    /// Entries, so an empty list costs the workers one atomic load.
    len: AtomicUsize,
    entries: Mutex<Vec<(Instant, Job)>>,
}

impl Deferred {
    fn push(&self, due: Instant, job: Job) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.push((due, job));
        self.len.store(entries.len(), Ordering::Release);
    }

    /// When the first entry is due, if there is one.
    fn earliest(&self) -> Option<Instant> {
        if self.len.load(Ordering::Acquire) == 0 {
            return None;
        }
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.iter().map(|(due, _)| *due).min()
    }

    /// The oldest entry when `idle` (no request queued), else the first one due by `now`.
    fn take(&self, now: Instant, idle: impl FnOnce() -> bool) -> Option<Job> {
        if self.len.load(Ordering::Acquire) == 0 {
            return None;
        }
        let idle = idle();
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let at = if idle {
            (!entries.is_empty()).then_some(0)
        } else {
            entries.iter().position(|(due, _)| *due <= now)
        }?;
        let (_, job) = entries.remove(at);
        self.len.store(entries.len(), Ordering::Release);
        Some(job)
    }
}

/// Runs a job on worker `index`; a panic is logged and the worker lives on (jobs that answer
/// a caller report their own panics to it).
fn run_logged(job: Job, index: usize) {
    if let Err(SubmitError::Panicked(message)) = guarded(|| job(index)) {
        tracing::error!(worker = index, "an inference job panicked: {message}");
    }
}

/// The caller's end of a job's answer: sent once, by the job or by work it hands its answer
/// to (a batch that runs later, on any worker). Dropped unsent, it answers with an error.
pub struct Responder<T: Send + 'static> {
    tx: Option<tokio::sync::oneshot::Sender<Result<T, SubmitError>>>,
}

impl<T: Send + 'static> Responder<T> {
    pub fn send(mut self, value: T) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(Ok(value));
        }
    }

    /// Nobody waits for the answer any more (the caller hung up or its deadline passed).
    pub fn is_gone(&self) -> bool {
        self.tx.as_ref().is_none_or(|tx| tx.is_closed())
    }
}

impl<T: Send + 'static> Drop for Responder<T> {
    fn drop(&mut self) {
        let Some(tx) = self.tx.take() else { return };
        if std::thread::panicking() {
            // The panic's message is known where it is caught ([`guarded`]): answer there.
            UNWOUND.with(|unwound| {
                unwound.borrow_mut().push(Box::new(move |message: &str| {
                    let _ = tx.send(Err(SubmitError::Panicked(message.to_owned())));
                }))
            });
        } else {
            let _ = tx.send(Err(SubmitError::Failed(
                "the job ended without an answer".into(),
            )));
        }
    }
}

/// An answer dropped by a panic: it sends the panic's message once that is caught.
type Unwound = Box<dyn FnOnce(&str)>;

thread_local! {
    /// Answers dropped by a panic on this thread, waiting for its message.
    static UNWOUND: std::cell::RefCell<Vec<Unwound>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Threads that have run an inline job so far (process-wide): each thread's own number.
static INLINE_THREADS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// This thread's number among those that run inline jobs, taken on its first.
    static INLINE_THREAD: Cell<Option<usize>> = const { Cell::new(None) };
}

thread_local! {
    /// Inline jobs of this thread waiting for the caller that runs them ([`InferencePool::run_inline`]).
    static INLINE_TURN: std::cell::RefCell<Vec<Box<dyn FnOnce()>>> = const { std::cell::RefCell::new(Vec::new()) };
    /// The caller on this thread that will run the queued inline jobs: its turn's number, and
    /// when it was last polled.
    static INLINE_LEADER: Cell<Option<(u64, Instant)>> = const { Cell::new(None) };
    /// The number of this thread's next turn.
    static INLINE_TURNS: Cell<u64> = const { Cell::new(0) };
}

/// The most times the caller that runs a turn's inline jobs yields for more: bounds the wait
/// of the first job under a stream of arrivals.
const INLINE_TURN_YIELDS: usize = 4;

/// How long the caller running a turn may go unpolled before the next caller takes the turn
/// over: a caller parked and never polled again does not leave the thread's jobs unrun.
const INLINE_LEADER_STALE: std::time::Duration = std::time::Duration::from_millis(50);

/// Whether the caller runs on a current-thread tokio runtime, whose tasks never change threads.
pub(crate) fn on_current_thread_runtime() -> bool {
    tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::CurrentThread)
}

/// Inline jobs queued on this thread.
fn inline_queued() -> usize {
    INLINE_TURN.with(|turn| turn.borrow().len())
}

/// Runs this thread's queued inline jobs, oldest first.
fn run_queued() {
    let jobs = INLINE_TURN.with(|turn| std::mem::take(&mut *turn.borrow_mut()));
    for job in jobs {
        job();
    }
}

/// The caller that runs this thread's queued inline jobs; when dropped (also when its caller
/// goes mid-turn) it runs what is left and gives the turn up.
struct InlineTurn(u64);

impl InlineTurn {
    /// This thread's turn, unless another caller holds it and was polled lately.
    fn take() -> Option<Self> {
        let now = Instant::now();
        if let Some((_, seen)) = INLINE_LEADER.get() {
            if now.duration_since(seen) < INLINE_LEADER_STALE {
                return None;
            }
        }
        let number = INLINE_TURNS.get();
        INLINE_TURNS.set(number + 1);
        INLINE_LEADER.set(Some((number, now)));
        Some(Self(number))
    }

    /// Marks the turn's caller as polled now.
    fn seen(&self) {
        if INLINE_LEADER.get().is_some_and(|(n, _)| n == self.0) {
            INLINE_LEADER.set(Some((self.0, Instant::now())));
        }
    }
}

impl Drop for InlineTurn {
    fn drop(&mut self) {
        // Jobs queued while these run (none on an event loop's thread) run too.
        while inline_queued() > 0 {
            run_queued();
        }
        if INLINE_LEADER.get().is_some_and(|(n, _)| n == self.0) {
            INLINE_LEADER.set(None);
        }
    }
}

/// A place in the background queue, held until the work is queued or given up.
pub struct Promise(Arc<AtomicUsize>);

impl Drop for Promise {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned())
}

/// Runs `f`, turning a panic into an error; answers the [`Responder`]s the panic dropped with
/// its message.
pub fn guarded<T>(f: impl FnOnce() -> T) -> Result<T, SubmitError> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|p| {
        let message = panic_message(&*p);
        for answer in UNWOUND.with(|unwound| std::mem::take(&mut *unwound.borrow_mut())) {
            answer(&message);
        }
        SubmitError::Panicked(message)
    })
}

impl InferencePool {
    pub fn new(workers: usize, capacity: usize) -> Arc<Self> {
        Self::with_background(workers, capacity, capacity)
    }

    /// A pool whose background queue holds `background_capacity` jobs.
    pub fn with_background(
        workers: usize,
        capacity: usize,
        background_capacity: usize,
    ) -> Arc<Self> {
        Self::with_inline(workers, capacity, background_capacity, 0)
    }

    /// A pool whose callers may run small jobs themselves, on `inline_sessions` session
    /// indices of their own (one per HTTP worker); engines load `workers + inline_sessions`
    /// sessions ([`InferencePool::sessions`]).
    pub fn with_inline(
        workers: usize,
        capacity: usize,
        background_capacity: usize,
        inline_sessions: usize,
    ) -> Arc<Self> {
        let workers = workers.max(1);
        let (sender, receiver) = bounded::<Job>(capacity.max(1));
        let (background, background_rx) = bounded::<Job>(background_capacity.max(1));
        // Background work never holds every worker: one stays free for requests.
        let background_limit = workers.saturating_sub(1).max(1);
        let background_slots = Arc::new(AtomicUsize::new(0));
        let deferred = Arc::new(Deferred::default());
        let handles = (0..workers)
            .map(|index| {
                let rx: Receiver<Job> = receiver.clone();
                let bg: Receiver<Job> = background_rx.clone();
                let slots = background_slots.clone();
                let deferred = deferred.clone();
                std::thread::Builder::new()
                    .name(format!("modelgate-infer-{index}"))
                    .spawn(move || loop {
                        // Deferred work (a batch waiting for more requests) whose wait is
                        // over, or any when no request is queued that could join it.
                        if let Some(job) = deferred.take(Instant::now(), || {
                            // Before deciding the queue is idle, let the threads that read
                            // requests run: what they queue now can join the batch.
                            rx.is_empty() && {
                                std::thread::yield_now();
                                rx.is_empty()
                            }
                        }) {
                            run_logged(job, index);
                            continue;
                        }
                        if let Some(due) = deferred.earliest() {
                            // Deferred work that is neither due nor alone (requests were
                            // queued a moment ago): wait for a request briefly, then look
                            // again, in case another worker took it and the queue is empty.
                            let wait = due
                                .saturating_duration_since(Instant::now())
                                .min(DEFERRED_POLL);
                            match rx.recv_timeout(wait) {
                                Ok(job) => run_logged(job, index),
                                Err(RecvTimeoutError::Timeout) => {}
                                Err(RecvTimeoutError::Disconnected) => {
                                    while let Some(job) = deferred.take(Instant::now(), || true) {
                                        run_logged(job, index);
                                    }
                                    break;
                                }
                            }
                            continue;
                        }
                        // A worker may take background work only with a slot reserved.
                        let reserved = slots.fetch_add(1, Ordering::AcqRel) < background_limit;
                        let job = if reserved {
                            // Requests first: background work runs only on an idle worker.
                            select_biased! {
                                recv(rx) -> job => {
                                    slots.fetch_sub(1, Ordering::AcqRel);
                                    job.map(|j| (j, false))
                                }
                                recv(bg) -> job => match job {
                                    Ok(job) => Ok((job, true)),
                                    // Background closed first: keep serving requests.
                                    Err(_) => {
                                        slots.fetch_sub(1, Ordering::AcqRel);
                                        rx.recv().map(|j| (j, false))
                                    }
                                },
                            }
                        } else {
                            slots.fetch_sub(1, Ordering::AcqRel);
                            rx.recv().map(|j| (j, false))
                        };
                        let Ok((job, background)) = job else {
                            // Closed: what was deferred still runs before the worker ends.
                            while let Some(job) = deferred.take(Instant::now(), || true) {
                                run_logged(job, index);
                            }
                            break;
                        };
                        run_logged(job, index);
                        if background {
                            slots.fetch_sub(1, Ordering::AcqRel);
                        }
                    })
                    .expect("spawning an inference worker thread")
            })
            .collect();
        Arc::new(Self {
            sender,
            background,
            workers,
            capacity,
            handles: Mutex::new(handles),
            broadcast: Mutex::new(()),
            abandoned: Default::default(),
            promised: Default::default(),
            background_capacity: background_capacity.max(1),
            inline_sessions,
            deferred,
        })
    }

    /// Session indices an engine needs: one per worker, one per inline caller.
    pub fn sessions(&self) -> usize {
        self.workers + self.inline_sessions
    }

    /// The session indices inline jobs use (empty when none may run inline).
    pub fn inline_indices(&self) -> std::ops::Range<usize> {
        self.workers..self.sessions()
    }

    /// Whether callers may run jobs inline at all.
    pub fn runs_inline(&self) -> bool {
        self.inline_sessions > 0
    }

    /// The session index of inline jobs on this thread: its own when there are as many
    /// indices as calling threads (the HTTP workers); shared, behind the engine's lock, when
    /// more threads call (tests, benches).
    fn inline_index(&self) -> usize {
        let thread = INLINE_THREAD.with(|t| {
            t.get().unwrap_or_else(|| {
                let n = INLINE_THREADS.fetch_add(1, Ordering::Relaxed);
                t.set(Some(n));
                n
            })
        });
        self.workers + thread % self.inline_sessions.max(1)
    }

    pub fn workers(&self) -> usize {
        self.workers
    }

    /// Requests waiting for a worker now.
    pub fn queued(&self) -> usize {
        self.sender.len()
    }

    /// Counts a job skipped elsewhere (a batch) because nobody waited for its result.
    pub fn count_abandoned(&self) {
        self.abandoned.fetch_add(1, Ordering::Relaxed);
    }

    /// Jobs skipped so far because nobody waited for their result any more.
    pub fn abandoned(&self) -> u64 {
        self.abandoned.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Runs `f` on a worker and awaits its result; refuses at once when the queue is full.
    /// A job whose caller has gone away (client disconnected) is skipped.
    pub async fn run<T, F>(&self, f: F) -> Result<T, SubmitError>
    where
        T: Send + 'static,
        F: FnOnce(usize) -> T + Send + 'static,
    {
        self.run_responding(move |worker, respond| respond.send(f(worker)))
            .await
    }

    /// Runs `f` on a worker with the caller's end of its answer, and awaits the answer: `f`
    /// sends it, or hands the [`Responder`] on to work that will ([`InferencePool::defer`]).
    /// Refuses at once when the queue is full; skips the job when its caller has gone.
    pub async fn run_responding<T, F>(&self, f: F) -> Result<T, SubmitError>
    where
        T: Send + 'static,
        F: FnOnce(usize, Responder<T>) + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let abandoned = self.abandoned.clone();
        let job: Job = Box::new(move |worker| {
            if tx.is_closed() {
                abandoned.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                return;
            }
            f(worker, Responder { tx: Some(tx) });
        });
        self.sender.try_send(job).map_err(|e| match e {
            TrySendError::Full(_) => SubmitError::Full(self.capacity),
            TrySendError::Disconnected(_) => SubmitError::Closed,
        })?;
        rx.await.map_err(|_| SubmitError::Closed)?
    }

    /// As [`InferencePool::run_responding`], here, on the calling thread, with an inline
    /// session index: for jobs small enough to hold an async worker (the caller decides). A
    /// panic is an error, as on a worker.
    ///
    /// On an HTTP worker (a current-thread runtime) the jobs of one turn of its event loop run
    /// together: the first caller yields (the other connections ready now read their requests
    /// and queue their jobs), then runs every queued job in a row, and the callers write their
    /// answers one after another. Answers written in a burst wake a sleeping client once per
    /// burst instead of once per answer, which on one core costs more than a small model's
    /// inference. Elsewhere (another runtime, no runtime) a job runs at once. A job must not
    /// wait on another inline job (it would wait on its own turn).
    pub async fn run_inline<T, F>(&self, f: F) -> Result<T, SubmitError>
    where
        T: Send + 'static,
        F: FnOnce(usize, Responder<T>) + 'static,
    {
        if !self.runs_inline() {
            return Err(SubmitError::Failed(
                "this pool runs no job inline (no inline sessions)".into(),
            ));
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        let index = self.inline_index();
        let abandoned = self.abandoned.clone();
        let job = move || {
            if tx.is_closed() {
                abandoned.fetch_add(1, Ordering::Relaxed);
                return;
            }
            // A panic before the answer is sent reaches it (its Responder was dropped by the
            // panic); one after it (queueing shadow copies) leaves the answer as it was.
            if let Err(e) = guarded(|| f(index, Responder { tx: Some(tx) })) {
                tracing::error!("an inline inference job panicked: {e}");
            }
        };
        // Turns only where a task stays on its thread across a yield (an HTTP worker's
        // current-thread runtime): elsewhere (gRPC's multi-threaded runtime) the caller that
        // yielded could wake on another thread and leave this one's turn unrun.
        if !on_current_thread_runtime() {
            job();
            return rx.await.map_err(|_| SubmitError::Closed)?;
        }
        INLINE_TURN.with(|turn| turn.borrow_mut().push(Box::new(job)));
        // Runs the turn's jobs when dropped: also when this caller goes while it yields.
        let turn = InlineTurn::take();
        // Bound after `turn`, so dropped before it: a caller that goes skips its own job.
        let rx = rx;
        if let Some(turn) = &turn {
            // Yields until a pass brings no more jobs (at most INLINE_TURN_YIELDS): how far
            // back in the event loop's queue one yield puts a task depends on the runtime.
            let mut queued = inline_queued();
            for _ in 0..INLINE_TURN_YIELDS {
                tokio::task::yield_now().await;
                turn.seen();
                let now = inline_queued();
                if now == queued {
                    break;
                }
                queued = now;
            }
        }
        drop(turn);
        rx.await.map_err(|_| SubmitError::Closed)?
    }

    /// Runs `f` on the next worker free after `due`, or before that as soon as a worker finds
    /// no request queued (having yielded once to the threads that queue them). Deferred work is
    /// not bounded here: each batcher holds one entry at most.
    pub fn defer(&self, due: Instant, f: impl FnOnce(usize) + Send + 'static) {
        self.deferred.push(due, Box::new(f));
    }

    /// A place for background work that must wait for something first (a shadow copy's
    /// features), or none when the queued and promised work fill the background capacity.
    pub fn promise_background(&self) -> Option<Promise> {
        let before = self.promised.fetch_add(1, Ordering::AcqRel);
        let promise = Promise(self.promised.clone());
        (before + self.background.len() < self.background_capacity).then_some(promise)
    }

    /// Queues `f` to run when a worker is idle, without waiting for it; false (and `f` is
    /// dropped) when the queued and promised work fill the background capacity.
    pub fn try_background(&self, f: impl FnOnce(usize) + Send + 'static) -> bool {
        let promised = self.promised.load(Ordering::Acquire);
        promised + self.background.len() < self.background_capacity && self.send_background(f)
    }

    /// Queues `f` in the place `promise` held (let go once `f` is queued); false when the
    /// queue is full all the same.
    pub fn fulfil(&self, promise: Promise, f: impl FnOnce(usize) + Send + 'static) -> bool {
        let queued = self.send_background(f);
        drop(promise);
        queued
    }

    fn send_background(&self, f: impl FnOnce(usize) + Send + 'static) -> bool {
        let job: Job = Box::new(move |worker| {
            let _ = guarded(|| f(worker));
        });
        self.background.try_send(job).is_ok()
    }

    /// Runs `f` on a worker from blocking code (loading, validation), waiting for a queue slot.
    pub fn run_blocking<T, F>(&self, f: F) -> Result<T, SubmitError>
    where
        T: Send + 'static,
        F: FnOnce(usize) -> T + Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let job: Job = Box::new(move |worker| {
            let _ = tx.send(guarded(|| f(worker)));
        });
        self.sender.send(job).map_err(|_| SubmitError::Closed)?;
        rx.recv().map_err(|_| SubmitError::Closed)?
    }

    /// Runs `f` once on every worker (warm-up of per-worker sessions). Each worker holds its job
    /// at a barrier until all have one, so no worker takes two. Blocks until all are done.
    pub fn run_on_each_worker<F>(&self, f: F) -> Result<(), SubmitError>
    where
        F: Fn(usize) -> Result<(), String> + Send + Sync + 'static,
    {
        let _one_at_a_time = self.broadcast.lock().unwrap_or_else(|e| e.into_inner());
        let f = Arc::new(f);
        let barrier = Arc::new(Barrier::new(self.workers));
        let (tx, rx) = std::sync::mpsc::channel();
        for _ in 0..self.workers {
            let (f, barrier, tx) = (f.clone(), barrier.clone(), tx.clone());
            let job: Job = Box::new(move |worker| {
                barrier.wait();
                let _ = tx.send(guarded(|| f(worker)));
            });
            self.sender.send(job).map_err(|_| SubmitError::Closed)?;
        }
        drop(tx);
        for _ in 0..self.workers {
            rx.recv()
                .map_err(|_| SubmitError::Closed)??
                .map_err(SubmitError::Failed)?;
        }
        Ok(())
    }
}

impl Drop for InferencePool {
    fn drop(&mut self) {
        // Workers end when the channel closes, which needs every sender gone.
        let handles = std::mem::take(&mut *self.handles.lock().unwrap_or_else(|e| e.into_inner()));
        let (dummy, _) = bounded::<Job>(0);
        drop(std::mem::replace(&mut self.sender, dummy.clone()));
        drop(std::mem::replace(&mut self.background, dummy));
        for h in handles {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A current-thread runtime with timers, as an HTTP worker has.
    fn event_loop() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
    }

    /// Work promised a background place counts against the capacity until it lets go.
    #[test]
    fn promised_background_places_count_against_the_capacity() {
        let pool = InferencePool::with_background(1, 4, 2);
        let first = pool.promise_background().expect("a free place");
        let second = pool.promise_background().expect("a free place");
        assert!(pool.promise_background().is_none(), "over the capacity");
        assert!(
            !pool.try_background(|_| ()),
            "promised places count against new work too"
        );
        assert!(
            pool.fulfil(first, |_| ()),
            "a promised place takes its work"
        );
        let third = pool.promise_background();
        assert!(third.is_none(), "the fulfilled work holds the place now");
        drop(second);
        assert!(pool.promise_background().is_some());
    }

    /// Inline jobs run on the calling thread with an index above the workers', one per
    /// thread while there are indices enough; a panic is an error and the thread goes on.
    #[test]
    fn inline_jobs_run_on_the_caller_with_sessions_of_their_own() {
        let rt = event_loop();
        let pool = InferencePool::with_inline(2, 4, 4, 2);
        assert_eq!(pool.sessions(), 4);
        assert_eq!(pool.inline_indices(), 2..4);
        let inline = |pool: &InferencePool| {
            let rt = event_loop();
            rt.block_on(
                pool.run_inline(|i, r: Responder<(std::thread::ThreadId, usize)>| {
                    r.send((std::thread::current().id(), i))
                }),
            )
        };
        let here = std::thread::current().id();
        let (thread, index) = inline(&pool).unwrap();
        assert_eq!(thread, here, "ran on the caller");
        assert!(pool.inline_indices().contains(&index), "{index}");
        assert_eq!(
            inline(&pool).unwrap().1,
            index,
            "one thread keeps its index"
        );
        let other = std::thread::scope(|s| s.spawn(|| inline(&pool).unwrap().1).join().unwrap());
        assert!(pool.inline_indices().contains(&other));
        let r: Result<(), _> = rt.block_on(pool.run_inline(|_, _: Responder<()>| panic!("boom")));
        assert!(matches!(r, Err(SubmitError::Panicked(m)) if m == "boom"));
        let r = rt.block_on(pool.run_inline(|_, r: Responder<u8>| {
            r.send(1);
            panic!("after the answer");
        }));
        assert_eq!(r.unwrap(), 1, "a panic after the answer does not fail it");
        let none = InferencePool::new(1, 4);
        assert!(!none.runs_inline());
        assert!(rt
            .block_on(none.run_inline(|_, r: Responder<()>| r.send(())))
            .is_err());
    }

    /// The inline jobs of the callers ready in one turn of the event loop all run before any
    /// caller goes on to write its answer (answers leave in a burst); a caller that went
    /// before its job ran is skipped, and its job runs no more.
    #[test]
    fn inline_jobs_of_one_turn_run_together_before_their_callers_go_on() {
        let rt = event_loop();
        let pool = InferencePool::with_inline(1, 4, 4, 1);
        let order = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
        // As on an HTTP worker: tasks of one event loop, spawned there.
        let local = tokio::task::LocalSet::new();
        local.block_on(&rt, async {
            let callers: Vec<_> = (0..3)
                .map(|i| {
                    let (pool, order) = (pool.clone(), order.clone());
                    tokio::task::spawn_local(async move {
                        let ran = order.clone();
                        let answer = pool
                            .run_inline(move |_, r: Responder<usize>| {
                                ran.borrow_mut().push(format!("run {i}"));
                                r.send(i)
                            })
                            .await;
                        order
                            .borrow_mut()
                            .push(format!("answered {}", answer.unwrap()));
                    })
                })
                .collect();
            for caller in callers {
                caller.await.unwrap();
            }
        });
        assert_eq!(
            *order.borrow(),
            [
                "run 0",
                "run 1",
                "run 2",
                "answered 0",
                "answered 1",
                "answered 2"
            ]
        );
        // A caller dropped while it waits for its turn: its job is skipped and counted.
        let _inside = rt.enter();
        let before = pool.abandoned();
        let ran = std::rc::Rc::new(std::cell::Cell::new(false));
        let flag = ran.clone();
        use std::future::Future;
        let mut waiting = Box::pin(pool.run_inline(move |_, r: Responder<()>| {
            flag.set(true);
            r.send(())
        }));
        let waker = futures_util::task::noop_waker();
        let mut cx = std::task::Context::from_waker(&waker);
        assert!(
            waiting.as_mut().poll(&mut cx).is_pending(),
            "it yields first"
        );
        drop(waiting);
        assert!(!ran.get());
        assert_eq!(pool.abandoned(), before + 1);
    }

    /// A caller holding the turn but parked, never polled again, does not leave the thread's
    /// jobs unrun: the next caller takes the turn over once it is stale.
    #[test]
    fn a_parked_turn_is_taken_over() {
        use std::future::Future;
        let rt = event_loop();
        let pool = InferencePool::with_inline(1, 4, 4, 1);
        // A caller takes the turn and is never polled again.
        let _inside = rt.enter();
        let mut parked = Box::pin(pool.run_inline(|_, r: Responder<&str>| r.send("parked")));
        let waker = futures_util::task::noop_waker();
        let mut cx = std::task::Context::from_waker(&waker);
        assert!(parked.as_mut().poll(&mut cx).is_pending());
        let later = || {
            let local = tokio::task::LocalSet::new();
            let later = pool.run_inline(|_, r: Responder<&str>| r.send("later"));
            let bounded = tokio::time::timeout(std::time::Duration::from_secs(10), later);
            local
                .block_on(&rt, bounded)
                .expect("answered, not left waiting")
        };
        // While the turn is fresh, a later caller leaves it to its holder.
        let waiting = std::pin::pin!(pool.run_inline(|_, r: Responder<&str>| r.send("waiting")));
        let mut waiting = waiting;
        for _ in 0..8 {
            assert!(waiting.as_mut().poll(&mut cx).is_pending());
        }
        // Stale: the next caller runs every queued job, the parked one's too.
        let (number, seen) = INLINE_LEADER.get().unwrap();
        INLINE_LEADER.set(Some((number, seen - INLINE_LEADER_STALE * 2)));
        assert_eq!(later().unwrap(), "later");
        // Their answers are there when they are polled again (past their yields).
        let mut answer =
            |mut f: std::pin::Pin<&mut dyn Future<Output = Result<&'static str, SubmitError>>>| {
                (0..=INLINE_TURN_YIELDS).find_map(|_| match f.as_mut().poll(&mut cx) {
                    std::task::Poll::Ready(r) => Some(r.unwrap()),
                    std::task::Poll::Pending => None,
                })
            };
        assert_eq!(answer(parked.as_mut()), Some("parked"));
        assert_eq!(answer(waiting.as_mut()), Some("waiting"));
        drop(parked);
        assert_eq!(
            later().unwrap(),
            "later",
            "the parked caller's turn is over"
        );
    }

    /// On a multi-threaded runtime (gRPC's) a task may wake on another thread after a yield,
    /// so an inline job runs at once there, as outside any runtime: answered on the first poll.
    #[test]
    fn inline_jobs_off_a_current_thread_runtime_run_at_once() {
        use futures_util::FutureExt;
        let pool = InferencePool::with_inline(1, 4, 4, 2);
        let at_once = |pool: &Arc<InferencePool>| {
            pool.run_inline(|i, r: Responder<usize>| r.send(i))
                .now_or_never()
                .map(|r| r.unwrap())
        };
        assert!(at_once(&pool).is_some(), "outside any runtime");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap();
        let p = pool.clone();
        let answered = rt.block_on(async move {
            let callers: Vec<_> = (0..64)
                .map(|_| {
                    let p = p.clone();
                    tokio::spawn(async move { at_once(&p) })
                })
                .collect();
            let mut answered = 0;
            for caller in callers {
                answered += usize::from(caller.await.unwrap().is_some());
            }
            answered
        });
        assert_eq!(answered, 64, "every job answered on its first poll");
        let current = event_loop();
        assert!(
            current.block_on(async { at_once(&pool) }).is_none(),
            "a current-thread runtime's caller waits for its turn"
        );
    }

    /// A job that hands its answer on is answered by whoever sends it, on any worker; one
    /// dropped unsent answers with an error, never leaves its caller waiting.
    #[test]
    fn a_responder_handed_on_answers_from_deferred_work() {
        let rt = event_loop();
        let pool = InferencePool::new(1, 4);
        let p = pool.clone();
        let answer = rt.block_on(pool.run_responding(move |_, r: Responder<usize>| {
            // Deferred while nothing is queued: it runs as soon as this job ends.
            p.defer(
                Instant::now() + std::time::Duration::from_secs(3600),
                move |w| r.send(w + 7),
            );
        }));
        assert_eq!(answer.unwrap(), 7);
        let dropped: Result<usize, _> = rt.block_on(pool.run_responding(|_, r| drop(r)));
        assert!(
            matches!(dropped, Err(SubmitError::Failed(_))),
            "{dropped:?}"
        );
        let panicked: Result<usize, _> = rt.block_on(pool.run_responding(|_, _r| panic!("boom")));
        assert!(
            matches!(&panicked, Err(SubmitError::Panicked(m)) if m == "boom"),
            "{panicked:?}"
        );
    }

    /// Deferred work waits while requests are queued (they may join it) and runs once the
    /// queue is empty; when its time is due it runs before the queued requests.
    #[test]
    fn deferred_work_runs_when_the_queue_empties_or_when_due() {
        for (due_in, order) in [(3600, ["A", "B", "X"]), (0, ["A", "X", "B"])] {
            let pool = InferencePool::new(1, 4);
            let seen = Arc::new(Mutex::new(Vec::new()));
            let (started_tx, started_rx) = std::sync::mpsc::channel();
            let (p, s) = (pool.clone(), seen.clone());
            let first = std::thread::spawn(move || {
                let q = p.clone();
                p.run_blocking(move |_| {
                    started_tx.send(()).unwrap();
                    wait_until("B queued", || q.queued() == 1);
                    s.lock().unwrap().push("A");
                    let s = s.clone();
                    let due = Instant::now() + std::time::Duration::from_secs(due_in);
                    q.defer(due, move |_| s.lock().unwrap().push("X"));
                })
            });
            started_rx.recv().unwrap();
            let s = seen.clone();
            pool.run_blocking(move |_| s.lock().unwrap().push("B"))
                .unwrap();
            first.join().unwrap().unwrap();
            wait_until("X ran", || seen.lock().unwrap().len() == 3);
            assert_eq!(*seen.lock().unwrap(), order, "due in {due_in} s");
        }
    }

    #[test]
    fn a_panicking_job_is_an_error_and_the_worker_survives() {
        let pool = InferencePool::new(1, 4);
        let r: Result<(), _> = pool.run_blocking(|_| panic!("boom"));
        assert!(matches!(r, Err(SubmitError::Panicked(m)) if m == "boom"));
        assert_eq!(pool.run_blocking(|w| w + 41).unwrap(), 41);
    }

    #[test]
    fn requests_run_before_background_work_and_a_full_background_queue_refuses() {
        let pool = InferencePool::with_background(1, 4, 1);
        let order = Arc::new(Mutex::new(Vec::new()));
        // Hold the only worker while work queues up behind it.
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let gate = Arc::new(Barrier::new(2));
        let (g, p) = (gate.clone(), pool.clone());
        let blocker = std::thread::spawn(move || {
            p.run_blocking(move |_| {
                started_tx.send(()).unwrap();
                g.wait();
            })
        });
        started_rx.recv().unwrap();
        let o = order.clone();
        assert!(pool.try_background(move |_| o.lock().unwrap().push("background")));
        // The background queue holds one job: the next is refused, not waited for.
        assert!(!pool.try_background(|_| ()));
        let (o, p) = (order.clone(), pool.clone());
        let request =
            std::thread::spawn(move || p.run_blocking(move |_| o.lock().unwrap().push("request")));
        while pool.queued() == 0 {
            std::thread::yield_now();
        }
        gate.wait();
        blocker.join().unwrap().unwrap();
        request.join().unwrap().unwrap();
        // The background job runs once the worker is idle.
        while order.lock().unwrap().len() < 2 {
            std::thread::yield_now();
        }
        assert_eq!(*order.lock().unwrap(), ["request", "background"]);
    }

    #[test]
    fn async_run_reports_panics_and_full_queues() {
        let rt = event_loop();
        let pool = InferencePool::new(1, 1);
        rt.block_on(async {
            let r: Result<(), _> = pool.run(|_| panic!("{}", String::from("owned"))).await;
            assert!(matches!(r, Err(SubmitError::Panicked(m)) if m == "owned"));
            assert_eq!(pool.run(|_| 7).await.unwrap(), 7);
        });
        // Hold the only worker, fill the one queue slot: the next job is refused at once.
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let gate = Arc::new(Barrier::new(2));
        let g = gate.clone();
        let p = pool.clone();
        let blocker = std::thread::spawn(move || {
            p.run_blocking(move |_| {
                started_tx.send(()).unwrap();
                g.wait();
            })
        });
        started_rx.recv().unwrap();
        let p = pool.clone();
        let queued = std::thread::spawn(move || p.run_blocking(|_| ()));
        while pool.queued() == 0 {
            std::thread::yield_now();
        }
        let r = rt.block_on(pool.run(|_| ()));
        assert!(matches!(r, Err(SubmitError::Full(1))), "{r:?}");
        gate.wait();
        blocker.join().unwrap().unwrap();
        queued.join().unwrap().unwrap();
    }

    /// Whether thread `tid` of this process is asleep (blocked), from /proc.
    fn asleep(tid: libc::pid_t) -> bool {
        std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).is_ok_and(|stat| {
            stat.rsplit(')')
                .next()
                .unwrap()
                .trim_start()
                .starts_with('S')
        })
    }

    fn wait_until(what: &str, condition: impl FnMut() -> bool) {
        crate::testing::eventually(what, std::time::Duration::from_secs(10), condition);
    }

    /// A job that holds its worker until the test says so; the receiver says it started.
    fn hold(
        pool: &Arc<InferencePool>,
    ) -> (std::sync::mpsc::Sender<()>, std::sync::mpsc::Receiver<()>) {
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let pool = pool.clone();
        std::thread::spawn(move || {
            pool.run_blocking(move |_| {
                started_tx.send(()).unwrap();
                release_rx.recv().unwrap();
            })
        });
        (release_tx, started_rx)
    }

    #[test]
    fn concurrent_broadcasts_take_turns_instead_of_deadlocking() {
        // Two workers, a queue of one. Both workers held and the slot taken by a held job F,
        // two broadcasters X and Y block on their first job. Freeing the slot lets X's first
        // job in; X then waits for the slot behind Y. Without turns, the next free slot goes
        // to Y's first job: each group holds one worker at its barrier, forever. With turns,
        // Y waits for X to finish and the slot goes to X's second job.
        let pool = InferencePool::new(2, 1);
        for _round in 0..3 {
            let (release_0, started_0) = hold(&pool);
            let (release_1, started_1) = hold(&pool);
            started_0.recv().unwrap();
            started_1.recv().unwrap();
            let (release_f, started_f) = hold(&pool);
            wait_until("F queued", || pool.queued() == 1);
            let (done_tx, done_rx) = std::sync::mpsc::channel();
            let (tid_tx, tid_rx) = std::sync::mpsc::channel();
            for _ in 0..2 {
                let (pool, done, tid) = (pool.clone(), done_tx.clone(), tid_tx.clone());
                std::thread::spawn(move || {
                    // SAFETY: gettid has no preconditions.
                    tid.send(unsafe { libc::gettid() }).unwrap();
                    done.send(pool.run_on_each_worker(|_| Ok(())).is_ok())
                        .unwrap();
                });
            }
            let tids = [tid_rx.recv().unwrap(), tid_rx.recv().unwrap()];
            // Both broadcasters are blocked: on the full queue, or waiting for their turn.
            wait_until("both broadcasters blocked", || {
                tids.iter().all(|&t| asleep(t))
            });
            assert_eq!(pool.queued(), 1);
            // A worker takes F (and keeps it): the slot goes to a broadcaster's first job.
            release_0.send(()).unwrap();
            started_f.recv().unwrap();
            wait_until("a broadcast job queued", || pool.queued() == 1);
            // The other worker takes that job; then F ends and its worker takes the next.
            release_1.send(()).unwrap();
            release_f.send(()).unwrap();
            for _ in 0..2 {
                let ok = done_rx
                    .recv_timeout(std::time::Duration::from_secs(5))
                    .expect("broadcasts deadlocked");
                assert!(ok);
            }
        }
    }

    #[test]
    fn run_on_each_worker_reaches_every_worker_once() {
        let pool = InferencePool::new(3, 1);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        pool.run_on_each_worker(move |w| {
            s.lock().unwrap().push(w);
            Ok(())
        })
        .unwrap();
        let mut seen = seen.lock().unwrap().clone();
        seen.sort();
        assert_eq!(seen, vec![0, 1, 2]);
        let err = pool.run_on_each_worker(|w| if w == 1 { Err("bad".into()) } else { Ok(()) });
        assert!(matches!(err, Err(SubmitError::Failed(m)) if m == "bad"));
    }
}
