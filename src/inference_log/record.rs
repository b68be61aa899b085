//! What the request path hands the writer: records that keep the request's own buffers
//! (bodies, decoded frame, output tensors) without copying them, and their conversion into the
//! rows of the three tables, which runs on the writer thread.

use std::sync::Arc;

use bytes::Bytes;
use deltalake::arrow::array::{
    ArrayRef, Date32Array, Float64Array, Int32Array, Int64Array, ListBuilder, StringBuilder,
    TimestampMicrosecondArray,
};
use deltalake::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use deltalake::arrow::error::ArrowError;
use deltalake::arrow::record_batch::RecordBatch;

use super::packed::PackedColumns;
use super::priority::{pause_point, GaveWay, PauseEvery};
use super::rows::{Cell, Kind, TableRows};
use crate::data::frame::{Column, ColumnData, Frame};
use crate::data::tensor::{ElemType, NamedTensor, TensorData};
use crate::engine::outputs::OutputMapping;
use crate::features::expr::Value;
use crate::version::VersionMeta;

/// Logging error code of a request body over the size cap (logged as null).
pub const MAX_REQUEST_SIZE_EXCEEDED: &str = "MAX_REQUEST_SIZE_EXCEEDED";
/// Logging error code of a response body over the size cap (logged as null).
pub const MAX_RESPONSE_SIZE_EXCEEDED: &str = "MAX_RESPONSE_SIZE_EXCEEDED";

/// One HTTP call: a row of `<prefix>_payload`.
pub struct CallRecord {
    pub request_id: Arc<str>,
    pub client_request_id: Option<String>,
    /// When the request arrived, microseconds since the Unix epoch.
    pub time_us: i64,
    pub status_code: u16,
    /// Time the model spent, when it ran.
    pub execution_ms: Option<i64>,
    pub request: Option<Bytes>,
    pub response: Option<Bytes>,
    pub served_entity: Option<Arc<str>>,
    pub logging_error_codes: Vec<&'static str>,
    pub requester: Option<String>,
    /// The share of requests logged when this one was (the endpoint's `sampling_fraction`,
    /// smaller while its `backpressure: sample` thins a backlog); set by the log.
    pub sampling_fraction: f64,
}

impl CallRecord {
    /// A 200 call with nothing in it, for tests.
    #[cfg(test)]
    pub(crate) fn for_tests() -> Self {
        CallRecord {
            request_id: Arc::from("id"),
            client_request_id: None,
            time_us: 0,
            status_code: 200,
            execution_ms: None,
            request: None,
            response: None,
            served_entity: None,
            logging_error_codes: Vec::new(),
            requester: None,
            sampling_fraction: 1.0,
        }
    }

    /// Bodies over `cap` bytes are dropped here, before they take queue memory, and named in
    /// `logging_error_codes`.
    pub fn cap_payloads(&mut self, cap: usize) {
        if self.request.as_ref().is_some_and(|b| b.len() > cap) {
            self.request = None;
            self.logging_error_codes.push(MAX_REQUEST_SIZE_EXCEEDED);
        }
        if self.response.as_ref().is_some_and(|b| b.len() > cap) {
            self.response = None;
            self.logging_error_codes.push(MAX_RESPONSE_SIZE_EXCEEDED);
        }
    }

    /// What the record holds in memory: the struct, every string at its length (the caller's
    /// own id included) and the bodies.
    pub fn approx_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.request_id.len()
            + self.client_request_id.as_ref().map_or(0, String::len)
            + self.request.as_ref().map_or(0, Bytes::len)
            + self.response.as_ref().map_or(0, Bytes::len)
            + self.served_entity.as_ref().map_or(0, |s| s.len())
            + self.logging_error_codes.len() * std::mem::size_of::<&str>()
            + self.requester.as_ref().map_or(0, String::len)
    }
}

/// The model's inputs as the request path had them.
pub enum Inputs {
    /// The decoded request (every column it carried).
    Frame(Arc<Frame>),
    /// The feature join's columns: request values, looked-up and computed features.
    Joined(PackedColumns),
}

/// Rows one served entity scored for one request: rows of `<prefix>_predictions`.
pub struct ScoredRows {
    pub request_id: Arc<str>,
    pub time_us: i64,
    pub served_entity: Arc<str>,
    /// The version that scored them (not the served entity: a record must not keep a
    /// replaced model loaded until the writer commits).
    pub meta: Arc<VersionMeta>,
    pub shadow: bool,
    pub inputs: Inputs,
    pub outputs: Vec<NamedTensor>,
    /// The request row of each scored row, when a batch was split across served entities.
    pub request_rows: Option<Vec<usize>>,
    /// The stages of the request that scored them (not for shadow copies).
    pub stages: Option<Timings>,
    /// Shadow copies: how long the shadow's inference took.
    pub shadow_ms: Option<f64>,
}

impl ScoredRows {
    pub fn rows(&self) -> usize {
        match &self.inputs {
            Inputs::Frame(f) => f.rows(),
            Inputs::Joined(cols) => cols.rows(),
        }
    }

    /// What the record holds in memory: inputs and outputs cell by cell, strings at their
    /// length. A frame shared with the request is counted whole (it lives as long as the record).
    pub fn approx_bytes(&self) -> usize {
        let inputs = match &self.inputs {
            Inputs::Frame(f) => f.columns.iter().map(Column::held_bytes).sum(),
            Inputs::Joined(cols) => cols.held_bytes(),
        };
        let outputs: usize = self
            .outputs
            .iter()
            .map(|o| {
                std::mem::size_of::<NamedTensor>()
                    + o.name.len()
                    + o.tensor.shape.len() * std::mem::size_of::<usize>()
                    + tensor_bytes(&o.tensor.data)
            })
            .sum();
        let request_rows = self
            .request_rows
            .as_ref()
            .map_or(0, |r| r.len() * std::mem::size_of::<usize>());
        std::mem::size_of::<Self>()
            + self.request_id.len()
            + self.served_entity.len()
            + inputs
            + outputs
            + request_rows
    }
}

/// A value as it is held: the enum, and a string's bytes.
pub(super) fn value_bytes(v: &Value) -> usize {
    std::mem::size_of::<Value>()
        + match v {
            Value::String(s) => s.len(),
            _ => 0,
        }
}

fn tensor_bytes(t: &TensorData) -> usize {
    match t {
        TensorData::F32(v) => v.len() * 4,
        TensorData::F64(v) => v.len() * 8,
        TensorData::I64(v) => v.len() * 8,
        TensorData::I32(v) => v.len() * 4,
        TensorData::Bool(v) => v.len(),
        TensorData::Str(v) => v
            .iter()
            .map(|s| std::mem::size_of::<String>() + s.len())
            .sum(),
    }
}

/// Seconds spent per stage of one request (its prediction rows carry them).
#[derive(Debug, Clone, Copy)]
pub struct Timings {
    pub queued: f64,
    pub decode: f64,
    pub inference: f64,
    pub encode: f64,
    pub rows: usize,
}

/// A label: ground truth for a logged prediction, by request id (and row) or by key columns
/// and event time.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelRecord {
    pub received_us: i64,
    pub request_id: Option<String>,
    pub row_index: Option<i64>,
    pub event_time_us: Option<i64>,
    pub keys: Vec<(String, Value)>,
    /// Numeric (and boolean, as 0/1) labels; `label_text` holds every label as text.
    pub label: Option<f64>,
    pub label_text: String,
}

impl LabelRecord {
    /// What the label holds in memory: the struct, its text, id, and keys with their values.
    pub fn approx_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.label_text.len()
            + self.request_id.as_ref().map_or(0, String::len)
            + self
                .keys
                .iter()
                .map(|(k, v)| std::mem::size_of::<String>() + k.len() + value_bytes(v))
                .sum::<usize>()
    }
}

fn days(time_us: i64) -> i32 {
    time_us.div_euclid(86_400_000_000) as i32
}

/// The exact columns of a Databricks AI-Gateway inference table.
fn payload_schema() -> SchemaRef {
    let ts = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    let strings = DataType::List(Arc::new(Field::new("element", DataType::Utf8, true)));
    Arc::new(Schema::new(vec![
        Field::new("request_date", DataType::Date32, true),
        Field::new("databricks_request_id", DataType::Utf8, true),
        Field::new("client_request_id", DataType::Utf8, true),
        Field::new("request_time", ts, true),
        Field::new("status_code", DataType::Int32, true),
        Field::new("sampling_fraction", DataType::Float64, true),
        Field::new("execution_duration_ms", DataType::Int64, true),
        Field::new("request", DataType::Utf8, true),
        Field::new("response", DataType::Utf8, true),
        Field::new("served_entity_id", DataType::Utf8, true),
        Field::new("logging_error_codes", strings, true),
        Field::new("requester", DataType::Utf8, true),
    ]))
}

/// A batch's conversion stopped at a pause point ([`GaveWay`]) is an error of the conversion,
/// told apart by [`gave_way`].
impl From<GaveWay> for ArrowError {
    fn from(e: GaveWay) -> Self {
        ArrowError::ExternalError(Box::new(e))
    }
}

/// Whether a conversion failed only because the thread gave way.
pub fn gave_way(e: &ArrowError) -> bool {
    matches!(e, ArrowError::ExternalError(inner) if inner.is::<GaveWay>())
}

pub fn payload_batch(calls: &[CallRecord]) -> Result<RecordBatch, ArrowError> {
    // Bodies go into the column without a copy when they are UTF-8 (JSON and CSV are):
    // checked with `from_utf8`, which reads ASCII a word at a time (the lossy scan goes byte
    // by byte), and replaced only when that fails.
    fn text(b: &Option<Bytes>) -> Option<std::borrow::Cow<'_, str>> {
        b.as_ref().map(|b| match std::str::from_utf8(b) {
            Ok(s) => s.into(),
            Err(_) => String::from_utf8_lossy(b),
        })
    }
    let mut codes = ListBuilder::new(StringBuilder::new()).with_field(Arc::new(Field::new(
        "element",
        DataType::Utf8,
        true,
    )));
    in_turns(calls, |c| {
        for code in &c.logging_error_codes {
            codes.values().append_value(code);
        }
        codes.append(true);
    })?;
    // A column at a time, with a pause point after each and every few dozen rows as it is
    // built (the text columns copy bodies of up to megabytes in all).
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(12);
    let mut add = |array: ArrayRef| -> Result<(), GaveWay> {
        columns.push(array);
        pause_point()
    };
    add(Arc::new(Date32Array::from(values_in_turns(calls, |c| {
        days(c.time_us)
    })?)))?;
    add(strings_in_turns(
        calls.iter().map(|c| Some(&*c.request_id)),
    )?)?;
    add(strings_in_turns(
        calls.iter().map(|c| c.client_request_id.as_deref()),
    )?)?;
    add(Arc::new(
        TimestampMicrosecondArray::from(values_in_turns(calls, |c| c.time_us)?)
            .with_timezone("UTC"),
    ))?;
    add(Arc::new(Int32Array::from(values_in_turns(calls, |c| {
        i32::from(c.status_code)
    })?)))?;
    add(Arc::new(Float64Array::from(values_in_turns(calls, |c| {
        c.sampling_fraction
    })?)))?;
    add(Arc::new(Int64Array::from(values_in_turns(calls, |c| {
        c.execution_ms
    })?)))?;
    add(strings_in_turns(calls.iter().map(|c| text(&c.request)))?)?;
    add(strings_in_turns(calls.iter().map(|c| text(&c.response)))?)?;
    add(strings_in_turns(
        calls.iter().map(|c| c.served_entity.as_deref()),
    )?)?;
    add(Arc::new(codes.finish()))?;
    add(strings_in_turns(
        calls.iter().map(|c| c.requester.as_deref()),
    )?)?;
    RecordBatch::try_new(payload_schema(), columns)
}

/// Calls `each` on every item, with a pause point every [`ROWS_BETWEEN_PAUSES`] of them.
fn in_turns<I: IntoIterator>(items: I, mut each: impl FnMut(I::Item)) -> Result<(), GaveWay> {
    let mut pace = PauseEvery::new(ROWS_BETWEEN_PAUSES);
    for item in items {
        each(item);
        pace.step()?;
    }
    Ok(())
}

/// A value of every call, in turns.
fn values_in_turns<T>(
    calls: &[CallRecord],
    value: impl Fn(&CallRecord) -> T,
) -> Result<Vec<T>, GaveWay> {
    let mut values = Vec::with_capacity(calls.len());
    in_turns(calls, |c| values.push(value(c)))?;
    Ok(values)
}

/// A text column, built in turns.
fn strings_in_turns<S: AsRef<str>>(
    values: impl ExactSizeIterator<Item = Option<S>>,
) -> Result<ArrayRef, GaveWay> {
    let mut column = StringBuilder::with_capacity(values.len(), 0);
    in_turns(values, |value| column.append_option(value))?;
    Ok(Arc::new(column.finish()))
}

/// Rows converted between two [`pause_point`]s.
const ROWS_BETWEEN_PAUSES: usize = 64;

/// Columns every predictions row has; an input with one of these names is logged as
/// `input_<name>`.
const PREDICTION_COLUMNS: [&str; 14] = [
    "request_id",
    "row_index",
    "request_time",
    "request_date",
    "endpoint",
    "served_entity",
    "model_name",
    "model_version",
    "shadow",
    "queue_ms",
    "decode_ms",
    "inference_ms",
    "encode_ms",
    "shadow_inference_ms",
];

/// The fixed columns of `<prefix>_predictions`, in table order (the table starts with them).
fn predictions_head() -> TableRows {
    let mut t = TableRows::default();
    for (name, kind, nullable) in [
        ("request_id", Kind::Str, false),
        ("row_index", Kind::Int, false),
        ("request_time", Kind::Timestamp, false),
        ("request_date", Kind::Date, false),
        ("endpoint", Kind::Str, false),
        ("served_entity", Kind::Str, false),
        ("model_name", Kind::Str, false),
        ("model_version", Kind::Str, false),
        ("shadow", Kind::Bool, false),
    ] {
        t.declare(name, kind, nullable);
    }
    t
}

pub fn predictions_batch(endpoint: &str, scored: &[ScoredRows]) -> Result<RecordBatch, ArrowError> {
    let mut t = predictions_head();
    let mut pace = PauseEvery::new(ROWS_BETWEEN_PAUSES);
    for s in scored {
        let e = &s.meta;
        for r in 0..s.rows() {
            let row_index = s
                .request_rows
                .as_ref()
                .and_then(|m| m.get(r).copied())
                .unwrap_or(r);
            t.set("request_id", Cell::Str(&s.request_id));
            t.set("row_index", Cell::Int(row_index as i64));
            t.set("request_time", Cell::Timestamp(s.time_us));
            t.set("request_date", Cell::Date(days(s.time_us)));
            t.set("endpoint", Cell::Str(endpoint));
            t.set("served_entity", Cell::Str(&s.served_entity));
            t.set("model_name", Cell::Str(&e.model));
            t.set("model_version", Cell::Str(&e.version));
            t.set("shadow", Cell::Bool(s.shadow));
            match &s.inputs {
                Inputs::Frame(f) => {
                    for c in &f.columns {
                        let kind = e.column_type(&c.name);
                        set_column_cell(&mut t, &input_name(&c.name), c, kind, r);
                    }
                }
                Inputs::Joined(cols) => {
                    for (n, values) in cols.columns() {
                        if let Some(cell) = values.get(r).and_then(value_cell) {
                            t.set(&input_name(n), cell);
                        }
                    }
                }
            }
            set_prediction(&mut t, &e.outputs, &s.outputs, r);
            if let Some(st) = &s.stages {
                t.set("queue_ms", Cell::Float(st.queued * 1000.0));
                t.set("decode_ms", Cell::Float(st.decode * 1000.0));
                t.set("inference_ms", Cell::Float(st.inference * 1000.0));
                t.set("encode_ms", Cell::Float(st.encode * 1000.0));
            }
            if let Some(ms) = s.shadow_ms {
                t.set("shadow_inference_ms", Cell::Float(ms));
            }
            t.end_row();
            pace.step()?;
        }
    }
    t.finish()
}

/// An input's column name: its own, or `input_<name>` when a fixed column has it.
fn input_name(n: &str) -> std::borrow::Cow<'_, str> {
    if PREDICTION_COLUMNS.contains(&n) {
        format!("input_{n}").into()
    } else {
        n.into()
    }
}

fn value_cell(v: &Value) -> Option<Cell<'_>> {
    Some(match v {
        Value::Null => return None,
        Value::Int(i) => Cell::Int(*i),
        Value::Float(f) => Cell::Float(*f),
        Value::Bool(b) => Cell::Bool(*b),
        Value::String(s) => Cell::Str(s),
        Value::Timestamp(ms) => Cell::Timestamp(ms.saturating_mul(1000)),
    })
}

/// The values of row `r` in data of `len` values, `width` per row; `None` when the data does
/// not have that row (the cell is then logged as null, never read out of bounds).
fn row_range(len: usize, width: usize, r: usize) -> Option<std::ops::Range<usize>> {
    let start = r.checked_mul(width)?;
    let end = start.checked_add(width)?;
    (end <= len).then_some(start..end)
}

/// Row `r` of a request column, typed as the model takes it (`model_type`), or as it came for
/// columns the model does not take (numbers as doubles, so integer and decimal spellings of one
/// column land in one column).
fn set_column_cell(
    t: &mut TableRows,
    name: &str,
    c: &Column,
    model_type: Option<ElemType>,
    r: usize,
) {
    let width: usize = c.shape.get(1..).map_or(1, |d| d.iter().product());
    let integer = matches!(model_type, Some(ElemType::I64 | ElemType::I32));
    let Some(range) = row_range(c.data.len(), width, r) else {
        return;
    };
    let at = range.start;
    match &c.data {
        ColumnData::Str(v) if width == 1 => t.set(name, Cell::Str(&v[at])),
        ColumnData::Str(v) => t.set(name, Cell::Strs(&v[range])),
        ColumnData::Bool(v) if width == 1 => t.set(name, Cell::Bool(v[at])),
        ColumnData::Bool(v) => t.set(name, Cell::Bools(&v[range])),
        ColumnData::I64(v) if integer && width == 1 => t.set(name, Cell::Int(v[at])),
        ColumnData::I64(v) if integer => t.set(name, Cell::Ints(&v[range])),
        ColumnData::I64(v) if width == 1 => t.set(name, Cell::Float(v[at] as f64)),
        ColumnData::F64(v) if width == 1 && integer && v[at].fract() == 0.0 => {
            t.set(name, Cell::Int(v[at] as i64))
        }
        ColumnData::F64(v) if width == 1 => t.set(name, Cell::Float(v[at])),
        ColumnData::F32(v) if width == 1 => t.set(name, Cell::Float(f64::from(v[at]))),
        data => {
            let floats: Vec<f64> = match data {
                ColumnData::I64(v) => v[range].iter().map(|&x| x as f64).collect(),
                ColumnData::F64(v) => v[range].to_vec(),
                ColumnData::F32(v) => v[range].iter().map(|&x| f64::from(x)).collect(),
                _ => Vec::new(),
            };
            t.set(name, Cell::Floats(&floats));
        }
    }
}

/// Row `r`'s prediction as typed columns: `prediction` (the label, or the single output),
/// `probability` (binary classifiers) or `probabilities`, or `prediction_<output>` for models
/// with several outputs.
fn set_prediction(t: &mut TableRows, mapping: &OutputMapping, outputs: &[NamedTensor], r: usize) {
    match mapping {
        OutputMapping::Classifier {
            label,
            probabilities,
            binary,
            ..
        } => {
            if let Some(o) = outputs.get(*label) {
                set_tensor_row(t, "prediction", o, r);
            }
            let Some(probabilities) = outputs.get(*probabilities) else {
                return;
            };
            let p = &probabilities.tensor;
            if *binary && p.shape.get(1) == Some(&2) {
                if let Some(x) = float_at(&p.data, r * 2 + 1) {
                    t.set("probability", Cell::Float(x));
                }
            } else {
                set_tensor_row(t, "probabilities", probabilities, r);
            }
        }
        OutputMapping::Single(i) => {
            if let Some(o) = outputs.get(*i) {
                set_tensor_row(t, "prediction", o, r);
            }
        }
        OutputMapping::Records => {
            for o in outputs {
                set_tensor_row(t, &format!("prediction_{}", o.name), o, r);
            }
        }
    }
}

fn float_at(data: &TensorData, i: usize) -> Option<f64> {
    match data {
        TensorData::F32(v) => v.get(i).map(|&x| f64::from(x)),
        TensorData::F64(v) => v.get(i).copied(),
        _ => None,
    }
}

/// Row `r` of an output: a scalar for one value per row (`[N]`, `[N, 1]`), else an array (an
/// empty one for a zero-width output such as `[N, 0]`); null when the tensor lacks the row.
fn set_tensor_row(t: &mut TableRows, name: &str, o: &NamedTensor, r: usize) {
    let shape = &o.tensor.shape;
    let width: usize = shape.get(1..).map_or(1, |d| d.iter().product());
    let scalar = width == 1;
    let Some(range) = row_range(o.tensor.data.len(), width, r) else {
        return;
    };
    let at = range.start;
    match &o.tensor.data {
        TensorData::I64(v) if scalar => t.set(name, Cell::Int(v[at])),
        TensorData::I64(v) => t.set(name, Cell::Ints(&v[range])),
        TensorData::I32(v) if scalar => t.set(name, Cell::Int(i64::from(v[at]))),
        TensorData::I32(v) => {
            let ints: Vec<i64> = v[range].iter().map(|&x| i64::from(x)).collect();
            t.set(name, Cell::Ints(&ints));
        }
        TensorData::F64(v) if scalar => t.set(name, Cell::Float(v[at])),
        TensorData::F64(v) => t.set(name, Cell::Floats(&v[range])),
        TensorData::F32(v) if scalar => t.set(name, Cell::Float(f64::from(v[at]))),
        TensorData::F32(v) => {
            let floats: Vec<f64> = v[range].iter().map(|&x| f64::from(x)).collect();
            t.set(name, Cell::Floats(&floats));
        }
        TensorData::Bool(v) if scalar => t.set(name, Cell::Bool(v[at])),
        TensorData::Bool(v) => t.set(name, Cell::Bools(&v[range])),
        TensorData::Str(v) if scalar => t.set(name, Cell::Str(&v[at])),
        TensorData::Str(v) => t.set(name, Cell::Strs(&v[range])),
    }
}

/// The fixed columns of `<prefix>_labels`.
fn labels_head() -> TableRows {
    let mut t = TableRows::default();
    t.declare("label_time", Kind::Timestamp, false);
    t.declare("request_id", Kind::Str, true);
    t.declare("row_index", Kind::Int, true);
    t.declare("event_time", Kind::Timestamp, true);
    t.declare("label", Kind::Float, true);
    t.declare("label_text", Kind::Str, false);
    t
}

const LABEL_COLUMNS: [&str; 6] = [
    "label_time",
    "request_id",
    "row_index",
    "event_time",
    "label",
    "label_text",
];

pub fn labels_batch(labels: &[LabelRecord]) -> Result<RecordBatch, ArrowError> {
    let mut t = labels_head();
    let mut pace = PauseEvery::new(ROWS_BETWEEN_PAUSES);
    for l in labels {
        t.set("label_time", Cell::Timestamp(l.received_us));
        if let Some(id) = &l.request_id {
            t.set("request_id", Cell::Str(id));
        }
        if let Some(i) = l.row_index {
            t.set("row_index", Cell::Int(i));
        }
        if let Some(ts) = l.event_time_us {
            t.set("event_time", Cell::Timestamp(ts));
        }
        if let Some(x) = l.label {
            t.set("label", Cell::Float(x));
        }
        t.set("label_text", Cell::Str(&l.label_text));
        for (k, v) in &l.keys {
            if let Some(cell) = value_cell(v) {
                if LABEL_COLUMNS.contains(&k.as_str()) {
                    t.set(&format!("key_{k}"), cell);
                } else {
                    t.set(k, cell);
                }
            }
        }
        t.end_row();
        pace.step()?;
    }
    t.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::tensor::Tensor;
    use deltalake::arrow::array::{Array, AsArray};

    fn output(name: &str, shape: Vec<usize>, data: TensorData) -> NamedTensor {
        NamedTensor {
            name: name.into(),
            tensor: Tensor { shape, data },
        }
    }

    #[test]
    fn a_zero_width_output_is_an_empty_array_per_row_not_a_panic() {
        let outputs = [output("scores", vec![2, 0], TensorData::F32(Vec::new()))];
        let mut t = TableRows::default();
        for r in 0..2 {
            set_prediction(&mut t, &OutputMapping::Single(0), &outputs, r);
            t.end_row();
        }
        let batch = t.finish().unwrap();
        assert_eq!(batch.num_rows(), 2);
        let list = batch.column(0).as_list::<i32>();
        assert_eq!(list.null_count(), 0, "an empty array, not a null");
        assert_eq!((list.value_length(0), list.value_length(1)), (0, 0));
    }

    #[test]
    fn outputs_and_columns_short_of_rows_log_nulls() {
        // Fewer values than rows, a missing output index and a column without a shape: nulls.
        let outputs = [output("p", vec![3], TensorData::I64(vec![7]))];
        let mut t = TableRows::default();
        for r in 0..3 {
            set_prediction(&mut t, &OutputMapping::Single(0), &outputs, r);
            set_prediction(&mut t, &OutputMapping::Single(5), &outputs, r);
            let c = Column {
                name: "c".into(),
                shape: Vec::new(),
                data: ColumnData::F64(vec![1.0]),
                from_text: false,
            };
            set_column_cell(&mut t, "c", &c, None, r);
            t.end_row();
        }
        let batch = t.finish().unwrap();
        assert_eq!(batch.num_rows(), 3);
        let p = batch.column_by_name("prediction").unwrap();
        assert_eq!((p.null_count(), p.is_null(0)), (2, false));
        assert_eq!(batch.column_by_name("c").unwrap().null_count(), 2);
    }

    fn call(client_request_id: Option<String>) -> CallRecord {
        CallRecord {
            client_request_id,
            request: Some(Bytes::from_static(b"{}")),
            ..CallRecord::for_tests()
        }
    }

    #[test]
    fn bodies_that_are_not_utf8_are_logged_with_replacement_characters() {
        let calls = [
            call(None),
            CallRecord {
                request: Some(Bytes::from_static(b"{\"a\": \"\xff\"}")),
                ..call(None)
            },
        ];
        let batch = payload_batch(&calls).unwrap();
        let request = batch.column_by_name("request").unwrap().as_string::<i32>();
        assert_eq!(request.value(0), "{}");
        assert_eq!(request.value(1), "{\"a\": \"\u{fffd}\"}");
    }

    #[test]
    fn every_byte_a_record_holds_is_counted() {
        let small = call(None).approx_bytes();
        let big = call(Some("x".repeat(100_000))).approx_bytes();
        assert_eq!(big - small, 100_000, "the caller's id at its length");

        let label = |text: &str, key: &str| LabelRecord {
            received_us: 0,
            request_id: None,
            row_index: None,
            event_time_us: None,
            keys: vec![("k".into(), Value::String(key.into()))],
            label: None,
            label_text: text.into(),
        };
        let base = label("", "").approx_bytes();
        assert_eq!(label("", &"v".repeat(50_000)).approx_bytes() - base, 50_000);
        assert_eq!(label(&"t".repeat(7), "").approx_bytes() - base, 7);

        assert_eq!(
            value_bytes(&Value::String("x".repeat(1000))),
            1000 + std::mem::size_of::<Value>()
        );
        let strings = Column::scalar("s", ColumnData::Str(vec!["y".repeat(4000); 2]));
        let empty = Column::scalar("s", ColumnData::Str(vec![String::new(); 2]));
        assert_eq!(strings.held_bytes() - empty.held_bytes(), 8000);
        let names = TensorData::Str(vec!["z".repeat(300)]);
        assert_eq!(tensor_bytes(&names), 300 + 24);
    }
}
