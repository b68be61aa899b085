//! ONNX-ML operators tract lacks, rewritten as standard ONNX before tract reads the graph, so
//! the pure-Rust engine serves the most common scikit-learn pipelines too. ONNX Runtime gets
//! the graph as it is.
//!
//! - `Scaler` (what `StandardScaler` and `MinMaxScaler` become): `Y = (float(X) - offset) *
//!   scale`, as `Cast`, `Sub` and `Mul` with the offsets and scales as initializers; the same
//!   float arithmetic ONNX Runtime's kernel does.
//! - `FeatureVectorizer` (how skl2onnx joins one input per DataFrame column): each input cast to
//!   float, then `Concat` along the columns.

use tract_onnx::pb;

const ML_DOMAIN: &str = "ai.onnx.ml";

/// Rewrites every operator of the list above in `model`'s main graph, and names the input
/// dimensions skl2onnx leaves unnamed (tract cannot type a graph from an anonymous one).
pub fn for_tract(model: &mut pb::ModelProto) {
    let Some(graph) = model.graph.as_mut() else {
        return;
    };
    name_open_dimensions(graph);
    let nodes = std::mem::take(&mut graph.node);
    for node in nodes {
        match (node.op_type.as_str(), node.domain.as_str()) {
            ("Scaler", ML_DOMAIN) if node.input.len() == 1 => lower_scaler(graph, node),
            ("FeatureVectorizer", ML_DOMAIN) if !node.input.is_empty() => {
                lower_feature_vectorizer(graph, node)
            }
            _ => graph.node.push(node),
        }
    }
}

/// A dimension with neither a size nor a name becomes `N` (the batch's rows, in the exports
/// that leave it so).
fn name_open_dimensions(graph: &mut pb::GraphProto) {
    use pb::tensor_shape_proto::dimension::Value;
    for input in &mut graph.input {
        let Some(pb::type_proto::Value::TensorType(t)) =
            input.r#type.as_mut().and_then(|t| t.value.as_mut())
        else {
            continue;
        };
        for dim in t.shape.iter_mut().flat_map(|s| s.dim.iter_mut()) {
            let open = match &dim.value {
                None => true,
                Some(Value::DimParam(p)) => p.is_empty(),
                Some(Value::DimValue(_)) => false,
            };
            if open {
                dim.value = Some(Value::DimParam("N".into()));
            }
        }
    }
}

/// A `Cast` to float of `input` into `output`.
fn cast_to_float(name: String, input: String, output: String) -> pb::NodeProto {
    pb::NodeProto {
        op_type: "Cast".into(),
        name,
        input: vec![input],
        output: vec![output],
        attribute: vec![pb::AttributeProto {
            name: "to".into(),
            r#type: pb::attribute_proto::AttributeType::Int as i32,
            i: pb::tensor_proto::DataType::Float as i64,
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn lower_feature_vectorizer(graph: &mut pb::GraphProto, node: pb::NodeProto) {
    let y = node.output[0].clone();
    let mut floats = Vec::with_capacity(node.input.len());
    for (i, input) in node.input.iter().enumerate() {
        let cast = format!("{y}__vectorizer_{i}");
        graph
            .node
            .push(cast_to_float(cast.clone(), input.clone(), cast.clone()));
        floats.push(cast);
    }
    graph.node.push(pb::NodeProto {
        op_type: "Concat".into(),
        name: format!("{y}__vectorizer_concat"),
        input: floats,
        output: vec![y],
        attribute: vec![pb::AttributeProto {
            name: "axis".into(),
            r#type: pb::attribute_proto::AttributeType::Int as i32,
            i: 1,
            ..Default::default()
        }],
        ..Default::default()
    });
}

fn lower_scaler(graph: &mut pb::GraphProto, node: pb::NodeProto) {
    let floats = |name: &str, default: f32| {
        node.attribute
            .iter()
            .find(|a| a.name == name)
            .map(|a| a.floats.clone())
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| vec![default])
    };
    let (x, y) = (node.input[0].clone(), node.output[0].clone());
    let name = |part: &str| format!("{y}__scaler_{part}");
    for (part, values) in [
        ("offset", floats("offset", 0.0)),
        ("scale", floats("scale", 1.0)),
    ] {
        graph.initializer.push(pb::TensorProto {
            name: name(part),
            dims: vec![values.len() as i64],
            data_type: pb::tensor_proto::DataType::Float as i32,
            float_data: values,
            ..Default::default()
        });
    }
    let step = |op: &str, inputs: Vec<String>, output: String| pb::NodeProto {
        op_type: op.into(),
        name: name(&op.to_ascii_lowercase()),
        input: inputs,
        output: vec![output],
        ..Default::default()
    };
    graph
        .node
        .push(cast_to_float(name("cast"), x, name("float")));
    graph.node.push(step(
        "Sub",
        vec![name("float"), name("offset")],
        name("centred"),
    ));
    graph
        .node
        .push(step("Mul", vec![name("centred"), name("scale")], y.clone()));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::tensor::{Tensor, TensorData};
    use crate::engine::tract_engine::TractModel;
    use crate::engine::LoadedModel;

    /// `X: double[N, 2]` through a Scaler, as skl2onnx writes a StandardScaler.
    fn scaler_model() -> Vec<u8> {
        use pb::tensor_shape_proto::{dimension::Value, Dimension};
        let dims = |d: &[Value]| pb::TypeProto {
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type: pb::tensor_proto::DataType::Double as i32,
                shape: Some(pb::TensorShapeProto {
                    dim: d
                        .iter()
                        .map(|v| Dimension {
                            value: Some(v.clone()),
                            ..Default::default()
                        })
                        .collect(),
                }),
            })),
            ..Default::default()
        };
        let floats = |name: &str, v: Vec<f32>| pb::AttributeProto {
            name: name.into(),
            r#type: pb::attribute_proto::AttributeType::Floats as i32,
            floats: v,
            ..Default::default()
        };
        crate::engine::test_models::encode(pb::GraphProto {
            name: "g".into(),
            node: vec![pb::NodeProto {
                op_type: "Scaler".into(),
                domain: ML_DOMAIN.into(),
                name: "scale".into(),
                input: vec!["X".into()],
                output: vec!["variable".into()],
                attribute: vec![
                    floats("offset", vec![1.0, 10.0]),
                    floats("scale", vec![0.5, 0.25]),
                ],
                ..Default::default()
            }],
            input: vec![pb::ValueInfoProto {
                name: "X".into(),
                r#type: Some(dims(&[Value::DimParam("N".into()), Value::DimValue(2)])),
                ..Default::default()
            }],
            output: vec![pb::ValueInfoProto {
                name: "variable".into(),
                ..Default::default()
            }],
            ..Default::default()
        })
    }

    #[test]
    fn tract_runs_a_scaler_as_cast_sub_and_mul() {
        let model = TractModel::load(&scaler_model()).unwrap();
        let x = Tensor {
            shape: vec![2, 2],
            data: TensorData::F64(vec![3.0, 14.0, -1.0, 10.0]),
        };
        let out = model.run(0, vec![x]).unwrap();
        assert_eq!(out[0].name, "variable");
        assert_eq!(
            out[0].tensor.data,
            TensorData::F32(vec![1.0, 1.0, -1.0, 0.0])
        );
    }
}
