//! One endpoint's promotion over time, as a state machine the caller drives with looks at the
//! two served entities and the time: evaluate (collect labels, judge), act once (promote),
//! guard the new champion (roll back on a drop), then hold until something changes. A change
//! nobody here made (the champion's or the challenger's version, the endpoint's config, the
//! rules) starts the evaluation over; while a guard watches, only a change to what it watches
//! ends it. A version rolled back, or reverted by hand after its promotion, is not promoted
//! again.

use std::collections::{HashSet, VecDeque};

use serde::Serialize;

use super::rules::{judge, Outcome, RuleResult};
use crate::drift::compare::Comparison;
use crate::drift::monitor::QualityTotal;
use crate::drift::quality::{QualityCounts, QualityFigures};
use crate::metrics::labels::{PromotionDecision, PromotionState};
use crate::settings::endpoint::{Route, TrafficConfig};
use crate::settings::promotion::{PromotionAction, PromotionSettings, QualityMetric};

/// Decisions kept for the view, newest last.
const KEPT_EVENTS: usize = 50;
/// Versions kept barred (rolled back or reverted after a promotion); the oldest go first.
const KEPT_BARRED: usize = 100;

/// What a look sees of one served entity.
#[derive(Debug, Clone)]
pub struct Side {
    pub served_entity: String,
    pub model: String,
    /// Its `entity_version` in the config: an alias or a number.
    pub alias_or_version: String,
    /// The version it serves now; none before its first load.
    pub version: Option<String>,
    /// Its monitor's since-load quality counts (monitoring follows a swap at the next scored
    /// request, so they may still be the previous version's).
    pub total: QualityTotal,
}

impl Side {
    /// Its counts, when they belong to the version it serves.
    fn served_counts(&self) -> Option<&QualityCounts> {
        (self.version.is_some() && self.total.version == self.version).then_some(&self.total.counts)
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
    /// The endpoint's routes replaced, at config version `from_config` (the change is refused
    /// when the config moved on meanwhile).
    Traffic {
        from: Option<TrafficConfig>,
        to: TrafficConfig,
        from_config: u64,
    },
}

impl Change {
    /// The change that undoes this one, made from config version `config_version`.
    pub fn inverse(&self, config_version: u64) -> Self {
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
            Self::Traffic { from, to, .. } => Self::Traffic {
                from: Some(to.clone()),
                to: from.clone().unwrap_or_default(),
                from_config: config_version,
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

impl Step {
    pub fn change(&self) -> &Change {
        match self {
            Self::Promote(c) | Self::Rollback(c) => c,
        }
    }
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

/// Where one side's counts stood when the evaluation began (or its window turned).
#[derive(Debug, Clone, Default)]
struct Base {
    epoch: u64,
    counts: QualityCounts,
}

impl Base {
    fn of(side: &Side) -> Self {
        Self {
            epoch: side.total.epoch,
            counts: side.total.counts.clone(),
        }
    }

    /// `side`'s counts since this base. Counts that started over since (another version, or a
    /// new monitor) all came after it.
    fn since(&mut self, side: &Side) -> QualityCounts {
        if side.total.epoch != self.epoch || side.total.counts.labels() < self.counts.labels() {
            *self = Self {
                epoch: side.total.epoch,
                counts: QualityCounts::default(),
            };
        }
        match side.served_counts() {
            Some(counts) => counts.since(&self.counts),
            None => QualityCounts::default(),
        }
    }
}

/// What starts the evaluation over when it changes.
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

/// What changed since the last look, besides what this evaluation did itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Changed {
    Rules,
    Config,
    Champion,
    Challenger,
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
    /// Promoted for good, rolled back, or an action failed: nothing is done until something
    /// changes.
    Holding,
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
    /// The version an alias promotion made the champion serve, while it stands.
    promoted: Option<String>,
    /// Challenger versions rolled back, or reverted by hand after their promotion: never
    /// promoted again by this evaluation (kept across its restarts).
    barred: VecDeque<String>,
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
    /// Refusals and dry-run passes announced since the evaluation began (each once).
    said: HashSet<(PromotionState, String)>,
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
            phase: Phase::Holding,
            champion_level: None,
            promoted: None,
            barred: VecDeque::new(),
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
            said: HashSet::new(),
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

    /// The first change since the last look that this evaluation did not make, and what it
    /// says; takes in the changes it made itself.
    fn changed(&mut self, look: &Look) -> Option<(Changed, String)> {
        let key = self.key.as_mut()?;
        if key.settings != look.settings {
            return Some((Changed::Rules, "the promotion rules changed".into()));
        }
        if key.config_version != look.config_version {
            if self.expected_config == Some(look.config_version) {
                key.config_version = look.config_version;
                self.expected_config = None;
            } else {
                return Some((
                    Changed::Config,
                    format!(
                        "the endpoint's config changed (config_version {})",
                        look.config_version
                    ),
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
                    return Some((
                        Changed::Champion,
                        format!(
                            "the champion's version changed from {} to {} (not by this promotion)",
                            show(key.champion.as_ref()),
                            show(now)
                        ),
                    ))
                }
            }
        }
        let now = look.challenger.version.as_ref();
        if key.challenger.as_ref() != now {
            if key.challenger.is_none() {
                key.challenger = now.cloned();
            } else {
                return Some((
                    Changed::Challenger,
                    format!(
                        "the challenger's version changed from {} to {}",
                        show(key.challenger.as_ref()),
                        show(now)
                    ),
                ));
            }
        }
        None
    }

    /// Whether a guard watching `change` goes on through `what`: only a change to what it
    /// watches (the champion after an alias move, the routes and the challenger after a
    /// traffic change) ends it.
    fn guard_survives(change: &Change, what: Changed) -> bool {
        match change {
            Change::Alias { .. } => what != Changed::Champion,
            Change::Traffic { .. } => matches!(what, Changed::Rules | Changed::Champion),
        }
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
        self.said.clear();
        self.state = PromotionState::Collecting;
    }

    /// Looks at the endpoint at `now_ms`; a step for the caller to take and report back with
    /// [`Evaluation::acted`].
    pub fn step(&mut self, look: &Look, now_ms: i64) -> Option<Step> {
        self.looked_ms = now_ms;
        if self.key.is_none() {
            self.restart(look, now_ms);
        }
        while let Some((what, why)) = self.changed(look) {
            if what == Changed::Champion {
                // The promoted version reverted by hand: it is not promoted again.
                if let Some(promoted) = self.promoted.take() {
                    self.bar(promoted);
                }
            }
            let key = self.key.as_mut().expect("looked at before");
            if let Phase::Guarding { change, .. } = &self.phase {
                if Self::guard_survives(change, what) {
                    match what {
                        Changed::Rules => key.settings = look.settings.clone(),
                        Changed::Config => key.config_version = look.config_version,
                        Changed::Champion => key.champion = look.champion.version.clone(),
                        Changed::Challenger => key.challenger = look.challenger.version.clone(),
                    }
                    continue;
                }
            }
            let guarding = matches!(self.phase, Phase::Guarding { .. });
            self.restart(look, now_ms);
            let message = if guarding {
                format!("the guard ended and the evaluation started over: {why}")
            } else {
                format!("evaluation started over: {why}")
            };
            self.decide(PromotionDecision::Reset, message, now_ms);
            break;
        }
        match self.phase {
            Phase::Evaluating { .. } => self.evaluate(look, now_ms),
            Phase::Guarding { .. } => self.guard(look, now_ms),
            Phase::Holding => None,
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
        self.action = None;
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
        if self.barred.iter().any(|b| b == hv) {
            let message = format!(
                "barred: the challenger's version {hv} was rolled back, or reverted by hand, after its promotion; it is not promoted again (move the challenger to another version)"
            );
            self.set(PromotionState::Refused, message.clone());
            self.announce_once(PromotionDecision::Refused, "barred", message, now_ms);
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

    /// Announces a refusal or a dry-run pass once per evaluation.
    /// Bars `version` from promotion (at most [`KEPT_BARRED`] kept).
    fn bar(&mut self, version: String) {
        if !self.barred.contains(&version) {
            if self.barred.len() == KEPT_BARRED {
                self.barred.pop_front();
            }
            self.barred.push_back(version);
        }
    }

    fn announce_once(
        &mut self,
        decision: PromotionDecision,
        what: &str,
        message: String,
        now_ms: i64,
    ) {
        if self.said.insert((self.state, what.to_owned())) {
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
        // The new champion: the champion's slot after an alias move, the challenger's after a
        // traffic change.
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
        // The sides' figures stay those of the decision; the guard's are its own.
        self.guard = Some(guard_view(look, previous, level, counts.labels(), until));
        let name = rollback.metric.as_str();
        if counts.labels() >= rollback.min_labels {
            if let Some(level) = level {
                let drop = if rollback.metric.higher_is_better() {
                    previous - level
                } else {
                    level - previous
                };
                if drop > rollback.max_drop {
                    let inverse = change.inverse(look.config_version);
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
            self.phase = Phase::Holding;
            let reason = if counts.labels() >= rollback.min_labels {
                format!(
                    "promoted; the guard watched the new champion until {} without a drop of its {name} of more than {}",
                    iso(until),
                    rollback.max_drop
                )
            } else {
                format!(
                    "promoted; the guard ended unjudged at {}: the new champion had {} of the {} labels it needed",
                    iso(until),
                    counts.labels(),
                    rollback.min_labels
                )
            };
            self.set(PromotionState::Promoted, reason);
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

    /// Takes in the champion's move or the config version our own change makes.
    fn expect(&mut self, change: &Change, config_version: Option<u64>) {
        self.expected_config = config_version;
        if let Change::Alias {
            from_version,
            to_version,
            ..
        } = change
        {
            self.moving = Some((from_version.clone(), to_version.clone()));
        }
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
        let change = step.change().clone();
        match (step, result) {
            (Step::Promote(_), Ok(config_version)) => {
                self.expect(&change, config_version);
                if let Change::Alias { to_version, .. } = &change {
                    self.promoted = Some(to_version.clone());
                }
                let because = self.reason.clone();
                self.action = Some(change.clone());
                let message = format!("promoted: {}; {because}", change.describe());
                self.state = PromotionState::Promoted;
                self.guard = None;
                self.phase = match (rollback.enabled, self.champion_level) {
                    (true, Some(previous_level)) => {
                        let until = now_ms + rollback.guard_window_s as i64 * 1000;
                        self.guard = Some(guard_view(look, previous_level, None, 0, until));
                        self.reason = message.clone();
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
                    (false, _) => {
                        self.reason =
                            format!("{message} (no rollback guard: rollback.enabled is false)");
                        Phase::Holding
                    }
                    (true, None) => {
                        self.reason = format!(
                            "{message} (no rollback guard: the previous champion's {} was undefined)",
                            rollback.metric.as_str()
                        );
                        Phase::Holding
                    }
                };
                self.decide(PromotionDecision::Promoted, message, now_ms);
            }
            (Step::Rollback(_), Ok(config_version)) => {
                self.expect(&change, config_version);
                if let Some(hv) = look.challenger.version.clone() {
                    self.bar(hv);
                }
                self.promoted = None;
                self.action = Some(change.clone());
                let message = format!("rolled back: {}; {}", change.describe(), self.reason);
                self.set(PromotionState::RolledBack, message.clone());
                self.phase = Phase::Holding;
                self.decide(PromotionDecision::RolledBack, message, now_ms);
            }
            (step, Err(e)) => {
                // Held until something changes: an action is not retried on every look.
                let message = match step {
                    Step::Promote(_) => format!(
                        "the promotion ({}) failed, and nothing more is tried until the versions, the config or the rules change: {e}",
                        change.describe()
                    ),
                    Step::Rollback(_) => format!(
                        "a rollback ({}) is due and failed: the new champion stays; restore it by hand. {}: {e}",
                        change.describe(),
                        self.reason
                    ),
                };
                self.set(PromotionState::Failed, message.clone());
                self.phase = Phase::Holding;
                self.decide(PromotionDecision::Failed, message, now_ms);
            }
        }
    }
}

fn guard_view(
    look: &Look,
    previous_level: f64,
    level: Option<f64>,
    labels: u64,
    until: i64,
) -> GuardView {
    let rollback = &look.settings.rollback;
    GuardView {
        metric: rollback.metric,
        previous_level,
        level,
        labels,
        min_labels: rollback.min_labels,
        max_drop: rollback.max_drop,
        until: iso(until),
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
                from_config: look.config_version,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::promotion::PromotionAction;

    use crate::promotion::rules::tests::counts;

    fn side(name: &str, version: &str, q: QualityCounts) -> Side {
        Side {
            served_entity: name.into(),
            model: "m".into(),
            alias_or_version: name.into(),
            version: Some(version.into()),
            total: QualityTotal {
                version: Some(version.into()),
                // A version's counts start over in an epoch of their own.
                epoch: version.parse().unwrap(),
                counts: q,
            },
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
        let mut rules = updated.clone();
        rules.settings.min_labels = 1001;
        e.step(&rules, 2);
        assert!(e.events[2].message.contains("rules changed"));
        e.step(&updated, 2);
        // A traffic promotion bumps the config version itself.
        let mut good = updated.clone();
        good.champion.total.counts = counts(2300, 1840);
        good.challenger.total.counts = counts(2000, 1900);
        let step = e.step(&good, 3).expect("a promotion");
        let Step::Promote(Change::Traffic { to, from, .. }) = &step else {
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
        // New rules leave the guard watching; a config update by hand ends it.
        let mut rules = after.clone();
        rules.settings.min_labels = 10;
        e.step(&rules, 5);
        assert_eq!(decisions(&e).last(), Some(&PromotionDecision::Promoted));
        rules.config_version = 4;
        e.step(&rules, 6);
        let last = e.events.back().unwrap();
        assert_eq!(last.decision, PromotionDecision::Reset);
        assert!(last.message.contains("the guard ended"), "{}", last.message);
        assert!(
            last.message.contains("config_version 4"),
            "{}",
            last.message
        );
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

    fn promoted(s: &PromotionSettings) -> (Evaluation, Look) {
        let mut e = Evaluation::new(0);
        let zero = QualityCounts::default();
        e.step(
            &look(
                s,
                side("champion", "1", zero.clone()),
                side("challenger", "2", zero),
            ),
            0,
        );
        let now = look(
            s,
            side("champion", "1", counts(2000, 1600)),
            side("challenger", "2", counts(2000, 1900)),
        );
        let step = e.step(&now, 1).expect("a promotion");
        e.acted(&now, step, Ok(None), 1);
        (e, now)
    }

    #[test]
    fn a_failed_action_holds_until_something_changes() {
        let s = settings();
        let mut e = Evaluation::new(0);
        let zero = QualityCounts::default();
        e.step(
            &look(
                &s,
                side("champion", "1", zero.clone()),
                side("challenger", "2", zero),
            ),
            0,
        );
        let now = look(
            &s,
            side("champion", "1", counts(2000, 1600)),
            side("challenger", "2", counts(2000, 1900)),
        );
        let step = e.step(&now, 1).expect("a promotion");
        e.acted(&now, step, Err("the registry is unreachable".into()), 1);
        assert_eq!(e.state, PromotionState::Failed);
        assert!(
            e.reason.contains("the registry is unreachable"),
            "{}",
            e.reason
        );
        // Not tried again on the next looks.
        assert_eq!(e.step(&now, 2), None);
        assert_eq!(e.step(&now, 3), None);
        assert_eq!(decisions(&e), [PromotionDecision::Failed]);
        // New rules start over, and the promotion is tried again.
        let mut again = now.clone();
        again.settings.min_labels = 999;
        assert_eq!(e.step(&again, 4), None);
        let grown = look(
            &again.settings,
            side("champion", "1", counts(4000, 3200)),
            side("challenger", "2", counts(4000, 3800)),
        );
        assert!(matches!(e.step(&grown, 5), Some(Step::Promote(_))));
    }

    #[test]
    fn a_failed_rollback_says_so_and_leaves_the_new_champion() {
        let s = settings();
        let (mut e, _) = promoted(&s);
        let bad = look(
            &s,
            side("champion", "2", counts(600, 300)),
            side("challenger", "2", counts(10, 9)),
        );
        let step = e.step(&bad, 2).expect("a rollback");
        e.acted(&bad, step, Err("version 1 is archived".into()), 2);
        assert_eq!(e.state, PromotionState::Failed);
        assert!(e.reason.contains("restore it by hand"), "{}", e.reason);
        assert_eq!(e.step(&bad, 3), None);
        assert_eq!(
            decisions(&e),
            [PromotionDecision::Promoted, PromotionDecision::Failed]
        );
    }

    #[test]
    fn the_guard_goes_on_through_new_rules_and_a_new_challenger_and_ends_on_a_manual_champion_move()
    {
        let s = settings();
        let (mut e, _) = promoted(&s);
        let mut next = s.clone();
        next.rollback.max_drop = 0.2;
        // New rules, and the challenger's alias on the next candidate: still guarding.
        let on = look(
            &next,
            side("champion", "2", counts(100, 90)),
            side("challenger", "3", counts(0, 0)),
        );
        assert_eq!(e.step(&on, 2), None);
        assert_eq!(e.state, PromotionState::Promoted);
        assert!(e
            .guard
            .as_ref()
            .is_some_and(|g| g.max_drop == 0.2 && g.labels == 100));
        assert_eq!(decisions(&e), [PromotionDecision::Promoted]);
        // The champion moved back by hand: the guard ends, and version 2 is barred.
        let reverted = look(
            &next,
            side("champion", "1", counts(0, 0)),
            side("challenger", "2", counts(0, 0)),
        );
        e.step(&reverted, 3);
        let reset = e
            .events
            .iter()
            .find(|e| e.decision == PromotionDecision::Reset)
            .expect("a reset");
        assert!(
            reset.message.contains("the guard ended"),
            "{}",
            reset.message
        );
        let better = look(
            &next,
            side("champion", "1", counts(2000, 1600)),
            side("challenger", "2", counts(2000, 1900)),
        );
        assert_eq!(e.step(&better, 4), None);
        assert_eq!(e.state, PromotionState::Refused);
        assert!(e.reason.starts_with("barred"), "{}", e.reason);
    }

    #[test]
    fn a_rolled_back_version_is_not_promoted_again_after_a_reset() {
        let s = settings();
        let (mut e, _) = promoted(&s);
        let bad = look(
            &s,
            side("champion", "2", counts(600, 300)),
            side("challenger", "2", counts(10, 9)),
        );
        let step = e.step(&bad, 2).expect("a rollback");
        e.acted(&bad, step, Ok(None), 2);
        assert_eq!(e.state, PromotionState::RolledBack);
        let mut updated = look(
            &s,
            side("champion", "1", counts(4000, 3200)),
            side("challenger", "2", counts(4000, 3800)),
        );
        updated.config_version = 2;
        assert_eq!(e.step(&updated, 3), None);
        assert_eq!(e.state, PromotionState::Refused);
        assert!(e.reason.starts_with("barred"), "{}", e.reason);
        // Another version of the challenger is judged.
        let next = look(
            &s,
            side("champion", "1", counts(4000, 3200)),
            side("challenger", "3", counts(0, 0)),
        );
        e.step(&next, 4);
        assert_eq!(e.state, PromotionState::WaitingForLabels);
    }

    #[test]
    fn a_guard_without_enough_labels_ends_unjudged_and_says_so() {
        let s = settings();
        let (mut e, _) = promoted(&s);
        let few = look(
            &s,
            side("champion", "2", counts(100, 90)),
            side("challenger", "2", counts(10, 9)),
        );
        assert_eq!(e.step(&few, 60_001), None);
        assert_eq!(e.state, PromotionState::Promoted);
        assert!(e.reason.contains("ended unjudged"), "{}", e.reason);
        assert!(e.reason.contains("100 of the 500"), "{}", e.reason);
    }

    #[test]
    fn counts_that_start_over_are_not_taken_from_an_older_base() {
        // The challenger's monitor starts over (same version, a new epoch): its counts after
        // that are all new, not less the base of the old run.
        let s = settings();
        let mut e = Evaluation::new(0);
        e.step(
            &look(
                &s,
                side("champion", "1", counts(100, 80)),
                side("challenger", "2", counts(3000, 2400)),
            ),
            0,
        );
        let mut restarted = side("challenger", "2", counts(1200, 1100));
        restarted.total.epoch = 7;
        e.step(
            &look(&s, side("champion", "1", counts(100, 80)), restarted),
            1,
        );
        assert_eq!(e.challenger.as_ref().unwrap().labels, 1200);
    }
}
