//! Stage 1 of a request's join: the request's columns typed, what the model still needs (to
//! look up or compute), and the keys of the one batched lookup.

use std::sync::Arc;

use super::plan::JoinPlan;
use crate::data::cast::convert;
use crate::data::frame::{Column, ColumnData, Frame};
use crate::data::tensor::{ElemType, TensorData};
use crate::data::time::text_timestamp;
use crate::error::{RequestError, RequestResult};
use crate::features::expr::{Type, Value};
use crate::features::store::{key_text, Query, KEY_SEPARATOR};

/// A join in progress: what the stages have made so far. Owned, so it can wait for the online
/// store and move to the inference pool without the request's frame.
pub(super) struct Joining {
    pub(super) rows: usize,
    /// Every column so far by name: the request's (frame order), then each stage's.
    pub(super) env: Vec<(Arc<str>, Vec<Value>)>,
    /// By column id: its index in `env`, once there.
    pub(super) slots: Vec<Option<usize>>,
    /// By column id: the model needs it and the request did not send it, or a needed function
    /// reads it.
    pub(super) wanted: Vec<bool>,
    /// By lookup: some feature of it is wanted.
    pub(super) needed: Vec<bool>,
    /// One per row of every needed lookup, lookup by lookup.
    pub(super) keys: Vec<Key>,
    /// By column id: the rows its default filled.
    pub(super) defaulted: Vec<u32>,
    /// The time ages are measured at when the request has no timestamp column.
    now: i64,
}

/// One row's lookup in one table.
pub(super) struct Key {
    pub(super) lookup: usize,
    /// The key columns' values as key text, joined by [`KEY_SEPARATOR`].
    pub(super) text: String,
    /// For as-of tables: the row's time (no time: the newest row).
    pub(super) as_of: Option<i64>,
}

impl Joining {
    /// Adds a column the join made.
    pub(super) fn push(&mut self, plan: &JoinPlan, id: usize, values: Vec<Value>) {
        self.slots[id] = Some(self.env.len());
        self.env.push((plan.shared_name(id), values));
    }

    /// Column `id`'s values, when the request sent it or a stage made it.
    pub(super) fn values(&self, id: usize) -> Option<&[Value]> {
        self.slots[id].map(|i| self.env[i].1.as_slice())
    }

    /// The time row `r`'s ages are measured at: its request timestamp, else now.
    pub(super) fn reference(&self, plan: &JoinPlan, r: usize) -> i64 {
        match plan
            .request_ts
            .and_then(|id| self.values(id))
            .map(|v| &v[r])
        {
            Some(Value::Timestamp(ms)) => *ms,
            _ => self.now,
        }
    }
}

impl JoinPlan {
    /// Types the request's columns, finds what the model still needs, and keys the lookups.
    /// `ignore` is a column (the routing key) the request may carry besides the spec's.
    pub(super) fn prepare(&self, frame: &Frame, ignore: Option<&str>) -> RequestResult<Joining> {
        let rows = frame.rows();
        // Room for every column of the plan (each comes at most once): no regrowth.
        let mut env: Vec<(Arc<str>, Vec<Value>)> = Vec::with_capacity(self.columns.len());
        let mut slots = vec![None; self.columns.len()];
        let mut unknown: Vec<&str> = Vec::new();
        for col in &frame.columns {
            let Some(id) = self.id_of(&col.name) else {
                if Some(col.name.as_str()) != ignore {
                    unknown.push(&col.name);
                }
                continue;
            };
            slots[id] = Some(env.len());
            env.push((
                self.shared_name(id),
                request_values(col, self.columns[id].1)?,
            ));
        }
        if !unknown.is_empty() {
            return Err(RequestError::bad(format!(
                "unknown input column(s) {unknown:?}: the endpoint takes {} (and may send the features it looks up or computes)",
                self.request_columns().join(", ")
            )));
        }
        let now = crate::clock::now_ms() as i64;
        let wanted = self.wanted(&slots);
        let needed: Vec<bool> = self
            .lookups
            .iter()
            .map(|l| l.features.iter().any(|f| wanted[f.id]))
            .collect();
        let mut joining = Joining {
            rows,
            env,
            defaulted: vec![0; self.columns.len()],
            slots,
            wanted,
            needed,
            keys: Vec::new(),
            now,
        };
        joining.keys = self.keys(&joining)?;
        Ok(joining)
    }

    /// What must be looked up or computed: the model's columns the request did not send, and
    /// (last function first) what the functions that make them read.
    fn wanted(&self, sent: &[Option<usize>]) -> Vec<bool> {
        let mut wanted = vec![false; self.columns.len()];
        for &id in &self.model_columns {
            wanted[id] |= sent[id].is_none();
        }
        for f in self.functions.iter().rev() {
            if wanted[f.id] {
                for &a in &f.args {
                    wanted[a] |= sent[a].is_none();
                }
            }
        }
        wanted
    }

    /// One key per row of every needed lookup; a key column the request lacks is a 400.
    fn keys(&self, joining: &Joining) -> RequestResult<Vec<Key>> {
        let mut keys = Vec::new();
        for (li, l) in self.lookups.iter().enumerate() {
            if !joining.needed[li] {
                continue;
            }
            let missing = |id: usize, what: &str| {
                RequestError::bad(format!(
                    "missing {what} column '{}' (for table '{}')",
                    self.name(id),
                    l.table
                ))
            };
            let key_cols = l
                .key_ids
                .iter()
                .map(|&id| joining.values(id).ok_or_else(|| missing(id, "lookup key")))
                .collect::<RequestResult<Vec<_>>>()?;
            let as_of_col = match l.as_of {
                Some(id) => Some(joining.values(id).ok_or_else(|| missing(id, "timestamp"))?),
                None => None,
            };
            for r in 0..joining.rows {
                let mut text = String::new();
                for (i, col) in key_cols.iter().enumerate() {
                    if i > 0 {
                        text.push(KEY_SEPARATOR);
                    }
                    key_text(&col[r], &mut text);
                }
                let as_of = as_of_col.map(|c| match &c[r] {
                    Value::Timestamp(t) => *t,
                    _ => i64::MAX,
                });
                keys.push(Key {
                    lookup: li,
                    text,
                    as_of,
                });
            }
        }
        Ok(keys)
    }

    /// The store's queries for the keys, and each one's columns.
    pub(super) fn queries<'a>(&'a self, keys: &'a [Key]) -> (Vec<Query<'a>>, Vec<&'a [String]>) {
        keys.iter()
            .map(|k| {
                let l = &self.lookups[k.lookup];
                let query = Query {
                    table: &l.table,
                    key: &k.text,
                    as_of: k.as_of,
                };
                (query, l.columns.as_slice())
            })
            .unzip()
    }
}

/// A request column's values as `ty`; a value that does not fit is a 400 naming the column
/// and row, with the same conversions and messages as binding a column to a model input.
fn request_values(col: &Column, ty: Type) -> RequestResult<Vec<Value>> {
    if col.row_width() != 1 {
        return Err(RequestError::bad(format!(
            "input '{}' has shape {:?} but takes one value per row",
            col.name, col.shape
        )));
    }
    match direct_values(col, ty) {
        Some(values) => Ok(values),
        None => converted_values(col, ty),
    }
}

/// The values of a column whose type needs no conversion (no tensor in between), or `None`:
/// the other types, and any value the conversion would refuse, take [`converted_values`].
fn direct_values(col: &Column, ty: Type) -> Option<Vec<Value>> {
    match (&col.data, ty) {
        (ColumnData::F64(v), Type::Float) if v.iter().all(|x| x.is_finite()) => {
            Some(v.iter().map(|x| Value::Float(*x)).collect())
        }
        (ColumnData::I64(v), Type::Float) => {
            Some(v.iter().map(|x| Value::Float(*x as f64)).collect())
        }
        (ColumnData::I64(v), Type::Int) => Some(v.iter().map(|x| Value::Int(*x)).collect()),
        (ColumnData::Bool(v), Type::Bool) => Some(v.iter().map(|b| Value::Bool(*b)).collect()),
        (ColumnData::Str(v), Type::String) => {
            Some(v.iter().map(|s| Value::String(s.clone())).collect())
        }
        _ => None,
    }
}

/// A column's values through the conversion a model input's binding uses.
fn converted_values(col: &Column, ty: Type) -> RequestResult<Vec<Value>> {
    let elem = match ty {
        Type::Int => ElemType::I64,
        Type::Float => ElemType::F64,
        Type::Bool => ElemType::Bool,
        Type::String => ElemType::Str,
        Type::Timestamp => return timestamps(col),
    };
    Ok(match convert(col, elem)? {
        TensorData::I64(v) => v.into_iter().map(Value::Int).collect(),
        TensorData::I32(v) => v.into_iter().map(|x| Value::Int(i64::from(x))).collect(),
        TensorData::F64(v) => v.into_iter().map(Value::Float).collect(),
        TensorData::F32(v) => v.into_iter().map(|x| Value::Float(f64::from(x))).collect(),
        TensorData::Bool(v) => v.into_iter().map(Value::Bool).collect(),
        TensorData::Str(v) => v.into_iter().map(Value::String).collect(),
    })
}

/// A timestamp column: ISO 8601 text or epoch milliseconds.
fn timestamps(col: &Column) -> RequestResult<Vec<Value>> {
    let bad = |r: usize, shown: String| {
        RequestError::bad(format!(
            "column '{}' row {r} is {shown}, not a timestamp (ISO 8601 such as 2026-11-22T10:19:05Z, or epoch milliseconds)",
            col.name
        ))
    };
    match &col.data {
        ColumnData::Str(v) => v
            .iter()
            .enumerate()
            .map(|(r, s)| {
                text_timestamp(s, col.from_text)
                    .map(Value::Timestamp)
                    .ok_or_else(|| bad(r, format!("'{s}'")))
            })
            .collect(),
        ColumnData::I64(v) => Ok(v.iter().map(|t| Value::Timestamp(*t)).collect()),
        other => Err(bad(0, other.type_name_with_article().to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn column(data: ColumnData, from_text: bool) -> Column {
        Column {
            from_text,
            ..Column::scalar("c", data)
        }
    }

    fn data() -> impl Strategy<Value = ColumnData> {
        prop_oneof![
            prop::collection::vec(
                prop_oneof![any::<f64>(), Just(f64::NAN), Just(f64::INFINITY)],
                0..4
            )
            .prop_map(ColumnData::F64),
            prop::collection::vec(any::<i64>(), 0..4).prop_map(ColumnData::I64),
            prop::collection::vec(any::<bool>(), 0..4).prop_map(ColumnData::Bool),
            prop::collection::vec("[a-z0-9 ]{0,4}", 0..4).prop_map(ColumnData::Str),
        ]
    }

    fn ty() -> impl Strategy<Value = Type> {
        prop_oneof![
            Just(Type::Int),
            Just(Type::Float),
            Just(Type::Bool),
            Just(Type::String),
            Just(Type::Timestamp),
        ]
    }

    proptest! {
        /// The shortcut gives what the conversion gives, and leaves it every value it would
        /// refuse (so the error and its message stay the conversion's).
        #[test]
        fn direct_values_are_the_converted_ones(data in data(), ty in ty(), from_text in any::<bool>()) {
            let col = column(data, from_text);
            if let Some(direct) = direct_values(&col, ty) {
                let converted = converted_values(&col, ty);
                prop_assert!(converted.is_ok(), "{:?} refused by the conversion", col.data);
                let converted = converted.unwrap();
                prop_assert_eq!(direct.len(), converted.len());
                for (a, b) in direct.iter().zip(&converted) {
                    // Bitwise, so that -0.0 and 0.0 count as different.
                    match (a, b) {
                        (Value::Float(x), Value::Float(y)) => prop_assert_eq!(x.to_bits(), y.to_bits()),
                        _ => prop_assert_eq!(a, b),
                    }
                }
            }
        }
    }
}
