//! A thread that does one thing every interval until its handle is dropped: the promotion
//! evaluations' looks and the fleet's syncs run on such threads.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The thread of [`spawn`]; dropping it stops the thread after the step under way (without
/// waiting for it: a step may take long, and a drop may happen on an async worker).
pub struct Periodic {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Runs `step` on a thread named `name` at once, then again `interval` after each step ends,
/// until the handle is dropped. What `step` owns is dropped on that thread when it ends.
pub fn spawn(
    name: &str,
    interval: Duration,
    mut step: impl FnMut() + Send + 'static,
) -> std::io::Result<Periodic> {
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = stop.clone();
    let thread = std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            while !stopped.load(Ordering::Acquire) {
                step();
                std::thread::park_timeout(interval);
            }
        })?;
    Ok(Periodic {
        stop,
        thread: Some(thread),
    })
}

impl Periodic {
    /// The thread, for another to wake it before its interval ends (`unpark`): its next step
    /// then begins at once.
    pub fn waker(&self) -> std::thread::Thread {
        self.thread
            .as_ref()
            .expect("the thread is taken only when the handle drops")
            .thread()
            .clone()
    }
}

impl Drop for Periodic {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::time::Instant;

    /// Sets its flag when dropped: the step's state, dropped when the thread ends.
    struct Ended(Arc<AtomicBool>);

    impl Drop for Ended {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Release);
        }
    }

    fn within(limit: Duration, condition: impl Fn() -> bool) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if condition() {
                return true;
            }
            std::thread::yield_now();
        }
        condition()
    }

    #[test]
    fn steps_repeat_until_the_handle_is_dropped_and_the_state_goes_with_the_thread() {
        let steps = Arc::new(AtomicUsize::new(0));
        let ended = Arc::new(AtomicBool::new(false));
        let (counted, guard) = (steps.clone(), Ended(ended.clone()));
        let handle = spawn("periodic-test", Duration::from_millis(1), move || {
            let _state = &guard;
            counted.fetch_add(1, Ordering::AcqRel);
        })
        .unwrap();
        assert!(within(Duration::from_secs(10), || steps
            .load(Ordering::Acquire)
            >= 3));
        assert!(!ended.load(Ordering::Acquire));
        // A long interval: the drop wakes the thread rather than waiting it out.
        drop(handle);
        assert!(within(Duration::from_secs(10), || ended.load(Ordering::Acquire)));
    }
}
