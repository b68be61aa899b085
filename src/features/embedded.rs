//! The embedded online store: tables held in process, loaded from snapshot files (JSON Lines or
//! CSV). A load builds every table aside and publishes them with one atomic store, so lookups
//! never see a half-loaded table.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;
use dashmap::DashMap;

use super::expr::Value;
use super::store::{key_text, Found, OnlineStore, Query, StoreError, TableSettings, KEY_SEPARATOR};
use crate::data::time::parse_timestamp;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("feature table '{table}': cannot read {path}: {message}")]
    Read {
        table: String,
        path: String,
        message: String,
    },
    #[error("feature table '{table}': {path} line {line}: {message}")]
    Row {
        table: String,
        path: String,
        line: usize,
        message: String,
    },
}

struct Row {
    as_of: Option<i64>,
    event_ms: Option<i64>,
    values: Vec<Value>,
}

struct Table {
    columns: Vec<String>,
    /// Key text -> rows, oldest first (one row without a timestamp key). Sharded locks: the
    /// push API changes rows in place while lookups read others.
    rows: DashMap<String, Vec<Row>>,
}

pub struct EmbeddedStore {
    settings: Vec<TableSettings>,
    tables: ArcSwap<HashMap<String, Arc<Table>>>,
    /// Pushes and reloads take turns, so a push never writes into a table being replaced.
    write: std::sync::Mutex<()>,
}

impl EmbeddedStore {
    /// Loads every table's snapshot file; any bad file fails the whole load.
    pub fn open(settings: Vec<TableSettings>) -> Result<Self, LoadError> {
        let store = Self {
            settings,
            tables: ArcSwap::from_pointee(HashMap::new()),
            write: std::sync::Mutex::new(()),
        };
        store.reload()?;
        Ok(store)
    }

    /// Reads every snapshot again and publishes the new tables at once; on error the old stay.
    fn reload(&self) -> Result<(), LoadError> {
        let all: Vec<String> = self.settings.iter().map(|t| t.name.clone()).collect();
        self.reload_tables(&all)
    }

    /// Reads these tables' snapshots again and publishes them at once; the other tables (and
    /// the rows pushed into them) stay. On error nothing changes.
    pub fn reload_tables(&self, names: &[String]) -> Result<(), LoadError> {
        let mut fresh = Vec::new();
        for t in self.settings.iter().filter(|t| names.contains(&t.name)) {
            fresh.push((t.name.clone(), Arc::new(load_table(t)?)));
        }
        let _turn = self.write.lock().unwrap_or_else(|e| e.into_inner());
        let mut tables = (**self.tables.load()).clone();
        tables.extend(fresh);
        self.tables.store(Arc::new(tables));
        Ok(())
    }

    /// Rows per table, for logs.
    pub fn sizes(&self) -> Vec<(String, usize)> {
        let tables = self.tables.load();
        let mut v: Vec<(String, usize)> = tables
            .iter()
            .map(|(n, t)| (n.clone(), t.rows.iter().map(|e| e.value().len()).sum()))
            .collect();
        v.sort();
        v
    }
}

pub(crate) fn json_value(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => n.as_f64().map_or(Value::Null, Value::Float),
        },
        serde_json::Value::String(s) => Value::String(s.clone()),
        _ => Value::Null,
    }
}

/// A CSV cell stays text (so `00123` and `"42"` keep their spelling); the join converts it to
/// the feature's type. An empty cell is null.
fn csv_value(s: &str) -> Value {
    if s.is_empty() {
        Value::Null
    } else {
        Value::String(s.to_owned())
    }
}

/// A timestamp cell: ISO 8601 text, or milliseconds since the epoch.
pub(crate) fn time_of(v: &Value) -> Option<i64> {
    match v {
        Value::String(s) => parse_timestamp(s),
        Value::Int(i) | Value::Timestamp(i) => Some(*i),
        _ => None,
    }
}

fn load_table(t: &TableSettings) -> Result<Table, LoadError> {
    let path = t.path.display().to_string();
    let read_err = |message: String| LoadError::Read {
        table: t.name.clone(),
        path: path.clone(),
        message,
    };
    let records: Vec<NumberedRecord> = if has_extension(&t.path, "parquet") {
        parquet_records(&t.path).map_err(read_err)?
    } else if has_extension(&t.path, "csv") {
        let text = std::fs::read_to_string(&t.path).map_err(|e| read_err(e.to_string()))?;
        let mut reader = csv::Reader::from_reader(text.as_bytes());
        let header: Vec<String> = reader
            .headers()
            .map_err(|e| read_err(e.to_string()))?
            .iter()
            .map(str::to_owned)
            .collect();
        let mut out = Vec::new();
        for (i, rec) in reader.records().enumerate() {
            let rec = rec.map_err(|e| LoadError::Row {
                table: t.name.clone(),
                path: path.clone(),
                line: i + 2,
                message: e.to_string(),
            })?;
            out.push((
                i + 2,
                header
                    .iter()
                    .cloned()
                    .zip(rec.iter().map(csv_value))
                    .collect(),
            ));
        }
        out
    } else {
        let text = std::fs::read_to_string(&t.path).map_err(|e| read_err(e.to_string()))?;
        let mut out = Vec::new();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let row: serde_json::Map<String, serde_json::Value> = serde_json::from_str(line)
                .map_err(|e| LoadError::Row {
                    table: t.name.clone(),
                    path: path.clone(),
                    line: i + 1,
                    message: format!("not a JSON object: {e}"),
                })?;
            out.push((
                i + 1,
                row.iter()
                    .map(|(k, v)| (k.clone(), json_value(v)))
                    .collect(),
            ));
        }
        out
    };
    let mut columns: Vec<String> = Vec::new();
    for (_, rec) in &records {
        for (k, _) in rec {
            if !columns.contains(k) {
                columns.push(k.clone());
            }
        }
    }
    let rows: DashMap<String, Vec<Row>> = DashMap::new();
    for (line, rec) in records {
        let (key, row) = make_row(t, &columns, &rec).map_err(|message| LoadError::Row {
            table: t.name.clone(),
            path: path.clone(),
            line,
            message,
        })?;
        insert(&rows, key, row);
    }
    Ok(Table { columns, rows })
}

/// One row of a snapshot: key text, time (as-of tables), the row as JSON.
pub type SnapshotRow = (
    String,
    Option<i64>,
    serde_json::Map<String, serde_json::Value>,
);

/// A snapshot file's rows as `(key text, time for as-of tables, the row as JSON)`, for loading
/// another store; the last row of a key wins in tables without a time.
pub fn snapshot_rows(t: &TableSettings) -> Result<Vec<SnapshotRow>, LoadError> {
    let table = load_table(t)?;
    let mut out = Vec::new();
    for entry in table.rows.iter() {
        for row in entry.value() {
            let mut obj = serde_json::Map::new();
            for (c, v) in table.columns.iter().zip(&row.values) {
                if v.is_null() {
                    continue;
                }
                let json = v.to_json();
                obj.insert(c.clone(), json);
            }
            out.push((entry.key().clone(), row.as_of, obj));
        }
    }
    out.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    Ok(out)
}

/// The key text and row of a record; the error names what is missing.
fn make_row(
    t: &TableSettings,
    columns: &[String],
    rec: &[(String, Value)],
) -> Result<(String, Row), String> {
    let get = |name: &str| rec.iter().find(|(k, _)| k == name).map(|(_, v)| v);
    let mut key = String::new();
    for (i, k) in t.primary_keys.iter().enumerate() {
        let v = get(k)
            .filter(|v| !v.is_null())
            .ok_or_else(|| format!("no value for key column '{k}'"))?;
        if i > 0 {
            key.push(KEY_SEPARATOR);
        }
        key_text(v, &mut key);
    }
    let as_of =
        match &t.timestamp_key {
            Some(c) => Some(get(c).and_then(time_of).ok_or_else(|| {
                format!("'{c}' is not a timestamp (ISO 8601 or epoch milliseconds)")
            })?),
            None => None,
        };
    let event_col = t.event_timestamp.as_ref().or(t.timestamp_key.as_ref());
    let event_ms = event_col.and_then(|c| get(c)).and_then(time_of);
    let values = columns
        .iter()
        .map(|c| get(c).cloned().unwrap_or(Value::Null))
        .collect();
    Ok((
        key,
        Row {
            as_of,
            event_ms,
            values,
        },
    ))
}

/// Adds or replaces a row: the only row of its key, or the row of its key and time.
fn insert(rows: &DashMap<String, Vec<Row>>, key: String, row: Row) {
    let mut list = rows.entry(key).or_default();
    match row.as_of {
        None => *list = vec![row],
        Some(t) => match list.binary_search_by_key(&Some(t), |r| r.as_of) {
            Ok(i) => list[i] = row,
            Err(i) => list.insert(i, row),
        },
    }
}

/// A record of a snapshot file: its line (or row) number and its columns.
type NumberedRecord = (usize, Vec<(String, Value)>);

fn has_extension(path: &Path, ext: &str) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case(ext))
}

/// The rows of a Parquet file (numbered from 1), with Arrow types mapped to values: integers,
/// floats, booleans, strings, and timestamps and dates as epoch milliseconds.
fn parquet_records(path: &Path) -> Result<Vec<NumberedRecord>, String> {
    use deltalake::arrow::array::{Array, AsArray};
    use deltalake::arrow::datatypes::{self as dt, DataType, TimeUnit};
    use deltalake::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|b| b.build())
        .map_err(|e| format!("not a Parquet file: {e}"))?;
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| e.to_string())?;
        let schema = batch.schema();
        let mut rows: Vec<Vec<(String, Value)>> = vec![Vec::new(); batch.num_rows()];
        for (field, col) in schema.fields().iter().zip(batch.columns()) {
            let name = field.name();
            let value_at = |r: usize| -> Result<Value, String> {
                if col.is_null(r) {
                    return Ok(Value::Null);
                }
                Ok(match col.data_type() {
                    DataType::Boolean => Value::Bool(col.as_boolean().value(r)),
                    DataType::Int8 => Value::Int(col.as_primitive::<dt::Int8Type>().value(r).into()),
                    DataType::Int16 => Value::Int(col.as_primitive::<dt::Int16Type>().value(r).into()),
                    DataType::Int32 => Value::Int(col.as_primitive::<dt::Int32Type>().value(r).into()),
                    DataType::Int64 => Value::Int(col.as_primitive::<dt::Int64Type>().value(r)),
                    DataType::UInt8 => Value::Int(col.as_primitive::<dt::UInt8Type>().value(r).into()),
                    DataType::UInt16 => Value::Int(col.as_primitive::<dt::UInt16Type>().value(r).into()),
                    DataType::UInt32 => Value::Int(col.as_primitive::<dt::UInt32Type>().value(r).into()),
                    DataType::Float32 => Value::Float(col.as_primitive::<dt::Float32Type>().value(r).into()),
                    DataType::Float64 => Value::Float(col.as_primitive::<dt::Float64Type>().value(r)),
                    DataType::Utf8 => Value::String(col.as_string::<i32>().value(r).to_owned()),
                    DataType::LargeUtf8 => Value::String(col.as_string::<i64>().value(r).to_owned()),
                    DataType::Date32 => {
                        Value::Timestamp(i64::from(col.as_primitive::<dt::Date32Type>().value(r)) * 86_400_000)
                    }
                    DataType::Timestamp(unit, _) => {
                        let (v, per_ms) = match unit {
                            TimeUnit::Second => (col.as_primitive::<dt::TimestampSecondType>().value(r), -1000),
                            TimeUnit::Millisecond => (col.as_primitive::<dt::TimestampMillisecondType>().value(r), 1),
                            TimeUnit::Microsecond => (col.as_primitive::<dt::TimestampMicrosecondType>().value(r), 1000),
                            TimeUnit::Nanosecond => (col.as_primitive::<dt::TimestampNanosecondType>().value(r), 1_000_000),
                        };
                        Value::Timestamp(if per_ms < 0 { v.saturating_mul(1000) } else { v / per_ms })
                    }
                    other => return Err(format!("column '{name}' has the Arrow type {other}, which feature tables do not take")),
                })
            };
            for (r, row) in rows.iter_mut().enumerate() {
                row.push((name.clone(), value_at(r)?));
            }
        }
        let first = out.len();
        out.extend(
            rows.into_iter()
                .enumerate()
                .map(|(i, row)| (first + i + 1, row)),
        );
    }
    Ok(out)
}

/// A push to one table: rows to add or replace, and keys (with their time, for as-of tables)
/// to remove.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Push {
    #[serde(default)]
    pub upsert: Vec<serde_json::Map<String, serde_json::Value>>,
    #[serde(default)]
    pub delete: Vec<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("feature table '{0}' is not in the embedded store")]
    UnknownTable(String),
    #[error("{which}[{index}]: {message}")]
    Row {
        which: &'static str,
        index: usize,
        message: String,
    },
}

impl EmbeddedStore {
    /// Applies a push: every row is checked first, then all are applied (nothing on error).
    /// Rows pushed are replaced by the snapshot file's when it is reloaded.
    pub fn push(&self, table: &str, push: &Push) -> Result<(usize, usize), PushError> {
        let _turn = self.write.lock().unwrap_or_else(|e| e.into_inner());
        let tables = self.tables.load();
        let t = tables
            .get(table)
            .ok_or_else(|| PushError::UnknownTable(table.to_owned()))?;
        let settings = self
            .settings
            .iter()
            .find(|s| s.name == table)
            .ok_or_else(|| PushError::UnknownTable(table.to_owned()))?;
        let record = |which: &'static str,
                      index: usize,
                      obj: &serde_json::Map<String, serde_json::Value>| {
            let err = |message: String| PushError::Row {
                which,
                index,
                message,
            };
            if let Some(extra) = obj.keys().find(|k| !t.columns.contains(k)) {
                return Err(err(format!(
                    "column '{extra}' is not in table '{table}' (columns: {})",
                    t.columns.join(", ")
                )));
            }
            let rec: Vec<(String, Value)> = obj
                .iter()
                .map(|(k, v)| (k.clone(), json_value(v)))
                .collect();
            make_row(settings, &t.columns, &rec).map_err(err)
        };
        let upserts = push
            .upsert
            .iter()
            .enumerate()
            .map(|(i, o)| record("upsert", i, o))
            .collect::<Result<Vec<_>, _>>()?;
        let deletes = push
            .delete
            .iter()
            .enumerate()
            .map(|(i, o)| record("delete", i, o))
            .collect::<Result<Vec<_>, _>>()?;
        let mut deleted = 0;
        for (key, row) in deletes {
            let mut emptied = false;
            if let Some(mut list) = t.rows.get_mut(&key) {
                let before = list.len();
                match row.as_of {
                    None => list.clear(),
                    Some(at) => list.retain(|r| r.as_of != Some(at)),
                }
                deleted += before - list.len();
                emptied = list.is_empty();
            }
            if emptied {
                t.rows.remove_if(&key, |_, l| l.is_empty());
            }
        }
        let upserted = upserts.len();
        for (key, row) in upserts {
            insert(&t.rows, key, row);
        }
        Ok((upserted, deleted))
    }

    /// The snapshot files, for the watcher.
    fn files(&self) -> Vec<std::path::PathBuf> {
        self.settings.iter().map(|t| t.path.clone()).collect()
    }
}

/// Reloads the store when a snapshot file changes; stops when dropped.
pub struct SnapshotWatch {
    _watcher: notify::RecommendedWatcher,
}

/// Watches the folders of the snapshot files; a burst of changes to them is waited out for
/// `settle`, then every table is reloaded (a file that does not parse leaves the old tables).
pub fn watch(
    store: Arc<EmbeddedStore>,
    settle: std::time::Duration,
) -> notify::Result<SnapshotWatch> {
    use notify::{RecursiveMode, Watcher};
    let files: Vec<std::path::PathBuf> = store
        .files()
        .iter()
        .map(|f| std::path::absolute(f).unwrap_or_else(|_| f.clone()))
        .collect();
    let (tx, rx) = std::sync::mpsc::channel::<std::path::PathBuf>();
    let watched = files.clone();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        let change = matches!(
            event.kind,
            notify::EventKind::Create(_)
                | notify::EventKind::Modify(_)
                | notify::EventKind::Remove(_)
        );
        if change {
            for p in event.paths.iter().filter(|p| watched.contains(p)) {
                let _ = tx.send(p.clone());
            }
        }
    })?;
    let mut dirs: Vec<std::path::PathBuf> = files
        .iter()
        .filter_map(|f| f.parent().map(Path::to_path_buf))
        .collect();
    dirs.sort();
    dirs.dedup();
    for d in &dirs {
        watcher.watch(d, RecursiveMode::NonRecursive)?;
    }
    std::thread::Builder::new()
        .name("modelgate-feature-snapshots".into())
        .spawn(move || {
            while let Ok(first) = rx.recv() {
                std::thread::sleep(settle);
                let mut changed = vec![first];
                while let Ok(p) = rx.try_recv() {
                    changed.push(p);
                }
                // Only the tables whose files changed: the others keep their pushed rows.
                let names: Vec<String> = store
                    .settings
                    .iter()
                    .filter(|t| {
                        let f = std::path::absolute(&t.path).unwrap_or_else(|_| t.path.clone());
                        changed.contains(&f)
                    })
                    .map(|t| t.name.clone())
                    .collect();
                match store.reload_tables(&names) {
                    Ok(()) => tracing::info!(tables = ?store.sizes(), "feature tables reloaded"),
                    Err(e) => {
                        tracing::error!("feature tables not reloaded, the loaded ones stay: {e}")
                    }
                }
            }
        })
        .map_err(|e| notify::Error::generic(&e.to_string()))?;
    Ok(SnapshotWatch { _watcher: watcher })
}

impl OnlineStore for EmbeddedStore {
    fn answers_inline(&self) -> bool {
        true
    }

    fn lookup(
        &self,
        queries: &[Query<'_>],
        columns: &[&[String]],
    ) -> Result<Vec<Option<Found>>, StoreError> {
        let tables = self.tables.load();
        queries
            .iter()
            .zip(columns)
            .map(|(q, cols)| {
                let table = tables
                    .get(q.table)
                    .ok_or_else(|| StoreError::UnknownTable(q.table.to_owned()))?;
                let Some(rows) = table.rows.get(q.key) else {
                    return Ok(None);
                };
                let rows = rows.value();
                let row = match q.as_of {
                    // Newest row at or before the time.
                    Some(t) => {
                        let n = rows.partition_point(|r| r.as_of.is_none_or(|a| a <= t));
                        n.checked_sub(1).map(|i| &rows[i])
                    }
                    None => rows.last(),
                };
                Ok(row.map(|row| Found {
                    values: cols
                        .iter()
                        .map(|c| {
                            table
                                .columns
                                .iter()
                                .position(|x| x == c)
                                .map_or(Value::Null, |i| row.values[i].clone())
                        })
                        .collect(),
                    event_ms: row.event_ms,
                }))
            })
            .collect()
    }

    fn table(&self, name: &str) -> Option<TableSettings> {
        self.settings.iter().find(|t| t.name == name).cloned()
    }

    fn columns(&self, table: &str) -> Option<Vec<String>> {
        self.tables.load().get(table).map(|t| t.columns.clone())
    }

    fn kind(&self) -> &'static str {
        "embedded"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(dir: &Path, name: &str, body: &str, keys: &[&str], ts: Option<&str>) -> TableSettings {
        let path = dir.join(name);
        std::fs::write(&path, body).unwrap();
        TableSettings {
            name: name.split('.').next().unwrap().into(),
            path,
            primary_keys: keys.iter().map(|k| k.to_string()).collect(),
            timestamp_key: ts.map(str::to_owned),
            event_timestamp: None,
        }
    }

    fn one(
        store: &EmbeddedStore,
        table: &str,
        key: &str,
        as_of: Option<i64>,
        col: &str,
    ) -> Option<Value> {
        let cols = vec![col.to_owned()];
        store
            .lookup(&[Query { table, key, as_of }], &[&cols])
            .unwrap()
            .pop()
            .unwrap()
            .map(|f| f.values[0].clone())
    }

    #[test]
    fn latest_and_as_of_lookups_from_jsonl_and_csv() {
        let dir = tempfile::tempdir().unwrap();
        let counts = table(
            dir.path(),
            "counts.jsonl",
            "{\"CustomerID\": 1234, \"n\": 2}\n\n{\"CustomerID\": 1234, \"n\": 5}\n{\"CustomerID\": 1235, \"n\": 1}\n",
            &["CustomerID"],
            None,
        );
        let prices = table(
            dir.path(),
            "prices.csv",
            "Product,LookupTimestamp,Max\nProduct A,2026-11-22T10:00:00Z,10.5\nProduct A,2026-11-22T10:02:00Z,12\nProduct B,2026-11-22T10:01:00Z,7\n",
            &["Product"],
            Some("LookupTimestamp"),
        );
        let store = EmbeddedStore::open(vec![counts, prices]).unwrap();
        assert_eq!(
            one(&store, "counts", "1234", None, "n"),
            Some(Value::Int(5))
        );
        assert_eq!(one(&store, "counts", "9999", None, "n"), None);
        assert_eq!(
            one(&store, "counts", "1235", None, "missing"),
            Some(Value::Null)
        );
        let t = |s: &str| parse_timestamp(s);
        assert_eq!(
            one(
                &store,
                "prices",
                "Product A",
                t("2026-11-22T10:01:59Z"),
                "Max"
            ),
            Some(Value::String("10.5".into()))
        );
        assert_eq!(
            one(
                &store,
                "prices",
                "Product A",
                t("2026-11-22T10:02:00Z"),
                "Max"
            ),
            Some(Value::String("12".into()))
        );
        assert_eq!(
            one(
                &store,
                "prices",
                "Product A",
                t("2026-11-22T09:59:00Z"),
                "Max"
            ),
            None
        );
        assert!(matches!(
            store.lookup(
                &[Query {
                    table: "nope",
                    key: "1",
                    as_of: None
                }],
                &[&[]]
            ),
            Err(StoreError::UnknownTable(_))
        ));
        assert_eq!(
            store.sizes(),
            vec![("counts".into(), 2), ("prices".into(), 3)]
        );
    }

    #[test]
    fn bad_files_name_the_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let t = table(
            dir.path(),
            "t.jsonl",
            "{\"k\": 1}\nnot json\n",
            &["k"],
            None,
        );
        let e = EmbeddedStore::open(vec![t]).err().unwrap().to_string();
        assert!(
            e.contains("t.jsonl line 2") && e.contains("not a JSON object"),
            "{e}"
        );
        let t = table(dir.path(), "u.jsonl", "{\"x\": 1}\n", &["k"], None);
        let e = EmbeddedStore::open(vec![t]).err().unwrap().to_string();
        assert!(e.contains("line 1") && e.contains("key column 'k'"), "{e}");
        let mut t = table(dir.path(), "v.jsonl", "", &["k"], None);
        t.path = dir.path().join("absent.jsonl");
        let e = EmbeddedStore::open(vec![t]).err().unwrap().to_string();
        assert!(
            e.contains("cannot read") && e.contains("absent.jsonl"),
            "{e}"
        );
    }
}

#[cfg(test)]
mod parquet_tests {
    use super::*;
    use deltalake::arrow::array::{
        Float64Array, Int64Array, StringArray, TimestampMillisecondArray,
    };
    use deltalake::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    use deltalake::arrow::record_batch::RecordBatch;
    use deltalake::parquet::arrow::ArrowWriter;

    #[test]
    fn parquet_snapshots_load_with_typed_columns() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("prices.parquet");
        let schema = Arc::new(Schema::new(vec![
            Field::new("Product", DataType::Utf8, false),
            Field::new(
                "LookupTimestamp",
                DataType::Timestamp(TimeUnit::Millisecond, None),
                false,
            ),
            Field::new("Max", DataType::Float64, true),
            Field::new("n", DataType::Int64, true),
        ]));
        let t0 = parse_timestamp("2026-11-22T10:00:00Z").unwrap();
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(vec!["Product A", "Product A"])),
                Arc::new(TimestampMillisecondArray::from(vec![t0, t0 + 60_000])),
                Arc::new(Float64Array::from(vec![Some(10.5), None])),
                Arc::new(Int64Array::from(vec![Some(1), Some(2)])),
            ],
        )
        .unwrap();
        let mut writer =
            ArrowWriter::try_new(std::fs::File::create(&path).unwrap(), schema, None).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        let store = EmbeddedStore::open(vec![TableSettings {
            name: "prices".into(),
            path,
            primary_keys: vec!["Product".into()],
            timestamp_key: Some("LookupTimestamp".into()),
            event_timestamp: None,
        }])
        .unwrap();
        let cols = vec!["Max".to_owned(), "n".to_owned()];
        let found = |at: i64| {
            store
                .lookup(
                    &[Query {
                        table: "prices",
                        key: "Product A",
                        as_of: Some(at),
                    }],
                    &[&cols],
                )
                .unwrap()
                .pop()
                .unwrap()
                .map(|f| (f.values, f.event_ms))
        };
        assert_eq!(
            found(t0 + 30_000),
            Some((vec![Value::Float(10.5), Value::Int(1)], Some(t0)))
        );
        assert_eq!(
            found(t0 + 60_000),
            Some((vec![Value::Null, Value::Int(2)], Some(t0 + 60_000)))
        );
        assert_eq!(found(t0 - 1), None);
    }
}
