//! Turns logged records into Arrow record batches, one typed column per field. Runs on the
//! writer thread, never on the request path.
//!
//! Columns are created as records bring them (a new model version's new feature is a new
//! column) and padded with nulls for rows without them. A name that arrives with a second
//! type gets its own column, `<name>__<type>`, so no value is lost or coerced.

use std::collections::HashMap;
use std::sync::Arc;

use deltalake::arrow::array::{
    ArrayRef, BooleanBuilder, Date32Builder, Float64Builder, Int64Builder, ListBuilder,
    StringBuilder, TimestampMicrosecondBuilder,
};
use deltalake::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use deltalake::arrow::error::ArrowError;
use deltalake::arrow::record_batch::RecordBatch;

/// The type of a logged column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Int,
    Float,
    Bool,
    Str,
    /// Microseconds since the Unix epoch, UTC.
    Timestamp,
    /// Days since the Unix epoch.
    Date,
    IntList,
    FloatList,
    BoolList,
    StrList,
}

impl Kind {
    pub fn data_type(self) -> DataType {
        let list = |t: DataType| DataType::List(Arc::new(Field::new("item", t, true)));
        match self {
            Self::Int => DataType::Int64,
            Self::Float => DataType::Float64,
            Self::Bool => DataType::Boolean,
            Self::Str => DataType::Utf8,
            Self::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            Self::Date => DataType::Date32,
            Self::IntList => list(DataType::Int64),
            Self::FloatList => list(DataType::Float64),
            Self::BoolList => list(DataType::Boolean),
            Self::StrList => list(DataType::Utf8),
        }
    }

    /// The suffix of a column that meets a name already taken by another type.
    pub fn suffix(self) -> &'static str {
        match self {
            Self::Int => "bigint",
            Self::Float => "double",
            Self::Bool => "boolean",
            Self::Str => "string",
            Self::Timestamp => "timestamp",
            Self::Date => "date",
            Self::IntList => "bigint_array",
            Self::FloatList => "double_array",
            Self::BoolList => "boolean_array",
            Self::StrList => "string_array",
        }
    }

    /// The kind of an Arrow type this module writes.
    pub fn of(t: &DataType) -> Option<Self> {
        [
            Self::Int,
            Self::Float,
            Self::Bool,
            Self::Str,
            Self::Timestamp,
            Self::Date,
            Self::IntList,
            Self::FloatList,
            Self::BoolList,
            Self::StrList,
        ]
        .into_iter()
        .find(|k| {
            let mine = k.data_type();
            match (&mine, t) {
                // Nested field names and nullability vary between writers; the item type decides.
                (DataType::List(a), DataType::List(b)) => a.data_type() == b.data_type(),
                (DataType::Timestamp(u, _), DataType::Timestamp(v, _)) => u == v,
                _ => &mine == t,
            }
        })
    }
}

/// A value of one cell.
pub enum Cell<'a> {
    Int(i64),
    Float(f64),
    Bool(bool),
    Str(&'a str),
    Timestamp(i64),
    Date(i32),
    Ints(&'a [i64]),
    Floats(&'a [f64]),
    Bools(&'a [bool]),
    Strs(&'a [String]),
}

impl Cell<'_> {
    fn kind(&self) -> Kind {
        match self {
            Self::Int(_) => Kind::Int,
            Self::Float(_) => Kind::Float,
            Self::Bool(_) => Kind::Bool,
            Self::Str(_) => Kind::Str,
            Self::Timestamp(_) => Kind::Timestamp,
            Self::Date(_) => Kind::Date,
            Self::Ints(_) => Kind::IntList,
            Self::Floats(_) => Kind::FloatList,
            Self::Bools(_) => Kind::BoolList,
            Self::Strs(_) => Kind::StrList,
        }
    }
}

enum Builder {
    Int(Int64Builder),
    Float(Float64Builder),
    Bool(BooleanBuilder),
    Str(StringBuilder),
    Timestamp(TimestampMicrosecondBuilder),
    Date(Date32Builder),
    IntList(ListBuilder<Int64Builder>),
    FloatList(ListBuilder<Float64Builder>),
    BoolList(ListBuilder<BooleanBuilder>),
    StrList(ListBuilder<StringBuilder>),
}

impl Builder {
    fn new(kind: Kind) -> Self {
        match kind {
            Kind::Int => Self::Int(Int64Builder::new()),
            Kind::Float => Self::Float(Float64Builder::new()),
            Kind::Bool => Self::Bool(BooleanBuilder::new()),
            Kind::Str => Self::Str(StringBuilder::new()),
            Kind::Timestamp => Self::Timestamp(TimestampMicrosecondBuilder::new()),
            Kind::Date => Self::Date(Date32Builder::new()),
            Kind::IntList => Self::IntList(ListBuilder::new(Int64Builder::new())),
            Kind::FloatList => Self::FloatList(ListBuilder::new(Float64Builder::new())),
            Kind::BoolList => Self::BoolList(ListBuilder::new(BooleanBuilder::new())),
            Kind::StrList => Self::StrList(ListBuilder::new(StringBuilder::new())),
        }
    }

    fn append_null(&mut self) {
        match self {
            Self::Int(b) => b.append_null(),
            Self::Float(b) => b.append_null(),
            Self::Bool(b) => b.append_null(),
            Self::Str(b) => b.append_null(),
            Self::Timestamp(b) => b.append_null(),
            Self::Date(b) => b.append_null(),
            Self::IntList(b) => b.append_null(),
            Self::FloatList(b) => b.append_null(),
            Self::BoolList(b) => b.append_null(),
            Self::StrList(b) => b.append_null(),
        }
    }

    /// Appends `cell`, whose kind is this builder's.
    fn append(&mut self, cell: &Cell<'_>) {
        match (self, cell) {
            (Self::Int(b), Cell::Int(v)) => b.append_value(*v),
            (Self::Float(b), Cell::Float(v)) => b.append_value(*v),
            (Self::Bool(b), Cell::Bool(v)) => b.append_value(*v),
            (Self::Str(b), Cell::Str(v)) => b.append_value(v),
            (Self::Timestamp(b), Cell::Timestamp(v)) => b.append_value(*v),
            (Self::Date(b), Cell::Date(v)) => b.append_value(*v),
            (Self::IntList(b), Cell::Ints(v)) => {
                b.values().append_slice(v);
                b.append(true);
            }
            (Self::FloatList(b), Cell::Floats(v)) => {
                b.values().append_slice(v);
                b.append(true);
            }
            (Self::BoolList(b), Cell::Bools(v)) => {
                b.values().append_slice(v);
                b.append(true);
            }
            (Self::StrList(b), Cell::Strs(v)) => {
                for s in *v {
                    b.values().append_value(s);
                }
                b.append(true);
            }
            (b, _) => b.append_null(),
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Self::Int(b) => Arc::new(b.finish()),
            Self::Float(b) => Arc::new(b.finish()),
            Self::Bool(b) => Arc::new(b.finish()),
            Self::Str(b) => Arc::new(b.finish()),
            Self::Timestamp(b) => Arc::new(b.finish().with_timezone("UTC")),
            Self::Date(b) => Arc::new(b.finish()),
            Self::IntList(b) => Arc::new(b.finish()),
            Self::FloatList(b) => Arc::new(b.finish()),
            Self::BoolList(b) => Arc::new(b.finish()),
            Self::StrList(b) => Arc::new(b.finish()),
        }
    }
}

struct Column {
    name: String,
    /// It shows the name cells are set by (the first kind that came with it, and no other
    /// column had the name); other columns are found through the index only.
    plain: bool,
    kind: Kind,
    nullable: bool,
    builder: Builder,
    len: usize,
}

/// Rows under construction: append cells to the current row, then [`TableRows::end_row`].
#[derive(Default)]
pub struct TableRows {
    columns: Vec<Column>,
    /// Name -> the columns of that name, by kind (the first one keeps the plain name).
    index: HashMap<String, Vec<(Kind, usize)>>,
    rows: usize,
    /// The column after the one set last: records set their cells in the same order row
    /// after row, so this is nearly always the next one, found without hashing its name.
    next: usize,
}

impl TableRows {
    /// Declares a column up front (the fixed columns, in table order).
    pub fn declare(&mut self, name: &str, kind: Kind, nullable: bool) {
        self.column(name, kind).nullable = nullable;
    }

    fn column(&mut self, name: &str, kind: Kind) -> &mut Column {
        let hinted = self
            .columns
            .get(self.next)
            .is_some_and(|c| c.plain && c.kind == kind && c.name == name);
        let found = if hinted {
            Some(self.next)
        } else {
            self.index
                .get(name)
                .and_then(|v| v.iter().find(|(k, _)| *k == kind).map(|&(_, i)| i))
        };
        if let Some(i) = found {
            self.next = i + 1;
            return &mut self.columns[i];
        }
        self.next = self.columns.len() + 1;
        let slots = self.index.entry(name.to_owned()).or_default();
        let mut column_name = if slots.is_empty() {
            name.to_owned()
        } else {
            format!("{name}__{}", kind.suffix())
        };
        // Names stay unique (a table cannot have two columns of one name): a column sent as
        // `b__double` beside `b`'s second-type column takes the suffix once more.
        while self.columns.iter().any(|c| c.name == column_name) {
            column_name = format!("{column_name}__{}", kind.suffix());
        }
        let plain = column_name == name;
        slots.push((kind, self.columns.len()));
        let mut builder = Builder::new(kind);
        for _ in 0..self.rows {
            builder.append_null();
        }
        self.columns.push(Column {
            name: column_name,
            plain,
            kind,
            nullable: true,
            builder,
            len: self.rows,
        });
        self.columns.last_mut().expect("just pushed")
    }

    /// Sets `name` in the current row (a second value for the same column is ignored).
    pub fn set(&mut self, name: &str, cell: Cell<'_>) {
        let row = self.rows;
        let col = self.column(name, cell.kind());
        if col.len == row {
            col.builder.append(&cell);
            col.len += 1;
        }
    }

    pub fn end_row(&mut self) {
        self.next = 0;
        self.rows += 1;
        for col in &mut self.columns {
            while col.len < self.rows {
                col.builder.append_null();
                col.len += 1;
            }
        }
    }

    pub fn finish(mut self) -> Result<RecordBatch, ArrowError> {
        let fields: Vec<Field> = self
            .columns
            .iter()
            .map(|c| Field::new(&c.name, c.kind.data_type(), c.nullable))
            .collect();
        let arrays: Vec<ArrayRef> = self
            .columns
            .iter_mut()
            .map(|c| c.builder.finish())
            .collect();
        RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use deltalake::arrow::array::{Array, AsArray};
    use deltalake::arrow::datatypes::{Float64Type, Int64Type};

    #[test]
    fn columns_appear_as_rows_bring_them_and_pad_with_nulls() {
        let mut t = TableRows::default();
        t.declare("id", Kind::Str, false);
        t.set("id", Cell::Str("a"));
        t.set("x", Cell::Int(1));
        t.end_row();
        t.set("id", Cell::Str("b"));
        t.set("y", Cell::Floats(&[1.0, 2.0]));
        t.end_row();
        let batch = t.finish().unwrap();
        assert_eq!(batch.num_rows(), 2);
        let names = column_names(&batch);
        assert_eq!(names, ["id", "x", "y"]);
        let x = batch.column(1).as_primitive::<Int64Type>();
        assert_eq!((x.value(0), x.is_null(1)), (1, true));
        let y = batch.column(2).as_list::<i32>();
        assert!(y.is_null(0));
        let values = y.value(1);
        assert_eq!(values.as_primitive::<Float64Type>().values(), &[1.0, 2.0]);
        assert!(!batch.schema_ref().field(0).is_nullable());
    }

    /// A batch's column names, in order.
    pub(in crate::inference_log) fn column_names(batch: &RecordBatch) -> Vec<&str> {
        batch
            .schema_ref()
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect()
    }

    #[test]
    fn a_name_with_a_second_type_gets_its_own_column() {
        let mut t = TableRows::default();
        t.set("Amount", Cell::Float(1.5));
        t.end_row();
        t.set("Amount", Cell::Str("n/a"));
        t.end_row();
        let batch = t.finish().unwrap();
        let names = column_names(&batch);
        assert_eq!(names, ["Amount", "Amount__string"]);
        assert_eq!(batch.column(1).as_string::<i32>().value(1), "n/a");
    }

    #[test]
    fn cells_find_their_columns_whatever_order_rows_set_them_in() {
        use Cell::{Float, Int};
        let rows = [
            vec![("a", Int(1)), ("b", Int(2)), ("c", Int(3))],
            // Another order, a column left out, a name with a second type.
            vec![("c", Int(30)), ("a", Int(10)), ("b", Float(2.5))],
            // A second value for a column in one row is ignored.
            vec![("b", Int(200)), ("b", Int(201)), ("a", Int(100))],
            // Sent by the name the second type's column shows, right after `c` (where that
            // column is next in line): a column of its own, under a name of its own.
            vec![("c", Int(0)), ("b__double", Float(9.5))],
        ];
        let mut t = TableRows::default();
        for row in rows {
            for (name, cell) in row {
                t.set(name, cell);
            }
            t.end_row();
        }
        let batch = t.finish().unwrap();
        assert_eq!(
            column_names(&batch),
            ["a", "b", "c", "b__double", "b__double__double"]
        );
        let ints = |i: usize| -> Vec<Option<i64>> {
            batch.column(i).as_primitive::<Int64Type>().iter().collect()
        };
        let floats = |i: usize| -> Vec<Option<f64>> {
            batch
                .column(i)
                .as_primitive::<Float64Type>()
                .iter()
                .collect()
        };
        assert_eq!(ints(0), [Some(1), Some(10), Some(100), None]);
        assert_eq!(ints(1), [Some(2), None, Some(200), None]);
        assert_eq!(ints(2), [Some(3), Some(30), None, Some(0)]);
        assert_eq!(floats(3), [None, Some(2.5), None, None]);
        assert_eq!(floats(4), [None, None, None, Some(9.5)]);
    }

    #[test]
    fn kinds_round_trip_through_arrow_types() {
        for k in [Kind::Int, Kind::Timestamp, Kind::StrList, Kind::Date] {
            assert_eq!(Kind::of(&k.data_type()), Some(k));
        }
        let other_list = DataType::List(Arc::new(Field::new("element", DataType::Int64, false)));
        assert_eq!(Kind::of(&other_list), Some(Kind::IntList));
    }
}
