//! Online stores behind one trait: a batch of key lookups in, the rows found out.

use super::expr::Value;

pub use crate::settings::features::TableSettings;

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

/// Decodes a store's replies into rows, given each query's columns.
pub type Decode = Box<dyn FnOnce(&[&[String]]) -> Vec<Option<Found>> + Send>;

/// What a lookup started with [`OnlineStore::start_lookup`] gives.
pub enum Answer {
    /// For each query, its row or `None`.
    Rows(Vec<Option<Found>>),
    /// The store's replies, still to decode into rows. Decoding is CPU work: the join does it
    /// with the rest of its work on the inference pool, not on an async worker nor on the
    /// store's one I/O thread.
    Undecoded(Decode),
}

impl Answer {
    /// The rows, given each query's columns again (as the lookup was started with).
    pub fn into_rows(self, columns: &[&[String]]) -> Vec<Option<Found>> {
        match self {
            Self::Rows(rows) => rows,
            Self::Undecoded(decode) => decode(columns),
        }
    }
}

/// A lookup under way. It owns what it needs (the queries may go), and it ends by the store's
/// deadline: dropping it early (the request's own deadline) is safe.
pub type Pending = futures_util::future::BoxFuture<'static, Result<Answer, StoreError>>;

pub trait OnlineStore: Send + Sync {
    /// For each query, the row's `columns` (one list per query), or `None` when there is no row.
    /// Blocks the calling thread until the store answers or its deadline passes.
    fn lookup(
        &self,
        queries: &[Query<'_>],
        columns: &[&[String]],
    ) -> Result<Vec<Option<Found>>, StoreError>;
    /// As [`OnlineStore::lookup`], without holding a thread while a remote store answers: the
    /// request is sent now and the future resolves with the answer. A store in the process is
    /// cheap to ask: by default it answers here, at once.
    fn start_lookup(&self, queries: &[Query<'_>], columns: &[&[String]]) -> Pending {
        Box::pin(std::future::ready(
            self.lookup(queries, columns).map(Answer::Rows),
        ))
    }
    /// The table's settings (keys, timestamp key), for checks at load time.
    fn table(&self, name: &str) -> Option<TableSettings>;
    /// The table's columns when the store knows them (embedded), for checks at load time.
    fn columns(&self, table: &str) -> Option<Vec<String>>;
    /// `embedded` or `redis`, for metrics.
    fn kind(&self) -> &'static str;
    /// Whether [`OnlineStore::start_lookup`] answers at once (a store in the process): then a
    /// request looks its features up inside its inference job, with no second hop to the pool.
    fn answers_inline(&self) -> bool {
        false
    }
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
