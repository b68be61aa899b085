//! The typed columnar frame every protocol decodes into, that the join fills in, and that
//! engines bind to tensors.
//!
//! A column holds one value per row, or a tensor per row (`shape[1..]`), row-major. Types are
//! what the wire said; the engine binding converts them to the model's input types and names
//! the column on any mismatch.

use crate::error::{RequestError, RequestResult};

/// The name the MLflow decoder gives a tensor sent without one (`{"inputs": [[...]]}`): the
/// binding feeds it to a model's only input.
pub const UNNAMED_TENSOR: &str = "";

/// A column's name for messages: the unnamed tensor says so.
pub fn display_name(name: &str) -> &str {
    if name == UNNAMED_TENSOR {
        "(unnamed tensor)"
    } else {
        name
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum ColumnData {
    F64(Vec<f64>),
    F32(Vec<f32>),
    I64(Vec<i64>),
    Bool(Vec<bool>),
    Str(Vec<String>),
}

impl ColumnData {
    pub fn len(&self) -> usize {
        match self {
            Self::F64(v) => v.len(),
            Self::F32(v) => v.len(),
            Self::I64(v) => v.len(),
            Self::Bool(v) => v.len(),
            Self::Str(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The wire type with an article, for error messages ("a string").
    pub fn type_name_with_article(&self) -> &'static str {
        match self {
            Self::F64(_) | Self::F32(_) => "a number",
            Self::I64(_) => "an integer",
            Self::Bool(_) => "a boolean",
            Self::Str(_) => "a string",
        }
    }

    /// The wire type name used in error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::F64(_) | Self::F32(_) => "number",
            Self::I64(_) => "integer",
            Self::Bool(_) => "boolean",
            Self::Str(_) => "string",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    pub name: String,
    /// `shape[0]` is the row count; the rest is the per-row tensor shape (empty for scalars).
    pub shape: Vec<usize>,
    pub data: ColumnData,
    /// Values came as text (CSV) and may be parsed into the type the model wants.
    pub from_text: bool,
}

impl Column {
    pub fn scalar(name: impl Into<String>, data: ColumnData) -> Self {
        let rows = data.len();
        Self {
            name: name.into(),
            shape: vec![rows],
            data,
            from_text: false,
        }
    }

    pub fn rows(&self) -> usize {
        self.shape.first().copied().unwrap_or(0)
    }

    /// Bytes this column holds in memory (strings at their length), for the budgets of what
    /// is kept after a request is answered.
    pub fn held_bytes(&self) -> usize {
        use std::mem::size_of;
        size_of::<Column>()
            + self.name.len()
            + self.shape.len() * size_of::<usize>()
            + match &self.data {
                ColumnData::F64(v) => v.len() * size_of::<f64>(),
                ColumnData::F32(v) => v.len() * size_of::<f32>(),
                ColumnData::I64(v) => v.len() * size_of::<i64>(),
                ColumnData::Bool(v) => v.len(),
                ColumnData::Str(v) => v.iter().map(|s| size_of::<String>() + s.len()).sum(),
            }
    }

    /// Number of values per row.
    pub fn row_width(&self) -> usize {
        self.shape[1..].iter().product()
    }

    /// These rows of the column, in this order.
    pub fn take_rows(&self, rows: &[usize]) -> Column {
        fn gather<T: Clone>(v: &[T], rows: &[usize], w: usize) -> Vec<T> {
            rows.iter()
                .flat_map(|&r| v[r * w..(r + 1) * w].iter().cloned())
                .collect()
        }
        let w = self.row_width();
        let data = match &self.data {
            ColumnData::F64(v) => ColumnData::F64(gather(v, rows, w)),
            ColumnData::F32(v) => ColumnData::F32(gather(v, rows, w)),
            ColumnData::I64(v) => ColumnData::I64(gather(v, rows, w)),
            ColumnData::Bool(v) => ColumnData::Bool(gather(v, rows, w)),
            ColumnData::Str(v) => ColumnData::Str(gather(v, rows, w)),
        };
        let mut shape = self.shape.clone();
        shape[0] = rows.len();
        Column {
            name: self.name.clone(),
            shape,
            data,
            from_text: self.from_text,
        }
    }

    /// Row `r`'s (first) value as text into `out`, the same text for the same value however
    /// it came: `1234`, `1234.0` and `"1234"` are one routing key.
    pub fn key_text(&self, r: usize, out: &mut String) {
        use std::fmt::Write;
        out.clear();
        let i = r * self.row_width();
        let _ = match &self.data {
            ColumnData::Str(v) => {
                out.push_str(&v[i]);
                Ok(())
            }
            ColumnData::I64(v) => write!(out, "{}", v[i]),
            ColumnData::Bool(v) => write!(out, "{}", v[i]),
            ColumnData::F64(v) => write_float(out, v[i]),
            ColumnData::F32(v) => write_float(out, f64::from(v[i])),
        };
    }
}

/// A float as key text: whole numbers as integers, so `1234.0` and `1234` are one key.
pub fn write_float(out: &mut String, x: f64) -> std::fmt::Result {
    use std::fmt::Write;
    if x.fract() == 0.0 && x.abs() < 9.0e15 {
        write!(out, "{}", x as i64)
    } else {
        write!(out, "{x}")
    }
}

/// Up to this many columns, duplicate names are found by comparing pairs (at most a few
/// hundred comparisons); beyond it by hashing.
const FEW_COLUMNS: usize = 16;

/// A batch of rows as named, typed columns.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Frame {
    pub columns: Vec<Column>,
}

impl Frame {
    pub fn rows(&self) -> usize {
        self.columns.first().map(Column::rows).unwrap_or(0)
    }

    /// Bytes every column holds in memory.
    pub fn held_bytes(&self) -> usize {
        std::mem::size_of::<Frame>() + self.columns.iter().map(Column::held_bytes).sum::<usize>()
    }

    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// These rows of every column, in this order.
    pub fn take_rows(&self, rows: &[usize]) -> Frame {
        Frame {
            columns: self.columns.iter().map(|c| c.take_rows(rows)).collect(),
        }
    }

    /// Checks what every decoder must guarantee: at least one column, at least one row, unique
    /// names, equal row counts, and data lengths that match the shapes.
    pub fn validate(&self, max_rows: usize) -> RequestResult<()> {
        let Some(first) = self.columns.first() else {
            return Err(RequestError::bad("the request has no input columns"));
        };
        let rows = first.rows();
        if rows == 0 {
            return Err(RequestError::bad(
                "the request has no rows: an empty batch cannot be scored",
            ));
        }
        if rows > max_rows {
            return Err(RequestError::limit(
                crate::error::Limit::Rows,
                format!(
                    "the request has {rows} rows, over the limit of {max_rows} rows per request (inference.max_batch_rows)"
                ),
            ));
        }
        // Few columns (the common case) are compared pairwise, without allocating; many are
        // hashed, so the check stays linear however wide the request.
        let mut names = (self.columns.len() > FEW_COLUMNS)
            .then(|| std::collections::HashSet::with_capacity(self.columns.len()));
        for (i, col) in self.columns.iter().enumerate() {
            let repeated = match names.as_mut() {
                Some(seen) => !seen.insert(col.name.as_str()),
                None => self.columns[..i].iter().any(|c| c.name == col.name),
            };
            if repeated {
                return Err(RequestError::bad(format!(
                    "column '{}' is given twice",
                    col.name
                )));
            }
            if col.rows() != rows {
                return Err(RequestError::bad(format!(
                    "column '{}' has {} rows but column '{}' has {rows}: all inputs must have the same number of rows",
                    col.name,
                    col.rows(),
                    first.name
                )));
            }
            let expected: usize = col.shape.iter().product();
            if col.data.len() != expected {
                return Err(RequestError::bad(format!(
                    "input '{}' has {} values but its shape {:?} needs {expected}",
                    col.name,
                    col.data.len(),
                    col.shape
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f64_col(name: &str, v: &[f64]) -> Column {
        Column::scalar(name, ColumnData::F64(v.to_vec()))
    }

    fn message(r: RequestResult<()>) -> String {
        match r {
            Err(RequestError::BadRequest(m)) => m,
            other => panic!("expected a bad request, got {other:?}"),
        }
    }

    #[test]
    fn valid_frame_passes() {
        let frame = Frame {
            columns: vec![
                f64_col("a", &[1.0, 2.0]),
                Column::scalar("b", ColumnData::Str(vec!["x".into(), "y".into()])),
                Column {
                    name: "t".into(),
                    shape: vec![2, 3],
                    data: ColumnData::I64(vec![1, 2, 3, 4, 5, 6]),
                    from_text: false,
                },
            ],
        };
        frame.validate(10).unwrap();
        assert_eq!(frame.rows(), 2);
        assert_eq!(frame.column("t").unwrap().row_width(), 3);
        assert!(frame.column("missing").is_none());
    }

    #[test]
    fn no_columns_is_an_error() {
        let m = message(Frame::default().validate(10));
        assert!(m.contains("no input columns"), "{m}");
        assert_eq!(Frame::default().rows(), 0);
    }

    #[test]
    fn zero_rows_is_an_error() {
        let frame = Frame {
            columns: vec![f64_col("a", &[])],
        };
        let m = message(frame.validate(10));
        assert!(m.contains("no rows"), "{m}");
    }

    #[test]
    fn row_limit_is_inclusive_and_names_the_setting() {
        let frame = Frame {
            columns: vec![f64_col("a", &[1.0, 2.0, 3.0])],
        };
        frame.validate(3).unwrap();
        let m = match frame.validate(2) {
            Err(RequestError::LimitExceeded { limit, message }) => {
                assert_eq!(limit, crate::error::Limit::Rows);
                message
            }
            other => panic!("expected the row limit, got {other:?}"),
        };
        assert!(m.contains("3 rows"), "{m}");
        assert!(m.contains("limit of 2"), "{m}");
        assert!(m.contains("inference.max_batch_rows"), "{m}");
    }

    #[test]
    fn duplicate_names_are_an_error() {
        let frame = Frame {
            columns: vec![f64_col("a", &[1.0]), f64_col("a", &[2.0])],
        };
        assert_eq!(message(frame.validate(10)), "column 'a' is given twice");
    }

    #[test]
    fn duplicate_names_are_found_in_wide_frames_too() {
        let mut columns: Vec<Column> = (0..100)
            .map(|i| f64_col(&format!("c{i}"), &[1.0]))
            .collect();
        Frame {
            columns: columns.clone(),
        }
        .validate(10)
        .unwrap();
        columns.push(f64_col("c42", &[1.0]));
        let m = message(Frame { columns }.validate(10));
        assert_eq!(m, "column 'c42' is given twice");
    }

    #[test]
    fn unequal_row_counts_name_both_columns() {
        let frame = Frame {
            columns: vec![f64_col("a", &[1.0, 2.0]), f64_col("b", &[1.0])],
        };
        let m = message(frame.validate(10));
        assert!(
            m.starts_with("column 'b' has 1 rows but column 'a' has 2"),
            "{m}"
        );
    }

    #[test]
    fn data_length_must_match_shape() {
        let frame = Frame {
            columns: vec![Column {
                name: "t".into(),
                shape: vec![2, 2],
                data: ColumnData::F64(vec![1.0, 2.0, 3.0]),
                from_text: false,
            }],
        };
        let m = message(frame.validate(10));
        assert!(m.contains("input 't' has 3 values"), "{m}");
        assert!(m.contains("needs 4"), "{m}");
    }

    #[test]
    fn zero_width_rows_are_consistent() {
        let frame = Frame {
            columns: vec![Column {
                name: "t".into(),
                shape: vec![2, 0],
                data: ColumnData::F64(vec![]),
                from_text: false,
            }],
        };
        frame.validate(10).unwrap();
    }

    #[test]
    fn column_data_type_names() {
        assert_eq!(ColumnData::F64(vec![]).type_name(), "number");
        assert_eq!(ColumnData::F32(vec![]).type_name(), "number");
        assert_eq!(ColumnData::I64(vec![]).type_name(), "integer");
        assert_eq!(ColumnData::Bool(vec![]).type_name(), "boolean");
        assert_eq!(ColumnData::Str(vec![]).type_name(), "string");
        assert_eq!(
            ColumnData::I64(vec![]).type_name_with_article(),
            "an integer"
        );
        assert_eq!(ColumnData::Str(vec![]).type_name_with_article(), "a string");
        assert!(ColumnData::Bool(vec![]).is_empty());
        assert_eq!(ColumnData::Bool(vec![true, false]).len(), 2);
    }

    #[test]
    fn take_rows_gathers_rows_of_every_shape() {
        let f = Frame {
            columns: vec![
                Column::scalar(
                    "s",
                    ColumnData::Str(vec!["a".into(), "b".into(), "c".into()]),
                ),
                Column {
                    name: "t".into(),
                    shape: vec![3, 2],
                    data: ColumnData::F32(vec![0.0, 0.5, 1.0, 1.5, 2.0, 2.5]),
                    from_text: false,
                },
            ],
        };
        let g = f.take_rows(&[2, 0]);
        assert_eq!(
            g.columns[0].data,
            ColumnData::Str(vec!["c".into(), "a".into()])
        );
        assert_eq!(g.columns[1].shape, vec![2, 2]);
        assert_eq!(g.columns[1].data, ColumnData::F32(vec![2.0, 2.5, 0.0, 0.5]));
        g.validate(10).unwrap();
    }

    #[test]
    fn one_value_is_one_routing_key_whatever_its_wire_type() {
        let mut text = String::new();
        let keys = |data: ColumnData| {
            let mut out = String::new();
            Column::scalar("k", data).key_text(0, &mut out);
            out
        };
        assert_eq!(keys(ColumnData::I64(vec![1234])), "1234");
        assert_eq!(keys(ColumnData::F64(vec![1234.0])), "1234");
        assert_eq!(keys(ColumnData::Str(vec!["1234".into()])), "1234");
        assert_eq!(keys(ColumnData::F64(vec![0.5])), "0.5");
        Column::scalar("k", ColumnData::Bool(vec![true])).key_text(0, &mut text);
        assert_eq!(text, "true");
    }
}

/// Columns for tests, as a decoder would make them.
#[cfg(test)]
pub mod testing {
    use super::{Column, ColumnData};

    pub fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    pub fn scalar(name: &str, data: ColumnData) -> Column {
        Column::scalar(name, data)
    }

    /// A string column as CSV or a JSON string gives it (read as text, castable).
    pub fn text(name: &str, v: &[&str]) -> Column {
        Column {
            from_text: true,
            ..Column::scalar(name, ColumnData::Str(names(v)))
        }
    }
}
