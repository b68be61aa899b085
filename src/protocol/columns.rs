//! Builds typed columns from JSON values, shared by the MLflow and V2 decoders.
//!
//! A cell is a scalar or a nested list (a tensor per row); every row of a column must have the
//! same shape. Integers widen to numbers when a column mixes them; nothing else mixes.

use serde_json::Value;

use super::frame::{Column, ColumnData};
use crate::error::{RequestError, RequestResult};

/// The element type a builder has settled on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElemKind {
    Int,
    Float,
    Bool,
    Str,
}

#[derive(Debug)]
pub struct ColumnBuilder {
    name: String,
    kind: Option<ElemKind>,
    /// Forced by the protocol (V2 `datatype`): values must fit it, no inference.
    fixed: bool,
    ints: Vec<i64>,
    floats: Vec<f64>,
    bools: Vec<bool>,
    strs: Vec<String>,
    row_shape: Option<Vec<usize>>,
    rows: usize,
}

impl ColumnBuilder {
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            kind: None,
            fixed: false,
            ints: Vec::new(),
            floats: Vec::new(),
            bools: Vec::new(),
            strs: Vec::new(),
            row_shape: None,
            rows: 0,
        }
    }

    pub fn with_kind(name: impl Into<String>, kind: ElemKind) -> Self {
        let mut b = Self::new(name);
        b.kind = Some(kind);
        b.fixed = true;
        b
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Appends one row's cell (scalar or nested list).
    pub fn push_row(&mut self, cell: &Value) -> RequestResult<()> {
        let row = self.rows;
        let mut shape = Vec::new();
        cell_shape(cell, &mut shape);
        check_rectangular(cell, &shape, &self.name)?;
        match &self.row_shape {
            None => self.row_shape = Some(shape),
            Some(expected) if *expected != shape => {
                return Err(RequestError::bad(format!(
                    "column '{}' row {row} has shape {shape:?} but earlier rows have {expected:?}",
                    self.name
                )))
            }
            Some(_) => {}
        }
        self.push_leaves(cell, row)?;
        self.rows += 1;
        Ok(())
    }

    /// Appends leaves of an already shaped tensor (V2 flat or nested `data`).
    pub fn push_flat(&mut self, data: &Value) -> RequestResult<usize> {
        let before = self.len();
        self.push_leaves(data, 0)?;
        Ok(self.len() - before)
    }

    fn len(&self) -> usize {
        match self.kind {
            None => 0,
            Some(ElemKind::Int) => self.ints.len(),
            Some(ElemKind::Float) => self.floats.len(),
            Some(ElemKind::Bool) => self.bools.len(),
            Some(ElemKind::Str) => self.strs.len(),
        }
    }

    fn push_leaves(&mut self, v: &Value, row: usize) -> RequestResult<()> {
        match v {
            Value::Array(items) => {
                for item in items {
                    self.push_leaves(item, row)?;
                }
                Ok(())
            }
            _ => self.push_scalar(v, row),
        }
    }

    fn push_scalar(&mut self, v: &Value, row: usize) -> RequestResult<()> {
        let found = match v {
            Value::Null => {
                return Err(RequestError::bad(format!(
                    "column '{}' row {row} is null: every model input needs a value",
                    self.name
                )))
            }
            Value::Bool(_) => ElemKind::Bool,
            Value::String(_) => ElemKind::Str,
            Value::Number(n) if n.is_i64() || n.is_u64() => ElemKind::Int,
            Value::Number(_) => ElemKind::Float,
            Value::Array(_) | Value::Object(_) => {
                return Err(RequestError::bad(format!(
                    "column '{}' row {row} holds an object; expected a scalar or a list",
                    self.name
                )))
            }
        };
        let kind = match self.kind {
            None => {
                self.kind = Some(found);
                found
            }
            Some(k) => k,
        };
        match (kind, found, v) {
            (ElemKind::Int, ElemKind::Int, Value::Number(n)) => match n.as_i64() {
                Some(i) => self.ints.push(i),
                None => return Err(self.range_error(row)),
            },
            (ElemKind::Int, ElemKind::Float, Value::Number(n)) if !self.fixed => {
                // Promote what was read so far; the column is numeric.
                self.floats = self.ints.drain(..).map(|i| i as f64).collect();
                self.kind = Some(ElemKind::Float);
                self.floats.push(n.as_f64().unwrap_or(f64::NAN));
            }
            (ElemKind::Float, ElemKind::Int | ElemKind::Float, Value::Number(n)) => {
                self.floats.push(n.as_f64().unwrap_or(f64::NAN))
            }
            (ElemKind::Bool, ElemKind::Bool, Value::Bool(b)) => self.bools.push(*b),
            (ElemKind::Str, ElemKind::Str, Value::String(s)) => self.strs.push(s.clone()),
            _ => {
                return Err(RequestError::bad(format!(
                    "column '{}' row {row} is {} but the column holds {} values",
                    self.name,
                    kind_name(found),
                    kind_name(kind)
                )))
            }
        }
        Ok(())
    }

    fn range_error(&self, row: usize) -> RequestError {
        RequestError::bad(format!(
            "column '{}' row {row} is an integer out of the 64-bit signed range",
            self.name
        ))
    }

    /// A column of `rows` rows with the row shape seen (dataframe and record formats).
    pub fn finish(self) -> Column {
        let mut shape = vec![self.rows];
        shape.extend(self.row_shape.clone().unwrap_or_default());
        self.finish_with_shape(shape)
    }

    /// A column with an explicit shape (V2 tensors, columnar `inputs`).
    pub fn finish_with_shape(self, shape: Vec<usize>) -> Column {
        let data = match self.kind {
            Some(ElemKind::Int) => ColumnData::I64(self.ints),
            Some(ElemKind::Float) => ColumnData::F64(self.floats),
            Some(ElemKind::Bool) => ColumnData::Bool(self.bools),
            Some(ElemKind::Str) => ColumnData::Str(self.strs),
            None => ColumnData::F64(Vec::new()),
        };
        Column {
            name: self.name,
            shape,
            data,
            from_text: false,
        }
    }
}

pub fn kind_name(k: ElemKind) -> &'static str {
    match k {
        ElemKind::Int => "an integer",
        ElemKind::Float => "a number",
        ElemKind::Bool => "a boolean",
        ElemKind::Str => "a string",
    }
}

/// The shape of a (possibly nested) JSON list, following first elements.
pub fn cell_shape(v: &Value, out: &mut Vec<usize>) {
    if let Value::Array(items) = v {
        out.push(items.len());
        if let Some(first) = items.first() {
            cell_shape(first, out);
        }
    }
}

/// Checks that a nested list is rectangular with the given shape.
pub fn check_rectangular(v: &Value, shape: &[usize], name: &str) -> RequestResult<()> {
    match (v, shape.split_first()) {
        (Value::Array(items), Some((&n, rest))) => {
            if items.len() != n {
                return Err(RequestError::bad(format!(
                    "input '{name}' is ragged: a list has {} elements where {n} were expected",
                    items.len()
                )));
            }
            items
                .iter()
                .try_for_each(|i| check_rectangular(i, rest, name))
        }
        (Value::Array(_), None) => Err(RequestError::bad(format!(
            "input '{name}' is nested deeper than its other rows"
        ))),
        (_, Some(_)) => Err(RequestError::bad(format!(
            "input '{name}' is ragged: a scalar stands where a list was expected"
        ))),
        (_, None) => Ok(()),
    }
}
