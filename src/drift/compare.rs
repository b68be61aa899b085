//! A challenger's labelled quality against a champion's: the difference of one figure with a
//! normal confidence interval, so that a lucky window does not promote.

use serde::Serialize;

use super::quality::{Estimate, QualityCounts};
use super::stats::chi2_sf;
use crate::settings::promotion::QualityMetric;

/// The two-sided standard normal quantile of `confidence` (1.959964 for 0.95): z with
/// P(|Z| > z) = 1 - confidence, i.e. chi-squared with one degree of freedom at z². Found by
/// bisection on [0, 40]; a confidence of 0 or less gives about 0, of 1 or more
/// a z beyond 30 (where the tail underflows), an interval no real difference clears.
pub fn z_for(confidence: f64) -> f64 {
    let alpha = 1.0 - confidence;
    if alpha.is_nan() {
        // The widest interval: a confidence that is no number must not make one narrow.
        return 40.0;
    }
    let (mut lo, mut hi) = (0.0f64, 40.0f64);
    for _ in 0..60 {
        let mid = 0.5 * (lo + hi);
        // The tail shrinks as z grows: too much tail left means z is still too small.
        if chi2_sf(mid * mid, 1.0) > alpha {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

/// One figure of both sides and how much better the challenger is.
///
/// `improvement` is positive when the challenger is better: challenger − champion, or for log
/// loss (smaller is better) champion − challenger. The interval is improvement ±
/// z·sqrt(se_champion² + se_challenger²), treating the two sides as independent samples. That
/// is exact for A/B arms (disjoint rows); for a shadow scoring the same rows as the champion
/// the two models' errors are usually positively correlated, so the true variance of the
/// difference is smaller and the interval is conservative (wider than needed).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    pub metric: QualityMetric,
    pub champion: Option<Estimate>,
    pub challenger: Option<Estimate>,
    pub improvement: Option<f64>,
    pub ci_low: Option<f64>,
    pub ci_high: Option<f64>,
    pub confidence: f64,
}

/// Compares `metric` of the two sides' counts; the difference and its interval are None where
/// either side's figure is undefined.
pub fn compare(
    metric: QualityMetric,
    champion: &QualityCounts,
    challenger: &QualityCounts,
    confidence: f64,
) -> Comparison {
    let c = champion.estimate(metric);
    let h = challenger.estimate(metric);
    let (improvement, ci_low, ci_high) = match (c, h) {
        (Some(c), Some(h)) => {
            let diff = if metric.higher_is_better() {
                h.value - c.value
            } else {
                c.value - h.value
            };
            let half = z_for(confidence) * c.std_error.hypot(h.std_error);
            (Some(diff), Some(diff - half), Some(diff + half))
        }
        _ => (None, None, None),
    };
    Comparison {
        metric,
        champion: c,
        challenger: h,
        improvement,
        ci_low,
        ci_high,
        confidence,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scored(rows: &[(bool, f64)]) -> QualityCounts {
        let mut q = QualityCounts::default();
        for &(actual, p) in rows {
            q.add(actual, p >= 0.5, Some(p));
        }
        q
    }

    #[test]
    fn z_for_common_confidences() {
        assert!((z_for(0.95) - 1.959964).abs() < 1e-6, "{}", z_for(0.95));
        assert!((z_for(0.99) - 2.575829).abs() < 1e-6, "{}", z_for(0.99));
        assert!((z_for(0.6826894921) - 1.0).abs() < 1e-6);
        assert!(z_for(0.0) < 1e-12);
        assert!(z_for(1.0) > 30.0);
        assert_eq!(z_for(f64::NAN), 40.0);
    }

    #[test]
    fn log_loss_improvement_is_positive_when_the_challenger_loses_less() {
        let champion = scored(&[(true, 0.6), (false, 0.4), (true, 0.55), (false, 0.3)]);
        let challenger = scored(&[(true, 0.9), (false, 0.1), (true, 0.8), (false, 0.2)]);
        let cmp = compare(QualityMetric::LogLoss, &champion, &challenger, 0.95);
        let (c, h) = (cmp.champion.unwrap(), cmp.challenger.unwrap());
        assert!(h.value < c.value);
        let diff = cmp.improvement.unwrap();
        assert!((diff - (c.value - h.value)).abs() < 1e-12);
        assert!(diff > 0.0);
        let half = 1.959964 * (c.std_error.powi(2) + h.std_error.powi(2)).sqrt();
        assert!((cmp.ci_low.unwrap() - (diff - half)).abs() < 1e-5);
        assert!((cmp.ci_high.unwrap() - (diff + half)).abs() < 1e-5);
        // Swapped: the champion is the better one, the improvement negative.
        let back = compare(QualityMetric::LogLoss, &challenger, &champion, 0.95);
        assert!((back.improvement.unwrap() + diff).abs() < 1e-12);
    }

    #[test]
    fn higher_is_better_improvement_is_challenger_minus_champion() {
        let champion = scored(&[(true, 0.6), (false, 0.7), (true, 0.2), (false, 0.3)]);
        let challenger = scored(&[(true, 0.9), (false, 0.1), (true, 0.8), (false, 0.6)]);
        let cmp = compare(QualityMetric::Accuracy, &champion, &challenger, 0.9);
        assert!((cmp.improvement.unwrap() - (0.75 - 0.5)).abs() < 1e-12);
        assert!(cmp.ci_low.unwrap() < 0.25 && cmp.ci_high.unwrap() > 0.25);
        assert_eq!(cmp.confidence, 0.9);
    }

    #[test]
    fn undefined_sides_give_no_difference() {
        let empty = QualityCounts::default();
        let one_class = scored(&[(false, 0.2), (false, 0.7)]);
        let fine = scored(&[(true, 0.9), (false, 0.1)]);
        for metric in QualityMetric::ALL {
            for (c, h) in [(&empty, &fine), (&fine, &empty), (&empty, &empty)] {
                let cmp = compare(metric, c, h, 0.95);
                assert_eq!(
                    (cmp.improvement, cmp.ci_low, cmp.ci_high),
                    (None, None, None)
                );
            }
        }
        let cmp = compare(QualityMetric::Auc, &one_class, &fine, 0.95);
        assert_eq!(cmp.champion, None);
        assert!(cmp.challenger.is_some());
        assert_eq!(cmp.improvement, None);
    }
}
