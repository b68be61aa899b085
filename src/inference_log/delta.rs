//! Appends record batches to Delta tables: creates a table on first use, adds new columns
//! (schema evolution, old rows untouched), and commits one batch as one table version.
//! Concurrent appenders (other gateway processes) are handled by Delta's optimistic
//! concurrency: blind appends do not conflict and the commit is retried on a newer version.

use std::collections::HashMap;
use std::sync::Arc;

use deltalake::arrow::array::{new_null_array, ArrayRef};
use deltalake::arrow::compute::cast;
use deltalake::arrow::datatypes::{Field, Schema};
use deltalake::arrow::record_batch::RecordBatch;
use deltalake::kernel::engine::arrow_conversion::TryIntoKernel;
use deltalake::kernel::StructType;
use deltalake::writer::{DeltaWriter, RecordBatchWriter, WriteMode};
use deltalake::DeltaTable;

use super::rows::Kind;

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("table {uri}: {message}")]
    Table { uri: String, message: String },
}

/// Open tables by URI, reused across commits.
pub struct DeltaSink {
    runtime: tokio::runtime::Runtime,
    storage_options: HashMap<String, String>,
    tables: HashMap<String, DeltaTable>,
}

impl DeltaSink {
    pub fn new(storage_options: HashMap<String, String>) -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        Ok(Self {
            runtime,
            storage_options,
            tables: HashMap::new(),
        })
    }

    /// Appends `batch` to the table at `uri` as one commit.
    pub fn append(&mut self, uri: &str, batch: RecordBatch) -> Result<i64, SinkError> {
        let table_error = |e: deltalake::DeltaTableError| SinkError::Table {
            uri: uri.to_owned(),
            message: e.to_string(),
        };
        let mut table = match self.tables.remove(uri) {
            Some(t) => t,
            None => self
                .runtime
                .block_on(open_or_create(uri, &batch, &self.storage_options))
                .map_err(table_error)?,
        };
        let result = self.runtime.block_on(async {
            let mut writer = RecordBatchWriter::for_table(&table)?;
            let batch = conform(&batch, &writer.arrow_schema()).map_err(|message| {
                deltalake::DeltaTableError::Generic(format!("cannot prepare the rows: {message}"))
            })?;
            writer
                .write_with_mode(batch, WriteMode::MergeSchema)
                .await?;
            writer.flush_and_commit(&mut table).await
        });
        match result {
            Ok(version) => {
                self.tables.insert(uri.to_owned(), table);
                Ok(version as i64)
            }
            // The table is reopened on the next attempt (it may have changed under us).
            Err(e) => Err(table_error(e)),
        }
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
fn conform(batch: &RecordBatch, table: &Schema) -> Result<RecordBatch, String> {
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
                let name = format!("{}__{suffix}", field.name());
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
