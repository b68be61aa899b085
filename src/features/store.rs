//! Online stores behind one trait: a batch of key lookups in, the rows found out.

use serde::{Deserialize, Serialize};

use super::expr::Value;

/// One online table as the gateway knows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableSettings {
    pub name: String,
    /// Snapshot file loaded at start: `.jsonl` / `.json` (one object per line), `.csv` or
    /// `.parquet`.
    pub path: std::path::PathBuf,
    /// Key columns, in order.
    pub primary_keys: Vec<String>,
    /// A timestamp column that is part of the key: as-of lookups take the newest row at or
    /// before the request's time. Without it, a key has one row (the last one loaded wins).
    #[serde(default)]
    pub timestamp_key: Option<String>,
    /// When a row's values were computed, for `max_age_seconds` (defaults to `timestamp_key`).
    #[serde(default)]
    pub event_timestamp: Option<String>,
}

/// One lookup: a table, the key text (see [`key_text`]) and, for as-of tables, the time.
#[derive(Debug, Clone, PartialEq)]
pub struct Query<'a> {
    pub table: &'a str,
    pub key: &'a str,
    pub as_of: Option<i64>,
}

/// A row found: the asked columns' values, in the asked order, and its event time.
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    pub values: Vec<Value>,
    pub event_ms: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StoreError {
    #[error("feature table '{0}' is not in the online store")]
    UnknownTable(String),
    #[error("the online store did not answer in time")]
    Timeout,
    #[error("the online store is unreachable: {0}")]
    Unreachable(String),
}

pub trait OnlineStore: Send + Sync {
    /// For each query, the row's `columns` (one list per query), or `None` when there is no row.
    fn lookup(
        &self,
        queries: &[Query<'_>],
        columns: &[&[String]],
    ) -> Result<Vec<Option<Found>>, StoreError>;
    /// The table's settings (keys, timestamp key), for checks at load time.
    fn table(&self, name: &str) -> Option<TableSettings>;
    /// The table's columns when the store knows them (embedded), for checks at load time.
    fn columns(&self, table: &str) -> Option<Vec<String>>;
    /// `embedded` or `redis`, for metrics.
    fn kind(&self) -> &'static str;
}

/// Separates the parts of a composite key.
pub const KEY_SEPARATOR: char = '\u{1f}';

/// The key text of a JSON-like value, the same text [`crate::data::frame::Column::key_text`]
/// gives the request's value: `1234`, `1234.0` and `"1234"` are one key.
pub fn key_text(v: &Value, out: &mut String) {
    use std::fmt::Write;
    let _ = match v {
        Value::Null => Ok(()),
        Value::Int(i) | Value::Timestamp(i) => write!(out, "{i}"),
        Value::Float(x) => crate::data::frame::write_float(out, *x),
        Value::Bool(b) => write!(out, "{b}"),
        Value::String(s) => {
            out.push_str(s);
            Ok(())
        }
    };
}
