//! A shard's compactions ([`super::compact`]), on a thread of their own.
//!
//! A compaction rewrites up to `compact_max_bytes` of small files, and at the writer's nice
//! value on a core busy with requests it takes a second or more (0.5 to 1.6 s at 13,000
//! logged requests a second on one core). Run by the writer, it stopped the shard's commits for
//! that long: the queue grew past the catch-up mark, and the catch-up thread then committed the
//! backlog at the serving threads' priority, taking about half of the core from requests for a
//! few hundred milliseconds, a few times a minute. On its own thread, at the writer's nice
//! value, it leaves the writer committing as usual. Its swap is committed against the
//! writer's appends as against another process's (only files still live are removed, and
//! blind appends never conflict).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender};
use deltalake::DeltaTable;

use super::delta::{DeltaSink, SinkError};
use super::priority;
use crate::metrics::labels::{LogTable, Outcome};
use crate::metrics::Metrics;

/// Compactions that may wait for the thread; one asked for beyond them is skipped (the table
/// is due again after `compact_every_commits` more commits).
const WAITING: usize = 16;

/// A compaction asked for: the table as the writer last committed to it.
pub(super) struct Job {
    pub uri: String,
    pub table: DeltaTable,
    pub endpoint: Arc<str>,
    pub kind: LogTable,
}

/// The handle of a shard's compaction thread; the thread ends once this is dropped and the
/// compaction in hand (if any) has ended.
pub(super) struct Compactor {
    jobs: Sender<Job>,
}

impl Compactor {
    /// Starts the thread `log-compact-{index}` at nice value `nice`, with a Delta sink of its
    /// own (`storage_options`); each compaction is abandoned once `stop` is set.
    pub(super) fn start(
        index: usize,
        storage_options: std::collections::HashMap<String, String>,
        nice: i32,
        max_bytes: u64,
        metrics: Arc<Metrics>,
        stop: Arc<OnceLock<Instant>>,
    ) -> std::io::Result<Self> {
        let (jobs, waiting) = crossbeam_channel::bounded(WAITING);
        let sink = DeltaSink::new(storage_options, nice)?;
        std::thread::Builder::new()
            .name(format!("log-compact-{index}"))
            .spawn(move || {
                priority::lower_this_thread(nice);
                run(sink, &waiting, max_bytes, &metrics, &stop);
            })?;
        Ok(Self { jobs })
    }

    /// Asks for `job`; false when [`WAITING`] compactions wait already (it is skipped).
    pub(super) fn ask(&self, job: Job) -> bool {
        self.jobs.try_send(job).is_ok()
    }
}

fn run(
    sink: DeltaSink,
    waiting: &Receiver<Job>,
    max_bytes: u64,
    metrics: &Metrics,
    stop: &OnceLock<Instant>,
) {
    for job in waiting {
        if stop.get().is_some() {
            // Shutdown: what is queued goes first, and the table is whole without this.
            continue;
        }
        let started = Instant::now();
        let Job {
            uri,
            table,
            endpoint,
            kind,
        } = job;
        let result = catch_unwind(AssertUnwindSafe(|| {
            sink.compact_table(&uri, table, max_bytes, stop).0
        }))
        .unwrap_or_else(|_| {
            Err(SinkError::Table {
                uri: uri.clone(),
                message: "the compaction panicked".into(),
            })
        });
        let outcome = match result {
            Ok(done) => {
                if done.files_removed > 0 {
                    tracing::info!(table = %uri, files = done.files_removed, into = done.files_added, rows = done.rows, elapsed_ms = started.elapsed().as_millis() as u64, "inference table compacted");
                    metrics
                        .log
                        .compacted_files
                        .with_label_values(&[&*endpoint, kind.as_str()])
                        .inc_by(done.files_removed as u64);
                }
                Outcome::Success
            }
            Err(e) => {
                tracing::warn!(table = %uri, "inference table not compacted (its rows are as they were): {e}");
                Outcome::Failure
            }
        };
        metrics
            .log
            .compactions
            .with_label_values(&[&*endpoint, kind.as_str(), outcome.as_str()])
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::Duration;

    use deltalake::arrow::array::{ArrayRef, Int64Array};
    use deltalake::arrow::record_batch::RecordBatch;

    use super::*;
    use crate::inference_log::delta::Txn;

    /// A table at `uri` with one small file per id, as a writer's sink holds it.
    fn table_of_small_files(uri: &str, ids: &[i64]) -> DeltaTable {
        let mut sink = DeltaSink::new(HashMap::new(), 0).unwrap();
        for (n, id) in ids.iter().enumerate() {
            let column: ArrayRef = Arc::new(Int64Array::from(vec![*id]));
            let batch = RecordBatch::try_from_iter([("id", column)]).unwrap();
            let txn = Txn {
                app_id: "test".into(),
                version: n as i64 + 1,
            };
            sink.append(uri, &batch, &txn, false, &OnceLock::new())
                .unwrap();
        }
        sink.opened(uri).unwrap()
    }

    fn job(uri: &str, table: DeltaTable) -> Job {
        Job {
            uri: uri.to_owned(),
            table,
            endpoint: "e".into(),
            kind: LogTable::Predictions,
        }
    }

    fn compactions(metrics: &Metrics, outcome: &str) -> u64 {
        metrics
            .log
            .compactions
            .with_label_values(&["e", "predictions", outcome])
            .get()
    }

    /// Asking returns at once; the thread compacts the table and counts it.
    #[test]
    fn an_asked_for_compaction_is_done_and_counted_by_the_thread() {
        let dir = tempfile::tempdir().unwrap();
        let uri = dir.path().join("t").display().to_string();
        let table = table_of_small_files(&uri, &[1, 2, 3]);
        let metrics = Arc::new(Metrics::new());
        let stop = Arc::new(OnceLock::new());
        let compactor =
            Compactor::start(0, HashMap::new(), 0, 1 << 20, metrics.clone(), stop).unwrap();
        assert!(compactor.ask(job(&uri, table)));
        let deadline = Instant::now() + Duration::from_secs(20);
        while compactions(&metrics, "success") == 0 {
            assert!(Instant::now() < deadline, "no compaction");
            std::thread::sleep(Duration::from_millis(10));
        }
        let files = metrics
            .log
            .compacted_files
            .with_label_values(&["e", "predictions"])
            .get();
        assert_eq!(files, 3);
        assert_eq!(compactions(&metrics, "failure"), 0);
    }

    /// With its waiting line full, a compaction asked for is skipped, not waited for.
    #[test]
    fn a_compaction_beyond_the_waiting_line_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let uri = dir.path().join("t").display().to_string();
        let table = table_of_small_files(&uri, &[1]);
        // The thread's end of the line, held here: nothing is taken from it.
        let (jobs, _waiting) = crossbeam_channel::bounded(WAITING);
        let compactor = Compactor { jobs };
        for _ in 0..WAITING {
            assert!(compactor.ask(job(&uri, table.clone())));
        }
        assert!(!compactor.ask(job(&uri, table)));
    }
}
