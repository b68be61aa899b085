//! Prediction quality of a binary classifier from labelled predictions: confusion counts and
//! what follows from them, log loss, and a streaming AUC over a fixed histogram of the
//! predicted probabilities (memory does not grow with the number of labels).

use serde::Serialize;

/// Probability bins of the streaming AUC: scores within 1/AUC_BINS count as ties.
pub const AUC_BINS: usize = 200;

/// Log loss clips probabilities away from 0 and 1 (as scikit-learn does).
const LOG_LOSS_EPS: f64 = 1e-15;

#[derive(Debug, Clone, PartialEq)]
pub struct QualityCounts {
    pub tp: u64,
    pub fp: u64,
    pub fn_: u64,
    pub tn: u64,
    log_loss_sum: f64,
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
        self.log_loss_sum -= if actual {
            clipped.ln()
        } else {
            (1.0 - clipped).ln()
        };
        self.with_probability += 1;
        let bin = ((p * AUC_BINS as f64) as usize).min(AUC_BINS - 1);
        if actual {
            self.positives[bin] += 1;
        } else {
            self.negatives[bin] += 1;
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
}
