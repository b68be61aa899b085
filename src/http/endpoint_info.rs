//! What Databricks lets a caller read about one endpoint beyond its config, as
//! `databricks-sdk` asks for it: its metrics (`export_metrics`), a query schema in OpenAPI
//! (`get_open_api`), a served entity's logs and build logs, and the host metadata the SDK
//! probes before its first call.

use actix_web::http::header::ContentType;
use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use serde_json::{json, Map, Value};

use super::admin::{endpoint, reply};
use super::error::ApiError;
use super::AppState;
use crate::endpoint::journal::Journal;
use crate::endpoint::{Endpoint, EntitySlot, ServedEntity};
use crate::error::RequestError;
use crate::registry::mlmodel::ColumnType;

/// `GET .../metrics`: this endpoint's series in the Prometheus text format.
pub async fn export_metrics(
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let ep = endpoint(&state, &path)?;
    let gateway = state.gateway.clone();
    let text = web::block(move || gateway.render_metrics_of(Some(&ep.name)))
        .await
        .map_err(|e| ApiError::blocked("the metrics were not rendered", e))?;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(text))
}

/// `GET .../openapi`: how to query this endpoint, with its model's request columns.
pub async fn query_openapi(
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let ep = endpoint(&state, &path)?;
    Ok(HttpResponse::Ok()
        .content_type(ContentType::json())
        .body(query_openapi_json(&ep).to_string()))
}

#[derive(serde::Deserialize)]
pub struct ServedPath {
    name: String,
    served: String,
}

/// `GET .../served-models/{served}/logs`: the served entity's recent load and swap lines.
pub async fn served_logs(
    path: web::Path<ServedPath>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    journal_reply(&state, &path, Journal::logs)
}

/// `GET .../served-models/{served}/build-logs`: the lines of its latest load.
pub async fn build_logs(
    path: web::Path<ServedPath>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    journal_reply(&state, &path, Journal::build_logs)
}

/// `{"logs": ...}` of the served entity `path` names, as `lines` reads its journal.
fn journal_reply(
    state: &AppState,
    path: &ServedPath,
    lines: fn(&Journal) -> String,
) -> Result<HttpResponse, ApiError> {
    let slot = served_slot(state, path)?;
    Ok(reply(
        StatusCode::OK,
        json!({ "logs": lines(&slot.journal) }),
    ))
}

fn served_slot(
    state: &AppState,
    path: &ServedPath,
) -> Result<std::sync::Arc<EntitySlot>, ApiError> {
    let ep = endpoint(state, &path.name)?;
    let g = ep.generation();
    let slot = g.slot(&path.served).map(|(_, s)| s.clone());
    slot.ok_or_else(|| {
        let names: Vec<&str> = g.slots.iter().map(|s| &*s.name).collect();
        RequestError::NotFound(format!(
            "endpoint '{}' has no served entity '{}' (served entities: {})",
            ep.name,
            path.served,
            names.join(", ")
        ))
        .into()
    })
}

/// `GET /.well-known/databricks-config`: `databricks-sdk` asks before its first call and warns
/// when it gets no answer. There is no OIDC here (tokens are bearer tokens), so none is named.
pub async fn host_metadata() -> HttpResponse {
    reply(StatusCode::OK, json!({ "oidc_endpoint": "" }))
}

/// An OpenAPI 3.1 document of the endpoint's scoring paths (the endpoint's own and one per
/// served entity), with the request columns of the version its first served entity serves.
pub fn query_openapi_json(ep: &Endpoint) -> Value {
    let g = ep.generation();
    let served = g.slots.iter().find_map(|s| s.served());
    let (row, required) = match &served {
        Some(e) => request_row(e),
        None => (Map::new(), Vec::new()),
    };
    let mut row_schema = json!({"type": "object", "properties": row});
    if !required.is_empty() {
        row_schema["required"] = json!(required);
    }
    let columns: Vec<&String> = row_schema["properties"]
        .as_object()
        .map(|p| p.keys().collect())
        .unwrap_or_default();
    let split = json!({
        "type": "object",
        "required": ["dataframe_split"],
        "properties": {"dataframe_split": {
            "type": "object",
            "required": ["data"],
            "properties": {
                "columns": {"type": "array", "items": {"type": "string", "enum": columns}},
                "index": {"type": "array"},
                "data": {"type": "array", "items": {"type": "array"}},
            },
        }},
    });
    let rows = |field: &str| {
        json!({"type": "object", "required": [field],
            "properties": {field: {"type": "array", "items": {"$ref": "#/components/schemas/Row"}}}})
    };
    let operation = |summary: String| {
        json!({"post": {
            "summary": summary,
            "requestBody": {"required": true, "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/Request"}},
                "text/csv": {"schema": {"type": "string"}},
            }},
            "responses": {
                "200": {"description": "One prediction per row", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Predictions"}}}},
                "400": {"description": "The body does not fit the model (error_code, message)"},
                "429": {"description": "A limit was reached (error_code, message, limit)"},
            },
        }})
    };
    let mut paths = Map::new();
    paths.insert(
        format!("/serving-endpoints/{}/invocations", ep.name),
        operation(format!(
            "Score rows on endpoint {} (routed by its traffic config)",
            ep.name
        )),
    );
    for slot in &g.slots {
        paths.insert(
            format!(
                "/serving-endpoints/{}/served-models/{}/invocations",
                ep.name, slot.name
            ),
            operation(format!("Score rows on served entity {} alone", slot.name)),
        );
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": ep.name,
            "version": g.config_version.to_string(),
            "description": format!(
                "Querying serving endpoint {} (MLflow scoring protocol). Config version {}.",
                ep.name, g.config_version
            ),
        },
        "paths": paths,
        "components": {
            "schemas": {
                "Row": row_schema,
                "Request": {"oneOf": [split, rows("dataframe_records"), rows("instances"), rows("inputs")]},
                "Predictions": {"type": "object", "required": ["predictions"],
                    "properties": {"predictions": {"type": "array"}}},
            },
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    })
}

/// The columns a request carries and their JSON types: the feature spec's request columns
/// when the version looks features up, else its signature's inputs, else its input binding's
/// columns (types unknown).
fn request_row(e: &ServedEntity) -> (Map<String, Value>, Vec<String>) {
    let mut row = Map::new();
    let mut required = Vec::new();
    if let Some(plan) = &e.features {
        for (name, ty, format) in plan.request_schema() {
            let mut schema = json!({ "type": ty });
            if let Some(f) = format {
                schema["format"] = json!(f);
            }
            row.insert(name.to_owned(), schema);
            required.push(name.to_owned());
        }
        return (row, required);
    }
    if let Some(sig) = e.signature.as_ref().filter(|s| !s.inputs.is_empty()) {
        for entry in &sig.inputs {
            let Some(name) = &entry.name else { continue };
            row.insert(name.clone(), column_schema(entry.kind));
            if entry.required {
                required.push(name.clone());
            }
        }
        return (row, required);
    }
    for name in e.meta.binding.expected_columns() {
        row.insert(name.clone(), json!({}));
        required.push(name.clone());
    }
    (row, required)
}

fn column_schema(kind: ColumnType) -> Value {
    match kind {
        ColumnType::Boolean => json!({"type": "boolean"}),
        ColumnType::Integer | ColumnType::Long => json!({"type": "integer"}),
        ColumnType::Float | ColumnType::Double => json!({"type": "number"}),
        ColumnType::String => json!({"type": "string"}),
        ColumnType::Binary => json!({"type": "string", "contentEncoding": "base64"}),
        ColumnType::Datetime => json!({"type": "string", "format": "date-time"}),
        ColumnType::Tensor => json!({"type": "array"}),
    }
}
