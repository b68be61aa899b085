//! A baseline fitted from data (`modelgate baseline`): the same profiles `models/train.py`
//! writes, computed the same way (numpy's linear quantiles for the edges, edges moved off data
//! values, the 20 most frequent categories), so a baseline made here and one made by the
//! training script agree on the same rows.

use serde_json::{json, Map, Value};

use super::baseline::{CategoricalBaseline, Category, NumericBaseline, FORMAT_VERSION};

/// Inner bins of a numeric baseline: edges at the 0, 5, ..., 100 % quantiles.
pub const QUANTILES: usize = 20;
/// Categories kept by name; the rest share `other_share`.
pub const TOP_CATEGORIES: usize = 20;

/// The values of one column, as they are profiled.
#[derive(Debug, Clone, PartialEq)]
pub enum Samples {
    Numbers(Vec<f64>),
    /// Categories as text: strings as they are, booleans `true`/`false`, integers in decimal.
    Texts(Vec<String>),
}

impl Samples {
    pub fn len(&self) -> usize {
        match self {
            Self::Numbers(v) => v.len(),
            Self::Texts(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Its profile as `baseline.json` holds it (`type` and the fields of its kind).
    pub fn profile(&self) -> Result<Value, String> {
        let (kind, fields) = match self {
            Self::Numbers(v) => ("numeric", serde_json::to_value(numeric(v)?)),
            Self::Texts(v) => ("categorical", serde_json::to_value(categorical(v)?)),
        };
        let mut fields = fields.map_err(|e| e.to_string())?;
        if let Value::Object(map) = &mut fields {
            map.insert("type".into(), kind.into());
        }
        Ok(fields)
    }
}

/// Moments, quantile edges and the share of each bin: the lower tail (below the first edge),
/// one bin per pair of edges (`[lo, hi)`, the last edge in the last bin), the upper tail.
pub fn numeric(values: &[f64]) -> Result<NumericBaseline, String> {
    if values.is_empty() {
        return Err("no values".into());
    }
    if let Some(v) = values.iter().find(|v| !v.is_finite()) {
        return Err(format!("{v} is not a finite number"));
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mut edges: Vec<f64> = (0..=QUANTILES)
        .map(|i| match i {
            // numpy's linspace sets its last point to the end exactly.
            QUANTILES => 1.0,
            i => i as f64 * (1.0 / QUANTILES as f64),
        })
        .map(|q| quantile(&sorted, q))
        .collect();
    edges.dedup();
    if edges.len() == 1 {
        edges.push(edges[0]);
    }
    let mut distinct = sorted.clone();
    distinct.dedup();
    let edges = off_values(&edges, &distinct);
    let mut counts = vec![0u64; edges.len() + 1];
    let last = edges.len() - 1;
    for &v in values {
        let bin = if v < edges[0] {
            0
        } else if v > edges[last] {
            edges.len()
        } else {
            edges.partition_point(|e| *e <= v).min(last)
        };
        counts[bin] += 1;
    }
    let n = values.len() as f64;
    let mean = pairwise_sum(values) / n;
    let deviations: Vec<f64> = values.iter().map(|v| (v - mean) * (v - mean)).collect();
    Ok(NumericBaseline {
        count: values.len() as u64,
        null_count: 0,
        mean,
        std: (pairwise_sum(&deviations) / n).sqrt(),
        min: sorted[0],
        max: sorted[sorted.len() - 1],
        edges,
        shares: counts.iter().map(|&c| c as f64 / n).collect(),
    })
}

/// Shares of the most frequent categories (count descending, then value ascending) and of the
/// rest.
pub fn categorical(texts: &[String]) -> Result<CategoricalBaseline, String> {
    if texts.is_empty() {
        return Err("no values".into());
    }
    let mut counts: std::collections::HashMap<&str, u64> = Default::default();
    for t in texts {
        *counts.entry(t).or_default() += 1;
    }
    let mut ranked: Vec<(&str, u64)> = counts.into_iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let n = texts.len() as f64;
    let rest: u64 = ranked.iter().skip(TOP_CATEGORIES).map(|(_, c)| c).sum();
    Ok(CategoricalBaseline {
        count: texts.len() as u64,
        null_count: 0,
        categories: ranked
            .iter()
            .take(TOP_CATEGORIES)
            .map(|(value, c)| Category {
                value: (*value).to_owned(),
                share: *c as f64 / n,
            })
            .collect(),
        other_share: rest as f64 / n,
    })
}

/// A whole `baseline.json`: features and outputs by name, with what it was made from.
pub fn baseline_json(
    model: &str,
    version: &str,
    source: &str,
    rows: usize,
    features: &[(String, Samples)],
    outputs: &[(String, Samples)],
) -> Result<Value, String> {
    let section = |columns: &[(String, Samples)], what: &str| {
        columns
            .iter()
            .map(|(name, samples)| {
                samples
                    .profile()
                    .map(|p| (name.clone(), p))
                    .map_err(|e| format!("{what} '{name}': {e}"))
            })
            .collect::<Result<Map<String, Value>, String>>()
    };
    Ok(json!({
        "format_version": FORMAT_VERSION,
        "model": model,
        "version": version,
        "source": source,
        "rows": rows,
        "features": section(features, "feature")?,
        "outputs": section(outputs, "output")?,
    }))
}

/// numpy's default (`linear`) quantile of sorted values, with its interpolation: from the
/// lower neighbour below the midpoint, from the upper one at or above it.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let n = sorted.len();
    let at = (n - 1) as f64 * q;
    if at >= (n - 1) as f64 {
        return sorted[n - 1];
    }
    let below = at.floor();
    let (a, b) = (sorted[below as usize], sorted[below as usize + 1]);
    let t = at - below;
    let diff = b - a;
    if t >= 0.5 {
        b - diff * (1.0 - t)
    } else {
        a + diff * t
    }
}

/// Edges that fall on a data value move off it: inner edges halfway to the next value below
/// (never below the edge before them), the first and last outward by a float32 rounding
/// margin. Outputs repeat exact values, and another engine computes them a rounding error
/// apart: an edge on such a value would move a whole atom of them between bins.
fn off_values(edges: &[f64], distinct: &[f64]) -> Vec<f64> {
    let last = edges.len() - 1;
    let mut out: Vec<f64> = Vec::with_capacity(edges.len());
    for (i, &e) in edges.iter().enumerate() {
        let at = distinct.partition_point(|d| *d < e);
        let moved = if at >= distinct.len() || distinct[at] != e {
            e
        } else {
            let margin = e.abs().max(1.0) * 1e-6;
            if i == 0 {
                let gap = if distinct.len() > 1 {
                    distinct[1] - e
                } else {
                    margin
                };
                e - margin.min(gap / 2.0)
            } else if i == last {
                let gap = if at > 0 { e - distinct[at - 1] } else { margin };
                e + margin.min(gap / 2.0)
            } else {
                out[i - 1].max((distinct[at - 1] + e) / 2.0)
            }
        };
        out.push(moved);
    }
    out
}

/// numpy's sum of float64s: blocks of 8 partial sums under 128 values, halves above.
fn pairwise_sum(v: &[f64]) -> f64 {
    const BLOCK: usize = 128;
    if v.len() < 8 {
        return v.iter().fold(-0.0, |s, x| s + x);
    }
    if v.len() <= BLOCK {
        let mut r = [0.0f64; 8];
        r.copy_from_slice(&v[..8]);
        let mut i = 8;
        while i + 8 <= v.len() {
            for (j, acc) in r.iter_mut().enumerate() {
                *acc += v[i + j];
            }
            i += 8;
        }
        let mut sum = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for x in &v[i..] {
            sum += x;
        }
        return sum;
    }
    let half = (v.len() / 2) / 8 * 8;
    pairwise_sum(&v[..half]) + pairwise_sum(&v[half..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_as_numpy_does() {
        let v = [1.0, 2.0, 4.0, 8.0];
        // np.quantile([1, 2, 4, 8], [0, 0.25, 0.5, 0.9, 1]) == [1, 1.75, 3, 6.8, 8]
        let got: Vec<f64> = [0.0, 0.25, 0.5, 0.9, 1.0]
            .iter()
            .map(|q| quantile(&v, *q))
            .collect();
        assert_eq!(got, [1.0, 1.75, 3.0, 6.800000000000001, 8.0]);
    }

    #[test]
    fn repeated_values_get_edges_off_them_and_every_value_one_bin() {
        let values: Vec<f64> = (0..100).map(|i| f64::from(i % 4)).collect();
        let b = numeric(&values).unwrap();
        // What models/train.py gives (numpy): edges on values moved off them, in order.
        assert_eq!(b.edges, [-1e-6, 0.75, 0.75, 1.5, 1.5, 2.25, 3.000003]);
        assert_eq!(b.shares, [0.0, 0.25, 0.0, 0.25, 0.0, 0.25, 0.25, 0.0]);
        assert_eq!((b.min, b.max, b.mean), (0.0, 3.0, 1.5));
        let one = numeric(&[5.0; 3]).unwrap();
        assert_eq!(one.edges.len(), 2);
        assert_eq!(one.shares, [0.0, 1.0, 0.0]);
        assert!(numeric(&[1.0, f64::NAN]).unwrap_err().contains("NaN"));
    }

    #[test]
    fn categories_rank_by_count_then_value_and_the_rest_is_other() {
        let mut texts: Vec<String> = (0..30).map(|i| format!("c{i:02}")).collect();
        texts.extend(["b", "a", "b", "a", "z"].map(String::from));
        let c = categorical(&texts).unwrap();
        let names: Vec<&str> = c.categories.iter().map(|k| k.value.as_str()).collect();
        assert_eq!(&names[..4], ["a", "b", "c00", "c01"]);
        assert_eq!(c.categories.len(), TOP_CATEGORIES);
        let kept: f64 = c.categories.iter().map(|k| k.share).sum();
        assert!((kept + c.other_share - 1.0).abs() < 1e-12);
    }

    #[test]
    fn a_fitted_baseline_reads_back() {
        let features = [
            (
                "x".to_owned(),
                Samples::Numbers((0..50).map(f64::from).collect()),
            ),
            ("p".to_owned(), Samples::Texts(vec!["a".into(); 50])),
        ];
        let outputs = [("probability".to_owned(), Samples::Numbers(vec![0.5; 50]))];
        let json = baseline_json("m", "1", "test", 50, &features, &outputs).unwrap();
        let b = super::super::baseline::Baseline::parse(json.to_string().as_bytes()).unwrap();
        assert_eq!(b.features.len(), 2);
        assert_eq!(b.outputs[0].1.count(), 50);
    }
}
