//! `feature_spec.yaml`, beside a version's `MLmodel`: what the model needs that the request does
//! not carry. Names follow Databricks' `FeatureLookup` (`lookup_key`, `timestamp_lookup_key`,
//! `rename_outputs` as `output_name`, `default_values` as `default`).
//!
//! ```yaml
//! request_columns:                 # what callers send, with types
//!   - {name: CustomerID, type: int}
//!   - {name: TransactionTimestamp, type: timestamp}
//! request_timestamp: TransactionTimestamp   # the request's time: as-of lookups and ages
//! lookups:
//!   - table: transaction_count_ft
//!     lookup_key: [CustomerID]     # request columns, in the order of the table's keys
//!     features:
//!       - {name: transactionCount, type: int, default: 0, on_missing: default, max_age_seconds: 3600}
//!   - table: product_3minute_max_price_ft
//!     lookup_key: [Product]
//!     timestamp_lookup_key: TransactionTimestamp   # newest row at or before it
//!     features:
//!       - {name: MaxProductAmount, type: float, on_missing: reject}
//! functions:
//!   - name: MaxDifferenceRatio
//!     expression: round((max_price - amount) / max_price, 2)
//!     inputs: {max_price: MaxProductAmount, amount: Amount}
//!     type: float
//!     on_null: default
//!     default: 0.0
//! model_columns: [Product, Amount, transactionCount, MaxProductAmount, MaxDifferenceRatio]
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::expr::Type;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureSpec {
    pub request_columns: Vec<RequestColumn>,
    #[serde(default)]
    pub request_timestamp: Option<String>,
    #[serde(default)]
    pub lookups: Vec<Lookup>,
    #[serde(default)]
    pub functions: Vec<Function>,
    /// The columns the model takes, in order, from the request, lookups and functions.
    pub model_columns: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestColumn {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: Type,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lookup {
    pub table: String,
    /// Request columns whose values make the table's key, in the order of its key columns.
    pub lookup_key: Vec<String>,
    /// A request column (a timestamp): take the newest row at or before it (as-of).
    #[serde(default)]
    pub timestamp_lookup_key: Option<String>,
    pub features: Vec<Feature>,
}

/// What to do when a value is missing, stale, or (for a function) null.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    /// Use the feature's `default`.
    Default,
    /// Leave it null: a function may still handle it (`coalesce`); the model cannot take it.
    Null,
    /// Refuse the request (422) naming the key and table.
    Reject,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Feature {
    /// The column in the table.
    pub name: String,
    #[serde(rename = "type")]
    pub ty: Type,
    /// The column name the model and functions see (default: `name`).
    #[serde(default)]
    pub output_name: Option<String>,
    #[serde(default)]
    pub default: Option<serde_json::Value>,
    /// Default: `default` when a default is given, else `reject`.
    #[serde(default, deserialize_with = "given_policy")]
    pub on_missing: Option<Policy>,
    /// A value whose row is older than this (by the table's event time, against the request's
    /// timestamp, or now without one) is stale and follows `on_missing`.
    #[serde(default)]
    pub max_age_seconds: Option<f64>,
}

impl Feature {
    pub fn output(&self) -> &str {
        self.output_name.as_deref().unwrap_or(&self.name)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Function {
    pub name: String,
    pub expression: String,
    /// Expression name -> column; a column may also be named directly in the expression.
    #[serde(default)]
    pub inputs: BTreeMap<String, String>,
    #[serde(rename = "type")]
    pub ty: Type,
    #[serde(default)]
    pub default: Option<serde_json::Value>,
    /// What a null result does; default: `default` when a default is given, else `reject`.
    #[serde(default, deserialize_with = "given_policy")]
    pub on_null: Option<Policy>,
}

/// A policy that is present: YAML reads `on_missing: null` as a null, which here is the `null`
/// policy (an absent key is `None` through `#[serde(default)]`).
fn given_policy<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Policy>, D::Error> {
    Ok(Some(
        Option::<Policy>::deserialize(d)?.unwrap_or(Policy::Null),
    ))
}

/// The policy a missing value follows: as given, else `default` when there is a default.
pub fn policy(given: Option<Policy>, default: &Option<serde_json::Value>) -> Policy {
    given.unwrap_or(if default.is_some() {
        Policy::Default
    } else {
        Policy::Reject
    })
}
