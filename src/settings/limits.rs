//! `limits`: bounds on what one request may hold, whatever the protocol (checked while
//! decoding, in `protocol::limits`).

use serde::{Deserialize, Serialize};

/// The `limits` settings: per request, whatever the protocol.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DecodeLimits {
    /// Input columns (MLflow columns, record keys, CSV header fields, V2 inputs).
    pub max_columns: usize,
    /// Values in the whole request: rows times values per row, over every column.
    pub max_cells: usize,
    /// Bytes of one string value.
    pub max_string_bytes: usize,
    /// Bytes of the caller's own request id (`client_request_id`, V2 `id`).
    pub max_id_bytes: usize,
    /// Bytes of one answer body; beyond it the request is refused, not answered in part.
    pub max_response_bytes: usize,
    /// Rows of one request (`inference.max_batch_rows`, copied here at start).
    #[serde(skip)]
    pub max_rows: usize,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        Self {
            max_columns: 2048,
            max_cells: 4_000_000,
            max_string_bytes: 64 * 1024,
            max_id_bytes: 256,
            max_response_bytes: 64 * 1024 * 1024,
            max_rows: 10_000,
        }
    }
}

impl DecodeLimits {
    /// Settings problems, named by key.
    pub fn problem(&self) -> Option<(&'static str, &'static str)> {
        [
            ("limits.max_columns", self.max_columns),
            ("limits.max_cells", self.max_cells),
            ("limits.max_string_bytes", self.max_string_bytes),
            ("limits.max_id_bytes", self.max_id_bytes),
            ("limits.max_response_bytes", self.max_response_bytes),
        ]
        .into_iter()
        .find(|(_, v)| *v == 0)
        .map(|(k, _)| (k, "must be above 0"))
    }
}
