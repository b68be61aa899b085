//! Open Inference Protocol V2 (KServe / Triton / MLServer) REST: inference request decoding and
//! response encoding.

use std::io::Write;

use serde::Deserialize;
use serde_json::Value;

use super::bounded::{within, Bounded, NodeBudget};
use super::columns::check_rectangular;
use super::json_write::{write_json_str, write_value};
use super::limits::{Budget, DecodeLimits};
use super::v2_binary;
use crate::data::frame::{Column, ColumnData, Frame};
use crate::data::tensor::NamedTensor;
use crate::error::{RequestError, RequestResult};

#[derive(Debug, Deserialize)]
struct RawRequest {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    parameters: Option<Bounded>,
    inputs: Vec<RawInput>,
    #[serde(default)]
    outputs: Option<Vec<RawOutput>>,
}

#[derive(Debug, Deserialize)]
struct RawInput {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    /// `binary_data_size`: the input's bytes follow the JSON header.
    #[serde(default)]
    parameters: Option<Bounded>,
    /// Absent when the input is binary.
    #[serde(default)]
    data: Option<Bounded>,
}

#[derive(Debug, Deserialize)]
struct RawOutput {
    name: String,
    /// `binary_data`: this output's values go after the answer's JSON.
    #[serde(default)]
    parameters: Option<Bounded>,
}

/// A boolean of a `parameters` object, when it has one.
fn flag(parameters: Option<&Bounded>, key: &str) -> Option<bool> {
    parameters
        .and_then(|p| p.0.get(key))
        .and_then(Value::as_bool)
}

/// A decoded V2 inference request.
#[derive(Debug)]
pub struct InferRequest {
    pub id: Option<String>,
    pub frame: Frame,
    /// Outputs the caller asked for; all when `None`.
    pub outputs: Option<Vec<String>>,
    /// Each of `outputs`' own `binary_data`, when it has one (binary tensor data extension).
    pub binary_outputs: Vec<Option<bool>>,
    /// `parameters.binary_data_output`: every output not asked for otherwise is binary.
    pub binary_data_output: bool,
    pub parameters: Option<serde_json::Map<String, Value>>,
}

impl InferRequest {
    /// Whether output `name` is answered as raw bytes.
    pub fn binary_output(&self, name: &str) -> bool {
        self.outputs
            .as_ref()
            .and_then(|o| o.iter().position(|n| n == name))
            .and_then(|i| self.binary_outputs.get(i).copied().flatten())
            .unwrap_or(self.binary_data_output)
    }
}

pub fn decode(body: &[u8]) -> RequestResult<InferRequest> {
    decode_limited(body, &DecodeLimits::default())
}

/// Decodes a V2 inference request within `limits`: inputs, values, strings, the id and the
/// outputs asked for (each at most once) are checked before any tensor is built.
pub fn decode_limited(body: &[u8], limits: &DecodeLimits) -> RequestResult<InferRequest> {
    decode_parts(body, None, limits)
}

/// [`decode_limited`] of a body that may carry raw tensors after a JSON header of `header_len`
/// bytes (`Inference-Header-Content-Length`, the binary tensor data extension).
pub fn decode_parts(
    body: &[u8],
    header_len: Option<usize>,
    limits: &DecodeLimits,
) -> RequestResult<InferRequest> {
    let (json, mut tensors) = v2_binary::split(body, header_len)?;
    // `data` and `parameters` are JSON trees until the datatype is known: their nodes are
    // counted as they are parsed.
    let (parsed, nodes) = within(NodeBudget::new(limits), || {
        serde_json::from_slice::<RawRequest>(json)
    });
    let raw = parsed.map_err(|e| {
        if let Some(refusal) = nodes.refusal() {
            refusal
        } else if e.is_data() {
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
    limits.columns(raw.inputs.len())?;
    if let Some(id) = &raw.id {
        limits.id("id", id.len())?;
    }
    let binary_outputs: Vec<Option<bool>> = raw
        .outputs
        .iter()
        .flatten()
        .map(|o| flag(o.parameters.as_ref(), "binary_data"))
        .collect();
    let binary_data_output = flag(raw.parameters.as_ref(), "binary_data_output").unwrap_or(false);
    let outputs = raw.outputs.map(unique_outputs).transpose()?;
    let budget = Budget::new(*limits);
    let mut columns = Vec::with_capacity(raw.inputs.len());
    for input in &raw.inputs {
        let size = input
            .parameters
            .as_ref()
            .and_then(|p| p.0.get("binary_data_size"))
            .map(|v| {
                v.as_u64()
                    .and_then(|n| usize::try_from(n).ok())
                    .ok_or_else(|| {
                        RequestError::bad(format!(
                            "input '{}': binary_data_size {v} is not a byte count",
                            input.name
                        ))
                    })
            })
            .transpose()?;
        let bytes = match size {
            None => None,
            Some(_) if header_len.is_none() => {
                return Err(RequestError::bad(format!(
                    "input '{}' has binary_data_size, and the request has no Inference-Header-Content-Length header saying where its JSON ends",
                    input.name
                )))
            }
            Some(n) if n > tensors.len() => {
                return Err(RequestError::bad(format!(
                    "input '{}': binary_data_size is {n}, more than the {} bytes left after the JSON header and the inputs before it",
                    input.name,
                    tensors.len()
                )))
            }
            Some(n) => {
                let (mine, rest) = tensors.split_at(n);
                tensors = rest;
                Some(mine)
            }
        };
        columns.push(decode_input(input, bytes, &budget)?);
    }
    if !tensors.is_empty() {
        return Err(RequestError::bad(format!(
            "{} bytes follow the last binary input: the binary_data_size of the inputs add up to less than the body holds",
            tensors.len()
        )));
    }
    Ok(InferRequest {
        id: raw.id,
        frame: Frame { columns },
        outputs,
        binary_outputs,
        binary_data_output,
        parameters: match raw.parameters.map(|p| p.0) {
            None | Some(Value::Null) => None,
            Some(Value::Object(map)) => Some(map),
            Some(_) => return Err(RequestError::bad("'parameters' must be a JSON object")),
        },
    })
}

/// The names of the outputs asked for; a name asked twice is refused (each would be written in
/// full again: one small request could ask for gigabytes).
fn unique_outputs(outputs: Vec<RawOutput>) -> RequestResult<Vec<String>> {
    let mut seen = std::collections::HashSet::with_capacity(outputs.len());
    let mut names = Vec::with_capacity(outputs.len());
    for o in outputs {
        if !seen.insert(o.name.clone()) {
            return Err(RequestError::limit(
                crate::error::Limit::Outputs,
                format!(
                    "output '{}' is asked for more than once in 'outputs': name each output at most once",
                    o.name
                ),
            ));
        }
        names.push(o.name);
    }
    Ok(names)
}

/// One input, from its JSON `data` or from its raw `bytes`.
fn decode_input(input: &RawInput, bytes: Option<&[u8]>, budget: &Budget) -> RequestResult<Column> {
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
    // Bounded before a value is read: the shape says what the tensor would hold.
    budget.limits.rows(shape[0])?;
    budget.take_cells(expected)?;
    let data = match (bytes, &input.data) {
        (Some(_), Some(_)) => {
            return Err(RequestError::bad(format!(
                "input '{name}' has both 'data' and binary_data_size: give one"
            )))
        }
        (Some(raw), None) => {
            let data =
                v2_binary::decode_column(name, &input.datatype, expected, raw, &budget.limits)?;
            return Ok(Column {
                name: name.clone(),
                shape,
                data,
                from_text: false,
            });
        }
        (None, Some(data)) => &data.0,
        (None, None) => {
            return Err(RequestError::bad(format!(
                "input '{name}' has no 'data' (nor parameters.binary_data_size)"
            )))
        }
    };
    // Nested data must have exactly the declared shape; flat data just the right count.
    if matches!(data, Value::Array(items) if items.first().is_some_and(Value::is_array)) {
        check_rectangular(data, &shape, name)?;
    }
    let mut leaves = Vec::with_capacity(expected.min(1 << 16));
    flatten(data, &mut leaves, expected + 1);
    if leaves.len() != expected {
        let found = if leaves.len() > expected {
            format!("more than {expected}")
        } else {
            leaves.len().to_string()
        };
        return Err(RequestError::bad(format!(
            "input '{name}' has {found} values but shape {:?} needs {expected}",
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
                .map(|(i, v)| match v.as_str() {
                    Some(s) => budget.limits.string(s.len(), name).map(|()| s.to_owned()),
                    None => Err(bad(i, &describe(v))),
                })
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

/// Row-major leaves of nested `data` (flat data is its own leaves), at most `cap` of them:
/// one more than the shape needs is enough to refuse the count.
fn flatten<'a>(v: &'a Value, out: &mut Vec<&'a Value>, cap: usize) {
    match v {
        Value::Array(items) => {
            for i in items {
                if out.len() >= cap {
                    return;
                }
                flatten(i, out, cap);
            }
        }
        other if out.len() < cap => out.push(other),
        _ => {}
    }
}

/// Writes the V2 response body. `outputs` are the model's; `requested` filters and orders them.
/// The outputs `binary` names are written as raw bytes after the JSON (each with
/// `parameters.binary_data_size` instead of `data`); the JSON's length when any is (the
/// answer's `Inference-Header-Content-Length`).
pub fn write_response(
    model_name: &str,
    model_version: &str,
    id: Option<&str>,
    outputs: &[NamedTensor],
    requested: Option<&[String]>,
    binary: &dyn Fn(&str) -> bool,
    buf: &mut Vec<u8>,
) -> RequestResult<Option<usize>> {
    let start = buf.len();
    let mut tensors: Option<Vec<u8>> = None;
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
        if binary(&o.name) {
            let raw = tensors.get_or_insert_with(Vec::new);
            let before = raw.len();
            v2_binary::write_tensor(&o.tensor.data, raw);
            let _ = write!(
                buf,
                "],\"parameters\":{{\"binary_data_size\":{}}}}}",
                raw.len() - before
            );
            continue;
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
    Ok(tensors.map(|raw| {
        let json = buf.len() - start;
        buf.extend_from_slice(&raw);
        json
    }))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use crate::protocol::test_strategies::arb_json;
    use serde_json::json;

    use super::*;
    use crate::data::tensor::{Tensor, TensorData};

    fn dec(v: Value) -> RequestResult<InferRequest> {
        decode(v.to_string().as_bytes())
    }

    fn one(name: &str, shape: Value, datatype: &str, data: Value) -> RequestResult<Column> {
        let mut r = dec(json!({"inputs": [
            {"name": name, "shape": shape, "datatype": datatype, "data": data}
        ]}))?;
        Ok(r.frame.columns.remove(0))
    }

    fn bad<T: std::fmt::Debug>(r: RequestResult<T>) -> String {
        match r {
            Err(RequestError::BadRequest(m)) => m,
            other => panic!("expected a bad request, got {other:?}"),
        }
    }

    /// A JSON header and raw tensors after it, as tritonclient.http sends them.
    fn binary_body(header: Value, tensors: &[u8]) -> (Vec<u8>, usize) {
        let mut body = header.to_string().into_bytes();
        let n = body.len();
        body.extend_from_slice(tensors);
        (body, n)
    }

    #[test]
    fn raw_tensors_after_the_json_header_are_inputs_and_outputs_can_be_raw() {
        let mut raw: Vec<u8> = [1.5f32, 2.5].iter().flat_map(|x| x.to_le_bytes()).collect();
        raw.extend_from_slice(&7i64.to_le_bytes());
        raw.extend_from_slice(&7i64.to_le_bytes());
        let (body, n) = binary_body(
            json!({"inputs": [
                {"name": "a", "shape": [2, 1], "datatype": "FP32", "parameters": {"binary_data_size": 8}},
                {"name": "j", "shape": [2], "datatype": "INT64", "data": [3, 4]},
                {"name": "b", "shape": [2], "datatype": "INT64", "parameters": {"binary_data_size": 16}}],
                "parameters": {"binary_data_output": true},
                "outputs": [{"name": "y", "parameters": {"binary_data": false}}, {"name": "z"}]}),
            &raw,
        );
        let req = decode_parts(&body, Some(n), &DecodeLimits::default()).unwrap();
        let cols = &req.frame.columns;
        assert!(matches!(&cols[0].data, ColumnData::F32(v) if v == &[1.5, 2.5]));
        assert_eq!(cols[0].shape, [2, 1]);
        assert!(matches!(&cols[1].data, ColumnData::I64(v) if v == &[3, 4]));
        assert!(matches!(&cols[2].data, ColumnData::I64(v) if v == &[7, 7]));
        assert!(!req.binary_output("y"), "its own parameter says JSON");
        assert!(req.binary_output("z"), "binary_data_output");

        let bad = |header: Value, tensors: &[u8], len: Option<usize>| {
            let (body, n) = binary_body(header, tensors);
            match decode_parts(&body, len.or(Some(n)), &DecodeLimits::default()) {
                Err(RequestError::BadRequest(m)) => m,
                other => panic!("{other:?}"),
            }
        };
        let input = |params: Value| json!({"inputs": [{"name": "a", "shape": [1], "datatype": "INT64", "parameters": params}]});
        let one = 1i64.to_le_bytes();
        assert!(bad(input(json!({"binary_data_size": 16})), &one, None)
            .contains("more than the 8 bytes left"));
        assert!(bad(
            input(json!({"binary_data_size": 8})),
            &[one, one].concat(),
            None
        )
        .contains("8 bytes follow"));
        assert!(
            bad(input(json!({"binary_data_size": -1})), &one, None).contains("not a byte count")
        );
        assert!(bad(input(json!({})), &[], None).contains("no 'data'"));
        assert!(
            bad(input(json!({"binary_data_size": 8})), &one, Some(1 << 20))
                .contains("more than the body")
        );
        let mut both = input(json!({"binary_data_size": 8}));
        both["inputs"][0]["data"] = json!([1]);
        assert!(bad(both, &one, None).contains("both 'data' and binary_data_size"));
        // Without the header, a binary input cannot be found.
        let body = input(json!({"binary_data_size": 8})).to_string();
        let m = decode_limited(body.as_bytes(), &DecodeLimits::default()).unwrap_err();
        assert!(
            m.to_string().contains("Inference-Header-Content-Length"),
            "{m}"
        );
    }

    #[test]
    fn raw_outputs_follow_the_json_and_say_their_size() {
        let outs = vec![
            tensor("y", vec![2], TensorData::I64(vec![1, 2])),
            tensor("p", vec![2], TensorData::F32(vec![0.5, 0.25])),
        ];
        let mut buf = Vec::new();
        let json_len =
            write_response("m", "1", None, &outs, None, &|n| n == "y", &mut buf).unwrap();
        let n = json_len.unwrap();
        let header: Value = serde_json::from_slice(&buf[..n]).unwrap();
        assert_eq!(header["outputs"][0]["parameters"]["binary_data_size"], 16);
        assert!(header["outputs"][0].get("data").is_none());
        assert_eq!(header["outputs"][1]["data"], json!([0.5, 0.25]));
        assert_eq!(
            &buf[n..],
            &[1i64.to_le_bytes(), 2i64.to_le_bytes()].concat()[..]
        );
        let mut plain = Vec::new();
        let none = write_response("m", "1", None, &outs, None, &|_| false, &mut plain);
        assert_eq!(none.unwrap(), None);
    }

    #[test]
    fn decodes_a_full_request() {
        let r = dec(json!({
            "id": "abc",
            "parameters": {"p": 1},
            "inputs": [
                {"name": "x", "shape": [2, 2], "datatype": "FP32", "data": [1, 2.5, 3, 4]},
                {"name": "s", "shape": [2], "datatype": "BYTES", "data": ["a", "b"],
                 "parameters": {"content_type": "str"}}
            ],
            "outputs": [{"name": "y"}, {"name": "z", "parameters": {}}]
        }))
        .unwrap();
        assert_eq!(r.id.as_deref(), Some("abc"));
        assert_eq!(r.parameters.unwrap().get("p"), Some(&json!(1)));
        assert_eq!(r.outputs, Some(vec!["y".to_owned(), "z".to_owned()]));
        r.frame.validate(10).unwrap();
        let x = r.frame.column("x").unwrap();
        assert_eq!(x.shape, vec![2, 2]);
        assert_eq!(x.data, ColumnData::F64(vec![1.0, 2.5, 3.0, 4.0]));
        assert!(!x.from_text);
        let s = r.frame.column("s").unwrap();
        assert_eq!(s.data, ColumnData::Str(vec!["a".into(), "b".into()]));
    }

    #[test]
    fn optional_fields_default_to_none() {
        let r =
            dec(json!({"inputs": [{"name": "x", "shape": [1], "datatype": "INT64", "data": [1]}]}))
                .unwrap();
        assert!(r.id.is_none() && r.outputs.is_none() && r.parameters.is_none());
    }

    #[test]
    fn nested_data_equals_flat_data() {
        let flat = one("x", json!([2, 3]), "FP64", json!([1, 2, 3, 4, 5, 6])).unwrap();
        let nested = one("x", json!([2, 3]), "FP64", json!([[1, 2, 3], [4, 5, 6]])).unwrap();
        assert_eq!(flat, nested);
        assert_eq!(nested.shape, vec![2, 3]);
    }

    #[test]
    fn every_datatype() {
        for dt in ["FP16", "FP32", "FP64"] {
            let c = one("x", json!([2]), dt, json!([1, 0.5])).unwrap();
            assert_eq!(c.data, ColumnData::F64(vec![1.0, 0.5]), "{dt}");
        }
        for dt in [
            "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64",
        ] {
            let c = one("x", json!([2]), dt, json!([0, 7])).unwrap();
            assert_eq!(c.data, ColumnData::I64(vec![0, 7]), "{dt}");
        }
        let c = one("x", json!([2]), "BOOL", json!([true, false])).unwrap();
        assert_eq!(c.data, ColumnData::Bool(vec![true, false]));
        let c = one("x", json!([1]), "BYTES", json!(["hi"])).unwrap();
        assert_eq!(c.data, ColumnData::Str(vec!["hi".into()]));
    }

    #[test]
    fn unknown_datatype_is_named() {
        let m = bad(one("x", json!([1]), "FLOAT", json!([1])));
        assert!(
            m.starts_with("input 'x' has unknown datatype 'FLOAT'"),
            "{m}"
        );
    }

    #[test]
    fn values_must_fit_the_datatype() {
        let m = bad(one("x", json!([2]), "FP32", json!([1, "a"])));
        assert_eq!(
            m,
            "input 'x' element 1 is a string, which datatype FP32 does not allow"
        );
        let m = bad(one("x", json!([1]), "INT64", json!([1.5])));
        assert!(m.contains("element 0 is the number 1.5"), "{m}");
        let m = bad(one("x", json!([1]), "BOOL", json!([1])));
        assert!(
            m.contains("element 0 is the number 1, which datatype BOOL"),
            "{m}"
        );
        let m = bad(one("x", json!([1]), "BYTES", json!([true])));
        assert!(m.contains("element 0 is the boolean true"), "{m}");
        let m = bad(one("x", json!([1]), "FP32", json!([null])));
        assert!(m.contains("element 0 is null"), "{m}");
        let m = bad(one("x", json!([1]), "FP32", json!([{"a": 1}])));
        assert!(m.contains("element 0 is an object"), "{m}");
    }

    #[test]
    fn integer_ranges_are_enforced() {
        let cases: [(&str, i128, i128); 7] = [
            ("INT8", -128, 127),
            ("INT16", -32768, 32767),
            ("INT32", i32::MIN as i128, i32::MAX as i128),
            ("INT64", i64::MIN as i128, i64::MAX as i128),
            ("UINT8", 0, 255),
            ("UINT16", 0, 65535),
            ("UINT32", 0, u32::MAX as i128),
        ];
        for (dt, lo, hi) in cases {
            let ok = one("x", json!([2]), dt, json!([lo as i64, hi as i64])).unwrap();
            assert_eq!(ok.data, ColumnData::I64(vec![lo as i64, hi as i64]), "{dt}");
            if hi < i64::MAX as i128 {
                let m = bad(one("x", json!([1]), dt, json!([(hi + 1) as i64])));
                assert!(m.contains("out of range"), "{dt}: {m}");
                assert!(m.contains(&format!("datatype {dt}")), "{m}");
            }
            if lo > i64::MIN as i128 {
                let m = bad(one("x", json!([1]), dt, json!([(lo - 1) as i64])));
                assert!(
                    m.contains(&format!("{} (out of range)", lo - 1)),
                    "{dt}: {m}"
                );
            }
        }
    }

    #[test]
    fn uint64_beyond_int64_is_refused() {
        let c = one("x", json!([1]), "UINT64", json!([i64::MAX])).unwrap();
        assert_eq!(c.data, ColumnData::I64(vec![i64::MAX]));
        let m = bad(one("x", json!([1]), "UINT64", json!([u64::MAX])));
        assert!(m.contains("beyond INT64, not supported"), "{m}");
        let m = bad(one("x", json!([1]), "UINT64", json!([-1])));
        assert!(m.contains("-1 (out of range)"), "{m}");
        let m = bad(one("x", json!([1]), "INT64", json!([u64::MAX])));
        assert!(m.contains("beyond INT64"), "{m}");
    }

    #[test]
    fn shape_checks() {
        let m = bad(one("x", json!([]), "FP32", json!([])));
        assert!(m.starts_with("input 'x' has an empty shape"), "{m}");
        let m = bad(one("x", json!([-1, 2]), "FP32", json!([1, 2])));
        assert_eq!(m, "input 'x' has a negative dimension in shape [-1, 2]");
        let m = bad(one("x", json!([i64::MAX, i64::MAX]), "FP32", json!([1])));
        assert!(m.contains("is too large"), "{m}");
        let m = bad(one("x", json!([2, 2]), "FP32", json!([1, 2, 3])));
        assert_eq!(m, "input 'x' has 3 values but shape [2, 2] needs 4");
        let m = bad(one("x", json!([1]), "FP32", json!([[1, 2]])));
        assert!(m.contains("nested deeper"), "{m}");
        let m = bad(one("x", json!([2, 2]), "FP32", json!([[1, 2, 3], [4]])));
        assert!(m.contains("input 'x' is ragged"), "{m}");
    }

    #[test]
    fn scalar_data_counts_as_one_value() {
        let c = one("x", json!([1]), "INT64", json!(5)).unwrap();
        assert_eq!(c.data, ColumnData::I64(vec![5]));
    }

    #[test]
    fn zero_rows_decode_but_fail_validation() {
        let r = dec(
            json!({"inputs": [{"name": "x", "shape": [0, 3], "datatype": "FP32", "data": []}]}),
        )
        .unwrap();
        assert!(r.frame.validate(10).is_err());
    }

    #[test]
    fn envelope_errors() {
        let m = bad(dec(json!({"inputs": []})));
        assert!(m.starts_with("'inputs' is empty"), "{m}");
        let m = bad(dec(json!({"id": "a"})));
        assert!(
            m.starts_with("the body is not a V2 inference request"),
            "{m}"
        );
        assert!(m.contains("inputs"), "{m}");
        let m = bad(dec(
            json!({"inputs": [{"name": "x", "shape": [1], "data": [1]}]}),
        ));
        assert!(m.contains("datatype"), "{m}");
        let m = bad(dec(
            json!({"id": 5, "inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}]}),
        ));
        assert!(
            m.starts_with("the body is not a V2 inference request"),
            "{m}"
        );
        for body in [&b"{"[..], b"", b"nope"] {
            match decode(body) {
                Err(RequestError::Malformed(m)) => {
                    assert!(m.starts_with("the body is not valid JSON"), "{m}")
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn duplicate_input_names_fail_validation() {
        let input = json!({"name": "x", "shape": [1], "datatype": "FP32", "data": [1]});
        let r = dec(json!({ "inputs": [input.clone(), input] })).unwrap();
        assert!(r.frame.validate(10).is_err());
    }

    // ---- responses ----

    fn tensor(name: &str, shape: Vec<usize>, data: TensorData) -> NamedTensor {
        NamedTensor {
            name: name.into(),
            tensor: Tensor { shape, data },
        }
    }

    fn outputs() -> Vec<NamedTensor> {
        vec![
            tensor("label", vec![2], TensorData::I64(vec![0, 1])),
            tensor(
                "probabilities",
                vec![2, 2],
                TensorData::F32(vec![0.75, 0.25, 0.5, f32::NAN]),
            ),
        ]
    }

    fn respond(id: Option<&str>, requested: Option<&[String]>) -> RequestResult<String> {
        let mut buf = Vec::new();
        write_response("ep", "3", id, &outputs(), requested, &|_| false, &mut buf)?;
        Ok(String::from_utf8(buf).unwrap())
    }

    #[test]
    fn response_exact_json() {
        let s = respond(Some("req \"1\""), None).unwrap();
        assert_eq!(
            s,
            concat!(
                r#"{"model_name":"ep","model_version":"3","id":"req \"1\"","outputs":["#,
                r#"{"name":"label","datatype":"INT64","shape":[2],"data":[0,1]},"#,
                r#"{"name":"probabilities","datatype":"FP32","shape":[2,2],"data":[0.75,0.25,0.5,null]}"#,
                "]}"
            )
        );
        let _: Value = serde_json::from_str(&s).unwrap();
    }

    #[test]
    fn response_without_id() {
        let s = respond(None, None).unwrap();
        assert!(
            s.starts_with(r#"{"model_name":"ep","model_version":"3","outputs":["#),
            "{s}"
        );
        assert!(!s.contains("\"id\""), "{s}");
    }

    #[test]
    fn response_filters_and_orders_outputs() {
        let req = vec!["probabilities".to_owned(), "label".to_owned()];
        let v: Value = serde_json::from_str(&respond(None, Some(&req)).unwrap()).unwrap();
        let names: Vec<&str> = v["outputs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["probabilities", "label"]);

        let req = vec!["label".to_owned()];
        let v: Value = serde_json::from_str(&respond(None, Some(&req)).unwrap()).unwrap();
        assert_eq!(
            v["outputs"],
            json!([{"name": "label", "datatype": "INT64", "shape": [2], "data": [0, 1]}])
        );
    }

    #[test]
    fn response_unknown_output_is_named() {
        let req = vec!["nope".to_owned()];
        let m = bad(respond(None, Some(&req)));
        assert_eq!(
            m,
            "unknown output 'nope': the model outputs label, probabilities"
        );
    }

    #[test]
    fn response_datatypes() {
        let outs = vec![
            tensor("a", vec![1], TensorData::F64(vec![f64::INFINITY])),
            tensor("b", vec![1], TensorData::I32(vec![-3])),
            tensor("c", vec![2], TensorData::Bool(vec![true, false])),
            tensor("d", vec![1, 1], TensorData::Str(vec!["x\ny".into()])),
        ];
        let mut buf = Vec::new();
        write_response("m", "1", None, &outs, None, &|_| false, &mut buf).unwrap();
        let v: Value = serde_json::from_slice(&buf).unwrap();
        assert_eq!(
            v["outputs"],
            json!([
                {"name": "a", "datatype": "FP64", "shape": [1], "data": [null]},
                {"name": "b", "datatype": "INT32", "shape": [1], "data": [-3]},
                {"name": "c", "datatype": "BOOL", "shape": [2], "data": [true, false]},
                {"name": "d", "datatype": "BYTES", "shape": [1, 1], "data": ["x\ny"]},
            ])
        );
    }

    // ---- properties ----

    /// Bodies shaped like V2 requests, so decoding gets past the envelope.
    fn arb_body() -> impl Strategy<Value = Value> {
        let datatype = prop::sample::select(vec![
            "BOOL", "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64",
            "FP16", "FP32", "FP64", "BYTES", "X",
        ]);
        let shape = prop::collection::vec(prop_oneof![0i64..4, any::<i64>()], 0..4);
        let input = (datatype, shape, arb_json(), "[a-b]{0,1}").prop_map(|(dt, shape, data, name)| {
            json!({"name": name, "shape": shape, "datatype": dt, "data": data})
        });
        prop_oneof![
            arb_json(),
            arb_json().prop_map(|v| json!({ "inputs": v })),
            prop::collection::vec(input, 0..3).prop_map(|inputs| json!({ "inputs": inputs })),
        ]
    }

    fn check(r: RequestResult<InferRequest>) {
        if let Ok(r) = r {
            let _ = r.frame.validate(10_000);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn arbitrary_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..256)) {
            check(decode(&body));
        }

        #[test]
        fn arbitrary_values_never_panic(v in arb_body()) {
            check(decode(v.to_string().as_bytes()));
        }

        #[test]
        fn valid_tensors_round_trip(
            (rows, width, data) in (1usize..5, 1usize..4).prop_flat_map(|(r, w)| (
                Just(r),
                Just(w),
                prop::collection::vec(any::<i32>(), r * w..=r * w),
            ))
        ) {
            let body = json!({"inputs": [
                {"name": "x", "shape": [rows, width], "datatype": "INT32", "data": data}
            ]});
            let r = decode(body.to_string().as_bytes()).unwrap();
            r.frame.validate(10_000).unwrap();
            let c = r.frame.column("x").unwrap();
            prop_assert_eq!(&c.shape, &vec![rows, width]);
            prop_assert_eq!(
                &c.data,
                &ColumnData::I64(data.iter().map(|x| i64::from(*x)).collect())
            );
        }
    }
}
