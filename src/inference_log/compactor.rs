//! A shard's compactions ([`super::compact`]), on a thread of their own.
//!
//! A compaction rewrites up to `compact_max_bytes` of small files, and at the writer's nice
//! value on a core busy with requests it takes a second or more (0.5 to 1.6 s at 13,000
//! logged requests a second on one core). Run by the writer, it stopped the shard's commits for
//! that long: the queue grew past the catch-up mark, and the catch-up thread then committed the
//! backlog at the serving threads' priority, taking about half of the core from requests for a
//! few hundred milliseconds, a few times a minute. On its own thread, at the writer's priority
//! (its nice value, and for local tables the idle scheduling class), it leaves the writer
//! committing as usual. Its swap is committed against the
//! writer's appends as against another process's (only files still live are removed, and
//! blind appends never conflict).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender, TrySendError};
use deltalake::DeltaTable;

use super::delta::{self, SinkError};
use super::priority::Priority;
use crate::metrics::labels::{CompactionOutcome, LogTable};
use crate::metrics::Metrics;

/// Compactions that may wait for the thread; one asked for beyond them is skipped and counted
/// (`outcome="skipped"`; the table is due again after `compact_every_commits` more commits).
pub(super) const WAITING: usize = 16;

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
    metrics: Arc<Metrics>,
    /// A table's commits by the writer between two compactions it asks for.
    pub every: u32,
}

impl Compactor {
    /// Starts the thread `log-compact-{index}` at `priority`, with a Delta runtime of
    /// its own (its I/O threads `log-compact-io`, at the same priority, apart from the
    /// writer's so that neither waits on the other's work; the tables come open with their
    /// jobs); each compaction is abandoned once `stop` is set.
    pub(super) fn start(
        index: usize,
        every: u32,
        priority: Priority,
        max_bytes: u64,
        metrics: Arc<Metrics>,
        stop: Arc<OnceLock<Instant>>,
    ) -> std::io::Result<Self> {
        let (jobs, waiting) = crossbeam_channel::bounded(WAITING);
        let runtime = delta::io_runtime("log-compact-io", priority)?;
        let counted = metrics.clone();
        std::thread::Builder::new()
            .name(format!("log-compact-{index}"))
            .spawn(move || {
                priority.lower_this_thread();
                run(&runtime, &waiting, max_bytes, &counted, &stop);
            })?;
        Ok(Self {
            jobs,
            metrics,
            every,
        })
    }

    /// Asks for `job` without waiting: skipped, and counted, when [`WAITING`] compactions wait
    /// already (or the thread has stopped).
    pub(super) fn ask(&self, job: Job) {
        let job = match self.jobs.try_send(job) {
            Ok(()) => return,
            Err(TrySendError::Full(job)) => {
                tracing::debug!(table = %job.uri, "compaction skipped: {WAITING} wait already");
                job
            }
            Err(TrySendError::Disconnected(job)) => {
                tracing::warn!(table = %job.uri, "compaction skipped: the compaction thread has stopped");
                job
            }
        };
        count(
            &self.metrics,
            &job.endpoint,
            job.kind,
            CompactionOutcome::Skipped,
        );
    }
}

fn count(metrics: &Metrics, endpoint: &str, kind: LogTable, outcome: CompactionOutcome) {
    metrics
        .log
        .compactions
        .with_label_values(&[endpoint, kind.as_str(), outcome.as_str()])
        .inc();
}

fn run(
    runtime: &tokio::runtime::Runtime,
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
            mut table,
            endpoint,
            kind,
        } = job;
        let result = catch_unwind(AssertUnwindSafe(|| {
            delta::compact_table(runtime, &uri, &mut table, max_bytes, stop)
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
                CompactionOutcome::Success
            }
            // Shutdown began: not a failure, and the table is whole either way.
            Err(SinkError::Abandoned { .. }) => {
                tracing::info!(table = %uri, "compaction abandoned: the gateway is stopping");
                continue;
            }
            Err(e) => {
                tracing::warn!(table = %uri, "inference table not compacted (its rows are as they were): {e}");
                CompactionOutcome::Failure
            }
        };
        count(metrics, &endpoint, kind, outcome);
    }
}

#[cfg(test)]
pub(super) mod tests {
    use std::collections::HashMap;
    use std::time::Duration;

    use deltalake::arrow::array::{ArrayRef, Int64Array};
    use deltalake::arrow::record_batch::RecordBatch;

    use super::*;
    use crate::inference_log::delta::{DeltaSink, Io, Txn};

    /// Appends one small file per id to the table at `uri` through `sink`, as batches
    /// `first`, `first + 1`, ... of a writer.
    fn append_ids(sink: &mut DeltaSink, uri: &str, ids: &[i64], first: i64) {
        for (n, id) in ids.iter().enumerate() {
            let column: ArrayRef = Arc::new(Int64Array::from(vec![*id]));
            let batch = RecordBatch::try_from_iter([("id", column)]).unwrap();
            let txn = Txn {
                app_id: "test".into(),
                version: first + n as i64,
            };
            sink.append(uri, &batch, &txn, false, Io::Niced, &OnceLock::new())
                .unwrap();
        }
    }

    /// A table at `uri` with one small file per id, as a writer's sink holds it.
    fn table_of_small_files(uri: &str, ids: &[i64]) -> DeltaTable {
        let mut sink = DeltaSink::new(HashMap::new(), Priority::SERVING).unwrap();
        append_ids(&mut sink, uri, ids, 1);
        sink.opened(uri).unwrap()
    }

    /// The live files of the table at `uri` and the rows their statistics count, as a fresh
    /// reader of its log sees them.
    pub(in crate::inference_log) fn live_files_and_rows(uri: &str) -> (usize, usize) {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            let url = deltalake::ensure_table_uri(uri).unwrap();
            let table = DeltaTable::try_from_url(url).await.unwrap();
            let snapshot = table.snapshot().unwrap();
            let files = snapshot.log_data();
            let rows = files.iter().map(|f| f.num_records().unwrap()).sum();
            (files.num_files(), rows)
        })
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
            Compactor::start(0, 1, Priority::SERVING, 1 << 20, metrics.clone(), stop).unwrap();
        compactor.ask(job(&uri, table));
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

    /// With its waiting line full, a compaction asked for is skipped and counted, not waited
    /// for.
    #[test]
    fn a_compaction_beyond_the_waiting_line_is_skipped_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let uri = dir.path().join("t").display().to_string();
        let table = table_of_small_files(&uri, &[1]);
        let metrics = Arc::new(Metrics::new());
        // The thread's end of the line, held here: nothing is taken from it.
        let (jobs, waiting) = crossbeam_channel::bounded(WAITING);
        let compactor = Compactor {
            jobs,
            metrics: metrics.clone(),
            every: 1,
        };
        for _ in 0..=WAITING {
            compactor.ask(job(&uri, table.clone()));
        }
        assert_eq!(waiting.len(), WAITING);
        assert_eq!(compactions(&metrics, "skipped"), 1);
    }

    /// The writer appends on its own copy of the table after the compaction thread swapped
    /// files under it (a version it has not seen): the append lands, and every row is in the
    /// table once.
    #[test]
    fn the_writer_appends_after_a_swap_it_has_not_seen() {
        let dir = tempfile::tempdir().unwrap();
        let uri = dir.path().join("t").display().to_string();
        let mut writer = DeltaSink::new(HashMap::new(), Priority::SERVING).unwrap();
        append_ids(&mut writer, &uri, &[1, 2, 3], 1);
        let copy = writer.opened(&uri).unwrap();
        let mut copy = copy;
        let compacting = delta::io_runtime("test-compact-io", Priority::SERVING).unwrap();
        let done = delta::compact_table(&compacting, &uri, &mut copy, 1 << 20, &OnceLock::new());
        assert_eq!(done.unwrap().files_removed, 3);
        assert_eq!(live_files_and_rows(&uri), (1, 3));

        append_ids(&mut writer, &uri, &[4], 4);
        assert_eq!(live_files_and_rows(&uri), (2, 4));
    }
}
