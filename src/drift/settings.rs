//! The `monitoring` settings live in [`crate::settings::monitoring`]; re-exported for old paths.

pub use crate::settings::monitoring::{parse_width, LabelSettings, MonitoringSettings, Thresholds};
