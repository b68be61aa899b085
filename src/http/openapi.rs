//! The OpenAPI 3.1 document of the HTTP API (`modelgate openapi`), made from one table of the
//! routes with their scopes, bodies and answers. `docs/openapi.json` is this document;
//! `tests/openapi.rs` fails when the two differ and when a documented route is not served.

use serde_json::{json, Map, Value};

/// Who may call a route (see [`super::auth`]).
#[derive(Clone, Copy)]
enum Access {
    Open,
    Query,
    Manage,
}

/// A route's documentation: method, path, summary, access, request body and answer schemas
/// (names in `components.schemas`; none for no body).
struct Route {
    method: &'static str,
    path: &'static str,
    summary: &'static str,
    access: Access,
    body: Option<&'static str>,
    answer: &'static str,
}

const fn route(
    method: &'static str,
    path: &'static str,
    summary: &'static str,
    access: Access,
    body: Option<&'static str>,
    answer: &'static str,
) -> Route {
    Route {
        method,
        path,
        summary,
        access,
        body,
        answer,
    }
}

use Access::{Manage, Open, Query};

/// Every route the app serves, in the order of [`super::configure`].
const ROUTES: &[Route] = &[
    route("post", "/serving-endpoints/{endpoint}/invocations", "Score rows (MLflow scoring protocol: dataframe_split, dataframe_records, instances, inputs, or CSV)", Query, Some("ScoringRequest"), "Predictions"),
    route("post", "/serving-endpoints/{endpoint}/served-models/{served}/invocations", "Score rows on one served entity, without routing", Query, Some("ScoringRequest"), "Predictions"),
    route("post", "/invocations", "Score rows on the only endpoint (MLflow's scoring server path)", Query, Some("ScoringRequest"), "Predictions"),
    route("get", "/ping", "Liveness, as MLflow's scoring server answers it", Open, None, "Empty"),
    route("get", "/health", "Liveness, as MLflow's scoring server answers it", Open, None, "Empty"),
    route("get", "/version", "The gateway's version", Open, None, "Text"),
    route("get", "/livez", "The process is up", Open, None, "Text"),
    route("get", "/readyz", "Every config-file endpoint serves a loaded, validated model", Open, None, "Object"),
    route("get", "/metrics", "Prometheus text exposition", Open, None, "Text"),
    route("get", "/api/2.0/serving-endpoints", "List endpoints (Databricks serving REST)", Manage, None, "EndpointList"),
    route("post", "/api/2.0/serving-endpoints", "Create an endpoint", Manage, Some("CreateEndpoint"), "Endpoint"),
    route("get", "/api/2.0/serving-endpoints/{name}", "An endpoint, its config, state and pending config", Manage, None, "Endpoint"),
    route("delete", "/api/2.0/serving-endpoints/{name}", "Delete an endpoint", Manage, None, "Object"),
    route("put", "/api/2.0/serving-endpoints/{name}/config", "Update an endpoint's config (answers at once; the update runs in the background)", Manage, Some("EndpointConfig"), "Endpoint"),
    route("post", "/api/2.0/serving-endpoints/{name}/reload", "Follow the registry now (aliases, versions)", Manage, None, "Object"),
    route("post", "/api/2.0/serving-endpoints/{name}/rollback", "Serve the version served before the last swap", Manage, None, "Object"),
    route("post", "/api/2.0/serving-endpoints/{name}/labels", "Ground truth for logged or waiting predictions", Manage, Some("Labels"), "LabelsAccepted"),
    route("get", "/api/2.0/serving-endpoints/{name}/monitoring", "Drift per served entity and feature, flags and quality", Manage, None, "Object"),
    route("post", "/api/2.0/feature-tables/{table}/rows", "Push rows into an embedded online table", Manage, Some("Object"), "Object"),
    route("post", "/api/2.0/webhooks/mlflow", "MLflow model-registry webhook (HMAC-signed)", Open, Some("Object"), "Object"),
    route("get", "/v2", "Open Inference Protocol V2: server metadata", Query, None, "Object"),
    route("get", "/v2/health/live", "V2 liveness", Open, None, "Empty"),
    route("get", "/v2/health/ready", "V2 readiness", Open, None, "Empty"),
    route("get", "/v2/models/{model}", "V2 model metadata", Query, None, "Object"),
    route("get", "/v2/models/{model}/ready", "V2 model readiness", Query, None, "Empty"),
    route("post", "/v2/models/{model}/infer", "V2 inference", Query, Some("V2InferRequest"), "V2InferResponse"),
    route("get", "/v2/models/{model}/versions/{version}", "V2 model metadata of a version", Query, None, "Object"),
    route("get", "/v2/models/{model}/versions/{version}/ready", "V2 readiness of a version", Query, None, "Empty"),
    route("post", "/v2/models/{model}/versions/{version}/infer", "V2 inference on a version", Query, Some("V2InferRequest"), "V2InferResponse"),
];

/// Every documented (method, path), for tests.
pub fn routes() -> Vec<(&'static str, &'static str)> {
    ROUTES.iter().map(|r| (r.method, r.path)).collect()
}

fn reference(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn schemas() -> Value {
    json!({
        "Object": {"type": "object"},
        "Empty": {"description": "No body, or an empty one."},
        "Text": {"type": "string"},
        "Error": {
            "type": "object",
            "required": ["error_code", "message"],
            "properties": {
                "error_code": {"type": "string", "enum": crate::error::RequestError::CODES},
                "message": {"type": "string", "description": "Names the field, column, row or limit."}
            }
        },
        "V2Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
        "ScoringRequest": {
            "description": "Exactly one of the data fields; `params` is accepted. CSV (text/csv) is the same as dataframe_split with a header row.",
            "type": "object",
            "properties": {
                "dataframe_split": {"type": "object", "properties": {
                    "columns": {"type": "array", "items": {"type": "string"}},
                    "data": {"type": "array", "items": {"type": "array"}},
                    "index": {"type": "array"}}},
                "dataframe_records": {"type": "array", "items": {"type": "object"}},
                "instances": {"type": "array"},
                "inputs": {"oneOf": [{"type": "object"}, {"type": "array"}]},
                "params": {"type": "object"},
                "client_request_id": {"type": "string"}
            }
        },
        "Predictions": {
            "type": "object",
            "required": ["predictions"],
            "properties": {"predictions": {"type": "array"}, "features": {"type": "array"}}
        },
        "V2InferRequest": {
            "type": "object",
            "required": ["inputs"],
            "properties": {
                "id": {"type": "string"},
                "parameters": {"type": "object"},
                "inputs": {"type": "array", "items": {"$ref": "#/components/schemas/V2Tensor"}},
                "outputs": {"type": "array", "items": {"type": "object", "properties": {"name": {"type": "string"}}}}
            }
        },
        "V2Tensor": {
            "type": "object",
            "required": ["name", "shape", "datatype", "data"],
            "properties": {
                "name": {"type": "string"},
                "shape": {"type": "array", "items": {"type": "integer"}},
                "datatype": {"type": "string", "enum": ["BOOL", "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64", "FP16", "FP32", "FP64", "BYTES"]},
                "data": {"type": "array"}
            }
        },
        "V2InferResponse": {
            "type": "object",
            "required": ["model_name", "outputs"],
            "properties": {
                "model_name": {"type": "string"},
                "model_version": {"type": "string"},
                "id": {"type": "string"},
                "outputs": {"type": "array", "items": {"$ref": "#/components/schemas/V2Tensor"}}
            }
        },
        "EndpointConfig": {
            "type": "object",
            "required": ["served_entities"],
            "properties": {
                "served_entities": {"type": "array", "items": {"type": "object", "required": ["entity_name", "entity_version"], "properties": {
                    "name": {"type": "string"}, "entity_name": {"type": "string"}, "entity_version": {"type": "string"},
                    "engine": {"type": "string", "enum": ["auto", "ort", "tract"]}}}},
                "traffic_config": {"type": "object", "properties": {"routes": {"type": "array", "items": {"type": "object", "properties": {
                    "served_entity_name": {"type": "string"}, "traffic_percentage": {"type": "integer"},
                    "shadow": {"type": "boolean"}, "shadow_percentage": {"type": "integer"}}}}}},
                "routing": {"type": "object"},
                "auto_capture_config": {"type": "object", "properties": {
                    "enabled": {"type": "boolean"}, "catalog_name": {"type": "string"}, "schema_name": {"type": "string"},
                    "table_name_prefix": {"type": "string"}, "sampling_fraction": {"type": "number"}}}
            }
        },
        "RateLimit": {
            "type": "object",
            "required": ["calls"],
            "properties": {
                "calls": {"type": "integer", "minimum": 1},
                "key": {"type": "string", "enum": ["user", "endpoint"]},
                "renewal_period": {"type": "string", "enum": ["minute"]}
            }
        },
        "CreateEndpoint": {
            "type": "object",
            "required": ["name", "config"],
            "properties": {
                "name": {"type": "string"},
                "config": {"$ref": "#/components/schemas/EndpointConfig"},
                "rate_limits": {"type": "array", "items": {"$ref": "#/components/schemas/RateLimit"}}
            }
        },
        "Endpoint": {"type": "object", "properties": {
            "name": {"type": "string"}, "state": {"type": "object"}, "config": {"type": "object"},
            "pending_config": {"type": "object"}}},
        "EndpointList": {"type": "object", "properties": {"endpoints": {"type": "array", "items": {"$ref": "#/components/schemas/Endpoint"}}}},
        "Labels": {
            "type": "object",
            "required": ["labels"],
            "properties": {"labels": {"type": "array", "maxItems": crate::inference_log::labels::MAX_LABELS, "items": {"type": "object", "required": ["label"], "properties": {
                "request_id": {"type": "string"}, "row_index": {"type": "integer"},
                "keys": {"type": "object"}, "timestamp": {"oneOf": [{"type": "string"}, {"type": "integer"}]},
                "label": {"oneOf": [{"type": "number"}, {"type": "boolean"}, {"type": "string"}]}}}}}
        },
        "LabelsAccepted": {"type": "object", "properties": {"accepted": {"type": "integer"}, "monitoring": {"type": "object"}}}
    })
}

fn operation(r: &Route) -> Value {
    let v2 = r.path.starts_with("/v2");
    let error = if v2 { "V2Error" } else { "Error" };
    let content = |schema: &str| json!({"application/json": {"schema": reference(schema)}});
    let mut responses = Map::new();
    responses.insert(
        "200".into(),
        json!({"description": "OK", "content": content(r.answer)}),
    );
    let mut refusals = vec!["default"];
    if !matches!(r.access, Open) {
        refusals.extend(["401", "403"]);
    }
    if r.body.is_some() {
        // Every body is read within server.max_body_bytes, server.body_read_timeout_ms and
        // the shared server.max_inflight_body_bytes.
        refusals.extend(["408", "413", "503"]);
    }
    if matches!(r.access, Query) && r.method == "post" {
        refusals.extend(["429", "504"]);
    }
    for code in refusals {
        responses.insert(
            code.into(),
            json!({"description": describe(code), "content": content(error)}),
        );
    }
    let mut op = json!({
        "operationId": operation_id(r),
        "summary": r.summary,
        "responses": responses,
    });
    let params: Vec<Value> = r
        .path
        .split('/')
        .filter_map(|p| p.strip_prefix('{').and_then(|p| p.strip_suffix('}')))
        .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
        .collect();
    if !params.is_empty() {
        op["parameters"] = Value::Array(params);
    }
    if let Some(body) = r.body {
        let mut media = content(body);
        if body == "ScoringRequest" {
            media["text/csv"] = json!({"schema": {"type": "string"}});
        }
        op["requestBody"] = json!({"required": true, "content": media});
    }
    op["security"] = match r.access {
        Open => json!([]),
        Query => json!([{"bearer": ["query"]}]),
        Manage => json!([{"bearer": ["manage"]}]),
    };
    op
}

fn describe(code: &str) -> &'static str {
    match code {
        "401" => "No known bearer token (auth.enabled)",
        "403" => "The token lacks the route's scope",
        "408" => "The body did not arrive within server.body_read_timeout_ms",
        "413" => "Over a size bound: server.max_body_bytes, or for scoring limits.max_cells, limits.max_string_bytes, limits.max_id_bytes, limits.max_response_bytes",
        "503" => "Bodies in flight fill server.max_inflight_body_bytes, or the inference queue is full (Retry-After)",
        "429" => "A rate limit, the bound on requests in flight or on requests per connection (Retry-After)",
        "504" => "Past server.request_timeout_ms",
        _ => "An error; the body names the field, column, row or limit",
    }
}

fn operation_id(r: &Route) -> String {
    let mut id = r.method.to_owned();
    for part in r.path.split('/').filter(|p| !p.is_empty()) {
        let part = part.trim_start_matches('{').trim_end_matches('}');
        id.push('_');
        id.extend(
            part.chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }),
        );
    }
    id
}

/// The whole document.
pub fn document() -> Value {
    let mut paths = Map::new();
    for r in ROUTES {
        let entry = paths.entry(r.path.to_owned()).or_insert_with(|| json!({}));
        entry[r.method] = operation(r);
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "modelgate",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "MLflow / Databricks scoring protocol, Databricks serving-endpoint REST and Open Inference Protocol V2. Scopes apply when auth.enabled is on.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas(),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "description": "Scopes: query (scoring), manage (control plane, labels, monitoring, feature pushes)."}}
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reference_resolves_and_ids_are_unique() {
        let doc = document();
        let text = doc.to_string();
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        for part in text.split("#/components/schemas/").skip(1) {
            let name: String = part
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric())
                .collect();
            assert!(schemas.contains_key(&name), "unknown schema {name}");
        }
        let mut ids: Vec<String> = ROUTES.iter().map(operation_id).collect();
        ids.sort();
        let n = ids.len();
        ids.dedup();
        assert_eq!(ids.len(), n, "operation ids must be unique");
    }
}
