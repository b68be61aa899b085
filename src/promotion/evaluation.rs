//! One endpoint's promotion over time, as a state machine the caller drives with looks at the
//! two served entities and the time: evaluate (collect labels, judge), act once (promote),
//! guard the new champion (roll back on a drop), then wait for something to change. A change
//! nobody here made (the champion's or the challenger's version, the endpoint's config, the
//! rules) starts the evaluation over.

use std::collections::VecDeque;

use serde::Serialize;

use super::rules::{judge, Outcome, RuleResult};
use crate::drift::compare::Comparison;
use crate::drift::quality::{QualityCounts, QualityFigures};
use crate::metrics::labels::{PromotionDecision, PromotionState};
use crate::settings::endpoint::{Route, TrafficConfig};
use crate::settings::promotion::{PromotionAction, PromotionSettings, QualityMetric};

/// Decisions kept for the view, newest last.
const KEPT_EVENTS: usize = 50;

/// What a look sees of one served entity.
#[derive(Debug, Clone)]
pub struct Side {
    pub served_entity: String,
    pub model: String,
    /// Its `entity_version` in the config: an alias or a number.
    pub alias_or_version: String,
    /// The version it serves now; none before its first load.
    pub version: Option<String>,
    /// The version its quality counts belong to (monitoring follows a swap at the next
    /// scored request), and the counts since that version was first scored.
    pub counted_version: Option<String>,
    pub counts: QualityCounts,
}

impl Side {
    /// Its counts, when they belong to the version it serves.
    fn served_counts(&self) -> Option<&QualityCounts> {
        (self.version.is_some() && self.counted_version == self.version).then_some(&self.counts)
    }
}

/// One look at an endpoint with promotion rules.
#[derive(Debug, Clone)]
pub struct Look {
    pub settings: PromotionSettings,
    pub config_version: u64,
    pub traffic: Option<TrafficConfig>,
    pub champion: Side,
    pub challenger: Side,
}

/// What a promotion or a rollback changes.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Change {
    /// A registry alias moved from one version to another.
    Alias {
        model: String,
        alias: String,
        from_version: String,
        to_version: String,
    },
    /// The endpoint's routes replaced.
    Traffic {
        from: Option<TrafficConfig>,
        to: TrafficConfig,
    },
}

impl Change {
    /// The change that undoes this one.
    pub fn inverse(&self) -> Self {
        match self {
            Self::Alias {
                model,
                alias,
                from_version,
                to_version,
            } => Self::Alias {
                model: model.clone(),
                alias: alias.clone(),
                from_version: to_version.clone(),
                to_version: from_version.clone(),
            },
            Self::Traffic { from, to } => Self::Traffic {
                from: Some(to.clone()),
                to: from.clone().unwrap_or_default(),
            },
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Self::Alias {
                model,
                alias,
                from_version,
                to_version,
            } => format!(
                "move alias '{alias}' of model '{model}' from version {from_version} to {to_version}"
            ),
            Self::Traffic { to, .. } => format!(
                "route the traffic {}",
                to.routes
                    .iter()
                    .map(|r| if r.shadow {
                        format!("{} shadow", r.served_entity_name)
                    } else {
                        format!("{} {}%", r.served_entity_name, r.traffic_percentage)
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}

/// What the caller is asked to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    Promote(Change),
    Rollback(Change),
}

/// A decision, as the view lists it and announcements carry it.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub at: String,
    pub decision: PromotionDecision,
    pub state: PromotionState,
    pub message: String,
    pub action: Option<Change>,
    pub comparison: Option<Comparison>,
}

/// Counts of one side since the evaluation began (or its window turned).
#[derive(Debug, Clone, Default)]
struct Base {
    version: Option<String>,
    counts: QualityCounts,
}

impl Base {
    fn of(side: &Side) -> Self {
        Self {
            version: side.counted_version.clone(),
            counts: side.counts.clone(),
        }
    }

    /// `side`'s counts since this base; counts of another version started after it.
    fn since(&mut self, side: &Side) -> QualityCounts {
        if side.counted_version != self.version {
            *self = Self {
                version: side.counted_version.clone(),
                counts: QualityCounts::default(),
            };
        }
        match side.served_counts() {
            Some(counts) => counts.since(&self.counts),
            None => QualityCounts::default(),
        }
    }
}

/// What resets the evaluation when it changes.
#[derive(Debug, Clone, PartialEq)]
struct Key {
    settings: PromotionSettings,
    config_version: u64,
    champion: Option<String>,
    challenger: Option<String>,
}

impl Key {
    fn of(look: &Look) -> Self {
        Self {
            settings: look.settings.clone(),
            config_version: look.config_version,
            champion: look.champion.version.clone(),
            challenger: look.challenger.version.clone(),
        }
    }
}

#[derive(Debug)]
enum Phase {
    Evaluating {
        window_start_ms: i64,
        champion: Base,
        challenger: Base,
    },
    Guarding {
        change: Change,
        since_ms: i64,
        /// The previous champion's figure of the guard's metric at the decision.
        previous_level: f64,
        base: Base,
    },
    /// Promoted for good, or rolled back: nothing to do until something changes.
    Done,
}

/// The guard's figures, for the view.
#[derive(Debug, Clone, Serialize)]
pub struct GuardView {
    pub metric: QualityMetric,
    pub previous_level: f64,
    pub level: Option<f64>,
    pub labels: u64,
    pub min_labels: u64,
    pub max_drop: f64,
    pub until: String,
}

/// A side as the view shows it: its figures over the evaluation's labels.
#[derive(Debug, Clone, Serialize)]
pub struct SideView {
    pub served_entity: String,
    pub model: String,
    pub version: Option<String>,
    pub labels: u64,
    pub figures: QualityFigures,
}

pub struct Evaluation {
    key: Option<Key>,
    /// The config version our own traffic change made.
    expected_config: Option<u64>,
    /// The champion's version moving (from, to) by our own alias move.
    moving: Option<(String, String)>,
    phase: Phase,
    /// The champion's figure of the guard's metric at the last judgement.
    champion_level: Option<f64>,
    pub state: PromotionState,
    pub reason: String,
    pub rules: Vec<RuleResult>,
    pub comparison: Option<Comparison>,
    /// What was done, or (dry run) would be done.
    pub action: Option<Change>,
    pub guard: Option<GuardView>,
    pub champion: Option<SideView>,
    pub challenger: Option<SideView>,
    pub started_ms: i64,
    pub looked_ms: i64,
    pub events: VecDeque<Event>,
    /// Decisions not yet announced.
    fresh: Vec<Event>,
    /// The last refusal said (its rule), so a refusal is announced once until it changes.
    said: Option<(PromotionState, String)>,
}

fn iso(ms: i64) -> String {
    crate::drift::report::iso(ms)
}

fn show(v: Option<&String>) -> &str {
    v.map_or("none", String::as_str)
}

impl Evaluation {
    pub fn new(now_ms: i64) -> Self {
        Self {
            key: None,
            expected_config: None,
            moving: None,
            phase: Phase::Done,
            champion_level: None,
            state: PromotionState::Collecting,
            reason: "not looked at yet".into(),
            rules: Vec::new(),
            comparison: None,
            action: None,
            guard: None,
            champion: None,
            challenger: None,
            started_ms: now_ms,
            looked_ms: now_ms,
            events: VecDeque::new(),
            fresh: Vec::new(),
            said: None,
        }
    }

    /// Decisions made since the last call, for metrics, the log and the webhook.
    pub fn take_fresh(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.fresh)
    }

    fn decide(&mut self, decision: PromotionDecision, message: String, now_ms: i64) {
        let event = Event {
            at: iso(now_ms),
            decision,
            state: self.state,
            message,
            action: self.action.clone(),
            comparison: self.comparison.clone(),
        };
        if self.events.len() == KEPT_EVENTS {
            self.events.pop_front();
        }
        self.events.push_back(event.clone());
        self.fresh.push(event);
    }

    fn set(&mut self, state: PromotionState, reason: String) {
        self.state = state;
        self.reason = reason;
    }

    /// Why the evaluation must start over, if it must; takes in the changes this evaluation
    /// made itself.
    fn changed(&mut self, look: &Look) -> Option<String> {
        let key = self.key.as_mut()?;
        if key.settings != look.settings {
            return Some("the promotion rules changed".into());
        }
        if key.config_version != look.config_version {
            if self.expected_config == Some(look.config_version) {
                key.config_version = look.config_version;
                self.expected_config = None;
            } else {
                return Some(format!(
                    "the endpoint's config changed (config_version {})",
                    look.config_version
                ));
            }
        }
        let now = look.champion.version.as_ref();
        if key.champion.as_ref() != now {
            match &self.moving {
                Some((_, to)) if Some(to) == now => {
                    key.champion = now.cloned();
                    self.moving = None;
                }
                _ if key.champion.is_none() => key.champion = now.cloned(),
                _ => {
                    return Some(format!(
                        "the champion's version changed from {} to {} (not by this promotion)",
                        show(key.champion.as_ref()),
                        show(now)
                    ))
                }
            }
        }
        let now = look.challenger.version.as_ref();
        if key.challenger.as_ref() != now {
            if key.challenger.is_none() {
                key.challenger = now.cloned();
            } else {
                return Some(format!(
                    "the challenger's version changed from {} to {}",
                    show(key.challenger.as_ref()),
                    show(now)
                ));
            }
        }
        None
    }

    fn restart(&mut self, look: &Look, now_ms: i64) {
        self.key = Some(Key::of(look));
        self.expected_config = None;
        self.moving = None;
        self.phase = Phase::Evaluating {
            window_start_ms: now_ms,
            champion: Base::of(&look.champion),
            challenger: Base::of(&look.challenger),
        };
        self.started_ms = now_ms;
        self.rules.clear();
        self.comparison = None;
        self.action = None;
        self.guard = None;
        self.said = None;
    }

    /// Looks at the endpoint at `now_ms`; a step for the caller to take and report back with
    /// [`Evaluation::acted`].
    pub fn step(&mut self, look: &Look, now_ms: i64) -> Option<Step> {
        self.looked_ms = now_ms;
        if self.key.is_none() {
            self.restart(look, now_ms);
        } else if let Some(why) = self.changed(look) {
            self.restart(look, now_ms);
            self.state = PromotionState::Collecting;
            self.decide(
                PromotionDecision::Reset,
                format!("evaluation started over: {why}"),
                now_ms,
            );
        }
        match self.phase {
            Phase::Evaluating { .. } => self.evaluate(look, now_ms),
            Phase::Guarding { .. } => self.guard(look, now_ms),
            Phase::Done => None,
        }
    }

    fn evaluate(&mut self, look: &Look, now_ms: i64) -> Option<Step> {
        let settings = &look.settings;
        let Phase::Evaluating {
            window_start_ms,
            champion,
            challenger,
        } = &mut self.phase
        else {
            return None;
        };
        if now_ms - *window_start_ms >= settings.evaluation_window_s as i64 * 1000 {
            // A new window: the decision is about recent traffic only.
            *window_start_ms = now_ms;
            *champion = Base::of(&look.champion);
            *challenger = Base::of(&look.challenger);
            self.started_ms = now_ms;
        }
        let a = champion.since(&look.champion);
        let b = challenger.since(&look.challenger);
        self.champion = Some(side_view(&look.champion, &a));
        self.challenger = Some(side_view(&look.challenger, &b));
        let (Some(cv), Some(hv)) = (&look.champion.version, &look.challenger.version) else {
            let who = if look.champion.version.is_none() {
                &look.champion.served_entity
            } else {
                &look.challenger.served_entity
            };
            self.set(
                PromotionState::Collecting,
                format!("'{who}' serves no version yet"),
            );
            return None;
        };
        if cv == hv {
            self.set(
                PromotionState::Collecting,
                format!("champion and challenger both serve version {cv}: nothing to compare until the challenger serves another version"),
            );
            return None;
        }
        let verdict = judge(settings, &a, &b);
        let reason = verdict.reason();
        self.rules = verdict.rules.clone();
        self.comparison = Some(verdict.comparison.clone());
        self.champion_level = a.figure(settings.rollback.metric);
        match verdict.outcome {
            Outcome::WaitingForLabels => {
                self.set(PromotionState::WaitingForLabels, reason);
                None
            }
            Outcome::Refused(rule) => {
                self.set(PromotionState::Refused, reason.clone());
                self.announce_once(PromotionDecision::Refused, rule, reason, now_ms);
                None
            }
            Outcome::Passed => {
                let change = promotion_change(look, cv, hv);
                if settings.dry_run {
                    self.action = Some(change.clone());
                    let message = format!("dry run: would {}; {reason}", change.describe());
                    self.set(PromotionState::Passed, message.clone());
                    self.announce_once(PromotionDecision::Passed, "passed", message, now_ms);
                    None
                } else {
                    // What the promotion's event says it was for.
                    self.reason = reason;
                    Some(Step::Promote(change))
                }
            }
        }
    }

    /// Announces a refusal or a dry-run pass once, until what it says changes.
    fn announce_once(
        &mut self,
        decision: PromotionDecision,
        what: &str,
        message: String,
        now_ms: i64,
    ) {
        let said = (self.state, what.to_owned());
        if self.said.as_ref() != Some(&said) {
            self.said = Some(said);
            self.decide(decision, message, now_ms);
        }
    }

    fn guard(&mut self, look: &Look, now_ms: i64) -> Option<Step> {
        let rollback = &look.settings.rollback;
        let Phase::Guarding {
            change,
            since_ms,
            previous_level,
            base,
        } = &mut self.phase
        else {
            return None;
        };
        let until = *since_ms + rollback.guard_window_s as i64 * 1000;
        // The new champion: the champion's slot after an alias move, the challenger's
        // after a traffic change.
        let (side, version) = match change {
            Change::Alias { to_version, .. } => (&look.champion, Some(to_version.clone())),
            Change::Traffic { .. } => (&look.challenger, look.challenger.version.clone()),
        };
        let counts = if side.version == version {
            base.since(side)
        } else {
            QualityCounts::default()
        };
        let level = counts.figure(rollback.metric);
        let previous = *previous_level;
        self.guard = Some(GuardView {
            metric: rollback.metric,
            previous_level: previous,
            level,
            labels: counts.labels(),
            min_labels: rollback.min_labels,
            max_drop: rollback.max_drop,
            until: iso(until),
        });
        let name = rollback.metric.as_str();
        if counts.labels() >= rollback.min_labels {
            if let Some(level) = level {
                let drop = if rollback.metric.higher_is_better() {
                    previous - level
                } else {
                    level - previous
                };
                if drop > rollback.max_drop {
                    let inverse = change.inverse();
                    self.reason = format!(
                        "the new champion's {name} is {level:.4} over {} labels, {drop:.4} worse than the previous champion's {previous:.4} (more than {})",
                        counts.labels(),
                        rollback.max_drop
                    );
                    return Some(Step::Rollback(inverse));
                }
            }
        }
        if now_ms >= until {
            self.phase = Phase::Done;
            self.set(
                PromotionState::Promoted,
                format!(
                    "promoted; the guard watched the new champion until {} without a drop of its {name} of more than {}",
                    iso(until),
                    rollback.max_drop
                ),
            );
            return None;
        }
        self.reason = format!(
            "promoted; the guard watches the new champion's {name} until {}: {} of {} labels, {} against the previous champion's {previous:.4}",
            iso(until),
            counts.labels(),
            rollback.min_labels,
            level.map_or("undefined".into(), |l| format!("{l:.4}")),
        );
        None
    }

    /// Reports how `step` went: `Ok(config_version)` (the config version a traffic change
    /// made) or the error that stopped it.
    pub fn acted(
        &mut self,
        look: &Look,
        step: Step,
        result: Result<Option<u64>, String>,
        now_ms: i64,
    ) {
        let rollback = &look.settings.rollback;
        match (step, result) {
            (Step::Promote(change), Ok(config_version)) => {
                self.expected_config = config_version;
                if let Change::Alias {
                    from_version,
                    to_version,
                    ..
                } = &change
                {
                    self.moving = Some((from_version.clone(), to_version.clone()));
                }
                let because = self.reason.clone();
                self.action = Some(change.clone());
                let message = format!("promoted: {}; {because}", change.describe());
                self.set(PromotionState::Promoted, message.clone());
                self.guard = None;
                self.phase = match (rollback.enabled, self.champion_level) {
                    (true, Some(previous_level)) => {
                        self.guard = Some(GuardView {
                            metric: rollback.metric,
                            previous_level,
                            level: None,
                            labels: 0,
                            min_labels: rollback.min_labels,
                            max_drop: rollback.max_drop,
                            until: iso(now_ms + rollback.guard_window_s as i64 * 1000),
                        });
                        Phase::Guarding {
                            base: match &change {
                                Change::Alias { .. } => Base::default(),
                                Change::Traffic { .. } => Base::of(&look.challenger),
                            },
                            change,
                            since_ms: now_ms,
                            previous_level,
                        }
                    }
                    _ => Phase::Done,
                };
                self.said = None;
                self.decide(PromotionDecision::Promoted, message, now_ms);
            }
            (Step::Promote(change), Err(e)) => {
                let message = format!("the promotion ({}) failed: {e}", change.describe());
                self.set(PromotionState::Refused, message.clone());
                self.announce_once(PromotionDecision::Refused, "action", message, now_ms);
            }
            (Step::Rollback(change), Ok(config_version)) => {
                self.expected_config = config_version;
                if let Change::Alias {
                    from_version,
                    to_version,
                    ..
                } = &change
                {
                    self.moving = Some((from_version.clone(), to_version.clone()));
                }
                self.action = Some(change.clone());
                let message = format!("rolled back: {}; {}", change.describe(), self.reason);
                self.set(PromotionState::RolledBack, message.clone());
                self.phase = Phase::Done;
                self.decide(PromotionDecision::RolledBack, message, now_ms);
            }
            (Step::Rollback(change), Err(e)) => {
                // Stays guarding: the next look tries again.
                self.reason = format!(
                    "a rollback ({}) is due and failed, trying again: {e}",
                    change.describe()
                );
            }
        }
    }
}

fn side_view(side: &Side, counts: &QualityCounts) -> SideView {
    SideView {
        served_entity: side.served_entity.clone(),
        model: side.model.clone(),
        version: side.version.clone(),
        labels: counts.labels(),
        figures: counts.figures(),
    }
}

/// What promoting the challenger (serving `hv`) over the champion (serving `cv`) changes.
fn promotion_change(look: &Look, cv: &str, hv: &str) -> Change {
    match look.settings.action {
        PromotionAction::Alias => Change::Alias {
            model: look.champion.model.clone(),
            alias: look.champion.alias_or_version.clone(),
            from_version: cv.to_owned(),
            to_version: hv.to_owned(),
        },
        PromotionAction::Traffic => {
            let challenger = &look.challenger.served_entity;
            let mut routes: Vec<Route> = look
                .traffic
                .as_ref()
                .map(|t| t.routes.clone())
                .unwrap_or_default()
                .into_iter()
                .filter(|r| r.served_entity_name != *challenger)
                .map(|mut r| {
                    if !r.shadow {
                        r.traffic_percentage = 0;
                    }
                    r
                })
                .collect();
            routes.push(Route {
                served_entity_name: challenger.clone(),
                traffic_percentage: 100,
                shadow: false,
                shadow_percentage: None,
            });
            Change::Traffic {
                from: look.traffic.clone(),
                to: TrafficConfig { routes },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::promotion::PromotionAction;

    /// `n` labelled rows, `right` of them predicted right (every fifth row positive).
    fn counts(n: u64, right: u64) -> QualityCounts {
        let mut q = QualityCounts::default();
        for i in 0..n {
            let actual = i % 5 == 0;
            let correct = i < right;
            let predicted = if correct { actual } else { !actual };
            q.add(actual, predicted, Some(if predicted { 0.8 } else { 0.2 }));
        }
        q
    }

    fn side(name: &str, version: &str, q: QualityCounts) -> Side {
        Side {
            served_entity: name.into(),
            model: "m".into(),
            alias_or_version: name.into(),
            version: Some(version.into()),
            counted_version: Some(version.into()),
            counts: q,
        }
    }

    fn settings() -> PromotionSettings {
        let mut s = PromotionSettings::new("champion", "challenger");
        s.metric = QualityMetric::Accuracy;
        s.min_labels = 1000;
        s.rollback.metric = QualityMetric::Accuracy;
        s.rollback.min_labels = 500;
        s.rollback.guard_window_s = 60;
        s
    }

    fn look(settings: &PromotionSettings, champion: Side, challenger: Side) -> Look {
        Look {
            settings: settings.clone(),
            config_version: 1,
            traffic: Some(TrafficConfig {
                routes: vec![
                    Route {
                        served_entity_name: "champion".into(),
                        traffic_percentage: 90,
                        shadow: false,
                        shadow_percentage: None,
                    },
                    Route {
                        served_entity_name: "challenger".into(),
                        traffic_percentage: 10,
                        shadow: false,
                        shadow_percentage: None,
                    },
                ],
            }),
            champion,
            challenger,
        }
    }

    fn decisions(e: &Evaluation) -> Vec<PromotionDecision> {
        e.events.iter().map(|e| e.decision).collect()
    }

    /// Counts taken before the evaluation starts do not count; a better challenger is promoted
    /// by moving the champion's alias; the guard rolls it back when its accuracy drops; the
    /// champion moving back (our own rollback) is no manual move.
    #[test]
    fn promote_then_roll_back_by_alias() {
        let s = settings();
        let mut e = Evaluation::new(0);
        let before = look(
            &s,
            side("champion", "1", counts(5000, 4000)),
            side("challenger", "2", counts(5000, 4000)),
        );
        assert_eq!(e.step(&before, 0), None);
        assert_eq!(e.state, PromotionState::WaitingForLabels);
        // 2000 more rows each: champion 80 % right, challenger 95 %.
        let mut a = counts(5000, 4000);
        let mut b = counts(5000, 4000);
        for i in 0..2000u64 {
            let actual = i % 5 == 0;
            a.add(actual, if i < 1600 { actual } else { !actual }, None);
            b.add(actual, if i < 1900 { actual } else { !actual }, None);
        }
        let now = look(
            &s,
            side("champion", "1", a.clone()),
            side("challenger", "2", b.clone()),
        );
        let step = e.step(&now, 1000).expect("a promotion");
        let Step::Promote(change) = step.clone() else {
            panic!("{step:?}")
        };
        assert_eq!(
            change,
            Change::Alias {
                model: "m".into(),
                alias: "champion".into(),
                from_version: "1".into(),
                to_version: "2".into()
            }
        );
        assert_eq!(e.champion.as_ref().unwrap().labels, 2000);
        e.acted(&now, step, Ok(None), 1000);
        assert_eq!(e.state, PromotionState::Promoted);
        assert_eq!(decisions(&e), [PromotionDecision::Promoted]);
        let promoted = &e.events[0].message;
        assert!(promoted.contains("passed every rule"), "{promoted}");
        assert!(e.guard.as_ref().is_some_and(|g| g.labels == 0));
        assert_eq!(e.take_fresh().len(), 1);
        // The swap is pending: the champion still serves 1. Not a manual move.
        assert_eq!(e.step(&now, 2000), None);
        assert_eq!(e.state, PromotionState::Promoted);
        // The champion serves 2 now; its monitor started over. 600 labels at 60 %.
        let swapped = look(
            &s,
            side("champion", "2", counts(600, 360)),
            side("challenger", "2", b.clone()),
        );
        let step = e.step(&swapped, 3000).expect("a rollback");
        assert_eq!(step, Step::Rollback(change_back()));
        assert!(e.reason.contains("accuracy is 0.6000"), "{}", e.reason);
        e.acted(&swapped, step, Ok(None), 3000);
        assert_eq!(e.state, PromotionState::RolledBack);
        // Back on 1: expected, so no reset, and nothing more is done.
        let back = look(
            &s,
            side("champion", "1", counts(10, 8)),
            side("challenger", "2", b),
        );
        assert_eq!(e.step(&back, 4000), None);
        assert_eq!(e.state, PromotionState::RolledBack);
        assert_eq!(
            decisions(&e),
            [PromotionDecision::Promoted, PromotionDecision::RolledBack]
        );
    }

    fn change_back() -> Change {
        Change::Alias {
            model: "m".into(),
            alias: "champion".into(),
            from_version: "2".into(),
            to_version: "1".into(),
        }
    }

    #[test]
    fn the_guard_lets_a_good_promotion_stand_when_its_window_ends() {
        let s = settings();
        let mut e = Evaluation::new(0);
        let now = look(
            &s,
            side("champion", "1", counts(2000, 1600)),
            side("challenger", "2", counts(2000, 1900)),
        );
        e.step(
            &look(
                &s,
                side("champion", "1", QualityCounts::default()),
                side("challenger", "2", QualityCounts::default()),
            ),
            0,
        );
        let step = e.step(&now, 0).unwrap();
        e.acted(&now, step, Ok(None), 0);
        let good = look(
            &s,
            side("champion", "2", counts(600, 570)),
            side("challenger", "2", counts(2000, 1900)),
        );
        assert_eq!(e.step(&good, 30_000), None);
        assert!(e.reason.contains("600 of 500 labels"), "{}", e.reason);
        assert_eq!(e.step(&good, 60_000), None);
        assert_eq!(e.state, PromotionState::Promoted);
        assert!(e.reason.contains("without a drop"), "{}", e.reason);
        // Done: later drops change nothing.
        let bad = look(
            &s,
            side("champion", "2", counts(600, 100)),
            side("challenger", "2", counts(2000, 1900)),
        );
        assert_eq!(e.step(&bad, 70_000), None);
    }

    #[test]
    fn a_manual_move_or_a_config_update_starts_over_and_our_own_traffic_change_does_not() {
        let mut s = settings();
        s.action = PromotionAction::Traffic;
        let mut e = Evaluation::new(0);
        let start = look(
            &s,
            side("champion", "1", counts(100, 80)),
            side("challenger", "2", counts(100, 80)),
        );
        e.step(&start, 0);
        let moved = look(
            &s,
            side("champion", "1", counts(300, 240)),
            side("challenger", "3", counts(0, 0)),
        );
        e.step(&moved, 1);
        assert_eq!(decisions(&e), [PromotionDecision::Reset]);
        assert!(e.events[0]
            .message
            .contains("challenger's version changed from 2 to 3"));
        assert_eq!(e.state, PromotionState::WaitingForLabels);
        let mut updated = moved.clone();
        updated.config_version = 2;
        e.step(&updated, 2);
        assert!(e.events[1]
            .message
            .contains("config changed (config_version 2)"));
        // A traffic promotion bumps the config version itself.
        let mut good = updated.clone();
        good.champion.counts = counts(2300, 1840);
        good.challenger.counts = counts(2000, 1900);
        let step = e.step(&good, 3).expect("a promotion");
        let Step::Promote(Change::Traffic { to, from }) = &step else {
            panic!("{step:?}")
        };
        assert_eq!(from.as_ref(), updated.traffic.as_ref());
        let shares: Vec<_> = to
            .routes
            .iter()
            .map(|r| (r.served_entity_name.as_str(), r.traffic_percentage))
            .collect();
        assert_eq!(shares, [("champion", 0), ("challenger", 100)]);
        e.acted(&good, step, Ok(Some(3)), 3);
        let mut after = good.clone();
        after.config_version = 3;
        e.step(&after, 4);
        assert_eq!(e.state, PromotionState::Promoted);
        assert_eq!(decisions(&e).last(), Some(&PromotionDecision::Promoted));
        // Changed rules start over.
        let mut rules = after.clone();
        rules.settings.min_labels = 10;
        e.step(&rules, 5);
        assert!(e.events.back().unwrap().message.contains("rules changed"));
    }

    #[test]
    fn a_refusal_and_a_dry_run_pass_are_announced_once() {
        let mut s = settings();
        let mut e = Evaluation::new(0);
        let zero = look(
            &s,
            side("champion", "1", QualityCounts::default()),
            side("challenger", "2", QualityCounts::default()),
        );
        e.step(&zero, 0);
        let worse = look(
            &s,
            side("champion", "1", counts(2000, 1900)),
            side("challenger", "2", counts(2000, 1600)),
        );
        for t in 1..5 {
            assert_eq!(e.step(&worse, t), None);
        }
        assert_eq!(e.state, PromotionState::Refused);
        assert!(e.reason.starts_with("improvement:"), "{}", e.reason);
        assert_eq!(decisions(&e), [PromotionDecision::Refused]);
        s.dry_run = true;
        let mut e = Evaluation::new(0);
        let zero = look(
            &s,
            side("champion", "1", QualityCounts::default()),
            side("challenger", "2", QualityCounts::default()),
        );
        e.step(&zero, 0);
        let better = look(
            &s,
            side("champion", "1", counts(2000, 1600)),
            side("challenger", "2", counts(2000, 1900)),
        );
        for t in 1..5 {
            assert_eq!(e.step(&better, t), None);
        }
        assert_eq!(e.state, PromotionState::Passed);
        assert!(
            e.reason.starts_with("dry run: would move alias 'champion'"),
            "{}",
            e.reason
        );
        assert_eq!(decisions(&e), [PromotionDecision::Passed]);
        assert!(e.action.is_some());
    }

    #[test]
    fn a_window_that_ends_starts_the_counts_over() {
        let mut s = settings();
        s.evaluation_window_s = 10;
        let mut e = Evaluation::new(0);
        e.step(
            &look(
                &s,
                side("champion", "1", QualityCounts::default()),
                side("challenger", "2", QualityCounts::default()),
            ),
            0,
        );
        let some = look(
            &s,
            side("champion", "1", counts(800, 640)),
            side("challenger", "2", counts(800, 760)),
        );
        e.step(&some, 9_999);
        assert_eq!(e.challenger.as_ref().unwrap().labels, 800);
        e.step(&some, 10_000);
        assert_eq!(e.challenger.as_ref().unwrap().labels, 0);
        assert_eq!(e.state, PromotionState::WaitingForLabels);
    }
}
