//! `baseline.json`: a model version's training distributions, shipped beside `MLmodel` and
//! written by `models/train.py` (format in docs/monitoring.md). Checked when the version loads,
//! so a bad baseline refuses the version instead of producing nonsense drift figures.

use serde::{Deserialize, Serialize};

/// File name of a version's baseline, beside `MLmodel`.
pub const BASELINE_FILE: &str = "baseline.json";

/// The only format this build reads.
pub const FORMAT_VERSION: u32 = 1;

/// Shares must add up to 1 within this (they are written as rounded decimal text).
const SUM_TOLERANCE: f64 = 1e-6;

#[derive(Debug, Clone, PartialEq)]
pub struct Baseline {
    pub rows: Option<u64>,
    pub source: Option<String>,
    /// Model inputs, by name (sorted).
    pub features: Vec<(String, ColumnBaseline)>,
    /// Prediction outputs: `probability` (the positive class's) or an output tensor's name.
    pub outputs: Vec<(String, ColumnBaseline)>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ColumnBaseline {
    Numeric(NumericBaseline),
    Categorical(CategoricalBaseline),
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NumericBaseline {
    pub count: u64,
    #[serde(default)]
    pub null_count: u64,
    pub mean: f64,
    pub std: f64,
    pub min: f64,
    pub max: f64,
    /// Non-decreasing bin edges, at least two.
    pub edges: Vec<f64>,
    /// One share per bin: the lower tail, the inner bins, the upper tail.
    pub shares: Vec<f64>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CategoricalBaseline {
    pub count: u64,
    #[serde(default)]
    pub null_count: u64,
    pub categories: Vec<Category>,
    #[serde(default)]
    pub other_share: f64,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Category {
    pub value: String,
    pub share: f64,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum BaselineError {
    #[error("it is not a baseline: {0}")]
    Parse(String),
    #[error("format_version {0} is not supported (this build reads {FORMAT_VERSION})")]
    Version(u32),
    #[error("{section}.{column}: {message}")]
    Column {
        section: &'static str,
        column: String,
        message: String,
    },
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum RawColumn {
    Numeric(NumericBaseline),
    Categorical(CategoricalBaseline),
}

#[derive(Deserialize)]
struct RawBaseline {
    format_version: u32,
    #[serde(default)]
    rows: Option<u64>,
    #[serde(default)]
    source: Option<String>,
    #[serde(default)]
    features: std::collections::BTreeMap<String, RawColumn>,
    #[serde(default)]
    outputs: std::collections::BTreeMap<String, RawColumn>,
    // Other fields (`model`, `version`) describe the file for people.
}

impl Baseline {
    /// Parses and checks a `baseline.json`.
    pub fn parse(bytes: &[u8]) -> Result<Self, BaselineError> {
        let json: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| BaselineError::Parse(e.to_string()))?;
        if !json.is_object() {
            return Err(BaselineError::Parse("it must be a JSON object".into()));
        }
        let raw: RawBaseline =
            serde_json::from_value(json).map_err(|e| BaselineError::Parse(e.to_string()))?;
        if raw.format_version != FORMAT_VERSION {
            return Err(BaselineError::Version(raw.format_version));
        }
        let section =
            |name: &'static str, columns: std::collections::BTreeMap<String, RawColumn>| {
                columns
                    .into_iter()
                    .map(|(column, raw)| {
                        let c = match raw {
                            RawColumn::Numeric(n) => ColumnBaseline::Numeric(n),
                            RawColumn::Categorical(c) => ColumnBaseline::Categorical(c),
                        };
                        c.check().map_err(|message| BaselineError::Column {
                            section: name,
                            column: column.clone(),
                            message,
                        })?;
                        Ok((column, c))
                    })
                    .collect::<Result<Vec<_>, BaselineError>>()
            };
        Ok(Self {
            rows: raw.rows,
            source: raw.source,
            features: section("features", raw.features)?,
            outputs: section("outputs", raw.outputs)?,
        })
    }
}

impl ColumnBaseline {
    /// Values the baseline was computed from (its reference count for KS).
    pub fn count(&self) -> u64 {
        match self {
            Self::Numeric(n) => n.count,
            Self::Categorical(c) => c.count,
        }
    }

    /// Bins in the order the profiles count them.
    pub fn shares(&self) -> Vec<f64> {
        match self {
            Self::Numeric(n) => n.shares.clone(),
            Self::Categorical(c) => c
                .categories
                .iter()
                .map(|c| c.share)
                .chain([c.other_share])
                .collect(),
        }
    }

    fn check(&self) -> Result<(), String> {
        let shares = self.shares();
        if let Some(s) = shares.iter().find(|s| !s.is_finite() || **s < 0.0) {
            return Err(format!("share {s} is not a non-negative number"));
        }
        let sum: f64 = shares.iter().sum();
        if (sum - 1.0).abs() > SUM_TOLERANCE {
            return Err(format!("the shares add up to {sum}, not 1"));
        }
        if self.count() == 0 {
            return Err("count is 0: a baseline needs values".into());
        }
        match self {
            Self::Numeric(n) => {
                if n.edges.len() < 2 {
                    return Err(format!(
                        "{} edge(s): a numeric baseline needs at least 2",
                        n.edges.len()
                    ));
                }
                if n.edges.iter().any(|e| !e.is_finite()) {
                    return Err("an edge is not a finite number".into());
                }
                if n.edges.windows(2).any(|w| w[1] < w[0]) {
                    return Err("edges must be in non-decreasing order".into());
                }
                if n.shares.len() != n.edges.len() + 1 {
                    return Err(format!(
                        "{} shares for {} edges: there must be one per bin (edges + 1, the two open tails included)",
                        n.shares.len(),
                        n.edges.len()
                    ));
                }
                if ![n.mean, n.std, n.min, n.max].iter().all(|v| v.is_finite()) || n.std < 0.0 {
                    return Err("mean, std, min and max must be finite (std >= 0)".into());
                }
            }
            Self::Categorical(c) => {
                if c.categories.is_empty() {
                    return Err("no categories".into());
                }
                let mut seen = std::collections::HashSet::new();
                if let Some(dup) = c.categories.iter().find(|k| !seen.insert(&k.value)) {
                    return Err(format!("category '{}' appears twice", dup.value));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{
      "format_version": 1, "model": "m", "version": "1", "rows": 10,
      "features": {
        "x": {"type": "numeric", "count": 10, "null_count": 0, "mean": 1.0, "std": 0.5,
              "min": 0.0, "max": 2.0, "edges": [0.0, 1.0, 2.0], "shares": [0.0, 0.5, 0.5, 0.0]},
        "p": {"type": "categorical", "count": 10, "categories": [{"value": "a", "share": 0.7}],
              "other_share": 0.3}
      },
      "outputs": {"probability": {"type": "numeric", "count": 10, "mean": 0.5, "std": 0.1,
              "min": 0.1, "max": 0.9, "edges": [0.1, 0.9], "shares": [0, 1, 0]}}
    }"#;

    #[test]
    fn reads_a_good_baseline() {
        let b = Baseline::parse(GOOD.as_bytes()).unwrap();
        assert_eq!(b.features.len(), 2);
        assert_eq!(b.outputs[0].0, "probability");
        assert_eq!(b.features[0].1.shares(), vec![0.7, 0.3]);
        assert_eq!(b.features[1].1.count(), 10);
    }

    #[test]
    fn refuses_with_the_column_named() {
        let bad = GOOD.replace("[0.0, 0.5, 0.5, 0.0]", "[0.5, 0.5, 0.0]");
        let e = Baseline::parse(bad.as_bytes()).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("features.x: 3 shares for 3 edges"),
            "{e}"
        );
        let bad = GOOD.replace("\"share\": 0.7", "\"share\": 0.2");
        let e = Baseline::parse(bad.as_bytes()).unwrap_err();
        assert!(
            e.to_string()
                .contains("features.p: the shares add up to 0.5"),
            "{e}"
        );
        let bad = GOOD.replace("[0.0, 1.0, 2.0]", "[0.0, 3.0, 2.0]");
        assert!(Baseline::parse(bad.as_bytes()).is_err());
        let bad = GOOD.replace("\"format_version\": 1", "\"format_version\": 2");
        assert_eq!(
            Baseline::parse(bad.as_bytes()).unwrap_err(),
            BaselineError::Version(2)
        );
        assert!(matches!(
            Baseline::parse(b"[1,2]").unwrap_err(),
            BaselineError::Parse(_)
        ));
        let bad = GOOD.replace(
            "\"type\": \"numeric\", \"count\": 10, \"null_count\"",
            "\"type\": \"histogram\", \"count\": 10, \"null_count\"",
        );
        assert!(Baseline::parse(bad.as_bytes()).is_err());
    }
}
