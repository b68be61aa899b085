//! Helpers for the crate's unit tests.

use std::time::{Duration, Instant};

/// Waits until `condition` holds, looking every millisecond; panics naming `what` once `limit`
/// has passed without it.
pub(crate) fn eventually(what: &str, limit: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !condition() {
        assert!(Instant::now() < deadline, "waited {limit:?} for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}
