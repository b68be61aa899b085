//! Loads a served entity off the request path: fetch the version, load it in an engine, compile
//! the input binding and output mapping, check the input example against the expected output,
//! and warm up. A version that fails any step is never published.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use serde_json::Value;

use super::activity::{Activity, Step};
use super::journal::{Journal, Level};
use super::ServedEntity;
use crate::clock::now_ms;
use crate::engine::binding::InputBinding;
use crate::engine::outputs::{check_rows, OutputMapping};
use crate::engine::pool::InferencePool;
use crate::engine::{EngineChoice, EngineError, Engines};
use crate::features::join::JoinPlan;
use crate::features::store::OnlineStore;
use crate::protocol::mlflow;
use crate::registry::{Download, Registry, RegistryError};
use crate::settings::{InferenceSettings, ServedEntitySettings};

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// `context` names the model, version and directory.
    #[error("{context}: {source}")]
    Engine {
        context: String,
        source: Box<EngineError>,
    },
    #[error("{context} does not fit its signature: {message}")]
    Signature { context: String, message: String },
    #[error("{context} failed validation: {message}")]
    Validation { context: String, message: String },
    #[error("{0}")]
    Misfit(String),
    #[error("{context}: its feature spec ({file}) does not compile: {message}")]
    Features {
        context: String,
        file: &'static str,
        message: String,
    },
}

pub struct LoadContext<'a> {
    pub registry: &'a dyn Registry,
    pub engines: &'a Engines,
    pub pool: &'a Arc<InferencePool>,
    pub inference: &'a InferenceSettings,
    pub default_engine: EngineChoice,
    /// The version being replaced, which the new one must fit (same request contract).
    pub replaces: Option<&'a ServedEntity>,
    /// Where looked-up features come from, for versions with a feature spec.
    pub store: Option<&'a Arc<dyn OnlineStore>>,
    pub metrics: Option<&'a crate::metrics::Metrics>,
    /// Where each step of the load is told (the served entity's `build-logs`).
    pub journal: Option<&'a Journal>,
    /// Where the step under way is shown (`/readyz`, the status page).
    pub activity: Option<&'a Activity>,
}

/// What a load took, for logs and metrics.
pub struct Loaded {
    pub entity: Arc<ServedEntity>,
    pub seconds: f64,
}

/// Loads `version` (already resolved from `cfg.entity_version`) of the configured model.
pub fn load_served_entity(
    ctx: &LoadContext<'_>,
    cfg: &ServedEntitySettings,
    version: &str,
) -> Result<Loaded, LoadError> {
    let started = Instant::now();
    let step = |text: String| {
        if let Some(j) = ctx.journal {
            j.load_step(now_ms(), Level::Info, &text);
        }
    };
    // Each step is shown (`/readyz`, the status page) and logged: a large model's load takes
    // minutes, and its log should say where it is.
    let enter = |step: Step| {
        if let Some(a) = ctx.activity {
            a.enter(step, Some(version), now_ms());
        }
        tracing::info!(
            model = %cfg.entity_name,
            version,
            "{}",
            step.doing()
        );
    };
    let no_download = Download::default();
    let download = ctx.activity.map(|a| &a.download).unwrap_or(&no_download);
    enter(Step::Downloading);
    let version = version.to_owned();
    let mv = ctx.registry.fetch(&cfg.entity_name, &version, download)?;
    enter(Step::Loading);
    let context = format!("model '{}' version {version}", mv.model);
    step(format!(
        "fetched {context} ({} bytes of ONNX) into {}",
        mv.onnx.len(),
        mv.source.display()
    ));
    let (loaded, zipped) = ctx
        .engines
        .load_model(cfg.engine.unwrap_or(ctx.default_engine), &mv.onnx)
        .map_err(|source| LoadError::Engine {
            context: format!("{context} ({})", mv.source.display()),
            source: Box::new(source),
        })?;
    step(format!(
        "loaded on {}: inputs {}; outputs {}",
        loaded.engine(),
        names(loaded.inputs().iter().map(|i| i.name.as_str())),
        names(loaded.outputs().iter().map(|o| o.name.as_str())),
    ));
    let columns = mv.signature.as_ref().and_then(|s| s.input_names());
    let binding =
        InputBinding::compile(loaded.inputs(), columns.as_deref()).map_err(|message| {
            LoadError::Signature {
                context: context.clone(),
                message,
            }
        })?;
    let outputs = OutputMapping::compile_with(loaded.outputs(), zipped.as_ref());
    if let Some(baseline) = &mv.baseline {
        let inputs: Vec<String> = columns
            .clone()
            .unwrap_or_else(|| loaded.inputs().iter().map(|i| i.name.clone()).collect());
        if let Some((name, _)) = baseline.features.iter().find(|(n, _)| !inputs.contains(n)) {
            return Err(LoadError::Validation {
                context,
                message: format!(
                    "{}: feature '{name}' is not an input of the model (inputs: {})",
                    crate::drift::baseline::BASELINE_FILE,
                    inputs.join(", ")
                ),
            });
        }
    }
    let features = match &mv.feature_spec {
        None => None,
        Some(spec) => {
            let features_error = |message: String| LoadError::Features {
                context: context.clone(),
                file: crate::registry::file::FEATURE_SPEC_FILE,
                message,
            };
            let store = ctx.store.ok_or_else(|| {
                features_error(
                    "it looks features up, and no online store is configured (features.tables)"
                        .into(),
                )
            })?;
            Some(JoinPlan::compile(spec, store.clone(), ctx.metrics).map_err(features_error)?)
        }
    };
    let meta = crate::version::VersionMeta {
        model: mv.model.clone(),
        version: version.clone(),
        outputs,
        binding,
        request_timestamp: features
            .as_ref()
            .and_then(|f| f.request_timestamp())
            .map(str::to_owned),
    };
    let entity = Arc::new(ServedEntity {
        meta: Arc::new(meta),
        engine: loaded.engine(),
        batch: crate::engine::batch::Batcher::new(loaded.clone()),
        loaded,
        signature: mv.signature.clone(),
        input_example: mv.input_example.clone(),
        live: super::LiveGuard::new(),
        features,
        profile: mv
            .baseline
            .as_ref()
            .map(|b| Arc::new(crate::drift::profile::Profiler::compile(b))),
        loaded_at: SystemTime::now(),
        cost: Default::default(),
    });
    let fail = |message: String| LoadError::Validation {
        context: context.clone(),
        message,
    };
    if cfg.batching.is_some() {
        if let Some(why) = entity.batch.unbatchable() {
            return Err(fail(format!(
                "batching is on for it (served_entities[].batching) and {why}"
            )));
        }
    }
    // Before validation and warm-up: a version that does not fit is refused at once.
    if let Some(current) = ctx.replaces {
        fits(current, &entity).map_err(LoadError::Misfit)?;
    }
    if let Some(example) = &mv.input_example {
        enter(Step::Validating);
        let request = mlflow::decode_json(example)
            .map_err(|e| fail(format!("its input example does not decode: {e}")))?;
        let rows = request.frame.rows();
        let frame = Arc::new(request.frame);
        let run_once = |entity: &Arc<ServedEntity>| {
            let (entity, frame) = (entity.clone(), frame.clone());
            ctx.pool
                .run_blocking(move |worker| entity.infer(worker, &frame))
                .map_err(|e| fail(e.to_string()))?
                .map_err(|e| fail(format!("its input example does not score: {e}")))
        };
        let outputs = run_once(&entity)?;
        check_rows(&outputs, rows).map_err(fail)?;
        if let Some(expected) = &mv.expected_output {
            let mut buf = Vec::new();
            entity
                .meta
                .outputs
                .write_predictions(&outputs, rows, &mut buf);
            let got: Value = serde_json::from_slice(&buf).map_err(|e| fail(e.to_string()))?;
            let want = expected.get("predictions").unwrap_or(expected);
            if let Err(path) = compare(
                &got,
                want,
                ctx.inference.validation_tolerance,
                "predictions",
            ) {
                return Err(fail(format!(
                    "its prediction for the input example differs from expected_output.json at {path} (tolerance {})",
                    ctx.inference.validation_tolerance
                )));
            }
        }
        // Warm every session (ort keeps one per pool worker and per inline caller), timing each
        // run: the version's cost, which decides whether its small jobs may run inline.
        let (warm_entity, runs) = (entity.clone(), ctx.inference.warmup_runs);
        let warm = move |worker: usize| {
            (0..runs).try_for_each(|_| {
                let started = std::time::Instant::now();
                warm_entity
                    .infer(worker, &frame)
                    .map(|_| warm_entity.cost.record(started.elapsed()))
                    .map_err(|e| e.to_string())
            })
        };
        enter(Step::Warming);
        let warm = Arc::new(warm);
        let on_workers = warm.clone();
        ctx.pool
            .run_on_each_worker(move |worker| on_workers(worker))
            .map_err(|e| fail(format!("its input example failed during warm-up: {e}")))?;
        // And the sessions of inline jobs, here: HTTP workers run no warm-up.
        for index in ctx.pool.inline_indices() {
            warm(index)
                .map_err(|e| fail(format!("its input example failed during warm-up: {e}")))?;
        }
        step(format!(
            "validated with its input example ({}), warmed up ({runs} runs per session)",
            if mv.expected_output.is_some() {
                "predictions equal expected_output.json"
            } else {
                "it scores; no expected_output.json to compare"
            }
        ));
    } else {
        let skipped = "no input example (input_example.json): validation and warm-up skipped, so the first requests pay for the cold start";
        tracing::warn!("{context}: {skipped}");
        step(skipped.into());
    }
    Ok(Loaded {
        entity,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// `[a, b]` for a log line.
fn names<'a>(names: impl Iterator<Item = &'a str>) -> String {
    format!("[{}]", names.collect::<Vec<_>>().join(", "))
}

/// Compares JSON values, numbers within `tol`; on mismatch returns the path of the first one.
fn compare(got: &Value, want: &Value, tol: f64, path: &str) -> Result<(), String> {
    match (got, want) {
        (Value::Number(a), Value::Number(b)) => {
            let (a, b) = (
                a.as_f64().unwrap_or(f64::NAN),
                b.as_f64().unwrap_or(f64::NAN),
            );
            if (a - b).abs() <= tol {
                Ok(())
            } else {
                Err(format!("{path} (got {a}, expected {b})"))
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => a
            .iter()
            .zip(b)
            .enumerate()
            .try_for_each(|(i, (x, y))| compare(x, y, tol, &format!("{path}[{i}]"))),
        (Value::Object(a), Value::Object(b)) if a.len() == b.len() => {
            b.iter().try_for_each(|(k, y)| match a.get(k) {
                Some(x) => compare(x, y, tol, &format!("{path}.{k}")),
                None => Err(format!("{path}.{k} (missing)")),
            })
        }
        (a, b) if a == b => Ok(()),
        (a, b) => Err(format!("{path} (got {a}, expected {b})")),
    }
}

/// A new version fits when callers can keep sending what they send: the same request columns,
/// and where both versions have an MLflow signature, the same column types.
fn fits(current: &ServedEntity, new: &ServedEntity) -> Result<(), String> {
    let have: BTreeSet<&String> = current.meta.binding.expected_columns().iter().collect();
    let want: BTreeSet<&String> = new.meta.binding.expected_columns().iter().collect();
    if have != want {
        let missing: Vec<&&String> = want.difference(&have).collect();
        let dropped: Vec<&&String> = have.difference(&want).collect();
        return Err(format!(
            "version {} does not fit the endpoint: it takes columns {missing:?} that requests do not carry and drops {dropped:?}",
            new.meta.version
        ));
    }
    if let (Some(a), Some(b)) = (&current.signature, &new.signature) {
        for entry in &b.inputs {
            let before = a.inputs.iter().find(|e| e.name == entry.name);
            if let Some(before) = before.filter(|before| before.kind != entry.kind) {
                return Err(format!(
                    "version {} does not fit the endpoint: column '{}' changes type from {} to {}",
                    new.meta.version,
                    entry.name.as_deref().unwrap_or("?"),
                    before.kind,
                    entry.kind
                ));
            }
        }
    }
    Ok(())
}
