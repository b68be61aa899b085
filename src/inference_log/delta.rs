//! Appends record batches to Delta tables: creates a table on first use, adds new columns
//! (schema evolution, old rows untouched), and commits one batch as one table version.
//! Concurrent appenders (other gateway processes) are handled by Delta's optimistic
//! concurrency: blind appends do not conflict and the commit is retried on a newer version.
//!
//! Each commit carries an application transaction (Delta's `txn` action: the writer's app id
//! and the batch's number), so a retry after a failure that came once the commit was written
//! (a checkpoint, the snapshot update) finds the batch in the table and does not append it
//! twice.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use deltalake::arrow::array::{new_null_array, ArrayRef};
use deltalake::arrow::compute::cast;
use deltalake::arrow::datatypes::{Field, Schema};
use deltalake::arrow::record_batch::RecordBatch;
use deltalake::kernel::engine::arrow_conversion::TryIntoKernel;
use deltalake::kernel::transaction::CommitProperties;
use deltalake::kernel::StructType;
use deltalake::writer::{DeltaWriter, RecordBatchWriter, WriteMode};
use deltalake::DeltaTable;

use super::compact::Compacted;
use super::priority::Priority;
use super::rows::Kind;

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("table {uri}: {message}")]
    Table { uri: String, message: String },
    /// The shutdown deadline passed during the attempt; whether it committed is unknown.
    #[error("table {uri}: the attempt was abandoned at the shutdown deadline")]
    Abandoned { uri: String },
}

/// A batch's application transaction: the writer's id (one per process run) and the batch's
/// number, increasing with every batch the writer commits.
#[derive(Debug, Clone)]
pub struct Txn {
    pub app_id: Arc<str>,
    pub version: i64,
}

/// What an append did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    /// Committed as this table version.
    Committed(i64),
    /// An earlier attempt had committed the batch (its transaction is in the table).
    AlreadyCommitted,
    /// Not appended: the writer gave way at a pause point, before anything was written.
    GaveWay,
}

/// How long past the shutdown deadline a commit already under way may take to finish. The
/// writer then asks the table whether an abandoned one landed, in what is left of it or half
/// a second, whichever is longer: both inside the 2 s that `close` waits beyond the deadline.
pub(super) const PAST_DEADLINE: Duration = Duration::from_millis(1000);

/// Rows handed to the Parquet encoder at a time (it encodes them into the open file's pages;
/// the file and the commit are still one per batch).
const ROWS_PER_SLICE: usize = 1024;

/// The stores the Delta kernel opens tables with, registered once per process: the Delta
/// crate's S3 store for `s3://` (and `s3a://`) tables, and for local ones a store that writes
/// their files in small pieces ([`super::small_writes`]).
fn register_stores() {
    static REGISTERED: std::sync::Once = std::sync::Once::new();
    REGISTERED.call_once(|| {
        deltalake::aws::register_handlers(None);
        super::small_writes::register();
    });
}

/// Which of a sink's runtimes an attempt runs its I/O on: the niced writer's, or the catch-up
/// thread's (at the serving priority). Local files are written by the runtime of the attempt; an
/// S3 table's pooled connections stay driven by the runtime that opened them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Io {
    Niced,
    CatchUp,
}

/// Open tables by URI, reused across commits.
pub struct DeltaSink {
    niced: tokio::runtime::Runtime,
    catch_up: tokio::runtime::Runtime,
    storage_options: HashMap<String, String>,
    tables: HashMap<String, DeltaTable>,
}

impl DeltaSink {
    /// A sink with two runtimes, whose threads run at `niced`'s nice value for the niced writer
    /// thread, and at the calling thread's priority for the catch-up thread; neither in the
    /// idle class, even when the niced thread is.
    pub fn new(storage_options: HashMap<String, String>, niced: Priority) -> std::io::Result<Self> {
        register_stores();
        Ok(Self {
            // Its worker commits for the niced thread: never in the idle class (see `append`).
            niced: io_runtime("inference-log-io", niced.without_idle())?,
            // The catch-up thread works on a saturated core (and at shutdown), and waits for
            // its file writes. Niced, they starved: at 19, writing a commit's file took 160 to
            // 730 ms and rows were dropped; at 10, the backlog still reached the full queue in
            // some runs at 32 connections and up to 15,121 rows were dropped. At the serving
            // priority it stayed under 26 MiB, for a closed-loop p99 a tenth to a quarter
            // higher while the core is saturated (`docs/benchmarks.md`, tenth and twelfth
            // sessions).
            catch_up: io_runtime("log-catch-up-io", Priority::SERVING)?,
            storage_options,
            tables: HashMap::new(),
        })
    }

    fn runtime(&self, io: Io) -> &tokio::runtime::Runtime {
        match io {
            Io::Niced => &self.niced,
            Io::CatchUp => &self.catch_up,
        }
    }

    /// Appends `batch` to the table at `uri` as one commit carrying `txn`, its I/O on the `io`
    /// runtime. With `check`, the table is first asked whether `txn` is already in it (a
    /// retry), and nothing is appended then. The attempt is abandoned when `stop` (the
    /// shutdown deadline, once set) passes, unless its commit is being written then (that is
    /// waited for until [`PAST_DEADLINE`] after it), and given up ([`Appended::GaveWay`])
    /// when a pause point between the slices it encodes says so.
    pub fn append(
        &mut self,
        uri: &str,
        batch: &RecordBatch,
        txn: &Txn,
        check: bool,
        io: Io,
        stop: &OnceLock<Instant>,
    ) -> Result<Appended, SinkError> {
        let table_error = |e: deltalake::DeltaTableError| SinkError::Table {
            uri: uri.to_owned(),
            message: e.to_string(),
        };
        // Taken out for the attempt; put back only after a commit (a failed attempt reopens
        // the table, which may have changed under us).
        let cached = self.tables.remove(uri);
        let options = self.storage_options.clone();
        let owned = (uri.to_owned(), batch.clone(), txn.clone());
        // The niced writer's opening, checking and committing run on its runtime's worker, out
        // of the idle class: there the writer cannot give way, and the catch-up thread would
        // wait on a thread that a busy core starves. Its helper threads are started from
        // there too, since they would inherit the idle class for good.
        let worker = (io == Io::Niced).then(|| self.niced.handle().clone());
        // Set once the commit starts writing: from then on its puts can land in the table
        // even if this attempt stops waiting for them.
        let committing = std::cell::Cell::new(false);
        let committing_here = &committing;
        let work = async move {
            let prepare = async move {
                let (uri, batch, txn) = owned;
                let table = match cached {
                    Some(t) => t,
                    None => open_or_create(&uri, &batch, &options).await?,
                };
                if check && committed(&table, &txn).await? {
                    return Ok((table, None));
                }
                let properties = CommitProperties::default().with_application_transaction(
                    deltalake::kernel::Transaction::new(&*txn.app_id, txn.version),
                );
                let writer =
                    RecordBatchWriter::for_table(&table)?.with_commit_properties(properties);
                let batch = conform(&batch, &writer.arrow_schema()).map_err(|message| {
                    deltalake::DeltaTableError::Generic(format!(
                        "cannot prepare the rows: {message}"
                    ))
                })?;
                Ok::<_, deltalake::DeltaTableError>((table, Some((writer, batch))))
            };
            let (mut table, mut writer, batch) = match on_worker(worker.as_ref(), prepare).await? {
                (table, None) => return Ok((table, Appended::AlreadyCommitted)),
                (table, Some((writer, batch))) => (table, writer, batch),
            };
            // Asked to give way while the worker opened the table: nothing written yet.
            if super::priority::pause_point().is_err() {
                return Ok((table, Appended::GaveWay));
            }
            // Handed to the Parquet encoder in slices, with a pause point after each: the
            // encoding of a whole batch is milliseconds of work. (An empty batch is written
            // once, as before: `max(1)`.) The encoder holds its file in memory until
            // `flush_and_commit`, unless a Parquet row group completes (1,048,576 rows, above
            // what `flush_rows` allows): giving way before that leaves nothing in the table's
            // store.
            let rows = batch.num_rows();
            for start in (0..rows.max(1)).step_by(ROWS_PER_SLICE) {
                let len = ROWS_PER_SLICE.min(rows - start);
                writer
                    .write_with_mode(batch.slice(start, len), WriteMode::MergeSchema)
                    .await?;
                if super::priority::pause_point().is_err() {
                    return Ok((table, Appended::GaveWay));
                }
            }
            // No commit starts past the deadline. (The slices may all be encoded in one poll,
            // before the deadline's branch below is looked at again: this waits for it.)
            if stop
                .get()
                .is_some_and(|deadline| Instant::now() >= *deadline)
            {
                std::future::pending::<()>().await;
            }
            committing_here.set(true);
            let commit = async move {
                let version = writer.flush_and_commit(&mut table).await;
                Ok((table, version))
            };
            let (table, version) = on_worker(worker.as_ref(), commit).await?;
            Ok::<_, deltalake::DeltaTableError>((table, Appended::Committed(version? as i64)))
        };
        let outcome = self.runtime(io).block_on(async {
            tokio::pin!(work);
            tokio::select! {
                biased;
                () = until(stop) => {}
                r = &mut work => return Some(r),
            }
            // A commit under way at the deadline is given until `PAST_DEADLINE` after it to
            // finish: dropped, its log entry could land after the table was asked whether it
            // had, and rows in the table would be counted as dropped.
            if !committing.get() {
                return None;
            }
            let deadline = stop.get().copied()?;
            let grace = tokio::time::Instant::from_std(deadline + PAST_DEADLINE);
            tokio::time::timeout_at(grace, work).await.ok()
        });
        match outcome {
            Some(Ok((table, appended))) => {
                self.tables.insert(uri.to_owned(), table);
                Ok(appended)
            }
            Some(Err(e)) => Err(table_error(e)),
            None => Err(SinkError::Abandoned {
                uri: uri.to_owned(),
            }),
        }
    }

    /// Whether `txn` is in the table at `uri`, asked for at most `limit`; `None` when that could
    /// not be told in time.
    pub fn has_committed(&mut self, uri: &str, txn: &Txn, limit: Duration) -> Option<bool> {
        let url = deltalake::ensure_table_uri(uri).ok()?;
        let options = self.storage_options.clone();
        let txn = txn.clone();
        let ask = async move {
            let table = DeltaTable::try_from_url_with_storage_options(url, options).await?;
            committed(&table, &txn).await
        };
        // Asked once an attempt was cut at the shutdown deadline, within `limit`, on the
        // catch-up thread's runtime: on helper threads a saturated core does not starve. Run
        // by its worker, not the calling thread, so that a thread in the idle class never
        // starts one of its helper threads (they would inherit the class for good).
        let asked = self
            .catch_up
            .spawn(async move { tokio::time::timeout(limit, ask).await });
        match self.catch_up.block_on(asked) {
            Ok(Ok(Ok(yes))) => Some(yes),
            _ => None,
        }
    }

    /// Compacts the table at `uri`, when this sink has it open (it has committed to it): see
    /// [`Self::compact_table`]. On any failure the table is reopened on next use.
    #[cfg(test)]
    pub fn compact(
        &mut self,
        uri: &str,
        max_bytes: u64,
        stop: &OnceLock<Instant>,
    ) -> Result<Compacted, SinkError> {
        let Some(mut table) = self.tables.remove(uri) else {
            return Ok(Compacted::default());
        };
        let outcome = compact_table(&self.niced, uri, &mut table, max_bytes, stop);
        if outcome.is_ok() {
            self.tables.insert(uri.to_owned(), table);
        }
        outcome
    }

    /// The table at `uri` as this sink last committed to it, when it has it open.
    pub fn opened(&self, uri: &str) -> Option<DeltaTable> {
        self.tables.get(uri).cloned()
    }

    /// Forgets the open table at `uri` (reopened on next use).
    pub fn forget(&mut self, uri: &str) {
        self.tables.remove(uri);
    }
}

/// The runtime a sink or a compaction thread drives the Delta kernel with: a multi-threaded
/// one of one worker (on a current-thread one the Delta kernel starts a thread and runtime of
/// its own for every table it opens and blocks on them from inside our task: its "block_on was
/// called in a nested fashion" warning), its threads named `name` and at `priority`.
pub(super) fn io_runtime(
    name: &str,
    priority: Priority,
) -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .thread_name(name)
        .on_thread_start(move || priority.lower_this_thread())
        .build()
}

/// Compacts `table` (at `uri`) on `runtime`, see [`super::compact`]; `table` is then at the
/// version it has. Abandoned as soon as `stop` is set (shutdown began: what is queued goes
/// first; the table is whole whether the swap landed or not).
pub(super) fn compact_table(
    runtime: &tokio::runtime::Runtime,
    uri: &str,
    table: &mut DeltaTable,
    max_bytes: u64,
    stop: &OnceLock<Instant>,
) -> Result<Compacted, SinkError> {
    let outcome = runtime.block_on(async {
        tokio::select! {
            r = super::compact::rewrite_small_files(table, max_bytes) => Some(r),
            () = closing(stop) => None,
        }
    });
    match outcome {
        Some(Ok(compacted)) => Ok(compacted),
        Some(Err(e)) => Err(SinkError::Table {
            uri: uri.to_owned(),
            message: e.to_string(),
        }),
        None => Err(SinkError::Abandoned {
            uri: uri.to_owned(),
        }),
    }
}

/// Runs `work` as a task of the runtime `worker` is a handle of, waited for here, or here
/// when there is none. The task is aborted when this is dropped (the attempt abandoned at the
/// shutdown deadline), and its panic goes on unwinding here.
async fn on_worker<T: Send + 'static>(
    worker: Option<&tokio::runtime::Handle>,
    work: impl std::future::Future<Output = Result<T, deltalake::DeltaTableError>> + Send + 'static,
) -> Result<T, deltalake::DeltaTableError> {
    /// Aborts the task when the attempt is dropped.
    struct Abort(tokio::task::AbortHandle);
    impl Drop for Abort {
        fn drop(&mut self) {
            self.0.abort();
        }
    }
    let Some(worker) = worker else {
        return work.await;
    };
    let task = worker.spawn(work);
    let _abort = Abort(task.abort_handle());
    match task.await {
        Ok(done) => done,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => Err(deltalake::DeltaTableError::Generic(format!(
            "the inference log's I/O task ended: {e}"
        ))),
    }
}

/// Whether the table holds `txn` (or a later batch of the same writer).
async fn committed(table: &DeltaTable, txn: &Txn) -> Result<bool, deltalake::DeltaTableError> {
    let seen = table
        .snapshot()?
        .transaction_version(table.log_store().as_ref(), &*txn.app_id)
        .await?;
    Ok(seen.is_some_and(|v| v >= txn.version))
}

/// Resolves once `stop` is set (shutdown began).
async fn closing(stop: &OnceLock<Instant>) {
    while stop.get().is_none() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Resolves when `stop` is set and has passed; never before.
async fn until(stop: &OnceLock<Instant>) {
    loop {
        if let Some(deadline) = stop.get() {
            tokio::time::sleep_until(tokio::time::Instant::from_std(*deadline)).await;
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn open_or_create(
    uri: &str,
    batch: &RecordBatch,
    storage_options: &HashMap<String, String>,
) -> Result<DeltaTable, deltalake::DeltaTableError> {
    let url = deltalake::ensure_table_uri(uri)?;
    let mut table = deltalake::DeltaTableBuilder::from_url(url.clone())?
        .with_storage_options(storage_options.clone())
        .build()?;
    // A local table that does not exist yet is created without a failed load first (which
    // the Delta kernel would log as an error).
    let exists = match url.to_file_path() {
        Ok(path) if url.scheme() == "file" => path.join("_delta_log").is_dir(),
        _ => true,
    };
    if exists {
        match table.load().await {
            Ok(()) => return Ok(table),
            Err(deltalake::DeltaTableError::NotATable(_)) => {}
            Err(e) => return Err(e),
        }
    }
    let schema: StructType = batch.schema().as_ref().try_into_kernel()?;
    let created = table
        .create()
        .with_columns(schema.fields().cloned())
        .with_save_mode(deltalake::protocol::SaveMode::Ignore)
        .await;
    match created {
        Ok(t) => Ok(t),
        // Another process created it first: use theirs.
        Err(_) => DeltaTable::try_from_url_with_storage_options(url, storage_options.clone()).await,
    }
}

/// Fits `batch` to the table's columns: a column whose type differs from the table's is cast
/// when that keeps its values (a whole number to a double, anything to text); otherwise it is
/// renamed `<name>__<type>` and becomes a new column.
pub(super) fn conform(batch: &RecordBatch, table: &Schema) -> Result<RecordBatch, String> {
    let mut fields: Vec<Field> = Vec::with_capacity(batch.num_columns());
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(batch.num_columns());
    let schema = batch.schema();
    for (field, column) in schema.fields().iter().zip(batch.columns()) {
        let existing = table.field_with_name(field.name()).ok();
        match existing {
            None => {
                fields.push(field.as_ref().clone());
                columns.push(column.clone());
            }
            Some(t) if same_type(t.data_type(), field.data_type()) => {
                fields.push(
                    t.clone()
                        .with_nullable(t.is_nullable() || field.is_nullable()),
                );
                columns.push(if t.data_type() == field.data_type() {
                    column.clone()
                } else {
                    cast(column, t.data_type()).map_err(|e| e.to_string())?
                });
            }
            Some(t) if lossless(field.data_type(), t.data_type()) => {
                let cast = cast(column, t.data_type()).map_err(|e| e.to_string())?;
                fields.push(t.clone().with_nullable(true));
                columns.push(cast);
            }
            Some(_) => {
                let suffix = Kind::of(field.data_type()).map_or("other", Kind::suffix);
                let mut name = format!("{}__{suffix}", field.name());
                // Not the name of another column of the batch (a table cannot have two).
                while schema.field_with_name(&name).is_ok()
                    || fields.iter().any(|f| *f.name() == name)
                {
                    name = format!("{name}__{suffix}");
                }
                fields.push(field.as_ref().clone().with_name(name).with_nullable(true));
                columns.push(column.clone());
            }
        }
    }
    // Columns the table has and the batch lacks are written as nulls.
    for t in table.fields() {
        if !fields.iter().any(|f| f.name() == t.name()) && t.is_nullable() {
            fields.push(t.as_ref().clone());
            columns.push(new_null_array(t.data_type(), batch.num_rows()));
        }
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(|e| e.to_string())
}

fn same_type(
    a: &deltalake::arrow::datatypes::DataType,
    b: &deltalake::arrow::datatypes::DataType,
) -> bool {
    a == b || (Kind::of(a).is_some() && Kind::of(a) == Kind::of(b))
}

fn lossless(
    from: &deltalake::arrow::datatypes::DataType,
    to: &deltalake::arrow::datatypes::DataType,
) -> bool {
    matches!(
        (Kind::of(from), Kind::of(to)),
        (Some(Kind::Int), Some(Kind::Float))
            | (Some(Kind::IntList), Some(Kind::FloatList))
            | (Some(Kind::Int | Kind::Float | Kind::Bool), Some(Kind::Str))
    )
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::Mutex;

    use deltalake::arrow::array::Int64Array;

    use super::*;

    /// A column renamed for its type keeps clear of the batch's other names: a table cannot
    /// have two columns of one name.
    #[test]
    fn a_column_renamed_for_its_type_takes_a_name_no_other_column_has() {
        use deltalake::arrow::array::BooleanArray;
        use deltalake::arrow::datatypes::DataType;
        let table = Schema::new(vec![Field::new("b", DataType::Int64, true)]);
        let flags = || Arc::new(BooleanArray::from(vec![true])) as ArrayRef;
        let batch = RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("b", DataType::Boolean, true),
                Field::new("b__boolean", DataType::Boolean, true),
            ])),
            vec![flags(), flags()],
        )
        .unwrap();
        let fitted = conform(&batch, &table).unwrap();
        assert_eq!(
            crate::inference_log::rows::tests::column_names(&fitted),
            ["b__boolean__boolean", "b__boolean", "b"]
        );
    }

    /// What every crate logs at INFO and above on this thread while `f` runs.
    fn logged_while(f: impl FnOnce()) -> String {
        #[derive(Clone, Default)]
        struct Buffer(Arc<Mutex<Vec<u8>>>);
        impl Write for Buffer {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, f);
        let bytes = buffer.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    /// The Delta kernel warns (at INFO) when it blocks on its own runtime from inside ours, as
    /// it did for every table read on a current-thread runtime.
    #[test]
    fn appends_and_retries_block_on_nothing_nested() {
        let dir = tempfile::tempdir().unwrap();
        let uri = dir.path().join("t").display().to_string();
        let mut sink = DeltaSink::new(HashMap::new(), Priority::SERVING).unwrap();
        let stop = OnceLock::new();
        let column: ArrayRef = Arc::new(Int64Array::from(vec![1, 2]));
        let batch = RecordBatch::try_from_iter([("x", column)]).unwrap();
        let logged = logged_while(|| {
            for version in 1..=3 {
                let txn = Txn {
                    app_id: "test".into(),
                    version,
                };
                // A retry (check) reads the table's transactions first.
                let appended = sink
                    .append(&uri, &batch, &txn, version > 1, Io::Niced, &stop)
                    .unwrap();
                assert_eq!(appended, Appended::Committed(version));
            }
            sink.forget(&uri);
            let again = Txn {
                app_id: "test".into(),
                version: 3,
            };
            let reopened = sink
                .append(&uri, &batch, &again, true, Io::Niced, &stop)
                .unwrap();
            assert_eq!(reopened, Appended::AlreadyCommitted);
        });
        assert!(!logged.contains("nested fashion"), "{logged}");
    }

    /// Local tables are opened through the store that writes their files in small pieces.
    #[test]
    fn local_tables_write_through_the_small_writes_store() {
        let dir = tempfile::tempdir().unwrap();
        let uri = dir.path().join("t").display().to_string();
        let mut sink = DeltaSink::new(HashMap::new(), Priority::SERVING).unwrap();
        let column: ArrayRef = Arc::new(Int64Array::from(vec![1, 2]));
        let batch = RecordBatch::try_from_iter([("x", column)]).unwrap();
        let txn = Txn {
            app_id: "test".into(),
            version: 1,
        };
        sink.append(&uri, &batch, &txn, false, Io::Niced, &OnceLock::new())
            .unwrap();
        let store = sink.tables[&uri].log_store().root_object_store(None);
        assert!(store.to_string().starts_with("SmallWrites("), "{store}");
    }

    /// The idle class is for good and passes to the threads a thread starts: the niced
    /// thread's commit, and its check of an abandoned one, must start no helper thread of
    /// either runtime, or the catch-up thread would later wait on one that a busy core starves.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_niced_thread_in_the_idle_class_commits_without_starting_idle_helpers() {
        use super::super::priority::tests::priorities_of_threads;
        let dir = tempfile::tempdir().unwrap();
        let idle = Priority {
            nice: super::super::priority::target(5),
            idle: true,
        };
        let mut sink = DeltaSink::new(HashMap::new(), idle).unwrap();
        let helpers = || {
            let mut all = priorities_of_threads("inference-log-i");
            all.extend(priorities_of_threads("log-catch-up-io"));
            all
        };
        let (appended, found, _sink) = std::thread::spawn(move || {
            idle.lower_this_thread();
            let column: ArrayRef = Arc::new(Int64Array::from(vec![1, 2]));
            let batch = RecordBatch::try_from_iter([("x", column)]).unwrap();
            let txn = Txn {
                app_id: "test".into(),
                version: 1,
            };
            // A new table (opened, created), then a retry's check of an existing one.
            let uri = dir.path().join("t").display().to_string();
            let first = sink.append(&uri, &batch, &txn, false, Io::Niced, &OnceLock::new());
            sink.forget(&uri);
            let again = sink.append(&uri, &batch, &txn, true, Io::Niced, &OnceLock::new());
            let found = sink.has_committed(&uri, &txn, Duration::from_secs(10));
            // The sink lives on, with its runtimes' threads, until the end of the test.
            ((first.unwrap(), again.unwrap()), found, sink)
        })
        .join()
        .unwrap();
        assert_eq!(
            appended,
            (Appended::Committed(1), Appended::AlreadyCommitted)
        );
        assert_eq!(found, Some(true));
        // Every helper thread of every sink in this process (other tests' too): none idle.
        // (This test's commits start some: it went red when they ran on the calling thread.)
        let now = helpers();
        assert!(now.iter().all(|p| !p.idle), "{now:?}");
    }

    /// A commit under way at the shutdown deadline is waited for, within [`PAST_DEADLINE`]:
    /// abandoned, its log entry would land after the attempt said it was cut, and the writer
    /// would count rows in the table as dropped. One slower than that is abandoned then.
    #[test]
    fn a_commit_under_way_at_the_deadline_is_waited_for_a_second() {
        use super::super::small_writes::delayed_puts;
        let column: ArrayRef = Arc::new(Int64Array::from(vec![1, 2]));
        let batch = RecordBatch::try_from_iter([("x", column)]).unwrap();
        let txn = |version| Txn {
            app_id: "test".into(),
            version,
        };
        let cases = [
            (Io::Niced, Duration::from_millis(600), true),
            (Io::CatchUp, Duration::from_millis(600), true),
            (Io::Niced, Duration::from_secs(3), false),
        ];
        for (io, put_takes, lands) in cases {
            let dir = tempfile::tempdir().unwrap();
            let uri = dir.path().join("t").display().to_string();
            let mut sink = DeltaSink::new(HashMap::new(), Priority::SERVING).unwrap();
            let created = sink.append(&uri, &batch, &txn(1), false, io, &OnceLock::new());
            assert_eq!(created.unwrap(), Appended::Committed(1));
            // From now on this table's log entries take `put_takes` to write.
            let folder = dir.path().file_name().unwrap().to_str().unwrap();
            let marker = format!("{folder}/t/_delta_log/");
            delayed_puts::delay(&marker, put_takes);
            // The deadline falls 50 ms after the commit starts writing its log entry.
            let stop = OnceLock::new();
            let appended = std::thread::scope(|s| {
                s.spawn(|| {
                    let writing = || delayed_puts::started(&marker) > 0;
                    crate::testing::eventually("a commit", Duration::from_secs(20), writing);
                    stop.set(Instant::now() + Duration::from_millis(50))
                        .unwrap();
                });
                sink.append(&uri, &batch, &txn(2), false, io, &stop)
            });
            let past = stop.get().unwrap().elapsed();
            if lands {
                assert_eq!(appended.unwrap(), Appended::Committed(2), "{io:?}");
            } else {
                assert!(matches!(appended, Err(SinkError::Abandoned { .. })));
                assert!(
                    past >= PAST_DEADLINE,
                    "abandoned {past:?} after the deadline"
                );
                assert!(past < PAST_DEADLINE * 3 / 2, "{past:?} after the deadline");
            }
        }
    }

    /// A commit handed to the worker behaves as if run here: its panic unwinds in the writer's
    /// thread (counted as the writer's panic there), and an attempt dropped at the shutdown
    /// deadline stops it.
    #[test]
    fn work_on_the_worker_panics_here_and_stops_when_dropped() {
        fn boom() -> Result<(), deltalake::DeltaTableError> {
            panic!("in the task")
        }
        let runtime = io_runtime("test-on-worker", Priority::SERVING).unwrap();
        let worker = runtime.handle().clone();
        let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            runtime.block_on(on_worker(Some(&worker), async { boom() }))
        }));
        let payload = unwound.expect_err("the task's panic unwinds here");
        assert_eq!(payload.downcast_ref::<&str>(), Some(&"in the task"));

        /// Says when the task's future is dropped.
        struct Told(std::sync::mpsc::Sender<()>);
        impl Drop for Told {
            fn drop(&mut self) {
                let _ = self.0.send(());
            }
        }
        let (tx, dropped) = std::sync::mpsc::channel();
        runtime.block_on(async {
            let forever = on_worker(Some(&worker), async move {
                let _told = Told(tx);
                std::future::pending::<Result<(), deltalake::DeltaTableError>>().await
            });
            tokio::select! {
                _ = forever => unreachable!("the task never ends"),
                () = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
        });
        assert_ne!(
            dropped.recv_timeout(Duration::from_secs(10)),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout),
            "the task still runs after its attempt was dropped"
        );
    }
}
