//! `--infer DIR`: the bare server with the model run once per request, so that the limit of
//! "HTTP plus inference" on a core is measured rather than added up. DIR is an MLflow model
//! folder: `model.onnx` is loaded in ONNX Runtime (the library at `ORT_DYLIB_PATH`, one
//! intra-op and one inter-op thread, as the gateway loads it) and the first row of
//! `input_example.json` (pandas `split`) becomes the input tensors, one per model input, made
//! once per HTTP worker. Each request runs the session on them and copies the outputs out,
//! as the gateway's engine does; nothing is decoded from the request and the answer stays the
//! fixed one.

use std::borrow::Cow;
use std::path::Path;
use std::sync::Mutex;

use ort::environment::Environment;
use ort::session::{Session, SessionInputValue};
use ort::value::{DynValue, TensorElementType, ValueType};
use serde_json::Value;

/// One session and its inputs, for one HTTP worker.
pub struct Inference {
    session: Mutex<Session>,
    inputs: Vec<(String, DynValue)>,
}

/// What each worker's session is made from.
#[derive(Clone)]
pub struct Model {
    env: Environment,
    onnx: Vec<u8>,
    row: Vec<(String, Value)>,
}

impl Model {
    /// Loads ONNX Runtime from `ORT_DYLIB_PATH` and reads DIR's model and first example row.
    pub fn open(dir: &Path) -> Result<Self, String> {
        let lib = std::env::var_os("ORT_DYLIB_PATH")
            .ok_or("--infer needs ORT_DYLIB_PATH (scripts/fetch-onnxruntime.sh prints it)")?;
        let env = ort::init_from(&lib)
            .map_err(|e| format!("ONNX Runtime at {}: {e}", Path::new(&lib).display()))?
            .with_name("modelgate-bare")
            .with_telemetry(false)
            .build()
            .map_err(|e| format!("ONNX Runtime environment: {e}"))?;
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))
        };
        let onnx = read("model.onnx")?;
        let example: Value = serde_json::from_slice(&read("input_example.json")?)
            .map_err(|e| format!("input_example.json: {e}"))?;
        let columns = example["columns"].as_array();
        let first = example["data"].get(0).and_then(Value::as_array);
        let (Some(columns), Some(first)) = (columns, first) else {
            return Err("input_example.json: not pandas split (columns, data) with a row".into());
        };
        let row = columns
            .iter()
            .zip(first)
            .map(|(c, v)| {
                Ok((
                    c.as_str()
                        .ok_or("a column name is not a string")?
                        .to_owned(),
                    v.clone(),
                ))
            })
            .collect::<Result<_, String>>()?;
        Ok(Self { env, onnx, row })
    }

    /// A session with the example row as its input tensors.
    pub fn instance(&self) -> Result<Inference, String> {
        let made = || -> ort::Result<Session> {
            Session::builder(&self.env)?
                .with_intra_threads(1)?
                .with_inter_threads(1)?
                .commit_from_memory(&self.onnx)
        };
        let session = made().map_err(|e| format!("model.onnx: {e}"))?;
        let inputs = session
            .inputs()
            .iter()
            .map(|input| {
                let name = input.name();
                let value = self
                    .row
                    .iter()
                    .find(|(column, _)| column == name)
                    .map(|(_, v)| v)
                    .ok_or_else(|| format!("input '{name}' is not a column of the example"))?;
                Ok((name.to_owned(), tensor(name, input.dtype(), value)?))
            })
            .collect::<Result<_, String>>()?;
        Ok(Inference {
            session: Mutex::new(session),
            inputs,
        })
    }
}

/// One value as a tensor of the input's type, of shape [1] or [1, 1] by the input's rank.
fn tensor(name: &str, ty: &ValueType, value: &Value) -> Result<DynValue, String> {
    let ValueType::Tensor { ty, shape, .. } = ty else {
        return Err(format!("input '{name}' is not a tensor"));
    };
    let dims = vec![1usize; shape.len().max(1)];
    let bad = || format!("input '{name}': example value {value} is not {ty:?}");
    let made = match ty {
        TensorElementType::String => {
            let s = value.as_str().ok_or_else(bad)?.to_owned();
            ort::value::Tensor::from_string_array((dims, [s].as_slice())).map(|t| t.into_dyn())
        }
        TensorElementType::Float32 => {
            let v = value.as_f64().ok_or_else(bad)? as f32;
            ort::value::Tensor::from_array((dims, vec![v])).map(|t| t.into_dyn())
        }
        TensorElementType::Float64 => {
            let v = value.as_f64().ok_or_else(bad)?;
            ort::value::Tensor::from_array((dims, vec![v])).map(|t| t.into_dyn())
        }
        TensorElementType::Int64 => {
            let v = value.as_i64().ok_or_else(bad)?;
            ort::value::Tensor::from_array((dims, vec![v])).map(|t| t.into_dyn())
        }
        TensorElementType::Int32 => {
            let v = value.as_i64().ok_or_else(bad)? as i32;
            ort::value::Tensor::from_array((dims, vec![v])).map(|t| t.into_dyn())
        }
        TensorElementType::Bool => {
            let v = value.as_bool().ok_or_else(bad)?;
            ort::value::Tensor::from_array((dims, vec![v])).map(|t| t.into_dyn())
        }
        other => return Err(format!("input '{name}' has element type {other:?}")),
    };
    made.map_err(|e| format!("input '{name}': {e}"))
}

impl Inference {
    /// Runs the model on the held inputs and copies each output's values out; returns how
    /// many values came out (so the work cannot be left undone).
    pub fn run(&self) -> Result<usize, String> {
        let mut session = self.session.lock().unwrap_or_else(|e| e.into_inner());
        let feeds = self
            .inputs
            .iter()
            .map(|(name, value)| (Cow::Borrowed(name.as_str()), SessionInputValue::from(value)))
            .collect::<Vec<(Cow<'_, str>, SessionInputValue<'_>)>>();
        let outputs = session.run(feeds).map_err(|e| e.to_string())?;
        let mut values = 0;
        for (_, output) in outputs.iter() {
            if let Ok((_, v)) = output.try_extract_tensor::<f32>() {
                values += v.to_vec().len();
            } else if let Ok((_, v)) = output.try_extract_tensor::<i64>() {
                values += v.to_vec().len();
            } else if let Ok((_, v)) = output.try_extract_tensor::<f64>() {
                values += v.to_vec().len();
            }
        }
        Ok(values)
    }
}
