//! ONNX Runtime through `ort`, with the library loaded at run time (`load-dynamic`).
//!
//! `Session::run` takes `&mut self`, so a model holds one session per session index (each pool
//! worker, each HTTP worker running inline jobs); a thread only ever locks its own, so the
//! locks are not contended.

use std::borrow::Cow;
use std::path::Path;
use std::sync::{Mutex, OnceLock};

use ort::environment::Environment;
use ort::session::{Session, SessionInputValue};
use ort::value::{DynValue, TensorElementType, ValueType};

use super::{
    ElemType, EngineError, EngineKind, LoadedModel, NamedTensor, Tensor, TensorData, TensorSpec,
};

/// ONNX Runtime allows one environment per process.
static ENVIRONMENT: OnceLock<Environment> = OnceLock::new();

#[derive(Clone)]
pub struct OrtEngine {
    env: Environment,
}

fn load_err(message: impl std::fmt::Display) -> EngineError {
    EngineError::Load {
        engine: EngineKind::Ort,
        message: message.to_string(),
    }
}

impl OrtEngine {
    /// Loads `libonnxruntime` from `path`; a missing or wrong library is an error, not a panic.
    pub fn init(path: &Path) -> Result<Self, EngineError> {
        if let Some(env) = ENVIRONMENT.get() {
            return Ok(Self { env: env.clone() });
        }
        if !path.is_file() {
            return Err(EngineError::OrtUnavailable(format!(
                "{} does not exist",
                path.display()
            )));
        }
        let builder = ort::init_from(path).map_err(|e| {
            EngineError::OrtUnavailable(format!("{} cannot be loaded: {e:?}", path.display()))
        })?;
        let env = builder
            .with_name("modelgate")
            .with_telemetry(false)
            .build()
            .map_err(|e| EngineError::OrtUnavailable(e.to_string()))?;
        Ok(Self {
            env: ENVIRONMENT.get_or_init(|| env).clone(),
        })
    }

    fn session(&self, onnx: &[u8]) -> ort::Result<Session> {
        Session::builder(&self.env)?
            .with_intra_threads(1)?
            .with_inter_threads(1)?
            .commit_from_memory(onnx)
    }

    pub fn load(&self, onnx: &[u8], session_count: usize) -> Result<OrtModel, EngineError> {
        let first = self.session(onnx).map_err(load_err)?;
        let inputs = first
            .inputs()
            .iter()
            .map(|o| spec(o.name(), o.dtype(), "input"))
            .collect::<Result<Vec<_>, _>>()?;
        let outputs = first
            .outputs()
            .iter()
            .map(|o| spec(o.name(), o.dtype(), "output"))
            .collect::<Result<Vec<_>, _>>()?;
        let mut sessions = vec![Mutex::new(Slot::new(first))];
        for _ in 1..session_count.max(1) {
            sessions.push(Mutex::new(Slot::new(self.session(onnx).map_err(load_err)?)));
        }
        Ok(OrtModel {
            sessions,
            inputs,
            outputs,
        })
    }
}

fn spec(name: &str, ty: &ValueType, what: &str) -> Result<TensorSpec, EngineError> {
    let ValueType::Tensor { ty, shape, .. } = ty else {
        return Err(EngineError::UnsupportedIo(format!(
            "{what} '{name}' is {ty}, not a tensor (a ZipMap graph output is cut at load; others: export classifiers with zipmap=False)"
        )));
    };
    let elem = match ty {
        TensorElementType::Float32 => ElemType::F32,
        TensorElementType::Float64 => ElemType::F64,
        TensorElementType::Int64 => ElemType::I64,
        TensorElementType::Int32 => ElemType::I32,
        TensorElementType::Bool => ElemType::Bool,
        TensorElementType::String => ElemType::Str,
        other => {
            return Err(EngineError::UnsupportedIo(format!(
                "{what} '{name}' has unsupported element type {other:?}"
            )))
        }
    };
    Ok(TensorSpec {
        name: name.to_owned(),
        elem,
        shape: shape.iter().map(|d| usize::try_from(*d).ok()).collect(),
    })
}

pub struct OrtModel {
    sessions: Vec<Mutex<Slot>>,
    inputs: Vec<TensorSpec>,
    outputs: Vec<TensorSpec>,
}

fn run_err(e: impl std::fmt::Display) -> EngineError {
    EngineError::Run(e.to_string())
}

fn to_value(t: Tensor) -> ort::Result<DynValue> {
    let shape = t.shape;
    Ok(match t.data {
        TensorData::F32(v) => ort::value::Tensor::from_array((shape, v))?.into_dyn(),
        TensorData::F64(v) => ort::value::Tensor::from_array((shape, v))?.into_dyn(),
        TensorData::I64(v) => ort::value::Tensor::from_array((shape, v))?.into_dyn(),
        TensorData::I32(v) => ort::value::Tensor::from_array((shape, v))?.into_dyn(),
        TensorData::Bool(v) => ort::value::Tensor::from_array((shape, v))?.into_dyn(),
        TensorData::Str(v) => {
            ort::value::Tensor::from_string_array((shape, v.as_slice()))?.into_dyn()
        }
    })
}

fn from_value(v: &DynValue, spec: &TensorSpec) -> Result<Tensor, EngineError> {
    macro_rules! extract {
        ($t:ty, $variant:ident) => {{
            let (shape, data) = v.try_extract_tensor::<$t>().map_err(run_err)?;
            (
                shape.iter().map(|d| *d as usize).collect(),
                TensorData::$variant(data.to_vec()),
            )
        }};
    }
    let (shape, data): (Vec<usize>, TensorData) = match spec.elem {
        ElemType::F32 => extract!(f32, F32),
        ElemType::F64 => extract!(f64, F64),
        ElemType::I64 => extract!(i64, I64),
        ElemType::I32 => extract!(i32, I32),
        ElemType::Bool => extract!(bool, Bool),
        ElemType::Str => {
            let (shape, data) = v.try_extract_strings().map_err(run_err)?;
            (
                shape.iter().map(|d| *d as usize).collect(),
                TensorData::Str(data),
            )
        }
    };
    Ok(Tensor { shape, data })
}

/// One session and the input tensors of its last run.
struct Slot {
    session: Session,
    inputs: HeldInputs,
}

impl Slot {
    fn new(session: Session) -> Self {
        Self {
            session,
            inputs: HeldInputs::default(),
        }
    }
}

/// Inputs of at most this many elements stay with the session between runs (so a session
/// holds at most this many per input, 32 KiB of 8-byte values, while idle).
const HELD_ELEMENTS_MAX: usize = 4096;

/// The input tensors of a session's last run. The next run writes its values into them when an
/// input keeps its type and shape (string tensors are made each time): making an ONNX Runtime
/// tensor (its value, shape and type, allocated inside the library) took about 7 % of a
/// one-row request's core.
#[derive(Default)]
struct HeldInputs(Vec<Option<Held>>);

struct Held {
    elem: ElemType,
    shape: Vec<usize>,
    value: DynValue,
}

impl HeldInputs {
    /// Makes input `i` hold `t`'s values: written into the tensor held from the last run when it
    /// has the same type and shape, else a new tensor.
    fn put(&mut self, i: usize, t: Tensor) -> ort::Result<()> {
        if self.0.len() <= i {
            self.0.resize_with(i + 1, || None);
        }
        let elem = t.data.elem();
        if let Some(held) = &mut self.0[i] {
            if held.elem == elem && held.shape == t.shape && overwrite(&mut held.value, &t.data)? {
                return Ok(());
            }
        }
        let shape = t.shape.clone();
        self.0[i] = Some(Held {
            elem,
            shape,
            value: to_value(t)?,
        });
        Ok(())
    }

    /// The values in input order (every slot up to the last `put` is filled).
    fn values(&self) -> impl Iterator<Item = &DynValue> {
        self.0.iter().map_while(|h| h.as_ref().map(|h| &h.value))
    }

    /// Lets go of tensors too large to hold between runs, and of strings.
    fn release_large(&mut self) {
        for slot in &mut self.0 {
            if slot.as_ref().is_some_and(|h| {
                h.elem == ElemType::Str || h.shape.iter().product::<usize>() > HELD_ELEMENTS_MAX
            }) {
                *slot = None;
            }
        }
    }
}

/// Writes `data` over a tensor of its type and length; false for strings (not written in
/// place) or a length that differs.
fn overwrite(value: &mut DynValue, data: &TensorData) -> ort::Result<bool> {
    fn write<T: ort::value::PrimitiveTensorElementType + Copy + std::fmt::Debug>(
        value: &mut DynValue,
        v: &[T],
    ) -> ort::Result<bool> {
        let (_, held) = value.try_extract_tensor_mut::<T>()?;
        if held.len() != v.len() {
            return Ok(false);
        }
        held.copy_from_slice(v);
        Ok(true)
    }
    match data {
        TensorData::F32(v) => write(value, v),
        TensorData::F64(v) => write(value, v),
        TensorData::I64(v) => write(value, v),
        TensorData::I32(v) => write(value, v),
        TensorData::Bool(v) => write(value, v),
        TensorData::Str(_) => Ok(false),
    }
}

impl OrtModel {
    /// Writes `inputs` into the slot's held tensors and runs the session on them.
    fn run_held(
        &self,
        session: &mut Session,
        held: &mut HeldInputs,
        inputs: Vec<Tensor>,
    ) -> Result<Vec<NamedTensor>, EngineError> {
        let given = inputs.len().min(self.inputs.len());
        for (i, t) in inputs.into_iter().take(given).enumerate() {
            held.put(i, t).map_err(run_err)?;
        }
        let feeds = self
            .inputs
            .iter()
            .zip(held.values())
            .take(given)
            .map(|(spec, value)| {
                // Borrowed: the names live as long as the model, the values as the slot.
                (
                    Cow::Borrowed(spec.name.as_str()),
                    SessionInputValue::from(value),
                )
            })
            .collect::<Vec<(Cow<'_, str>, SessionInputValue<'_>)>>();
        let outputs = session.run(feeds).map_err(run_err)?;
        self.outputs
            .iter()
            .map(|spec| {
                let v = outputs
                    .get(spec.name.as_str())
                    .ok_or_else(|| run_err(format!("output '{}' is missing", spec.name)))?;
                Ok(NamedTensor {
                    name: spec.name.clone(),
                    tensor: from_value(v, spec)?,
                })
            })
            .collect()
    }
}

impl LoadedModel for OrtModel {
    fn engine(&self) -> EngineKind {
        EngineKind::Ort
    }

    fn inputs(&self) -> &[TensorSpec] {
        &self.inputs
    }

    fn outputs(&self) -> &[TensorSpec] {
        &self.outputs
    }

    fn run(&self, worker: usize, inputs: Vec<Tensor>) -> Result<Vec<NamedTensor>, EngineError> {
        let mut slot = self.sessions[worker % self.sessions.len()]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let Slot {
            session,
            inputs: held,
        } = &mut *slot;
        let named = self.run_held(session, held, inputs);
        // On every path, a failed write or run included.
        held.release_large();
        named
    }
}
