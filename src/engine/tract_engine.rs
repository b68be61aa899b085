//! tract: pure-Rust ONNX inference. One optimised plan, shared by every worker (`run(&self)`).

use std::sync::Arc;

use tract_onnx::prelude::*;

use super::{
    ElemType, EngineError, EngineKind, LoadedModel, NamedTensor, Tensor as GwTensor, TensorData,
    TensorSpec,
};

pub struct TractModel {
    plan: Arc<TypedRunnableModel>,
    inputs: Vec<TensorSpec>,
    outputs: Vec<TensorSpec>,
}

fn load_err(message: impl std::fmt::Display) -> EngineError {
    EngineError::Load {
        engine: EngineKind::Tract,
        message: message.to_string(),
    }
}

impl TractModel {
    pub fn load(onnx: &[u8]) -> Result<Self, EngineError> {
        let framework = tract_onnx::onnx();
        let mut proto = framework
            .proto_model_for_read(&mut &onnx[..])
            .map_err(|e| load_err(format!("{e:#}")))?;
        // The ONNX-ML ops it lacks but can run as standard ones.
        super::lower::for_tract(&mut proto);
        // Name the first op tract lacks before trying to translate the graph.
        if let Some(graph) = &proto.graph {
            if let Some(node) = graph
                .node
                .iter()
                .find(|n| !framework.op_register.0.contains_key(&n.op_type))
            {
                return Err(EngineError::UnsupportedOp {
                    engine: EngineKind::Tract,
                    op: node.op_type.clone(),
                    domain: if node.domain.is_empty() {
                        "ai.onnx".into()
                    } else {
                        node.domain.clone()
                    },
                });
            }
        }
        let model = framework
            .model_for_proto_model(&proto)
            .map_err(|e| load_err(format!("{e:#}")))?;
        let typed = model
            .into_optimized()
            .map_err(|e| load_err(format!("{e:#}")))?;
        let plan = typed
            .into_runnable()
            .map_err(|e| load_err(format!("{e:#}")))?;
        let m = plan.model();
        let mut inputs = Vec::new();
        for (ix, outlet) in m.input_outlets().map_err(load_err)?.iter().enumerate() {
            let name = m.node(outlet.node).name.clone();
            inputs.push(spec(name, m.input_fact(ix).map_err(load_err)?, "input")?);
        }
        let mut outputs = Vec::new();
        for (ix, outlet) in m.output_outlets().map_err(load_err)?.iter().enumerate() {
            // Output names are outlet labels: optimisation may fold the named node away.
            let name = m
                .outlet_label(*outlet)
                .map(str::to_owned)
                .unwrap_or_else(|| m.node(outlet.node).name.clone());
            outputs.push(spec(name, m.output_fact(ix).map_err(load_err)?, "output")?);
        }
        Ok(Self {
            plan,
            inputs,
            outputs,
        })
    }
}

fn spec(name: String, fact: &TypedFact, what: &str) -> Result<TensorSpec, EngineError> {
    let elem = elem_of(fact.datum_type)
        .map_err(|t| EngineError::UnsupportedIo(format!("{what} '{name}' has type {t:?}")))?;
    let shape = fact
        .shape
        .dims()
        .iter()
        .map(|d| d.as_i64().map(|n| n as usize))
        .collect();
    Ok(TensorSpec { name, elem, shape })
}

fn elem_of(dt: DatumType) -> Result<ElemType, DatumType> {
    Ok(match dt {
        DatumType::F32 => ElemType::F32,
        DatumType::F64 => ElemType::F64,
        // tract's dimension type: integer class labels come out so (LinearClassifier).
        DatumType::I64 | DatumType::TDim => ElemType::I64,
        DatumType::I32 => ElemType::I32,
        DatumType::Bool => ElemType::Bool,
        DatumType::String => ElemType::Str,
        other => return Err(other),
    })
}

fn to_tract(t: GwTensor) -> Result<Tensor, EngineError> {
    let run_err = |e: TractError| EngineError::Run(format!("{e:#}"));
    Ok(match t.data {
        TensorData::F32(v) => Tensor::from_shape(&t.shape, &v).map_err(run_err)?,
        TensorData::F64(v) => Tensor::from_shape(&t.shape, &v).map_err(run_err)?,
        TensorData::I64(v) => Tensor::from_shape(&t.shape, &v).map_err(run_err)?,
        TensorData::I32(v) => Tensor::from_shape(&t.shape, &v).map_err(run_err)?,
        TensorData::Bool(v) => Tensor::from_shape(&t.shape, &v).map_err(run_err)?,
        TensorData::Str(v) => tract_ndarray::ArrayD::from_shape_vec(t.shape.clone(), v)
            .map_err(|e| EngineError::Run(e.to_string()))?
            .into(),
    })
}

fn from_tract(t: &Tensor) -> Result<GwTensor, EngineError> {
    let err = |e: TractError| EngineError::Run(format!("{e:#}"));
    let shape = t.shape().to_vec();
    let plain = || t.try_as_plain_ram().map_err(err);
    let data = match t.datum_type() {
        DatumType::F32 => TensorData::F32(plain()?.as_slice::<f32>().map_err(err)?.to_vec()),
        DatumType::F64 => TensorData::F64(plain()?.as_slice::<f64>().map_err(err)?.to_vec()),
        DatumType::I64 => TensorData::I64(plain()?.as_slice::<i64>().map_err(err)?.to_vec()),
        DatumType::TDim => {
            let ints = t.cast_to::<i64>().map_err(err)?;
            let ints = ints.try_as_plain_ram().map_err(err)?;
            TensorData::I64(ints.as_slice::<i64>().map_err(err)?.to_vec())
        }
        DatumType::I32 => TensorData::I32(plain()?.as_slice::<i32>().map_err(err)?.to_vec()),
        DatumType::Bool => TensorData::Bool(plain()?.as_slice::<bool>().map_err(err)?.to_vec()),
        DatumType::String => TensorData::Str(
            t.to_plain_array_view::<String>()
                .map_err(err)?
                .iter()
                .cloned()
                .collect(),
        ),
        other => {
            return Err(EngineError::Run(format!(
                "the model produced an output of unsupported type {other:?}"
            )))
        }
    };
    Ok(GwTensor { shape, data })
}

impl LoadedModel for TractModel {
    fn engine(&self) -> EngineKind {
        EngineKind::Tract
    }

    fn inputs(&self) -> &[TensorSpec] {
        &self.inputs
    }

    fn outputs(&self) -> &[TensorSpec] {
        &self.outputs
    }

    fn run(&self, _worker: usize, inputs: Vec<GwTensor>) -> Result<Vec<NamedTensor>, EngineError> {
        let values = inputs
            .into_iter()
            .map(|t| to_tract(t).map(IntoTValue::into_tvalue))
            .collect::<Result<TVec<_>, _>>()?;
        let out = self
            .plan
            .run(values)
            .map_err(|e| EngineError::Run(format!("{e:#}")))?;
        out.iter()
            .zip(&self.outputs)
            .map(|(v, spec)| {
                Ok(NamedTensor {
                    name: spec.name.clone(),
                    tensor: from_tract(v)?,
                })
            })
            .collect()
    }
}
