//! An endpoint as the Databricks serving-endpoints API shows it (`ServingEndpointDetailed`):
//! its config, each served entity's deployment state derived from what it serves and its last
//! swap, the pending config and the last failed update.

use serde_json::{json, Value};

use crate::clock::epoch_ms;
use crate::endpoint::config::{EndpointSettings, Route, ServedEntitySettings, TrafficConfig};
use crate::endpoint::{ConfigUpdate, Endpoint, EntitySlot, Generation};

/// A served entity as this config has it (a slot kept from an earlier config may carry older
/// settings of the same model), with its deployment state and what it serves now.
fn entity_json(settings: &ServedEntitySettings, slot: &EntitySlot) -> Value {
    let mut v = serde_json::to_value(settings).unwrap_or_default();
    v["name"] = json!(slot.name);
    let state = slot.state();
    let served = slot.served();
    let (deployment, message) = match (&served, state.config_update, &state.last_swap) {
        (Some(e), ConfigUpdate::UpdateFailed, Some(r)) => (
            "DEPLOYMENT_READY",
            format!(
                "serving version {}; the update to version {} failed: {}",
                e.meta.version,
                r.to_version.as_deref().unwrap_or("?"),
                r.message.as_deref().unwrap_or("")
            ),
        ),
        (Some(e), _, _) => (
            "DEPLOYMENT_READY",
            format!("serving version {} on {}", e.meta.version, e.engine),
        ),
        (None, ConfigUpdate::UpdateFailed, r) => (
            "DEPLOYMENT_FAILED",
            r.as_ref()
                .and_then(|r| r.message.clone())
                .unwrap_or_default(),
        ),
        (None, _, _) => ("DEPLOYMENT_CREATING", "loading".to_owned()),
    };
    v["state"] = json!({ "deployment": deployment, "deployment_state_message": message });
    v["served_version"] = json!(served.as_ref().map(|e| e.meta.version.clone()));
    v["served_engine"] = json!(served.as_ref().map(|e| e.engine));
    v["loaded_at"] = json!(served
        .as_ref()
        .map(|e| epoch_ms(e.loaded_at) as f64 / 1000.0));
    v["last_swap"] = json!(state.last_swap);
    v["previous_version"] = json!(state.previous_version);
    v["pinned_version"] = json!(state.pinned.map(|p| p.version));
    // What its update is doing now (downloading n of m bytes, loading, warming), while one runs.
    if let Some(activity) = slot.activity.view() {
        v["activity"] = json!(activity);
    }
    v
}

/// The routes as Databricks shows them: always explicit, even when the config had none.
fn traffic_json(settings: &EndpointSettings) -> Value {
    let tc = settings
        .traffic_config
        .clone()
        .unwrap_or_else(|| TrafficConfig {
            routes: settings
                .served_entities
                .first()
                .map(|s| Route {
                    served_entity_name: s.served_name(),
                    traffic_percentage: 100,
                    shadow: false,
                    shadow_percentage: None,
                })
                .into_iter()
                .collect(),
        });
    serde_json::to_value(tc).unwrap_or_default()
}

fn config_json(g: &Generation) -> Value {
    let mut v = json!({
        "served_entities": g
            .slots
            .iter()
            .zip(&g.settings.served_entities)
            .map(|(slot, settings)| entity_json(settings, slot))
            .collect::<Vec<_>>(),
        "traffic_config": traffic_json(&g.settings),
        "routing": g.settings.routing,
        "config_version": g.config_version,
    });
    add_capture(&mut v, &g.settings);
    v
}

/// The endpoint's `auto_capture_config` as Databricks shows it, when it has one.
fn add_capture(v: &mut Value, settings: &EndpointSettings) {
    if let Some(capture) = &settings.auto_capture_config {
        v["auto_capture_config"] = json!(capture);
    }
}

/// `ServingEndpointDetailed`.
pub fn endpoint_json(ep: &Endpoint) -> Value {
    let g = ep.generation();
    let control = ep.control();
    let mut v = json!({
        "name": ep.name,
        "id": ep.name,
        "creator": "modelgate",
        "creation_timestamp": ep.created_ms,
        "last_updated_timestamp": g.updated_ms.max(ep.created_ms),
        "state": {
            "ready": if g.is_ready() { "READY" } else { "NOT_READY" },
            "config_update": ep.config_update(),
        },
        "config": config_json(&g),
        "permission_level": "CAN_MANAGE",
    });
    if let Some(p) = control.pending {
        v["pending_config"] = json!({
            "served_entities": p.settings.served_entities,
            "traffic_config": traffic_json(&p.settings),
            "routing": p.settings.routing,
            "config_version": p.config_version,
            "start_time": p.start_ms,
        });
        add_capture(&mut v["pending_config"], &p.settings);
    }
    if let Some(f) = control.failure {
        v["last_config_update_error"] = json!(f);
    }
    let s = &g.settings;
    if !s.tags.is_empty() {
        v["tags"] = json!(s.tags);
    }
    if let Some(d) = &s.description {
        v["description"] = json!(d);
    }
    let gateway = ai_gateway_json(s);
    if gateway.as_object().is_some_and(|o| !o.is_empty()) {
        v["ai_gateway"] = gateway;
    }
    v
}

/// The endpoint's `ai_gateway`, as Databricks shows it: its inference tables, rate limits and
/// usage tracking.
pub fn ai_gateway_json(s: &EndpointSettings) -> Value {
    let mut v = json!({});
    if let Some(capture) = &s.auto_capture_config {
        v["inference_table_config"] = json!({
            "enabled": capture.enabled,
            "catalog_name": capture.catalog_name,
            "schema_name": capture.schema_name,
            "table_name_prefix": capture.table_name_prefix,
        });
    }
    if !s.rate_limits.is_empty() {
        v["rate_limits"] = json!(s.rate_limits);
    }
    if let Some(usage) = &s.usage_tracking_config {
        v["usage_tracking_config"] = json!(usage);
    }
    v
}
