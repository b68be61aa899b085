//! Scoring request bodies for a batch of demo transactions, in every format the gateway reads.
//!
//! Two column sets: [`Columns::Raw`] is what a caller knows (the gateway looks the rest up
//! through the model's feature spec); [`Columns::Model`] is the model's own inputs, for a
//! version served without a feature spec. Bodies are written directly (no JSON tree), so column
//! order is kept in records too and rendering stays cheap for load tests.

use std::fmt::Write;

use super::Transaction;

/// Which columns a body carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Columns {
    /// `CustomerID`, `TransactionTimestamp`, `Product`, `Amount`.
    Raw,
    /// `Product`, `Amount`, `transactionCount`, `isTimeout`, `MaxProductAmount`,
    /// `MaxDifferenceRatio`.
    Model,
}

/// A request body format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// MLflow `{"dataframe_split": {"columns": [...], "data": [[...], ...]}}`.
    DataframeSplit,
    /// MLflow `{"dataframe_records": [{...}, ...]}`.
    DataframeRecords,
    /// MLflow `{"instances": [{...}, ...]}`.
    Instances,
    /// MLflow `{"inputs": {"column": [...], ...}}` (the columnar dict form).
    Inputs,
    /// MLflow `text/csv`: a header row, then one row per transaction.
    Csv,
    /// Open Inference Protocol V2: one `[n, 1]` tensor per column (for the `/v2/.../infer`
    /// routes; every other format goes to `/invocations`).
    V2,
}

impl Format {
    pub const ALL: [Format; 6] = [
        Format::DataframeSplit,
        Format::DataframeRecords,
        Format::Instances,
        Format::Inputs,
        Format::Csv,
        Format::V2,
    ];

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Csv => "text/csv",
            _ => "application/json",
        }
    }

    pub fn is_v2(self) -> bool {
        self == Format::V2
    }
}

/// A rendered request body and the `Content-Type` to send it with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Body {
    pub bytes: Vec<u8>,
    pub content_type: &'static str,
}

/// Renders `txs` as one scoring request. An empty slice gives a well-formed body with no rows,
/// which the gateway rejects (a batch must have a row).
///
/// ```
/// use modelgate::demo::bodies::{render, Columns, Format};
/// use modelgate::demo::TransactionStream;
/// let batch: Vec<_> = TransactionStream::new(1, 1_795_000_000_000).take(3).collect();
/// let body = render(&batch, Columns::Raw, Format::DataframeSplit);
/// assert_eq!(body.content_type, "application/json");
/// let req = modelgate::protocol::mlflow::decode_json(&body.bytes).unwrap();
/// assert_eq!(req.frame.rows(), 3);
/// ```
pub fn render(txs: &[Transaction], columns: Columns, format: Format) -> Body {
    let specs = specs(columns);
    let mut out = String::with_capacity(64 + txs.len() * 24 * specs.len());
    match format {
        Format::DataframeSplit => dataframe_split(&mut out, txs, specs),
        Format::DataframeRecords => records(&mut out, "dataframe_records", txs, specs),
        Format::Instances => records(&mut out, "instances", txs, specs),
        Format::Inputs => columnar(&mut out, txs, specs),
        Format::Csv => csv(&mut out, txs, specs),
        Format::V2 => v2(&mut out, txs, specs),
    }
    Body {
        bytes: out.into_bytes(),
        content_type: format.content_type(),
    }
}

/// The column names of a column set, in body order.
pub fn column_names(columns: Columns) -> Vec<&'static str> {
    specs(columns).iter().map(|s| s.name).collect()
}

/// A transaction's timestamp as ISO 8601 UTC with milliseconds, as DEMO.md's requests carry it
/// (`2026-11-22T10:19:05.123Z`). Beyond chrono's range (±262,000 years) it falls back to the
/// epoch milliseconds as text.
pub fn iso8601_ms(ts_ms: i64) -> String {
    match chrono::DateTime::from_timestamp_millis(ts_ms) {
        Some(t) => t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        None => ts_ms.to_string(),
    }
}

/// One cell, typed as the column is.
#[derive(Debug, Clone, PartialEq)]
enum Cell {
    Int(i64),
    Float(f64),
    Bool(bool),
    Text(String),
}

/// A column: its name, V2 datatype and how to read it off a transaction.
struct Spec {
    name: &'static str,
    datatype: &'static str,
    get: fn(&Transaction) -> Cell,
}

const RAW: [Spec; 4] = [
    Spec {
        name: "CustomerID",
        datatype: "INT64",
        get: |t| Cell::Int(t.customer_id),
    },
    Spec {
        name: "TransactionTimestamp",
        datatype: "BYTES",
        get: |t| Cell::Text(iso8601_ms(t.timestamp_ms)),
    },
    PRODUCT,
    AMOUNT,
];

const MODEL: [Spec; 6] = [
    PRODUCT,
    AMOUNT,
    Spec {
        name: "transactionCount",
        datatype: "INT64",
        get: |t| Cell::Int(t.transaction_count),
    },
    Spec {
        name: "isTimeout",
        datatype: "BOOL",
        get: |t| Cell::Bool(t.is_timeout),
    },
    Spec {
        name: "MaxProductAmount",
        datatype: "FP64",
        get: |t| Cell::Float(t.max_product_amount),
    },
    Spec {
        name: "MaxDifferenceRatio",
        datatype: "FP64",
        get: |t| Cell::Float(t.max_difference_ratio),
    },
];

const PRODUCT: Spec = Spec {
    name: "Product",
    datatype: "BYTES",
    get: |t| Cell::Text(t.product.to_owned()),
};

const AMOUNT: Spec = Spec {
    name: "Amount",
    datatype: "FP64",
    get: |t| Cell::Float(t.amount),
};

fn specs(columns: Columns) -> &'static [Spec] {
    match columns {
        Columns::Raw => &RAW,
        Columns::Model => &MODEL,
    }
}

/// Writes `items` separated by commas.
fn comma_separated<T>(
    out: &mut String,
    items: impl IntoIterator<Item = T>,
    mut each: impl FnMut(&mut String, T),
) {
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        each(out, item);
    }
}

fn dataframe_split(out: &mut String, txs: &[Transaction], specs: &[Spec]) {
    out.push_str("{\"dataframe_split\":{\"columns\":[");
    comma_separated(out, specs, |out, s| json_str(out, s.name));
    out.push_str("],\"data\":[");
    comma_separated(out, txs, |out, t| {
        out.push('[');
        comma_separated(out, specs, |out, s| json_cell(out, &(s.get)(t)));
        out.push(']');
    });
    out.push_str("]}}");
}

fn records(out: &mut String, field: &str, txs: &[Transaction], specs: &[Spec]) {
    out.push_str("{\"");
    out.push_str(field);
    out.push_str("\":[");
    comma_separated(out, txs, |out, t| {
        out.push('{');
        comma_separated(out, specs, |out, s| {
            json_str(out, s.name);
            out.push(':');
            json_cell(out, &(s.get)(t));
        });
        out.push('}');
    });
    out.push_str("]}");
}

fn columnar(out: &mut String, txs: &[Transaction], specs: &[Spec]) {
    out.push_str("{\"inputs\":{");
    comma_separated(out, specs, |out, s| {
        json_str(out, s.name);
        out.push_str(":[");
        comma_separated(out, txs, |out, t| json_cell(out, &(s.get)(t)));
        out.push(']');
    });
    out.push_str("}}");
}

fn v2(out: &mut String, txs: &[Transaction], specs: &[Spec]) {
    out.push_str("{\"inputs\":[");
    comma_separated(out, specs, |out, s| {
        out.push_str("{\"name\":");
        json_str(out, s.name);
        let _ = write!(
            out,
            ",\"shape\":[{},1],\"datatype\":\"{}\",\"data\":[",
            txs.len(),
            s.datatype
        );
        comma_separated(out, txs, |out, t| json_cell(out, &(s.get)(t)));
        out.push_str("]}");
    });
    out.push_str("]}");
}

fn csv(out: &mut String, txs: &[Transaction], specs: &[Spec]) {
    comma_separated(out, specs, |out, s| csv_field(out, s.name));
    out.push('\n');
    for t in txs {
        comma_separated(out, specs, |out, s| match (s.get)(t) {
            Cell::Text(v) => csv_field(out, &v),
            other => plain_cell(out, &other),
        });
        out.push('\n');
    }
}

fn json_cell(out: &mut String, cell: &Cell) {
    match cell {
        Cell::Text(v) => json_str(out, v),
        other => plain_cell(out, other),
    }
}

/// A number or boolean as JSON and CSV both write it. Floats keep a fraction (`155.0`), so a
/// JSON column of whole amounts still decodes as floats; a non-finite float, which JSON cannot
/// carry, is `null` (the demo's values are all finite).
fn plain_cell(out: &mut String, cell: &Cell) {
    let _ = match cell {
        Cell::Int(v) => write!(out, "{v}"),
        Cell::Float(v) if v.is_finite() => write!(out, "{v:?}"),
        Cell::Float(_) => write!(out, "null"),
        Cell::Bool(v) => write!(out, "{v}"),
        Cell::Text(v) => write!(out, "{v}"),
    };
}

fn json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A CSV field, quoted only when it has to be.
fn csv_field(out: &mut String, s: &str) {
    if s.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&s.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::frame::{ColumnData, Frame};
    use crate::data::time::parse_timestamp;
    use crate::demo::TransactionStream;
    use crate::error::RequestError;
    use crate::protocol::{mlflow, v2};

    const START: i64 = 1_795_000_000_000;

    /// A batch with both labels, both isTimeout values, and a whole-number amount.
    fn batch() -> Vec<Transaction> {
        let mut txs: Vec<Transaction> = TransactionStream::new(3, START).take(300).collect();
        txs[0].amount = 100.0;
        assert!(txs.iter().any(|t| t.is_timeout) && txs.iter().any(|t| !t.is_timeout));
        assert!(txs.iter().any(|t| t.label == 1));
        txs
    }

    fn decode(body: &Body, format: Format) -> Result<Frame, RequestError> {
        Ok(match format {
            Format::Csv => mlflow::decode_csv(&body.bytes)?.frame,
            Format::V2 => v2::decode(&body.bytes)?.frame,
            _ => mlflow::decode_json(&body.bytes)?.frame,
        })
    }

    /// What a decoder that keeps JSON types gives for a column.
    fn typed(txs: &[Transaction], spec: &Spec) -> ColumnData {
        let cells: Vec<Cell> = txs.iter().map(spec.get).collect();
        match cells.first() {
            Some(Cell::Int(_)) => ColumnData::I64(
                cells
                    .iter()
                    .map(|c| match c {
                        Cell::Int(v) => *v,
                        other => panic!("{other:?}"),
                    })
                    .collect(),
            ),
            Some(Cell::Float(_)) => ColumnData::F64(
                cells
                    .iter()
                    .map(|c| match c {
                        Cell::Float(v) => *v,
                        other => panic!("{other:?}"),
                    })
                    .collect(),
            ),
            Some(Cell::Bool(_)) => ColumnData::Bool(
                cells
                    .iter()
                    .map(|c| match c {
                        Cell::Bool(v) => *v,
                        other => panic!("{other:?}"),
                    })
                    .collect(),
            ),
            _ => ColumnData::Str(
                cells
                    .iter()
                    .map(|c| match c {
                        Cell::Text(v) => v.clone(),
                        other => panic!("{other:?}"),
                    })
                    .collect(),
            ),
        }
    }

    /// CSV cells are text: parse them back as the column's type and compare the values.
    fn assert_text_matches(name: &str, text: &[String], want: &ColumnData) {
        match want {
            ColumnData::I64(v) => {
                let got: Vec<i64> = text.iter().map(|s| s.parse().unwrap()).collect();
                assert_eq!(&got, v, "{name}");
            }
            ColumnData::F64(v) => {
                let got: Vec<f64> = text.iter().map(|s| s.parse().unwrap()).collect();
                assert_eq!(&got, v, "{name}");
            }
            ColumnData::Bool(v) => {
                let got: Vec<bool> = text.iter().map(|s| s.parse().unwrap()).collect();
                assert_eq!(&got, v, "{name}");
            }
            ColumnData::Str(v) => assert_eq!(text, v.as_slice(), "{name}"),
            ColumnData::F32(_) => unreachable!(),
        }
    }

    #[test]
    fn every_format_and_column_set_decodes_with_the_gateways_decoders() {
        let txs = batch();
        for columns in [Columns::Raw, Columns::Model] {
            for format in Format::ALL {
                let body = render(&txs, columns, format);
                assert_eq!(body.content_type, format.content_type());
                let frame = decode(&body, format)
                    .unwrap_or_else(|e| panic!("{columns:?} {format:?}: {e:?}"));
                frame.validate(10_000).unwrap();
                assert_eq!(frame.rows(), txs.len(), "{columns:?} {format:?}");
                // Records may come back in key order; the gateway binds columns by name.
                let mut names: Vec<&str> = frame.columns.iter().map(|c| c.name.as_str()).collect();
                let mut want_names = column_names(columns);
                names.sort_unstable();
                want_names.sort_unstable();
                assert_eq!(names, want_names, "{columns:?} {format:?}");
                for spec in specs(columns) {
                    let col = frame.column(spec.name).unwrap();
                    let what = format!("{columns:?} {format:?} {}", spec.name);
                    let want = typed(&txs, spec);
                    match format {
                        Format::Csv => {
                            assert!(col.from_text, "{what}");
                            let ColumnData::Str(text) = &col.data else {
                                panic!("{what}: {:?}", col.data)
                            };
                            assert_text_matches(&what, text, &want);
                        }
                        _ => {
                            assert!(!col.from_text, "{what}");
                            assert_eq!(col.data, want, "{what}");
                        }
                    }
                    let shape = match format {
                        Format::V2 => vec![txs.len(), 1],
                        _ => vec![txs.len()],
                    };
                    assert_eq!(col.shape, shape, "{what}");
                }
            }
        }
    }

    #[test]
    fn raw_columns_carry_what_the_gateway_looks_up_by() {
        let txs = batch();
        let body = render(&txs, Columns::Raw, Format::DataframeRecords);
        let frame = decode(&body, Format::DataframeRecords).unwrap();
        let Some(ColumnData::Str(stamps)) = frame.column("TransactionTimestamp").map(|c| &c.data)
        else {
            panic!("{frame:?}")
        };
        for (s, t) in stamps.iter().zip(&txs) {
            assert_eq!(s.len(), "2026-11-22T10:19:05.123Z".len(), "{s}");
            assert!(s.ends_with('Z'), "{s}");
            assert_eq!(parse_timestamp(s), Some(t.timestamp_ms), "{s}");
        }
        assert_eq!(iso8601_ms(1_795_342_745_123), "2026-11-22T10:19:05.123Z");
        assert_eq!(iso8601_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601_ms(i64::MAX), i64::MAX.to_string());
    }

    #[test]
    fn v2_tensors_use_the_model_datatypes() {
        let txs = batch();
        let body = render(&txs[..2], Columns::Model, Format::V2);
        let v: serde_json::Value = serde_json::from_slice(&body.bytes).unwrap();
        let types: Vec<(&str, &str)> = v["inputs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| (i["name"].as_str().unwrap(), i["datatype"].as_str().unwrap()))
            .collect();
        assert_eq!(
            types,
            [
                ("Product", "BYTES"),
                ("Amount", "FP64"),
                ("transactionCount", "INT64"),
                ("isTimeout", "BOOL"),
                ("MaxProductAmount", "FP64"),
                ("MaxDifferenceRatio", "FP64"),
            ]
        );
        assert_eq!(v["inputs"][0]["shape"], serde_json::json!([2, 1]));
    }

    #[test]
    fn an_empty_batch_renders_a_body_the_gateway_rejects_cleanly() {
        for columns in [Columns::Raw, Columns::Model] {
            for format in Format::ALL {
                let body = render(&[], columns, format);
                if let Ok(frame) = decode(&body, format) {
                    assert!(frame.validate(10).is_err(), "{columns:?} {format:?}");
                }
            }
        }
    }

    #[test]
    fn text_is_escaped_and_quoted() {
        let mut out = String::new();
        json_str(&mut out, "a\"b\\c\nd\u{1}é");
        assert_eq!(out, r#""a\"b\\c\nd\u0001é""#);
        assert_eq!(
            serde_json::from_str::<String>(&out).unwrap(),
            "a\"b\\c\nd\u{1}é"
        );
        let mut out = String::new();
        csv_field(&mut out, "Product A");
        csv_field(&mut out, "x,\"y\"");
        assert_eq!(out, "Product A\"x,\"\"y\"\"\"");
        let mut out = String::new();
        plain_cell(&mut out, &Cell::Float(f64::NAN));
        plain_cell(&mut out, &Cell::Float(155.0));
        assert_eq!(out, "null155.0");
    }
}
