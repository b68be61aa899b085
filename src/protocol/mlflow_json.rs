//! Streaming decoder of MLflow JSON bodies: `dataframe_split` and `dataframe_records` cells go
//! straight from the parser into typed column builders, with no `serde_json::Value` tree in
//! between (the tree cost most of the request path for batches; see docs/benchmarks.md).
//!
//! Domain errors (a wrong type, a ragged row) are stashed in [`Ctx`] and the parse is aborted;
//! the caller gets the stashed [`RequestError`], or the parser's own error for broken JSON.
//! `serde_json::Value` is itself a deserializer, so the same seeds decode values held back
//! (`data` before `columns`, `instances` records).

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use super::bounded::{BoundedValue, NodeBudget};
use super::columns::{ColumnBuilder, Scalar};
use super::limits::{Budget, DecodeLimits};
use crate::data::frame::Frame;
use crate::error::RequestError;

/// The first domain error of a decode, and what the decode has taken of its limits.
#[derive(Default)]
pub struct Ctx {
    error: RefCell<Option<RequestError>>,
    pub budget: Budget,
    /// Nodes of the JSON trees held whole (tensor cells, `instances`, `params`, ...).
    pub nodes: NodeBudget,
}

impl Ctx {
    pub fn new(limits: DecodeLimits) -> Self {
        Self {
            error: RefCell::new(None),
            budget: Budget::new(limits),
            nodes: NodeBudget::new(&limits),
        }
    }

    /// A JSON tree held whole, counted.
    pub fn tree(&self) -> BoundedValue<'_> {
        BoundedValue(&self.nodes)
    }

    /// Stashes `e` and returns a parser error that aborts the parse.
    pub fn fail<E: de::Error>(&self, e: RequestError) -> E {
        let mut slot = self.error.borrow_mut();
        if slot.is_none() {
            *slot = Some(e);
        }
        E::custom("request error")
    }

    /// The decode's refusal: its domain error, or the tree bound it ran into.
    pub fn take(&self) -> Option<RequestError> {
        self.error
            .borrow_mut()
            .take()
            .or_else(|| self.nodes.refusal())
    }
}

/// Answers every JSON type but the expected ones with the seed's `wrong_type` error.
macro_rules! refuse_other_types {
    ($($kind:ident),*) => {
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> { Err(self.ctx.fail(self.wrong_type())) }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> { Err(self.ctx.fail(self.wrong_type())) }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> { Err(self.ctx.fail(self.wrong_type())) }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> { Err(self.ctx.fail(self.wrong_type())) }
        fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> { Err(self.ctx.fail(self.wrong_type())) }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> { Err(self.ctx.fail(self.wrong_type())) }
        $(refuse_other_types!(@ $kind);)*
    };
    (@ map) => {
        fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> { Err(self.ctx.fail(self.wrong_type())) }
    };
    (@ seq) => {
        fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> { Err(self.ctx.fail(self.wrong_type())) }
    };
}

/// `{"columns": [...], "data": [[...], ...]}` into a frame.
pub struct SplitSeed<'a> {
    pub ctx: &'a Ctx,
}

impl SplitSeed<'_> {
    fn wrong_type(&self) -> RequestError {
        RequestError::bad("'dataframe_split' must be an object with 'columns' and 'data'")
    }
}

impl<'de> DeserializeSeed<'de> for SplitSeed<'_> {
    type Value = Frame;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Frame, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for SplitSeed<'_> {
    type Value = Frame;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a dataframe_split object")
    }

    refuse_other_types!(seq);

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Frame, A::Error> {
        let ctx = self.ctx;
        let mut columns: Option<Vec<ColumnBuilder>> = None;
        let mut streamed = false;
        let mut held_data: Option<Value> = None;
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "columns" => {
                    let names = map.next_value_seed(ctx.tree())?;
                    columns = Some(column_names(names, ctx).map_err(|e| ctx.fail(e))?)
                }
                "data" => match columns.as_mut() {
                    Some(builders) => {
                        map.next_value_seed(RowsSeed { ctx, builders })?;
                        streamed = true;
                    }
                    // `data` before `columns`: hold it back, decode it once the names are known.
                    None => held_data = Some(map.next_value_seed(ctx.tree())?),
                },
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let Some(mut builders) = columns else {
            return Err(ctx.fail(RequestError::bad("'dataframe_split' has no 'columns' list")));
        };
        match held_data {
            _ if streamed => {}
            Some(data) => {
                RowsSeed {
                    ctx,
                    builders: &mut builders,
                }
                .deserialize(data)
                .map_err(de::Error::custom)?;
            }
            None => return Err(ctx.fail(RequestError::bad("'dataframe_split' has no 'data' list"))),
        }
        Ok(Frame {
            columns: builders.into_iter().map(ColumnBuilder::finish).collect(),
        })
    }
}

fn column_names(v: Value, ctx: &Ctx) -> Result<Vec<ColumnBuilder>, RequestError> {
    let Value::Array(cols) = v else {
        return Err(RequestError::bad(
            "'dataframe_split.columns' must be a list of column names",
        ));
    };
    ctx.budget.limits.columns(cols.len())?;
    cols.into_iter()
        .enumerate()
        .map(|(i, c)| match c {
            Value::String(s) => Ok(ColumnBuilder::new(s)),
            _ => Err(RequestError::bad(format!(
                "'dataframe_split.columns[{i}]' must be a string"
            ))),
        })
        .collect()
}

/// `[[...], ...]`: each row's cells go to the builders by position.
struct RowsSeed<'a> {
    ctx: &'a Ctx,
    builders: &'a mut Vec<ColumnBuilder>,
}

impl RowsSeed<'_> {
    fn wrong_type(&self) -> RequestError {
        RequestError::bad("'dataframe_split.data' must be a list of rows")
    }
}

impl<'de> DeserializeSeed<'de> for RowsSeed<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for RowsSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of rows")
    }

    refuse_other_types!(map);

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut row = 0;
        while seq
            .next_element_seed(RowSeed {
                ctx: self.ctx,
                builders: self.builders,
                row,
            })?
            .is_some()
        {
            row += 1;
        }
        Ok(())
    }
}

struct RowSeed<'a> {
    ctx: &'a Ctx,
    builders: &'a mut Vec<ColumnBuilder>,
    row: usize,
}

impl RowSeed<'_> {
    fn wrong_type(&self) -> RequestError {
        RequestError::bad(format!(
            "'dataframe_split.data[{}]' must be a list of values",
            self.row
        ))
    }
}

impl<'de> DeserializeSeed<'de> for RowSeed<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for RowSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a row of values")
    }

    refuse_other_types!(map);

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let columns = self.builders.len();
        let mut count = 0;
        loop {
            let more = match self.builders.get_mut(count) {
                Some(builder) => seq
                    .next_element_seed(CellSeed {
                        ctx: self.ctx,
                        builder,
                    })?
                    .is_some(),
                // Count the surplus for the message.
                None => seq.next_element::<IgnoredAny>()?.is_some(),
            };
            if !more {
                break;
            }
            count += 1;
        }
        if count != columns {
            return Err(self.ctx.fail(RequestError::bad(format!(
                "'dataframe_split.data[{}]' has {count} values but there are {columns} columns",
                self.row
            ))));
        }
        Ok(())
    }
}

/// `[{"col": value, ...}, ...]`: the first record fixes the columns; every other record must
/// have the same keys, in any order.
pub struct RecordsSeed<'a> {
    pub ctx: &'a Ctx,
    pub field: &'a str,
}

impl RecordsSeed<'_> {
    fn wrong_type(&self) -> RequestError {
        RequestError::bad(format!("'{}' must be a list of records", self.field))
    }
}

impl<'de> DeserializeSeed<'de> for RecordsSeed<'_> {
    type Value = Frame;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Frame, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for RecordsSeed<'_> {
    type Value = Frame;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of records")
    }

    refuse_other_types!(map);

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Frame, A::Error> {
        let mut builders = Vec::new();
        let mut seen = Vec::new();
        let mut index = HashMap::new();
        let mut row = 0;
        while seq
            .next_element_seed(RecordSeed {
                ctx: self.ctx,
                field: self.field,
                builders: &mut builders,
                seen: &mut seen,
                index: &mut index,
                row,
            })?
            .is_some()
        {
            row += 1;
        }
        Ok(Frame {
            columns: builders.into_iter().map(ColumnBuilder::finish).collect(),
        })
    }
}

struct RecordSeed<'a> {
    ctx: &'a Ctx,
    field: &'a str,
    builders: &'a mut Vec<ColumnBuilder>,
    /// Which columns this record has given, reused across records.
    seen: &'a mut Vec<bool>,
    /// Column name to builder: one lookup per key, whatever the width.
    index: &'a mut HashMap<String, usize>,
    row: usize,
}

impl RecordSeed<'_> {
    fn wrong_type(&self) -> RequestError {
        RequestError::bad(format!("'{}[{}]' must be an object", self.field, self.row))
    }

    /// Names at most [`NAMED`] of each difference: the error stays small however wide the
    /// record.
    fn differs(&self, missing: &[&str], extra: &[String], extra_count: usize) -> RequestError {
        let more = |shown: usize, total: usize| {
            if total > shown {
                format!(" and {} more", total - shown)
            } else {
                String::new()
            }
        };
        let shown_missing = &missing[..missing.len().min(NAMED)];
        RequestError::bad(format!(
            "'{}[{}]' has different columns than the first record (missing: {shown_missing:?}{}, extra: {extra:?}{})",
            self.field,
            self.row,
            more(shown_missing.len(), missing.len()),
            more(extra.len(), extra_count)
        ))
    }
}

impl<'de> DeserializeSeed<'de> for RecordSeed<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for RecordSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a record")
    }

    refuse_other_types!(seq);

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let ctx = self.ctx;
        self.seen.iter_mut().for_each(|s| *s = false);
        // Keys the first record did not have; once there is one, the rest is only read to
        // name every difference in the error.
        let mut extra: Vec<String> = Vec::new();
        let mut extra_count = 0usize;
        while let Some(key) = map.next_key::<String>()? {
            let index = match self.index.get(&key).copied() {
                Some(i) if self.seen[i] => {
                    return Err(ctx.fail(RequestError::bad(format!(
                        "'{}[{}]' gives column '{key}' twice",
                        self.field, self.row
                    ))))
                }
                Some(i) => i,
                None if self.row == 0 => {
                    ctx.budget
                        .limits
                        .columns(self.builders.len() + 1)
                        .map_err(|e| ctx.fail(e))?;
                    self.index.insert(key.clone(), self.builders.len());
                    self.builders.push(ColumnBuilder::new(key));
                    self.seen.push(false);
                    self.builders.len() - 1
                }
                None => {
                    if extra.len() < NAMED {
                        extra.push(key);
                    }
                    extra_count += 1;
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            self.seen[index] = true;
            if extra_count == 0 {
                map.next_value_seed(CellSeed {
                    ctx,
                    builder: &mut self.builders[index],
                })?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        if extra_count > 0 || self.seen.iter().any(|s| !s) {
            let missing: Vec<&str> = self
                .builders
                .iter()
                .zip(self.seen.iter())
                .filter(|(_, s)| !**s)
                .map(|(b, _)| b.name())
                .collect();
            return Err(ctx.fail(self.differs(&missing, &extra, extra_count)));
        }
        Ok(())
    }
}

/// Column names an error lists before it says how many more there are.
const NAMED: usize = 10;

/// One cell: a scalar, or a nested list (a tensor per row).
struct CellSeed<'a> {
    ctx: &'a Ctx,
    builder: &'a mut ColumnBuilder,
}

impl CellSeed<'_> {
    fn push<E: de::Error>(self, v: Scalar<'_>) -> Result<(), E> {
        self.builder
            .push_scalar_row(v, &self.ctx.budget)
            .map_err(|e| self.ctx.fail(e))
    }
}

impl<'de> DeserializeSeed<'de> for CellSeed<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for CellSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        self.push(Scalar::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.push(Scalar::Int(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.push(i64::try_from(v).map_or(Scalar::Float(v as f64), Scalar::Int))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        self.push(Scalar::Float(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.push(Scalar::Str(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.push(Scalar::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        self.push(Scalar::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
        // Tensor cells are rare: take the tree (counted) and let the builder check its shape.
        let value = self
            .ctx
            .tree()
            .deserialize(de::value::SeqAccessDeserializer::new(seq))?;
        self.builder
            .push_row(&value, &self.ctx.budget)
            .map_err(|e| self.ctx.fail(e))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        let value = self
            .ctx
            .tree()
            .deserialize(de::value::MapAccessDeserializer::new(map))?;
        self.builder
            .push_row(&value, &self.ctx.budget)
            .map_err(|e| self.ctx.fail(e))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::data::frame::ColumnData;
    use crate::error::RequestError;
    use crate::protocol::mlflow::decode_json;

    fn frame(v: serde_json::Value) -> crate::data::frame::Frame {
        decode_json(v.to_string().as_bytes()).unwrap().frame
    }

    fn bad(v: serde_json::Value) -> String {
        match decode_json(v.to_string().as_bytes()) {
            Err(RequestError::BadRequest(m)) => m,
            other => panic!("expected a bad request, got {other:?}"),
        }
    }

    #[test]
    fn data_before_columns_decodes_the_same() {
        // serde_json's `json!` sorts keys, so build the text by hand.
        let body = br#"{"dataframe_split": {"data": [[1, "a"], [2.5, "b"]], "index": [0, 1], "columns": ["x", "y"]}}"#;
        let f = decode_json(body).unwrap().frame;
        assert_eq!(f.columns[0].name, "x");
        assert_eq!(f.columns[0].data, ColumnData::F64(vec![1.0, 2.5]));
        assert_eq!(
            f.columns[1].data,
            ColumnData::Str(vec!["a".into(), "b".into()])
        );
        let body = br#"{"dataframe_split": {"data": [[1, "a"], [2]], "columns": ["x", "y"]}}"#;
        let m = match decode_json(body) {
            Err(RequestError::BadRequest(m)) => m,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            m,
            "'dataframe_split.data[1]' has 1 values but there are 2 columns"
        );
    }

    #[test]
    fn records_may_order_keys_freely_but_not_repeat_them() {
        let body = br#"{"dataframe_records": [{"a": 1, "b": true}, {"b": false, "a": 2}]}"#;
        let f = decode_json(body).unwrap().frame;
        assert_eq!(f.columns[0].data, ColumnData::I64(vec![1, 2]));
        assert_eq!(f.columns[1].data, ColumnData::Bool(vec![true, false]));
        let body = br#"{"dataframe_records": [{"a": 1}, {"a": 2, "a": 3}]}"#;
        let m = match decode_json(body) {
            Err(RequestError::BadRequest(m)) => m,
            other => panic!("{other:?}"),
        };
        assert_eq!(m, "'dataframe_records[1]' gives column 'a' twice");
    }

    #[test]
    fn tensor_cells_and_objects_in_cells() {
        let f = frame(json!({"dataframe_split": {"columns": ["v"], "data": [[[1, 2]], [[3, 4]]]}}));
        assert_eq!(f.columns[0].shape, vec![2, 2]);
        let m = bad(json!({"dataframe_split": {"columns": ["v"], "data": [[{"k": 1}]]}}));
        assert!(m.contains("column 'v' row 0 holds an object"), "{m}");
    }

    #[test]
    fn structure_errors_are_named() {
        let m = bad(json!({"dataframe_split": {"columns": ["v"], "data": {"a": 1}}}));
        assert_eq!(m, "'dataframe_split.data' must be a list of rows");
        let m = bad(json!({"dataframe_split": {"columns": ["v"], "data": [5]}}));
        assert_eq!(m, "'dataframe_split.data[0]' must be a list of values");
        let m = bad(json!({"dataframe_records": {"a": 1}}));
        assert_eq!(m, "'dataframe_records' must be a list of records");
        let m = bad(json!({"dataframe_records": [[1]]}));
        assert_eq!(m, "'dataframe_records[0]' must be an object");
    }
}
