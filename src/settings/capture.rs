//! `endpoints[].auto_capture_config`: an endpoint's inference tables, where they are under
//! `inference_log.location`, and the check that no two endpoints write the same tables.

use serde::{Deserialize, Serialize};

use super::endpoint::{valid_name, EndpointSettings, Violation};

/// Databricks' inference-table settings. The tables are `<table_name_prefix>_payload`,
/// `_predictions` and `_labels` in `<location>/<catalog_name>/<schema_name>/` (the parts given).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AutoCaptureConfig {
    #[serde(default = "enabled_by_default")]
    pub enabled: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catalog_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_name: Option<String>,
    /// Defaults to the endpoint name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table_name_prefix: Option<String>,
    /// Share of requests logged (0 < f <= 1), decided by request id so a request's payload
    /// and prediction rows are logged together or not at all.
    #[serde(default = "all_requests")]
    pub sampling_fraction: f64,
    /// What happens to a request's rows when the writer falls behind and its queue
    /// (`inference_log.queue_bytes`) fills: see [`Backpressure`].
    #[serde(default, skip_serializing_if = "Backpressure::is_default")]
    pub backpressure: Backpressure,
    /// Databricks reports the table state here; accepted from its clients and ignored.
    #[serde(default, skip_serializing)]
    pub state: Option<serde_json::Value>,
}

/// An endpoint's choice when the inference log cannot keep up.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Backpressure {
    /// Callers are answered as ever; rows that do not fit the queue are dropped and counted
    /// (`reason="queue_full"`).
    #[default]
    Drop,
    /// Past half the queue, requests are logged at a smaller share, halved for every further
    /// sixteenth of the queue taken (to 1/512 of `sampling_fraction`); each payload row
    /// records the share it was written at in `sampling_fraction`, so readers can weight it
    /// by its inverse. Rows left out are counted (`reason="sampled_down"`).
    Sample,
    /// A request that cannot be logged is refused with 429 (`REQUEST_LIMIT_EXCEEDED`,
    /// `limit="inference_log_queue"`), before it is scored once the queue is seven eighths
    /// full or could not hold a call like the endpoint's latest: every answered request is
    /// logged, but one whose rows are larger than the whole
    /// queue (it is answered, its rows counted as `queue_full`).
    Reject,
}

impl Backpressure {
    fn is_default(&self) -> bool {
        *self == Self::Drop
    }
}

pub(crate) fn enabled_by_default() -> bool {
    true
}

pub(crate) fn all_requests() -> f64 {
    1.0
}

impl AutoCaptureConfig {
    /// The prefix of the endpoint's table names.
    pub fn prefix<'a>(&'a self, endpoint: &'a str) -> &'a str {
        self.table_name_prefix.as_deref().unwrap_or(endpoint)
    }

    /// Where the endpoint's tables are under `inference_log.location`: the catalog and schema
    /// folders given and the prefix (`ml/serving/transactions` for `ml/serving/transactions_*`).
    pub fn location(&self, endpoint: &str) -> String {
        [
            self.catalog_name.as_deref(),
            self.schema_name.as_deref(),
            Some(self.prefix(endpoint)),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join("/")
    }
}

impl EndpointSettings {
    /// Where this endpoint's inference tables are under `inference_log.location`
    /// ([`AutoCaptureConfig::location`]), when it logs.
    pub fn table_location(&self) -> Option<String> {
        self.auto_capture_config
            .as_ref()
            .filter(|c| c.enabled)
            .map(|c| c.location(&self.name))
    }

    /// The location of the inference tables this endpoint and `other` would both write, when
    /// they would (compared without case, as a case-insensitive file system or a catalog does).
    pub fn shared_tables(&self, other: &EndpointSettings) -> Option<String> {
        let mine = self.table_location()?;
        let theirs = other.table_location()?;
        (self.name != other.name && mine.eq_ignore_ascii_case(&theirs)).then_some(mine)
    }

    /// The violation of this endpoint when its inference tables (at `location`) are those of
    /// endpoint `owner`; `prefix` as in [`EndpointSettings::violations`].
    pub fn shared_tables_violation(&self, owner: &str, location: &str, prefix: &str) -> Violation {
        let key = "auto_capture_config.table_name_prefix";
        Violation {
            key: if prefix.is_empty() {
                key.to_owned()
            } else {
                format!("{prefix}.{key}")
            },
            message: format!(
                "endpoints '{}' and '{owner}' would both log to the inference tables '{location}_payload', '_predictions' and '_labels'; give '{}' its own table_name_prefix (or catalog_name / schema_name)",
                self.name, self.name
            ),
        }
    }
}

/// Endpoints of a config file that would log to another's inference tables: each one after the
/// first at its key (`endpoints[i].auto_capture_config.table_name_prefix`).
pub fn shared_table_violations(endpoints: &[EndpointSettings]) -> Vec<Violation> {
    let mut owners: std::collections::HashMap<String, &str> = Default::default();
    let mut out = Vec::new();
    for (i, ep) in endpoints.iter().enumerate() {
        let Some(location) = ep.table_location() else {
            continue;
        };
        match owners.entry(location.to_ascii_lowercase()) {
            std::collections::hash_map::Entry::Occupied(owner) => out.push(
                ep.shared_tables_violation(owner.get(), &location, &format!("endpoints[{i}]")),
            ),
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(&ep.name);
            }
        }
    }
    out
}

pub(super) fn capture_violations(
    capture: &AutoCaptureConfig,
    endpoint: &str,
    prefix: &str,
    add: &mut impl FnMut(String, String),
) {
    let k = |f: &str| format!("{prefix}.{f}");
    let f = capture.sampling_fraction;
    if !(f > 0.0 && f <= 1.0) {
        add(
            k("sampling_fraction"),
            format!("{f} is not above 0 and at most 1"),
        );
    }
    // Table names become folder names: the same characters as endpoint names.
    let parts = [
        ("catalog_name", capture.catalog_name.as_deref()),
        ("schema_name", capture.schema_name.as_deref()),
        ("table_name_prefix", Some(capture.prefix(endpoint))),
    ];
    for (field, value) in parts {
        if let Some(v) = value.filter(|v| !valid_name(v)) {
            add(
                k(field),
                format!("'{v}' is not a valid table name part (letters, digits, '-', '_', '.'; at most 63)"),
            );
        }
    }
}
