//! The writer's threads at a lower CPU priority than the serving threads.
//!
//! Encoding and committing a batch is CPU work of tens of milliseconds, and on a busy core it
//! competes with the HTTP workers. With a higher nice value the scheduler gives the writer a
//! smaller share while requests are runnable, so a commit spreads over idle moments instead of
//! holding the core for its whole length; on an idle core it runs at full speed.

/// The nice value `by` above the calling thread's (capped at 19), computed once so that
/// threads started from an already lowered one (the Delta writer's I/O threads inherit the
/// writer's) land on the same value rather than lower still.
pub fn target(by: i32) -> i32 {
    (current().unwrap_or(0) + by.max(0)).min(19)
}

/// Sets the calling thread's nice value to `nice` when that is lower in priority than it has
/// (Linux: per thread). A failure is logged, not fatal: the thread then runs at the serving
/// threads' priority.
pub fn lower_this_thread(nice: i32) {
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

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    fn this_thread() -> i32 {
        current().expect("getpriority")
    }

    #[test]
    fn a_thread_is_lowered_alone() {
        let before = this_thread();
        let want = target(7);
        assert_eq!(want, (before + 7).min(19));
        let (lowered, child) = std::thread::spawn(move || {
            lower_this_thread(want);
            // A thread it starts inherits the value; lowering it to the same target again
            // leaves it there (not 7 lower still).
            let child = std::thread::spawn(move || {
                lower_this_thread(want);
                this_thread()
            });
            (this_thread(), child.join().unwrap())
        })
        .join()
        .unwrap();
        assert_eq!(lowered, want);
        assert_eq!(child, want);
        assert_eq!(this_thread(), before, "only the calling thread changes");
    }
}
