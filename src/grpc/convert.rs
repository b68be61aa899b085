//! A gRPC `ModelInfer` call in the form of V2 REST's binary tensor data extension (a JSON
//! header, then each input's raw bytes), so that it runs the one request pipeline; and the
//! answer back from that form (every output asked for as raw bytes, so its tensors are slices
//! of the answer, not copies).

use bytes::Bytes;
use serde_json::{json, Map, Value};

use super::proto::infer_parameter::ParameterChoice;
use super::proto::{
    model_infer_response, InferParameter, InferTensorContents, ModelInferRequest,
    ModelInferResponse,
};
use crate::error::{RequestError, RequestResult};
use crate::protocol::limits::DecodeLimits;

/// The body (JSON header, then raw inputs) and the header's length. The inputs are counted
/// against `limits.max_columns` before anything is built for them.
pub fn to_binary_body(
    req: &ModelInferRequest,
    limits: &DecodeLimits,
) -> RequestResult<(Vec<u8>, usize)> {
    limits.columns(req.inputs.len())?;
    let raw = &req.raw_input_contents;
    if !raw.is_empty() && raw.len() != req.inputs.len() {
        return Err(RequestError::bad(format!(
            "raw_input_contents has {} entries for {} inputs: give one per input, in input order",
            raw.len(),
            req.inputs.len()
        )));
    }
    let mut tensors: Vec<u8> = Vec::new();
    let mut inputs = Vec::with_capacity(req.inputs.len());
    for (i, input) in req.inputs.iter().enumerate() {
        let before = tensors.len();
        match (raw.get(i), &input.contents) {
            (Some(_), Some(c)) if !is_empty(c) => {
                return Err(RequestError::bad(format!(
                    "input '{}' has both contents and raw_input_contents: give one",
                    input.name
                )))
            }
            (Some(bytes), _) => tensors.extend_from_slice(bytes),
            (None, Some(c)) => typed_to_raw(&input.name, &input.datatype, c, &mut tensors)?,
            (None, None) => {
                return Err(RequestError::bad(format!(
                    "input '{}' has no contents (nor raw_input_contents)",
                    input.name
                )))
            }
        }
        inputs.push(json!({
            "name": input.name,
            "datatype": input.datatype,
            "shape": input.shape,
            "parameters": {"binary_data_size": tensors.len() - before},
        }));
    }
    let mut header = json!({ "inputs": inputs });
    if !req.id.is_empty() {
        header["id"] = json!(req.id);
    }
    let mut parameters = parameters_json(&req.parameters);
    if req.outputs.is_empty() {
        parameters.insert("binary_data_output".into(), json!(true));
    } else {
        header["outputs"] = req
            .outputs
            .iter()
            .map(|o| json!({"name": o.name, "parameters": {"binary_data": true}}))
            .collect();
    }
    header["parameters"] = Value::Object(parameters);
    let mut body =
        serde_json::to_vec(&header).map_err(|e| RequestError::Internal(e.to_string()))?;
    let header_len = body.len();
    body.extend_from_slice(&tensors);
    Ok((body, header_len))
}

fn is_empty(c: &InferTensorContents) -> bool {
    c.bool_contents.is_empty()
        && c.int_contents.is_empty()
        && c.int64_contents.is_empty()
        && c.uint_contents.is_empty()
        && c.uint64_contents.is_empty()
        && c.fp32_contents.is_empty()
        && c.fp64_contents.is_empty()
        && c.bytes_contents.is_empty()
}

/// Typed contents as raw bytes of `datatype`; a value outside the datatype's range is named.
fn typed_to_raw(
    name: &str,
    datatype: &str,
    c: &InferTensorContents,
    out: &mut Vec<u8>,
) -> RequestResult<()> {
    let range = |i: usize, x: i128| {
        RequestError::bad(format!(
            "input '{name}' element {i} is {x}, outside the range of {datatype}"
        ))
    };
    match datatype {
        "BOOL" => out.extend(c.bool_contents.iter().map(|&b| u8::from(b))),
        "INT8" | "INT16" | "INT32" => {
            for (i, &x) in c.int_contents.iter().enumerate() {
                match datatype {
                    "INT8" => out.push(i8::try_from(x).map_err(|_| range(i, x.into()))? as u8),
                    "INT16" => out.extend_from_slice(
                        &i16::try_from(x).map_err(|_| range(i, x.into()))?.to_le_bytes(),
                    ),
                    _ => out.extend_from_slice(&x.to_le_bytes()),
                }
            }
        }
        "INT64" => c
            .int64_contents
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        "UINT8" | "UINT16" | "UINT32" => {
            for (i, &x) in c.uint_contents.iter().enumerate() {
                match datatype {
                    "UINT8" => out.push(u8::try_from(x).map_err(|_| range(i, x.into()))?),
                    "UINT16" => out.extend_from_slice(
                        &u16::try_from(x).map_err(|_| range(i, x.into()))?.to_le_bytes(),
                    ),
                    _ => out.extend_from_slice(&x.to_le_bytes()),
                }
            }
        }
        "UINT64" => c
            .uint64_contents
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        "FP32" => c
            .fp32_contents
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        "FP64" => c
            .fp64_contents
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        "BYTES" => {
            for s in &c.bytes_contents {
                let len = u32::try_from(s.len()).map_err(|_| {
                    RequestError::bad(format!("input '{name}' has an element over 4 GiB"))
                })?;
                out.extend_from_slice(&len.to_le_bytes());
                out.extend_from_slice(s);
            }
        }
        "FP16" => {
            return Err(RequestError::bad(format!(
                "input '{name}' is FP16: send it in raw_input_contents (the protocol has no typed field for it)"
            )))
        }
        other => {
            return Err(RequestError::bad(format!(
                "input '{name}' has unknown datatype '{other}' (BOOL, INT8..INT64, UINT8..UINT64, FP16, FP32, FP64, BYTES)"
            )))
        }
    }
    Ok(())
}

/// A parameter map as V2 REST's `parameters` object.
fn parameters_json(
    parameters: &std::collections::HashMap<String, InferParameter>,
) -> Map<String, Value> {
    parameters
        .iter()
        .filter_map(|(k, p)| {
            let v = match p.parameter_choice.as_ref()? {
                ParameterChoice::BoolParam(b) => json!(b),
                ParameterChoice::Int64Param(i) => json!(i),
                ParameterChoice::StringParam(s) => json!(s),
                ParameterChoice::DoubleParam(d) => json!(d),
                ParameterChoice::Uint64Param(u) => json!(u),
            };
            Some((k.clone(), v))
        })
        .collect()
}

/// The answer of the binary REST form (`json_len` bytes of JSON, then each output's raw
/// bytes) as a `ModelInferResponse`.
pub fn from_binary_body(body: Bytes, json_len: Option<usize>) -> RequestResult<ModelInferResponse> {
    let internal = |m: String| RequestError::Internal(format!("the V2 answer: {m}"));
    let json_len = json_len.unwrap_or(body.len()).min(body.len());
    let header: Value =
        serde_json::from_slice(&body[..json_len]).map_err(|e| internal(e.to_string()))?;
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    let mut offset = json_len;
    let mut outputs = Vec::new();
    let mut raw = Vec::new();
    for o in header["outputs"].as_array().into_iter().flatten() {
        let size = o["parameters"]["binary_data_size"]
            .as_u64()
            .ok_or_else(|| internal(format!("output {} has no raw bytes", o["name"])))?
            as usize;
        let end = offset
            .checked_add(size)
            .filter(|&e| e <= body.len())
            .ok_or_else(|| internal("an output's bytes run past the answer".into()))?;
        raw.push(body.slice(offset..end));
        offset = end;
        outputs.push(model_infer_response::InferOutputTensor {
            name: text(&o["name"]),
            datatype: text(&o["datatype"]),
            shape: o["shape"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_i64)
                .collect(),
            parameters: Default::default(),
            contents: None,
        });
    }
    Ok(ModelInferResponse {
        model_name: text(&header["model_name"]),
        model_version: text(&header["model_version"]),
        id: text(&header["id"]),
        parameters: Default::default(),
        outputs,
        raw_output_contents: raw,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grpc::proto::model_infer_request::{InferInputTensor, InferRequestedOutputTensor};

    fn input(
        name: &str,
        datatype: &str,
        contents: Option<InferTensorContents>,
    ) -> InferInputTensor {
        InferInputTensor {
            name: name.into(),
            datatype: datatype.into(),
            shape: vec![2],
            parameters: Default::default(),
            contents,
        }
    }

    fn decode(req: &ModelInferRequest) -> RequestResult<crate::protocol::v2::InferRequest> {
        let (body, n) = to_binary_body(req, &Default::default())?;
        crate::protocol::v2::decode_parts(&body, Some(n), &Default::default())
    }

    #[test]
    fn typed_and_raw_contents_decode_alike() {
        let typed = ModelInferRequest {
            id: "r1".into(),
            inputs: vec![
                input(
                    "a",
                    "INT16",
                    Some(InferTensorContents {
                        int_contents: vec![-3, 4],
                        ..Default::default()
                    }),
                ),
                input(
                    "s",
                    "BYTES",
                    Some(InferTensorContents {
                        bytes_contents: vec![Bytes::from("x"), Bytes::from("yz")],
                        ..Default::default()
                    }),
                ),
            ],
            outputs: vec![InferRequestedOutputTensor {
                name: "p".into(),
                parameters: Default::default(),
            }],
            ..Default::default()
        };
        let req = decode(&typed).unwrap();
        assert_eq!(req.id.as_deref(), Some("r1"));
        assert!(req.binary_output("p"));
        let mut raw = typed.clone();
        raw.raw_input_contents = vec![
            Bytes::from([(-3i16).to_le_bytes(), 4i16.to_le_bytes()].concat()),
            Bytes::from([&1u32.to_le_bytes()[..], b"x", &2u32.to_le_bytes(), b"yz"].concat()),
        ];
        for i in &mut raw.inputs {
            i.contents = None;
        }
        let from_raw = decode(&raw).unwrap();
        assert_eq!(format!("{:?}", req.frame), format!("{:?}", from_raw.frame));
    }

    #[test]
    fn contents_that_do_not_fit_are_named() {
        let bad = |req: ModelInferRequest| decode(&req).unwrap_err().to_string();
        let int8 = input(
            "a",
            "INT8",
            Some(InferTensorContents {
                int_contents: vec![1, 300],
                ..Default::default()
            }),
        );
        assert!(bad(ModelInferRequest {
            inputs: vec![int8],
            ..Default::default()
        })
        .contains("element 1 is 300"));
        let none = input("a", "FP32", None);
        assert!(bad(ModelInferRequest {
            inputs: vec![none.clone()],
            ..Default::default()
        })
        .contains("no contents"));
        let extra = ModelInferRequest {
            inputs: vec![none],
            raw_input_contents: vec![Bytes::new(), Bytes::new()],
            ..Default::default()
        };
        assert!(bad(extra).contains("2 entries for 1 inputs"));
        let half = input("h", "FP16", Some(InferTensorContents::default()));
        assert!(bad(ModelInferRequest {
            inputs: vec![half],
            ..Default::default()
        })
        .contains("raw_input_contents"));
    }

    #[test]
    fn an_answers_raw_outputs_are_slices_of_it() {
        let header = br#"{"model_name":"m","model_version":"1","id":"r","outputs":[{"name":"y","datatype":"INT64","shape":[1],"parameters":{"binary_data_size":8}}]}"#;
        let body = Bytes::from([&header[..], &7i64.to_le_bytes()].concat());
        let r = from_binary_body(body, Some(header.len())).unwrap();
        assert_eq!((r.model_name.as_str(), r.id.as_str()), ("m", "r"));
        assert_eq!(r.outputs[0].shape, [1]);
        assert_eq!(&r.raw_output_contents[0][..], &7i64.to_le_bytes());
    }
}
