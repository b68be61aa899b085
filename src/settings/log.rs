//! `log`: how the process writes its log lines, and whether each request gets one.

use serde::{Deserialize, Serialize};

/// The shape of log lines on stderr.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines (`time LEVEL target: message key=value`).
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, `message` and the event's
    /// fields at the top level.
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    /// `text` or `json` (`serve --log-format` overrides it).
    pub format: LogFormat,
    /// One line per request, target `modelgate::access`: method, path, status, endpoint,
    /// served entity, duration and request id. Off by default (a line per request costs).
    pub access: bool,
}
