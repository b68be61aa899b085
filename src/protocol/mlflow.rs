//! The MLflow scoring protocol (as `mlflow models serve` and Databricks Model Serving speak it).
//!
//! JSON bodies carry exactly one of `dataframe_split`, `dataframe_records`, `instances` or
//! `inputs`, plus optional `params` and `client_request_id`; `text/csv` bodies are a header row
//! and data rows. Responses are `{"predictions": ...}`.

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde_json::{Map, Value};

use super::columns::ColumnBuilder;
use super::limits::{Budget, DecodeLimits};
use super::mlflow_json::{Ctx, RecordsSeed, SplitSeed};
use crate::data::frame::{Column, ColumnData, Frame, UNNAMED_TENSOR};
use crate::error::{RequestError, RequestResult};

const DATA_KEYS: [&str; 4] = [
    "dataframe_split",
    "dataframe_records",
    "instances",
    "inputs",
];

/// A decoded scoring request.
#[derive(Debug, Default)]
pub struct ScoringRequest {
    pub frame: Frame,
    pub client_request_id: Option<String>,
    pub params: Option<Map<String, Value>>,
}

/// Decodes a JSON scoring body.
///
/// ```
/// use modelgate::data::frame::ColumnData;
/// let body = br#"{"dataframe_split": {"columns": ["Amount", "Product"], "data": [[1.5, "A"], [2, "B"]]}}"#;
/// let req = modelgate::protocol::mlflow::decode_json(body).unwrap();
/// assert_eq!(req.frame.rows(), 2);
/// assert_eq!(req.frame.columns[0].data, ColumnData::F64(vec![1.5, 2.0]));
/// ```
pub fn decode_json(body: &[u8]) -> RequestResult<ScoringRequest> {
    decode_json_limited(body, &DecodeLimits::default())
}

/// Decodes a JSON scoring body within `limits`, checked while it is read.
pub fn decode_json_limited(body: &[u8], limits: &DecodeLimits) -> RequestResult<ScoringRequest> {
    let ctx = Ctx::new(*limits);
    let mut de = serde_json::Deserializer::from_slice(body);
    let parsed = BodySeed { ctx: &ctx }
        .deserialize(&mut de)
        .and_then(|b| de.end().map(|()| b));
    let body_fields = match parsed {
        Ok(b) => b,
        Err(e) => {
            return Err(ctx.take().unwrap_or_else(|| {
                if e.is_data() {
                    RequestError::bad(format!(
                        "the body must be a JSON object with exactly one of the fields {}",
                        DATA_KEYS.join(", ")
                    ))
                } else {
                    malformed_json(body, &e)
                }
            }))
        }
    };
    body_fields.finish(&ctx)
}

/// The top-level fields as read; data fields are decoded while parsing when they can be.
struct BodyFields {
    /// Every data field present, in body order.
    data: Vec<(&'static str, Data)>,
    /// Every field name, for the error when no data field is found.
    names: Vec<String>,
    params: Option<Value>,
    client_request_id: Option<Value>,
}

enum Data {
    Decoded(Frame),
    /// `instances` / `inputs`, whose layout is known only from the whole value.
    Held(Value),
}

impl BodyFields {
    fn finish(self, ctx: &Ctx) -> RequestResult<ScoringRequest> {
        let mut data = self.data;
        let (key, data) = match data.len() {
            1 => data.remove(0),
            0 => {
                return Err(RequestError::bad(format!(
                "the body has no input data: give exactly one of the fields {} (fields found: {})",
                DATA_KEYS.join(", "),
                if self.names.is_empty() {
                    "none".to_owned()
                } else {
                    self.names.join(", ")
                }
            )))
            }
            n => {
                let keys: Vec<&str> = DATA_KEYS
                    .iter()
                    .copied()
                    .filter(|k| data.iter().any(|(d, _)| d == k))
                    .collect();
                return Err(RequestError::bad(format!(
                    "the body has {n} input fields ({}): give exactly one",
                    keys.join(", ")
                )));
            }
        };
        let client_request_id = match self.client_request_id {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => {
                ctx.budget.limits.id("client_request_id", s.len())?;
                Some(s)
            }
            Some(_) => {
                return Err(RequestError::bad(
                    "field 'client_request_id' must be a string",
                ))
            }
        };
        let params = match self.params {
            None | Some(Value::Null) => None,
            Some(Value::Object(m)) => Some(m),
            Some(_) => return Err(RequestError::bad("field 'params' must be a JSON object")),
        };
        let frame = match data {
            Data::Decoded(frame) => frame,
            Data::Held(value) => decode_tensor_input(value, key, ctx)?,
        };
        Ok(ScoringRequest {
            frame,
            client_request_id,
            params,
        })
    }
}

struct BodySeed<'a> {
    ctx: &'a Ctx,
}

impl<'de> DeserializeSeed<'de> for BodySeed<'_> {
    type Value = BodyFields;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<BodyFields, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for BodySeed<'_> {
    type Value = BodyFields;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<BodyFields, A::Error> {
        let ctx = self.ctx;
        let mut fields = BodyFields {
            data: Vec::new(),
            names: Vec::new(),
            params: None,
            client_request_id: None,
        };
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "dataframe_split" => {
                    let frame = map.next_value_seed(SplitSeed { ctx })?;
                    fields.data.push(("dataframe_split", Data::Decoded(frame)));
                }
                "dataframe_records" => {
                    let frame = map.next_value_seed(RecordsSeed {
                        ctx,
                        field: "dataframe_records",
                    })?;
                    fields
                        .data
                        .push(("dataframe_records", Data::Decoded(frame)));
                }
                // Held whole until their layout is known: counted as they are parsed.
                "instances" => fields
                    .data
                    .push(("instances", Data::Held(map.next_value_seed(ctx.tree())?))),
                "inputs" => fields
                    .data
                    .push(("inputs", Data::Held(map.next_value_seed(ctx.tree())?))),
                "params" => fields.params = Some(map.next_value_seed(ctx.tree())?),
                "client_request_id" => {
                    fields.client_request_id = Some(map.next_value_seed(ctx.tree())?)
                }
                // Ignored, as MLflow's scoring server ignores unknown fields.
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            fields.names.push(key);
        }
        Ok(fields)
    }
}

fn malformed_json(body: &[u8], e: &serde_json::Error) -> RequestError {
    let text = String::from_utf8_lossy(&body[..body.len().min(1 << 20)]);
    let hint = if ["NaN", "Infinity"].iter().any(|t| text.contains(t)) {
        " (NaN and Infinity are not valid JSON numbers: non-finite values cannot be scored)"
    } else {
        ""
    };
    RequestError::Malformed(format!("the body is not valid JSON: {e}{hint}"))
}

/// `instances` / `inputs` (TF-serving style): a list of records, a dict of named columns, or one
/// unnamed tensor (a list of rows) for a model with a single input.
fn decode_tensor_input(data: Value, field: &str, ctx: &Ctx) -> RequestResult<Frame> {
    match data {
        Value::Array(items) if items.first().is_some_and(Value::is_object) => {
            RecordsSeed { ctx, field }
                .deserialize(Value::Array(items))
                .map_err(|e| {
                    ctx.take()
                        .unwrap_or_else(|| RequestError::bad(e.to_string()))
                })
        }
        Value::Array(items) => {
            let mut b = ColumnBuilder::new(UNNAMED_TENSOR);
            for item in &items {
                b.push_row(item, &ctx.budget)?;
            }
            Ok(Frame {
                columns: vec![b.finish()],
            })
        }
        Value::Object(map) => {
            ctx.budget.limits.columns(map.len())?;
            let mut columns = Vec::with_capacity(map.len());
            for (name, value) in map {
                let mut b = ColumnBuilder::new(name.as_str());
                match &value {
                    Value::Array(items) => {
                        for item in items {
                            b.push_row(item, &ctx.budget)?;
                        }
                    }
                    _ => {
                        return Err(RequestError::bad(format!(
                            "'{field}.{name}' must be a list with one entry per row"
                        )))
                    }
                }
                columns.push(b.finish());
            }
            Ok(Frame { columns })
        }
        _ => Err(RequestError::bad(format!(
            "'{field}' must be a list of rows or records, or an object of named columns"
        ))),
    }
}

/// Decodes a `text/csv` body: a header row of column names, then one line per row. Values stay
/// text until the model's schema says what they are.
pub fn decode_csv(body: &[u8]) -> RequestResult<ScoringRequest> {
    decode_csv_limited(body, &DecodeLimits::default())
}

/// Decodes a `text/csv` body within `limits`, checked row by row.
pub fn decode_csv_limited(body: &[u8], limits: &DecodeLimits) -> RequestResult<ScoringRequest> {
    let budget = Budget::new(*limits);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .from_reader(body);
    let header = reader
        .headers()
        .map_err(|e| RequestError::Malformed(format!("the CSV header row cannot be read: {e}")))?;
    limits.columns(header.len())?;
    let headers: Vec<String> = header.iter().map(str::to_owned).collect();
    if headers.iter().all(String::is_empty) {
        return Err(RequestError::bad(
            "the CSV body has no header row with column names",
        ));
    }
    if let Some(i) = headers.iter().position(String::is_empty) {
        return Err(RequestError::bad(format!(
            "CSV header column {i} has no name"
        )));
    }
    let mut values: Vec<Vec<String>> = vec![Vec::new(); headers.len()];
    for (r, record) in reader.records().enumerate() {
        let record = record.map_err(|e| match e.kind() {
            csv::ErrorKind::UnequalLengths { len, .. } => RequestError::bad(format!(
                "CSV row {r} has {len} values but the header has {} columns",
                headers.len()
            )),
            _ => RequestError::Malformed(format!("CSV row {r} cannot be read: {e}")),
        })?;
        limits.rows(r + 1)?;
        for (c, cell) in record.iter().enumerate() {
            budget.take_value(Some(cell.len()), &headers[c])?;
            if cell.is_empty() {
                return Err(RequestError::bad(format!(
                    "column '{}' row {r} is empty: every model input needs a value",
                    headers[c]
                )));
            }
            values[c].push(cell.to_owned());
        }
    }
    let columns = headers
        .into_iter()
        .zip(values)
        .map(|(name, vals)| Column {
            from_text: true,
            ..Column::scalar(name, ColumnData::Str(vals))
        })
        .collect();
    Ok(ScoringRequest {
        frame: Frame { columns },
        client_request_id: None,
        params: None,
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use crate::protocol::test_strategies::arb_json;
    use serde_json::json;

    use super::*;

    fn decode(v: Value) -> RequestResult<ScoringRequest> {
        decode_json(v.to_string().as_bytes())
    }

    fn frame(v: Value) -> Frame {
        let frame = decode(v).expect("decodes").frame;
        frame.validate(10_000).expect("valid frame");
        frame
    }

    fn bad(r: RequestResult<ScoringRequest>) -> String {
        match r {
            Err(RequestError::BadRequest(m)) => m,
            other => panic!("expected a bad request, got {other:?}"),
        }
    }

    fn col<'a>(f: &'a Frame, name: &str) -> &'a Column {
        f.column(name)
            .unwrap_or_else(|| panic!("no column '{name}'"))
    }

    // ---- dataframe_split ----

    #[test]
    fn split_decodes_columns_in_order() {
        let f = frame(json!({"dataframe_split": {
            "index": [7, 8],
            "columns": ["b", "a", "s"],
            "data": [[1, 1.5, "x"], [2, 2, "y"]]
        }}));
        let names: Vec<&str> = f.columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["b", "a", "s"]);
        assert_eq!(col(&f, "b").data, ColumnData::I64(vec![1, 2]));
        assert_eq!(col(&f, "a").data, ColumnData::F64(vec![1.5, 2.0]));
        assert_eq!(
            col(&f, "s").data,
            ColumnData::Str(vec!["x".into(), "y".into()])
        );
        assert_eq!(col(&f, "s").shape, vec![2]);
        assert!(!col(&f, "s").from_text);
    }

    #[test]
    fn split_with_tensor_cells() {
        let f = frame(json!({"dataframe_split": {
            "columns": ["v"],
            "data": [[[1.0, 2.0]], [[3.0, 4.0]]]
        }}));
        assert_eq!(col(&f, "v").shape, vec![2, 2]);
        assert_eq!(col(&f, "v").data, ColumnData::F64(vec![1.0, 2.0, 3.0, 4.0]));
    }

    #[test]
    fn split_structure_errors() {
        let m = bad(decode(json!({"dataframe_split": [1]})));
        assert!(
            m.contains("must be an object with 'columns' and 'data'"),
            "{m}"
        );
        let m = bad(decode(json!({"dataframe_split": {"data": [[1]]}})));
        assert!(m.contains("no 'columns' list"), "{m}");
        let m = bad(decode(
            json!({"dataframe_split": {"columns": "a", "data": [[1]]}}),
        ));
        assert!(
            m.contains("'dataframe_split.columns' must be a list"),
            "{m}"
        );
        let m = bad(decode(
            json!({"dataframe_split": {"columns": ["a", 1], "data": []}}),
        ));
        assert_eq!(m, "'dataframe_split.columns[1]' must be a string");
        let m = bad(decode(json!({"dataframe_split": {"columns": ["a"]}})));
        assert!(m.contains("no 'data' list"), "{m}");
        let m = bad(decode(
            json!({"dataframe_split": {"columns": ["a"], "data": 1}}),
        ));
        assert!(
            m.contains("'dataframe_split.data' must be a list of rows"),
            "{m}"
        );
        let m = bad(decode(
            json!({"dataframe_split": {"columns": ["a"], "data": [[1], 2]}}),
        ));
        assert_eq!(m, "'dataframe_split.data[1]' must be a list of values");
    }

    #[test]
    fn split_row_width_must_match_columns() {
        let m = bad(decode(json!({"dataframe_split": {
            "columns": ["a", "b"],
            "data": [[1, 2], [3]]
        }})));
        assert_eq!(
            m,
            "'dataframe_split.data[1]' has 1 values but there are 2 columns"
        );
    }

    #[test]
    fn split_cell_errors_name_the_column() {
        let m = bad(decode(json!({"dataframe_split": {
            "columns": ["a", "b"],
            "data": [[1, 2], [3, null]]
        }})));
        assert!(m.starts_with("column 'b' row 1 is null"), "{m}");
        let m = bad(decode(json!({"dataframe_split": {
            "columns": ["a"],
            "data": [[1], ["x"]]
        }})));
        assert!(m.starts_with("column 'a' row 1 is a string"), "{m}");
    }

    #[test]
    fn split_without_rows_fails_validation() {
        let f = decode(json!({"dataframe_split": {"columns": ["a"], "data": []}}))
            .unwrap()
            .frame;
        assert_eq!(f.columns.len(), 1);
        assert!(f.validate(10).is_err());
    }

    #[test]
    fn split_duplicate_columns_fail_validation() {
        let f = decode(json!({"dataframe_split": {"columns": ["a", "a"], "data": [[1, 2]]}}))
            .unwrap()
            .frame;
        let m = match f.validate(10) {
            Err(RequestError::BadRequest(m)) => m,
            other => panic!("{other:?}"),
        };
        assert!(m.contains("'a' is given twice"), "{m}");
    }

    // ---- dataframe_records ----

    #[test]
    fn records_decode_by_key() {
        let f = frame(json!({"dataframe_records": [
            {"x": 1, "y": "a"},
            {"y": "b", "x": 2.5}
        ]}));
        assert_eq!(f.columns.len(), 2);
        assert_eq!(col(&f, "x").data, ColumnData::F64(vec![1.0, 2.5]));
        assert_eq!(
            col(&f, "y").data,
            ColumnData::Str(vec!["a".into(), "b".into()])
        );
    }

    #[test]
    fn records_with_different_keys_name_missing_and_extra() {
        let m = bad(decode(json!({"dataframe_records": [
            {"x": 1, "y": 2},
            {"x": 1, "z": 2}
        ]})));
        assert!(
            m.starts_with("'dataframe_records[1]' has different columns"),
            "{m}"
        );
        assert!(m.contains(r#"missing: ["y"]"#), "{m}");
        assert!(m.contains(r#"extra: ["z"]"#), "{m}");
        let m = bad(decode(
            json!({"dataframe_records": [{"x": 1}, {"x": 1, "y": 2}]}),
        ));
        assert!(m.contains(r#"missing: [], extra: ["y"]"#), "{m}");
    }

    #[test]
    fn records_structure_errors() {
        let m = bad(decode(json!({"dataframe_records": {"x": [1]}})));
        assert_eq!(m, "'dataframe_records' must be a list of records");
        let m = bad(decode(json!({"dataframe_records": [{"x": 1}, [1]]})));
        assert_eq!(m, "'dataframe_records[1]' must be an object");
        let m = bad(decode(
            json!({"dataframe_records": [{"x": 1}, {"x": null}]}),
        ));
        assert!(m.starts_with("column 'x' row 1 is null"), "{m}");
    }

    #[test]
    fn empty_records_give_an_invalid_frame() {
        let f = decode(json!({"dataframe_records": []})).unwrap().frame;
        assert!(f.columns.is_empty());
        assert!(f.validate(10).is_err());
        let f = decode(json!({"dataframe_records": [{}, {}]}))
            .unwrap()
            .frame;
        assert!(f.validate(10).is_err());
    }

    // ---- instances / inputs ----

    #[test]
    fn instances_as_records() {
        let f = frame(json!({"instances": [{"a": 1, "b": true}, {"a": 2, "b": false}]}));
        assert_eq!(col(&f, "a").data, ColumnData::I64(vec![1, 2]));
        assert_eq!(col(&f, "b").data, ColumnData::Bool(vec![true, false]));
        let m = bad(decode(json!({"instances": [{"a": 1}, 2]})));
        assert_eq!(m, "'instances[1]' must be an object");
    }

    #[test]
    fn inputs_as_records_use_the_field_name_in_errors() {
        let m = bad(decode(json!({"inputs": [{"a": 1}, {"b": 1}]})));
        assert!(m.starts_with("'inputs[1]' has different columns"), "{m}");
    }

    #[test]
    fn unnamed_tensor_of_rows() {
        let f = frame(json!({"inputs": [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]}));
        assert_eq!(f.columns.len(), 1);
        let c = &f.columns[0];
        assert_eq!(c.name, UNNAMED_TENSOR);
        assert_eq!(c.shape, vec![2, 3]);
        assert_eq!(c.data, ColumnData::F64(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]));

        let f = frame(json!({"instances": [1, 2, 3]}));
        assert_eq!(f.columns[0].shape, vec![3]);
        assert_eq!(f.columns[0].data, ColumnData::I64(vec![1, 2, 3]));
    }

    #[test]
    fn unnamed_tensor_must_be_rectangular() {
        let m = bad(decode(json!({"inputs": [[1, 2], [3]]})));
        assert!(
            m.contains("row 1 has shape [1] but earlier rows have [2]"),
            "{m}"
        );
        let m = bad(decode(json!({"inputs": [1, {"a": 1}]})));
        assert!(m.contains("holds an object"), "{m}");
    }

    #[test]
    fn inputs_as_columnar_dict() {
        let f = frame(json!({"inputs": {"a": [1, 2], "img": [[1, 2], [3, 4]]}}));
        assert_eq!(col(&f, "a").shape, vec![2]);
        assert_eq!(col(&f, "a").data, ColumnData::I64(vec![1, 2]));
        assert_eq!(col(&f, "img").shape, vec![2, 2]);
        assert_eq!(col(&f, "img").data, ColumnData::I64(vec![1, 2, 3, 4]));
    }

    #[test]
    fn columnar_dict_errors() {
        let m = bad(decode(json!({"inputs": {"a": 5}})));
        assert_eq!(m, "'inputs.a' must be a list with one entry per row");
        let m = bad(decode(json!({"instances": {"a": 5}})));
        assert_eq!(m, "'instances.a' must be a list with one entry per row");
        // Unequal row counts decode but fail validation, naming both columns.
        let f = decode(json!({"inputs": {"a": [1, 2], "b": [1]}}))
            .unwrap()
            .frame;
        let m = match f.validate(10) {
            Err(RequestError::BadRequest(m)) => m,
            other => panic!("{other:?}"),
        };
        assert!(m.contains("'b' has 1 rows but column 'a' has 2"), "{m}");
    }

    #[test]
    fn tensor_input_of_wrong_kind() {
        for v in [json!(1), json!("x"), json!(null), json!(true)] {
            let m = bad(decode(json!({ "inputs": v })));
            assert!(
                m.starts_with("'inputs' must be a list of rows or records"),
                "{m}"
            );
        }
    }

    // ---- envelope ----

    #[test]
    fn params_and_client_request_id() {
        let r = decode(json!({
            "dataframe_split": {"columns": ["a"], "data": [[1]]},
            "params": {"temperature": 0.5},
            "client_request_id": "req-1"
        }))
        .unwrap();
        assert_eq!(r.client_request_id.as_deref(), Some("req-1"));
        let params = r.params.unwrap();
        assert_eq!(params.get("temperature"), Some(&json!(0.5)));

        let r = decode(json!({
            "instances": [1],
            "params": null,
            "client_request_id": null
        }))
        .unwrap();
        assert!(r.params.is_none());
        assert!(r.client_request_id.is_none());
    }

    #[test]
    fn params_and_client_request_id_types() {
        let m = bad(decode(json!({"instances": [1], "params": [1]})));
        assert_eq!(m, "field 'params' must be a JSON object");
        let m = bad(decode(json!({"instances": [1], "client_request_id": 5})));
        assert_eq!(m, "field 'client_request_id' must be a string");
    }

    #[test]
    fn exactly_one_data_field() {
        let m = bad(decode(json!({"params": {}})));
        assert!(m.starts_with("the body has no input data"), "{m}");
        let m = bad(decode(json!({"instances": [1], "inputs": [1]})));
        assert_eq!(
            m,
            "the body has 2 input fields (instances, inputs): give exactly one"
        );
    }

    #[test]
    fn unknown_fields_are_ignored_and_named_when_data_is_missing() {
        let r = decode(json!({"instances": [1], "extra": 1})).unwrap();
        assert_eq!(r.frame.rows(), 1);
        let m = bad(decode(json!({"dataframe_splitt": {}})));
        assert!(m.ends_with("(fields found: dataframe_splitt)"), "{m}");
    }

    #[test]
    fn body_must_be_an_object() {
        for v in [json!([1]), json!(1), json!("x"), json!(null)] {
            let m = bad(decode(v));
            assert!(m.starts_with("the body must be a JSON object"), "{m}");
        }
    }

    #[test]
    fn malformed_json_is_malformed() {
        for body in [&b""[..], b"{", b"not json", b"\xff\xfe"] {
            match decode_json(body) {
                Err(RequestError::Malformed(m)) => {
                    assert!(m.starts_with("the body is not valid JSON"), "{m}")
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn nan_gets_a_hint() {
        let body = br#"{"instances": [NaN, Infinity]}"#;
        match decode_json(body) {
            Err(RequestError::Malformed(m)) => {
                assert!(
                    m.contains("NaN and Infinity are not valid JSON numbers"),
                    "{m}"
                )
            }
            other => panic!("{other:?}"),
        }
        match decode_json(b"{") {
            Err(RequestError::Malformed(m)) => assert!(!m.contains("NaN"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    // ---- CSV ----

    fn csv(body: &str) -> RequestResult<ScoringRequest> {
        decode_csv(body.as_bytes())
    }

    #[test]
    fn csv_keeps_text_for_the_binding() {
        let r = csv("a,b\n1,x\n2.5,y\n").unwrap();
        assert!(r.client_request_id.is_none() && r.params.is_none());
        let f = r.frame;
        f.validate(10).unwrap();
        let a = col(&f, "a");
        assert!(a.from_text);
        assert_eq!(a.shape, vec![2]);
        assert_eq!(a.data, ColumnData::Str(vec!["1".into(), "2.5".into()]));
        assert_eq!(
            col(&f, "b").data,
            ColumnData::Str(vec!["x".into(), "y".into()])
        );
    }

    #[test]
    fn csv_quoting_crlf_and_no_trailing_newline() {
        let f = csv("name,v\r\n\"a,b\",1\r\n\"say \"\"hi\"\"\",2")
            .unwrap()
            .frame;
        assert_eq!(
            col(&f, "name").data,
            ColumnData::Str(vec!["a,b".into(), "say \"hi\"".into()])
        );
        assert_eq!(
            col(&f, "v").data,
            ColumnData::Str(vec!["1".into(), "2".into()])
        );
    }

    #[test]
    fn csv_empty_cell_names_column_and_row() {
        let m = bad(csv("a,b\n1,2\n3,\n"));
        assert_eq!(
            m,
            "column 'b' row 1 is empty: every model input needs a value"
        );
    }

    #[test]
    fn csv_unequal_row_length() {
        let m = bad(csv("a,b\n1,2\n3\n"));
        assert_eq!(m, "CSV row 1 has 1 values but the header has 2 columns");
        let m = bad(csv("a,b\n1,2,3\n"));
        assert!(m.contains("CSV row 0 has 3 values"), "{m}");
    }

    #[test]
    fn csv_without_header() {
        let m = bad(csv(""));
        assert!(m.contains("no header row"), "{m}");
        let m = bad(csv(",\n1,2\n"));
        assert!(m.contains("no header row"), "{m}");
    }

    #[test]
    fn csv_header_only_has_no_rows() {
        let f = csv("a,b\n").unwrap().frame;
        assert_eq!(f.columns.len(), 2);
        assert!(f.validate(10).is_err());
    }

    #[test]
    fn csv_invalid_utf8_is_malformed() {
        assert!(matches!(
            decode_csv(b"a\n\xff\xfe\n"),
            Err(RequestError::Malformed(_))
        ));
        assert!(matches!(
            decode_csv(b"\xff\n1\n"),
            Err(RequestError::Malformed(_))
        ));
    }

    // ---- properties ----

    /// Bodies near the protocol's shape, so decoding gets past the envelope.
    fn arb_body() -> impl Strategy<Value = Value> {
        let key = prop::sample::select(&DATA_KEYS[..]);
        prop_oneof![
            arb_json(),
            (key, arb_json()).prop_map(|(k, v)| json!({ k: v })),
            (arb_json(), arb_json()).prop_map(|(c, d)| json!({
                "dataframe_split": {"columns": c, "data": d}
            })),
            (prop::collection::vec("[a-c]", 0..4), arb_json(), arb_json()).prop_map(
                |(c, d, p)| json!({
                    "dataframe_split": {"columns": c, "data": d},
                    "params": p
                })
            ),
        ]
    }

    fn check(r: RequestResult<ScoringRequest>) {
        if let Ok(r) = r {
            let _ = r.frame.validate(10_000);
            let _ = r.frame.rows();
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn json_arbitrary_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..256)) {
            check(decode_json(&body));
        }

        #[test]
        fn json_arbitrary_values_never_panic(v in arb_body()) {
            check(decode_json(v.to_string().as_bytes()));
        }

        #[test]
        fn csv_arbitrary_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..256)) {
            check(decode_csv(&body));
        }

        #[test]
        fn csv_arbitrary_text_never_panics(body in "[a-c0-9,\"\r\n ]{0,64}") {
            check(decode_csv(body.as_bytes()));
        }

        #[test]
        fn split_of_numbers_round_trips(
            (cols, rows) in (1usize..5, 1usize..8).prop_flat_map(|(k, n)| (
                prop::collection::btree_set("[a-z]{1,6}", k..=k),
                prop::collection::vec(
                    prop::collection::vec(
                        prop_oneof![
                            any::<i64>().prop_map(|i| json!(i)),
                            any::<f64>()
                                .prop_filter("finite", |f| f.is_finite())
                                .prop_map(|f| json!(f)),
                        ],
                        k..=k,
                    ),
                    n..=n,
                ),
            ))
        ) {
            let cols: Vec<String> = cols.into_iter().collect();
            let body = json!({"dataframe_split": {"columns": cols, "data": rows}});
            let f = decode_json(body.to_string().as_bytes()).unwrap().frame;
            f.validate(10_000).unwrap();
            prop_assert_eq!(f.columns.len(), cols.len());
            for (k, (c, name)) in f.columns.iter().zip(&cols).enumerate() {
                prop_assert_eq!(&c.name, name);
                prop_assert_eq!(&c.shape, &vec![rows.len()]);
                let cells: Vec<&Value> = rows.iter().map(|r| &r[k]).collect();
                let expected = if cells.iter().all(|v| v.is_i64()) {
                    ColumnData::I64(cells.iter().map(|v| v.as_i64().unwrap()).collect())
                } else {
                    ColumnData::F64(cells.iter().map(|v| v.as_f64().unwrap()).collect())
                };
                prop_assert_eq!(&c.data, &expected);
            }
        }
    }
}
