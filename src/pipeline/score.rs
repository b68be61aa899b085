//! The job for one request, on a pool worker or inline on its HTTP worker: decode, route, join and infer, encode, with
//! the side channels fed after inference. A version whose features live in a remote store
//! splits it in two: [`route`] (decode, route, start the lookups), the lookups awaited off the
//! pool, then [`finish`]. Public so the benchmarks measure what the server runs.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use crate::endpoint::resolve::{Assignment, RouteHints};
use crate::endpoint::{Generation, ServedEntity};
use crate::engine::outputs::check_rows;
use crate::engine::pool::InferencePool;
use crate::engine::NamedTensor;
use crate::error::{RequestError, RequestResult};
use crate::features::join::{Joined, Looked};
use crate::inference_log::ScoredRows;
use crate::protocol::frame::Frame;
use crate::protocol::limits::DecodeLimits;

use super::admission::Deadline;
use super::batch;
use super::decode::decode;
use super::encode::Reply;
use super::marks::{Marks, Stage};
use super::request::{Failure, Format, Scored, ServedBy, Timings};
use super::sinks::Sinks;
use super::split::{self, Parts};

/// Everything one request's job needs, loaded once when it starts.
pub struct Job {
    pub generation: Arc<Generation>,
    /// A served entity named by the request's path; no routing.
    pub pinned: Option<usize>,
    /// The routing-key header's value.
    pub header_key: Option<Vec<u8>>,
    pub format: Format,
    /// Bounds on what the request may hold (`max_rows` included).
    pub limits: DecodeLimits,
    pub deadline: Option<Deadline>,
    /// Where shadow copies run.
    pub pool: Arc<InferencePool>,
    /// Where a shadow copy waits for its features from a remote store (none: on its worker).
    pub runtime: Option<tokio::runtime::Handle>,
    pub sinks: Sinks,
    /// Its inference times feed the versions' costs ([`super::lane::measures`]).
    pub measured: bool,
    /// Its stages are noted for its spans ([`super::marks`]).
    pub traced: bool,
}

impl Job {
    /// Refused once the caller's deadline has passed; `when` names the stage.
    pub(super) fn check_deadline(&self, when: &str) -> Result<(), RequestError> {
        match &self.deadline {
            Some(d) => d.check(Instant::now(), when),
            None => Ok(()),
        }
    }

    /// The column the routing key travels in, which the models do not take.
    pub(super) fn ignored_column(&self) -> Option<&str> {
        self.generation.settings.routing.key_column.as_deref()
    }
}

/// A request decoded and routed: who scores which rows.
pub struct Routed {
    pub(super) times: Times,
    pub(super) frame: Arc<Frame>,
    pub(super) reply: Reply,
    pub(super) client_request_id: Option<String>,
    pub(super) units: Units,
}

/// Who scores a request's rows.
pub(super) enum Units {
    /// One arm, all rows.
    Whole {
        arm: usize,
        entity: Arc<ServedEntity>,
    },
    /// A batch whose rows route to several arms.
    Split(Parts),
}

/// Features looked up before the job that infers, by unit (whole request, or split part).
pub type Lookups = Vec<Option<Looked>>;

/// Decodes, validates, routes, joins and infers, and encodes one request on pool worker
/// `worker`, in one job (features from a remote store are waited for here).
/// `submitted`: when it was queued (the queue stage's time).
pub fn score(job: &Job, worker: usize, body: &[u8], submitted: Instant) -> Result<Scored, Failure> {
    let routed = route(job, body, submitted)?;
    finish(job, worker, routed, Vec::new())
}

/// The first half of a request's job: decode, validate, route, and resolve who serves.
pub fn route(job: &Job, body: &[u8], submitted: Instant) -> Result<Routed, Failure> {
    let started = Instant::now();
    job.check_deadline("before it started")?;
    let decoded = decode(&job.format, body, &job.limits, job.sinks.log.is_some())?;
    decoded.frame.validate(job.limits.max_rows)?;
    job.check_deadline("after decoding")?;
    let decoded_at = Instant::now();
    // Shared with the shadow jobs and the inference log without a copy.
    let frame = Arc::new(decoded.frame);
    let generation = &job.generation;
    let hints = RouteHints {
        pinned: job.pinned,
        header_key: job.header_key.as_deref(),
        whole_batch: matches!(job.format, Format::V2 { .. }),
    };
    let units = match generation.assign(hints, &frame) {
        Assignment::Whole(arm) => {
            // A pin answers from its own served entity or not at all; a route falls back.
            let (arm, entity) = if job.pinned.is_some() {
                (arm, generation.ready_entity(arm)?)
            } else {
                generation.routed_entity(arm)?
            };
            let slot = &generation.slots[arm];
            decoded
                .reply
                .check_outputs(&entity)
                .map_err(Failure::by(&slot.name))?;
            Units::Whole { arm, entity }
        }
        Assignment::Rows(arm_of_row) => Units::Split(split::route(job, &frame, &arm_of_row)?),
    };
    let mut marks = Marks::new(job.traced);
    if let Some(routed_at) = marks.now() {
        marks.add(Stage::Queue, submitted, started, None);
        marks.add(Stage::Decode, started, decoded_at, None);
        marks.add(Stage::Route, decoded_at, routed_at, None);
    }
    Ok(Routed {
        times: Times {
            started,
            queued: (started - submitted).as_secs_f64(),
            decoded: decoded_at,
            inferring_from: decoded_at,
            marks,
            batched: None,
        },
        frame,
        reply: decoded.reply,
        client_request_id: decoded.client_request_id,
        units,
    })
}

impl Routed {
    /// Starts the lookups in remote stores of this request's units: `None` when no unit's
    /// features live in one; else each unit's lookup, already answered or still waiting.
    pub fn start_lookups(&self, job: &Job) -> Result<Option<Started>, Failure> {
        let generation = &job.generation;
        let ignore = job.ignored_column();
        let start = |arm: usize, entity: &ServedEntity, frame: &Frame| -> Option<Lookup> {
            let features = entity.features.as_ref()?;
            features.waits_for_store().then(|| Lookup {
                served: generation.slots[arm].name.clone(),
                store: features.store_kind(),
                state: LookupState::Pending(Box::pin(features.lookup(frame, ignore))),
            })
        };
        let mut lookups: Vec<Option<Lookup>> = match &self.units {
            Units::Whole { arm, entity } => vec![start(*arm, entity, &self.frame)],
            Units::Split(parts) => parts
                .units()
                .map(|(arm, entity, frame)| start(arm, entity, frame))
                .collect(),
        };
        if lookups.iter().all(Option::is_none) {
            return Ok(None);
        }
        // A lookup with nothing to ask (every feature sent by the caller) is answered now:
        // such a request takes no second job.
        let mut waiting = false;
        for lookup in lookups.iter_mut().flatten() {
            waiting |= !lookup.answered_now()?;
        }
        Ok(Some(if waiting {
            Started::Waiting(lookups)
        } else {
            let store = lookups.iter().flatten().next().map(|l| l.store);
            Started::Ready(
                lookups.into_iter().map(|l| l.map(Lookup::done)).collect(),
                store,
            )
        }))
    }

    /// The second job starts: its queue wait is the request's too, and the join and inference
    /// are timed from now (the lookup's wait is `modelgate_feature_lookup_duration_seconds`).
    pub fn resume(&mut self, submitted: Instant) {
        let now = Instant::now();
        self.times.queued += (now - submitted).as_secs_f64();
        self.times.inferring_from = now;
        self.times.marks.add(Stage::Queue, submitted, now, None);
    }

    /// Notes the wait for the online store (`store`: its kind) of a traced request.
    pub fn looked_up(&mut self, store: Option<&Arc<str>>, started: Instant) {
        if let Some(now) = self.times.marks.now() {
            self.times.marks.add(Stage::Lookup, started, now, store);
        }
    }
}

/// A request's lookups, started.
pub enum Started {
    /// Every unit's features are here (or it needs none), from this store.
    Ready(Lookups, Option<&'static str>),
    /// Some unit waits for a remote store.
    Waiting(Vec<Option<Lookup>>),
}

/// One unit's lookup in a remote store, named by the served entity it is for.
pub struct Lookup {
    served: Arc<str>,
    /// The online store's kind (`redis`), for the lookup's span.
    pub store: &'static str,
    state: LookupState,
}

enum LookupState {
    Pending(Pin<Box<dyn Future<Output = RequestResult<Looked>> + Send>>),
    Done(Looked),
}

impl Lookup {
    /// Takes the answer if the store has given it already; a failure names the served entity.
    fn answered_now(&mut self) -> Result<bool, Failure> {
        use futures_util::FutureExt;
        let LookupState::Pending(pending) = &mut self.state else {
            return Ok(true);
        };
        match pending.as_mut().now_or_never() {
            None => Ok(false),
            Some(answer) => {
                self.state = LookupState::Done(answer.map_err(Failure::by(&self.served))?);
                Ok(true)
            }
        }
    }

    fn done(self) -> Looked {
        match self.state {
            LookupState::Done(looked) => looked,
            LookupState::Pending(_) => unreachable!("only answered lookups are taken"),
        }
    }

    /// Waits for the store's answer (bounded by its own deadline).
    async fn answer(self) -> Result<Looked, Failure> {
        match self.state {
            LookupState::Done(looked) => Ok(looked),
            LookupState::Pending(pending) => pending.await.map_err(Failure::by(&self.served)),
        }
    }
}

/// Awaits the lookups: each unit's features, in order.
pub async fn await_lookups(lookups: Vec<Option<Lookup>>) -> Result<Lookups, Failure> {
    let mut looked = Vec::with_capacity(lookups.len());
    for lookup in lookups {
        looked.push(match lookup {
            Some(l) => Some(l.answer().await?),
            None => None,
        });
    }
    Ok(looked)
}

/// The second half of a request's job: join (with `looked`, the features awaited before it,
/// by unit; or looked up here), infer, feed the side channels, encode.
pub fn finish(
    job: &Job,
    worker: usize,
    routed: Routed,
    looked: Lookups,
) -> Result<Scored, Failure> {
    let Routed {
        mut times,
        frame,
        reply,
        client_request_id,
        units,
    } = routed;
    let mut answer = Answering::for_rows(frame.rows(), std::mem::take(&mut times.marks));
    let mut looked = looked.into_iter();
    let (served, inferred) = match units {
        Units::Whole { arm, entity } => {
            let looked = looked.next().flatten();
            score_whole(
                job,
                worker,
                &frame,
                arm,
                entity,
                looked,
                &reply,
                &mut answer,
            )?
        }
        Units::Split(parts) => split::finish(job, worker, &frame, parts, looked, &mut answer)?,
    };
    conclude(
        job,
        frame,
        answer,
        served,
        times,
        inferred,
        client_request_id,
    )
}

/// Where a request's result goes, once it is scored: on the worker that scored it, which is
/// another request's when its inference was batched.
pub trait Deliver: Send + 'static {
    /// Nobody waits for the result any more.
    fn gone(&self) -> bool;
    fn deliver(self, result: Result<Scored, Failure>);
}

/// As [`finish`], handing the result to `deliver`; a request to a served entity with batching
/// on joins that entity's batch ([`crate::engine::batch`]) and is delivered when it has run.
pub fn finish_then(
    job: &Arc<Job>,
    worker: usize,
    routed: Routed,
    looked: Lookups,
    deliver: impl Deliver,
) {
    match batch::joins(job, &routed) {
        Some(batching) => batch::submit(job, worker, routed, looked, batching, deliver),
        None => deliver.deliver(finish(job, worker, routed, looked)),
    }
}

/// When a request's stages began, for its timings.
pub(super) struct Times {
    pub started: Instant,
    /// A traced request's stages so far; they move to its [`Answering`] when it infers.
    pub marks: Marks,
    /// A traced request in a batch: when it was handed to the batch.
    pub batched: Option<Instant>,
    /// Seconds waiting for a worker (both jobs' waits when there are two).
    pub queued: f64,
    pub decoded: Instant,
    /// When the join and inference began: after decoding, or when the second job started.
    pub inferring_from: Instant,
}

/// A request's answer, once every unit is scored: checked against the response bound, timed.
pub(super) fn conclude(
    job: &Job,
    frame: Arc<Frame>,
    mut answer: Answering,
    served: ServedBy,
    times: Times,
    inferred: Instant,
    client_request_id: Option<String>,
) -> Result<Scored, Failure> {
    job.limits.response(answer.buf.len())?;
    let encoded = Instant::now();
    answer.marks.add(Stage::Encode, inferred, encoded, None);
    let timings = Timings {
        queued: times.queued,
        decode: (times.decoded - times.started).as_secs_f64(),
        inference: (inferred - times.inferring_from).as_secs_f64(),
        encode: (encoded - inferred).as_secs_f64(),
        rows: frame.rows(),
    };
    for s in &mut answer.logged {
        s.stages = Some(timings);
    }
    Ok(Scored {
        shadow: (!job.generation.router.shadows.is_empty()).then_some(frame),
        body: answer.buf,
        json_len: answer.json_len,
        timings,
        served,
        logged: answer.logged,
        client_request_id,
        marks: answer.marks.into_vec(),
    })
}

/// What a request's scoring writes: the answer's bytes, and the rows the log keeps.
pub(super) struct Answering {
    pub buf: Vec<u8>,
    /// The length of the answer's JSON when raw tensors follow it.
    pub json_len: Option<usize>,
    pub logged: Vec<ScoredRows>,
    /// A traced request's stages.
    pub marks: Marks,
}

impl Answering {
    /// The answer of `rows` rows, with the stages noted before it.
    pub fn for_rows(rows: usize, marks: Marks) -> Self {
        Self {
            buf: Vec::with_capacity(64 + rows * 48),
            json_len: None,
            logged: Vec::new(),
            marks,
        }
    }
}

/// Joins (from `looked` when the features were awaited before this job) and infers `frame`
/// with `entity` (served as `served`); `keep`: the joined columns are wanted afterwards.
#[allow(clippy::too_many_arguments)]
pub(super) fn infer(
    job: &Job,
    worker: usize,
    entity: &ServedEntity,
    served: &Arc<str>,
    frame: &Frame,
    looked: Option<Looked>,
    keep: bool,
    marks: &mut Marks,
) -> RequestResult<(Vec<NamedTensor>, Option<Joined>)> {
    let started = Instant::now();
    let (inputs, joined) = entity.bind_request(frame, looked, job.ignored_column(), keep)?;
    let bound = marks.now();
    let outputs = entity.run_bound(worker, inputs)?;
    if job.measured {
        entity.cost.record(started.elapsed());
    }
    if let Some(bound) = bound {
        marks.add(Stage::Join, started, bound, Some(served));
        marks.add(Stage::Infer, bound, Instant::now(), Some(served));
    }
    Ok((outputs, joined))
}

/// One arm answers the whole request. Returns who served it and when inference ended.
#[allow(clippy::too_many_arguments)]
fn score_whole(
    job: &Job,
    worker: usize,
    frame: &Arc<Frame>,
    arm: usize,
    entity: Arc<ServedEntity>,
    looked: Option<Looked>,
    reply: &Reply,
    answer: &mut Answering,
) -> Result<(ServedBy, Instant), Failure> {
    let slot = &job.generation.slots[arm];
    let keep = reply.echoes_features() || job.sinks.keeps_inputs();
    let (outputs, joined) = infer(
        job,
        worker,
        &entity,
        &slot.name,
        frame,
        looked,
        keep,
        &mut answer.marks,
    )
    .map_err(Failure::by(&slot.name))?;
    answer_whole(job, frame, arm, entity, outputs, joined, reply, answer)
}

/// The whole request's answer from its outputs: checked, fed to the side channels, encoded.
#[allow(clippy::too_many_arguments)]
pub(super) fn answer_whole(
    job: &Job,
    frame: &Arc<Frame>,
    arm: usize,
    entity: Arc<ServedEntity>,
    outputs: Vec<NamedTensor>,
    joined: Option<Joined>,
    reply: &Reply,
    answer: &mut Answering,
) -> Result<(ServedBy, Instant), Failure> {
    let generation = &job.generation;
    let slot = &generation.slots[arm];
    let failed = Failure::by(&slot.name);
    let rows = frame.rows();
    // Encoders index outputs by row: a model whose outputs are not one row per input row is
    // refused here, not by a panic.
    check_rows(&outputs, rows).map_err(|m| failed(RequestError::Internal(m)))?;
    job.check_deadline("after inference").map_err(failed)?;
    let inferred = Instant::now();
    let sinks = &job.sinks;
    if let Some(scorer) =
        sinks.observe(slot, &entity, frame, joined.as_ref(), &outputs, None, false)
    {
        sinks.expect(frame.clone(), &entity, vec![scorer]);
    }
    answer.json_len = reply
        .write(
            &generation.settings.name,
            &entity,
            &outputs,
            rows,
            joined.as_ref(),
            &mut answer.buf,
        )
        .map_err(failed)?;
    answer
        .logged
        .extend(sinks.keep(&slot.name, &entity, frame, joined, outputs));
    Ok((
        ServedBy::One(slot.name.clone(), entity.meta.clone()),
        inferred,
    ))
}
