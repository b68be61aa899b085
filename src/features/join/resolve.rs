//! Stages 3 and 4 of a request's join: each looked-up value resolved to an [`Outcome`], then a
//! value that is not present follows its feature's `on_missing` policy (default, null or
//! reject).

use super::coerce::coerce;
use super::outcome::Outcome;
use super::plan::{JoinPlan, PlannedFeature, PlannedLookup};
use super::request::{Joining, Key};
use crate::error::{RequestError, RequestResult};
use crate::features::expr::Value;
use crate::features::spec::Policy;
use crate::features::store::{Found, KEY_SEPARATOR};

/// Feature `fi`'s value in a looked-up row (`None`: no row), measured at `reference` for its
/// max age. `down`: the store did not answer, so there is no row to have.
pub(super) fn resolve(
    f: &PlannedFeature,
    fi: usize,
    row: Option<&Found>,
    reference: i64,
    down: bool,
) -> (Outcome, Value) {
    match row {
        None if down => (Outcome::TimedOut, Value::Null),
        None => (Outcome::Missing, Value::Null),
        Some(row) => match (f.max_age_ms, row.event_ms) {
            (Some(max), Some(at)) if reference.saturating_sub(at) > max => {
                (Outcome::Stale, Value::Null)
            }
            _ => match coerce(row.values[fi].clone(), f.ty) {
                Some(Value::Null) | None => (Outcome::Missing, Value::Null),
                Some(v) => (Outcome::Present, v),
            },
        },
    }
}

/// Why a value is not there, for a refusal: row `r`, its key and table.
pub(super) struct Absent<'a> {
    pub(super) outcome: Outcome,
    pub(super) row: usize,
    pub(super) key: &'a Key,
    pub(super) lookup: &'a PlannedLookup,
}

/// The value a feature takes where its looked-up value is absent: its default, null, or the
/// request is refused (422) naming the feature, key and table.
pub(super) fn settle(
    plan: &JoinPlan,
    f: &PlannedFeature,
    absent: Absent<'_>,
) -> RequestResult<(Value, bool)> {
    match f.policy {
        Policy::Default => {
            if let Some(c) = &f.counters {
                c.defaulted();
            }
            Ok((f.default.clone(), true))
        }
        Policy::Null => Ok((Value::Null, false)),
        Policy::Reject => {
            let Absent {
                outcome,
                row,
                key,
                lookup,
            } = absent;
            Err(RequestError::Unprocessable(format!(
                "row {row}: feature '{}' for {}={} in table '{}' {}",
                plan.name(f.id),
                lookup.keys.join(", "),
                key.text.replace(KEY_SEPARATOR, ", "),
                lookup.table,
                outcome.refusal(f.max_age_ms)
            )))
        }
    }
}

impl JoinPlan {
    /// Every wanted feature's values from the found rows (one per key, in key order), counted
    /// by outcome, with the policies applied; `down`: the store did not answer.
    pub(super) fn resolve_lookups(
        &self,
        joining: &mut Joining,
        found: &[Option<Found>],
        down: bool,
    ) -> RequestResult<()> {
        let rows = joining.rows;
        let mut next = 0;
        for (li, l) in self.lookups.iter().enumerate() {
            if !joining.needed[li] {
                continue;
            }
            let part = &found[next..next + rows];
            let part_keys = next..next + rows;
            next += rows;
            if let Some(h) = &l.age {
                for (r, row) in part.iter().enumerate() {
                    if let Some(at) = row.as_ref().and_then(|f| f.event_ms) {
                        h.observe(
                            joining.reference(self, r).saturating_sub(at).max(0) as f64 / 1000.0,
                        );
                    }
                }
            }
            for (fi, f) in l.features.iter().enumerate() {
                let sent = joining.slots[f.id].is_some();
                if sent {
                    if let Some(c) = &f.counters {
                        c.sent(rows);
                    }
                    continue;
                }
                if !joining.wanted[f.id] {
                    // Nothing reads it: its policy does not apply.
                    continue;
                }
                let mut values = Vec::with_capacity(rows);
                for (r, row) in part.iter().enumerate() {
                    let (outcome, value) =
                        resolve(f, fi, row.as_ref(), joining.reference(self, r), down);
                    if let Some(c) = &f.counters {
                        c.outcome(outcome);
                    }
                    if outcome == Outcome::Present {
                        values.push(value);
                        continue;
                    }
                    let absent = Absent {
                        outcome,
                        row: r,
                        key: &joining.keys[part_keys.start + r],
                        lookup: l,
                    };
                    let (value, defaulted) = settle(self, f, absent)?;
                    joining.defaulted[f.id] += u32::from(defaulted);
                    values.push(value);
                }
                joining.push(self, f.id, values);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::expr::Type;

    fn feature(max_age_ms: Option<i64>) -> PlannedFeature {
        PlannedFeature {
            id: 0,
            ty: Type::Int,
            default: Value::Int(-1),
            policy: Policy::Default,
            max_age_ms,
            counters: None,
        }
    }

    fn row(v: Value, event_ms: Option<i64>) -> Found {
        Found {
            values: vec![Value::Null, v],
            event_ms,
        }
    }

    #[test]
    fn every_outcome_of_a_looked_up_value() {
        let f = feature(Some(60_000));
        let fresh = row(Value::Int(5), Some(100_000));
        assert_eq!(
            resolve(&f, 1, Some(&fresh), 160_000, false),
            (Outcome::Present, Value::Int(5))
        );
        // One millisecond past the max age.
        assert_eq!(
            resolve(&f, 1, Some(&fresh), 160_001, false),
            (Outcome::Stale, Value::Null)
        );
        // No row: missing, or timed out when the store did not answer.
        assert_eq!(resolve(&f, 1, None, 0, false).0, Outcome::Missing);
        assert_eq!(resolve(&f, 1, None, 0, true).0, Outcome::TimedOut);
        // A null, or a value that does not fit the type, is missing.
        for v in [Value::Null, Value::String("many".into()), Value::Float(0.5)] {
            assert_eq!(
                resolve(&f, 1, Some(&row(v.clone(), None)), 0, false),
                (Outcome::Missing, Value::Null),
                "{v:?}"
            );
        }
        // Without a max age or an event time, nothing is stale.
        let old = row(Value::Int(7), Some(0));
        assert_eq!(
            resolve(&feature(None), 1, Some(&old), i64::MAX, false).0,
            Outcome::Present
        );
        assert_eq!(
            resolve(&f, 1, Some(&row(Value::Int(7), None)), i64::MAX, false).0,
            Outcome::Present
        );
    }
}
