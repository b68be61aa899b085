//! Turns a model's output tensors into MLflow `predictions`, by a mapping fixed at load time.
//!
//! - classifier (an integer or string `label` output and a float `probabilities` `[N, K]`
//!   output, as skl2onnx exports with `zipmap=False`): one record per row,
//!   `{"label": l, "probability": p}` with `p` the probability of class 1 when `K = 2`, or
//!   `{"label": l, "probabilities": [...]}` for more classes; a classifier whose probabilities
//!   came out of a ZipMap (skl2onnx's default, cut at load: [`super::zipmap`]) answers as
//!   MLflow's pyfunc does, each output by name and the probabilities as a map per row:
//!   `{"output_label": l, "output_probability": {"0": p0, "1": p1}}`;
//! - one output (a regressor's `variable`, say): one value per row, a list when the row is a
//!   tensor;
//! - anything else: one record per row with every output by name.

use std::sync::Arc;

use super::tensor::TensorSpec;
use super::zipmap::ZipMapped;
use crate::data::tensor::{ElemType, NamedTensor, TensorData};
use crate::protocol::json_write::{write_json_str, write_value};

#[derive(Debug, Clone, PartialEq)]
pub enum OutputMapping {
    Classifier {
        label: usize,
        probabilities: usize,
        binary: bool,
        /// The probabilities were a ZipMap's: written as a map per row.
        zipped: Option<Arc<Zipped>>,
    },
    Single(usize),
    Records,
}

/// What a ZipMapped classifier's answer writes, made once at load: the two outputs' names and
/// the map's keys as JSON strings.
#[derive(Debug, Clone, PartialEq)]
pub struct Zipped {
    label_key: Vec<u8>,
    probabilities_key: Vec<u8>,
    class_keys: Vec<Vec<u8>>,
}

fn json_key(s: &str) -> Vec<u8> {
    let mut buf = Vec::with_capacity(s.len() + 3);
    write_json_str(s, &mut buf);
    buf.push(b':');
    buf
}

impl OutputMapping {
    pub fn compile(outputs: &[TensorSpec]) -> Self {
        Self::compile_with(outputs, None)
    }

    /// As [`OutputMapping::compile`], for a model whose ZipMap was cut at load (`zipped`).
    pub fn compile_with(outputs: &[TensorSpec], zipped: Option<&ZipMapped>) -> Self {
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
                // A dynamic class count may still be 2: the encoder checks the actual width.
                binary: matches!(outputs[probabilities].shape[1], Some(2) | None),
                zipped: zipped
                    .filter(|z| z.output == outputs[probabilities].name)
                    .map(|z| {
                        Arc::new(Zipped {
                            label_key: json_key(&outputs[label].name),
                            probabilities_key: json_key(&z.output),
                            class_keys: z.classes.keys().iter().map(|k| json_key(k)).collect(),
                        })
                    }),
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
            self.write_prediction(outputs, r, buf);
        }
        buf.push(b']');
    }

    /// Writes row `r`'s prediction (one element of `predictions`).
    pub fn write_prediction(&self, outputs: &[NamedTensor], r: usize, buf: &mut Vec<u8>) {
        match self {
            Self::Classifier {
                label,
                probabilities,
                zipped: Some(z),
                ..
            } => {
                buf.push(b'{');
                buf.extend_from_slice(&z.label_key);
                write_row(&outputs[*label], r, buf);
                buf.push(b',');
                buf.extend_from_slice(&z.probabilities_key);
                buf.push(b'{');
                let p = &outputs[*probabilities].tensor;
                let width = p.row_width();
                for (k, key) in z.class_keys.iter().enumerate().take(width) {
                    if k > 0 {
                        buf.push(b',');
                    }
                    buf.extend_from_slice(key);
                    write_value(&p.data, r * width + k, buf);
                }
                buf.extend_from_slice(b"}}");
            }
            Self::Classifier {
                label,
                probabilities,
                binary,
                zipped: None,
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

    /// Calls `f` with each row's predicted probability, for classifiers: the positive class's
    /// of a binary classifier, else the top class's. Other models have none.
    pub fn for_each_probability(
        &self,
        outputs: &[NamedTensor],
        rows: usize,
        mut f: impl FnMut(f64),
    ) {
        let Self::Classifier { probabilities, .. } = self else {
            return;
        };
        let t = &outputs[*probabilities].tensor;
        let k = t.row_width();
        if k == 0 || t.shape.first() != Some(&rows) {
            return;
        }
        let value = |i: usize| match &t.data {
            TensorData::F32(v) => v.get(i).map(|&x| f64::from(x)),
            TensorData::F64(v) => v.get(i).copied(),
            _ => None,
        };
        for r in 0..rows {
            let p = if k == 2 {
                value(r * 2 + 1)
            } else {
                (0..k)
                    .filter_map(|j| value(r * k + j))
                    .fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.max(x))))
            };
            if let Some(p) = p.filter(|p| p.is_finite()) {
                f(p);
            }
        }
    }
}

/// Checks that every output has one row per input row, which the encoders rely on.
pub fn check_rows(outputs: &[NamedTensor], rows: usize) -> Result<(), String> {
    match outputs
        .iter()
        .find(|o| o.tensor.shape.first() != Some(&rows))
    {
        Some(o) => Err(format!(
            "the model's output '{}' has shape {:?}, not one row per input row ({rows})",
            o.name, o.tensor.shape
        )),
        None => Ok(()),
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

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;
    use crate::data::tensor::Tensor;

    fn spec(name: &str, elem: ElemType, shape: &[Option<usize>]) -> TensorSpec {
        TensorSpec::new(name, elem, shape)
    }

    fn out(name: &str, shape: Vec<usize>, data: TensorData) -> NamedTensor {
        NamedTensor {
            name: name.into(),
            tensor: Tensor { shape, data },
        }
    }

    fn write(m: &OutputMapping, outputs: &[NamedTensor], rows: usize) -> String {
        let mut buf = Vec::new();
        m.write_predictions(outputs, rows, &mut buf);
        let s = String::from_utf8(buf).unwrap();
        let _: Value = serde_json::from_str(&s).unwrap_or_else(|e| panic!("{s}: {e}"));
        s
    }

    const N: Option<usize> = None;

    // ---- compile ----

    #[test]
    fn compile_binary_classifier() {
        let m = OutputMapping::compile(&[
            spec("output_label", ElemType::I64, &[N]),
            spec("output_probability", ElemType::F32, &[N, Some(2)]),
        ]);
        assert_eq!(
            m,
            OutputMapping::Classifier {
                label: 0,
                probabilities: 1,
                binary: true,
                zipped: None,
            }
        );
        assert_eq!(m.kind(), "classifier");
    }

    #[test]
    fn compile_multiclass_classifier_in_any_order_and_case() {
        let m = OutputMapping::compile(&[
            spec("Probabilities", ElemType::F64, &[N, Some(3)]),
            spec("LABEL", ElemType::Str, &[N]),
        ]);
        assert_eq!(
            m,
            OutputMapping::Classifier {
                label: 1,
                probabilities: 0,
                binary: false,
                zipped: None,
            }
        );
        let m = OutputMapping::compile(&[
            spec("label", ElemType::I32, &[N]),
            spec("probabilities", ElemType::F32, &[N, N]),
        ]);
        assert_eq!(
            m,
            OutputMapping::Classifier {
                label: 0,
                probabilities: 1,
                binary: true,
                zipped: None,
            }
        );
    }

    #[test]
    fn compile_not_a_classifier() {
        // A float label.
        let m = OutputMapping::compile(&[
            spec("label", ElemType::F32, &[N]),
            spec("probabilities", ElemType::F32, &[N, Some(2)]),
        ]);
        assert_eq!(m, OutputMapping::Records);
        // Probabilities not of rank 2.
        let m = OutputMapping::compile(&[
            spec("label", ElemType::I64, &[N]),
            spec("probabilities", ElemType::F32, &[N]),
        ]);
        assert_eq!(m, OutputMapping::Records);
        // Integer probabilities.
        let m = OutputMapping::compile(&[
            spec("label", ElemType::I64, &[N]),
            spec("probabilities", ElemType::I64, &[N, Some(2)]),
        ]);
        assert_eq!(m, OutputMapping::Records);
        // A third output.
        let m = OutputMapping::compile(&[
            spec("label", ElemType::I64, &[N]),
            spec("probabilities", ElemType::F32, &[N, Some(2)]),
            spec("extra", ElemType::F32, &[N]),
        ]);
        assert_eq!(m, OutputMapping::Records);
        assert_eq!(m.kind(), "records");
    }

    #[test]
    fn compile_single_output() {
        let m = OutputMapping::compile(&[spec("variable", ElemType::F32, &[N, Some(1)])]);
        assert_eq!(m, OutputMapping::Single(0));
        assert_eq!(m.kind(), "single output");
        // A lone label is a single output too.
        let m = OutputMapping::compile(&[spec("label", ElemType::I64, &[N])]);
        assert_eq!(m, OutputMapping::Single(0));
        assert_eq!(OutputMapping::compile(&[]), OutputMapping::Records);
    }

    // ---- write_predictions ----

    #[test]
    fn binary_classifier_gives_probability_of_class_one() {
        let m = OutputMapping::Classifier {
            label: 0,
            probabilities: 1,
            binary: true,
            zipped: None,
        };
        let outputs = [
            out("label", vec![2], TensorData::I64(vec![0, 1])),
            out(
                "probabilities",
                vec![2, 2],
                TensorData::F32(vec![0.75, 0.25, 0.5, 0.5]),
            ),
        ];
        assert_eq!(
            write(&m, &outputs, 2),
            r#"[{"label":0,"probability":0.25},{"label":1,"probability":0.5}]"#
        );
    }

    #[test]
    fn multiclass_classifier_gives_all_probabilities() {
        let m = OutputMapping::Classifier {
            label: 1,
            probabilities: 0,
            binary: false,
            zipped: None,
        };
        let outputs = [
            out(
                "probabilities",
                vec![2, 3],
                TensorData::F64(vec![0.5, 0.25, 0.25, 0.0, 0.0, 1.0]),
            ),
            out(
                "label",
                vec![2, 1],
                TensorData::Str(vec!["cat".into(), "dog".into()]),
            ),
        ];
        assert_eq!(
            write(&m, &outputs, 2),
            r#"[{"label":"cat","probabilities":[0.5,0.25,0.25]},{"label":"dog","probabilities":[0.0,0.0,1.0]}]"#
        );
    }

    #[test]
    fn binary_flag_with_other_runtime_width_lists_probabilities() {
        let m = OutputMapping::Classifier {
            label: 0,
            probabilities: 1,
            binary: true,
            zipped: None,
        };
        let outputs = [
            out("label", vec![1], TensorData::I64(vec![2])),
            out(
                "probabilities",
                vec![1, 3],
                TensorData::F32(vec![0.25, 0.25, 0.5]),
            ),
        ];
        assert_eq!(
            write(&m, &outputs, 1),
            r#"[{"label":2,"probabilities":[0.25,0.25,0.5]}]"#
        );
    }

    #[test]
    fn dynamic_width_binary_classifier_gives_probability() {
        let m = OutputMapping::compile(&[
            spec("label", ElemType::I64, &[N]),
            spec("probabilities", ElemType::F32, &[N, N]),
        ]);
        let outputs = [
            out("label", vec![1], TensorData::I64(vec![1])),
            out(
                "probabilities",
                vec![1, 2],
                TensorData::F32(vec![0.25, 0.75]),
            ),
        ];
        assert_eq!(
            write(&m, &outputs, 1),
            r#"[{"label":1,"probability":0.75}]"#
        );
    }

    #[test]
    fn single_output_scalars_and_lists() {
        let m = OutputMapping::Single(0);
        let o = [out(
            "variable",
            vec![3],
            TensorData::F32(vec![1.5, -2.0, 0.1]),
        )];
        assert_eq!(write(&m, &o, 3), "[1.5,-2.0,0.1]");
        let o = [out("variable", vec![2, 1], TensorData::F64(vec![1.0, 2.0]))];
        assert_eq!(write(&m, &o, 2), "[1.0,2.0]");
        let o = [out("y", vec![2, 2], TensorData::I32(vec![1, 2, 3, 4]))];
        assert_eq!(write(&m, &o, 2), "[[1,2],[3,4]]");
        // Higher-rank rows are flattened.
        let o = [out("y", vec![1, 2, 2], TensorData::I64(vec![1, 2, 3, 4]))];
        assert_eq!(write(&m, &o, 1), "[[1,2,3,4]]");
        let o = [out("y", vec![2], TensorData::Bool(vec![true, false]))];
        assert_eq!(write(&m, &o, 2), "[true,false]");
        let o = [out("y", vec![1], TensorData::Str(vec!["a\"b".into()]))];
        assert_eq!(write(&m, &o, 1), r#"["a\"b"]"#);
    }

    #[test]
    fn no_rows_is_an_empty_list() {
        let o = [out("y", vec![0], TensorData::F32(vec![]))];
        assert_eq!(write(&OutputMapping::Single(0), &o, 0), "[]");
    }

    #[test]
    fn records_name_every_output() {
        let m = OutputMapping::Records;
        let o = [
            out("a", vec![2], TensorData::F32(vec![1.0, 2.0])),
            out("b", vec![2, 2], TensorData::I64(vec![1, 2, 3, 4])),
        ];
        assert_eq!(
            write(&m, &o, 2),
            r#"[{"a":1.0,"b":[1,2]},{"a":2.0,"b":[3,4]}]"#
        );
    }

    #[test]
    fn non_finite_values_become_null() {
        let m = OutputMapping::Single(0);
        let o = [out(
            "y",
            vec![3],
            TensorData::F32(vec![f32::NAN, f32::INFINITY, f32::NEG_INFINITY]),
        )];
        assert_eq!(write(&m, &o, 3), "[null,null,null]");
        let o = [out("y", vec![1, 2], TensorData::F64(vec![f64::NAN, 1.0]))];
        assert_eq!(write(&m, &o, 1), "[[null,1.0]]");
        let m = OutputMapping::Classifier {
            label: 0,
            probabilities: 1,
            binary: true,
            zipped: None,
        };
        let o = [
            out("label", vec![1], TensorData::I64(vec![1])),
            out(
                "probabilities",
                vec![1, 2],
                TensorData::F32(vec![0.5, f32::NAN]),
            ),
        ];
        assert_eq!(write(&m, &o, 1), r#"[{"label":1,"probability":null}]"#);
    }

    #[test]
    fn floats_print_shortest_round_trip_text() {
        let m = OutputMapping::Single(0);
        let o = [out("y", vec![2], TensorData::F32(vec![0.1, 1e-7]))];
        let v: Value = serde_json::from_str(&write(&m, &o, 2)).unwrap();
        assert_eq!(v, json!([0.1, 1e-7]));
        let o = [out("y", vec![1], TensorData::F64(vec![0.1 + 0.2]))];
        let v: Value = serde_json::from_str(&write(&m, &o, 1)).unwrap();
        assert_eq!(v[0].as_f64(), Some(0.1 + 0.2));
    }

    #[test]
    fn output_with_fewer_rows_than_the_request_does_not_panic() {
        let o = [out("y", vec![], TensorData::F32(vec![1.0]))];
        let r = std::panic::catch_unwind(|| {
            let mut buf = Vec::new();
            OutputMapping::Single(0).write_predictions(&o, 2, &mut buf);
        });
        assert!(r.is_ok(), "write_predictions panicked");
    }
}
