//! Prediction quality of a binary classifier from labelled predictions: confusion counts and
//! what follows from them, log loss, and a streaming AUC over a fixed histogram of the
//! predicted probabilities (memory does not grow with the number of labels).

use serde::{Deserialize, Serialize};

use crate::settings::promotion::QualityMetric;

/// Probability bins of the streaming AUC: scores within 1/AUC_BINS count as ties.
pub const AUC_BINS: usize = 200;

/// Log loss clips probabilities away from 0 and 1 (as scikit-learn does).
const LOG_LOSS_EPS: f64 = 1e-15;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QualityCounts {
    pub tp: u64,
    pub fp: u64,
    pub fn_: u64,
    pub tn: u64,
    log_loss_sum: f64,
    /// Sum of the squared per-row log-loss terms (for its standard error).
    log_loss_sq_sum: f64,
    /// Labelled rows that had a probability.
    with_probability: u64,
    /// Probability histograms of the rows labelled positive and negative.
    positives: Vec<u64>,
    negatives: Vec<u64>,
}

impl Default for QualityCounts {
    fn default() -> Self {
        Self {
            tp: 0,
            fp: 0,
            fn_: 0,
            tn: 0,
            log_loss_sum: 0.0,
            log_loss_sq_sum: 0.0,
            with_probability: 0,
            positives: vec![0; AUC_BINS],
            negatives: vec![0; AUC_BINS],
        }
    }
}

/// Quality figures; null where undefined (no positive prediction: no precision).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QualityFigures {
    pub labels: u64,
    pub tp: u64,
    pub fp: u64,
    #[serde(rename = "fn")]
    pub fn_: u64,
    pub tn: u64,
    pub accuracy: Option<f64>,
    pub precision: Option<f64>,
    pub recall: Option<f64>,
    pub f1: Option<f64>,
    pub log_loss: Option<f64>,
    pub auc: Option<f64>,
}

/// A quality figure with its standard error, and how many rows it rests on.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Estimate {
    pub value: f64,
    pub std_error: f64,
    pub n: u64,
}

fn ratio(a: u64, b: u64) -> Option<f64> {
    (b > 0).then(|| a as f64 / b as f64)
}

impl QualityCounts {
    /// One labelled row: the truth, the predicted class and its positive-class probability.
    pub fn add(&mut self, actual: bool, predicted: bool, probability: Option<f64>) {
        match (actual, predicted) {
            (true, true) => self.tp += 1,
            (false, true) => self.fp += 1,
            (true, false) => self.fn_ += 1,
            (false, false) => self.tn += 1,
        }
        let Some(p) = probability.filter(|p| p.is_finite()) else {
            return;
        };
        let p = p.clamp(0.0, 1.0);
        let clipped = p.clamp(LOG_LOSS_EPS, 1.0 - LOG_LOSS_EPS);
        let loss = -if actual {
            clipped.ln()
        } else {
            (1.0 - clipped).ln()
        };
        self.log_loss_sum += loss;
        self.log_loss_sq_sum += loss * loss;
        self.with_probability += 1;
        let bin = ((p * AUC_BINS as f64) as usize).min(AUC_BINS - 1);
        if actual {
            self.positives[bin] += 1;
        } else {
            self.negatives[bin] += 1;
        }
    }

    /// Adds another replica's counts of the same served version; false (nothing added) when
    /// the histograms differ in size.
    pub fn merge(&mut self, other: &QualityCounts) -> bool {
        if self.positives.len() != other.positives.len()
            || self.negatives.len() != other.negatives.len()
        {
            return false;
        }
        self.tp += other.tp;
        self.fp += other.fp;
        self.fn_ += other.fn_;
        self.tn += other.tn;
        self.log_loss_sum += other.log_loss_sum;
        self.log_loss_sq_sum += other.log_loss_sq_sum;
        self.with_probability += other.with_probability;
        for (a, b) in self.positives.iter_mut().zip(&other.positives) {
            *a += b;
        }
        for (a, b) in self.negatives.iter_mut().zip(&other.negatives) {
            *a += b;
        }
        true
    }

    /// What was counted after `base` was cloned from these same counts. Only meaningful when
    /// `base` is an earlier state of this accumulator (a window since a point in time); for
    /// unrelated counts the saturation and clamping hide the mismatch, they do not fix it.
    pub fn since(&self, base: &QualityCounts) -> QualityCounts {
        let bins = |now: &[u64], then: &[u64]| -> Vec<u64> {
            now.iter()
                .zip(then.iter().chain(std::iter::repeat(&0)))
                .map(|(a, b)| a.saturating_sub(*b))
                .collect()
        };
        QualityCounts {
            tp: self.tp.saturating_sub(base.tp),
            fp: self.fp.saturating_sub(base.fp),
            fn_: self.fn_.saturating_sub(base.fn_),
            tn: self.tn.saturating_sub(base.tn),
            // Clamped: rounding in the subtraction must not make a sum negative.
            log_loss_sum: (self.log_loss_sum - base.log_loss_sum).max(0.0),
            log_loss_sq_sum: (self.log_loss_sq_sum - base.log_loss_sq_sum).max(0.0),
            with_probability: self.with_probability.saturating_sub(base.with_probability),
            positives: bins(&self.positives, &base.positives),
            negatives: bins(&self.negatives, &base.negatives),
        }
    }

    pub fn labels(&self) -> u64 {
        self.tp + self.fp + self.fn_ + self.tn
    }

    pub fn figures(&self) -> QualityFigures {
        let precision = ratio(self.tp, self.tp + self.fp);
        let recall = ratio(self.tp, self.tp + self.fn_);
        let f1 = match (precision, recall) {
            (Some(p), Some(r)) if p + r > 0.0 => Some(2.0 * p * r / (p + r)),
            (Some(_), Some(_)) => Some(0.0),
            _ => None,
        };
        QualityFigures {
            labels: self.labels(),
            tp: self.tp,
            fp: self.fp,
            fn_: self.fn_,
            tn: self.tn,
            accuracy: ratio(self.tp + self.tn, self.labels()),
            precision,
            recall,
            f1,
            log_loss: (self.with_probability > 0)
                .then(|| self.log_loss_sum / self.with_probability as f64),
            auc: self.auc(),
        }
    }

    /// The value `figures()` gives for `metric`.
    pub fn figure(&self, metric: QualityMetric) -> Option<f64> {
        let f = self.figures();
        match metric {
            QualityMetric::Auc => f.auc,
            QualityMetric::F1 => f.f1,
            QualityMetric::Accuracy => f.accuracy,
            QualityMetric::LogLoss => f.log_loss,
        }
    }

    /// `metric` with its standard error (None where the figure is undefined): what a
    /// comparison of two models needs so that a lucky window does not decide.
    pub fn estimate(&self, metric: QualityMetric) -> Option<Estimate> {
        match metric {
            QualityMetric::Accuracy => {
                let n = self.labels();
                let p = ratio(self.tp + self.tn, n)?;
                Some(Estimate {
                    value: p,
                    std_error: (p * (1.0 - p) / n as f64).max(0.0).sqrt(),
                    n,
                })
            }
            QualityMetric::F1 => self.f1_estimate(),
            QualityMetric::Auc => self.auc_estimate(),
            QualityMetric::LogLoss => {
                let n = self.with_probability;
                if n == 0 {
                    return None;
                }
                let mean = self.log_loss_sum / n as f64;
                let mean_sq = self.log_loss_sq_sum / n as f64;
                Some(Estimate {
                    value: mean,
                    std_error: ((mean_sq - mean * mean).max(0.0) / n as f64).sqrt(),
                    n,
                })
            }
        }
    }

    /// F1 = 2a / (2a + b + c) of the cell proportions, its variance by the delta method on the
    /// multinomial of the four cells.
    fn f1_estimate(&self) -> Option<Estimate> {
        let value = self.figures().f1?;
        let n = self.labels();
        let total = n as f64;
        let cells = [self.tp, self.fp, self.fn_, self.tn].map(|c| c as f64 / total);
        let [a, b, c, _] = cells;
        let d = 2.0 * a + b + c;
        if d <= 0.0 {
            return None;
        }
        let d2 = d * d;
        let grad = [2.0 * (b + c) / d2, -2.0 * a / d2, -2.0 * a / d2, 0.0];
        let second: f64 = grad.iter().zip(&cells).map(|(g, p)| g * g * p).sum();
        // Zero in exact arithmetic (F1 is scale-free in the cells); kept for the general form.
        let first: f64 = grad.iter().zip(&cells).map(|(g, p)| g * p).sum();
        let var = ((second - first * first) / total).max(0.0);
        Some(Estimate {
            value,
            std_error: var.sqrt(),
            n,
        })
    }

    /// DeLong's variance of the AUC, exact over the bins (a bin's rows are ties, counting
    /// half): the structural components of positives (V10) and negatives (V01) are the same
    /// for every row of a bin, so each bin is one weighted term.
    fn auc_estimate(&self) -> Option<Estimate> {
        let value = self.auc()?;
        let m: u64 = self.positives.iter().sum();
        let k: u64 = self.negatives.iter().sum();
        let (mf, kf) = (m as f64, k as f64);
        let mut neg_below = 0u64;
        let mut s10 = 0.0;
        for (p, n) in self.positives.iter().zip(&self.negatives) {
            if *p > 0 {
                let v10 = (neg_below as f64 + *n as f64 / 2.0) / kf;
                s10 += *p as f64 * (v10 - value).powi(2);
            }
            neg_below += n;
        }
        let mut pos_above = 0u64;
        let mut s01 = 0.0;
        for (p, n) in self.positives.iter().zip(&self.negatives).rev() {
            if *n > 0 {
                let v01 = (pos_above as f64 + *p as f64 / 2.0) / mf;
                s01 += *n as f64 * (v01 - value).powi(2);
            }
            pos_above += p;
        }
        // One row on a side gives no spread to estimate: that side contributes nothing.
        let s10 = if m > 1 { s10 / (mf - 1.0) } else { 0.0 };
        let s01 = if k > 1 { s01 / (kf - 1.0) } else { 0.0 };
        Some(Estimate {
            value,
            std_error: (s10 / mf + s01 / kf).max(0.0).sqrt(),
            n: m + k,
        })
    }

    /// The chance that a positive scores above a negative, ties (same bin) counting half.
    fn auc(&self) -> Option<f64> {
        let pos: u64 = self.positives.iter().sum();
        let neg: u64 = self.negatives.iter().sum();
        if pos == 0 || neg == 0 {
            return None;
        }
        let mut below = 0u64;
        let mut wins = 0.0;
        for (p, n) in self.positives.iter().zip(&self.negatives) {
            wins += *p as f64 * (below as f64 + *n as f64 / 2.0);
            below += n;
        }
        Some(wins / (pos as f64 * neg as f64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: Option<f64>, b: f64) -> bool {
        a.is_some_and(|a| (a - b).abs() < 1e-12)
    }

    #[test]
    fn confusion_figures() {
        let mut q = QualityCounts::default();
        for (n, actual, predicted) in [
            (5, true, true),
            (10, false, true),
            (15, true, false),
            (70, false, false),
        ] {
            for _ in 0..n {
                q.add(actual, predicted, None);
            }
        }
        let f = q.figures();
        assert_eq!((f.tp, f.fp, f.fn_, f.tn, f.labels), (5, 10, 15, 70, 100));
        assert!(close(f.accuracy, 0.75));
        assert!(close(f.precision, 1.0 / 3.0));
        assert!(close(f.recall, 0.25));
        assert!(close(f.f1, 2.0 / 7.0));
        assert_eq!((f.log_loss, f.auc), (None, None));
    }

    #[test]
    fn auc_and_log_loss() {
        let mut q = QualityCounts::default();
        // Perfect separation, then one inversion and one tie.
        q.add(true, true, Some(0.9));
        q.add(false, false, Some(0.1));
        assert!(close(q.figures().auc, 1.0));
        q.add(false, true, Some(0.95));
        q.add(true, false, Some(0.1001));
        // Pairs: (0.9 vs 0.1) win, (0.9 vs 0.95) loss, (0.1001 vs 0.1) tie, (0.1001 vs 0.95) loss.
        assert!(close(q.figures().auc, 1.5 / 4.0));
        let expected = -(0.9f64.ln() + 0.9f64.ln() + 0.05f64.ln() + 0.1001f64.ln()) / 4.0;
        assert!(close(q.figures().log_loss, expected));
        let mut none = QualityCounts::default();
        none.add(false, false, Some(0.2));
        let f = none.figures();
        assert_eq!(
            (f.precision, f.recall, f.f1, f.auc),
            (None, None, None, None)
        );
        assert!(close(f.accuracy, 1.0));
    }

    fn counts(rows: &[(bool, bool, Option<f64>)]) -> QualityCounts {
        let mut q = QualityCounts::default();
        for &(actual, predicted, p) in rows {
            q.add(actual, predicted, p);
        }
        q
    }

    fn scored(pos: &[f64], neg: &[f64]) -> QualityCounts {
        let mut q = QualityCounts::default();
        for &p in pos {
            q.add(true, p >= 0.5, Some(p));
        }
        for &p in neg {
            q.add(false, p >= 0.5, Some(p));
        }
        q
    }

    #[test]
    fn auc_delong_variance_by_hand() {
        // Positives 0.9, 0.6, 0.35; negatives 0.1, 0.4, 0.5, 0.7 (all in distinct bins).
        // V10 = 1, 3/4, 1/4; V01 = 1, 2/3, 2/3, 1/3; AUC = 2/3 either way.
        // S10 = (1/9 + 1/144 + 25/144) / 2 = 7/48; S01 = (1/9 + 0 + 0 + 1/9) / 3 = 2/27;
        // Var = 7/48 / 3 + 2/27 / 4 = 29/432 (python3 brute force over the pairs agrees).
        let q = scored(&[0.9, 0.6, 0.35], &[0.1, 0.4, 0.5, 0.7]);
        let e = q.estimate(QualityMetric::Auc).unwrap();
        assert_eq!(e.n, 7);
        assert!((e.value - 2.0 / 3.0).abs() < 1e-12);
        assert!((e.std_error.powi(2) - 29.0 / 432.0).abs() < 1e-12, "{e:?}");
    }

    #[test]
    fn auc_delong_counts_a_bin_as_ties() {
        // 0.6 twice on each side and 0.1 vs 0.101 share bins. Python brute force with
        // psi = 1 / 0.5 / 0 on the bin indices: AUC 0.575, Var 0.05.
        let q = scored(&[0.9, 0.6, 0.6, 0.101], &[0.1, 0.6, 0.3, 0.95, 0.2]);
        let e = q.estimate(QualityMetric::Auc).unwrap();
        assert_eq!(e.value, q.auc().unwrap());
        assert_eq!(Some(e.value), q.figure(QualityMetric::Auc));
        assert!((e.value - 0.575).abs() < 1e-12);
        assert!((e.std_error.powi(2) - 0.05).abs() < 1e-12, "{e:?}");
    }

    #[test]
    fn auc_estimate_value_is_the_mean_of_v10_and_of_v01() {
        let q = scored(
            &[0.91, 0.8, 0.55, 0.55, 0.3, 0.72, 0.12],
            &[0.05, 0.3, 0.55, 0.6, 0.2, 0.44, 0.81, 0.33],
        );
        let (m, k) = (7.0, 8.0);
        let (mut v10_mean, mut v01_mean) = (0.0, 0.0);
        for i in 0..AUC_BINS {
            let below: u64 = q.negatives[..i].iter().sum();
            let above: u64 = q.positives[i + 1..].iter().sum();
            v10_mean += q.positives[i] as f64 * (below as f64 + q.negatives[i] as f64 / 2.0) / k;
            v01_mean += q.negatives[i] as f64 * (above as f64 + q.positives[i] as f64 / 2.0) / m;
        }
        let e = q.estimate(QualityMetric::Auc).unwrap();
        assert_eq!(e.value, q.auc().unwrap());
        assert!((e.value - v10_mean / m).abs() < 1e-12);
        assert!((e.value - v01_mean / k).abs() < 1e-12);
        assert!(e.std_error > 0.0);
        // One positive: its side has no spread, the negatives' side still counts.
        let one = scored(&[0.7], &[0.2, 0.8, 0.75]);
        let e = one.estimate(QualityMetric::Auc).unwrap();
        assert!(e.std_error.is_finite() && e.std_error > 0.0);
    }

    #[test]
    fn f1_delta_method_matches_a_numeric_gradient() {
        let (tp, fp, fn_, tn) = (40u64, 12u64, 9u64, 139u64);
        let mut rows = Vec::new();
        for (n, actual, predicted) in [
            (tp, true, true),
            (fp, false, true),
            (fn_, true, false),
            (tn, false, false),
        ] {
            rows.extend(std::iter::repeat_n((actual, predicted, None), n as usize));
        }
        let q = counts(&rows);
        let e = q.estimate(QualityMetric::F1).unwrap();
        assert_eq!(Some(e.value), q.figures().f1);
        assert!((e.value - 80.0 / 101.0).abs() < 1e-12);
        // Central differences of F1 over the cell proportions.
        let n = 200.0;
        let p = [tp, fp, fn_, tn].map(|c| c as f64 / n);
        let f1 = |p: [f64; 4]| 2.0 * p[0] / (2.0 * p[0] + p[1] + p[2]);
        let h = 1e-6;
        let grad: Vec<f64> = (0..4)
            .map(|i| {
                let (mut up, mut down) = (p, p);
                up[i] += h;
                down[i] -= h;
                (f1(up) - f1(down)) / (2.0 * h)
            })
            .collect();
        let second: f64 = grad.iter().zip(&p).map(|(g, p)| g * g * p).sum();
        let first: f64 = grad.iter().zip(&p).map(|(g, p)| g * p).sum();
        let var = (second - first * first) / n;
        assert!(
            (e.std_error - var.sqrt()).abs() < 1e-7,
            "{e:?} vs {}",
            var.sqrt()
        );
        assert_eq!(e.n, 200);
        // No true positive but some errors: F1 is 0, with nothing to vary.
        let zero = counts(&[(false, true, None), (true, false, None)]);
        let e = zero.estimate(QualityMetric::F1).unwrap();
        assert_eq!((e.value, e.std_error), (0.0, 0.0));
    }

    #[test]
    fn accuracy_estimate() {
        let mut rows = Vec::new();
        for (n, actual, predicted) in [
            (5, true, true),
            (10, false, true),
            (15, true, false),
            (70, false, false),
        ] {
            rows.extend(std::iter::repeat_n((actual, predicted, None), n));
        }
        let e = counts(&rows).estimate(QualityMetric::Accuracy).unwrap();
        assert_eq!(e.n, 100);
        assert!((e.value - 0.75).abs() < 1e-12);
        assert!((e.std_error - (0.75f64 * 0.25 / 100.0).sqrt()).abs() < 1e-12);
    }

    #[test]
    fn log_loss_estimate() {
        let rows = [
            (true, true, Some(0.9)),
            (false, false, Some(0.2)),
            (true, false, Some(0.3)),
            (false, true, Some(0.7)),
            (true, true, Some(0.6)),
            (false, false, None),
        ];
        let losses = [0.9f64, 0.8, 0.3, 0.3, 0.6].map(|p| -p.ln());
        let mean = losses.iter().sum::<f64>() / 5.0;
        let var = losses.iter().map(|l| (l - mean).powi(2)).sum::<f64>() / 5.0;
        let q = counts(&rows);
        let e = q.estimate(QualityMetric::LogLoss).unwrap();
        assert_eq!(e.n, 5);
        assert!((e.value - mean).abs() < 1e-12);
        assert_eq!(Some(e.value), q.figure(QualityMetric::LogLoss));
        assert!((e.std_error - (var / 5.0).sqrt()).abs() < 1e-12, "{e:?}");
    }

    #[test]
    fn since_counts_only_the_later_rows() {
        let early = [
            (true, true, Some(0.9)),
            (false, false, Some(0.05)),
            (false, true, Some(0.6)),
            (true, false, None),
        ];
        let late = [
            (true, true, Some(0.8)),
            (true, false, Some(0.45)),
            (false, false, Some(0.05)),
            (false, false, Some(0.31)),
            (false, true, None),
        ];
        let mut acc = counts(&early);
        let base = acc.clone();
        for &(a, p, prob) in &late {
            acc.add(a, p, prob);
        }
        let got = acc.since(&base);
        let want = counts(&late);
        assert_eq!(
            (got.tp, got.fp, got.fn_, got.tn, got.with_probability),
            (want.tp, want.fp, want.fn_, want.tn, want.with_probability)
        );
        assert_eq!(got.positives, want.positives);
        assert_eq!(got.negatives, want.negatives);
        assert!((got.log_loss_sum - want.log_loss_sum).abs() < 1e-12);
        assert!((got.log_loss_sq_sum - want.log_loss_sq_sum).abs() < 1e-12);
        assert!(want.log_loss_sq_sum > 0.0);
        // Nothing since: empty counts, every figure undefined.
        let none = acc.since(&acc);
        assert_eq!(none.labels(), 0);
        assert_eq!(none.log_loss_sum, 0.0);
        assert!(none.figure(QualityMetric::Auc).is_none());
    }

    #[test]
    fn undefined_estimates_are_none() {
        let empty = QualityCounts::default();
        for metric in QualityMetric::ALL {
            assert_eq!(empty.estimate(metric), None, "{metric:?}");
            assert_eq!(empty.figure(metric), None, "{metric:?}");
        }
        // Negatives only, all predicted negative: no AUC, no precision hence no F1.
        let one_class = counts(&[(false, false, Some(0.1)), (false, false, Some(0.3))]);
        assert_eq!(one_class.estimate(QualityMetric::Auc), None);
        assert_eq!(one_class.estimate(QualityMetric::F1), None);
        let acc = one_class.estimate(QualityMetric::Accuracy).unwrap();
        assert_eq!((acc.value, acc.std_error, acc.n), (1.0, 0.0, 2));
        assert!(one_class.estimate(QualityMetric::LogLoss).is_some());
        // Labels without probabilities: no AUC, no log loss.
        let bare = counts(&[(true, true, None), (false, false, None)]);
        assert_eq!(bare.estimate(QualityMetric::Auc), None);
        assert_eq!(bare.estimate(QualityMetric::LogLoss), None);
    }
}
