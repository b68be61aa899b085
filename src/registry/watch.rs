//! Follows the file registry: file events (debounced) and a periodic rescan both ask the
//! updater to refresh every endpoint; a refresh that finds nothing changed costs one alias read.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, RecvTimeoutError};
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tracing::{info, warn};

use crate::endpoint::updater::{Trigger, Updater};
use crate::endpoint::Endpoint;

/// Stops the watcher thread when dropped.
pub struct WatchHandle {
    stop: Arc<AtomicBool>,
}

impl Drop for WatchHandle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Starts the watch thread. File events are optional (the rescan still runs when the watcher
/// cannot start, with a warning).
pub fn spawn(
    root: &Path,
    endpoints: Vec<Arc<Endpoint>>,
    updater: Arc<Updater>,
    poll: Duration,
    settle: Duration,
) -> WatchHandle {
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = channel::<()>();
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok() {
            let _ = tx.send(());
        }
    })
    .and_then(|mut w| w.watch(root, RecursiveMode::Recursive).map(|()| w));
    let watcher = match watcher {
        Ok(w) => Some(w),
        Err(e) => {
            warn!(
                "cannot watch {} ({e}); following the registry by rescanning every {poll:?}",
                root.display()
            );
            None
        }
    };
    let thread_stop = stop.clone();
    std::thread::Builder::new()
        .name("modelgate-registry-watch".into())
        .spawn(move || {
            let _watcher = watcher;
            info!("following the registry: file events, and a rescan every {poll:?}");
            while !thread_stop.load(Ordering::Relaxed) {
                let trigger = match rx.recv_timeout(poll) {
                    Ok(()) => {
                        // Let a burst of events (a copy, an editor's save) finish first.
                        std::thread::sleep(settle);
                        while rx.try_recv().is_ok() {}
                        Trigger::Watch
                    }
                    Err(RecvTimeoutError::Timeout) => Trigger::Poll,
                    Err(RecvTimeoutError::Disconnected) => {
                        std::thread::sleep(poll);
                        Trigger::Poll
                    }
                };
                if thread_stop.load(Ordering::Relaxed) {
                    break;
                }
                for ep in &endpoints {
                    updater.refresh(ep, trigger, false);
                }
            }
        })
        .expect("spawning the registry watch thread");
    WatchHandle { stop }
}
