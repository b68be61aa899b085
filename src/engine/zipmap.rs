//! skl2onnx's default classifier export ends in a `ZipMap` node (domain `ai.onnx.ml`): its
//! probabilities come out as a sequence of maps, one `{class: probability}` per row, a type
//! neither the tensors the engines hand back nor the V2 protocol can hold. At load the graph is
//! cut before that node: the `[N, classes]` probability tensor it reads becomes the graph output
//! under the ZipMap's output name, and the class labels are kept, so the answer can still give
//! each row its map (as MLflow's pyfunc answers for such a model).

use prost::Message;
use tract_onnx::pb;

/// What was cut: the output that was a sequence of maps, and the map's keys in column order.
#[derive(Debug, Clone, PartialEq)]
pub struct ZipMapped {
    /// The graph output the ZipMap wrote (now a float `[N, classes]` tensor).
    pub output: String,
    pub classes: ClassLabels,
}

/// `classlabels_int64s` or `classlabels_strings` of the ZipMap.
#[derive(Debug, Clone, PartialEq)]
pub enum ClassLabels {
    Ints(Vec<i64>),
    Strings(Vec<String>),
}

impl ClassLabels {
    pub fn len(&self) -> usize {
        match self {
            Self::Ints(v) => v.len(),
            Self::Strings(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The keys as a JSON answer writes them (object keys are strings: `1` becomes `"1"`).
    pub fn keys(&self) -> Vec<String> {
        match self {
            Self::Ints(v) => v.iter().map(i64::to_string).collect(),
            Self::Strings(v) => v.clone(),
        }
    }
}

const ML_DOMAIN: &str = "ai.onnx.ml";

/// The graph without its `ZipMap` output node, when it has one. A ZipMap whose output is not a
/// graph output is left (the engine then says what it cannot run); errors complete "the model
/// ...".
pub fn unzip(onnx: &[u8]) -> Result<Option<(Vec<u8>, ZipMapped)>, String> {
    // Most models have no ZipMap: skip the decode unless the op name is in the bytes.
    if !onnx.windows(6).any(|w| w == b"ZipMap") {
        return Ok(None);
    }
    let mut model = pb::ModelProto::decode(onnx).map_err(|e| format!("is not ONNX: {e}"))?;
    let Some(graph) = model.graph.as_mut() else {
        return Ok(None);
    };
    let Some(at) = graph.node.iter().position(|n| {
        n.op_type == "ZipMap"
            && n.domain == ML_DOMAIN
            && n.input.len() == 1
            && n.output.len() == 1
            && graph.output.iter().any(|o| o.name == n.output[0])
    }) else {
        return Ok(None);
    };
    let zipmap = graph.node.remove(at);
    let (probabilities, output) = (zipmap.input[0].clone(), zipmap.output[0].clone());
    if graph.node.iter().any(|n| n.input.contains(&output)) {
        return Err(format!(
            "has a ZipMap output '{output}' that other nodes read: it cannot be cut"
        ));
    }
    // A renamed tensor would have to be renamed inside subgraphs too: not done, so refused.
    if graph.node.iter().any(|n| {
        n.attribute
            .iter()
            .any(|a| a.g.is_some() || !a.graphs.is_empty())
    }) {
        return Err(format!(
            "has subgraphs (If, Loop, Scan) beside its ZipMap '{output}': export it with zipmap=False"
        ));
    }
    let classes = class_labels(&zipmap)?;
    // The tensor the ZipMap read takes the output's name, wherever it is written or read
    // (another output may also be that tensor).
    for node in &mut graph.node {
        for name in node.output.iter_mut().chain(node.input.iter_mut()) {
            if *name == probabilities {
                *name = output.clone();
            }
        }
    }
    // The probabilities may be a graph output already: one output of that name stays, the
    // ZipMap's (in its place).
    graph.output.retain(|o| o.name != probabilities);
    graph.value_info.retain(|v| v.name != probabilities);
    let out = graph
        .output
        .iter_mut()
        .find(|o| o.name == output)
        .ok_or_else(|| format!("has no graph output '{output}'"))?;
    // ZipMap takes float probabilities only (the ONNX-ML spec), so its input is float.
    out.r#type = Some(probability_type(classes.len()));
    let mut bytes = Vec::with_capacity(onnx.len());
    model.encode(&mut bytes).map_err(|e| e.to_string())?;
    Ok(Some((bytes, ZipMapped { output, classes })))
}

fn class_labels(node: &pb::NodeProto) -> Result<ClassLabels, String> {
    let attr = |name: &str| node.attribute.iter().find(|a| a.name == name);
    let labels = match (attr("classlabels_int64s"), attr("classlabels_strings")) {
        (Some(ints), None) => ClassLabels::Ints(ints.ints.clone()),
        (None, Some(strings)) => ClassLabels::Strings(
            strings
                .strings
                .iter()
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect(),
        ),
        _ => return Err(
            "has a ZipMap with neither classlabels_int64s nor classlabels_strings (it needs one)"
                .into(),
        ),
    };
    if labels.is_empty() {
        return Err("has a ZipMap with no class labels".into());
    }
    Ok(labels)
}

/// `float[N, classes]`.
fn probability_type(classes: usize) -> pb::TypeProto {
    use pb::tensor_shape_proto::{dimension::Value, Dimension};
    let dim = |value| Dimension {
        value: Some(value),
        ..Default::default()
    };
    pb::TypeProto {
        value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
            elem_type: pb::tensor_proto::DataType::Float as i32,
            shape: Some(pb::TensorShapeProto {
                dim: vec![
                    dim(Value::DimParam("N".into())),
                    dim(Value::DimValue(classes as i64)),
                ],
            }),
        })),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::tensor::{ElemType, Tensor, TensorData};
    use crate::engine::outputs::OutputMapping;
    use crate::engine::{EngineChoice, Engines};
    use pb::attribute_proto::AttributeType;

    fn tensor_type(elem: pb::tensor_proto::DataType, dims: &[Option<i64>]) -> pb::TypeProto {
        use pb::tensor_shape_proto::{dimension::Value, Dimension};
        pb::TypeProto {
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type: elem as i32,
                shape: Some(pb::TensorShapeProto {
                    dim: dims
                        .iter()
                        .map(|d| Dimension {
                            value: Some(match d {
                                Some(n) => Value::DimValue(*n),
                                None => Value::DimParam("N".into()),
                            }),
                            ..Default::default()
                        })
                        .collect(),
                }),
            })),
            ..Default::default()
        }
    }

    fn node(op: &str, domain: &str, inputs: &[&str], output: &str) -> pb::NodeProto {
        pb::NodeProto {
            op_type: op.into(),
            domain: domain.into(),
            name: format!("{op}_{output}"),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.into()],
            ..Default::default()
        }
    }

    fn int_attr(name: &str, kind: AttributeType, i: i64, ints: Vec<i64>) -> pb::AttributeProto {
        pb::AttributeProto {
            name: name.into(),
            r#type: kind as i32,
            i,
            ints,
            ..Default::default()
        }
    }

    /// What skl2onnx's default classifier export ends with: label and probabilities, the
    /// probabilities through a ZipMap with class labels 0 and 1.
    fn zipmap_model() -> Vec<u8> {
        use pb::tensor_proto::DataType;
        let mut argmax = node("ArgMax", "", &["X"], "output_label");
        argmax.attribute = vec![
            int_attr("axis", AttributeType::Int, 1, vec![]),
            int_attr("keepdims", AttributeType::Int, 0, vec![]),
        ];
        let mut zipmap = node(
            "ZipMap",
            ML_DOMAIN,
            &["probabilities"],
            "output_probability",
        );
        zipmap.attribute = vec![int_attr(
            "classlabels_int64s",
            AttributeType::Ints,
            0,
            vec![0, 1],
        )];
        let value = |name: &str, t| pb::ValueInfoProto {
            name: name.into(),
            r#type: t,
            ..Default::default()
        };
        crate::engine::test_models::encode(pb::GraphProto {
            name: "g".into(),
            node: vec![
                node("Identity", "", &["X"], "probabilities"),
                argmax,
                zipmap,
            ],
            input: vec![value(
                "X",
                Some(tensor_type(DataType::Float, &[None, Some(2)])),
            )],
            output: vec![
                value("output_label", Some(tensor_type(DataType::Int64, &[None]))),
                // A sequence of maps: a type this proto cannot spell, left empty.
                value("output_probability", None),
            ],
            ..Default::default()
        })
    }

    #[test]
    fn a_zipmap_output_becomes_the_probability_tensor_and_answers_a_map_per_row() {
        let (cut, zipped) = unzip(&zipmap_model()).unwrap().unwrap();
        assert_eq!(
            zipped,
            ZipMapped {
                output: "output_probability".into(),
                classes: ClassLabels::Ints(vec![0, 1]),
            }
        );
        // The pure-Rust engine runs what is left (it has no ZipMap).
        let engines = Engines::init(None, 1, false).unwrap();
        let model = engines.load(EngineChoice::Tract, &cut).unwrap();
        let names: Vec<&str> = model.outputs().iter().map(|o| o.name.as_str()).collect();
        assert_eq!(names, ["output_label", "output_probability"]);
        assert_eq!(model.outputs()[1].elem, ElemType::F32);
        let x = Tensor {
            shape: vec![2, 2],
            data: TensorData::F32(vec![0.25, 0.75, 0.9, 0.1]),
        };
        let outputs = model.run(0, vec![x]).unwrap();
        let mapping = OutputMapping::compile_with(model.outputs(), Some(&zipped));
        let mut json = Vec::new();
        mapping.write_predictions(&outputs, 2, &mut json);
        assert_eq!(
            String::from_utf8(json).unwrap(),
            r#"[{"output_label":1,"output_probability":{"0":0.25,"1":0.75}},{"output_label":0,"output_probability":{"0":0.9,"1":0.1}}]"#
        );
        // Monitoring still reads the positive class's probability.
        let mut seen = Vec::new();
        mapping.for_each_probability(&outputs, 2, |p| seen.push(p));
        assert_eq!(seen, [0.75, 0.10000000149011612]);
    }

    #[test]
    fn probabilities_that_are_an_output_already_leave_one_output_of_the_name() {
        let mut both = pb::ModelProto::decode(zipmap_model().as_slice()).unwrap();
        let graph = both.graph.as_mut().unwrap();
        graph.output.push(pb::ValueInfoProto {
            name: "probabilities".into(),
            ..Default::default()
        });
        let (cut, _) = unzip(&both.encode_to_vec()).unwrap().unwrap();
        let cut = pb::ModelProto::decode(cut.as_slice()).unwrap();
        let names: Vec<String> = cut
            .graph
            .unwrap()
            .output
            .into_iter()
            .map(|o| o.name)
            .collect();
        assert_eq!(names, ["output_label", "output_probability"]);
    }

    #[test]
    fn a_model_without_zipmap_is_left_as_it_is() {
        // Relative to the package root, where cargo runs the tests.
        let plain = std::fs::read("models/transactions/1/model.onnx").unwrap();
        assert_eq!(unzip(&plain).unwrap(), None);
        let mut no_labels = pb::ModelProto::decode(zipmap_model().as_slice()).unwrap();
        no_labels.graph.as_mut().unwrap().node[2].attribute.clear();
        let e = unzip(&no_labels.encode_to_vec()).unwrap_err();
        assert!(
            e.contains("neither classlabels_int64s nor classlabels_strings"),
            "{e}"
        );
    }
}
