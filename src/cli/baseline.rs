//! `modelgate baseline`: a version's `baseline.json` from its training data. The model folder's
//! model scores the rows (the same engines, input binding and output mapping as serving), its
//! inputs and predictions are profiled as `models/train.py` profiles them (`drift::fit`), and
//! the file is written beside `MLmodel`, where the gateway reads it at load.

use std::path::{Path, PathBuf};

use crate::data::cast::convert;
use crate::data::frame::{Column, ColumnData, Frame};
use crate::data::tensor::{ElemType, TensorData};
use crate::drift::fit::{baseline_json, Samples};
use crate::drift::monitor::binary_predictions;
use crate::drift::quality::{QualityCounts, QualityFigures};
use crate::engine::binding::InputBinding;
use crate::engine::outputs::OutputMapping;
use crate::engine::{EngineChoice, Engines};
use crate::registry::folder::{FolderRegistry, FOLDER_VERSION};
use crate::registry::{Download, Registry};

/// Rows scored per engine call.
const CHUNK_ROWS: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum BaselineError {
    #[error("{path}: {message}")]
    Data { path: PathBuf, message: String },
    #[error("the model: {0}")]
    Model(String),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What to fit a baseline from.
pub struct BaselineJob<'a> {
    /// An MLflow model folder (`MLmodel` and its ONNX file).
    pub model: &'a Path,
    /// Training rows: `.csv` (a header row) or `.parquet`.
    pub data: &'a Path,
    /// Where to write; `<model>/baseline.json` when absent.
    pub out: Option<&'a Path>,
    /// The column of true labels (0/1 or true/false): the model's quality on the data is
    /// measured and kept in the file (`quality`), as live monitoring measures it.
    pub label: Option<&'a str>,
    pub engine: EngineChoice,
}

/// What was written.
pub struct Written {
    pub path: PathBuf,
    pub rows: usize,
    pub features: Vec<String>,
    pub outputs: Vec<String>,
    /// With a label column: the model's quality on the data.
    pub quality: Option<QualityFigures>,
}

/// Scores the data with the model and writes its baseline.
pub fn write_baseline(job: &BaselineJob<'_>) -> Result<Written, BaselineError> {
    let model_err = |e: String| BaselineError::Model(e);
    let data_err = |message: String| BaselineError::Data {
        path: job.data.to_owned(),
        message,
    };
    let name = job
        .model
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into());
    let version = FolderRegistry::new(job.model)
        .fetch(&name, FOLDER_VERSION, &Download::default())
        .map_err(|e| model_err(e.to_string()))?;
    let engines = Engines::init(None, 1, false).map_err(|e| model_err(e.to_string()))?;
    let (loaded, zipped) = engines
        .load_model(job.engine, &version.onnx)
        .map_err(|e| model_err(e.to_string()))?;
    let columns = version.signature.as_ref().and_then(|s| s.input_names());
    let binding = InputBinding::compile(loaded.inputs(), columns.as_deref()).map_err(model_err)?;
    let mapping = OutputMapping::compile_with(loaded.outputs(), zipped.as_ref());

    let wanted: Vec<&str> = binding
        .expected_columns()
        .iter()
        .map(String::as_str)
        .chain(job.label)
        .collect();
    let frame = read_frame(job.data, &wanted).map_err(data_err)?;
    let truth = match job.label {
        Some(name) => Some(labels(&frame, name).map_err(data_err)?),
        None => None,
    };
    // The model's inputs, in its order; other columns (ids, the label) are not profiled.
    let inputs = binding
        .expected_columns()
        .iter()
        .map(|name| {
            frame.column(name).cloned().ok_or_else(|| {
                data_err(format!(
                    "it has no column '{name}', an input of the model (its columns: {})",
                    frame
                        .columns
                        .iter()
                        .map(|c| c.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })
        })
        .collect::<Result<Vec<Column>, _>>()?;
    let frame = Frame { columns: inputs };
    let rows = frame.rows();
    if rows == 0 {
        return Err(data_err("it has no rows".into()));
    }
    let features = frame
        .columns
        .iter()
        .map(|c| {
            let typed = match binding.column_type(&c.name) {
                Some(elem) => convert(c, profiled_as(elem)).map_err(|e| data_err(e.to_string()))?,
                None => tensor_data(&c.data),
            };
            Ok((c.name.clone(), samples(typed)))
        })
        .collect::<Result<Vec<_>, BaselineError>>()?;

    let mut probability = Vec::new();
    let mut per_output: Vec<(String, Vec<TensorData>)> = Vec::new();
    let mut quality = QualityCounts::default();
    for start in (0..rows).step_by(CHUNK_ROWS) {
        let chunk: Vec<usize> = (start..(start + CHUNK_ROWS).min(rows)).collect();
        let part = frame.take_rows(&chunk);
        let tensors = binding
            .bind(&part)
            .map_err(|e| data_err(format!("rows {start}..: {e}")))?;
        let outputs = loaded
            .run(0, tensors)
            .map_err(|e| model_err(format!("rows {start}..: {e}")))?;
        mapping.for_each_probability(&outputs, chunk.len(), |p| probability.push(p));
        if let Some(truth) = &truth {
            let predictions =
                binary_predictions(&mapping, &outputs, chunk.len()).ok_or_else(|| {
                    model_err(format!(
                        "--label measures a binary classifier's quality, and this model is a {}",
                        mapping.kind()
                    ))
                })?;
            for (p, actual) in predictions.iter().zip(&truth[start..]) {
                if let Some(predicted) = p.label {
                    quality.add(*actual, predicted, p.probability);
                }
            }
        }
        for o in outputs.iter().filter(|o| o.tensor.row_width() == 1) {
            match per_output.iter_mut().find(|(n, _)| *n == o.name) {
                Some((_, parts)) => parts.push(o.tensor.data.clone()),
                None => per_output.push((o.name.clone(), vec![o.tensor.data.clone()])),
            }
        }
    }
    let mut outputs = Vec::new();
    if matches!(mapping, OutputMapping::Classifier { .. }) && probability.len() == rows {
        outputs.push(("probability".to_owned(), Samples::Numbers(probability)));
    }
    for (name, parts) in per_output {
        let mut all = Samples::Numbers(Vec::new());
        for part in parts {
            all = append(all, output_samples(part));
        }
        if all.len() == rows {
            outputs.push((name, all));
        }
    }

    let source = format!("{} ({rows} rows)", job.data.display());
    let mut json = baseline_json(&name, FOLDER_VERSION, &source, rows, &features, &outputs)
        .map_err(data_err)?;
    let quality = truth.is_some().then(|| quality.figures());
    if let Some(q) = &quality {
        // For people and for later comparisons; the gateway's monitoring does not read it.
        json["quality"] = serde_json::json!(q);
        json["quality"]["label_column"] = job.label.into();
    }
    let path = job
        .out
        .map(Path::to_owned)
        .unwrap_or_else(|| job.model.join(crate::drift::baseline::BASELINE_FILE));
    let text = serde_json::to_string_pretty(&json).unwrap_or_default() + "\n";
    std::fs::write(&path, text).map_err(|source| BaselineError::Write {
        path: path.clone(),
        source,
    })?;
    Ok(Written {
        path,
        rows,
        features: features.into_iter().map(|(n, _)| n).collect(),
        outputs: outputs.into_iter().map(|(n, _)| n).collect(),
        quality,
    })
}

/// The label column as booleans: 0/1, true/false (as the labels API takes them).
fn labels(frame: &Frame, name: &str) -> Result<Vec<bool>, String> {
    let column = frame
        .column(name)
        .ok_or_else(|| format!("it has no label column '{name}'"))?;
    let bad = |row: usize, value: String| {
        format!("label column '{name}' row {row} is {value}: labels are 0/1 or true/false")
    };
    let number = |row: usize, v: f64| match v {
        0.0 => Ok(false),
        1.0 => Ok(true),
        other => Err(bad(row, other.to_string())),
    };
    match &column.data {
        ColumnData::Bool(v) => Ok(v.clone()),
        ColumnData::I64(v) => v
            .iter()
            .enumerate()
            .map(|(r, &x)| number(r, x as f64))
            .collect(),
        ColumnData::F64(v) => v.iter().enumerate().map(|(r, &x)| number(r, x)).collect(),
        ColumnData::F32(v) => v
            .iter()
            .enumerate()
            .map(|(r, &x)| number(r, f64::from(x)))
            .collect(),
        ColumnData::Str(v) => v
            .iter()
            .enumerate()
            .map(|(r, s)| match s.trim() {
                "1" | "1.0" => Ok(true),
                "0" | "0.0" => Ok(false),
                t => crate::data::cast::parse_bool(t).ok_or_else(|| bad(r, format!("'{t}'"))),
            })
            .collect(),
    }
}

/// A CSV file (header row; values typed by the model's inputs) or a Parquet file (its `wanted`
/// columns).
fn read_frame(path: &Path, wanted: &[&str]) -> Result<Frame, String> {
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "csv" => {
            let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
            // An offline file of the user's own: no request bounds, only the machine's.
            let limits = crate::settings::limits::DecodeLimits {
                max_columns: usize::MAX,
                max_cells: usize::MAX,
                max_string_bytes: usize::MAX,
                max_rows: usize::MAX,
                ..Default::default()
            };
            crate::protocol::mlflow::decode_csv_limited(&bytes, &limits)
                .map(|r| r.frame)
                .map_err(|e| e.to_string())
        }
        "parquet" => read_parquet(path, wanted),
        _ => Err("the data must be a .csv or a .parquet file".into()),
    }
}

/// The `wanted` columns of a Parquet file (others, whatever their type or nulls, are not read
/// into the frame). Dictionary-encoded and view strings are read as strings.
fn read_parquet(path: &Path, wanted: &[&str]) -> Result<Frame, String> {
    use deltalake::arrow::array::{Array, AsArray};
    use deltalake::arrow::datatypes::{self as dt, DataType};
    use deltalake::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|b| b.build())
        .map_err(|e| format!("not a Parquet file: {e}"))?;
    let mut columns: Vec<Column> = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| e.to_string())?;
        for (field, col) in batch.schema().fields().iter().zip(batch.columns()) {
            let name = field.name();
            if !wanted.contains(&name.as_str()) {
                continue;
            }
            let col = match col.data_type() {
                DataType::Dictionary(..) | DataType::Utf8View | DataType::LargeUtf8 => {
                    deltalake::arrow::compute::cast(col, &DataType::Utf8)
                        .map_err(|e| format!("column '{name}': {e}"))?
                }
                _ => col.clone(),
            };
            if col.null_count() > 0 {
                return Err(format!(
                    "column '{name}' has {} null values: fill or drop them first",
                    col.null_count()
                ));
            }
            let n = col.len();
            let data = match col.data_type() {
                DataType::Boolean => {
                    ColumnData::Bool((0..n).map(|r| col.as_boolean().value(r)).collect())
                }
                DataType::Int8 => ints(col.as_primitive::<dt::Int8Type>().values(), i64::from),
                DataType::Int16 => ints(col.as_primitive::<dt::Int16Type>().values(), i64::from),
                DataType::Int32 => ints(col.as_primitive::<dt::Int32Type>().values(), i64::from),
                DataType::Int64 => ints(col.as_primitive::<dt::Int64Type>().values(), |v| v),
                DataType::UInt8 => ints(col.as_primitive::<dt::UInt8Type>().values(), i64::from),
                DataType::UInt16 => ints(col.as_primitive::<dt::UInt16Type>().values(), i64::from),
                DataType::UInt32 => ints(col.as_primitive::<dt::UInt32Type>().values(), i64::from),
                DataType::Float32 => {
                    ColumnData::F32(col.as_primitive::<dt::Float32Type>().values().to_vec())
                }
                DataType::Float64 => {
                    ColumnData::F64(col.as_primitive::<dt::Float64Type>().values().to_vec())
                }
                DataType::Utf8 => ColumnData::Str(
                    (0..n)
                        .map(|r| col.as_string::<i32>().value(r).to_owned())
                        .collect(),
                ),
                other => {
                    return Err(format!(
                        "column '{name}' has the Arrow type {other}, which no model input takes"
                    ))
                }
            };
            match columns.iter_mut().find(|c| c.name == *name) {
                Some(c) => extend(c, data)?,
                None => columns.push(Column::scalar(name.clone(), data)),
            }
        }
    }
    Ok(Frame { columns })
}

fn ints<T: Copy>(values: &[T], f: impl Fn(T) -> i64) -> ColumnData {
    ColumnData::I64(values.iter().map(|v| f(*v)).collect())
}

/// Appends a later batch's values to a column.
fn extend(column: &mut Column, more: ColumnData) -> Result<(), String> {
    match (&mut column.data, more) {
        (ColumnData::F64(a), ColumnData::F64(b)) => a.extend(b),
        (ColumnData::F32(a), ColumnData::F32(b)) => a.extend(b),
        (ColumnData::I64(a), ColumnData::I64(b)) => a.extend(b),
        (ColumnData::Bool(a), ColumnData::Bool(b)) => a.extend(b),
        (ColumnData::Str(a), ColumnData::Str(b)) => a.extend(b),
        _ => return Err(format!("column '{}' changes type", column.name)),
    }
    column.shape = vec![column.data.len()];
    Ok(())
}

/// The type an input's values are profiled in: the data's own precision (a model that takes
/// float32 still has its training data profiled at full precision, as the training script
/// does), integers as integers.
fn profiled_as(elem: ElemType) -> ElemType {
    match elem {
        ElemType::F32 | ElemType::F64 => ElemType::F64,
        ElemType::I64 | ElemType::I32 => ElemType::I64,
        other => other,
    }
}

fn tensor_data(data: &ColumnData) -> TensorData {
    match data {
        ColumnData::F64(v) => TensorData::F64(v.clone()),
        ColumnData::F32(v) => TensorData::F32(v.clone()),
        ColumnData::I64(v) => TensorData::I64(v.clone()),
        ColumnData::Bool(v) => TensorData::Bool(v.clone()),
        ColumnData::Str(v) => TensorData::Str(v.clone()),
    }
}

/// Numbers are profiled as numbers (integers too); strings, booleans (`true`/`false`) as
/// categories.
fn samples(data: TensorData) -> Samples {
    match data {
        TensorData::F32(v) => Samples::Numbers(v.into_iter().map(f64::from).collect()),
        TensorData::F64(v) => Samples::Numbers(v),
        TensorData::I64(v) => Samples::Numbers(v.into_iter().map(|x| x as f64).collect()),
        TensorData::I32(v) => Samples::Numbers(v.into_iter().map(f64::from).collect()),
        TensorData::Bool(v) => Samples::Texts(v.into_iter().map(|b| b.to_string()).collect()),
        TensorData::Str(v) => Samples::Texts(v),
    }
}

/// An output's values: integers are class labels, profiled as categories (in decimal), as
/// `models/train.py` profiles the predicted label.
fn output_samples(data: TensorData) -> Samples {
    match data {
        TensorData::I64(v) => Samples::Texts(v.into_iter().map(|x| x.to_string()).collect()),
        TensorData::I32(v) => Samples::Texts(v.into_iter().map(|x| x.to_string()).collect()),
        other => samples(other),
    }
}

fn append(a: Samples, b: Samples) -> Samples {
    match (a, b) {
        (Samples::Numbers(mut a), Samples::Numbers(b)) => {
            a.extend(b);
            Samples::Numbers(a)
        }
        (Samples::Texts(mut a), Samples::Texts(b)) => {
            a.extend(b);
            Samples::Texts(a)
        }
        (a, b) if a.is_empty() => b,
        (a, _) => a,
    }
}
