//! The typed columnar frame every protocol decodes into, and that engines bind to tensors.
//!
//! A column holds one value per row, or a tensor per row (`shape[1..]`), row-major. Types are
//! what the wire said; the engine binding converts them to the model's input types and names
//! the column on any mismatch.

use crate::error::{RequestError, RequestResult};

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

    /// Number of values per row.
    pub fn row_width(&self) -> usize {
        self.shape[1..].iter().product()
    }
}

/// A batch of rows as named, typed columns.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Frame {
    pub columns: Vec<Column>,
}

impl Frame {
    pub fn rows(&self) -> usize {
        self.columns.first().map(Column::rows).unwrap_or(0)
    }

    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
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
            return Err(RequestError::bad(format!(
                "the request has {rows} rows, over the limit of {max_rows} rows per request (inference.max_batch_rows)"
            )));
        }
        for (i, col) in self.columns.iter().enumerate() {
            if self.columns[..i].iter().any(|c| c.name == col.name) {
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
        let m = message(frame.validate(2));
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
}
