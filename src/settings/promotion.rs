//! `endpoints[].promotion`: when an endpoint's challenger replaces its champion on live,
//! labelled quality, and when that promotion is rolled back; and the top-level `promotion`
//! section every endpoint's evaluation shares (how often it looks, where decisions are sent).

use serde::{Deserialize, Serialize};

use super::endpoint::{EndpointSettings, Violation};

/// A quality figure computed from labelled predictions (see `drift::quality`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default, Hash)]
#[serde(rename_all = "snake_case")]
pub enum QualityMetric {
    #[default]
    Auc,
    F1,
    Accuracy,
    LogLoss,
}

impl QualityMetric {
    pub const ALL: [Self; 4] = [Self::Auc, Self::F1, Self::Accuracy, Self::LogLoss];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auc => "auc",
            Self::F1 => "f1",
            Self::Accuracy => "accuracy",
            Self::LogLoss => "log_loss",
        }
    }

    /// Log loss is the one figure where smaller is better.
    pub fn higher_is_better(self) -> bool {
        self != Self::LogLoss
    }
}

/// What a promotion does.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum PromotionAction {
    /// Moves the champion's registry alias to the challenger's version (MLflow's alias API, or
    /// `aliases.yaml` in the file registry); the usual hot swap follows.
    #[default]
    Alias,
    /// Sends all of the endpoint's traffic to the challenger (100/0).
    Traffic,
}

/// One endpoint's promotion rules.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PromotionSettings {
    /// The served entity that serves now (by its name).
    pub champion: String,
    /// The served entity that may replace it: an A/B arm or a shadow.
    pub challenger: String,
    /// The figure the two are compared on.
    #[serde(default)]
    pub metric: QualityMetric,
    /// How much better the challenger's figure must be (for log loss: lower) to be promoted.
    #[serde(default = "default_min_improvement")]
    pub min_improvement: f64,
    /// Figures the challenger must reach whatever the champion's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_auc: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_accuracy: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_f1: Option<f64>,
    /// Labelled predictions each side needs before any decision.
    #[serde(default = "default_min_labels")]
    pub min_labels: u64,
    /// The confidence of the interval around the difference; its lower end must be above zero.
    #[serde(default = "default_confidence")]
    pub confidence: f64,
    /// How long an evaluation collects labels: a window that ends without a promotion starts a
    /// new one, so a decision is about recent traffic.
    #[serde(default = "default_evaluation_window_s")]
    pub evaluation_window_s: u64,
    #[serde(default)]
    pub action: PromotionAction,
    /// Reports what it would do, and does nothing.
    #[serde(default)]
    pub dry_run: bool,
    #[serde(default)]
    pub rollback: RollbackSettings,
}

/// The guard after a promotion.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RollbackSettings {
    pub enabled: bool,
    /// The figure watched on the new champion.
    pub metric: QualityMetric,
    /// A drop of more than this below the previous champion's figure rolls back.
    pub max_drop: f64,
    /// How long the new champion is watched.
    pub guard_window_s: u64,
    /// Labelled predictions of the new champion before the guard judges.
    pub min_labels: u64,
}

impl Default for RollbackSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            metric: QualityMetric::F1,
            max_drop: 0.05,
            guard_window_s: 3600,
            min_labels: default_min_labels(),
        }
    }
}

fn default_min_improvement() -> f64 {
    0.01
}

fn default_min_labels() -> u64 {
    500
}

fn default_confidence() -> f64 {
    0.95
}

fn default_evaluation_window_s() -> u64 {
    86_400
}

/// Stage names, never moved as aliases: MLflow's stages (the mlflow registry reads them as
/// aliases) and the file registry's `Archived` list.
pub const STAGE_NAMES: [&str; 4] = ["Production", "Staging", "None", "Archived"];

/// Why `alias` cannot be moved as an alias, if it cannot: a name MLflow takes (letters,
/// digits, `-`, `_`; not `latest` nor `v<digits>`, which MLflow reserves) that no version
/// number or stage reads as.
pub fn alias_problem(alias: &str) -> Option<&'static str> {
    if alias.is_empty() {
        return Some("cannot be empty");
    }
    if alias.len() > 255 {
        return Some("is longer than 255 characters");
    }
    if !alias
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Some("may only hold letters, digits, '-' and '_'");
    }
    if alias.chars().all(|c| c.is_ascii_digit()) {
        return Some("is a version number, not an alias");
    }
    if STAGE_NAMES.iter().any(|s| s.eq_ignore_ascii_case(alias)) {
        return Some("is a stage: stages are not moved, use an alias");
    }
    let v_number = alias.len() > 1
        && alias.starts_with(['v', 'V'])
        && alias[1..].chars().all(|c| c.is_ascii_digit());
    if alias.eq_ignore_ascii_case("latest") || v_number {
        return Some("is reserved (MLflow reads it as a version)");
    }
    None
}

/// The most an evaluation or guard window may span (30 days).
const MAX_WINDOW_S: u64 = 30 * 86_400;

impl PromotionSettings {
    /// A promotion of `challenger` over `champion` with every other knob at its default.
    pub fn new(champion: &str, challenger: &str) -> Self {
        Self {
            champion: champion.into(),
            challenger: challenger.into(),
            metric: QualityMetric::default(),
            min_improvement: default_min_improvement(),
            min_auc: None,
            min_accuracy: None,
            min_f1: None,
            min_labels: default_min_labels(),
            confidence: default_confidence(),
            evaluation_window_s: default_evaluation_window_s(),
            action: PromotionAction::default(),
            dry_run: false,
            rollback: RollbackSettings::default(),
        }
    }

    /// What the gateway around these rules lacks: labelled quality (`monitoring`), and for an
    /// alias move a registry with aliases to move.
    pub fn deployment_problem(&self, monitoring: bool, moves_aliases: bool) -> Option<String> {
        if !monitoring {
            return Some("promotion compares labelled quality: it needs monitoring.enabled".into());
        }
        if self.action == PromotionAction::Alias && !moves_aliases {
            return Some(
                "action alias moves a registry alias, and this registry has none (a model folder): use action traffic, or a file or MLflow registry".into(),
            );
        }
        None
    }

    /// Every problem of these rules on `endpoint`, keys under `prefix` (`promotion`).
    pub fn violations(&self, endpoint: &EndpointSettings, prefix: &str) -> Vec<Violation> {
        let mut out = Vec::new();
        let mut add = |k: &str, message: String| {
            out.push(Violation {
                key: format!("{prefix}.{k}"),
                message,
            })
        };
        let entity = |name: &str| {
            endpoint
                .served_entities
                .iter()
                .find(|se| se.served_name() == name)
        };
        let names = || {
            endpoint
                .served_entities
                .iter()
                .map(|se| se.served_name())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let champion = entity(&self.champion);
        let challenger = entity(&self.challenger);
        for (key, name, found) in [
            ("champion", &self.champion, champion),
            ("challenger", &self.challenger, challenger),
        ] {
            if found.is_none() {
                add(
                    key,
                    format!(
                        "'{name}' is not a served entity of this endpoint (served entities: {})",
                        names()
                    ),
                );
            }
        }
        if self.champion == self.challenger {
            add(
                "challenger",
                "is the champion: name another served entity".into(),
            );
        }
        let route = |name: &str| {
            endpoint
                .traffic_config
                .as_ref()
                .and_then(|tc| tc.routes.iter().find(|r| r.served_entity_name == name))
        };
        if route(&self.challenger).is_none() && challenger.is_some() {
            add(
                "challenger",
                format!(
                    "'{}' has no route: give it a share of the traffic or a shadow route, so its predictions are labelled",
                    self.challenger
                ),
            );
        }
        // A champion at 0 % (as a traffic promotion leaves it) is allowed: it gets no labels,
        // so the evaluation waits, and the view says so.
        if champion.is_some() && route(&self.champion).is_none_or(|r| r.shadow) {
            add(
                "champion",
                format!(
                    "'{}' must answer a share of the traffic (a route that is not a shadow)",
                    self.champion
                ),
            );
        }
        if let (PromotionAction::Alias, Some(champion)) = (self.action, champion) {
            let version = &champion.entity_version;
            if version.chars().all(|c| c.is_ascii_digit()) {
                add(
                    "action",
                    format!(
                        "alias moves the champion's registry alias, but '{}' serves version {version}: serve an alias (such as champion) or use action traffic",
                        self.champion
                    ),
                );
            } else if let Some(why) = alias_problem(version) {
                add(
                    "action",
                    format!(
                        "alias moves the champion's registry alias, but '{version}' {why}: serve an alias (such as champion) or use action traffic"
                    ),
                );
            }
            if let Some(challenger) = challenger {
                if challenger.entity_name != champion.entity_name {
                    add(
                        "action",
                        format!(
                            "alias moves an alias of model '{}', but the challenger serves model '{}': use action traffic",
                            champion.entity_name, challenger.entity_name
                        ),
                    );
                }
            }
        }
        let unit = |v: f64| (0.0..=1.0).contains(&v);
        for (key, value) in [
            ("min_auc", self.min_auc),
            ("min_accuracy", self.min_accuracy),
            ("min_f1", self.min_f1),
        ] {
            if let Some(v) = value.filter(|v| !unit(*v)) {
                add(key, format!("{v} is not between 0 and 1"));
            }
        }
        if !(self.min_improvement.is_finite() && self.min_improvement >= 0.0) {
            add(
                "min_improvement",
                format!("{} is not a number of at least 0", self.min_improvement),
            );
        }
        if !(0.5..=0.999).contains(&self.confidence) {
            add(
                "confidence",
                format!("{} is not between 0.5 and 0.999", self.confidence),
            );
        }
        for (key, labels) in [
            ("min_labels", self.min_labels),
            ("rollback.min_labels", self.rollback.min_labels),
        ] {
            if labels == 0 {
                add(key, "must be at least 1".into());
            }
        }
        for (key, seconds) in [
            ("evaluation_window_s", self.evaluation_window_s),
            ("rollback.guard_window_s", self.rollback.guard_window_s),
        ] {
            if !(1..=MAX_WINDOW_S).contains(&seconds) {
                add(
                    key,
                    format!("{seconds} is outside 1..={MAX_WINDOW_S} seconds"),
                );
            }
        }
        if !(self.rollback.max_drop.is_finite() && self.rollback.max_drop >= 0.0) {
            add(
                "rollback.max_drop",
                format!("{} is not a number of at least 0", self.rollback.max_drop),
            );
        }
        out
    }
}

/// The top-level `promotion` section: what every endpoint's evaluation shares.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct PromotionGlobals {
    /// How often each endpoint's evaluation looks at its figures, in milliseconds.
    pub check_interval_ms: u64,
    /// Where each decision is POSTed as JSON, signed as MLflow signs its webhooks.
    pub webhook_url: Option<String>,
    /// The HMAC-SHA256 key of the signature (redacted when settings are printed).
    pub webhook_secret: Option<String>,
    /// The longest a delivery may take.
    pub webhook_timeout_ms: u64,
}

impl Default for PromotionGlobals {
    fn default() -> Self {
        Self {
            check_interval_ms: 10_000,
            webhook_url: None,
            webhook_secret: None,
            webhook_timeout_ms: 5_000,
        }
    }
}

impl PromotionGlobals {
    /// The first problem, as (key under `promotion`, message).
    pub fn problem(&self) -> Option<(String, String)> {
        if !(50..=3_600_000).contains(&self.check_interval_ms) {
            return Some((
                "check_interval_ms".into(),
                format!("{} is outside 50..=3600000", self.check_interval_ms),
            ));
        }
        if !(1..=60_000).contains(&self.webhook_timeout_ms) {
            return Some((
                "webhook_timeout_ms".into(),
                format!("{} is outside 1..=60000", self.webhook_timeout_ms),
            ));
        }
        if let Some(url) = &self.webhook_url {
            match reqwest::Url::parse(url) {
                Ok(u) if matches!(u.scheme(), "http" | "https") => {}
                _ => {
                    return Some((
                        "webhook_url".into(),
                        format!("'{}' is not an http(s) URL", super::redact::redact_url(url)),
                    ))
                }
            }
            if self.webhook_secret.as_deref().is_none_or(str::is_empty) {
                return Some((
                    "webhook_secret".into(),
                    "is required with webhook_url: deliveries are signed".into(),
                ));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::endpoint::{Route, ServedEntitySettings, TrafficConfig};

    fn endpoint(champion_version: &str, challenger_model: &str, shadow: bool) -> EndpointSettings {
        let mut a = ServedEntitySettings::new("m", champion_version);
        a.name = Some("a".into());
        let mut b = ServedEntitySettings::new(challenger_model, "challenger");
        b.name = Some("b".into());
        let route = |name: &str, share: i64, shadow: bool| Route {
            served_entity_name: name.into(),
            traffic_percentage: share,
            shadow,
            shadow_percentage: None,
        };
        EndpointSettings {
            name: "e".into(),
            served_entities: vec![a, b],
            traffic_config: Some(TrafficConfig {
                routes: vec![
                    route("a", if shadow { 100 } else { 90 }, false),
                    route("b", if shadow { 0 } else { 10 }, shadow),
                ],
            }),
            ..Default::default()
        }
    }

    fn keys(p: &PromotionSettings, e: &EndpointSettings) -> Vec<String> {
        let mut e = e.clone();
        e.promotion = Some(p.clone());
        e.violations("").into_iter().map(|v| v.key).collect()
    }

    #[test]
    fn good_rules_on_an_ab_split_or_a_shadow_pass() {
        let p = PromotionSettings::new("a", "b");
        assert!(keys(&p, &endpoint("champion", "m", false)).is_empty());
        assert!(keys(&p, &endpoint("champion", "m", true)).is_empty());
        let yaml =
            "{champion: a, challenger: b, metric: f1, min_f1: 0.7, rollback: {max_drop: 0.1}}";
        let parsed: PromotionSettings = serde_yaml::from_str(yaml).unwrap();
        assert_eq!(parsed.metric, QualityMetric::F1);
        assert_eq!(parsed.rollback.max_drop, 0.1);
        assert_eq!(parsed.rollback.min_labels, 500);
        assert!(serde_yaml::from_str::<PromotionSettings>(
            "{champion: a, challenger: b, metrc: f1}"
        )
        .is_err());
    }

    #[test]
    fn every_problem_is_named() {
        let mut p = PromotionSettings::new("a", "nope");
        p.min_auc = Some(1.5);
        p.confidence = 0.3;
        p.min_labels = 0;
        p.rollback.guard_window_s = 0;
        p.min_improvement = -1.0;
        assert_eq!(
            keys(&p, &endpoint("champion", "m", false)),
            [
                "promotion.challenger",
                "promotion.min_auc",
                "promotion.min_improvement",
                "promotion.confidence",
                "promotion.min_labels",
                "promotion.rollback.guard_window_s"
            ]
        );
        // An alias move needs the champion on an alias, and one model on both sides.
        let p = PromotionSettings::new("a", "b");
        assert_eq!(keys(&p, &endpoint("3", "m", false)), ["promotion.action"]);
        assert_eq!(
            keys(&p, &endpoint("champion", "other", false)),
            ["promotion.action"]
        );
        let mut traffic = p.clone();
        traffic.action = PromotionAction::Traffic;
        assert!(keys(&traffic, &endpoint("3", "other", false)).is_empty());
        // A shadow champion answers nothing.
        let swapped = PromotionSettings::new("b", "a");
        assert_eq!(
            keys(&swapped, &endpoint("champion", "m", true)),
            ["promotion.champion"]
        );
        assert_eq!(
            keys(
                &PromotionSettings::new("a", "a"),
                &endpoint("champion", "m", false)
            ),
            ["promotion.challenger"]
        );
    }

    #[test]
    fn the_webhook_needs_a_url_and_a_secret() {
        let mut g = PromotionGlobals::default();
        assert_eq!(g.problem(), None);
        g.webhook_url = Some("ftp://x".into());
        assert_eq!(g.problem().unwrap().0, "webhook_url");
        g.webhook_url = Some("https://user:pw@hooks.example/p".into());
        assert_eq!(g.problem().unwrap().0, "webhook_secret");
        g.webhook_secret = Some("s".into());
        assert_eq!(g.problem(), None);
        g.check_interval_ms = 10;
        assert_eq!(g.problem().unwrap().0, "check_interval_ms");
    }
}
