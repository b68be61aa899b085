//! Inference tables: rows and bytes committed, commit time and retries, rows not logged (by
//! reason), the writer's queue.

use prometheus::{HistogramVec, IntCounter, IntCounterVec, IntGauge};

use super::labels::{CompactionOutcome, DropReason, LogTable};
use super::{make, Registrar};

pub struct LogMetrics {
    pub rows: IntCounterVec,
    pub bytes: IntCounterVec,
    pub commit_duration: HistogramVec,
    pub commit_retries: IntCounterVec,
    pub dropped_rows: IntCounterVec,
    pub compactions: IntCounterVec,
    pub compacted_files: IntCounterVec,
    pub queue_bytes: IntGauge,
    pub queue_records: IntGauge,
}

impl LogMetrics {
    pub fn new(r: &mut Registrar<'_>) -> Self {
        let table = ["endpoint", "table"];
        Self {
            rows: r.add(make::counters(
                "modelgate_inference_log_rows_total",
                "Rows committed to an endpoint's inference tables, per table (payload, predictions, labels).",
                &table,
            )),
            bytes: r.add(make::counters(
                "modelgate_inference_log_bytes_total",
                "Bytes of the rows committed to inference tables (Arrow memory, before Parquet compression).",
                &table,
            )),
            commit_duration: r.add(make::histograms(
                "modelgate_inference_log_commit_duration_seconds",
                "Time of one Delta commit attempt of an inference table (writing the Parquet file and the log entry).",
                prometheus::exponential_buckets(0.001, 2.0, 14).expect("valid bucket parameters"),
                &table,
            )),
            commit_retries: r.add(make::counters(
                "modelgate_inference_log_commit_retries_total",
                "Failed inference-table commit attempts that were retried.",
                &table,
            )),
            dropped_rows: r.add(make::counters(
                "modelgate_inference_log_dropped_rows_total",
                "Rows not logged, by reason: queue_full (the writer's queue was at its byte limit), sampled_down (left out by an endpoint whose backpressure is sample, as the queue filled), commit_failed (every commit attempt failed), shutdown (not committed by the shutdown deadline), invalid_rows, writer_panic (the writer panicked on the batch; later batches are still written).",
                &["endpoint", "table", "reason"],
            )),
            compactions: r.add(make::counters(
                "modelgate_inference_log_compactions_total",
                "Compactions of an inference table's small files (every inference_log.compact_every_commits commits), by outcome: success, failure (the table is left as it was) or skipped (the shard's compaction thread had its most waiting, or had stopped; the table is due again after as many commits).",
                &["endpoint", "table", "outcome"],
            )),
            compacted_files: r.add(make::counters(
                "modelgate_inference_log_compacted_files_total",
                "Small files of an inference table rewritten into larger ones by compactions.",
                &table,
            )),
            queue_bytes: r.add(make::gauge(
                "modelgate_inference_log_queue_bytes",
                "Bytes of records waiting to be committed to inference tables (bounded by inference_log.queue_bytes).",
            )),
            queue_records: r.add(make::gauge(
                "modelgate_inference_log_queue_records",
                "Records handed to the inference-log writer and not yet taken into a batch.",
            )),
        }
    }

    /// Rows of `table` of `endpoint` not logged for `reason`.
    pub fn dropped(&self, endpoint: &str, table: LogTable, reason: DropReason) -> IntCounter {
        self.dropped_rows
            .with_label_values(&[endpoint, table.as_str(), reason.as_str()])
    }

    pub fn forget_endpoint(&self, endpoint: &str) {
        for table in LogTable::ALL {
            let l = [endpoint, table.as_str()];
            let _ = self.rows.remove_label_values(&l);
            let _ = self.bytes.remove_label_values(&l);
            let _ = self.commit_duration.remove_label_values(&l);
            let _ = self.commit_retries.remove_label_values(&l);
            let _ = self.compacted_files.remove_label_values(&l);
            for outcome in CompactionOutcome::ALL {
                let _ = self.compactions.remove_label_values(&[
                    endpoint,
                    table.as_str(),
                    outcome.as_str(),
                ]);
            }
            for reason in DropReason::ALL {
                let _ = self.dropped_rows.remove_label_values(&[
                    endpoint,
                    table.as_str(),
                    reason.as_str(),
                ]);
            }
        }
    }
}
