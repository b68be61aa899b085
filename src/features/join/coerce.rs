//! A joined value as its column's type: looked-up values (JSON, CSV text) and function results.

use crate::data::cast::parse_bool;
use crate::data::time::parse_timestamp;
use crate::features::expr::{Type, Value};

/// A value as `ty`: ints widen to floats, integral floats narrow to ints, text parses as a
/// timestamp; anything else is `None`.
pub(super) fn coerce(v: Value, ty: Type) -> Option<Value> {
    match (ty, v) {
        (_, Value::Null) => Some(Value::Null),
        (Type::Int, Value::Int(i)) => Some(Value::Int(i)),
        (Type::Int, Value::Float(f)) if f.fract() == 0.0 && f.abs() < 9.0e15 => {
            Some(Value::Int(f as i64))
        }
        (Type::Float, Value::Int(i)) => Some(Value::Float(i as f64)),
        // A non-finite stored value is no value (the model cannot take it).
        (Type::Float, Value::Float(f)) => f.is_finite().then_some(Value::Float(f)),
        // Text (CSV cells) parses into the feature's type.
        (Type::Int, Value::String(s)) => s.trim().parse().ok().map(Value::Int),
        (Type::Float, Value::String(s)) => s
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .map(Value::Float),
        (Type::Bool, Value::String(s)) => parse_bool(&s).map(Value::Bool),
        (Type::Bool, Value::Bool(b)) => Some(Value::Bool(b)),
        (Type::String, Value::String(s)) => Some(Value::String(s)),
        (Type::Timestamp, Value::Timestamp(t) | Value::Int(t)) => Some(Value::Timestamp(t)),
        (Type::Timestamp, Value::String(s)) => parse_timestamp(&s).map(Value::Timestamp),
        _ => None,
    }
}
