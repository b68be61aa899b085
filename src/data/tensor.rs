//! Engine-neutral tensors: what the engines take and give back, what casts produce and what
//! the protocols write.

use std::fmt;

/// Element types the gateway moves in and out of models.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElemType {
    F32,
    F64,
    I64,
    I32,
    Bool,
    Str,
}

impl ElemType {
    /// Open Inference Protocol V2 datatype name.
    pub fn v2_name(self) -> &'static str {
        match self {
            Self::F32 => "FP32",
            Self::F64 => "FP64",
            Self::I64 => "INT64",
            Self::I32 => "INT32",
            Self::Bool => "BOOL",
            Self::Str => "BYTES",
        }
    }
}

impl fmt::Display for ElemType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::F32 => "float32",
            Self::F64 => "float64",
            Self::I64 => "int64",
            Self::I32 => "int32",
            Self::Bool => "bool",
            Self::Str => "string",
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    F32(Vec<f32>),
    F64(Vec<f64>),
    I64(Vec<i64>),
    I32(Vec<i32>),
    Bool(Vec<bool>),
    Str(Vec<String>),
}

impl TensorData {
    pub fn len(&self) -> usize {
        match self {
            Self::F32(v) => v.len(),
            Self::F64(v) => v.len(),
            Self::I64(v) => v.len(),
            Self::I32(v) => v.len(),
            Self::Bool(v) => v.len(),
            Self::Str(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn elem(&self) -> ElemType {
        match self {
            Self::F32(_) => ElemType::F32,
            Self::F64(_) => ElemType::F64,
            Self::I64(_) => ElemType::I64,
            Self::I32(_) => ElemType::I32,
            Self::Bool(_) => ElemType::Bool,
            Self::Str(_) => ElemType::Str,
        }
    }
}

/// A dense row-major tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: TensorData,
}

impl Tensor {
    /// Values per leading-dimension row.
    pub fn row_width(&self) -> usize {
        self.shape.iter().skip(1).product()
    }
}

/// A named output tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct NamedTensor {
    pub name: String,
    pub tensor: Tensor,
}
