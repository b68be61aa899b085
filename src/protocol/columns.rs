//! Builds typed columns from JSON values, shared by the MLflow and V2 decoders.
//!
//! A cell is a scalar or a nested list (a tensor per row); every row of a column must have the
//! same shape. Integers widen to numbers when a column mixes them; nothing else mixes.

use serde_json::Value;

use super::limits::Budget;
use crate::data::frame::{Column, ColumnData};
use crate::error::{RequestError, RequestResult};

/// One JSON leaf value, borrowed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scalar<'a> {
    Null,
    Bool(bool),
    /// An integer that fits i64.
    Int(i64),
    /// Any other number (integers beyond i64 included: they widen the column).
    Float(f64),
    Str(&'a str),
}

impl Scalar<'_> {
    pub fn number(n: &serde_json::Number) -> Self {
        match n.as_i64() {
            Some(i) => Self::Int(i),
            None => Self::Float(n.as_f64().unwrap_or(f64::NAN)),
        }
    }
}

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
            ints: Vec::new(),
            floats: Vec::new(),
            bools: Vec::new(),
            strs: Vec::new(),
            row_shape: None,
            rows: 0,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Appends one row's cell (scalar or nested list), within the request's budget.
    pub fn push_row(&mut self, cell: &Value, budget: &Budget) -> RequestResult<()> {
        let row = self.rows;
        budget.limits.rows(row + 1)?;
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
        self.push_leaves(cell, row, budget)?;
        self.rows += 1;
        Ok(())
    }

    fn push_leaves(&mut self, v: &Value, row: usize, budget: &Budget) -> RequestResult<()> {
        match v {
            Value::Array(items) => {
                for item in items {
                    self.push_leaves(item, row, budget)?;
                }
                Ok(())
            }
            Value::Object(_) => Err(RequestError::bad(format!(
                "column '{}' row {row} holds an object; expected a scalar or a list",
                self.name
            ))),
            Value::Null => self.push_scalar(Scalar::Null, row, budget),
            Value::Bool(b) => self.push_scalar(Scalar::Bool(*b), row, budget),
            Value::String(s) => self.push_scalar(Scalar::Str(s), row, budget),
            Value::Number(n) => self.push_scalar(Scalar::number(n), row, budget),
        }
    }

    /// Appends one row holding a single scalar (the streaming decoder's common case).
    pub fn push_scalar_row(&mut self, v: Scalar<'_>, budget: &Budget) -> RequestResult<()> {
        let row = self.rows;
        budget.limits.rows(row + 1)?;
        match &self.row_shape {
            None => self.row_shape = Some(Vec::new()),
            Some(expected) if !expected.is_empty() => {
                return Err(RequestError::bad(format!(
                    "column '{}' row {row} has shape [] but earlier rows have {expected:?}",
                    self.name
                )))
            }
            Some(_) => {}
        }
        self.push_scalar(v, row, budget)?;
        self.rows += 1;
        Ok(())
    }

    fn push_scalar(&mut self, v: Scalar<'_>, row: usize, budget: &Budget) -> RequestResult<()> {
        let string_len = match v {
            Scalar::Str(s) => Some(s.len()),
            _ => None,
        };
        budget.take_value(string_len, &self.name)?;
        let found = match v {
            Scalar::Null => {
                return Err(RequestError::bad(format!(
                    "column '{}' row {row} is null: every model input needs a value",
                    self.name
                )))
            }
            Scalar::Bool(_) => ElemKind::Bool,
            Scalar::Str(_) => ElemKind::Str,
            Scalar::Int(_) => ElemKind::Int,
            Scalar::Float(_) => ElemKind::Float,
        };
        let kind = *self.kind.get_or_insert(found);
        match (kind, v) {
            (ElemKind::Int, Scalar::Int(i)) => self.ints.push(i),
            (ElemKind::Int, Scalar::Float(x)) => {
                // Promote what was read so far; the column is numeric.
                self.floats = self.ints.drain(..).map(|i| i as f64).collect();
                self.kind = Some(ElemKind::Float);
                self.floats.push(x);
            }
            (ElemKind::Float, Scalar::Int(i)) => self.floats.push(i as f64),
            (ElemKind::Float, Scalar::Float(x)) => self.floats.push(x),
            (ElemKind::Bool, Scalar::Bool(b)) => self.bools.push(b),
            (ElemKind::Str, Scalar::Str(s)) => self.strs.push(s.to_owned()),
            _ => {
                return Err(RequestError::bad(format!(
                    "column '{}' row {row} is {} but the column holds {} values",
                    self.name,
                    kind_name(found),
                    kind_plural(kind)
                )))
            }
        }
        Ok(())
    }

    /// The column: `rows` rows of the row shape seen.
    pub fn finish(self) -> Column {
        let mut shape = vec![self.rows];
        shape.extend(self.row_shape.unwrap_or_default());
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

/// The element kind as an adjective for "... values".
pub fn kind_plural(k: ElemKind) -> &'static str {
    match k {
        ElemKind::Int => "integer",
        ElemKind::Float => "number",
        ElemKind::Bool => "boolean",
        ElemKind::Str => "string",
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn build(name: &str, cells: &[Value]) -> RequestResult<Column> {
        let mut b = ColumnBuilder::new(name);
        let budget = Budget::default();
        for c in cells {
            b.push_row(c, &budget)?;
        }
        Ok(b.finish())
    }

    fn err(r: RequestResult<Column>) -> String {
        match r {
            Err(RequestError::BadRequest(m)) => m,
            other => panic!("expected a bad request, got {other:?}"),
        }
    }

    #[test]
    fn scalar_columns_of_each_type() {
        let c = build("i", &[json!(1), json!(-2)]).unwrap();
        assert_eq!(
            (c.shape.clone(), c.data),
            (vec![2], ColumnData::I64(vec![1, -2]))
        );
        let c = build("f", &[json!(1.5), json!(2.5)]).unwrap();
        assert_eq!(c.data, ColumnData::F64(vec![1.5, 2.5]));
        let c = build("b", &[json!(true), json!(false)]).unwrap();
        assert_eq!(c.data, ColumnData::Bool(vec![true, false]));
        let c = build("s", &[json!("x"), json!("y")]).unwrap();
        assert_eq!(c.data, ColumnData::Str(vec!["x".into(), "y".into()]));
        assert_eq!(c.name, "s");
        assert!(!c.from_text);
    }

    #[test]
    fn ints_widen_to_floats_keeping_earlier_values() {
        let c = build("x", &[json!(1), json!(2), json!(2.5), json!(3)]).unwrap();
        assert_eq!(c.data, ColumnData::F64(vec![1.0, 2.0, 2.5, 3.0]));
        let c = build("x", &[json!(0.5), json!(7)]).unwrap();
        assert_eq!(c.data, ColumnData::F64(vec![0.5, 7.0]));
    }

    #[test]
    fn widening_works_inside_row_tensors() {
        let c = build("x", &[json!([1, 2]), json!([3.5, 4])]).unwrap();
        assert_eq!(c.shape, vec![2, 2]);
        assert_eq!(c.data, ColumnData::F64(vec![1.0, 2.0, 3.5, 4.0]));
    }

    #[test]
    fn mixed_types_are_an_error_naming_column_and_row() {
        let m = err(build("x", &[json!(1), json!("a")]));
        assert!(
            m.starts_with("column 'x' row 1 is a string but the column holds"),
            "{m}"
        );
        let m = err(build("x", &[json!("a"), json!(1)]));
        assert!(m.contains("column 'x' row 1 is an integer"), "{m}");
        let m = err(build("x", &[json!(true), json!(1.5)]));
        assert!(
            m.contains("row 1 is a number") && m.contains("holds boolean values"),
            "{m}"
        );
        let m = err(build("x", &[json!(1.5), json!(false)]));
        assert!(m.contains("row 1 is a boolean"), "{m}");
    }

    #[test]
    fn mixed_type_message_is_grammatical() {
        let m = err(build("x", &[json!(1), json!("a")]));
        assert!(!m.contains("an integer values"), "{m}");
        let m = err(build("x", &[json!("a"), json!(1)]));
        assert!(!m.contains("a string values"), "{m}");
    }

    #[test]
    fn null_and_object_cells_are_errors() {
        let m = err(build("x", &[json!(1), json!(null)]));
        assert!(m.contains("column 'x' row 1 is null"), "{m}");
        let m = err(build("x", &[json!({"a": 1})]));
        assert!(m.contains("column 'x' row 0 holds an object"), "{m}");
        let m = err(build("x", &[json!([1, {"a": 1}])]));
        assert!(m.contains("holds an object"), "{m}");
    }

    #[test]
    fn integers_beyond_i64_widen_to_numbers() {
        let c = build("x", &[json!(u64::MAX)]).unwrap();
        assert_eq!(c.data, ColumnData::F64(vec![u64::MAX as f64]));
        let c = build("x", &[json!(i64::MIN), json!(i64::MAX)]).unwrap();
        assert_eq!(c.data, ColumnData::I64(vec![i64::MIN, i64::MAX]));
    }

    #[test]
    fn large_integers_in_a_float_column_widen() {
        let c = build("x", &[json!(0.5), json!(u64::MAX)]).unwrap();
        assert_eq!(c.data, ColumnData::F64(vec![0.5, u64::MAX as f64]));
    }

    #[test]
    fn large_integer_before_a_float_widens_too() {
        let c = build("x", &[json!(u64::MAX), json!(0.5)]).unwrap();
        assert_eq!(c.data, ColumnData::F64(vec![u64::MAX as f64, 0.5]));
    }

    #[test]
    fn nested_row_tensors_keep_their_shape() {
        let c = build(
            "img",
            &[
                json!([[1, 2, 3], [4, 5, 6]]),
                json!([[7, 8, 9], [10, 11, 12]]),
            ],
        )
        .unwrap();
        assert_eq!(c.shape, vec![2, 2, 3]);
        assert_eq!(c.row_width(), 6);
        assert_eq!(c.data, ColumnData::I64((1..=12).collect()));
    }

    #[test]
    fn rows_of_different_shapes_are_an_error() {
        let m = err(build("x", &[json!([1, 2]), json!([1, 2, 3])]));
        assert_eq!(
            m,
            "column 'x' row 1 has shape [3] but earlier rows have [2]"
        );
        let m = err(build("x", &[json!(1), json!([1])]));
        assert!(
            m.contains("row 1 has shape [1] but earlier rows have []"),
            "{m}"
        );
    }

    #[test]
    fn ragged_rows_are_an_error() {
        let m = err(build("x", &[json!([[1, 2], [3]])]));
        assert!(m.contains("input 'x' is ragged"), "{m}");
        assert!(m.contains("1 elements where 2 were expected"), "{m}");
        let m = err(build("x", &[json!([[1, 2], 3])]));
        assert!(
            m.contains("a scalar stands where a list was expected"),
            "{m}"
        );
        let m = err(build("x", &[json!([1, [2]])]));
        assert!(m.contains("nested deeper"), "{m}");
    }

    #[test]
    fn empty_list_rows_and_no_rows() {
        let c = build("x", &[json!([]), json!([])]).unwrap();
        assert_eq!(c.shape, vec![2, 0]);
        assert!(c.data.is_empty());
        let c = build("x", &[]).unwrap();
        assert_eq!(c.shape, vec![0]);
        assert_eq!(c.data, ColumnData::F64(vec![]));
    }

    #[test]
    fn cell_shape_follows_first_elements() {
        let mut s = Vec::new();
        cell_shape(&json!([[1, 2, 3], [4]]), &mut s);
        assert_eq!(s, vec![2, 3]);
        let mut s = Vec::new();
        cell_shape(&json!(5), &mut s);
        assert!(s.is_empty());
        check_rectangular(&json!([[1, 2], [3, 4]]), &[2, 2], "x").unwrap();
        check_rectangular(&json!(1), &[], "x").unwrap();
    }

    #[test]
    fn kind_names() {
        assert_eq!(kind_name(ElemKind::Int), "an integer");
        assert_eq!(kind_name(ElemKind::Float), "a number");
        assert_eq!(kind_name(ElemKind::Bool), "a boolean");
        assert_eq!(kind_name(ElemKind::Str), "a string");
    }
}
