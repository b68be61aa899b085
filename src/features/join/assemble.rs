//! Stage 6 of a request's join: the model's frame, its columns in order, from the joined
//! columns; a null that reaches the model is refused.

use super::plan::JoinPlan;
use super::request::Joining;
use super::Joined;
use crate::data::frame::{Column, ColumnData, Frame};
use crate::error::{RequestError, RequestResult};
use crate::features::expr::{Type, Value};

impl JoinPlan {
    pub(super) fn assemble(&self, joining: Joining) -> RequestResult<Joined> {
        let mut columns = Vec::with_capacity(self.model_columns.len());
        let mut defaulted = Vec::new();
        for &id in &self.model_columns {
            let (name, ty) = &self.columns[id];
            if joining.defaulted[id] > 0 {
                defaulted.push((columns.len(), joining.defaulted[id]));
            }
            let Some(values) = joining.values(id) else {
                return Err(RequestError::bad(format!("missing input column '{name}'")));
            };
            columns.push(model_column(name, *ty, values)?);
        }
        Ok(Joined {
            frame: Frame { columns },
            env: joining.env,
            defaulted,
        })
    }
}

/// A model column from joined values; a null here cannot be scored.
fn model_column(name: &str, ty: Type, values: &[Value]) -> RequestResult<Column> {
    let null = |r: usize| {
        RequestError::Unprocessable(format!(
            "row {r}: feature '{name}' is null and the model needs a value (give it a default, or on_missing: default)"
        ))
    };
    let data = match ty {
        Type::Int | Type::Timestamp => ColumnData::I64(
            values
                .iter()
                .enumerate()
                .map(|(r, v)| match v {
                    Value::Int(i) | Value::Timestamp(i) => Ok(*i),
                    _ => Err(null(r)),
                })
                .collect::<RequestResult<_>>()?,
        ),
        Type::Float => ColumnData::F64(
            values
                .iter()
                .enumerate()
                .map(|(r, v)| match v {
                    Value::Float(f) => Ok(*f),
                    Value::Int(i) => Ok(*i as f64),
                    _ => Err(null(r)),
                })
                .collect::<RequestResult<_>>()?,
        ),
        Type::Bool => ColumnData::Bool(
            values
                .iter()
                .enumerate()
                .map(|(r, v)| match v {
                    Value::Bool(b) => Ok(*b),
                    _ => Err(null(r)),
                })
                .collect::<RequestResult<_>>()?,
        ),
        Type::String => ColumnData::Str(
            values
                .iter()
                .enumerate()
                .map(|(r, v)| match v {
                    Value::String(s) => Ok(s.clone()),
                    _ => Err(null(r)),
                })
                .collect::<RequestResult<_>>()?,
        ),
    };
    Ok(Column::scalar(name, data))
}
