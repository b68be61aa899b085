//! `monitoring.*` settings: windows, the minimum count before a window reports, thresholds per
//! statistic, and how long predictions wait for their labels.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct MonitoringSettings {
    /// Profile every served entity whose version ships a `baseline.json`, and join labels.
    pub enabled: bool,
    /// Tumbling window widths (`30s`, `5m`, `1h`, `1d`), aligned to the Unix epoch.
    pub windows: Vec<String>,
    /// Closed windows kept per width (the JSON shows them; statistics use the last two).
    pub windows_kept: usize,
    /// Values a window needs before its statistics are reported.
    pub min_count: u64,
    pub thresholds: Thresholds,
    pub labels: LabelSettings,
}

impl Default for MonitoringSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            windows: vec!["5m".into(), "30m".into(), "1h".into()],
            windows_kept: 12,
            min_count: 100,
            thresholds: Thresholds::default(),
            labels: LabelSettings::default(),
        }
    }
}

/// When a feature is flagged. A numeric feature drifts when PSI, the JS distance or the
/// Wasserstein distance reaches its threshold, or when the KS p-value is below its level while
/// D is at least `ks_d_min` (with thousands of values tiny shifts are significant; the floor
/// keeps them from flagging). Categorical features use chi-squared with an L-infinity floor the
/// same way. PSI between `psi_warn` and `psi_drift` is a warning.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Thresholds {
    pub psi_warn: f64,
    pub psi_drift: f64,
    pub js_drift: f64,
    pub ks_p_value: f64,
    pub ks_d_min: f64,
    pub chi2_p_value: f64,
    pub linf_min: f64,
    /// Wasserstein-1 in baseline standard deviations; unset: not used for the flag.
    pub wasserstein_drift: Option<f64>,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            psi_warn: 0.1,
            psi_drift: 0.25,
            js_drift: 0.1,
            ks_p_value: 0.05,
            ks_d_min: 0.1,
            chi2_p_value: 0.05,
            linf_min: 0.1,
            wasserstein_drift: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LabelSettings {
    /// How long a prediction waits for its label.
    pub wait_seconds: u64,
    /// Scored rows held for labels; the oldest go first beyond it.
    pub max_pending_rows: usize,
    /// Bytes held for labels (the requests' frames, of those with event times, predictions
    /// and bookkeeping, strings at their length); the oldest go first beyond it.
    pub max_pending_bytes: usize,
}

impl Default for LabelSettings {
    fn default() -> Self {
        Self {
            wait_seconds: 3600,
            max_pending_rows: 100_000,
            max_pending_bytes: 64 * 1024 * 1024,
        }
    }
}

/// A window width as text (`90s`, `5m`, `1h`, `1d`) in milliseconds.
pub fn parse_width(text: &str) -> Option<i64> {
    let text = text.trim();
    let unit = text.chars().last()?;
    let number: i64 = text[..text.len() - unit.len_utf8()].parse().ok()?;
    let scale = match unit {
        's' => 1_000,
        'm' => 60_000,
        'h' => 3_600_000,
        'd' => 86_400_000,
        _ => return None,
    };
    (number > 0).then(|| number.checked_mul(scale)).flatten()
}

impl MonitoringSettings {
    /// The windows as (name, width in ms), checked.
    pub fn widths(&self) -> Result<Vec<(String, i64)>, (String, String)> {
        let mut out: Vec<(String, i64)> = Vec::new();
        for (i, w) in self.windows.iter().enumerate() {
            let key = format!("monitoring.windows[{i}]");
            let Some(ms) = parse_width(w) else {
                return Err((
                    key,
                    format!(
                        "'{w}' is not a window width (a whole number of s, m, h or d: 30s, 5m, 1h)"
                    ),
                ));
            };
            if out.iter().any(|(_, o)| *o == ms) {
                return Err((key, format!("'{w}' is listed twice")));
            }
            out.push((w.trim().to_owned(), ms));
        }
        if out.len() > 8 {
            return Err(("monitoring.windows".into(), "at most 8 windows".into()));
        }
        Ok(out)
    }

    /// Problems with these settings, as (key, message).
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if let Err(p) = self.widths() {
            out.push(p);
        }
        if self.windows_kept == 0 || self.windows_kept > 1000 {
            out.push((
                "monitoring.windows_kept".into(),
                "must be between 1 and 1000".into(),
            ));
        }
        let t = &self.thresholds;
        let probabilities = [
            ("ks_p_value", t.ks_p_value),
            ("chi2_p_value", t.chi2_p_value),
        ];
        for (name, v) in probabilities {
            if !(0.0..=1.0).contains(&v) {
                out.push((
                    format!("monitoring.thresholds.{name}"),
                    format!("{v} is not a probability"),
                ));
            }
        }
        let positive = [
            ("psi_warn", t.psi_warn),
            ("psi_drift", t.psi_drift),
            ("js_drift", t.js_drift),
            ("ks_d_min", t.ks_d_min),
            ("linf_min", t.linf_min),
            ("wasserstein_drift", t.wasserstein_drift.unwrap_or(1.0)),
        ];
        for (name, v) in positive {
            if !(v.is_finite() && v >= 0.0) {
                out.push((
                    format!("monitoring.thresholds.{name}"),
                    format!("{v} must be a number >= 0"),
                ));
            }
        }
        if t.psi_warn > t.psi_drift {
            out.push((
                "monitoring.thresholds.psi_warn".into(),
                "must not be above psi_drift".into(),
            ));
        }
        if self.labels.wait_seconds == 0 {
            out.push((
                "monitoring.labels.wait_seconds".into(),
                "must be at least 1".into(),
            ));
        }
        if self.labels.max_pending_bytes == 0 {
            out.push((
                "monitoring.labels.max_pending_bytes".into(),
                "must be at least 1 (a request is held only when it fits)".into(),
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widths_parse() {
        assert_eq!(parse_width("5m"), Some(300_000));
        assert_eq!(parse_width("2s"), Some(2_000));
        assert_eq!(parse_width("1h"), Some(3_600_000));
        assert_eq!(parse_width("1d"), Some(86_400_000));
        assert_eq!(parse_width("0m"), None);
        assert_eq!(parse_width("5"), None);
        assert_eq!(parse_width("m"), None);
        assert_eq!(parse_width("1.5h"), None);
        assert_eq!(parse_width("5µ"), None);
    }

    #[test]
    fn problems_name_the_key() {
        assert!(MonitoringSettings::default().problems().is_empty());
        let mut s = MonitoringSettings {
            windows: vec!["5m".into(), "300s".into()],
            ..Default::default()
        };
        s.thresholds.ks_p_value = 2.0;
        s.labels.max_pending_bytes = 0;
        let p = s.problems();
        assert_eq!(p[0].0, "monitoring.windows[1]");
        assert_eq!(p[1].0, "monitoring.thresholds.ks_p_value");
        assert_eq!(p[2].0, "monitoring.labels.max_pending_bytes");
        assert_eq!(LabelSettings::default().max_pending_bytes, 64 << 20);
    }
}
