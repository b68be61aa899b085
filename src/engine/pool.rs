//! The bounded inference worker pool: inference never runs on the HTTP workers.
//!
//! A fixed set of OS threads takes jobs from one bounded queue. A job learns its worker index,
//! so an engine that needs a session per thread (ort) picks its own without contention. When
//! the queue is full the caller is refused at once (503), never parked.

use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};

type Job = Box<dyn FnOnce(usize) + Send + 'static>;

#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("the inference queue is full ({0} requests waiting)")]
    Full(usize),
    #[error("the inference pool is shut down")]
    Closed,
}

pub struct InferencePool {
    sender: Sender<Job>,
    workers: usize,
    capacity: usize,
    handles: std::sync::Mutex<Vec<JoinHandle<()>>>,
}

impl InferencePool {
    pub fn new(workers: usize, capacity: usize) -> Arc<Self> {
        let workers = workers.max(1);
        let (sender, receiver) = bounded::<Job>(capacity.max(1));
        let handles = (0..workers)
            .map(|index| {
                let rx: Receiver<Job> = receiver.clone();
                std::thread::Builder::new()
                    .name(format!("modelgate-infer-{index}"))
                    .spawn(move || {
                        while let Ok(job) = rx.recv() {
                            job(index);
                        }
                    })
                    .expect("spawning an inference worker thread")
            })
            .collect();
        Arc::new(Self {
            sender,
            workers,
            capacity,
            handles: std::sync::Mutex::new(handles),
        })
    }

    pub fn workers(&self) -> usize {
        self.workers
    }

    /// Requests waiting for a worker now.
    pub fn queued(&self) -> usize {
        self.sender.len()
    }

    /// Runs `f` on a worker and awaits its result; refuses at once when the queue is full.
    pub async fn run<T, F>(&self, f: F) -> Result<T, SubmitError>
    where
        T: Send + 'static,
        F: FnOnce(usize) -> T + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |worker| {
            let _ = tx.send(f(worker));
        });
        self.sender.try_send(job).map_err(|e| match e {
            TrySendError::Full(_) => SubmitError::Full(self.capacity),
            TrySendError::Disconnected(_) => SubmitError::Closed,
        })?;
        rx.await.map_err(|_| SubmitError::Closed)
    }

    /// Runs `f` on a worker from blocking code (loading, warm-up), waiting for a queue slot.
    pub fn run_blocking<T, F>(&self, f: F) -> Result<T, SubmitError>
    where
        T: Send + 'static,
        F: FnOnce(usize) -> T + Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let job: Job = Box::new(move |worker| {
            let _ = tx.send(f(worker));
        });
        self.sender.send(job).map_err(|_| SubmitError::Closed)?;
        rx.recv().map_err(|_| SubmitError::Closed)
    }
}

impl Drop for InferencePool {
    fn drop(&mut self) {
        // Workers end when the last sender is gone; the channel closes with `self.sender`.
        let handles = std::mem::take(&mut *self.handles.lock().unwrap_or_else(|e| e.into_inner()));
        let (dummy, _) = bounded::<Job>(0);
        drop(std::mem::replace(&mut self.sender, dummy));
        for h in handles {
            let _ = h.join();
        }
    }
}
