//! The Redis online store: one pipelined round trip per request for every table and row
//! (identical keys sent once), under one deadline, on a connection that reconnects by itself
//! after an outage.
//!
//! Layout, for a table `t` and a row whose key columns hold `k1`, `k2` (as text: `1234`,
//! `Product A`; parts joined by the unit separator U+001F) under `features.redis.key_prefix`
//! (default `modelgate:`):
//!
//! - a table without `timestamp_key`: the string `modelgate:t:k1␟k2` holds the row as a JSON
//!   object of all its columns (`GET`);
//! - a table with `timestamp_key`: the sorted set `modelgate:t:k1␟k2` holds one JSON object per
//!   row, scored by its timestamp in epoch milliseconds; an as-of lookup takes the highest score
//!   at or below the request's time (`ZRANGE key <time> -inf BYSCORE REV LIMIT 0 1`).
//!
//! `modelgate features load --config FILE` writes the configured snapshot files this way.

use std::collections::HashMap;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::embedded::{json_value, snapshot_rows, time_of, LoadError};
use super::store::{Answer, Found, OnlineStore, Pending, Query, StoreError, TableSettings};

pub use crate::settings::features::RedisSettings;

#[derive(Debug, thiserror::Error)]
pub enum RedisStoreError {
    #[error("redis at {url}: {message}")]
    Redis { url: String, message: String },
    #[error(transparent)]
    Snapshot(#[from] LoadError),
}

pub struct RedisStore {
    /// Drives the connection; `None` only while dropping.
    runtime: Option<tokio::runtime::Runtime>,
    conn: ConnectionManager,
    tables: Vec<TableSettings>,
    /// Each table's event time column (`event_timestamp`, else `timestamp_key`), by index.
    events: std::sync::Arc<[Option<String>]>,
    prefix: String,
    deadline: Duration,
}

fn redis_error(url: &str, e: impl std::fmt::Display) -> RedisStoreError {
    RedisStoreError::Redis {
        url: crate::settings::redact_url(url),
        message: e.to_string(),
    }
}

impl RedisStore {
    /// Connects lazily: the gateway starts while Redis is down, and lookups time out until it
    /// is back.
    pub fn open(
        settings: &RedisSettings,
        tables: Vec<TableSettings>,
    ) -> Result<Self, RedisStoreError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("modelgate-redis")
            .enable_all()
            .build()
            .map_err(|e| redis_error(&settings.url, e))?;
        let client = redis::Client::open(settings.url.as_str())
            .map_err(|e| redis_error(&settings.url, e))?;
        let deadline = Duration::from_millis(settings.timeout_ms.max(1));
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_millis(
                settings.connect_timeout_ms.max(1),
            )))
            .set_response_timeout(Some(deadline))
            .set_number_of_retries(2);
        let conn = {
            let _inside = runtime.enter();
            client
                .get_connection_manager_lazy(config)
                .map_err(|e| redis_error(&settings.url, e))?
        };
        let events = tables
            .iter()
            .map(|t| {
                t.event_timestamp
                    .clone()
                    .or_else(|| t.timestamp_key.clone())
            })
            .collect();
        Ok(Self {
            runtime: Some(runtime),
            conn,
            events,
            tables,
            prefix: settings.key_prefix.clone(),
            deadline,
        })
    }

    fn redis_key(&self, table: &str, key: &str) -> String {
        redis_key(&self.prefix, table, key)
    }
}

/// The Redis key of a row: `<prefix><table>:<key>` (docs/features.md), for lookups and loads.
fn redis_key(prefix: &str, table: &str, key: &str) -> String {
    format!("{prefix}{table}:{key}")
}

/// Bulk-loads every table's snapshot file into Redis, replacing the keys it writes. Returns
/// rows written per table.
pub fn load_snapshots(
    settings: &RedisSettings,
    tables: &[TableSettings],
) -> Result<Vec<(String, usize)>, RedisStoreError> {
    let client =
        redis::Client::open(settings.url.as_str()).map_err(|e| redis_error(&settings.url, e))?;
    let mut conn = client
        .get_connection_with_timeout(Duration::from_millis(settings.connect_timeout_ms.max(1)))
        .map_err(|e| redis_error(&settings.url, e))?;
    let mut written = Vec::new();
    for t in tables {
        let rows = snapshot_rows(t)?;
        let mut shown = crate::progress::Progress::start(
            &format!("loading feature table '{}' into redis", t.name),
            rows.len() as u64,
            crate::progress::Unit::Rows,
        );
        let mut pipe = redis::pipe();
        let mut cleared = std::collections::HashSet::new();
        for (i, (key, as_of, row)) in rows.iter().enumerate() {
            let k = redis_key(&settings.key_prefix, &t.name, key);
            let json = serde_json::Value::Object(row.clone()).to_string();
            match as_of {
                None => {
                    pipe.cmd("SET").arg(&k).arg(json).ignore();
                }
                Some(ms) => {
                    // The snapshot replaces what the key held.
                    if cleared.insert(k.clone()) {
                        pipe.cmd("DEL").arg(&k).ignore();
                    }
                    pipe.cmd("ZADD").arg(&k).arg(*ms).arg(json).ignore();
                }
            }
            if (i + 1) % 1000 == 0 {
                pipe.query::<()>(&mut conn)
                    .map_err(|e| redis_error(&settings.url, e))?;
                pipe = redis::pipe();
                shown.set(i as u64 + 1);
            }
        }
        pipe.query::<()>(&mut conn)
            .map_err(|e| redis_error(&settings.url, e))?;
        written.push((t.name.clone(), rows.len()));
    }
    Ok(written)
}

/// The first JSON object of a GET or ZRANGE reply; an error reply is no row (and logged).
fn reply_object(v: &redis::Value) -> Option<serde_json::Map<String, serde_json::Value>> {
    match v {
        redis::Value::ServerError(e) => {
            tracing::warn!("a feature lookup in redis failed, its values are missing: {e:?}");
            None
        }
        redis::Value::BulkString(b) => serde_json::from_slice(b).ok(),
        redis::Value::SimpleString(s) => serde_json::from_str(s).ok(),
        redis::Value::Array(items) => items.first().and_then(reply_object),
        _ => None,
    }
}

impl Drop for RedisStore {
    /// The gateway may drop the store on an async worker, where a runtime cannot block.
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl RedisStore {
    /// One pipeline for the batch (one command per distinct table, key and time), and for each
    /// query the command whose reply it reads and its table.
    fn pipeline(
        &self,
        queries: &[Query<'_>],
    ) -> Result<(redis::Pipeline, Vec<(usize, usize)>), StoreError> {
        let mut slots: HashMap<(&str, &str, Option<i64>), usize> = HashMap::new();
        let mut order = Vec::with_capacity(queries.len());
        let mut pipe = redis::pipe();
        for q in queries {
            let t = self
                .tables
                .iter()
                .position(|t| t.name == q.table)
                .ok_or_else(|| StoreError::UnknownTable(q.table.to_owned()))?;
            let next = slots.len();
            let slot = *slots.entry((q.table, q.key, q.as_of)).or_insert_with(|| {
                let k = self.redis_key(q.table, q.key);
                match (&self.tables[t].timestamp_key, q.as_of) {
                    (Some(_), at) => {
                        pipe.cmd("ZRANGE")
                            .arg(k)
                            .arg(at.unwrap_or(i64::MAX))
                            .arg("-inf")
                            .arg("BYSCORE")
                            .arg("REV")
                            .arg("LIMIT")
                            .arg(0)
                            .arg(1);
                    }
                    (None, _) => {
                        pipe.cmd("GET").arg(k);
                    }
                }
                next
            });
            order.push((slot, t));
        }
        // One bad key (a wrong type, say) must not fail the others: its reply is an error value.
        pipe.ignore_errors();
        Ok((pipe, order))
    }
}

/// Each query's row from the pipeline's replies: the asked columns of the first JSON object of
/// its command's reply, and its event time.
fn decode_rows(
    replies: &[redis::Value],
    order: &[(usize, usize)],
    events: &[Option<String>],
    columns: &[&[String]],
) -> Vec<Option<Found>> {
    order
        .iter()
        .zip(columns)
        .map(|(&(slot, table), cols)| {
            let row = replies.get(slot).and_then(reply_object)?;
            Some(Found {
                values: cols
                    .iter()
                    .map(|c| row.get(c).map_or(super::expr::Value::Null, json_value))
                    .collect(),
                event_ms: events[table]
                    .as_ref()
                    .and_then(|c| row.get(c))
                    .map(json_value)
                    .as_ref()
                    .and_then(time_of),
            })
        })
        .collect()
}

impl OnlineStore for RedisStore {
    fn lookup(
        &self,
        queries: &[Query<'_>],
        columns: &[&[String]],
    ) -> Result<Vec<Option<Found>>, StoreError> {
        let pending = self.start_lookup(queries, columns);
        let runtime = self.runtime.as_ref().ok_or(StoreError::Timeout)?;
        Ok(runtime.block_on(pending)?.into_rows(columns))
    }

    /// The round trip runs on the store's own runtime, which drives the connection; the caller
    /// awaits its answer from any executor.
    fn start_lookup(&self, queries: &[Query<'_>], _columns: &[&[String]]) -> Pending {
        let ready = |r| -> Pending { Box::pin(std::future::ready(r)) };
        let (pipe, order) = match self.pipeline(queries) {
            Ok(p) => p,
            Err(e) => return ready(Err(e)),
        };
        let Some(runtime) = self.runtime.as_ref() else {
            return ready(Err(StoreError::Timeout));
        };
        let mut conn = self.conn.clone();
        let deadline = self.deadline;
        let replies = runtime.spawn(async move {
            match tokio::time::timeout(deadline, pipe.query_async::<Vec<redis::Value>>(&mut conn))
                .await
            {
                Ok(Ok(v)) => Ok(v),
                Ok(Err(e)) if e.is_timeout() => Err(StoreError::Timeout),
                Ok(Err(e)) => Err(StoreError::Unreachable(e.to_string())),
                Err(_) => Err(StoreError::Timeout),
            }
        });
        let events = self.events.clone();
        Box::pin(async move {
            // The runtime went away (the store is being dropped): no answer is coming.
            let replies = replies
                .await
                .map_err(|e| StoreError::Unreachable(e.to_string()))??;
            Ok(Answer::Undecoded(Box::new(move |columns| {
                decode_rows(&replies, &order, &events, columns)
            })))
        })
    }

    fn table(&self, name: &str) -> Option<TableSettings> {
        self.tables.iter().find(|t| t.name == name).cloned()
    }

    fn columns(&self, _table: &str) -> Option<Vec<String>> {
        // Redis rows are schemaless: their columns are not known ahead.
        None
    }

    fn kind(&self) -> &'static str {
        "redis"
    }
}
