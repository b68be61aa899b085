//! Binds a request frame to a model's input tensors, following rules fixed at load time.
//!
//! Rules (also in README "Input mapping"):
//! - one tensor per input: a column named like an ONNX input feeds that input (a `[N]` column
//!   fits a `[N, 1]` input and back);
//! - one matrix: a model with a single rank-2 input whose name is not a signature column takes
//!   the signature's columns, in signature order, as the columns of an `[N, K]` matrix;
//! - a raw tensor named like the ONNX input (V2, or `inputs` with that name) is always taken as is.
//!
//! Values convert to the input's element type; a value that does not fit names its column.

use super::tensor::{ElemType, Tensor, TensorData, TensorSpec};
use crate::error::{RequestError, RequestResult};
use crate::protocol::frame::{Column, ColumnData, Frame};
use crate::protocol::mlflow::UNNAMED_TENSOR;

#[derive(Debug, Clone)]
enum Source {
    /// The column (or raw tensor) with the input's own name.
    Column,
    /// These scalar columns, stacked in this order into `[N, K]`.
    Matrix(Vec<String>),
}

/// The fixed plan that turns frames into the model's inputs.
#[derive(Debug, Clone)]
pub struct InputBinding {
    inputs: Vec<(TensorSpec, Source)>,
    /// Every column name a request may carry, for error messages.
    expected: Vec<String>,
}

impl InputBinding {
    /// Compiles the binding from the graph's inputs and the signature's column names, if any.
    pub fn compile(
        model_inputs: &[TensorSpec],
        signature_columns: Option<&[String]>,
    ) -> Result<Self, String> {
        let mut inputs = Vec::with_capacity(model_inputs.len());
        match signature_columns {
            Some(cols)
                if model_inputs.len() == 1
                    && model_inputs[0].shape.len() == 2
                    && !cols.contains(&model_inputs[0].name) =>
            {
                let spec = &model_inputs[0];
                if let Some(k) = spec.shape[1] {
                    if k != cols.len() {
                        return Err(format!(
                            "the signature has {} columns but ONNX input '{}' takes {k} values per row",
                            cols.len(),
                            spec.name
                        ));
                    }
                }
                inputs.push((spec.clone(), Source::Matrix(cols.to_vec())));
            }
            Some(cols) => {
                for spec in model_inputs {
                    if !cols.contains(&spec.name) {
                        return Err(format!(
                            "ONNX input '{}' is not a column of the MLflow signature ({})",
                            spec.name,
                            cols.join(", ")
                        ));
                    }
                    inputs.push((spec.clone(), Source::Column));
                }
            }
            None => inputs.extend(model_inputs.iter().map(|s| (s.clone(), Source::Column))),
        }
        let expected = match signature_columns {
            Some(cols) => cols.to_vec(),
            None => model_inputs.iter().map(|s| s.name.clone()).collect(),
        };
        Ok(Self { inputs, expected })
    }

    /// The column names a request is expected to carry.
    pub fn expected_columns(&self) -> &[String] {
        &self.expected
    }

    /// Builds the model's input tensors, in graph input order.
    pub fn bind(&self, frame: &Frame) -> RequestResult<Vec<Tensor>> {
        let mut used = vec![false; frame.columns.len()];
        let mut out = Vec::with_capacity(self.inputs.len());
        let single = self.inputs.len() == 1;
        for (spec, source) in &self.inputs {
            let direct = frame
                .columns
                .iter()
                .position(|c| c.name == spec.name || (single && c.name == UNNAMED_TENSOR));
            if let Some(i) = direct {
                used[i] = true;
                out.push(column_tensor(&frame.columns[i], spec)?);
                continue;
            }
            match source {
                Source::Matrix(names) => {
                    let mut cols = Vec::with_capacity(names.len());
                    for name in names {
                        let i = frame
                            .columns
                            .iter()
                            .position(|c| &c.name == name)
                            .ok_or_else(|| self.missing(name))?;
                        used[i] = true;
                        cols.push(&frame.columns[i]);
                    }
                    out.push(matrix_tensor(&cols, spec)?);
                }
                Source::Column => return Err(self.missing(&spec.name)),
            }
        }
        if let Some(i) = used.iter().position(|u| !u) {
            let extra: Vec<&str> = frame
                .columns
                .iter()
                .zip(&used)
                .filter(|(_, u)| !**u)
                .map(|(c, _)| c.name.as_str())
                .collect();
            let shown = if frame.columns[i].name == UNNAMED_TENSOR {
                "an unnamed tensor".to_owned()
            } else {
                format!("{extra:?}")
            };
            return Err(RequestError::bad(format!(
                "unknown input column(s) {shown}: the model takes {}",
                self.expected.join(", ")
            )));
        }
        Ok(out)
    }

    fn missing(&self, name: &str) -> RequestError {
        RequestError::bad(format!(
            "missing input column '{name}': the model takes {}",
            self.expected.join(", ")
        ))
    }
}

/// Fits a column's shape to the input's rank and checks static dimensions.
fn fit_shape(col: &Column, spec: &TensorSpec) -> RequestResult<Vec<usize>> {
    let mut shape = col.shape.clone();
    if spec.shape.len() == shape.len() + 1 && spec.shape.last().copied().flatten().unwrap_or(1) == 1
    {
        shape.push(1);
    } else if spec.shape.len() + 1 == shape.len() && shape.last() == Some(&1) {
        shape.pop();
    }
    let fits = shape.len() == spec.shape.len()
        && shape
            .iter()
            .zip(&spec.shape)
            .skip(1)
            .all(|(have, want)| want.is_none_or(|w| w == *have));
    if !fits {
        return Err(RequestError::bad(format!(
            "input '{}' has shape {:?} but the model takes {:?} (-1 is any size)",
            display_name(&col.name),
            col.shape,
            spec.v2_shape()
        )));
    }
    Ok(shape)
}

fn column_tensor(col: &Column, spec: &TensorSpec) -> RequestResult<Tensor> {
    let shape = fit_shape(col, spec)?;
    Ok(Tensor {
        shape,
        data: convert(col, spec.elem)?,
    })
}

fn matrix_tensor(cols: &[&Column], spec: &TensorSpec) -> RequestResult<Tensor> {
    let rows = cols.first().map_or(0, |c| c.rows());
    for c in cols {
        if c.row_width() != 1 {
            return Err(RequestError::bad(format!(
                "column '{}' must hold one value per row, got shape {:?}",
                c.name, c.shape
            )));
        }
    }
    let converted = cols
        .iter()
        .map(|c| convert(c, spec.elem))
        .collect::<RequestResult<Vec<_>>>()?;
    let data = match spec.elem {
        ElemType::F32 => TensorData::F32(interleave(&converted, rows, |d| match d {
            TensorData::F32(v) => v,
            _ => unreachable!("converted to the input type"),
        })),
        ElemType::F64 => TensorData::F64(interleave(&converted, rows, |d| match d {
            TensorData::F64(v) => v,
            _ => unreachable!("converted to the input type"),
        })),
        ElemType::I64 => TensorData::I64(interleave(&converted, rows, |d| match d {
            TensorData::I64(v) => v,
            _ => unreachable!("converted to the input type"),
        })),
        ElemType::I32 => TensorData::I32(interleave(&converted, rows, |d| match d {
            TensorData::I32(v) => v,
            _ => unreachable!("converted to the input type"),
        })),
        ElemType::Bool => TensorData::Bool(interleave(&converted, rows, |d| match d {
            TensorData::Bool(v) => v,
            _ => unreachable!("converted to the input type"),
        })),
        ElemType::Str => TensorData::Str(interleave(&converted, rows, |d| match d {
            TensorData::Str(v) => v,
            _ => unreachable!("converted to the input type"),
        })),
    };
    Ok(Tensor {
        shape: vec![rows, cols.len()],
        data,
    })
}

/// Row-major `[rows, cols]` from one vector per column.
fn interleave<T: Clone>(
    cols: &[TensorData],
    rows: usize,
    get: impl Fn(&TensorData) -> &Vec<T>,
) -> Vec<T> {
    let slices: Vec<&Vec<T>> = cols.iter().map(get).collect();
    let mut out = Vec::with_capacity(rows * slices.len());
    for r in 0..rows {
        out.extend(slices.iter().map(|s| s[r].clone()));
    }
    out
}

fn display_name(name: &str) -> &str {
    if name == UNNAMED_TENSOR {
        "(unnamed tensor)"
    } else {
        name
    }
}

fn type_error(col: &Column, row: usize, what: &str, target: ElemType) -> RequestError {
    RequestError::bad(format!(
        "column '{}' row {row} is {what} but the model takes {target} values",
        display_name(&col.name)
    ))
}

fn non_finite(col: &Column, row: usize) -> RequestError {
    RequestError::bad(format!(
        "column '{}' row {row} is not a finite number (NaN and infinities cannot be scored)",
        display_name(&col.name)
    ))
}

/// Converts a column to the element type the model takes, or names the first value that does
/// not fit.
pub fn convert(col: &Column, target: ElemType) -> RequestResult<TensorData> {
    let width = col.row_width().max(1);
    let row = |i: usize| i / width;
    match (&col.data, target) {
        (ColumnData::F64(v), ElemType::F32) => v
            .iter()
            .enumerate()
            .map(|(i, x)| {
                let f = *x as f32;
                if f.is_finite() {
                    Ok(f)
                } else {
                    Err(non_finite(col, row(i)))
                }
            })
            .collect::<RequestResult<_>>()
            .map(TensorData::F32),
        (ColumnData::F64(v), ElemType::F64) => match v.iter().position(|x| !x.is_finite()) {
            Some(i) => Err(non_finite(col, row(i))),
            None => Ok(TensorData::F64(v.clone())),
        },
        (ColumnData::F32(v), ElemType::F32) => Ok(TensorData::F32(v.clone())),
        (ColumnData::F32(v), ElemType::F64) => {
            Ok(TensorData::F64(v.iter().map(|x| *x as f64).collect()))
        }
        (ColumnData::F64(v), ElemType::I64 | ElemType::I32) => {
            let ints = v
                .iter()
                .enumerate()
                .map(|(i, x)| {
                    if x.fract() == 0.0 && x.abs() < 9.0e15 {
                        Ok(*x as i64)
                    } else {
                        Err(type_error(
                            col,
                            row(i),
                            &format!("{x}, not a whole number,"),
                            target,
                        ))
                    }
                })
                .collect::<RequestResult<Vec<i64>>>()?;
            narrow_ints(col, ints, target)
        }
        (ColumnData::I64(v), ElemType::F32) => {
            Ok(TensorData::F32(v.iter().map(|x| *x as f32).collect()))
        }
        (ColumnData::I64(v), ElemType::F64) => {
            Ok(TensorData::F64(v.iter().map(|x| *x as f64).collect()))
        }
        (ColumnData::I64(v), ElemType::I64 | ElemType::I32) => narrow_ints(col, v.clone(), target),
        (ColumnData::I64(v), ElemType::Bool) => v
            .iter()
            .enumerate()
            .map(|(i, x)| match x {
                0 => Ok(false),
                1 => Ok(true),
                _ => Err(type_error(col, row(i), &format!("{x}"), target)),
            })
            .collect::<RequestResult<_>>()
            .map(TensorData::Bool),
        (ColumnData::Bool(v), ElemType::Bool) => Ok(TensorData::Bool(v.clone())),
        (ColumnData::Bool(v), ElemType::F32) => Ok(TensorData::F32(
            v.iter().map(|b| u8::from(*b) as f32).collect(),
        )),
        (ColumnData::Bool(v), ElemType::F64) => Ok(TensorData::F64(
            v.iter().map(|b| u8::from(*b) as f64).collect(),
        )),
        (ColumnData::Bool(v), ElemType::I64) => {
            Ok(TensorData::I64(v.iter().map(|b| i64::from(*b)).collect()))
        }
        (ColumnData::Bool(v), ElemType::I32) => {
            Ok(TensorData::I32(v.iter().map(|b| i32::from(*b)).collect()))
        }
        (ColumnData::Str(v), ElemType::Str) => Ok(TensorData::Str(v.clone())),
        (ColumnData::Str(v), _) if col.from_text => parse_text(col, v, target),
        (data, _) => Err(type_error(col, 0, data.type_name_with_article(), target)),
    }
}

fn narrow_ints(col: &Column, v: Vec<i64>, target: ElemType) -> RequestResult<TensorData> {
    match target {
        ElemType::I32 => v
            .iter()
            .enumerate()
            .map(|(i, x)| {
                i32::try_from(*x)
                    .map_err(|_| type_error(col, i, &format!("{x}, out of int32 range,"), target))
            })
            .collect::<RequestResult<_>>()
            .map(TensorData::I32),
        _ => Ok(TensorData::I64(v)),
    }
}

/// CSV cells: parse each into the target type.
fn parse_text(col: &Column, v: &[String], target: ElemType) -> RequestResult<TensorData> {
    let width = col.row_width().max(1);
    let bad = |i: usize, s: &str| type_error(col, i / width, &format!("'{s}'"), target);
    match target {
        ElemType::F32 | ElemType::F64 => {
            let mut out = Vec::with_capacity(v.len());
            for (i, s) in v.iter().enumerate() {
                let x: f64 = s.trim().parse().map_err(|_| bad(i, s))?;
                if !x.is_finite() || (target == ElemType::F32 && !(x as f32).is_finite()) {
                    return Err(non_finite(col, i / width));
                }
                out.push(x);
            }
            Ok(if target == ElemType::F32 {
                TensorData::F32(out.into_iter().map(|x| x as f32).collect())
            } else {
                TensorData::F64(out)
            })
        }
        ElemType::I64 | ElemType::I32 => {
            let ints = v
                .iter()
                .enumerate()
                .map(|(i, s)| s.trim().parse::<i64>().map_err(|_| bad(i, s)))
                .collect::<RequestResult<Vec<i64>>>()?;
            narrow_ints(col, ints, target)
        }
        ElemType::Bool => v
            .iter()
            .enumerate()
            .map(|(i, s)| match s.trim() {
                "true" | "True" | "TRUE" | "1" => Ok(true),
                "false" | "False" | "FALSE" | "0" => Ok(false),
                _ => Err(bad(i, s)),
            })
            .collect::<RequestResult<_>>()
            .map(TensorData::Bool),
        ElemType::Str => Ok(TensorData::Str(v.to_vec())),
    }
}
