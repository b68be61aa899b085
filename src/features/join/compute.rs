//! Stage 5 of a request's join: the on-demand functions the model still needs, in spec order,
//! each over the columns so far; a null result follows the function's `on_null` policy.

use super::coerce::coerce;
use super::plan::JoinPlan;
use super::request::Joining;
use crate::error::{RequestError, RequestResult};
use crate::features::expr::Value;
use crate::features::spec::Policy;

impl JoinPlan {
    pub(super) fn compute_functions(&self, joining: &mut Joining) -> RequestResult<()> {
        for f in &self.functions {
            if !joining.wanted[f.id] {
                continue;
            }
            let rows = joining.rows;
            let mut values = Vec::with_capacity(rows);
            let mut defaulted = 0u32;
            let mut args = Vec::with_capacity(f.args.len());
            // An input the request did not carry (and nothing looked up) is null.
            let inputs: Vec<Option<&[Value]>> = f.args.iter().map(|&a| joining.values(a)).collect();
            for r in 0..rows {
                args.clear();
                args.extend(
                    inputs
                        .iter()
                        .map(|i| i.map_or(Value::Null, |v| v[r].clone())),
                );
                let v = coerce(f.expr.eval(&args), f.ty).unwrap_or(Value::Null);
                if !v.is_null() {
                    values.push(v);
                    continue;
                }
                values.push(match f.policy {
                    Policy::Default => {
                        defaulted += 1;
                        f.default.clone()
                    }
                    Policy::Null => Value::Null,
                    Policy::Reject => {
                        return Err(RequestError::Unprocessable(format!(
                            "row {r}: on-demand feature '{}' is null (an input is missing or out of its domain)",
                            self.name(f.id)
                        )))
                    }
                });
            }
            joining.defaulted[f.id] += defaulted;
            joining.push(self, f.id, values);
        }
        Ok(())
    }
}
