//! The feature join's columns as a log record keeps them, packed on the request's thread.
//!
//! A record lives until its batch commits, seconds later, on a writer thread. Kept as the join
//! made them (a vector a column), the columns were freed there, out of the request thread's
//! cache, and that thread's next allocations came back cold (docs/benchmarks.md, "Freed memory
//! kept for a second"). Packed, the join's vectors are freed at the end of the request and the
//! record crosses with two allocations instead of one a column.

use std::sync::Arc;

use super::record::value_bytes;
use crate::features::expr::Value;

/// Columns of equal length as one vector of names and one of values, column after column.
pub struct PackedColumns {
    names: Vec<Arc<str>>,
    values: Vec<Value>,
    rows: usize,
}

impl PackedColumns {
    /// Packs `columns`; a column shorter than the first is padded with nulls, one longer cut.
    pub fn pack(columns: Vec<(Arc<str>, Vec<Value>)>) -> Self {
        let rows = columns.first().map_or(0, |(_, v)| v.len());
        let mut names = Vec::with_capacity(columns.len());
        let mut values = Vec::with_capacity(columns.len() * rows);
        for (name, column) in columns {
            names.push(name);
            let n = column.len().min(rows);
            values.extend(column.into_iter().take(n));
            values.extend(std::iter::repeat_n(Value::Null, rows - n));
        }
        Self {
            names,
            values,
            rows,
        }
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Bytes these columns hold in a record: the names are the feature plan's, shared, so only
    /// their handles count; each value as [`value_bytes`] counts it.
    pub fn held_bytes(&self) -> usize {
        self.names.len() * std::mem::size_of::<Arc<str>>()
            + self.values.iter().map(value_bytes).sum::<usize>()
    }

    /// Each column's name and its values.
    pub fn columns(&self) -> impl Iterator<Item = (&Arc<str>, &[Value])> {
        // `rows.max(1)`: with no rows every column is empty and `chunks` needs a size.
        let chunks = self.values.chunks(self.rows.max(1));
        self.names
            .iter()
            .zip(chunks.chain(std::iter::repeat(&[][..])))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(name: &str, values: &[i64]) -> (Arc<str>, Vec<Value>) {
        (name.into(), values.iter().map(|v| Value::Int(*v)).collect())
    }

    #[test]
    fn packed_columns_keep_each_column_at_the_first_ones_length() {
        let packed = PackedColumns::pack(vec![
            col("a", &[1, 2]),
            col("b", &[3]),
            col("c", &[4, 5, 6]),
        ]);
        assert_eq!(packed.rows(), 2);
        let columns: Vec<(&str, Vec<Value>)> =
            packed.columns().map(|(n, v)| (&**n, v.to_vec())).collect();
        assert_eq!(
            columns,
            [
                ("a", vec![Value::Int(1), Value::Int(2)]),
                ("b", vec![Value::Int(3), Value::Null]),
                ("c", vec![Value::Int(4), Value::Int(5)]),
            ]
        );
        // No rows: every column is there, empty.
        let empty = PackedColumns::pack(vec![col("a", &[]), col("b", &[])]);
        assert_eq!(empty.rows(), 0);
        let names: Vec<(&str, usize)> = empty.columns().map(|(n, v)| (&**n, v.len())).collect();
        assert_eq!(names, [("a", 0), ("b", 0)]);
        assert_eq!(PackedColumns::pack(Vec::new()).columns().count(), 0);
    }

    #[test]
    fn packed_columns_count_their_values_and_name_handles() {
        let text = |s: &str| (Arc::<str>::from("t"), vec![Value::String(s.into())]);
        let short = PackedColumns::pack(vec![col("a", &[1]), text("")]);
        let long = PackedColumns::pack(vec![col("a", &[1]), text(&"x".repeat(1000))]);
        assert_eq!(long.held_bytes() - short.held_bytes(), 1000);
        assert_eq!(
            short.held_bytes(),
            2 * (std::mem::size_of::<Arc<str>>() + std::mem::size_of::<Value>())
        );
    }
}
