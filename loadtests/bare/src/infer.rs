//! `--infer DIR`: the bare server with the model run once per request, so that the limit of
//! "HTTP plus inference" on a core is measured rather than added up. DIR is an MLflow model
//! folder whose inputs are named columns (as the demo's are): `model.onnx` is loaded by the
//! gateway's own engine (`modelgate::engine`: ONNX Runtime from `ORT_DYLIB_PATH`, a ZipMap
//! output cut, one session per HTTP worker), and the first row of `input_example.json`
//! (pandas `split`), repeated `--infer-rows` times (1 unless given), becomes one input tensor
//! per model input, of shape [rows] or [rows, 1] by the input's rank. Each request hands the
//! engine a copy of those tensors, as the gateway hands it the tensors it binds, and takes the
//! outputs it copies out; nothing is decoded from the request, nothing routed, and the answer
//! stays the bare server's fixed one.

use std::path::Path;
use std::sync::Arc;

use modelgate::engine::{
    ElemType, EngineChoice, Engines, LoadedModel, Tensor, TensorData, TensorSpec,
};
use serde_json::Value;

/// The model and the tensors every request runs it on.
pub struct Model {
    model: Arc<dyn LoadedModel>,
    inputs: Vec<Tensor>,
}

impl Model {
    /// Loads DIR's model with a session for each of `workers` HTTP workers, and its example
    /// row, `rows` times over, as tensors.
    pub fn open(dir: &Path, workers: usize, rows: usize) -> Result<Self, String> {
        if std::env::var_os("ORT_DYLIB_PATH").is_none() {
            return Err(
                "--infer needs ORT_DYLIB_PATH (scripts/fetch-onnxruntime.sh prints it)".into(),
            );
        }
        let engines = Engines::init(None, workers, true).map_err(|e| e.to_string())?;
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))
        };
        let (model, _) = engines
            .load_model(EngineChoice::Ort, &read("model.onnx")?)
            .map_err(|e| format!("model.onnx: {e}"))?;
        let example: Value = serde_json::from_slice(&read("input_example.json")?)
            .map_err(|e| format!("input_example.json: {e}"))?;
        let columns = example["columns"].as_array();
        let first = example["data"].get(0).and_then(Value::as_array);
        let (Some(columns), Some(first)) = (columns, first) else {
            return Err("input_example.json: not pandas split (columns, data) with a row".into());
        };
        let inputs = model
            .inputs()
            .iter()
            .map(|spec| {
                let value = columns
                    .iter()
                    .position(|c| c.as_str() == Some(spec.name.as_str()))
                    .and_then(|i| first.get(i))
                    .ok_or_else(|| {
                        format!("input '{}' is not a column of the example", spec.name)
                    })?;
                tensor(spec, value, rows)
            })
            .collect::<Result<_, String>>()?;
        Ok(Self { model, inputs })
    }

    /// Runs the model on session `worker` (one per HTTP worker); how many values came out.
    pub fn run(&self, worker: usize) -> Result<usize, String> {
        let outputs = self
            .model
            .run(worker, self.inputs.clone())
            .map_err(|e| e.to_string())?;
        Ok(outputs.iter().map(|o| o.tensor.data.len()).sum())
    }
}

/// One example value, `rows` times, as a tensor of the input's type.
fn tensor(spec: &TensorSpec, value: &Value, rows: usize) -> Result<Tensor, String> {
    let bad = || {
        format!(
            "input '{}': example value {value} is not {:?}",
            spec.name, spec.elem
        )
    };
    let data = match spec.elem {
        ElemType::Str => TensorData::Str(vec![value.as_str().ok_or_else(bad)?.to_owned(); rows]),
        ElemType::F32 => TensorData::F32(vec![value.as_f64().ok_or_else(bad)? as f32; rows]),
        ElemType::F64 => TensorData::F64(vec![value.as_f64().ok_or_else(bad)?; rows]),
        ElemType::I64 => TensorData::I64(vec![value.as_i64().ok_or_else(bad)?; rows]),
        ElemType::I32 => TensorData::I32(vec![value.as_i64().ok_or_else(bad)? as i32; rows]),
        ElemType::Bool => TensorData::Bool(vec![value.as_bool().ok_or_else(bad)?; rows]),
    };
    let mut shape = vec![1; spec.shape.len().max(1)];
    shape[0] = rows;
    Ok(Tensor { shape, data })
}
