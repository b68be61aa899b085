//! A served entity's profile layout, compiled from its baseline when the version loads: which
//! columns are counted, on which bins, and how a value finds its bin (a binary search over the
//! edges, or a hash of the category).

use std::collections::HashMap;

use super::baseline::{Baseline, ColumnBaseline};
use crate::data::frame::{ColumnData, Frame};
use crate::data::tensor::{NamedTensor, TensorData};
use crate::engine::outputs::OutputMapping;

/// The bin index standing for "no value" in a row's bins.
pub const NULL: u32 = u32::MAX;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Feature,
    Output,
}

/// How a column is profiled: the `kind` of a column in monitoring reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ColumnKind {
    /// Binned on the baseline's edges.
    Numeric,
    /// One bin per baseline category, and one for the rest.
    Categorical,
}

/// How a column's values map to bins.
#[derive(Debug)]
pub enum Binner {
    /// Bin 0 is below the first edge, the last bin above the last one; inner bin j is
    /// `[edges[j-1], edges[j])`, the last inner one closed.
    Numeric { edges: Vec<f64> },
    /// One bin per baseline category, then "other" (anything else).
    Categorical {
        strings: HashMap<String, u32>,
        ints: HashMap<i64, u32>,
        /// The bins of `false` and `true`.
        bools: [u32; 2],
        other: u32,
    },
}

impl Binner {
    fn compile(baseline: &ColumnBaseline) -> Self {
        match baseline {
            ColumnBaseline::Numeric(n) => Self::Numeric {
                edges: n.edges.clone(),
            },
            ColumnBaseline::Categorical(c) => {
                let other = c.categories.len() as u32;
                let strings: HashMap<String, u32> = c
                    .categories
                    .iter()
                    .enumerate()
                    .map(|(i, k)| (k.value.clone(), i as u32))
                    .collect();
                let ints = strings
                    .iter()
                    .filter_map(|(k, &i)| k.parse::<i64>().ok().map(|v| (v, i)))
                    .collect();
                let bools = ["false", "true"].map(|b| strings.get(b).copied().unwrap_or(other));
                Self::Categorical {
                    strings,
                    ints,
                    bools,
                    other,
                }
            }
        }
    }

    pub fn bins(&self) -> usize {
        match self {
            Self::Numeric { edges } => edges.len() + 1,
            Self::Categorical { other, .. } => *other as usize + 1,
        }
    }

    pub fn kind(&self) -> ColumnKind {
        match self {
            Self::Numeric { .. } => ColumnKind::Numeric,
            Self::Categorical { .. } => ColumnKind::Categorical,
        }
    }

    /// The bin of a number; NaN has none.
    pub fn number(&self, x: f64) -> u32 {
        match self {
            Self::Numeric { edges } => numeric_bin(edges, x),
            Self::Categorical { ints, other, .. } => {
                if x.fract() == 0.0 && x.abs() < 9.0e15 {
                    ints.get(&(x as i64)).copied().unwrap_or(*other)
                } else if x.is_nan() {
                    NULL
                } else {
                    *other
                }
            }
        }
    }

    fn int(&self, x: i64) -> u32 {
        match self {
            Self::Numeric { edges } => numeric_bin(edges, x as f64),
            Self::Categorical { ints, other, .. } => ints.get(&x).copied().unwrap_or(*other),
        }
    }

    fn boolean(&self, b: bool) -> u32 {
        match self {
            Self::Numeric { edges } => numeric_bin(edges, f64::from(u8::from(b))),
            Self::Categorical { bools, .. } => bools[usize::from(b)],
        }
    }

    fn text(&self, s: &str) -> u32 {
        match self {
            // Numbers sent as text are numbers; other text is no value.
            Self::Numeric { edges } => s
                .trim()
                .parse::<f64>()
                .map_or(NULL, |x| numeric_bin(edges, x)),
            Self::Categorical { strings, other, .. } => strings.get(s).copied().unwrap_or(*other),
        }
    }

    /// Whether bin `b` lies outside the baseline's range (the open tails of a numeric column).
    pub fn out_of_range(&self, b: usize) -> bool {
        match self {
            Self::Numeric { edges } => b == 0 || b == edges.len(),
            Self::Categorical { .. } => false,
        }
    }
}

fn numeric_bin(edges: &[f64], x: f64) -> u32 {
    if x.is_nan() {
        return NULL;
    }
    let last = edges.len() - 1;
    if x < edges[0] {
        0
    } else if x > edges[last] {
        edges.len() as u32
    } else {
        edges.partition_point(|e| *e <= x).min(last) as u32
    }
}

/// One profiled column.
#[derive(Debug)]
pub struct ProfiledColumn {
    pub name: String,
    pub role: Role,
    pub binner: Binner,
    pub baseline: ColumnBaseline,
}

/// How a version's values are profiled: its baseline's features, then its outputs, each
/// column with the binner its baseline compiles to.
#[derive(Debug)]
pub struct Profiler {
    pub columns: Vec<ProfiledColumn>,
    /// Rows of the training data the baseline came from.
    pub baseline_rows: Option<u64>,
}

impl Profiler {
    pub fn compile(baseline: &Baseline) -> Self {
        let column = |role: Role| {
            move |(name, b): &(String, ColumnBaseline)| ProfiledColumn {
                name: name.clone(),
                role,
                binner: Binner::compile(b),
                baseline: b.clone(),
            }
        };
        let columns = baseline
            .features
            .iter()
            .map(column(Role::Feature))
            .chain(baseline.outputs.iter().map(column(Role::Output)))
            .collect();
        Self {
            columns,
            baseline_rows: baseline.rows,
        }
    }

    /// The bin of every profiled value of a scored batch, column by column (`rows` per column;
    /// [`NULL`] where a row has no value). Columns missing from the frame or the outputs are
    /// all null.
    pub fn bin(
        &self,
        frame: &Frame,
        mapping: &OutputMapping,
        outputs: &[NamedTensor],
        out: &mut Vec<u32>,
    ) {
        let rows = frame.rows();
        out.clear();
        out.reserve(rows * self.columns.len());
        for c in &self.columns {
            let start = out.len();
            match c.role {
                Role::Feature => match frame.column(&c.name) {
                    Some(col) => bin_column(&c.binner, &col.data, out),
                    None => out.resize(start + rows, NULL),
                },
                Role::Output => bin_output(c, mapping, outputs, rows, out),
            }
            // A column of another length (never from a validated frame) is padded or cut.
            out.resize(start + rows, NULL);
        }
    }
}

fn bin_column(binner: &Binner, data: &ColumnData, out: &mut Vec<u32>) {
    match data {
        ColumnData::F64(v) => out.extend(v.iter().map(|&x| binner.number(x))),
        ColumnData::F32(v) => out.extend(v.iter().map(|&x| binner.number(f64::from(x)))),
        ColumnData::I64(v) => out.extend(v.iter().map(|&x| binner.int(x))),
        ColumnData::Bool(v) => out.extend(v.iter().map(|&b| binner.boolean(b))),
        ColumnData::Str(v) => out.extend(v.iter().map(|s| binner.text(s))),
    }
}

/// `probability` is the classifier's positive-class (or top) probability; any other name is an
/// output tensor with one value per row.
fn bin_output(
    c: &ProfiledColumn,
    mapping: &OutputMapping,
    outputs: &[NamedTensor],
    rows: usize,
    out: &mut Vec<u32>,
) {
    if c.name == "probability" {
        if matches!(mapping, OutputMapping::Classifier { .. }) {
            mapping.for_each_probability(outputs, rows, |p| out.push(c.binner.number(p)));
        }
        return;
    }
    let Some(t) = outputs.iter().find(|o| o.name == c.name).map(|o| &o.tensor) else {
        return;
    };
    if t.row_width() != 1 {
        return;
    }
    let b = &c.binner;
    match &t.data {
        TensorData::F32(v) => out.extend(v.iter().map(|&x| b.number(f64::from(x)))),
        TensorData::F64(v) => out.extend(v.iter().map(|&x| b.number(x))),
        TensorData::I64(v) => out.extend(v.iter().map(|&x| b.int(x))),
        TensorData::I32(v) => out.extend(v.iter().map(|&x| b.int(i64::from(x)))),
        TensorData::Bool(v) => out.extend(v.iter().map(|&x| b.boolean(x))),
        TensorData::Str(v) => out.extend(v.iter().map(|s| b.text(s))),
    }
}

/// Counts of one column over a window.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ColumnCounts {
    pub bins: Vec<u64>,
    pub nulls: u64,
    /// Values the feature join filled with the feature's default.
    pub defaulted: u64,
}

impl ColumnCounts {
    pub fn values(&self) -> u64 {
        self.bins.iter().sum()
    }
}

/// Counts of every profiled column over a window.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Counts {
    pub columns: Vec<ColumnCounts>,
}

impl Counts {
    /// Adds another replica's counts of the same baseline; false (nothing added) when their
    /// shapes differ (another baseline).
    pub fn merge(&mut self, other: &Counts) -> bool {
        let same_shape = self.columns.len() == other.columns.len()
            && self
                .columns
                .iter()
                .zip(&other.columns)
                .all(|(a, b)| a.bins.len() == b.bins.len());
        if !same_shape {
            return false;
        }
        for (a, b) in self.columns.iter_mut().zip(&other.columns) {
            for (x, y) in a.bins.iter_mut().zip(&b.bins) {
                *x += y;
            }
            a.nulls += b.nulls;
            a.defaulted += b.defaulted;
        }
        true
    }

    pub fn zero(profiler: &Profiler) -> Self {
        Self {
            columns: profiler
                .columns
                .iter()
                .map(|c| ColumnCounts {
                    bins: vec![0; c.binner.bins()],
                    ..Default::default()
                })
                .collect(),
        }
    }

    /// Adds a batch binned by [`Profiler::bin`]; `defaulted` is (column, values).
    pub fn add(&mut self, bins: &[u32], rows: usize, defaulted: &[(usize, u32)]) {
        for (c, counts) in self.columns.iter_mut().enumerate() {
            let Some(column) = bins.get(c * rows..(c + 1) * rows) else {
                break;
            };
            for &b in column {
                match counts.bins.get_mut(b as usize) {
                    Some(n) => *n += 1,
                    None => counts.nulls += 1,
                }
            }
        }
        for &(c, n) in defaulted {
            if let Some(counts) = self.columns.get_mut(c) {
                counts.defaulted += u64::from(n);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::frame::Column;
    use crate::drift::baseline::{CategoricalBaseline, Category, NumericBaseline};

    fn numeric(edges: Vec<f64>) -> ColumnBaseline {
        let bins = edges.len() + 1;
        ColumnBaseline::Numeric(NumericBaseline {
            count: 10,
            null_count: 0,
            mean: 0.0,
            std: 1.0,
            min: 0.0,
            max: 1.0,
            shares: vec![1.0 / bins as f64; bins],
            edges,
        })
    }

    #[test]
    fn numeric_bins_follow_the_documented_rule() {
        let b = Binner::compile(&numeric(vec![0.0, 1.0, 2.0, 2.0, 5.0]));
        let bins: Vec<u32> = [-1.0, 0.0, 0.5, 1.0, 1.99, 2.0, 4.0, 5.0, 5.01, f64::NAN]
            .iter()
            .map(|&x| b.number(x))
            .collect();
        // Edges: 0 | [0,1) 1 | [1,2) 2 | [2,2) 3 (empty) | [2,5] 4 | above 5.
        assert_eq!(bins, vec![0, 1, 1, 2, 2, 4, 4, 4, 5, NULL]);
        assert!(b.out_of_range(0) && b.out_of_range(5) && !b.out_of_range(4));
        // A constant column: edges [v, v] put v in the one inner bin.
        let c = Binner::compile(&numeric(vec![3.0, 3.0]));
        assert_eq!([2.0, 3.0, 4.0].map(|x| c.number(x)), [0, 1, 2]);
    }

    #[test]
    fn categories_by_text_int_and_bool() {
        let b = Binner::compile(&ColumnBaseline::Categorical(CategoricalBaseline {
            count: 4,
            null_count: 0,
            categories: ["true", "1", "Product A"]
                .iter()
                .map(|v| Category {
                    value: v.to_string(),
                    share: 1.0 / 3.0,
                })
                .collect(),
            other_share: 0.0,
        }));
        assert_eq!(b.text("Product A"), 2);
        assert_eq!(b.text("Product Z"), 3);
        assert_eq!(b.int(1), 1);
        assert_eq!(b.number(1.0), 1);
        assert_eq!(b.number(1.5), 3);
        assert_eq!(b.boolean(true), 0);
        assert_eq!(b.boolean(false), 3);
        // The `kind` of a column in monitoring reports.
        assert_eq!(serde_json::to_value(b.kind()).unwrap(), "categorical");
        let n = Binner::compile(&numeric(vec![0.0, 1.0]));
        assert_eq!(serde_json::to_value(n.kind()).unwrap(), "numeric");
    }

    #[test]
    fn a_batch_is_binned_and_counted_with_nulls() {
        let baseline = Baseline {
            rows: Some(10),
            source: None,
            features: vec![
                ("x".into(), numeric(vec![0.0, 10.0])),
                ("missing".into(), numeric(vec![0.0, 1.0])),
            ],
            outputs: vec![],
        };
        let profiler = Profiler::compile(&baseline);
        let frame = Frame {
            columns: vec![Column::scalar(
                "x",
                ColumnData::F64(vec![-1.0, 5.0, f64::NAN]),
            )],
        };
        let mut bins = Vec::new();
        profiler.bin(&frame, &OutputMapping::Records, &[], &mut bins);
        assert_eq!(bins, vec![0, 1, NULL, NULL, NULL, NULL]);
        let mut counts = Counts::zero(&profiler);
        counts.add(&bins, 3, &[(1, 3)]);
        assert_eq!(counts.columns[0].bins, vec![1, 1, 0]);
        assert_eq!(counts.columns[0].nulls, 1);
        assert_eq!(counts.columns[1].nulls, 3);
        assert_eq!(counts.columns[1].defaulted, 3);
    }
}
