//! `features`: the online store behind feature lookups and the tables it holds.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct FeatureSettings {
    /// Online tables of the embedded store, each loaded from a snapshot file at start.
    pub tables: Vec<TableSettings>,
    /// Reload the tables when their snapshot files change (embedded store).
    pub watch: bool,
    pub store: StoreKind,
    pub redis: RedisSettings,
}

impl Default for FeatureSettings {
    fn default() -> Self {
        Self {
            tables: Vec::new(),
            watch: true,
            store: StoreKind::Embedded,
            redis: Default::default(),
        }
    }
}

/// `features.store`: where looked-up features live.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// Tables in process, loaded from their snapshot files.
    #[default]
    Embedded,
    /// A Redis server shared by the replicas.
    Redis,
}

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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisSettings {
    pub url: String,
    pub key_prefix: String,
    /// Deadline of one request's whole lookup; past it, values are missing (timed out) and
    /// follow their features' policies.
    pub timeout_ms: u64,
    /// Deadline of one connection attempt.
    pub connect_timeout_ms: u64,
}

impl Default for RedisSettings {
    fn default() -> Self {
        Self {
            url: "redis://127.0.0.1:6379".into(),
            key_prefix: "modelgate:".into(),
            timeout_ms: 50,
            connect_timeout_ms: 1000,
        }
    }
}
