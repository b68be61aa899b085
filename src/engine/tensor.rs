//! Tensor descriptions of a model's graph; the tensors themselves are `data`'s.

use crate::data::tensor::ElemType;

/// A model input or output as the graph declares it; `None` dimensions are dynamic.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorSpec {
    pub name: String,
    pub elem: ElemType,
    pub shape: Vec<Option<usize>>,
}

impl TensorSpec {
    pub fn new(name: &str, elem: ElemType, shape: &[Option<usize>]) -> Self {
        Self {
            name: name.to_owned(),
            elem,
            shape: shape.to_vec(),
        }
    }

    /// Shape as V2 metadata writes it: -1 for dynamic dimensions.
    pub fn v2_shape(&self) -> Vec<i64> {
        self.shape
            .iter()
            .map(|d| d.map_or(-1, |n| n as i64))
            .collect()
    }
}
