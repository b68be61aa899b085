//! `inference_log`: where the inference tables are, how the writer batches and retries, and the
//! bounds of the labels API.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Labels one call may carry by default (`inference_log.max_labels_per_request`).
pub const MAX_LABELS: usize = 10_000;
/// Key columns one label may carry by default (`inference_log.max_keys_per_label`).
pub const MAX_KEYS: usize = 4;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct InferenceLogSettings {
    /// Root of the inference tables: a folder (relative to the working directory) or a
    /// `file://` URL.
    pub location: String,
    /// Options of the object store under `location` (credentials, endpoint, ...), passed to
    /// the Delta writer as they are.
    pub storage_options: BTreeMap<String, String>,
    /// Records waiting to be written, in bytes (bodies, inputs and outputs); beyond it new
    /// records are dropped and counted (`reason="queue_full"`).
    pub queue_bytes: usize,
    /// A table's batch is committed when it has this many rows...
    pub flush_rows: usize,
    /// ... or this many bytes ...
    pub flush_bytes: usize,
    /// ... or when its oldest row is this old.
    pub flush_interval_ms: u64,
    /// Request and response bodies larger than this are logged as null with
    /// `MAX_REQUEST_SIZE_EXCEEDED` / `MAX_RESPONSE_SIZE_EXCEEDED`.
    pub max_payload_bytes: usize,
    /// Attempts per commit (with backoff from 100 ms, doubling, up to 5 s) before its rows are
    /// dropped and counted (`reason="commit_failed"`).
    pub commit_attempts: u32,
    /// At shutdown, how long the writer may take to commit what is queued; no attempt starts
    /// after it and one in flight is abandoned (`reason="shutdown"`), unless it is already
    /// writing its commit: that one may finish within a second after it.
    pub shutdown_deadline_seconds: u64,
    /// Labels one call to the labels API may carry (beyond: 413, `limit="labels"`).
    pub max_labels_per_request: usize,
    /// Key columns one label may carry (beyond: 400, `limit="label_keys"`); the names must be
    /// the endpoint's declared key columns.
    pub max_keys_per_label: usize,
    /// The writer's threads run this much nicer than the serving threads (0 to 19, capped at
    /// nice 19; 0: the same), so a commit's encoding yields the core to requests rather than
    /// stalling them. (The catch-up thread and its Delta I/O run at the serving priority.)
    pub writer_nice: i32,
    /// For tables in a local folder, the writer's thread and its compaction run in Linux's idle
    /// scheduling class (`SCHED_IDLE`): a serving thread that wakes takes the core from them at
    /// once, instead of waiting for their turn to end; on a core that never idles they get a
    /// fraction of a percent of it, and the catch-up thread commits the backlog. What the
    /// writer cannot give up half done (opening a table, a retry's check, writing and
    /// committing a file) runs at `writer_nice` on its Delta runtime's worker. Off: everything
    /// at `writer_nice` alone.
    pub writer_sched_idle: bool,
    /// While the queue holds more than a quarter of `queue_bytes`, a thread at the serving
    /// threads' priority commits everything pending (until an eighth is left): on a saturated
    /// core the niced writer alone falls behind and rows are dropped. Off: the writer stays
    /// niced whatever the backlog (lower tail latency under saturation, rows dropped instead).
    pub catch_up: bool,
    /// Writer shards, each with its own queue, threads and Delta sink; a table belongs to one,
    /// and an endpoint's tables to different ones (0: one per core the process may run on, at
    /// most 4).
    pub writers: usize,
    /// Every this many of the writer's commits to a table, the table's small files are
    /// compacted, on the shard's compaction thread (0: never).
    pub compact_every_commits: u32,
    /// One compaction rewrites files under half of this size, at most this many bytes of them
    /// (the bound on its CPU time and on the file it buffers).
    pub compact_max_bytes: u64,
}

impl Default for InferenceLogSettings {
    fn default() -> Self {
        Self {
            location: "inference-tables".into(),
            storage_options: BTreeMap::new(),
            queue_bytes: 64 * 1024 * 1024,
            flush_rows: 10_000,
            flush_bytes: 8 * 1024 * 1024,
            flush_interval_ms: 1000,
            max_payload_bytes: 1024 * 1024,
            commit_attempts: 5,
            shutdown_deadline_seconds: 10,
            max_labels_per_request: MAX_LABELS,
            max_keys_per_label: MAX_KEYS,
            writer_nice: 10,
            writer_sched_idle: true,
            catch_up: true,
            writers: 0,
            compact_every_commits: 50,
            compact_max_bytes: 64 * 1024 * 1024,
        }
    }
}

/// The most rows a table's batch may be set to hold (`inference_log.flush_rows`): one Parquet
/// row group, so that the encoder keeps a batch's file in memory until its commit, and a
/// writer that gives way mid-batch has written nothing to the store.
pub const MAX_FLUSH_ROWS: usize = 1024 * 1024;

/// Writer shards one process may run (`inference_log.writers`).
pub const MAX_WRITERS: usize = 64;

impl InferenceLogSettings {
    /// The writer shards to run: `writers`, or one per core this process may run on (its CPU
    /// affinity), at most four.
    pub fn writer_shards(&self) -> usize {
        match self.writers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get().min(4)),
            n => n,
        }
    }

    /// Whether the tables are in a local folder (or a `file://` URL) rather than an object
    /// store.
    pub fn is_local(&self) -> bool {
        self.location
            .split_once("://")
            .is_none_or(|(scheme, _)| scheme == "file")
    }

    /// The first problem, as (key, message).
    pub fn problem(&self) -> Option<(&'static str, String)> {
        const SCHEMES: [&str; 3] = ["file", "s3", "s3a"];
        let l = &self.location;
        if l.trim().is_empty() {
            return Some(("location", "must name a folder or a file:// URL".into()));
        }
        if let Some((scheme, rest)) = l.split_once("://") {
            if !SCHEMES.contains(&scheme) {
                return Some((
                    "location",
                    format!("'{scheme}://' is not supported: use a folder, a file:// URL or an s3:// URL (S3 and S3-compatible stores)"),
                ));
            }
            if scheme != "file" && rest.trim_matches('/').is_empty() {
                return Some(("location", format!("'{l}' names no bucket")));
            }
        }
        for (key, value) in [
            ("queue_bytes", self.queue_bytes),
            ("flush_rows", self.flush_rows),
            ("flush_bytes", self.flush_bytes),
            ("max_payload_bytes", self.max_payload_bytes),
            ("max_labels_per_request", self.max_labels_per_request),
            ("max_keys_per_label", self.max_keys_per_label),
        ] {
            if value == 0 {
                return Some((key, "must be above 0".into()));
            }
        }
        if self.flush_rows > MAX_FLUSH_ROWS {
            return Some((
                "flush_rows",
                format!(
                    "must be at most {MAX_FLUSH_ROWS} (one Parquet row group), not {}",
                    self.flush_rows
                ),
            ));
        }
        if self.flush_interval_ms == 0 {
            return Some(("flush_interval_ms", "must be above 0".into()));
        }
        if self.commit_attempts == 0 {
            return Some(("commit_attempts", "must be at least 1".into()));
        }
        if self.compact_every_commits > 0 && self.compact_max_bytes < 1024 * 1024 {
            return Some((
                "compact_max_bytes",
                format!(
                    "must be at least 1 MiB (1048576) when compacting, not {}",
                    self.compact_max_bytes
                ),
            ));
        }
        if self.writers > MAX_WRITERS {
            return Some((
                "writers",
                format!(
                    "must be at most {MAX_WRITERS} (0: one per core, at most 4), not {}",
                    self.writers
                ),
            ));
        }
        if !(0..=19).contains(&self.writer_nice) {
            return Some((
                "writer_nice",
                format!(
                    "must be 0 to 19 (added to the nice value), not {}",
                    self.writer_nice
                ),
            ));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_is_at_most_one_parquet_row_group() {
        let rows = |flush_rows| InferenceLogSettings {
            flush_rows,
            ..Default::default()
        };
        assert_eq!(rows(MAX_FLUSH_ROWS).problem(), None);
        let (key, message) = rows(MAX_FLUSH_ROWS + 1).problem().unwrap();
        assert_eq!(key, "flush_rows");
        assert!(message.contains("1048576"), "{message}");
    }

    #[test]
    fn folders_and_file_urls_are_local_and_object_stores_are_not() {
        let at = |location: &str| InferenceLogSettings {
            location: location.into(),
            ..Default::default()
        };
        for local in [
            "inference-tables",
            "/var/lib/tables",
            "file:///var/lib/tables",
        ] {
            assert!(at(local).is_local(), "{local}");
        }
        for remote in ["s3://bucket/tables", "s3a://bucket"] {
            assert!(!at(remote).is_local(), "{remote}");
        }
    }
}
