//! A feature spec compiled into a plan when a version loads: checked against itself and the
//! store, functions compiled, and every column (request, feature, function) given an id, its
//! index in [`JoinPlan::columns`], so a request's stages index instead of comparing names.

use std::sync::Arc;

use super::outcome::FeatureCounters;
use crate::data::time::parse_timestamp;
use crate::features::expr::{Expr, Type, Value};
use crate::features::spec::{policy, FeatureSpec, Policy};
use crate::features::store::OnlineStore;

pub(super) struct PlannedFeature {
    pub(super) id: usize,
    pub(super) ty: Type,
    pub(super) default: Value,
    pub(super) policy: Policy,
    pub(super) max_age_ms: Option<i64>,
    pub(super) counters: Option<FeatureCounters>,
}

pub(super) struct PlannedLookup {
    pub(super) table: String,
    pub(super) age: Option<prometheus::Histogram>,
    /// The request columns of the key, by name (spec order) and by id.
    pub(super) keys: Vec<String>,
    pub(super) key_ids: Vec<usize>,
    /// The request column of an as-of lookup's time.
    pub(super) as_of: Option<usize>,
    pub(super) features: Vec<PlannedFeature>,
    /// The table's columns to fetch, in feature order.
    pub(super) columns: Vec<String>,
}

pub(super) struct PlannedFunction {
    pub(super) id: usize,
    pub(super) expr: Expr,
    /// The columns the expression reads, in its variable order.
    pub(super) args: Vec<usize>,
    pub(super) ty: Type,
    pub(super) default: Value,
    pub(super) policy: Policy,
}

/// A compiled feature spec, bound to its online store.
pub struct JoinPlan {
    /// Every column by id: the request's first, then features, then functions (names unique;
    /// shared, so that a request's joined columns name theirs without copying).
    pub(super) columns: Vec<(Arc<str>, Type)>,
    /// How many of `columns` are request columns.
    pub(super) request: usize,
    pub(super) request_ts: Option<usize>,
    pub(super) lookups: Vec<PlannedLookup>,
    pub(super) functions: Vec<PlannedFunction>,
    /// The ids of the columns the model takes, in order.
    pub(super) model_columns: Vec<usize>,
    pub(super) store: Arc<dyn OnlineStore>,
    pub(super) lookup_duration: Option<prometheus::Histogram>,
}

/// A JSON default as a value of the feature's type.
fn typed_default(v: &Option<serde_json::Value>, ty: Type) -> Result<Value, String> {
    let Some(v) = v else { return Ok(Value::Null) };
    let value = match (ty, v) {
        (_, serde_json::Value::Null) => Some(Value::Null),
        (Type::Int, serde_json::Value::Number(n)) => n.as_i64().map(Value::Int),
        (Type::Float, serde_json::Value::Number(n)) => n.as_f64().map(Value::Float),
        (Type::Bool, serde_json::Value::Bool(b)) => Some(Value::Bool(*b)),
        (Type::String, serde_json::Value::String(s)) => Some(Value::String(s.clone())),
        (Type::Timestamp, serde_json::Value::String(s)) => parse_timestamp(s).map(Value::Timestamp),
        (Type::Timestamp, serde_json::Value::Number(n)) => n.as_i64().map(Value::Timestamp),
        _ => None,
    };
    value.ok_or_else(|| format!("default {v} is not a {ty}"))
}

/// The id of a known column.
fn id_of(known: &[(Arc<str>, Type)], name: &str) -> Option<usize> {
    known.iter().position(|(n, _)| **n == *name)
}

impl JoinPlan {
    /// Checks the spec against itself and the store, and compiles its functions.
    pub fn compile(
        spec: &FeatureSpec,
        store: Arc<dyn OnlineStore>,
        metrics: Option<&crate::metrics::Metrics>,
    ) -> Result<JoinPlan, String> {
        let mut known: Vec<(Arc<str>, Type)> = Vec::new();
        let add = |known: &mut Vec<(Arc<str>, Type)>, name: &str, ty: Type, what: &str| {
            if known.iter().any(|(n, _)| **n == *name) {
                return Err(format!("{what} '{name}' is defined twice"));
            }
            known.push((name.into(), ty));
            Ok(known.len() - 1)
        };
        for c in &spec.request_columns {
            add(&mut known, &c.name, c.ty, "request column")?;
        }
        let request = known.len();
        // A request column of this type, by id.
        let request_column = |known: &[(Arc<str>, Type)], name: &str, ty: Option<Type>| {
            id_of(&known[..request], name).filter(|&i| ty.is_none_or(|t| known[i].1 == t))
        };
        let request_ts = match &spec.request_timestamp {
            None => None,
            Some(ts) => Some(
                request_column(&known, ts, Some(Type::Timestamp)).ok_or_else(|| {
                    format!("request_timestamp '{ts}' is not a request column of type timestamp")
                })?,
            ),
        };
        let mut lookups = Vec::new();
        for (i, l) in spec.lookups.iter().enumerate() {
            let at = format!("lookups[{i}] (table '{}')", l.table);
            let table = store
                .table(&l.table)
                .ok_or_else(|| format!("{at}: the online store has no table '{}'", l.table))?;
            if l.lookup_key.len() != table.primary_keys.len() {
                return Err(format!(
                    "{at}: lookup_key has {} columns but the table's key has {} ({})",
                    l.lookup_key.len(),
                    table.primary_keys.len(),
                    table.primary_keys.join(", ")
                ));
            }
            if l.timestamp_lookup_key.is_some() && table.timestamp_key.is_none() {
                return Err(format!(
                    "{at}: timestamp_lookup_key needs a table with a timestamp_key (as-of lookups)"
                ));
            }
            let table_columns = store.columns(&l.table);
            let key_ids = l
                .lookup_key
                .iter()
                .map(|k| {
                    request_column(&known, k, None)
                        .ok_or_else(|| format!("{at}: lookup key '{k}' is not a request column"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let as_of = match &l.timestamp_lookup_key {
                None => None,
                Some(ts) => Some(
                    request_column(&known, ts, Some(Type::Timestamp)).ok_or_else(|| {
                        format!("{at}: timestamp_lookup_key '{ts}' is not a request column of type timestamp")
                    })?,
                ),
            };
            let mut features = Vec::new();
            for f in &l.features {
                // Checked where the store knows its columns (embedded).
                if let Some(cols) = table_columns.as_ref().filter(|c| !c.contains(&f.name)) {
                    return Err(format!(
                        "{at}: the table has no column '{}' (columns: {})",
                        f.name,
                        cols.join(", ")
                    ));
                }
                if f.on_missing == Some(Policy::Default) && f.default.is_none() {
                    return Err(format!(
                        "{at}: feature '{}' has on_missing: default but no default",
                        f.name
                    ));
                }
                let id = add(&mut known, f.output(), f.ty, "feature")?;
                let default = typed_default(&f.default, f.ty)
                    .map_err(|e| format!("{at}: feature '{}': {e}", f.name))?;
                features.push(PlannedFeature {
                    id,
                    ty: f.ty,
                    policy: policy(f.on_missing, &f.default),
                    default,
                    max_age_ms: f.max_age_seconds.map(|s| (s * 1000.0) as i64),
                    counters: metrics.map(|m| FeatureCounters::new(m, &l.table, f.output())),
                });
            }
            lookups.push(PlannedLookup {
                age: metrics.map(|m| m.features.age.with_label_values(&[&l.table])),
                table: l.table.clone(),
                keys: l.lookup_key.clone(),
                key_ids,
                as_of,
                columns: l.features.iter().map(|f| f.name.clone()).collect(),
                features,
            });
        }
        let mut functions = Vec::new();
        for f in &spec.functions {
            let at = format!("function '{}'", f.name);
            // Inputs by their binding names first, then every column so far by its own name.
            let mut vars: Vec<(String, Type)> = Vec::new();
            let mut args: Vec<usize> = Vec::new();
            for (param, column) in &f.inputs {
                let id = id_of(&known, column)
                    .ok_or_else(|| format!("{at}: input '{param}' names '{column}', which is no request column, feature or earlier function"))?;
                vars.push((param.clone(), known[id].1));
                args.push(id);
            }
            for (id, (n, t)) in known.iter().enumerate() {
                if !vars.iter().any(|(v, _)| **v == **n) {
                    vars.push((n.to_string(), *t));
                    args.push(id);
                }
            }
            let mut expr = Expr::compile(&f.expression, &vars).map_err(|e| format!("{at}: {e}"))?;
            // Rows pass only the columns the expression reads: compile again over those.
            if expr.uses.len() < vars.len() {
                let mut used = expr.uses.clone();
                used.sort_unstable();
                vars = used.iter().map(|&i| vars[i].clone()).collect();
                args = used.iter().map(|&i| args[i]).collect();
                expr = Expr::compile(&f.expression, &vars).map_err(|e| format!("{at}: {e}"))?;
            }
            if expr.ty != f.ty && !(expr.ty == Type::Int && f.ty == Type::Float) {
                return Err(format!(
                    "{at}: the expression gives {}, not the declared {}",
                    expr.ty, f.ty
                ));
            }
            let default = typed_default(&f.default, f.ty).map_err(|e| format!("{at}: {e}"))?;
            if f.on_null == Some(Policy::Default) && f.default.is_none() {
                return Err(format!("{at}: on_null: default needs a default"));
            }
            let id = add(&mut known, &f.name, f.ty, "function")?;
            functions.push(PlannedFunction {
                id,
                expr,
                args,
                ty: f.ty,
                policy: policy(f.on_null, &f.default),
                default,
            });
        }
        let model_columns = spec
            .model_columns
            .iter()
            .map(|c| {
                id_of(&known, c).ok_or_else(|| {
                    format!("model column '{c}' is no request column, feature or function")
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(JoinPlan {
            columns: known,
            request,
            request_ts,
            lookups,
            functions,
            model_columns,
            lookup_duration: metrics.map(|m| {
                m.features
                    .lookup_duration
                    .with_label_values(&[store.kind()])
            }),
            store,
        })
    }

    /// The request column that holds each row's event time, when the spec names one.
    pub fn request_timestamp(&self) -> Option<&str> {
        self.request_ts.map(|i| self.name(i))
    }

    /// The request columns the lookups key on (`lookup_key`), in spec order.
    pub fn lookup_keys(&self) -> impl Iterator<Item = &str> {
        self.lookups
            .iter()
            .flat_map(|l| l.keys.iter().map(String::as_str))
    }

    /// The columns a request carries and the JSON Schema `type` (and `format`) of each, for a
    /// per-endpoint OpenAPI document.
    pub fn request_schema(&self) -> Vec<(&str, &'static str, Option<&'static str>)> {
        self.columns[..self.request]
            .iter()
            .map(|(n, ty)| {
                let (t, format) = match ty {
                    Type::Int => ("integer", None),
                    Type::Float => ("number", None),
                    Type::Bool => ("boolean", None),
                    Type::String => ("string", None),
                    Type::Timestamp => ("string", Some("date-time")),
                };
                (&**n, t, format)
            })
            .collect()
    }

    /// A column's name by id.
    pub(super) fn name(&self, id: usize) -> &str {
        &self.columns[id].0
    }

    /// A column's name by id, shared.
    pub(super) fn shared_name(&self, id: usize) -> Arc<str> {
        self.columns[id].0.clone()
    }

    /// The id of a column the spec knows.
    pub(super) fn id_of(&self, name: &str) -> Option<usize> {
        id_of(&self.columns, name)
    }

    /// The column names a request may carry.
    pub(super) fn request_columns(&self) -> Vec<&str> {
        self.columns[..self.request]
            .iter()
            .map(|(n, _)| &**n)
            .collect()
    }
}
