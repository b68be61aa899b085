//! The writer's threads at a lower CPU priority than the serving threads.
//!
//! Encoding and committing a batch is CPU work of tens of milliseconds, and on a busy core it
//! competes with the HTTP workers. With a higher nice value the scheduler gives the writer a
//! smaller share while requests are runnable, so a commit spreads over idle moments instead of
//! holding the core for its whole length; on an idle core it runs at full speed.

/// Raises the calling thread's nice value by `by` (capped at 19; Linux: per thread). A
/// failure is logged, not fatal: the writer then runs at the serving threads' priority.
pub fn lower_this_thread(by: i32) {
    if by <= 0 {
        return;
    }
    if let Err(e) = set_nice(by) {
        tracing::warn!(by, error = %e, "could not lower the inference-log writer's priority");
    }
}

#[cfg(target_os = "linux")]
fn set_nice(by: i32) -> std::io::Result<()> {
    // SAFETY: gettid, getpriority and setpriority take and return plain integers; errno is
    // cleared first since -1 is also a valid nice value.
    let rc = unsafe {
        let tid = libc::gettid() as libc::id_t;
        *libc::__errno_location() = 0;
        let now = libc::getpriority(libc::PRIO_PROCESS, tid);
        if now == -1 && *libc::__errno_location() != 0 {
            -1
        } else {
            libc::setpriority(libc::PRIO_PROCESS, tid, (now + by).min(19))
        }
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
fn set_nice(_by: i32) -> std::io::Result<()> {
    // Elsewhere nice applies to the whole process, which would slow the serving threads too.
    Ok(())
}

/// The calling thread's nice value (Linux), for tests.
#[cfg(all(test, target_os = "linux"))]
pub fn this_thread() -> i32 {
    // SAFETY: as above; errno is cleared first since -1 is also a valid nice value.
    unsafe {
        *libc::__errno_location() = 0;
        libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t)
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn a_thread_is_lowered_alone() {
        let before = this_thread();
        let lowered = std::thread::spawn(|| {
            lower_this_thread(7);
            this_thread()
        })
        .join()
        .unwrap();
        assert_eq!(lowered, (before + 7).min(19));
        assert_eq!(this_thread(), before, "only the calling thread changes");
    }
}
