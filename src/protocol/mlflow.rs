//! The MLflow scoring protocol (as `mlflow models serve` and Databricks Model Serving speak it).
//!
//! JSON bodies carry exactly one of `dataframe_split`, `dataframe_records`, `instances` or
//! `inputs`, plus optional `params` and `client_request_id`; `text/csv` bodies are a header row
//! and data rows. Responses are `{"predictions": ...}`.

use serde_json::{Map, Value};

use super::columns::ColumnBuilder;
use super::frame::{Column, ColumnData, Frame};
use crate::error::{RequestError, RequestResult};

const DATA_KEYS: [&str; 4] = [
    "dataframe_split",
    "dataframe_records",
    "instances",
    "inputs",
];
const OTHER_KEYS: [&str; 2] = ["params", "client_request_id"];

/// A decoded scoring request.
#[derive(Debug, Default)]
pub struct ScoringRequest {
    pub frame: Frame,
    pub client_request_id: Option<String>,
    pub params: Option<Map<String, Value>>,
}

/// Decodes a JSON scoring body.
pub fn decode_json(body: &[u8]) -> RequestResult<ScoringRequest> {
    let value: Value = serde_json::from_slice(body).map_err(|e| malformed_json(body, &e))?;
    let Value::Object(mut obj) = value else {
        return Err(RequestError::bad(format!(
            "the body must be a JSON object with exactly one of the fields {}",
            DATA_KEYS.join(", ")
        )));
    };
    if let Some(unknown) = obj
        .keys()
        .find(|k| !DATA_KEYS.contains(&k.as_str()) && !OTHER_KEYS.contains(&k.as_str()))
    {
        return Err(RequestError::bad(format!(
            "unknown field '{unknown}': the body takes exactly one of {} and optionally {}",
            DATA_KEYS.join(", "),
            OTHER_KEYS.join(", ")
        )));
    }
    let present: Vec<&str> = DATA_KEYS
        .iter()
        .copied()
        .filter(|k| obj.contains_key(*k))
        .collect();
    let key = match present.as_slice() {
        [one] => *one,
        [] => {
            return Err(RequestError::bad(format!(
                "the body has no input data: give exactly one of the fields {}",
                DATA_KEYS.join(", ")
            )))
        }
        many => {
            return Err(RequestError::bad(format!(
                "the body has {} input fields ({}): give exactly one",
                many.len(),
                many.join(", ")
            )))
        }
    };
    let client_request_id = match obj.remove("client_request_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(_) => {
            return Err(RequestError::bad(
                "field 'client_request_id' must be a string",
            ))
        }
    };
    let params = match obj.remove("params") {
        None | Some(Value::Null) => None,
        Some(Value::Object(m)) => Some(m),
        Some(_) => return Err(RequestError::bad("field 'params' must be a JSON object")),
    };
    let data = obj.remove(key).unwrap_or(Value::Null);
    let frame = match key {
        "dataframe_split" => decode_split(data)?,
        "dataframe_records" => decode_records(&data, "dataframe_records")?,
        _ => decode_tensor_input(data, key)?,
    };
    Ok(ScoringRequest {
        frame,
        client_request_id,
        params,
    })
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

/// `{"columns": [...], "data": [[...], ...]}` (pandas `split` orient; `index` is ignored).
fn decode_split(data: Value) -> RequestResult<Frame> {
    let Value::Object(mut split) = data else {
        return Err(RequestError::bad(
            "'dataframe_split' must be an object with 'columns' and 'data'",
        ));
    };
    let columns = match split.remove("columns") {
        Some(Value::Array(cols)) => cols
            .into_iter()
            .enumerate()
            .map(|(i, c)| match c {
                Value::String(s) => Ok(s),
                _ => Err(RequestError::bad(format!(
                    "'dataframe_split.columns[{i}]' must be a string"
                ))),
            })
            .collect::<RequestResult<Vec<String>>>()?,
        Some(_) => {
            return Err(RequestError::bad(
                "'dataframe_split.columns' must be a list of column names",
            ))
        }
        None => return Err(RequestError::bad("'dataframe_split' has no 'columns' list")),
    };
    let rows = match split.remove("data") {
        Some(Value::Array(rows)) => rows,
        Some(_) => {
            return Err(RequestError::bad(
                "'dataframe_split.data' must be a list of rows",
            ))
        }
        None => return Err(RequestError::bad("'dataframe_split' has no 'data' list")),
    };
    let mut builders: Vec<ColumnBuilder> = columns.into_iter().map(ColumnBuilder::new).collect();
    for (r, row) in rows.iter().enumerate() {
        let Value::Array(cells) = row else {
            return Err(RequestError::bad(format!(
                "'dataframe_split.data[{r}]' must be a list of values"
            )));
        };
        if cells.len() != builders.len() {
            return Err(RequestError::bad(format!(
                "'dataframe_split.data[{r}]' has {} values but there are {} columns",
                cells.len(),
                builders.len()
            )));
        }
        for (b, cell) in builders.iter_mut().zip(cells) {
            b.push_row(cell)?;
        }
    }
    Ok(Frame {
        columns: builders.into_iter().map(ColumnBuilder::finish).collect(),
    })
}

/// `[{"col": value, ...}, ...]`: every record must have the same keys.
fn decode_records(data: &Value, field: &str) -> RequestResult<Frame> {
    let Value::Array(records) = data else {
        return Err(RequestError::bad(format!(
            "'{field}' must be a list of records"
        )));
    };
    let mut builders: Vec<ColumnBuilder> = Vec::new();
    for (r, rec) in records.iter().enumerate() {
        let Value::Object(map) = rec else {
            return Err(RequestError::bad(format!(
                "'{field}[{r}]' must be an object"
            )));
        };
        if r == 0 {
            builders = map.keys().map(ColumnBuilder::new).collect();
        }
        if map.len() != builders.len() || builders.iter().any(|b| !map.contains_key(b.name())) {
            let missing: Vec<&str> = builders
                .iter()
                .map(ColumnBuilder::name)
                .filter(|n| !map.contains_key(*n))
                .collect();
            let extra: Vec<&str> = map
                .keys()
                .map(String::as_str)
                .filter(|k| !builders.iter().any(|b| b.name() == *k))
                .collect();
            return Err(RequestError::bad(format!(
                "'{field}[{r}]' has different columns than the first record (missing: {missing:?}, extra: {extra:?})"
            )));
        }
        for b in builders.iter_mut() {
            let Some(cell) = map.get(b.name()) else {
                return Err(RequestError::bad(format!(
                    "'{field}[{r}]' has no value for column '{}'",
                    b.name()
                )));
            };
            b.push_row(cell)?;
        }
    }
    Ok(Frame {
        columns: builders.into_iter().map(ColumnBuilder::finish).collect(),
    })
}

/// `instances` / `inputs` (TF-serving style): a list of records, a dict of named columns, or one
/// unnamed tensor (a list of rows) for a model with a single input.
fn decode_tensor_input(data: Value, field: &str) -> RequestResult<Frame> {
    match data {
        Value::Array(items) if items.first().is_some_and(Value::is_object) => {
            decode_records(&Value::Array(items), field)
        }
        Value::Array(items) => {
            let mut b = ColumnBuilder::new(UNNAMED_TENSOR);
            for item in &items {
                b.push_row(item)?;
            }
            Ok(Frame {
                columns: vec![b.finish()],
            })
        }
        Value::Object(map) => {
            let mut columns = Vec::with_capacity(map.len());
            for (name, value) in map {
                let mut b = ColumnBuilder::new(name.as_str());
                match &value {
                    Value::Array(items) => {
                        for item in items {
                            b.push_row(item)?;
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

/// Name given to a tensor sent without a name; it binds to a model's only input.
pub const UNNAMED_TENSOR: &str = "";

/// Decodes a `text/csv` body: a header row of column names, then one line per row. Values stay
/// text until the model's schema says what they are.
pub fn decode_csv(body: &[u8]) -> RequestResult<ScoringRequest> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .from_reader(body);
    let headers: Vec<String> = reader
        .headers()
        .map_err(|e| RequestError::Malformed(format!("the CSV header row cannot be read: {e}")))?
        .iter()
        .map(str::to_owned)
        .collect();
    if headers.iter().all(String::is_empty) {
        return Err(RequestError::bad(
            "the CSV body has no header row with column names",
        ));
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
        for (c, cell) in record.iter().enumerate() {
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
