//! Follows the registry: file events (debounced, for the file registry) and a periodic poll
//! both ask the updater to refresh every endpoint; a refresh that finds nothing changed costs
//! one alias lookup. While the registry is unreachable the poll backs off exponentially (from
//! one second up to five minutes) and the served versions stay.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, RecvTimeoutError};
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tracing::{info, warn};

use super::directory::Endpoints;
use super::updater::{SwapOutcome, Trigger, Updater};

const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// Stops the follow thread when dropped.
pub struct WatchHandle {
    stop: Arc<AtomicBool>,
}

impl Drop for WatchHandle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The next wait: the poll interval while the registry answers, else a doubling backoff.
fn next_wait(current: Option<Duration>, registry_down: bool, poll: Duration) -> Option<Duration> {
    registry_down.then(|| {
        current
            .map_or(Duration::from_secs(1), |d| (d * 2).min(MAX_BACKOFF))
            .min(poll.max(MAX_BACKOFF))
    })
}

fn is_change(kind: &notify::EventKind) -> bool {
    use notify::EventKind;
    matches!(
        kind,
        EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_) | EventKind::Any
    )
}

/// Starts the follow thread; file events only when `root` is given (and the watcher starts).
pub fn spawn(
    root: Option<&Path>,
    endpoints: Arc<Endpoints>,
    updater: Arc<Updater>,
    poll: Duration,
    settle: Duration,
) -> WatchHandle {
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = channel::<()>();
    let watcher = root.and_then(|root| {
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            // Only changes: reads (our own refreshes open aliases.yaml) must not retrigger.
            if event.is_ok_and(|e| is_change(&e.kind)) {
                let _ = tx.send(());
            }
        })
        .and_then(|mut w| w.watch(root, RecursiveMode::Recursive).map(|()| w));
        match watcher {
            Ok(w) => Some(w),
            Err(e) => {
                warn!(
                    "cannot watch {} ({e}); following the registry by polling every {poll:?}",
                    root.display()
                );
                None
            }
        }
    });
    let thread_stop = stop.clone();
    std::thread::Builder::new()
        .name("modelgate-registry-follow".into())
        .spawn(move || {
            let watching = watcher.is_some();
            let _watcher = watcher;
            info!(
                file_events = watching,
                "following the registry, polling every {poll:?}"
            );
            let mut backoff: Option<Duration> = None;
            while !thread_stop.load(Ordering::Relaxed) {
                let trigger = match rx.recv_timeout(backoff.unwrap_or(poll)) {
                    Ok(()) => {
                        // Let a burst of events (a copy, an editor's save) finish first.
                        std::thread::sleep(settle);
                        while rx.try_recv().is_ok() {}
                        Trigger::Watch
                    }
                    Err(RecvTimeoutError::Timeout) => Trigger::Poll,
                    // No file watcher: only the poll.
                    Err(RecvTimeoutError::Disconnected) => {
                        std::thread::sleep(backoff.unwrap_or(poll));
                        Trigger::Poll
                    }
                };
                if thread_stop.load(Ordering::Relaxed) {
                    break;
                }
                // Every served entity is refreshed, whatever the others' outcome.
                let outcomes: Vec<SwapOutcome> = endpoints
                    .list()
                    .iter()
                    .flat_map(|ep| ep.generation().slots.clone())
                    .map(|slot| updater.refresh(&slot, trigger, false))
                    .collect();
                let down = outcomes
                    .iter()
                    .any(|o| matches!(o, SwapOutcome::RegistryUnavailable(_)));
                backoff = next_wait(backoff, down, poll);
            }
        })
        .expect("spawning the registry follow thread");
    WatchHandle { stop }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_and_resets() {
        let poll = Duration::from_secs(10);
        let mut wait = None;
        let mut seen = Vec::new();
        for _ in 0..12 {
            wait = next_wait(wait, true, poll);
            seen.push(wait.unwrap().as_secs());
        }
        assert_eq!(seen[..4], [1, 2, 4, 8]);
        assert_eq!(*seen.last().unwrap(), 300);
        assert_eq!(next_wait(wait, false, poll), None);
    }
}
