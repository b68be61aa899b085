//! Statistics of a window's counts against the baseline or the previous window, the flags
//! they raise, and the report the monitoring API and the Prometheus gauges are made from.

use serde::Serialize;

use super::profile::{ColumnCounts, ColumnKind, ProfiledColumn, Role};
use super::quality::QualityFigures;
use super::stats;
use crate::settings::monitoring::Thresholds;

/// A column's or a served entity's drift state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warn,
    Drift,
}

impl Status {
    pub fn level(self) -> i64 {
        self as i64
    }
}

/// Statistics of one comparison; numeric columns have KS and Wasserstein, categorical ones
/// chi-squared and L-infinity.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Statistics {
    pub psi: f64,
    pub js_distance: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ks_d: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ks_p_value: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wasserstein: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chi2: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chi2_dof: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chi2_p_value: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub linf: Option<f64>,
}

impl Statistics {
    /// (name, value) of every statistic present, for the gauges.
    pub fn named(&self) -> Vec<(&'static str, f64)> {
        let mut out = vec![("psi", self.psi), ("js_distance", self.js_distance)];
        let optional = [
            ("ks_d", self.ks_d),
            ("ks_p_value", self.ks_p_value),
            ("wasserstein", self.wasserstein),
            ("chi2", self.chi2),
            ("chi2_p_value", self.chi2_p_value),
            ("linf", self.linf),
        ];
        out.extend(optional.into_iter().filter_map(|(n, v)| v.map(|v| (n, v))));
        out
    }

    /// The state these statistics put a column in.
    pub fn status(&self, t: &Thresholds) -> Status {
        let drift = self.psi >= t.psi_drift
            || self.js_distance >= t.js_drift
            || matches!((self.ks_p_value, self.ks_d), (Some(p), Some(d)) if p < t.ks_p_value && d >= t.ks_d_min)
            || matches!((self.chi2_p_value, self.linf), (Some(p), Some(l)) if p < t.chi2_p_value && l >= t.linf_min)
            || matches!((self.wasserstein, t.wasserstein_drift), (Some(w), Some(limit)) if w >= limit);
        if drift {
            Status::Drift
        } else if self.psi >= t.psi_warn {
            Status::Warn
        } else {
            Status::Ok
        }
    }
}

fn as_f64(counts: &[u64]) -> Vec<f64> {
    counts.iter().map(|&c| c as f64).collect()
}

/// `observed` against `reference` weights (shares or counts) over `reference_count` values.
pub fn compare(
    column: &ProfiledColumn,
    reference: &[f64],
    reference_count: f64,
    observed: &ColumnCounts,
) -> Statistics {
    let q = as_f64(&observed.bins);
    let mut s = Statistics {
        psi: stats::psi(reference, &q),
        js_distance: stats::js_distance(reference, &q),
        ks_d: None,
        ks_p_value: None,
        wasserstein: None,
        chi2: None,
        chi2_dof: None,
        chi2_p_value: None,
        linf: None,
    };
    match &column.baseline {
        super::baseline::ColumnBaseline::Numeric(n) => {
            let ks = stats::ks(reference, reference_count, &q);
            s.ks_d = Some(ks.d);
            s.ks_p_value = Some(ks.p_value);
            let locations = stats::bin_locations(&n.edges);
            s.wasserstein = Some(stats::wasserstein(reference, &q, &locations, n.std));
        }
        super::baseline::ColumnBaseline::Categorical(_) => {
            let chi = stats::chi_squared(reference, &q);
            s.chi2 = Some(chi.statistic);
            s.chi2_dof = Some(chi.dof);
            s.chi2_p_value = Some(chi.p_value);
            s.linf = Some(stats::l_infinity(reference, &q));
        }
    }
    s
}

#[derive(Debug, Clone, Serialize)]
pub struct ColumnReport {
    pub name: String,
    pub role: Role,
    pub kind: ColumnKind,
    /// Values counted on the bins (nulls excluded).
    pub count: u64,
    pub nulls: u64,
    pub defaulted: u64,
    /// Values outside the baseline's range (numeric columns' open tails).
    pub out_of_range: u64,
    pub bins: Vec<u64>,
    /// Null while the window has fewer than `min_count` values.
    pub vs_baseline: Option<Statistics>,
    /// Null for the since-load total, and while either window is below `min_count`.
    pub vs_previous: Option<Statistics>,
    /// Against the baseline; null below `min_count`.
    pub status: Option<Status>,
    /// Against the previous window.
    pub change_status: Option<Status>,
}

/// One column of a window: its counts and, with enough values, its statistics.
pub fn column_report(
    column: &ProfiledColumn,
    counts: &ColumnCounts,
    previous: Option<&ColumnCounts>,
    min_count: u64,
    thresholds: &Thresholds,
) -> ColumnReport {
    let count = counts.values();
    let enough = count >= min_count.max(1);
    let vs_baseline = enough.then(|| {
        compare(
            column,
            &column.baseline.shares(),
            column.baseline.count() as f64,
            counts,
        )
    });
    let vs_previous = previous
        .filter(|p| enough && p.values() >= min_count.max(1))
        .map(|p| compare(column, &as_f64(&p.bins), p.values() as f64, counts));
    let out_of_range = counts
        .bins
        .iter()
        .enumerate()
        .filter(|(b, _)| column.binner.out_of_range(*b))
        .map(|(_, n)| n)
        .sum();
    ColumnReport {
        name: column.name.clone(),
        role: column.role,
        kind: column.binner.kind(),
        count,
        nulls: counts.nulls,
        defaulted: counts.defaulted,
        out_of_range,
        bins: counts.bins.clone(),
        status: vs_baseline.as_ref().map(|s| s.status(thresholds)),
        change_status: vs_previous.as_ref().map(|s| s.status(thresholds)),
        vs_baseline,
        vs_previous,
    }
}

/// A closed window (or the since-load total) of one served entity.
#[derive(Debug, Clone, Serialize)]
pub struct WindowReport {
    pub window: String,
    pub start: String,
    pub end: Option<String>,
    /// The worst column status against the baseline; null when no column has enough values.
    pub status: Option<Status>,
    pub drift: bool,
    pub columns: Vec<ColumnReport>,
}

/// The window being filled now.
#[derive(Debug, Clone, Serialize)]
pub struct OpenWindow {
    pub window: String,
    pub start: String,
    pub end: String,
    pub count: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct QualityReport {
    pub window: String,
    pub start: String,
    pub end: Option<String>,
    #[serde(flatten)]
    pub figures: QualityFigures,
}

#[derive(Debug, Clone, Serialize)]
pub struct EntityReport {
    pub served_entity: String,
    pub model: Option<String>,
    pub version: Option<String>,
    /// Whether the version ships a `baseline.json` (without one nothing drifts).
    pub baseline: bool,
    /// The worst status over the reported windows.
    pub status: Option<Status>,
    pub drift: bool,
    /// The last closed window of each width, then the since-load total.
    pub windows: Vec<WindowReport>,
    pub open_windows: Vec<OpenWindow>,
    /// Quality of labelled predictions, by label arrival: the last closed window of each
    /// width, the open ones, then the since-load total.
    pub quality: Vec<QualityReport>,
    /// In a fleet: the replicas whose counts the figures add up (this one included).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replicas: Option<usize>,
}

/// Milliseconds since the epoch as RFC 3339 text.
pub fn iso(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}
