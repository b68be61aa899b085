//! Drift and quality monitoring: baselines shipped with a model version, streaming profiles of
//! what each served entity sees, windowed statistics against the baseline and the previous
//! window, and prediction quality from posted labels.

pub mod baseline;
pub mod compare;
pub mod fit;
pub mod gauges;
pub mod monitor;
pub mod profile;
pub mod quality;
pub mod report;
pub mod settings;
pub mod stats;
pub mod window;

pub use monitor::{MonitorConfig, PendingLabels, SlotMonitor};
pub use settings::MonitoringSettings;
