//! Turns a model's output tensors into MLflow `predictions`, by a mapping fixed at load time.
//!
//! - classifier (an integer or string `label` output and a float `probabilities` `[N, K]`
//!   output, as skl2onnx exports with `zipmap=False`): one record per row,
//!   `{"label": l, "probability": p}` with `p` the probability of class 1 when `K = 2`, or
//!   `{"label": l, "probabilities": [...]}` for more classes;
//! - one output (a regressor's `variable`, say): one value per row, a list when the row is a
//!   tensor;
//! - anything else: one record per row with every output by name.

use std::io::Write;

use super::tensor::{ElemType, NamedTensor, TensorData, TensorSpec};

#[derive(Debug, Clone, PartialEq)]
pub enum OutputMapping {
    Classifier {
        label: usize,
        probabilities: usize,
        binary: bool,
    },
    Single(usize),
    Records,
}

impl OutputMapping {
    pub fn compile(outputs: &[TensorSpec]) -> Self {
        let label = outputs.iter().position(|o| {
            o.name.to_ascii_lowercase().ends_with("label")
                && matches!(o.elem, ElemType::I64 | ElemType::I32 | ElemType::Str)
        });
        let proba = outputs.iter().position(|o| {
            o.name.to_ascii_lowercase().contains("probabilit")
                && matches!(o.elem, ElemType::F32 | ElemType::F64)
                && o.shape.len() == 2
        });
        match (label, proba) {
            (Some(label), Some(probabilities)) if outputs.len() == 2 => Self::Classifier {
                label,
                probabilities,
                binary: outputs[probabilities].shape[1] == Some(2),
            },
            _ if outputs.len() == 1 => Self::Single(0),
            _ => Self::Records,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Self::Classifier { .. } => "classifier",
            Self::Single(_) => "single output",
            Self::Records => "records",
        }
    }

    /// Writes the JSON array of predictions for `rows` rows.
    pub fn write_predictions(&self, outputs: &[NamedTensor], rows: usize, buf: &mut Vec<u8>) {
        buf.push(b'[');
        for r in 0..rows {
            if r > 0 {
                buf.push(b',');
            }
            match self {
                Self::Classifier {
                    label,
                    probabilities,
                    binary,
                } => {
                    buf.extend_from_slice(b"{\"label\":");
                    write_row(&outputs[*label], r, buf);
                    let p = &outputs[*probabilities].tensor;
                    if *binary && p.shape.get(1) == Some(&2) {
                        buf.extend_from_slice(b",\"probability\":");
                        write_value(&p.data, r * 2 + 1, buf);
                    } else {
                        buf.extend_from_slice(b",\"probabilities\":");
                        write_row(&outputs[*probabilities], r, buf);
                    }
                    buf.push(b'}');
                }
                Self::Single(i) => write_row(&outputs[*i], r, buf),
                Self::Records => {
                    buf.push(b'{');
                    for (k, o) in outputs.iter().enumerate() {
                        if k > 0 {
                            buf.push(b',');
                        }
                        write_json_str(&o.name, buf);
                        buf.push(b':');
                        write_row(o, r, buf);
                    }
                    buf.push(b'}');
                }
            }
        }
        buf.push(b']');
    }
}

/// Row `r` of an output: a scalar when the row has one value, else a flat list.
fn write_row(o: &NamedTensor, r: usize, buf: &mut Vec<u8>) {
    let t = &o.tensor;
    let width = t.row_width().max(1);
    if t.shape.len() <= 1 || (t.shape.len() == 2 && width == 1) {
        write_value(&t.data, r * width, buf);
    } else {
        buf.push(b'[');
        for k in 0..width {
            if k > 0 {
                buf.push(b',');
            }
            write_value(&t.data, r * width + k, buf);
        }
        buf.push(b']');
    }
}

/// One element as JSON; non-finite floats become `null` (JSON has no NaN).
pub fn write_value(data: &TensorData, i: usize, buf: &mut Vec<u8>) {
    match data {
        TensorData::F32(v) => write_f32(v[i], buf),
        TensorData::F64(v) => write_f64(v[i], buf),
        TensorData::I64(v) => {
            let _ = write!(buf, "{}", v[i]);
        }
        TensorData::I32(v) => {
            let _ = write!(buf, "{}", v[i]);
        }
        TensorData::Bool(v) => buf.extend_from_slice(if v[i] { b"true" } else { b"false" }),
        TensorData::Str(v) => write_json_str(&v[i], buf),
    }
}

fn write_f32(x: f32, buf: &mut Vec<u8>) {
    if x.is_finite() {
        // serde_json prints the shortest text that reads back as the same f32.
        let _ = serde_json::to_writer(&mut *buf, &x);
    } else {
        buf.extend_from_slice(b"null");
    }
}

fn write_f64(x: f64, buf: &mut Vec<u8>) {
    if x.is_finite() {
        let _ = serde_json::to_writer(&mut *buf, &x);
    } else {
        buf.extend_from_slice(b"null");
    }
}

pub fn write_json_str(s: &str, buf: &mut Vec<u8>) {
    let _ = serde_json::to_writer(&mut *buf, s);
}
