//! The decision rules: from the champion's and the challenger's labelled counts to promote,
//! refuse (naming the rule) or wait for labels. Pure: the evaluation calls it on every look.

use serde::Serialize;

use crate::drift::compare::{compare, Comparison};
use crate::drift::quality::QualityCounts;
use crate::settings::promotion::{PromotionSettings, QualityMetric};

/// One rule and whether the challenger passed it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleResult {
    pub rule: &'static str,
    pub passed: bool,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// A side has fewer than `min_labels` labelled predictions.
    WaitingForLabels,
    /// Every rule passed.
    Passed,
    /// The first rule that failed.
    Refused(&'static str),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub outcome: Outcome,
    pub rules: Vec<RuleResult>,
    pub comparison: Comparison,
}

impl Verdict {
    /// The sentence that says why the verdict is what it is.
    pub fn reason(&self) -> String {
        match &self.outcome {
            Outcome::Passed => format!(
                "the challenger passed every rule: {}",
                self.rules
                    .iter()
                    .map(|r| r.detail.as_str())
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
            Outcome::WaitingForLabels | Outcome::Refused(_) => self
                .rules
                .iter()
                .find(|r| !r.passed)
                .map(|r| format!("{}: {}", r.rule, r.detail))
                .unwrap_or_default(),
        }
    }
}

fn show(v: Option<f64>) -> String {
    v.map_or("undefined".into(), |v| format!("{v:.4}"))
}

/// Judges `challenger` against `champion` by `settings`' rules, in order: labels, the
/// minimum figures, the improvement, its significance.
pub fn judge(
    settings: &PromotionSettings,
    champion: &QualityCounts,
    challenger: &QualityCounts,
) -> Verdict {
    let metric = settings.metric;
    let comparison = compare(metric, champion, challenger, settings.confidence);
    let mut rules = Vec::new();
    let (a, b) = (champion.labels(), challenger.labels());
    let enough = a >= settings.min_labels && b >= settings.min_labels;
    rules.push(RuleResult {
        rule: "min_labels",
        passed: enough,
        detail: format!(
            "{a} labelled predictions of the champion and {b} of the challenger, {} needed on each side",
            settings.min_labels
        ),
    });
    if !enough {
        return Verdict {
            outcome: Outcome::WaitingForLabels,
            rules,
            comparison,
        };
    }
    for (rule, minimum, figure) in [
        ("min_auc", settings.min_auc, QualityMetric::Auc),
        (
            "min_accuracy",
            settings.min_accuracy,
            QualityMetric::Accuracy,
        ),
        ("min_f1", settings.min_f1, QualityMetric::F1),
    ] {
        let Some(minimum) = minimum else { continue };
        let value = challenger.figure(figure);
        rules.push(RuleResult {
            rule,
            passed: value.is_some_and(|v| v >= minimum),
            detail: format!(
                "the challenger's {} is {}, at least {minimum} needed",
                figure.as_str(),
                show(value)
            ),
        });
    }
    let name = metric.as_str();
    let better = if metric.higher_is_better() {
        "higher"
    } else {
        "lower"
    };
    let improvement = comparison.improvement;
    rules.push(RuleResult {
        rule: "improvement",
        passed: improvement.is_some_and(|d| d >= settings.min_improvement),
        detail: format!(
            "the challenger's {name} is {} against the champion's {}: {} {better}, at least {} needed",
            show(comparison.challenger.map(|e| e.value)),
            show(comparison.champion.map(|e| e.value)),
            show(improvement),
            settings.min_improvement
        ),
    });
    rules.push(RuleResult {
        rule: "significance",
        passed: comparison.ci_low.is_some_and(|low| low > 0.0),
        detail: format!(
            "the {}% interval of the improvement is [{}, {}]; its lower end must be above 0",
            settings.confidence * 100.0,
            show(comparison.ci_low),
            show(comparison.ci_high)
        ),
    });
    let outcome = match rules.iter().find(|r| !r.passed) {
        Some(r) => Outcome::Refused(r.rule),
        None => Outcome::Passed,
    };
    Verdict {
        outcome,
        rules,
        comparison,
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// `n` labelled rows: `right` of them predicted right, probabilities that separate the
    /// classes as well as the labels do.
    pub fn counts(n: u64, right: u64) -> QualityCounts {
        let mut q = QualityCounts::default();
        for i in 0..n {
            let actual = i % 5 == 0;
            let correct = i < right;
            let predicted = if correct { actual } else { !actual };
            let p = match (predicted, correct) {
                (true, true) => 0.9,
                (true, false) => 0.6,
                (false, true) => 0.1,
                (false, false) => 0.4,
            };
            q.add(actual, predicted, Some(p));
        }
        q
    }

    fn settings(metric: QualityMetric) -> PromotionSettings {
        let mut s = PromotionSettings::new("a", "b");
        s.metric = metric;
        s.min_labels = 100;
        s
    }

    #[test]
    fn too_few_labels_wait() {
        let v = judge(
            &settings(QualityMetric::Accuracy),
            &counts(99, 80),
            &counts(1000, 990),
        );
        assert_eq!(v.outcome, Outcome::WaitingForLabels);
        assert!(v.reason().contains("99 labelled"), "{}", v.reason());
    }

    #[test]
    fn a_clearly_better_challenger_passes_and_a_worse_one_is_refused_by_improvement() {
        let s = settings(QualityMetric::Accuracy);
        let v = judge(&s, &counts(2000, 1600), &counts(2000, 1900));
        assert_eq!(v.outcome, Outcome::Passed, "{}", v.reason());
        let v = judge(&s, &counts(2000, 1900), &counts(2000, 1600));
        assert_eq!(v.outcome, Outcome::Refused("improvement"));
        assert!(v.reason().starts_with("improvement:"), "{}", v.reason());
    }

    #[test]
    fn a_small_lucky_difference_is_not_significant() {
        let mut s = settings(QualityMetric::Accuracy);
        s.min_improvement = 0.01;
        // 0.80 against 0.83 on 100 rows each: the interval spans 0.
        let v = judge(&s, &counts(100, 80), &counts(100, 83));
        assert_eq!(
            v.outcome,
            Outcome::Refused("significance"),
            "{}",
            v.reason()
        );
        // The same rates on 20000 rows each are significant.
        let v = judge(&s, &counts(20_000, 16_000), &counts(20_000, 16_600));
        assert_eq!(v.outcome, Outcome::Passed, "{}", v.reason());
    }

    #[test]
    fn a_minimum_holds_back_a_better_challenger() {
        let mut s = settings(QualityMetric::Accuracy);
        s.min_accuracy = Some(0.99);
        let v = judge(&s, &counts(2000, 1600), &counts(2000, 1900));
        assert_eq!(v.outcome, Outcome::Refused("min_accuracy"));
        assert!(v.reason().contains("0.9500"), "{}", v.reason());
    }

    #[test]
    fn log_loss_improves_downwards() {
        let s = settings(QualityMetric::LogLoss);
        let v = judge(&s, &counts(2000, 1600), &counts(2000, 1950));
        assert_eq!(v.outcome, Outcome::Passed, "{}", v.reason());
        assert!(v.comparison.improvement.unwrap() > 0.0);
    }
}
