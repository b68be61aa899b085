//! The live state: per served entity, the drift profile windows and the quality windows of the
//! version it serves (both start over when the version changes); per endpoint, the scored rows
//! waiting for their labels.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use super::profile::{Counts, Profiler, Role};
use super::quality::QualityCounts;
use super::report::{column_report, iso, EntityReport, OpenWindow, QualityReport, WindowReport};
use super::window::{Window, Windowed, WindowsSnapshot};
use crate::data::frame::{ColumnData, Frame};
use crate::data::tensor::{NamedTensor, TensorData};
use crate::engine::outputs::OutputMapping;
use crate::features::expr::Value;
use crate::inference_log::LabelRecord;
use crate::settings::monitoring::{LabelSettings, MonitoringSettings, Thresholds};
use crate::sharded_map::ShardedMap;
use crate::version::VersionMeta;

/// The settings every monitor shares, checked once.
#[derive(Debug)]
pub struct MonitorConfig {
    pub widths: Vec<(String, i64)>,
    pub kept: usize,
    pub min_count: u64,
    pub thresholds: Thresholds,
    pub labels: LabelSettings,
}

impl MonitorConfig {
    /// `None` when monitoring is off.
    pub fn new(settings: &MonitoringSettings) -> Option<Arc<Self>> {
        settings.enabled.then(|| {
            Arc::new(Self {
                widths: settings.widths().unwrap_or_default(),
                kept: settings.windows_kept,
                min_count: settings.min_count,
                thresholds: settings.thresholds.clone(),
                labels: settings.labels.clone(),
            })
        })
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A slot's since-load quality counts, with what tells one run of counts from another.
#[derive(Debug, Clone, Default)]
pub struct QualityTotal {
    pub version: Option<String>,
    pub epoch: u64,
    pub counts: QualityCounts,
}

/// What one served entity's version has seen and how good its labelled predictions were.
pub struct SlotMonitor {
    config: Arc<MonitorConfig>,
    state: Mutex<SlotState>,
}

/// A version as monitoring sees it: its description and what its baseline says to count.
#[derive(Clone, Copy)]
pub struct Version<'a> {
    pub meta: &'a VersionMeta,
    pub profile: Option<&'a Arc<Profiler>>,
}

struct SlotState {
    /// The version the windows belong to, and a number that changes with it (what waiting
    /// predictions remember instead of the names).
    model: Option<String>,
    version: Option<String>,
    epoch: u64,
    profiler: Option<Arc<Profiler>>,
    drift: Option<Windowed<Counts>>,
    quality: Windowed<QualityCounts>,
}

impl SlotState {
    /// Starts over when `meta` is another version than the one counted so far.
    fn follow(&mut self, version: Version<'_>, config: &MonitorConfig, now_ms: i64) {
        let meta = version.meta;
        if self.version.as_deref() == Some(&meta.version)
            && self.model.as_deref() == Some(&meta.model)
        {
            return;
        }
        self.model = Some(meta.model.clone());
        self.version = Some(meta.version.clone());
        self.epoch += 1;
        self.profiler = version.profile.cloned();
        self.drift = self
            .profiler
            .as_ref()
            .map(|p| Windowed::new(Counts::zero(p), &config.widths, config.kept, now_ms));
        self.quality = Windowed::new(
            QualityCounts::default(),
            &config.widths,
            config.kept,
            now_ms,
        );
    }
}

impl SlotMonitor {
    /// A monitor whose first windows open at `now_ms`.
    pub fn new(config: Arc<MonitorConfig>, now_ms: i64) -> Self {
        let quality = Windowed::new(
            QualityCounts::default(),
            &config.widths,
            config.kept,
            now_ms,
        );
        Self {
            config,
            state: Mutex::new(SlotState {
                model: None,
                version: None,
                epoch: 0,
                profiler: None,
                drift: None,
                quality,
            }),
        }
    }

    /// Counts a batch `version` scored: `frame` is what the model took (the joined frame when
    /// features were looked up), `defaulted` (frame column, values) what the join defaulted.
    /// Returns the epoch of the version's windows (for its labels). `now`: the batch's time.
    pub fn observe(
        &self,
        version: Version<'_>,
        frame: &Frame,
        outputs: &[NamedTensor],
        defaulted: &[(usize, u32)],
        now: i64,
    ) -> u64 {
        let Some(profiler) = version.profile else {
            let mut state = lock(&self.state);
            state.follow(version, &self.config, now);
            return state.epoch;
        };
        // Binned before the lock: the lock only covers the additions.
        let mut bins = Vec::new();
        profiler.bin(frame, &version.meta.outputs, outputs, &mut bins);
        let defaulted: Vec<(usize, u32)> = defaulted
            .iter()
            .filter_map(|&(i, n)| {
                let name = &frame.columns.get(i)?.name;
                let c = profiler
                    .columns
                    .iter()
                    .position(|c| c.role == Role::Feature && c.name == *name)?;
                Some((c, n))
            })
            .collect();
        let rows = frame.rows();
        let mut state = lock(&self.state);
        state.follow(version, &self.config, now);
        if let Some(drift) = &mut state.drift {
            drift.update(now, |c| c.add(&bins, rows, &defaulted));
        }
        state.epoch
    }

    /// Counts a labelled prediction made in `epoch`; false when the slot serves another
    /// version now (the label is too late for these windows).
    fn label(&self, epoch: u64, actual: bool, p: Prediction, now: i64) -> bool {
        let mut state = lock(&self.state);
        if state.epoch != epoch {
            return false;
        }
        let Some(predicted) = p.label else {
            return false;
        };
        state
            .quality
            .update(now, |q| q.add(actual, predicted, p.probability));
        true
    }

    /// The since-load quality total of the version the windows count now: that version, the
    /// epoch it is counted in (a number that changes whenever the counts start over), and a
    /// copy of the counts.
    pub fn quality_total(&self) -> QualityTotal {
        let state = lock(&self.state);
        QualityTotal {
            version: state.version.clone(),
            epoch: state.epoch,
            counts: state.quality.total.value.clone(),
        }
    }

    /// The served entity's report at `now_ms` (closing the windows that ended).
    pub fn report(&self, served_entity: &str, now_ms: i64) -> EntityReport {
        self.report_with(served_entity, now_ms, &[], None).0
    }

    /// Every window of the version counted now (closing those that ended by `now_ms`), for
    /// the other replicas of a fleet; none before anything was counted.
    pub fn snapshot(&self, now_ms: i64) -> Option<MonitorSnapshot> {
        let mut state = lock(&self.state);
        let (model, version) = (state.model.clone()?, state.version.clone()?);
        if let Some(drift) = &mut state.drift {
            drift.rotate(now_ms);
        }
        state.quality.rotate(now_ms);
        Some(MonitorSnapshot {
            model,
            version,
            drift: state.drift.as_ref().map(Windowed::snapshot),
            quality: state.quality.snapshot(),
        })
    }

    /// [`SlotMonitor::report`] over this replica's counts and those of `others` (other
    /// replicas' snapshots) of the same model version: every window is the sum of theirs.
    /// Also answers how many of `others` were added (another version's, or another baseline's,
    /// are not). A monitor that has counted nothing yet takes `serving` (the version its
    /// served entity serves) as its own, so that a replica without traffic still reports the
    /// others'.
    pub fn report_with(
        &self,
        served_entity: &str,
        now_ms: i64,
        others: &[&MonitorSnapshot],
        serving: Option<Version<'_>>,
    ) -> (EntityReport, usize) {
        // The windows are copied under the lock and added up outside it (requests count
        // meanwhile).
        let (head, mut drift, mut quality) = {
            let mut guard = lock(&self.state);
            let state = &mut *guard;
            if let (None, Some(v), false) = (&state.model, serving, others.is_empty()) {
                state.follow(v, &self.config, now_ms);
            }
            if let Some(drift) = &mut state.drift {
                drift.rotate(now_ms);
            }
            state.quality.rotate(now_ms);
            let head = ReportHead {
                model: state.model.clone(),
                version: state.version.clone(),
                profiler: state.profiler.clone(),
            };
            if others.is_empty() {
                let report = entity_report(
                    served_entity,
                    &head,
                    state.drift.as_ref(),
                    &state.quality,
                    &self.config,
                );
                return (report, 0);
            }
            (head, state.drift.clone(), state.quality.clone())
        };
        let same_version = |o: &&&MonitorSnapshot| {
            head.model.as_deref() == Some(o.model.as_str())
                && head.version.as_deref() == Some(o.version.as_str())
        };
        let mut added = 0;
        for other in others.iter().filter(same_version) {
            let mut d = drift.clone();
            let mut q = quality.clone();
            let fits = match (&mut d, &other.drift) {
                (Some(d), Some(theirs)) => d.absorb(theirs),
                (None, None) => true,
                _ => false,
            };
            if fits && q.absorb(&other.quality) {
                (drift, quality) = (d, q);
                added += 1;
            }
        }
        let report = entity_report(served_entity, &head, drift.as_ref(), &quality, &self.config);
        (report, added)
    }
}

/// What a report says of the version it covers.
struct ReportHead {
    model: Option<String>,
    version: Option<String>,
    profiler: Option<Arc<Profiler>>,
}

/// A version's windows as one replica counted them, for the others of its fleet.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MonitorSnapshot {
    pub model: String,
    pub version: String,
    pub drift: Option<WindowsSnapshot<Counts>>,
    pub quality: WindowsSnapshot<QualityCounts>,
}

/// The report of windows already rotated.
fn entity_report(
    served_entity: &str,
    state: &ReportHead,
    drift: Option<&Windowed<Counts>>,
    quality_windows: &Windowed<QualityCounts>,
    config: &MonitorConfig,
) -> EntityReport {
    let mut windows = Vec::new();
    let mut open_windows = Vec::new();
    if let (Some(drift), Some(profiler)) = (drift, &state.profiler) {
        for s in &drift.series {
            open_windows.push(OpenWindow {
                window: s.name.clone(),
                start: iso(s.current.start_ms),
                end: iso(s.current.end_ms.unwrap_or_default()),
                count: s.current.updates,
            });
            let (last, before) = s.last_two();
            if let Some(last) = last {
                windows.push(window_report(&s.name, last, before, profiler, config));
            }
        }
        windows.push(window_report("total", &drift.total, None, profiler, config));
    }
    let mut quality = Vec::new();
    let figures = |name: &str, w: &Window<QualityCounts>| QualityReport {
        window: name.to_owned(),
        start: iso(w.start_ms),
        end: w.end_ms.map(iso),
        figures: w.value.figures(),
    };
    for s in &quality_windows.series {
        if let Some(last) = s.last_two().0 {
            quality.push(figures(&s.name, last));
        }
        quality.push(figures(&format!("{}_open", s.name), &s.current));
    }
    quality.push(figures("total", &quality_windows.total));
    let status = windows.iter().filter_map(|w| w.status).max();
    EntityReport {
        served_entity: served_entity.to_owned(),
        model: state.model.clone(),
        version: state.version.clone(),
        baseline: state.profiler.is_some(),
        status,
        drift: windows.iter().any(|w| w.drift),
        windows,
        open_windows,
        quality,
        replicas: None,
    }
}

fn window_report(
    name: &str,
    w: &Window<Counts>,
    previous: Option<&Window<Counts>>,
    profiler: &Profiler,
    config: &MonitorConfig,
) -> WindowReport {
    let columns: Vec<_> = profiler
        .columns
        .iter()
        .zip(&w.value.columns)
        .enumerate()
        .map(|(i, (column, counts))| {
            let before = previous.and_then(|p| p.value.columns.get(i));
            column_report(column, counts, before, config.min_count, &config.thresholds)
        })
        .collect();
    let status = columns.iter().filter_map(|c| c.status).max();
    WindowReport {
        window: name.to_owned(),
        start: iso(w.start_ms),
        end: w.end_ms.map(iso),
        drift: status == Some(super::report::Status::Drift),
        status,
        columns,
    }
}

/// Milliseconds since the Unix epoch, as monitoring stores them.
pub fn now_ms() -> i64 {
    crate::clock::now_ms() as i64
}

/// A row's predicted class (binary classifiers: class 1 is positive) and the positive class's
/// probability.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prediction {
    pub label: Option<bool>,
    pub probability: Option<f64>,
}

/// The predictions of a binary classifier's batch; none for other models.
pub fn binary_predictions(
    mapping: &OutputMapping,
    outputs: &[NamedTensor],
    rows: usize,
) -> Option<Vec<Prediction>> {
    let OutputMapping::Classifier {
        label,
        probabilities,
        binary: true,
        ..
    } = mapping
    else {
        return None;
    };
    let labels = &outputs.get(*label)?.tensor;
    let probs = &outputs.get(*probabilities)?.tensor;
    let width = probs.row_width();
    let probability = |r: usize| -> Option<f64> {
        let i = r * width + 1;
        match &probs.data {
            TensorData::F32(v) if width == 2 => v.get(i).map(|&p| f64::from(p)),
            TensorData::F64(v) if width == 2 => v.get(i).copied(),
            _ => None,
        }
    };
    let class = |r: usize| -> Option<bool> {
        match &labels.data {
            TensorData::I64(v) => v.get(r).map(|&c| c == 1),
            TensorData::I32(v) => v.get(r).map(|&c| c == 1),
            TensorData::Str(v) => v.get(r).map(|c| c == "1" || c.eq_ignore_ascii_case("true")),
            TensorData::Bool(v) => v.get(r).copied(),
            _ => None,
        }
    };
    Some(
        (0..rows)
            .map(|r| Prediction {
                label: class(r),
                probability: probability(r),
            })
            .collect(),
    )
}

/// The rows one served entity scored for a request, waiting for labels.
pub struct Scorer {
    pub monitor: Arc<SlotMonitor>,
    /// The epoch of the version that scored the rows.
    pub epoch: u64,
    /// The request rows it scored, in its batch's order; none: all of them.
    pub request_rows: Option<Vec<usize>>,
    pub predictions: Vec<Prediction>,
}

impl Scorer {
    fn prediction(&self, request_row: usize) -> Option<Prediction> {
        match &self.request_rows {
            None => self.predictions.get(request_row).copied(),
            Some(rows) => rows
                .iter()
                .position(|&r| r == request_row)
                .and_then(|i| self.predictions.get(i).copied()),
        }
    }
}

struct PendingRequest {
    /// The request's columns, for labels by key; held only when a row has an event time (a
    /// label by key matches on it, so without one none can).
    frame: Option<Arc<Frame>>,
    /// Each row's event time (the feature spec's request timestamp), for labels by key.
    event_ms: Vec<Option<i64>>,
    scorers: Vec<Scorer>,
    labelled: Vec<bool>,
    /// What it holds, as [`request_bytes`] counts it (its scorers included).
    bytes: usize,
}

/// Why scored rows left the queue before their label came (the `reason` of
/// `modelgate_labels_pending_dropped_rows_total`): waited `monitoring.labels.wait_seconds`, or
/// pushed out (or never held) by `max_pending_rows` or `max_pending_bytes`.
pub use crate::metrics::labels::PendingDrop as Dropped;

/// Bytes of a `by_time` key and its list, beside the entries the requests count.
const TIME_KEY_BYTES: usize = std::mem::size_of::<(i64, VecDeque<(Arc<str>, usize)>)>();

/// Bytes a scorer holds: itself, its predictions and its map of rows to the request's.
fn scorer_bytes(s: &Scorer) -> usize {
    use std::mem::size_of;
    size_of::<Scorer>()
        + s.request_rows
            .as_ref()
            .map_or(0, |r| r.len() * size_of::<usize>())
        + s.predictions.len() * size_of::<Prediction>()
}

/// Bytes a waiting request holds: its frame when held (counted whole, even while the inference
/// log holds the same frame), predictions, per-row state, its id and its entries in the queue's maps.
fn request_bytes(id: &str, r: &PendingRequest) -> usize {
    use std::mem::size_of;
    let entries = size_of::<(Arc<str>, PendingRequest)>() + size_of::<(i64, Arc<str>)>();
    // The id's text behind its Arc's two counts.
    let id = id.len() + 2 * size_of::<usize>();
    let rows = r.labelled.len() * size_of::<bool>()
        + r.event_ms.len() * size_of::<Option<i64>>()
        + r.event_ms.iter().flatten().count() * size_of::<(Arc<str>, usize)>();
    let frame = r.frame.as_ref().map_or(0, |f| f.held_bytes());
    entries + id + rows + frame + r.scorers.iter().map(scorer_bytes).sum::<usize>()
}

#[derive(Default)]
struct Pending {
    /// Keyed by ids callers may choose (`x-request-id`): hashes seeded per process. Split
    /// over many tables, so that no insert stalls the lock to rehash all of them.
    requests: ShardedMap<Arc<str>, PendingRequest>,
    /// Request ids by expiry, oldest first.
    order: VecDeque<(i64, Arc<str>)>,
    /// (request id, row) by event time, oldest first (requests leave in the order they came,
    /// so a leaving request's rows are at the front). Hashed with ahash keyed per process, as
    /// the ids are (SipHash showed in the label wait's profile), and split as they are.
    by_time: ShardedMap<i64, VecDeque<(Arc<str>, usize)>>,
    rows: usize,
    /// The requests' bytes ([`request_bytes`]); [`Pending::bytes`] adds `by_time`'s keys.
    request_bytes: usize,
    /// Rows that left before their label came, by [`Dropped`] reason, since the start.
    dropped: [u64; Dropped::ALL.len()],
    /// The bounds of the last request held (shadow predictions added later keep to them).
    settings: Option<LabelSettings>,
}

impl Pending {
    fn bytes(&self) -> usize {
        self.request_bytes + self.by_time.len() * TIME_KEY_BYTES
    }

    /// Drops the oldest request, counting its rows still without a label under `reason`;
    /// false when none waits.
    fn drop_oldest(&mut self, reason: Dropped) -> bool {
        let Some((_, id)) = self.order.pop_front() else {
            return false;
        };
        if let Some(request) = self.remove(&id) {
            let unlabelled = request.labelled.iter().filter(|l| !**l).count();
            self.dropped[reason as usize] += unlabelled as u64;
        }
        true
    }

    fn remove(&mut self, id: &str) -> Option<PendingRequest> {
        let request = self.requests.remove(id)?;
        self.rows -= request.labelled.len();
        self.request_bytes -= request.bytes;
        for (row, t) in request.event_ms.iter().enumerate() {
            let Some(t) = t else { continue };
            if let Some(list) = self.by_time.get_mut(t) {
                let leaving = |(i, r): &(Arc<str>, usize)| &**i == id && *r == row;
                if list.front().is_some_and(leaving) {
                    list.pop_front();
                } else {
                    list.retain(|e| !leaving(e));
                }
                if list.is_empty() {
                    self.by_time.remove(t);
                }
            }
        }
        Some(request)
    }

    /// Drops the expired requests, then the oldest while the rows or bytes are over their
    /// bounds.
    fn expire(&mut self, now_ms: i64) {
        let Some(settings) = self.settings.clone() else {
            return;
        };
        loop {
            let reason = if self
                .order
                .front()
                .is_some_and(|(expires, _)| *expires <= now_ms)
            {
                Dropped::Expired
            } else if self.rows > settings.max_pending_rows {
                Dropped::MaxPendingRows
            } else if self.bytes() > settings.max_pending_bytes {
                Dropped::MaxPendingBytes
            } else {
                return;
            };
            if !self.drop_oldest(reason) {
                return;
            }
        }
    }
}

/// What the pending-labels queue holds now and has dropped since the start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PendingFigures {
    pub rows: usize,
    pub bytes: usize,
    /// Rows that left before their label came, by [`Dropped`] (in [`Dropped::ALL`]'s order).
    pub dropped: [u64; Dropped::ALL.len()],
}

/// How the labels of one call fared.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct LabelOutcomes {
    /// Labels that met their predictions (each counted once however many served entities
    /// scored the row).
    pub joined: u64,
    /// No waiting prediction matched (unknown id, expired, or never scored here).
    pub unmatched: u64,
    /// The row was labelled before; the first label counts.
    pub duplicate: u64,
    /// Not a 0/1 (or boolean) label.
    pub invalid: u64,
    /// In a fleet: no prediction here matched, so the label went to the other replicas (one
    /// of which may hold its prediction). Shown only when some did.
    #[serde(skip_serializing_if = "is_zero")]
    pub forwarded: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// An endpoint's scored rows waiting for labels, bounded in time, rows and bytes; the oldest
/// leave first, counted by reason.
#[derive(Default)]
pub struct PendingLabels {
    inner: Mutex<Pending>,
}

impl PendingLabels {
    /// Holds a scored request's rows for labels. `timestamp_column` names the rows' event time
    /// (labels by key match on it). A request over a bound on its own is not held (counted as
    /// dropped).
    pub fn expect(
        &self,
        settings: &LabelSettings,
        id: Arc<str>,
        frame: Arc<Frame>,
        timestamp_column: Option<&str>,
        scorers: Vec<Scorer>,
        now: i64,
    ) {
        let rows = frame.rows();
        if scorers.is_empty() || rows == 0 {
            return;
        }
        let event_ms = timestamp_column
            .and_then(|c| frame.column(c))
            .map(event_times)
            .unwrap_or_default();
        let timed = event_ms.iter().any(Option::is_some);
        let mut request = PendingRequest {
            frame: timed.then_some(frame),
            event_ms,
            scorers,
            labelled: vec![false; rows],
            bytes: 0,
        };
        // Counted before the lock: the lock only covers the bookkeeping.
        request.bytes = request_bytes(&id, &request);
        let too_big = if rows > settings.max_pending_rows {
            Some(Dropped::MaxPendingRows)
        } else if request.bytes > settings.max_pending_bytes {
            Some(Dropped::MaxPendingBytes)
        } else {
            None
        };
        let mut p = lock(&self.inner);
        p.settings = Some(settings.clone());
        if let Some(reason) = too_big {
            p.dropped[reason as usize] += rows as u64;
            return;
        }
        let p = &mut *p;
        // A caller may choose its request's id (`x-request-id`): one already waiting keeps
        // its place (O(1), and no caller can push out another's rows by reusing its id). One
        // lookup for the check and the insert.
        let Some(waiting) = p.requests.vacant(id.clone()) else {
            p.dropped[Dropped::DuplicateId as usize] += rows as u64;
            return;
        };
        for (row, t) in request.event_ms.iter().enumerate() {
            if let Some(t) = t {
                p.by_time
                    .get_or_insert_with(*t, VecDeque::new)
                    .push_back((id.clone(), row));
            }
        }
        p.rows += rows;
        p.request_bytes += request.bytes;
        p.order
            .push_back((now + settings.wait_seconds as i64 * 1000, id));
        waiting.insert(request);
        p.expire(now);
    }

    /// Adds a shadow's predictions to a request already waiting.
    pub fn add_scorer(&self, id: &str, scorer: Scorer, now: i64) {
        let bytes = scorer_bytes(&scorer);
        let mut p = lock(&self.inner);
        let Some(r) = p.requests.get_mut(id) else {
            return;
        };
        r.scorers.push(scorer);
        r.bytes += bytes;
        p.request_bytes += bytes;
        p.expire(now);
    }

    pub fn rows(&self) -> usize {
        lock(&self.inner).rows
    }

    /// Bytes held now ([`request_bytes`] of each request, and the event-time index's keys).
    pub fn bytes(&self) -> usize {
        lock(&self.inner).bytes()
    }

    /// Rows and bytes held now, and rows dropped since the start.
    pub fn figures(&self) -> PendingFigures {
        let p = lock(&self.inner);
        PendingFigures {
            rows: p.rows,
            bytes: p.bytes(),
            dropped: p.dropped,
        }
    }

    /// Joins labels to their waiting predictions and counts them in each scorer's quality.
    /// `now`: when the labels came (expiry and the quality windows go by it).
    pub fn join(
        &self,
        settings: &LabelSettings,
        labels: &[LabelRecord],
        now: i64,
    ) -> LabelOutcomes {
        self.join_noting_unmatched(settings, labels, now, &mut Vec::new())
    }

    /// [`PendingLabels::join`], noting the place in `labels` of each unmatched label.
    pub fn join_noting_unmatched(
        &self,
        settings: &LabelSettings,
        labels: &[LabelRecord],
        now: i64,
        unmatched: &mut Vec<usize>,
    ) -> LabelOutcomes {
        let mut out = LabelOutcomes::default();
        let mut p = lock(&self.inner);
        p.settings = Some(settings.clone());
        p.expire(now);
        for (at, label) in labels.iter().enumerate() {
            let actual = match label.label {
                Some(1.0) => true,
                Some(0.0) => false,
                _ => {
                    out.invalid += 1;
                    continue;
                }
            };
            let targets: Vec<(Arc<str>, usize)> = match &label.request_id {
                Some(id) => match p.requests.get_key_value(id.as_str()) {
                    Some((id, r)) => match label.row_index {
                        Some(row) if row >= 0 && (row as usize) < r.labelled.len() => {
                            vec![(id.clone(), row as usize)]
                        }
                        Some(_) => Vec::new(),
                        None => (0..r.labelled.len()).map(|row| (id.clone(), row)).collect(),
                    },
                    None => Vec::new(),
                },
                None => by_key(&p, label),
            };
            if targets.is_empty() {
                out.unmatched += 1;
                unmatched.push(at);
                continue;
            }
            let mut fresh = false;
            for (id, row) in targets {
                let Some(r) = p.requests.get_mut(&id) else {
                    continue;
                };
                if std::mem::replace(&mut r.labelled[row], true) {
                    continue;
                }
                fresh = true;
                for s in &r.scorers {
                    if let Some(pred) = s.prediction(row) {
                        s.monitor.label(s.epoch, actual, pred, now);
                    }
                }
            }
            if fresh {
                out.joined += 1;
            } else {
                out.duplicate += 1;
            }
        }
        out
    }
}

/// Waiting rows whose event time and key columns match a label by key.
fn by_key(p: &Pending, label: &LabelRecord) -> Vec<(Arc<str>, usize)> {
    let Some(t) = label.event_time_us.map(|us| us.div_euclid(1000)) else {
        return Vec::new();
    };
    if label.keys.is_empty() {
        return Vec::new();
    }
    let Some(candidates) = p.by_time.get(&t) else {
        return Vec::new();
    };
    candidates
        .iter()
        .filter(|(id, row)| {
            p.requests.get(id).is_some_and(|r| {
                label.keys.iter().all(|(name, value)| {
                    r.frame
                        .as_ref()
                        .and_then(|f| f.column(name))
                        .is_some_and(|c| cell_equals(&c.data, *row, value))
                })
            })
        })
        .cloned()
        .collect()
}

fn cell_equals(data: &ColumnData, row: usize, v: &Value) -> bool {
    match (data, v) {
        (ColumnData::I64(c), Value::Int(x)) => c.get(row) == Some(x),
        (ColumnData::I64(c), Value::Float(x)) => c.get(row).is_some_and(|&a| a as f64 == *x),
        (ColumnData::F64(c), Value::Int(x)) => c.get(row).is_some_and(|&a| a == *x as f64),
        (ColumnData::F64(c), Value::Float(x)) => c.get(row) == Some(x),
        (ColumnData::F32(c), Value::Int(x)) => {
            c.get(row).is_some_and(|&a| f64::from(a) == *x as f64)
        }
        (ColumnData::F32(c), Value::Float(x)) => c.get(row).is_some_and(|&a| f64::from(a) == *x),
        (ColumnData::Bool(c), Value::Bool(x)) => c.get(row) == Some(x),
        (ColumnData::Str(c), Value::String(x)) => c.get(row) == Some(x),
        // Keys sent as numbers may arrive as text in CSV requests, and the other way round.
        (ColumnData::Str(c), Value::Int(x)) => {
            c.get(row).is_some_and(|s| s.trim() == x.to_string())
        }
        (ColumnData::I64(c), Value::String(x)) => {
            c.get(row).is_some_and(|a| a.to_string() == x.trim())
        }
        _ => false,
    }
}

/// Each row's event time, read as the feature join reads its request timestamp.
fn event_times(col: &crate::data::frame::Column) -> Vec<Option<i64>> {
    match &col.data {
        ColumnData::Str(v) => v
            .iter()
            .map(|s| crate::data::time::text_timestamp(s, col.from_text))
            .collect(),
        ColumnData::I64(v) => v.iter().map(|&t| Some(t)).collect(),
        _ => Vec::new(),
    }
}

/// What one request's job needs to feed monitoring.
#[derive(Clone)]
pub struct RequestMonitor {
    pub config: Arc<MonitorConfig>,
    pub pending: Arc<PendingLabels>,
    pub request_id: Arc<str>,
    /// The request's time (ms since the Unix epoch): the windows its rows count in.
    pub now_ms: i64,
}

impl RequestMonitor {
    /// Counts a batch `version` scored in `monitor` (its served entity's); for a binary
    /// classifier, its predictions to wait for labels. `model_frame` is what the model took.
    pub fn observe(
        &self,
        monitor: Arc<SlotMonitor>,
        version: Version<'_>,
        model_frame: &Frame,
        defaulted: &[(usize, u32)],
        outputs: &[NamedTensor],
        request_rows: Option<Vec<usize>>,
    ) -> Option<Scorer> {
        let epoch = monitor.observe(version, model_frame, outputs, defaulted, self.now_ms);
        let predictions = binary_predictions(&version.meta.outputs, outputs, model_frame.rows())?;
        Some(Scorer {
            monitor,
            epoch,
            request_rows,
            predictions,
        })
    }

    /// Holds the request's scored rows for their labels.
    pub fn expect(&self, frame: Arc<Frame>, meta: &VersionMeta, scorers: Vec<Scorer>) {
        let timestamp = meta.request_timestamp.as_deref();
        self.pending.expect(
            &self.config.labels,
            self.request_id.clone(),
            frame,
            timestamp,
            scorers,
            self.now_ms,
        );
    }

    /// A shadow's scorer joins the request's that waits for labels.
    pub fn add_shadow(&self, scorer: Scorer) {
        self.pending
            .add_scorer(&self.request_id, scorer, self.now_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::frame::Column;
    use crate::data::time::parse_timestamp;

    fn config() -> Arc<MonitorConfig> {
        MonitorConfig::new(&MonitoringSettings {
            windows: vec!["1h".into()],
            ..Default::default()
        })
        .unwrap()
    }

    fn request(customers: &[i64], at: &str) -> Arc<Frame> {
        Arc::new(Frame {
            columns: vec![
                Column::scalar("CustomerID", ColumnData::I64(customers.to_vec())),
                Column::scalar(
                    "TransactionTimestamp",
                    ColumnData::Str(vec![at.to_owned(); customers.len()]),
                ),
            ],
        })
    }

    fn scorer(monitor: &Arc<SlotMonitor>, predicted: &[bool]) -> Scorer {
        Scorer {
            monitor: monitor.clone(),
            epoch: 0,
            request_rows: None,
            predictions: predicted
                .iter()
                .map(|&p| Prediction {
                    label: Some(p),
                    probability: Some(if p { 0.9 } else { 0.1 }),
                })
                .collect(),
        }
    }

    fn label(id: Option<&str>, keys: &[(&str, i64)], at_ms: Option<i64>, y: f64) -> LabelRecord {
        LabelRecord {
            received_us: 0,
            request_id: id.map(str::to_owned),
            row_index: None,
            event_time_us: at_ms.map(|t| t * 1000),
            keys: keys
                .iter()
                .map(|(k, v)| (k.to_string(), Value::Int(*v)))
                .collect(),
            label: Some(y),
            label_text: y.to_string(),
        }
    }

    /// Time is passed in, not read inside: the same label joins within the wait and finds
    /// nothing after it, by the times given alone.
    #[test]
    fn the_wait_for_labels_goes_by_the_times_passed_in() {
        let t0 = 1_790_000_000_000;
        let monitor = Arc::new(SlotMonitor::new(config(), t0));
        let settings = LabelSettings {
            wait_seconds: 60,
            ..Default::default()
        };
        let at = "2026-11-22T10:19:05.123Z";
        for (joined_at, joined, unmatched) in [(t0 + 59_000, 1, 0), (t0 + 61_000, 0, 1)] {
            let pending = PendingLabels::default();
            let scorers = vec![scorer(&monitor, &[true])];
            pending.expect(&settings, "a".into(), request(&[1], at), None, scorers, t0);
            let out = pending.join(&settings, &[label(Some("a"), &[], None, 1.0)], joined_at);
            assert_eq!(
                (out.joined, out.unmatched),
                (joined, unmatched),
                "at {joined_at}"
            );
        }
    }

    #[test]
    fn labels_join_by_id_and_by_key_once_and_the_oldest_rows_leave_first() {
        let config = config();
        let monitor = Arc::new(SlotMonitor::new(config.clone(), now_ms()));
        let pending = PendingLabels::default();
        let settings = LabelSettings {
            wait_seconds: 60,
            max_pending_rows: 4,
            ..Default::default()
        };
        let at = "2026-11-22T10:19:05.123Z";
        let at_ms = parse_timestamp(at).unwrap();
        for (id, customers) in [("a", [1, 2]), ("b", [3, 4]), ("c", [5, 6])] {
            pending.expect(
                &settings,
                id.into(),
                request(&customers, at),
                Some("TransactionTimestamp"),
                vec![scorer(&monitor, &[true, false])],
                now_ms(),
            );
        }
        // Six rows came, four are held: request a left.
        assert_eq!(pending.rows(), 4);
        let out = pending.join(
            &settings,
            &[
                label(Some("a"), &[], None, 1.0),
                label(Some("b"), &[], None, 1.0),
                label(None, &[("CustomerID", 6)], Some(at_ms), 0.0),
                label(None, &[("CustomerID", 6)], Some(at_ms), 0.0),
                label(None, &[("CustomerID", 6)], Some(at_ms + 1), 0.0),
                label(Some("c"), &[], None, 0.5),
            ],
            now_ms(),
        );
        assert_eq!(
            out,
            LabelOutcomes {
                joined: 2,
                unmatched: 2,
                duplicate: 1,
                invalid: 1,
                forwarded: 0
            }
        );
        // b's two rows (predicted 1 and 0, both labelled 1) and c's second (predicted 0, 0).
        let report = monitor.report("m", now_ms());
        let total = report.quality.last().unwrap();
        assert_eq!(total.window, "total");
        let f = &total.figures;
        assert_eq!((f.tp, f.fp, f.fn_, f.tn), (1, 0, 1, 1));
    }

    #[test]
    fn many_rows_at_one_event_time_leave_in_order() {
        let monitor = Arc::new(SlotMonitor::new(config(), now_ms()));
        let pending = PendingLabels::default();
        let settings = LabelSettings {
            wait_seconds: 60,
            max_pending_rows: 100,
            ..Default::default()
        };
        let at = "2026-11-22T10:19:05Z";
        for i in 0..1000 {
            pending.expect(
                &settings,
                format!("r{i}").into(),
                request(&[i], at),
                Some("TransactionTimestamp"),
                vec![scorer(&monitor, &[true])],
                now_ms(),
            );
        }
        assert_eq!(pending.rows(), 100);
        let p = lock(&pending.inner);
        let t = parse_timestamp(at).unwrap();
        let at_t = p.by_time.get(&t).expect("rows at t");
        assert_eq!(at_t.len(), 100);
        assert_eq!(&*at_t.front().unwrap().0, "r900");
    }

    /// `rows` rows of a customer id, an event time and a `width`-byte string each; each call's
    /// rows at a second of their own (so each request adds one time key, as the bytes count).
    fn wide(rows: usize, width: usize) -> Arc<Frame> {
        static SECOND: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);
        let at =
            1_795_000_000_000 + 1000 * SECOND.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Arc::new(Frame {
            columns: vec![
                Column::scalar("CustomerID", ColumnData::I64((0..rows as i64).collect())),
                Column::scalar("TransactionTimestamp", ColumnData::I64(vec![at; rows])),
                Column::scalar("note", ColumnData::Str(vec!["x".repeat(width); rows])),
            ],
        })
    }

    /// Holds `frame`'s rows (event times in `TransactionTimestamp`, when it has the column).
    fn hold(pending: &PendingLabels, settings: &LabelSettings, id: &str, frame: Arc<Frame>) {
        let monitor = Arc::new(SlotMonitor::new(config(), now_ms()));
        let predicted = vec![true; frame.rows()];
        pending.expect(
            settings,
            id.into(),
            frame,
            Some("TransactionTimestamp"),
            vec![scorer(&monitor, &predicted)],
            now_ms(),
        );
    }

    fn dropped(pending: &PendingLabels, reason: Dropped) -> u64 {
        pending.figures().dropped[reason as usize]
    }

    #[test]
    fn strings_count_at_their_length() {
        let pending = PendingLabels::default();
        let settings = LabelSettings::default();
        hold(&pending, &settings, "a", wide(10, 1));
        let small = pending.bytes();
        hold(&pending, &settings, "b", wide(10, 1001));
        // Same rows and id length: the second holds 10 x 1000 more string bytes.
        assert_eq!(pending.bytes() - small, small + 10_000);
        // Everything a request holds is counted: at least its values, names and predictions.
        let values = 10 * 8 + 10 * (std::mem::size_of::<String>() + 1) + "CustomerIDnote".len();
        let predictions = 10 * std::mem::size_of::<Prediction>();
        assert!(small > values + predictions + 10, "{small}");
        // A shadow's predictions add theirs.
        let monitor = Arc::new(SlotMonitor::new(config(), now_ms()));
        let before = pending.bytes();
        pending.add_scorer("a", scorer(&monitor, &[false; 10]), now_ms());
        assert_eq!(
            pending.bytes() - before,
            scorer_bytes(&scorer(&monitor, &[false; 10]))
        );
        assert_eq!(pending.figures().rows, 20);
    }

    /// Rows without an event time can only be labelled by request id: their request's columns
    /// are not held (nor counted), and such labels still join.
    #[test]
    fn a_request_without_event_times_holds_no_columns() {
        let settings = LabelSettings::default();
        let timed = PendingLabels::default();
        hold(&timed, &settings, "a", wide(10, 1000));
        let untimed = PendingLabels::default();
        let mut frame = (*wide(10, 1000)).clone();
        frame.columns.remove(1);
        hold(&untimed, &settings, "a", Arc::new(frame));
        assert!(
            timed.bytes() > untimed.bytes() + 10 * 1000,
            "{} vs {}",
            timed.bytes(),
            untimed.bytes()
        );
        assert!(lock(&untimed.inner)
            .requests
            .get("a")
            .unwrap()
            .frame
            .is_none());
        let out = untimed.join(&settings, &[label(Some("a"), &[], None, 1.0)], now_ms());
        assert_eq!((out.joined, out.unmatched), (1, 0));
    }

    /// A caller's own `x-request-id` used again: the request already waiting keeps its place
    /// and its rows; the newcomer's are counted as `duplicate_id`.
    #[test]
    fn an_id_already_waiting_keeps_its_place() {
        let pending = PendingLabels::default();
        let settings = LabelSettings::default();
        hold(&pending, &settings, "mine", wide(3, 1));
        let bytes = pending.bytes();
        hold(&pending, &settings, "mine", wide(5, 1));
        assert_eq!((pending.figures().rows, pending.bytes()), (3, bytes));
        assert_eq!(dropped(&pending, Dropped::DuplicateId), 5);
    }

    #[test]
    fn the_oldest_leave_when_the_bytes_are_over_and_are_counted() {
        let probe = PendingLabels::default();
        hold(&probe, &LabelSettings::default(), "r0", wide(5, 10_000));
        let one = probe.bytes();
        assert!(one > 50_000, "{one}");
        let pending = PendingLabels::default();
        let settings = LabelSettings {
            max_pending_bytes: 3 * one + one / 2,
            ..Default::default()
        };
        for i in 0..5 {
            hold(&pending, &settings, &format!("r{i}"), wide(5, 10_000));
            assert!(pending.bytes() <= settings.max_pending_bytes);
        }
        let f = pending.figures();
        assert_eq!((f.rows, f.bytes), (15, 3 * one));
        assert_eq!(dropped(&pending, Dropped::MaxPendingBytes), 10);
        assert_eq!(dropped(&pending, Dropped::MaxPendingRows), 0);
        // r0 and r1 left; r2..r4 wait.
        let out = pending.join(
            &settings,
            &[
                label(Some("r0"), &[], None, 1.0),
                label(Some("r1"), &[], None, 1.0),
                label(Some("r4"), &[], None, 1.0),
            ],
            now_ms(),
        );
        assert_eq!((out.joined, out.unmatched), (1, 2));

        // A request over the bound on its own is never held, and is counted.
        hold(&pending, &settings, "huge", wide(5, one));
        assert_eq!(pending.figures().rows, 15);
        assert_eq!(dropped(&pending, Dropped::MaxPendingBytes), 15);

        // Expired rows are counted as such, without the ones that met their label.
        lock(&pending.inner).expire(now_ms() + 3_601_000);
        let f = pending.figures();
        assert_eq!((f.rows, f.bytes), (0, 0));
        assert_eq!(dropped(&pending, Dropped::Expired), 10);
    }

    #[test]
    fn rows_over_the_row_bound_are_counted_by_that_reason() {
        let pending = PendingLabels::default();
        let settings = LabelSettings {
            max_pending_rows: 8,
            ..Default::default()
        };
        for i in 0..3 {
            hold(&pending, &settings, &format!("r{i}"), wide(4, 1));
        }
        hold(&pending, &settings, "big", wide(9, 1));
        assert_eq!(pending.figures().rows, 8);
        assert_eq!(dropped(&pending, Dropped::MaxPendingRows), 4 + 9);
        assert_eq!(dropped(&pending, Dropped::MaxPendingBytes), 0);
    }
}

#[cfg(test)]
mod event_time_tests {
    use super::*;
    use crate::data::frame::Column;

    #[test]
    fn csv_cells_in_epoch_milliseconds_are_event_times_as_in_the_join() {
        let mut col = Column::scalar(
            "t",
            ColumnData::Str(vec![
                "1795345200000".into(),
                "2026-11-22T10:19:05Z".into(),
                "x".into(),
            ]),
        );
        col.from_text = true;
        let t = event_times(&col);
        assert_eq!(t[0], Some(1_795_345_200_000));
        assert!(t[1].is_some());
        assert_eq!(t[2], None);
        // JSON text is ISO 8601 only, as the join reads it.
        col.from_text = false;
        assert_eq!(event_times(&col)[0], None);
    }
}
