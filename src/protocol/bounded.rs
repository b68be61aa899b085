//! JSON trees built within a bound: where a decoder must hold a value whole before it can read
//! it (V2 `data` and `parameters`, MLflow `instances`, `inputs`, `params`, a `data` sent before
//! its `columns`), every node is counted as it is parsed, so a small body cannot make a tree of
//! millions of nodes before a limit is checked.

use std::cell::{Cell, RefCell};
use std::fmt;

use serde::de::{self, Deserialize, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use super::limits::DecodeLimits;
use crate::error::{Limit, RequestError};

/// Nodes a decode may still build, shared by every tree of one request.
#[derive(Debug)]
pub struct NodeBudget {
    left: Cell<usize>,
    max: usize,
    exceeded: Cell<bool>,
}

impl NodeBudget {
    /// The values of `limits.max_cells`, plus room for the envelope (names, shapes, types) of
    /// every column the request may have.
    pub fn new(limits: &DecodeLimits) -> Self {
        let max = limits
            .max_cells
            .saturating_add(limits.max_columns.saturating_mul(16))
            .saturating_add(1024);
        Self {
            left: Cell::new(max),
            max,
            exceeded: Cell::new(false),
        }
    }

    fn take<E: de::Error>(&self) -> Result<(), E> {
        match self.left.get().checked_sub(1) {
            Some(left) => {
                self.left.set(left);
                Ok(())
            }
            None => {
                self.exceeded.set(true);
                Err(E::custom("too many JSON values"))
            }
        }
    }

    /// The refusal, when the budget ran out.
    pub fn refusal(&self) -> Option<RequestError> {
        self.exceeded.get().then(|| {
            RequestError::limit(
                Limit::Cells,
                format!(
                    "the request holds more than {} JSON values, over the limit of values per request (limits.max_cells)",
                    self.max
                ),
            )
        })
    }
}

impl Default for NodeBudget {
    fn default() -> Self {
        Self::new(&DecodeLimits::default())
    }
}

thread_local! {
    /// The budget of the derive-based decode running on this thread ([`within`]).
    static SCOPE: RefCell<Option<NodeBudget>> = const { RefCell::new(None) };
}

/// A [`Value`] field of a derived `Deserialize` type, counted against the budget of the
/// [`within`] call that decodes it (unbounded outside one).
#[derive(Debug, Default)]
pub struct Bounded(pub Value);

impl<'de> Deserialize<'de> for Bounded {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        SCOPE.with(|scope| match &*scope.borrow() {
            Some(budget) => BoundedValue(budget).deserialize(d).map(Bounded),
            None => Value::deserialize(d).map(Bounded),
        })
    }
}

/// Runs a derive-based decode with `budget` counting its [`Bounded`] fields; gives the budget
/// back to read its refusal.
pub fn within<T>(budget: NodeBudget, decode: impl FnOnce() -> T) -> (T, NodeBudget) {
    SCOPE.with(|scope| *scope.borrow_mut() = Some(budget));
    let out = decode();
    let budget = SCOPE
        .with(|scope| scope.borrow_mut().take())
        .unwrap_or_default();
    (out, budget)
}

/// Builds a [`Value`] and counts its nodes against a [`NodeBudget`].
#[derive(Clone, Copy)]
pub struct BoundedValue<'a>(pub &'a NodeBudget);

impl<'de> DeserializeSeed<'de> for BoundedValue<'_> {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for BoundedValue<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        self.0.take()?;
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        self.0.take()?;
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        self.0.take()?;
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        self.0.take()?;
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        self.0.take()?;
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        self.0.take()?;
        Ok(Value::String(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        self.0.take()?;
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        self.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        self.deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        self.0.take()?;
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(self)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        self.0.take()?;
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            self.0.take()?;
            let value = map.next_value_seed(self)?;
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str, budget: &NodeBudget) -> Result<Value, serde_json::Error> {
        let mut de = serde_json::Deserializer::from_str(text);
        BoundedValue(budget).deserialize(&mut de)
    }

    #[test]
    fn a_tree_within_the_budget_is_the_plain_value() {
        let budget = NodeBudget::new(&DecodeLimits::default());
        let text = r#"{"a": [1, -2, 2.5, "x", true, null, {"b": []}], "c": 18446744073709551615}"#;
        let v = parse(text, &budget).unwrap();
        assert_eq!(v, serde_json::from_str::<Value>(text).unwrap());
        assert!(budget.refusal().is_none());
    }

    #[test]
    fn derived_fields_count_within_a_scope_only() {
        #[derive(serde::Deserialize)]
        struct Body {
            data: Bounded,
        }
        let limits = DecodeLimits {
            max_cells: 10,
            max_columns: 1,
            ..Default::default()
        };
        let text = format!(r#"{{"data": [{}]}}"#, vec!["0"; 2000].join(","));
        let (parsed, budget) = within(NodeBudget::new(&limits), || {
            serde_json::from_str::<Body>(&text)
        });
        assert!(parsed.is_err());
        assert!(budget.refusal().is_some());
        // Outside a scope the field is a plain value.
        let body: Body = serde_json::from_str(&text).unwrap();
        assert_eq!(body.data.0.as_array().unwrap().len(), 2000);
    }

    #[test]
    fn a_tree_over_the_budget_stops_where_the_budget_ends() {
        let limits = DecodeLimits {
            max_cells: 10,
            max_columns: 1,
            ..Default::default()
        };
        let budget = NodeBudget::new(&limits);
        let text = format!("[{}]", vec!["0"; 2000].join(","));
        assert!(parse(&text, &budget).is_err());
        match budget.refusal() {
            Some(RequestError::LimitExceeded { limit, message }) => {
                assert_eq!(limit, Limit::Cells);
                assert!(message.contains("limits.max_cells"), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }
}
