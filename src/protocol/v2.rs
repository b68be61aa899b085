//! Open Inference Protocol V2 (KServe / Triton / MLServer) REST: inference request decoding and
//! response encoding.

use std::io::Write;

use serde::Deserialize;
use serde_json::Value;

use super::frame::{Column, ColumnData, Frame};
use crate::engine::outputs::{write_json_str, write_value};
use crate::engine::NamedTensor;
use crate::error::{RequestError, RequestResult};

#[derive(Debug, Deserialize)]
struct RawRequest {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    parameters: Option<serde_json::Map<String, Value>>,
    inputs: Vec<RawInput>,
    #[serde(default)]
    outputs: Option<Vec<RawOutput>>,
}

#[derive(Debug, Deserialize)]
struct RawInput {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    #[serde(default)]
    #[allow(dead_code)]
    parameters: Option<serde_json::Map<String, Value>>,
    data: Value,
}

#[derive(Debug, Deserialize)]
struct RawOutput {
    name: String,
}

/// A decoded V2 inference request.
#[derive(Debug)]
pub struct InferRequest {
    pub id: Option<String>,
    pub frame: Frame,
    /// Outputs the caller asked for; all when `None`.
    pub outputs: Option<Vec<String>>,
    pub parameters: Option<serde_json::Map<String, Value>>,
}

pub fn decode(body: &[u8]) -> RequestResult<InferRequest> {
    let raw: RawRequest = serde_json::from_slice(body).map_err(|e| {
        if e.is_data() {
            RequestError::bad(format!("the body is not a V2 inference request: {e}"))
        } else {
            RequestError::Malformed(format!("the body is not valid JSON: {e}"))
        }
    })?;
    if raw.inputs.is_empty() {
        return Err(RequestError::bad(
            "'inputs' is empty: give at least one input tensor",
        ));
    }
    let columns = raw
        .inputs
        .iter()
        .map(decode_input)
        .collect::<RequestResult<Vec<_>>>()?;
    Ok(InferRequest {
        id: raw.id,
        frame: Frame { columns },
        outputs: raw.outputs.map(|o| o.into_iter().map(|o| o.name).collect()),
        parameters: raw.parameters,
    })
}

fn decode_input(input: &RawInput) -> RequestResult<Column> {
    let name = &input.name;
    if input.shape.is_empty() {
        return Err(RequestError::bad(format!(
            "input '{name}' has an empty shape: the first dimension is the batch size"
        )));
    }
    let shape = input
        .shape
        .iter()
        .map(|d| {
            usize::try_from(*d).map_err(|_| {
                RequestError::bad(format!(
                    "input '{name}' has a negative dimension in shape {:?}",
                    input.shape
                ))
            })
        })
        .collect::<RequestResult<Vec<usize>>>()?;
    let expected = shape
        .iter()
        .try_fold(1usize, |acc, d| acc.checked_mul(*d))
        .ok_or_else(|| {
            RequestError::bad(format!(
                "input '{name}' shape {:?} is too large",
                input.shape
            ))
        })?;
    let mut leaves = Vec::with_capacity(expected.min(1 << 20));
    flatten(&input.data, &mut leaves);
    if leaves.len() != expected {
        return Err(RequestError::bad(format!(
            "input '{name}' has {} values but shape {:?} needs {expected}",
            leaves.len(),
            input.shape
        )));
    }
    let bad = |i: usize, what: &str| {
        RequestError::bad(format!(
            "input '{name}' element {i} is {what}, which datatype {} does not allow",
            input.datatype
        ))
    };
    let data = match input.datatype.as_str() {
        "BOOL" => ColumnData::Bool(
            leaves.iter().enumerate().map(|(i, v)| v.as_bool().ok_or_else(|| bad(i, &describe(v)))).collect::<RequestResult<_>>()?,
        ),
        dt @ ("INT8" | "INT16" | "INT32" | "INT64" | "UINT8" | "UINT16" | "UINT32" | "UINT64") => {
            let (lo, hi) = int_range(dt);
            ColumnData::I64(
                leaves
                    .iter()
                    .enumerate()
                    .map(|(i, v)| match v.as_i64() {
                        Some(x) if (lo..=hi).contains(&(x as i128)) => Ok(x),
                        Some(x) => Err(bad(i, &format!("{x} (out of range)"))),
                        None if v.as_u64().is_some() => Err(bad(i, &format!("{v} (beyond INT64, not supported)"))),
                        None => Err(bad(i, &describe(v))),
                    })
                    .collect::<RequestResult<_>>()?,
            )
        }
        "FP16" | "FP32" | "FP64" => ColumnData::F64(
            leaves
                .iter()
                .enumerate()
                .map(|(i, v)| v.as_f64().ok_or_else(|| bad(i, &describe(v))))
                .collect::<RequestResult<_>>()?,
        ),
        "BYTES" => ColumnData::Str(
            leaves
                .iter()
                .enumerate()
                .map(|(i, v)| v.as_str().map(str::to_owned).ok_or_else(|| bad(i, &describe(v))))
                .collect::<RequestResult<_>>()?,
        ),
        other => {
            return Err(RequestError::bad(format!(
                "input '{name}' has unknown datatype '{other}' (BOOL, INT8..INT64, UINT8..UINT64, FP16, FP32, FP64, BYTES)"
            )))
        }
    };
    Ok(Column {
        name: name.clone(),
        shape,
        data,
        from_text: false,
    })
}

fn int_range(dt: &str) -> (i128, i128) {
    match dt {
        "INT8" => (i8::MIN as i128, i8::MAX as i128),
        "INT16" => (i16::MIN as i128, i16::MAX as i128),
        "INT32" => (i32::MIN as i128, i32::MAX as i128),
        "UINT8" => (0, u8::MAX as i128),
        "UINT16" => (0, u16::MAX as i128),
        "UINT32" => (0, u32::MAX as i128),
        "UINT64" => (0, i64::MAX as i128),
        _ => (i64::MIN as i128, i64::MAX as i128),
    }
}

fn describe(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(_) => "a string".into(),
        Value::Array(_) => "a list".into(),
        Value::Object(_) => "an object".into(),
    }
}

/// Row-major leaves of nested `data` (flat data is its own leaves).
fn flatten<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
    match v {
        Value::Array(items) => items.iter().for_each(|i| flatten(i, out)),
        other => out.push(other),
    }
}

/// Writes the V2 response body. `outputs` are the model's; `requested` filters and orders them.
pub fn write_response(
    model_name: &str,
    model_version: &str,
    id: Option<&str>,
    outputs: &[NamedTensor],
    requested: Option<&[String]>,
    buf: &mut Vec<u8>,
) -> RequestResult<()> {
    let chosen: Vec<&NamedTensor> = match requested {
        None => outputs.iter().collect(),
        Some(names) => names
            .iter()
            .map(|n| {
                outputs.iter().find(|o| &o.name == n).ok_or_else(|| {
                    let known: Vec<&str> = outputs.iter().map(|o| o.name.as_str()).collect();
                    RequestError::bad(format!(
                        "unknown output '{n}': the model outputs {}",
                        known.join(", ")
                    ))
                })
            })
            .collect::<RequestResult<_>>()?,
    };
    buf.extend_from_slice(b"{\"model_name\":");
    write_json_str(model_name, buf);
    buf.extend_from_slice(b",\"model_version\":");
    write_json_str(model_version, buf);
    if let Some(id) = id {
        buf.extend_from_slice(b",\"id\":");
        write_json_str(id, buf);
    }
    buf.extend_from_slice(b",\"outputs\":[");
    for (k, o) in chosen.iter().enumerate() {
        if k > 0 {
            buf.push(b',');
        }
        buf.extend_from_slice(b"{\"name\":");
        write_json_str(&o.name, buf);
        let _ = write!(
            buf,
            ",\"datatype\":\"{}\",\"shape\":[",
            o.tensor.data.elem().v2_name()
        );
        for (d, n) in o.tensor.shape.iter().enumerate() {
            if d > 0 {
                buf.push(b',');
            }
            let _ = write!(buf, "{n}");
        }
        buf.extend_from_slice(b"],\"data\":[");
        for i in 0..o.tensor.data.len() {
            if i > 0 {
                buf.push(b',');
            }
            write_value(&o.tensor.data, i, buf);
        }
        buf.extend_from_slice(b"]}");
    }
    buf.extend_from_slice(b"]}");
    Ok(())
}
