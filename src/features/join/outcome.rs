//! What became of one looked-up value, and the per-feature counters of
//! `modelgate_feature_values_total` (table, feature, outcome).

/// A looked-up value, resolved: present, or one of the three ways it has no value (each follows
/// the feature's `on_missing` policy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The row is there and the value fits the feature's type.
    Present,
    /// No row for the key, or a null (or unfit) value in it.
    Missing,
    /// The row is older than the feature's `max_age_seconds`.
    Stale,
    /// The online store did not answer in time, or is down.
    TimedOut,
}

impl Outcome {
    /// In the order of the discriminants: `ALL[o as usize] == o`.
    pub const ALL: [Outcome; 4] = [
        Outcome::Present,
        Outcome::Missing,
        Outcome::Stale,
        Outcome::TimedOut,
    ];

    /// The `outcome` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Present => "present",
            Self::Missing => "missing",
            Self::Stale => "stale",
            Self::TimedOut => "timed_out",
        }
    }

    /// Why a row is refused under `on_missing: reject`, after "feature 'f' for k=v in table 't'".
    pub(super) fn refusal(self, max_age_ms: Option<i64>) -> String {
        match self {
            Self::Stale => format!(
                "is older than its max age of {} s",
                max_age_ms.unwrap_or(0) as f64 / 1000.0
            ),
            Self::TimedOut => {
                "could not be looked up (the online store did not answer in time)".into()
            }
            Self::Present | Self::Missing => "has no value".into(),
        }
    }
}

/// The `outcome` label of a value the caller sent, which is not looked up.
const FROM_REQUEST: &str = "request";
/// The `outcome` label of a value its default replaced (counted besides its outcome).
const DEFAULTED: &str = "defaulted";

/// One feature's counters, resolved once when the plan compiles (the series show from load).
pub(super) struct FeatureCounters {
    /// Indexed by `Outcome as usize`.
    outcomes: [prometheus::IntCounter; Outcome::ALL.len()],
    from_request: prometheus::IntCounter,
    defaulted: prometheus::IntCounter,
}

impl FeatureCounters {
    pub(super) fn new(m: &crate::metrics::Metrics, table: &str, feature: &str) -> Self {
        let c = |outcome: &str| {
            m.features
                .values
                .with_label_values(&[table, feature, outcome])
        };
        Self {
            outcomes: Outcome::ALL.map(|o| c(o.as_str())),
            from_request: c(FROM_REQUEST),
            defaulted: c(DEFAULTED),
        }
    }

    pub(super) fn outcome(&self, o: Outcome) {
        self.outcomes[o as usize].inc();
    }

    pub(super) fn sent(&self, rows: usize) {
        self.from_request.inc_by(rows as u64);
    }

    pub(super) fn defaulted(&self) {
        self.defaulted.inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_is_in_discriminant_order_and_labels_are_the_metric_values() {
        for (i, o) in Outcome::ALL.iter().enumerate() {
            assert_eq!(*o as usize, i, "{o:?}");
        }
        let labels: Vec<&str> = Outcome::ALL.iter().map(|o| o.as_str()).collect();
        assert_eq!(labels, ["present", "missing", "stale", "timed_out"]);
    }

    #[test]
    fn each_outcome_counts_in_its_own_series() {
        let m = crate::metrics::Metrics::new();
        let c = FeatureCounters::new(&m, "t", "f");
        let get = |label: &str| {
            m.features
                .values
                .with_label_values(&["t", "f", label])
                .get()
        };
        for (n, o) in Outcome::ALL.iter().enumerate() {
            for _ in 0..=n {
                c.outcome(*o);
            }
        }
        c.sent(7);
        c.defaulted();
        assert_eq!(get("present"), 1);
        assert_eq!(get("missing"), 2);
        assert_eq!(get("stale"), 3);
        assert_eq!(get("timed_out"), 4);
        assert_eq!(get("request"), 7);
        assert_eq!(get("defaulted"), 1);
    }

    #[test]
    fn refusals_say_why() {
        assert_eq!(
            Outcome::Stale.refusal(Some(60_000)),
            "is older than its max age of 60 s"
        );
        assert_eq!(
            Outcome::TimedOut.refusal(None),
            "could not be looked up (the online store did not answer in time)"
        );
        assert_eq!(Outcome::Missing.refusal(None), "has no value");
    }
}
