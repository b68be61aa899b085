//! The join: a feature spec compiled into a plan when a version loads, then per request one
//! batched lookup in the online store, the missing-value policies, the on-demand functions, and
//! the frame of the columns the model takes, in order.

use std::sync::Arc;
use std::time::Instant;

use super::expr::{Expr, Type, Value};
use super::spec::{policy, FeatureSpec, Policy};
use super::store::{key_text, OnlineStore, Query, StoreError, KEY_SEPARATOR};
use crate::data::cast::{convert, parse_bool};
use crate::data::frame::{Column, ColumnData, Frame};
use crate::data::tensor::{ElemType, TensorData};
use crate::data::time::{parse_timestamp, text_timestamp};
use crate::error::{RequestError, RequestResult};

/// Per-feature outcome counters, looked up once when the plan compiles.
struct FeatureCounters {
    present: prometheus::IntCounter,
    from_request: prometheus::IntCounter,
    defaulted: prometheus::IntCounter,
    missing: prometheus::IntCounter,
    stale: prometheus::IntCounter,
    timed_out: prometheus::IntCounter,
}

impl FeatureCounters {
    fn new(m: &crate::metrics::Metrics, table: &str, feature: &str) -> Self {
        let c = |outcome: &str| {
            m.feature_values
                .with_label_values(&[table, feature, outcome])
        };
        Self {
            present: c("present"),
            from_request: c("request"),
            defaulted: c("defaulted"),
            missing: c("missing"),
            stale: c("stale"),
            timed_out: c("timed_out"),
        }
    }
}

struct PlannedFeature {
    output: String,
    ty: Type,
    default: Value,
    policy: Policy,
    max_age_ms: Option<i64>,
    counters: Option<FeatureCounters>,
}

struct PlannedLookup {
    table: String,
    age: Option<prometheus::Histogram>,
    keys: Vec<String>,
    as_of: Option<String>,
    features: Vec<PlannedFeature>,
    columns: Vec<String>,
}

struct PlannedFunction {
    output: String,
    expr: Expr,
    /// The columns the expression reads, in its variable order.
    args: Vec<String>,
    ty: Type,
    default: Value,
    policy: Policy,
}

/// A compiled feature spec, bound to its online store.
pub struct JoinPlan {
    request: Vec<(String, Type)>,
    request_ts: Option<String>,
    lookups: Vec<PlannedLookup>,
    functions: Vec<PlannedFunction>,
    model_columns: Vec<(String, Type)>,
    store: Arc<dyn OnlineStore>,
    lookup_duration: Option<prometheus::Histogram>,
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

/// A value as `ty`: ints widen to floats, integral floats narrow to ints, text parses as a
/// timestamp; anything else is `None`.
fn coerce(v: Value, ty: Type) -> Option<Value> {
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

impl JoinPlan {
    /// Checks the spec against itself and the store, and compiles its functions.
    pub fn compile(
        spec: &FeatureSpec,
        store: Arc<dyn OnlineStore>,
        metrics: Option<&crate::metrics::Metrics>,
    ) -> Result<JoinPlan, String> {
        let mut known: Vec<(String, Type)> = Vec::new();
        let add = |known: &mut Vec<(String, Type)>, name: &str, ty: Type, what: &str| {
            if known.iter().any(|(n, _)| n == name) {
                return Err(format!("{what} '{name}' is defined twice"));
            }
            known.push((name.to_owned(), ty));
            Ok(())
        };
        for c in &spec.request_columns {
            add(&mut known, &c.name, c.ty, "request column")?;
        }
        let request = known.clone();
        let request_type = |name: &str| request.iter().find(|(n, _)| n == name).map(|(_, t)| *t);
        if let Some(ts) = &spec.request_timestamp {
            if request_type(ts) != Some(Type::Timestamp) {
                return Err(format!(
                    "request_timestamp '{ts}' is not a request column of type timestamp"
                ));
            }
        }
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
            for k in &l.lookup_key {
                if request_type(k).is_none() {
                    return Err(format!("{at}: lookup key '{k}' is not a request column"));
                }
            }
            if let Some(ts) = &l.timestamp_lookup_key {
                if request_type(ts) != Some(Type::Timestamp) {
                    return Err(format!("{at}: timestamp_lookup_key '{ts}' is not a request column of type timestamp"));
                }
            }
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
                add(&mut known, f.output(), f.ty, "feature")?;
                let default = typed_default(&f.default, f.ty)
                    .map_err(|e| format!("{at}: feature '{}': {e}", f.name))?;
                features.push(PlannedFeature {
                    output: f.output().to_owned(),
                    ty: f.ty,
                    policy: policy(f.on_missing, &f.default),
                    default,
                    max_age_ms: f.max_age_seconds.map(|s| (s * 1000.0) as i64),
                    counters: metrics.map(|m| FeatureCounters::new(m, &l.table, f.output())),
                });
            }
            lookups.push(PlannedLookup {
                age: metrics.map(|m| m.feature_age.with_label_values(&[&l.table])),
                table: l.table.clone(),
                keys: l.lookup_key.clone(),
                as_of: l.timestamp_lookup_key.clone(),
                columns: l.features.iter().map(|f| f.name.clone()).collect(),
                features,
            });
        }
        let mut functions = Vec::new();
        for f in &spec.functions {
            let at = format!("function '{}'", f.name);
            // Inputs by their binding names first, then every column so far by its own name.
            let mut vars: Vec<(String, Type)> = Vec::new();
            let mut args: Vec<String> = Vec::new();
            for (param, column) in &f.inputs {
                let ty = known
                    .iter()
                    .find(|(n, _)| n == column)
                    .map(|(_, t)| *t)
                    .ok_or_else(|| format!("{at}: input '{param}' names '{column}', which is no request column, feature or earlier function"))?;
                vars.push((param.clone(), ty));
                args.push(column.clone());
            }
            for (n, t) in &known {
                if !vars.iter().any(|(v, _)| v == n) {
                    vars.push((n.clone(), *t));
                    args.push(n.clone());
                }
            }
            let mut expr = Expr::compile(&f.expression, &vars).map_err(|e| format!("{at}: {e}"))?;
            // Rows pass only the columns the expression reads: compile again over those.
            if expr.uses.len() < vars.len() {
                let mut used = expr.uses.clone();
                used.sort_unstable();
                vars = used.iter().map(|&i| vars[i].clone()).collect();
                args = used.iter().map(|&i| args[i].clone()).collect();
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
            add(&mut known, &f.name, f.ty, "function")?;
            functions.push(PlannedFunction {
                output: f.name.clone(),
                expr,
                args,
                ty: f.ty,
                policy: policy(f.on_null, &f.default),
                default,
            });
        }
        let mut model_columns = Vec::new();
        for c in &spec.model_columns {
            let ty = known
                .iter()
                .find(|(n, _)| n == c)
                .map(|(_, t)| *t)
                .ok_or_else(|| {
                    format!("model column '{c}' is no request column, feature or function")
                })?;
            model_columns.push((c.clone(), ty));
        }
        Ok(JoinPlan {
            request,
            request_ts: spec.request_timestamp.clone(),
            lookups,
            functions,
            model_columns,
            lookup_duration: metrics
                .map(|m| m.feature_lookup_duration.with_label_values(&[store.kind()])),
            store,
        })
    }

    /// The request column that holds each row's event time, when the spec names one.
    pub fn request_timestamp(&self) -> Option<&str> {
        self.request_ts.as_deref()
    }

    /// The request columns the lookups key on (`lookup_key`), in spec order.
    pub fn lookup_keys(&self) -> impl Iterator<Item = &str> {
        self.lookups
            .iter()
            .flat_map(|l| l.keys.iter().map(String::as_str))
    }

    /// The column names a request may carry.
    fn request_columns(&self) -> Vec<String> {
        self.request.iter().map(|(n, _)| n.clone()).collect()
    }

    /// The joined frame of the model's columns; with `echo`, also every joined column (for
    /// `return_features`). `ignore` is a column (the routing key) the request may carry extra.
    pub fn join(&self, frame: &Frame, ignore: Option<&str>) -> RequestResult<Joined> {
        let rows = frame.rows();
        let mut env: Vec<(String, Vec<Value>)> = Vec::new();
        let mut unknown: Vec<&str> = Vec::new();
        for col in &frame.columns {
            let ty = self
                .request
                .iter()
                .find(|(n, _)| *n == col.name)
                .map(|(_, t)| *t)
                .or_else(|| {
                    self.lookups
                        .iter()
                        .flat_map(|l| &l.features)
                        .find(|f| f.output == col.name)
                        .map(|f| f.ty)
                        .or_else(|| {
                            self.functions
                                .iter()
                                .find(|f| f.output == col.name)
                                .map(|f| f.ty)
                        })
                });
            let Some(ty) = ty else {
                if Some(col.name.as_str()) != ignore {
                    unknown.push(&col.name);
                }
                continue;
            };
            env.push((col.name.clone(), request_values(col, ty)?));
        }
        if !unknown.is_empty() {
            return Err(RequestError::bad(format!(
                "unknown input column(s) {unknown:?}: the endpoint takes {} (and may send the features it looks up or computes)",
                self.request_columns().join(", ")
            )));
        }
        let request_time: Option<Vec<Value>> = self
            .request_ts
            .as_ref()
            .and_then(|c| env.iter().find(|(n, _)| n == c))
            .map(|(_, v)| v.clone());
        let now = crate::clock::now_ms() as i64;
        // What must be looked up or computed: the model's columns the request did not send, and
        // (last function first) what the functions that make them read.
        let mut wanted: Vec<&str> = self
            .model_columns
            .iter()
            .map(|(n, _)| n.as_str())
            .filter(|n| !env.iter().any(|(e, _)| e == n))
            .collect();
        for f in self.functions.iter().rev() {
            if wanted.contains(&f.output.as_str()) {
                for n in &f.args {
                    if !env.iter().any(|(e, _)| e == n) && !wanted.contains(&n.as_str()) {
                        wanted.push(n);
                    }
                }
            }
        }
        // One batch for every table and row that needs a lookup.
        let mut keys: Vec<(usize, String, Option<i64>)> = Vec::new(); // (lookup, key, as_of)
        let mut needed = vec![false; self.lookups.len()];
        for (li, l) in self.lookups.iter().enumerate() {
            needed[li] = l
                .features
                .iter()
                .any(|f| wanted.contains(&f.output.as_str()));
            if !needed[li] {
                continue;
            }
            let key_cols: Vec<&Vec<Value>> = l
                .keys
                .iter()
                .map(|k| {
                    env.iter()
                        .find(|(n, _)| n == k)
                        .map(|(_, v)| v)
                        .ok_or_else(|| {
                            RequestError::bad(format!(
                                "missing lookup key column '{k}' (for table '{}')",
                                l.table
                            ))
                        })
                })
                .collect::<RequestResult<_>>()?;
            let as_of_col = match &l.as_of {
                Some(c) => Some(
                    env.iter()
                        .find(|(n, _)| n == c)
                        .map(|(_, v)| v)
                        .ok_or_else(|| {
                            RequestError::bad(format!(
                                "missing timestamp column '{c}' (for table '{}')",
                                l.table
                            ))
                        })?,
                ),
                None => None,
            };
            for r in 0..rows {
                let mut key = String::new();
                for (i, col) in key_cols.iter().enumerate() {
                    if i > 0 {
                        key.push(KEY_SEPARATOR);
                    }
                    key_text(&col[r], &mut key);
                }
                let as_of = as_of_col.map(|c| match &c[r] {
                    Value::Timestamp(t) => *t,
                    _ => i64::MAX,
                });
                keys.push((li, key, as_of));
            }
        }
        let started = Instant::now();
        let queries: Vec<Query<'_>> = keys
            .iter()
            .map(|(li, key, as_of)| Query {
                table: &self.lookups[*li].table,
                key,
                as_of: *as_of,
            })
            .collect();
        let columns: Vec<&[String]> = keys
            .iter()
            .map(|(li, _, _)| self.lookups[*li].columns.as_slice())
            .collect();
        let found = if queries.is_empty() {
            Ok(Vec::new())
        } else {
            self.store.lookup(&queries, &columns)
        };
        if let (Some(h), false) = (&self.lookup_duration, queries.is_empty()) {
            h.observe(started.elapsed().as_secs_f64());
        }
        let timed_out = matches!(found, Err(StoreError::Timeout | StoreError::Unreachable(_)));
        let found = match found {
            Ok(f) => f,
            // Down or late: every looked-up value is missing and follows its policy.
            Err(StoreError::Timeout | StoreError::Unreachable(_)) => vec![None; queries.len()],
            Err(e) => return Err(RequestError::Internal(e.to_string())),
        };
        let reference = |r: usize| {
            request_time
                .as_ref()
                .and_then(|t| match t[r] {
                    Value::Timestamp(ms) => Some(ms),
                    _ => None,
                })
                .unwrap_or(now)
        };
        // Values each feature took from its default: (feature, count).
        let mut defaults: Vec<(&str, u32)> = Vec::new();
        let mut next = 0;
        for (li, l) in self.lookups.iter().enumerate() {
            if !needed[li] {
                continue;
            }
            let part = &found[next..next + rows];
            let part_keys = &keys[next..next + rows];
            next += rows;
            if let Some(h) = &l.age {
                for (r, row) in part.iter().enumerate() {
                    if let Some(at) = row.as_ref().and_then(|f| f.event_ms) {
                        h.observe(reference(r).saturating_sub(at).max(0) as f64 / 1000.0);
                    }
                }
            }
            for (fi, f) in l.features.iter().enumerate() {
                if !wanted.contains(&f.output.as_str()) && !env.iter().any(|(n, _)| *n == f.output)
                {
                    // Nothing reads it: its policy does not apply.
                    continue;
                }
                if env.iter().any(|(n, _)| *n == f.output) {
                    if let Some(c) = &f.counters {
                        c.from_request.inc_by(rows as u64);
                    }
                    continue;
                }
                let mut values = Vec::with_capacity(rows);
                let mut defaulted = 0u32;
                for r in 0..rows {
                    let reference = reference(r);
                    let (value, why) = match &part[r] {
                        None if timed_out => (Value::Null, "timed_out"),
                        None => (Value::Null, "missing"),
                        Some(row) => match (f.max_age_ms, row.event_ms) {
                            (Some(max), Some(at)) if reference.saturating_sub(at) > max => {
                                (Value::Null, "stale")
                            }
                            _ => match coerce(row.values[fi].clone(), f.ty) {
                                Some(Value::Null) | None => (Value::Null, "missing"),
                                Some(v) => (v, "present"),
                            },
                        },
                    };
                    if let Some(c) = &f.counters {
                        match why {
                            "present" => c.present.inc(),
                            "stale" => c.stale.inc(),
                            "timed_out" => c.timed_out.inc(),
                            _ => c.missing.inc(),
                        }
                    }
                    if why == "present" {
                        values.push(value);
                        continue;
                    }
                    values.push(match f.policy {
                        Policy::Default => {
                            if let Some(c) = &f.counters {
                                c.defaulted.inc();
                            }
                            defaulted += 1;
                            f.default.clone()
                        }
                        Policy::Null => Value::Null,
                        Policy::Reject => {
                            let key = part_keys[r].1.replace(KEY_SEPARATOR, ", ");
                            let state = match why {
                                "stale" => format!(
                                    "is older than its max age of {} s",
                                    f.max_age_ms.unwrap_or(0) as f64 / 1000.0
                                ),
                                "timed_out" => "could not be looked up (the online store did not answer in time)".into(),
                                _ => "has no value".into(),
                            };
                            return Err(RequestError::Unprocessable(format!(
                                "row {r}: feature '{}' for {}={key} in table '{}' {state}",
                                f.output,
                                l.keys.join(", "),
                                l.table
                            )));
                        }
                    });
                }
                if defaulted > 0 {
                    defaults.push((&f.output, defaulted));
                }
                env.push((f.output.clone(), values));
            }
        }
        for f in &self.functions {
            if !wanted.contains(&f.output.as_str()) {
                continue;
            }
            let mut values = Vec::with_capacity(rows);
            let mut defaulted = 0u32;
            let mut args = Vec::with_capacity(f.args.len());
            // Where each input is, found once; one the request did not carry (and nothing
            // looked up) is null.
            let inputs: Vec<Option<usize>> = f
                .args
                .iter()
                .map(|a| env.iter().position(|(n, _)| n == a))
                .collect();
            for r in 0..rows {
                args.clear();
                for i in &inputs {
                    args.push(i.map_or(Value::Null, |i| env[i].1[r].clone()));
                }
                let v = coerce(f.expr.eval(&args), f.ty).unwrap_or(Value::Null);
                values.push(if v.is_null() {
                    match f.policy {
                        Policy::Default => {
                            defaulted += 1;
                            f.default.clone()
                        }
                        Policy::Null => Value::Null,
                        Policy::Reject => {
                            return Err(RequestError::Unprocessable(format!(
                                "row {r}: on-demand feature '{}' is null (an input is missing or out of its domain)",
                                f.output
                            )))
                        }
                    }
                } else {
                    v
                });
            }
            if defaulted > 0 {
                defaults.push((&f.output, defaulted));
            }
            env.push((f.output.clone(), values));
        }
        let mut columns = Vec::with_capacity(self.model_columns.len());
        let mut defaulted = Vec::new();
        for (name, ty) in &self.model_columns {
            if let Some((_, n)) = defaults.iter().find(|(d, _)| d == name) {
                defaulted.push((columns.len(), *n));
            }
            let Some((_, values)) = env.iter().find(|(n, _)| n == name) else {
                return Err(RequestError::bad(format!("missing input column '{name}'")));
            };
            columns.push(model_column(name, *ty, values)?);
        }
        Ok(Joined {
            frame: Frame { columns },
            env,
            defaulted,
        })
    }
}

/// The result of a join: the model's frame, and every column by name (request, looked up,
/// computed) for `return_features`.
pub struct Joined {
    pub frame: Frame,
    pub env: Vec<(String, Vec<Value>)>,
    /// (column of `frame`, rows) the feature's default filled.
    pub defaulted: Vec<(usize, u32)>,
}

/// Columns as JSON records, one per row (`return_features`); timestamps as ISO 8601 text.
pub fn write_records(columns: &[(String, Vec<Value>)], rows: usize, buf: &mut Vec<u8>) {
    let out: Vec<serde_json::Value> = (0..rows)
        .map(|r| {
            columns
                .iter()
                .map(|(name, values)| (name.clone(), values[r].to_json()))
                .collect::<serde_json::Map<_, _>>()
                .into()
        })
        .collect();
    let _ = serde_json::to_writer(&mut *buf, &out);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::embedded::EmbeddedStore;
    use crate::features::store::TableSettings;

    const SPEC: &str = r#"
request_columns:
  - {name: id, type: int}
  - {name: at, type: timestamp}
  - {name: amount, type: float}
request_timestamp: at
lookups:
  - table: t
    lookup_key: [id]
    features:
      - {name: n, type: int, default: -1, on_missing: default, max_age_seconds: 60}
      - {name: x, type: float, on_missing: null}
      - {name: must, type: float, on_missing: reject}
functions:
  - {name: ratio, expression: "x / amount", type: float, on_null: default, default: 0.5}
  - {name: strict, expression: "amount - 1", type: float}
model_columns: [n, ratio, must, strict]
"#;

    fn plan(dir: &std::path::Path) -> JoinPlan {
        let path = dir.join("t.jsonl");
        std::fs::write(
            &path,
            concat!(
                "{\"id\": 1, \"n\": 5, \"x\": 2.0, \"must\": 1.5, \"ts\": \"2026-11-22T10:00:00Z\"}\n",
                "{\"id\": 2, \"n\": 7, \"must\": 2.5, \"ts\": \"2026-11-22T09:00:00Z\"}\n",
            ),
        )
        .unwrap();
        let store = EmbeddedStore::open(vec![TableSettings {
            name: "t".into(),
            path,
            primary_keys: vec!["id".into()],
            timestamp_key: None,
            event_timestamp: Some("ts".into()),
        }])
        .unwrap();
        let spec: FeatureSpec = serde_yaml::from_str(SPEC).unwrap();
        JoinPlan::compile(&spec, Arc::new(store), None).unwrap()
    }

    fn frame(ids: &[i64], at: &str, amounts: &[f64]) -> Frame {
        Frame {
            columns: vec![
                Column::scalar("id", ColumnData::I64(ids.to_vec())),
                Column::scalar("at", ColumnData::Str(vec![at.to_owned(); ids.len()])),
                Column::scalar("amount", ColumnData::F64(amounts.to_vec())),
            ],
        }
    }

    fn column<'a>(j: &'a Joined, name: &str) -> &'a [Value] {
        &j.env.iter().find(|(n, _)| n == name).unwrap().1
    }

    #[test]
    fn present_values_join_and_functions_compute() {
        let dir = tempfile::tempdir().unwrap();
        let j = plan(dir.path())
            .join(&frame(&[1], "2026-11-22T10:00:30Z", &[4.0]), None)
            .unwrap();
        assert_eq!(column(&j, "n"), [Value::Int(5)]);
        assert_eq!(column(&j, "ratio"), [Value::Float(0.5)]);
        let names: Vec<&str> = j.frame.columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["n", "ratio", "must", "strict"]);
        assert_eq!(j.frame.columns[3].data, ColumnData::F64(vec![3.0]));
    }

    #[test]
    fn stale_values_follow_the_policy_and_null_inputs_give_null_then_the_default() {
        let dir = tempfile::tempdir().unwrap();
        // Row 2 is an hour old (max age 60 s): n defaults; x is missing (policy null), so the
        // ratio is null and takes its default.
        let j = plan(dir.path())
            .join(&frame(&[2], "2026-11-22T10:00:00Z", &[4.0]), None)
            .unwrap();
        assert_eq!(column(&j, "n"), [Value::Int(-1)]);
        assert_eq!(column(&j, "x"), [Value::Null]);
        assert_eq!(column(&j, "ratio"), [Value::Float(0.5)]);
    }

    #[test]
    fn reject_names_the_key_and_table() {
        let dir = tempfile::tempdir().unwrap();
        let e = plan(dir.path())
            .join(&frame(&[1, 9], "2026-11-22T10:00:30Z", &[4.0, 4.0]), None)
            .err()
            .unwrap();
        assert_eq!(e.status().as_u16(), 422);
        assert_eq!(
            e.to_string(),
            "row 1: feature 'must' for id=9 in table 't' has no value"
        );
    }

    #[test]
    fn a_null_function_result_without_a_default_is_refused_and_nulls_never_reach_the_model() {
        let dir = tempfile::tempdir().unwrap();
        let p = plan(dir.path());
        // amount * amount overflows: a non-finite result is null, and `strict` has no default.
        let spec: FeatureSpec =
            serde_yaml::from_str(&SPEC.replace("amount - 1", "amount * amount").replace(
                "model_columns: [n, ratio, must, strict]",
                "model_columns: [strict, x]",
            ))
            .unwrap();
        let store = p.store.clone();
        let p = JoinPlan::compile(&spec, store, None).unwrap();
        let e = p
            .join(&frame(&[1], "2026-11-22T10:00:30Z", &[f64::MAX]), None)
            .err()
            .unwrap();
        assert!(
            e.to_string().contains("on-demand feature 'strict' is null"),
            "{e}"
        );
        // x is null for id 2 (policy null) and the model takes it: refused by name.
        let e = p
            .join(&frame(&[2], "2026-11-22T10:00:30Z", &[1.0]), None)
            .err()
            .unwrap();
        assert!(
            e.to_string()
                .contains("feature 'x' is null and the model needs a value"),
            "{e}"
        );
    }

    #[test]
    fn a_request_with_every_model_column_needs_no_lookup_and_no_key() {
        let dir = tempfile::tempdir().unwrap();
        let f = Frame {
            columns: vec![
                Column::scalar("n", ColumnData::I64(vec![1])),
                Column::scalar("ratio", ColumnData::F64(vec![0.25])),
                Column::scalar("must", ColumnData::F64(vec![2.0])),
                Column::scalar("strict", ColumnData::F64(vec![3.0])),
            ],
        };
        let j = plan(dir.path()).join(&f, None).unwrap();
        assert_eq!(j.frame.columns[1].data, ColumnData::F64(vec![0.25]));
        // Only `x` is missing: it feeds `ratio`, which the request sent, so nothing is looked up.
        assert!(!j.env.iter().any(|(n, _)| n == "x"));
    }

    #[test]
    fn csv_cells_are_text_until_the_spec_types_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.csv");
        std::fs::write(&path, "id,code,score\n00123,42,1.5\n7,x,NaN\n").unwrap();
        let store = EmbeddedStore::open(vec![TableSettings {
            name: "t".into(),
            path,
            primary_keys: vec!["id".into()],
            timestamp_key: None,
            event_timestamp: None,
        }])
        .unwrap();
        let spec: FeatureSpec = serde_yaml::from_str(
            "request_columns: [{name: id, type: string}]\nlookups: [{table: t, lookup_key: [id], features: [{name: code, type: string}, {name: score, type: float, on_missing: null}]}]\nfunctions: [{name: s2, expression: 'coalesce(score, 0.0)', type: float}]\nmodel_columns: [code, s2]\n",
        )
        .unwrap();
        let p = JoinPlan::compile(&spec, Arc::new(store), None).unwrap();
        let f = |id: &str| Frame {
            columns: vec![Column::scalar("id", ColumnData::Str(vec![id.into()]))],
        };
        let j = p.join(&f("00123"), None).unwrap();
        assert_eq!(j.frame.columns[0].data, ColumnData::Str(vec!["42".into()]));
        assert_eq!(j.frame.columns[1].data, ColumnData::F64(vec![1.5]));
        // A NaN in the file is no value.
        let j = p.join(&f("7"), None).unwrap();
        assert_eq!(column(&j, "score"), [Value::Null]);
        assert_eq!(j.frame.columns[1].data, ColumnData::F64(vec![0.0]));
    }

    #[test]
    fn specs_that_do_not_fit_are_refused_at_load() {
        let dir = tempfile::tempdir().unwrap();
        let store = plan(dir.path()).store.clone();
        for (edit, needle) in [
            (("table: t", "table: nope"), "no table 'nope'"),
            (
                ("lookup_key: [id]", "lookup_key: [who]"),
                "lookup key 'who' is not a request column",
            ),
            (
                ("{name: n, type: int", "{name: nn, type: int"),
                "no column 'nn'",
            ),
            (("x / amount", "x / "), "function 'ratio': at character 5"),
            (
                ("x / amount", "x > amount"),
                "gives bool, not the declared float",
            ),
            (
                ("model_columns: [n,", "model_columns: [zz,"),
                "model column 'zz'",
            ),
            (
                ("default: -1", "default: 'many'"),
                "default \"many\" is not a int",
            ),
            (
                ("lookup_key: [id]", "lookup_key: [id, amount]"),
                "lookup_key has 2 columns but the table's key has 1",
            ),
            (
                (
                    "lookup_key: [id]",
                    "lookup_key: [id]\n    timestamp_lookup_key: at",
                ),
                "needs a table with a timestamp_key",
            ),
            (
                ("default: -1, on_missing: default", "on_missing: default"),
                "on_missing: default but no default",
            ),
        ] {
            let spec: FeatureSpec = serde_yaml::from_str(&SPEC.replace(edit.0, edit.1)).unwrap();
            let e = JoinPlan::compile(&spec, store.clone(), None).err().unwrap();
            assert!(e.contains(needle), "{edit:?}: {e}");
        }
    }
}
