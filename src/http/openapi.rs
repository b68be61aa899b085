//! The OpenAPI 3.1 document of the HTTP API (`modelgate openapi`), made from one table of the
//! routes with their scopes, bodies and answers. `docs/openapi.json` is this document;
//! `tests/openapi.rs` fails when the two differ and when a documented route is not served.

use serde_json::{json, Map, Value};

use super::routes::{Route, RouteClass, ROUTES};

/// Who may call a route, as documented: health, metrics and webhooks are open by default
/// (settings can close the first two; webhooks carry their own signature).
#[derive(Clone, Copy)]
enum Access {
    Open,
    Query,
    Manage,
}

fn access(r: &Route) -> Access {
    match r.class {
        RouteClass::Health | RouteClass::Metrics | RouteClass::Webhook => Access::Open,
        RouteClass::Query => Access::Query,
        RouteClass::Manage => Access::Manage,
    }
}

use Access::{Manage, Open, Query};

/// Every documented (method, path), for tests.
pub fn routes() -> Vec<(&'static str, &'static str)> {
    ROUTES.iter().map(|r| (r.method.as_str(), r.path)).collect()
}

fn reference(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn schemas() -> Value {
    let mut all = json!({
        "Object": {"type": "object"},
        "Empty": {"description": "No body, or an empty one."},
        "Text": {"type": "string"},
        "Html": {"type": "string", "description": "An HTML page."},
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
                    "engine": {"type": "string", "enum": ["auto", "ort", "tract"]},
                    "batching": {"type": "object", "description": "Adaptive batching (ours; off when absent): concurrent requests combined into one engine call.", "properties": {
                        "max_rows": {"type": "integer", "minimum": 1, "maximum": 65536, "default": 64},
                        "max_delay_us": {"type": "integer", "minimum": 1, "maximum": 1000000, "default": 1000}}}}}},
                "traffic_config": {"type": "object", "properties": {"routes": {"type": "array", "items": {"type": "object", "properties": {
                    "served_entity_name": {"type": "string"}, "traffic_percentage": {"type": "integer"},
                    "shadow": {"type": "boolean"}, "shadow_percentage": {"type": "integer"}}}}}},
                "routing": {"type": "object"},
                "auto_capture_config": {"type": "object", "properties": {
                    "enabled": {"type": "boolean"}, "catalog_name": {"type": "string"}, "schema_name": {"type": "string"},
                    "table_name_prefix": {"type": "string"}, "sampling_fraction": {"type": "number"},
                    "backpressure": {"type": "string", "enum": ["drop", "sample", "reject"], "default": "drop",
                        "description": "When the inference log falls behind: drop rows and count them, log a smaller share (recorded in sampling_fraction), or refuse requests with 429."}}}
            }
        },
        "RateLimit": {
            "type": "object",
            "required": ["calls"],
            "properties": {
                "calls": {"type": "integer", "minimum": 1},
                "key": {"type": "string", "enum": ["user", "endpoint", "service_principal"]},
                "principal": {"type": "string", "description": "The one caller (token name) the limit is for"},
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
    });
    if let (Some(all), Value::Object(more)) = (all.as_object_mut(), governance_schemas()) {
        all.extend(more);
    }
    all
}

/// The bodies of the calls that change an endpoint without a model load, and of its logs.
fn governance_schemas() -> Value {
    json!({
        "RateLimits": {"type": "object", "properties": {
            "rate_limits": {"type": "array", "items": {"$ref": "#/components/schemas/RateLimit"}}}},
        "Tag": {"type": "object", "required": ["key"], "properties": {
            "key": {"type": "string", "maxLength": crate::settings::governance::MAX_TAG_KEY_BYTES},
            "value": {"type": "string", "maxLength": crate::settings::governance::MAX_TAG_VALUE_BYTES}}},
        "TagsPatch": {"type": "object", "properties": {
            "add_tags": {"type": "array", "items": {"$ref": "#/components/schemas/Tag"}},
            "delete_tags": {"type": "array", "items": {"type": "string"}}}},
        "Tags": {"type": "object", "properties": {
            "tags": {"type": "array", "items": {"$ref": "#/components/schemas/Tag"}}}},
        "AiGateway": {"type": "object", "properties": {
            "inference_table_config": {"type": "object", "properties": {
                "enabled": {"type": "boolean"}, "catalog_name": {"type": "string"},
                "schema_name": {"type": "string"}, "table_name_prefix": {"type": "string"}}},
            "rate_limits": {"type": "array", "items": {"$ref": "#/components/schemas/RateLimit"}},
            "usage_tracking_config": {"type": "object", "properties": {"enabled": {"type": "boolean"}}}}},
        "AccessControlList": {"type": "object", "properties": {
            "access_control_list": {"type": "array", "maxItems": crate::settings::governance::MAX_GRANTS, "items": {
                "type": "object", "required": ["permission_level"], "properties": {
                    "user_name": {"type": "string"}, "service_principal_name": {"type": "string"},
                    "permission_level": {"type": "string", "enum": ["CAN_VIEW", "CAN_QUERY", "CAN_MANAGE"]}}}}}},
        "Logs": {"type": "object", "properties": {"logs": {"type": "string"}}}
    })
}

fn operation(r: &Route) -> Value {
    let v2 = r.path.starts_with("/v2");
    let error = if v2 { "V2Error" } else { "Error" };
    let content = |schema: &str| json!({"application/json": {"schema": reference(schema)}});
    let mut responses = Map::new();
    let answer = match r.answer {
        "Html" => json!({"text/html": {"schema": reference(r.answer)}}),
        _ => content(r.answer),
    };
    responses.insert(
        "200".into(),
        json!({"description": "OK", "content": answer}),
    );
    let mut refusals = vec!["default"];
    let method = r.method.as_str();
    if !matches!(access(r), Open) {
        refusals.extend(["401", "403"]);
    }
    if r.body.is_some() {
        // Every body is read within server.max_body_bytes, server.body_read_timeout_ms and
        // the shared server.max_inflight_body_bytes.
        refusals.extend(["408", "413", "503"]);
    }
    if matches!(access(r), Query) && method == "post" {
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
    op["security"] = match access(r) {
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
    let mut id = r.method.as_str().to_owned();
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
        entry[r.method.as_str()] = operation(r);
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
