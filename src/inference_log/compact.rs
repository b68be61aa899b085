//! Compaction of an inference table: its small files rewritten as one, in a commit that
//! removes them (Delta's `OPTIMIZE`, with `dataChange: false`, so readers of the table see the
//! same rows and streaming readers see no new data).
//!
//! The writer commits a file per batch, about one a second per busy table: a day is tens of
//! thousands of files, and every reader lists and opens each. So every
//! `inference_log.compact_every_commits` of its commits to a table, the writer asks for that
//! table's small files to be rewritten, at most `compact_max_bytes` of them at once (the bound
//! on one compaction's CPU time and on the output it buffers), by its shard's compaction
//! thread ([`super::compactor`]).
//!
//! It never loses or repeats a row: the rows read from each file are counted against its
//! statistics, and the new files' statistics against the rows read, before anything is
//! committed (files with deletion vectors or without row counts are left alone), and the swap commits only on a table version where
//! every file it removes is still live, so a file another process removed first (say its own
//! compaction) fails this one instead of being removed twice. A failure leaves the table as it
//! was (at worst an unreferenced file that `VACUUM` deletes).

use deltalake::arrow::record_batch::RecordBatch;
use std::collections::HashSet;

use deltalake::kernel::transaction::{CommitBuilder, CommitProperties, TransactionError};
use deltalake::kernel::{Action, Remove};
use deltalake::logstore::object_store::ObjectStoreExt;
use deltalake::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use deltalake::protocol::DeltaOperation;
use deltalake::writer::{DeltaWriter, RecordBatchWriter};
use deltalake::{DeltaTable, DeltaTableError, Path};

/// What a compaction did (all zero when there was nothing to do).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Compacted {
    /// Small files rewritten, removed from the table.
    pub files_removed: usize,
    /// Files written in their place.
    pub files_added: usize,
    /// Rows moved.
    pub rows: usize,
}

/// A file chosen for rewriting.
struct Small {
    path: Path,
    rows: usize,
    remove: Remove,
}

/// Rewrites the small files of `table` (each under half of `max_bytes`, at most `max_bytes`
/// in all, oldest first) into one and commits the swap; `table` then holds the new version.
pub(super) async fn rewrite_small_files(
    table: &mut DeltaTable,
    max_bytes: u64,
) -> Result<Compacted, DeltaTableError> {
    // Files other writers added since our last commit are compacted too, and our removes
    // are checked against the newest version.
    table.update_state().await?;
    let chosen = choose(table, max_bytes)?;
    if chosen.len() < 2 {
        return Ok(Compacted::default());
    }
    let store = table.log_store().object_store(None);
    let mut writer = RecordBatchWriter::for_table(table)?;
    let schema = writer.arrow_schema();
    let mut rows = 0;
    for file in &chosen {
        let bytes = store.get(&file.path).await?.bytes().await?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)?
            .with_batch_size(8192)
            .build()?;
        let mut in_file = 0;
        for batch in reader {
            let batch: RecordBatch = super::delta::conform(&batch?, &schema).map_err(|m| {
                DeltaTableError::Generic(format!("file {} does not fit the table: {m}", file.path))
            })?;
            in_file += batch.num_rows();
            writer.write(batch).await?;
        }
        if in_file != file.rows {
            return Err(DeltaTableError::Generic(format!(
                "file {} holds {in_file} rows where the log says {}: not compacted",
                file.path, file.rows
            )));
        }
        rows += in_file;
    }
    let adds = writer.flush().await?;
    let files_added = adds.len();
    // The new files must hold every row read, by their own statistics.
    let mut written = 0;
    for add in &adds {
        let stats = add.get_stats().map_err(|e| {
            DeltaTableError::Generic(format!("the new file's statistics do not parse: {e}"))
        })?;
        written += stats.map_or(0, |s| s.num_records.max(0) as usize);
    }
    if written != rows {
        return Err(DeltaTableError::Generic(format!(
            "the new files hold {written} rows where {rows} were read: not compacted"
        )));
    }
    let mut actions: Vec<Action> = adds
        .into_iter()
        .map(|mut add| {
            add.data_change = false;
            Action::Add(add)
        })
        .collect();
    let files_removed = chosen.len();
    let paths: Vec<String> = chosen.iter().map(|f| f.remove.path.clone()).collect();
    actions.extend(chosen.into_iter().map(|f| Action::Remove(f.remove)));
    commit_swap(table, actions, &paths, max_bytes).await?;
    Ok(Compacted {
        files_removed,
        files_added,
        rows,
    })
}

/// Commits `actions` (the new file added, the files at `paths` removed) on a version where
/// every one of those files is still live, re-checked on each newer version. Delta's own
/// conflict check is not enough here: in delta-rs 1.1 it ignores concurrent removes that do
/// not change data, so two writers compacting at once could both remove a file and both add
/// its rows.
async fn commit_swap(
    table: &mut DeltaTable,
    actions: Vec<Action>,
    paths: &[String],
    max_bytes: u64,
) -> Result<(), DeltaTableError> {
    const ATTEMPTS: usize = 5;
    for _ in 0..ATTEMPTS {
        // Live as chosen: a file that has since got a deletion vector is not removed by our
        // Remove (which carries none), and its rows would be in the table twice.
        let live: HashSet<String> = table
            .snapshot()?
            .log_data()
            .iter()
            .filter(|f| f.deletion_vector_descriptor().is_none())
            .map(|f| f.path().into_owned())
            .collect();
        if let Some(gone) = paths.iter().find(|p| !live.contains(p.as_str())) {
            return Err(DeltaTableError::Generic(format!(
                "file {gone} was removed by another writer first (its own compaction?)"
            )));
        }
        let operation = DeltaOperation::Optimize {
            predicate: None,
            target_size: max_bytes as i64,
        };
        // No retry inside: a newer version means checking the files again, here.
        // With the post-commit hook of an append (a checkpoint every checkpointInterval).
        let committed = CommitBuilder::from(CommitProperties::default().with_max_retries(0))
            .with_actions(actions.clone())
            .build(Some(table.snapshot()?), table.log_store(), operation)
            .await;
        match committed {
            Ok(done) => {
                table.state = Some(done.snapshot());
                return Ok(());
            }
            Err(
                DeltaTableError::VersionAlreadyExists(_)
                | DeltaTableError::Transaction {
                    source: TransactionError::MaxCommitAttempts(_),
                },
            ) => table.update_state().await?,
            Err(e) => return Err(e),
        }
    }
    Err(DeltaTableError::Generic(format!(
        "the table changed under {ATTEMPTS} attempts to commit the swap"
    )))
}

/// The files to rewrite: small ones, oldest first (so the rows keep their order), up to
/// `max_bytes` in all.
fn choose(table: &DeltaTable, max_bytes: u64) -> Result<Vec<Small>, DeltaTableError> {
    let small = max_bytes / 2;
    let mut candidates: Vec<_> = table
        .snapshot()?
        .log_data()
        .iter()
        // A file with a deletion vector (another engine's DELETE) would bring its deleted rows
        // back; one without a row count cannot be checked: both are left as they are.
        .filter(|f| (f.size().max(0) as u64) < small)
        .filter(|f| f.deletion_vector_descriptor().is_none() && f.num_records().is_some())
        .collect();
    candidates.sort_by_key(|f| (f.modification_time(), f.path().into_owned()));
    let mut total = 0u64;
    let mut chosen = Vec::new();
    for file in candidates {
        let size = file.size().max(0) as u64;
        if total + size > max_bytes {
            break;
        }
        total += size;
        chosen.push(Small {
            path: file.object_store_path(),
            rows: file.num_records().unwrap_or_default(),
            remove: file.remove_action(false),
        });
    }
    Ok(chosen)
}

#[cfg(test)]
pub(super) mod tests {
    use std::collections::HashMap;
    use std::sync::{Arc, OnceLock};

    use deltalake::arrow::array::{Array, ArrayRef, Int64Array, StringArray};
    use deltalake::arrow::datatypes::{DataType, Field, Schema};

    use super::*;
    use crate::inference_log::delta::{Appended, DeltaSink, Io, Txn};

    fn batch(ids: &[i64], extra: Option<&[&str]>) -> RecordBatch {
        let mut fields = vec![Field::new("id", DataType::Int64, true)];
        let mut columns: Vec<ArrayRef> = vec![Arc::new(Int64Array::from(ids.to_vec()))];
        if let Some(extra) = extra {
            fields.push(Field::new("extra", DataType::Utf8, true));
            columns.push(Arc::new(StringArray::from(extra.to_vec())));
        }
        RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap()
    }

    /// The live files of the table at `uri`, as a fresh reader of its log sees them.
    pub(in crate::inference_log) fn live_files(uri: &str) -> Vec<(String, Option<usize>)> {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            let url = deltalake::ensure_table_uri(uri).unwrap();
            let table = DeltaTable::try_from_url(url).await.unwrap();
            let snapshot = table.snapshot().unwrap();
            snapshot
                .log_data()
                .iter()
                .map(|f| (f.path().into_owned(), f.num_records()))
                .collect()
        })
    }

    /// A table `t` under `dir`, a sink to append to it, and a shutdown deadline never set.
    fn table_in(dir: &tempfile::TempDir) -> (String, DeltaSink, OnceLock<std::time::Instant>) {
        let uri = dir.path().join("t").display().to_string();
        (
            uri,
            DeltaSink::new(
                HashMap::new(),
                crate::inference_log::priority::Priority::SERVING,
            )
            .unwrap(),
            OnceLock::new(),
        )
    }

    /// Appends `batch` to the table at `uri` as this test writer's batch `version`.
    fn append(sink: &mut DeltaSink, uri: &str, batch: &RecordBatch, version: i64) -> Appended {
        sink.append(
            uri,
            batch,
            &txn(version),
            false,
            Io::Niced,
            &OnceLock::new(),
        )
        .unwrap()
    }

    /// The application transaction of this test writer's batch `version`.
    fn txn(version: i64) -> Txn {
        Txn {
            app_id: "test".into(),
            version,
        }
    }

    /// Another writer compacts the same files between our choice and our commit: our swap is
    /// refused (delta-rs alone would commit it, and the rows would be in the table twice).
    #[test]
    fn a_swap_of_files_another_writer_compacted_first_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (uri, mut sink, stop) = table_in(&dir);
        for version in 1..=2 {
            append(&mut sink, &uri, &batch(&[version], None), version);
        }
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let mut stale = runtime.block_on(async {
            let url = deltalake::ensure_table_uri(&uri).unwrap();
            DeltaTable::try_from_url(url).await.unwrap()
        });
        let chosen = choose(&stale, 1 << 20).unwrap();
        assert_eq!(chosen.len(), 2);
        let paths: Vec<String> = chosen.iter().map(|f| f.remove.path.clone()).collect();
        let removes = chosen
            .into_iter()
            .map(|f| Action::Remove(f.remove))
            .collect();

        // The other writer (this sink) compacts them first.
        assert_eq!(sink.compact(&uri, 1 << 20, &stop).unwrap().files_removed, 2);
        let refused = runtime
            .block_on(commit_swap(&mut stale, removes, &paths, 1 << 20))
            .unwrap_err();
        assert!(
            refused
                .to_string()
                .contains("removed by another writer first"),
            "{refused}"
        );
        let live = live_files(&uri);
        assert_eq!(live.len(), 1, "{live:?}");
        assert_eq!(live[0].1, Some(2), "both rows, once");
    }

    /// A writer asked to give way stops at its first pause point, once the table is open and
    /// before it encodes: nothing of the batch reaches the table's store, no file and no
    /// commit; the batch appends whole afterwards.
    #[test]
    fn an_append_that_gives_way_leaves_nothing_in_the_store() {
        use crate::inference_log::priority::giving_way_to;
        use std::sync::atomic::AtomicBool;

        let asked = Arc::new(AtomicBool::new(true));
        gives_way_leaving_nothing(2499, |append| giving_way_to(&asked, append));
    }

    /// A give-way between two slices, after some rows were encoded: the encoder's file was
    /// only in memory, so the store holds nothing of it, and the batch done again is whole.
    #[test]
    fn an_append_that_gives_way_between_slices_leaves_nothing_in_the_store() {
        use crate::inference_log::priority::test_hooks::giving_way_after;

        // Three slices; the pause points on this thread come after the table is opened, then
        // after each slice: asked at the third, two slices are encoded.
        gives_way_leaving_nothing(3000, |append| giving_way_after(2, append));
    }

    /// Appends `ids` 1 to `last` to a table of one row, through `give_way` (which has the
    /// append give way); then nothing may have reached the store, and the batch appends whole.
    fn gives_way_leaving_nothing(
        last: i64,
        give_way: impl FnOnce(&mut dyn FnMut() -> Appended) -> Appended,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let (uri, mut sink, _) = table_in(&dir);
        let first = append(&mut sink, &uri, &batch(&[0], None), 1);
        assert_eq!(first, Appended::Committed(1));
        let before = entries_of(&dir);

        let ids: Vec<i64> = (1..=last).collect();
        let appended = give_way(&mut || append(&mut sink, &uri, &batch(&ids, None), 2));
        assert_eq!(appended, Appended::GaveWay);
        assert_eq!(entries_of(&dir), before, "nothing written");

        let again = append(&mut sink, &uri, &batch(&ids, None), 3);
        assert_eq!(again, Appended::Committed(2));
        let live = live_files(&uri);
        let rows: usize = live.iter().map(|(_, n)| n.unwrap()).sum();
        assert_eq!((live.len(), rows), (2, last as usize + 1), "{live:?}");
    }

    /// The names in the table `t` under `dir` and in its log, sorted.
    fn entries_of(dir: &tempfile::TempDir) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir.path().join("t"))
            .unwrap()
            .chain(std::fs::read_dir(dir.path().join("t/_delta_log")).unwrap())
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// The encoder is handed a batch in slices (the writer's pause points between them): a
    /// batch of several slices is still one file and one commit, its rows whole and in order.
    #[test]
    fn a_batch_of_several_slices_is_one_file_with_every_row_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let (uri, mut sink, _) = table_in(&dir);
        let ids: Vec<i64> = (0..2500).collect();
        let appended = append(&mut sink, &uri, &batch(&ids, None), 1);
        assert_eq!(appended, Appended::Committed(1));
        let live = live_files(&uri);
        assert_eq!(live.len(), 1, "{live:?}");
        assert_eq!(live[0].1, Some(2500));
        let bytes = std::fs::read(dir.path().join("t").join(&live[0].0)).unwrap();
        let read: Vec<i64> = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes))
            .unwrap()
            .build()
            .unwrap()
            .flat_map(|b| {
                let b = b.unwrap();
                let id = b.column_by_name("id").unwrap();
                id.as_any()
                    .downcast_ref::<Int64Array>()
                    .unwrap()
                    .values()
                    .to_vec()
            })
            .collect();
        assert_eq!(read, ids);

        // A batch that adds a column (its first slice widens the table) is one file too.
        let more: Vec<i64> = (2500..5000).collect();
        let extra = vec!["x"; more.len()];
        append(&mut sink, &uri, &batch(&more, Some(&extra)), 2);
        let live = live_files(&uri);
        assert_eq!(live.len(), 2, "{live:?}");
        assert!(live.iter().all(|f| f.1 == Some(2500)), "{live:?}");
    }

    #[test]
    fn small_files_become_one_with_every_row_and_the_newer_columns() {
        let dir = tempfile::tempdir().unwrap();
        let (uri, mut sink, stop) = table_in(&dir);
        append(&mut sink, &uri, &batch(&[1, 2], None), 1);
        // A later batch adds a column (schema evolution): the older file lacks it.
        append(&mut sink, &uri, &batch(&[3], Some(&["x"])), 2);
        assert_eq!(live_files(&uri).len(), 2);

        let done = sink.compact(&uri, 1 << 20, &stop).unwrap();
        assert_eq!(
            done,
            Compacted {
                files_removed: 2,
                files_added: 1,
                rows: 3
            }
        );
        let live = live_files(&uri);
        assert_eq!(live.len(), 1, "{live:?}");
        assert_eq!(live[0].1, Some(3));
        let bytes = std::fs::read(dir.path().join("t").join(&live[0].0)).unwrap();
        let rows: Vec<RecordBatch> =
            ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes))
                .unwrap()
                .build()
                .unwrap()
                .map(Result::unwrap)
                .collect();
        let all = deltalake::arrow::compute::concat_batches(&rows[0].schema(), &rows).unwrap();
        let ids = all.column_by_name("id").unwrap();
        let ids = ids.as_any().downcast_ref::<Int64Array>().unwrap();
        assert_eq!(ids.values().to_vec(), vec![1, 2, 3]);
        let extra = all.column_by_name("extra").unwrap();
        assert_eq!(extra.null_count(), 2, "the older rows have no value for it");

        // One file left: nothing to do, and the appends go on after a compaction.
        assert_eq!(
            sink.compact(&uri, 1 << 20, &stop).unwrap(),
            Compacted::default()
        );
        append(&mut sink, &uri, &batch(&[4], Some(&["y"])), 3);
        assert_eq!(live_files(&uri).len(), 2);
    }
}
