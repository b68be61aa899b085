//! The Databricks calls that change an endpoint without loading a model, as `databricks-sdk`
//! makes them: `PATCH .../tags`, `PUT .../rate-limits`, `PUT .../ai-gateway`, and the
//! permissions API (`/api/2.0/permissions/serving-endpoints/{id}`). Each edits the endpoint's
//! settings through [`crate::endpoint::control::ControlPlane::amend`]: checked, published at
//! once, saved in the state file.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};

use super::admin::{endpoint, read_body, reply, run_control};
use super::error::ApiError;
use super::AppState;
use crate::endpoint::config::{AutoCaptureConfigInput, EndpointSettings};
use crate::endpoint::control::ControlError;
use crate::endpoint::rate_limit::RateLimit;
use crate::endpoint::view::ai_gateway_json;
use crate::settings::governance::{
    AccessControl, EndpointTag, PermissionLevel, UsageTrackingConfig, MAX_GRANTS, MAX_TAGS,
};
use crate::settings::Violation;

/// Edits the endpoint's settings off the HTTP workers and answers `show(settings)`.
async fn amend(
    state: &AppState,
    name: String,
    change: impl FnOnce(&mut EndpointSettings) -> Result<(), ControlError> + Send + 'static,
    show: impl FnOnce(&EndpointSettings) -> Value,
) -> Result<HttpResponse, ApiError> {
    let control = state.control.clone();
    run_control(
        move || control.amend(&name, change),
        |ep| show(&ep.generation().settings),
    )
    .await
}

fn refuse(key: &str, message: impl Into<String>) -> ControlError {
    ControlError::Invalid(vec![Violation {
        key: key.into(),
        message: message.into(),
    }])
}

/// `PATCH .../tags`: Databricks' `{add_tags, delete_tags}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TagsPatch {
    #[serde(default)]
    add_tags: Vec<EndpointTag>,
    #[serde(default)]
    delete_tags: Vec<String>,
}

/// Deletes, then adds (a key added again takes the new value); answers `{tags}`.
pub async fn patch_tags(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let patch: TagsPatch = read_body(&req, payload, &state).await?;
    // Bounded before any work: each list is at most what an endpoint may hold.
    for (key, n) in [
        ("add_tags", patch.add_tags.len()),
        ("delete_tags", patch.delete_tags.len()),
    ] {
        if n > MAX_TAGS {
            return Err(refuse(
                key,
                format!("{n} tags, more than the {MAX_TAGS} an endpoint may have"),
            )
            .into());
        }
    }
    let change = move |s: &mut EndpointSettings| {
        s.tags.retain(|t| !patch.delete_tags.contains(&t.key));
        for tag in patch.add_tags {
            match s.tags.iter_mut().find(|t| t.key == tag.key) {
                Some(t) => t.value = tag.value,
                None => s.tags.push(tag),
            }
        }
        Ok(())
    };
    amend(
        &state,
        path.into_inner(),
        change,
        |s| json!({ "tags": s.tags }),
    )
    .await
}

/// `PUT .../rate-limits` (Databricks' legacy call; the AI gateway's limits are the same list).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitsPut {
    #[serde(default)]
    rate_limits: Vec<RateLimit>,
}

pub async fn put_rate_limits(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let put: RateLimitsPut = read_body(&req, payload, &state).await?;
    let change = move |s: &mut EndpointSettings| {
        s.rate_limits = put.rate_limits;
        Ok(())
    };
    amend(
        &state,
        path.into_inner(),
        change,
        |s| json!({ "rate_limits": s.rate_limits }),
    )
    .await
}

/// `PUT .../ai-gateway`: what it carries maps onto what exists here. A part left out keeps
/// what the endpoint has; `rate_limits: []` removes the limits.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AiGatewayPut {
    /// The endpoint's inference tables (`auto_capture_config`).
    #[serde(default)]
    inference_table_config: Option<AutoCaptureConfigInput>,
    #[serde(default)]
    rate_limits: Option<Vec<RateLimit>>,
    #[serde(default)]
    usage_tracking_config: Option<UsageTrackingConfig>,
    /// LLM guardrails: refused when they ask for anything.
    #[serde(default)]
    guardrails: Option<Value>,
    /// Refused when enabled.
    #[serde(default)]
    fallback_config: Option<Value>,
}

pub async fn put_ai_gateway(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let put: AiGatewayPut = read_body(&req, payload, &state).await?;
    amend(
        &state,
        path.into_inner(),
        move |s| put.apply(s),
        ai_gateway_json,
    )
    .await
}

impl AiGatewayPut {
    /// Maps what this carries onto the endpoint's settings.
    pub fn apply(self, s: &mut EndpointSettings) -> Result<(), ControlError> {
        let put = self;
        if put.guardrails.as_ref().is_some_and(asks_for_something) {
            return Err(refuse(
                "guardrails",
                "guardrails filter LLM prompts and answers; this gateway serves tabular models and has none",
            ));
        }
        if put
            .fallback_config
            .as_ref()
            .is_some_and(|f| f["enabled"] == json!(true))
        {
            return Err(refuse(
                "fallback_config.enabled",
                "fallback to other served entities is not offered: split traffic with traffic_config",
            ));
        }
        if let Some(tables) = put.inference_table_config {
            s.auto_capture_config = Some(tables.apply(s.auto_capture_config.as_ref()));
        }
        if let Some(limits) = put.rate_limits {
            s.rate_limits = limits;
        }
        if let Some(usage) = put.usage_tracking_config {
            s.usage_tracking_config = Some(usage);
        }
        Ok(())
    }
}

/// Whether a guardrails object asks for any check (an empty one, or all off, does not).
fn asks_for_something(v: &Value) -> bool {
    match v {
        Value::Null | Value::Bool(false) => false,
        Value::Object(o) => o.values().any(asks_for_something),
        Value::Array(a) => a.iter().any(asks_for_something),
        Value::String(s) => !s.is_empty(),
        _ => true,
    }
}

/// `PUT` (replace) and `PATCH` (add) of the permissions: `{access_control_list}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PermissionsBody {
    #[serde(default)]
    access_control_list: Vec<AccessControl>,
}

/// `GET /api/2.0/permissions/serving-endpoints/{id}`.
pub async fn get_permissions(
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let ep = endpoint(&state, &path)?;
    let body = permissions_json(&state, &ep.name, &ep.generation().settings.permissions);
    Ok(reply(StatusCode::OK, body))
}

/// `PUT`: the endpoint's direct grants become the list.
pub async fn set_permissions(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    change_permissions(req, path, payload, state, true).await
}

/// `PATCH`: each principal of the list gets its level; the others keep theirs.
pub async fn update_permissions(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    change_permissions(req, path, payload, state, false).await
}

async fn change_permissions(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
    replace: bool,
) -> Result<HttpResponse, ApiError> {
    let body: PermissionsBody = read_body(&req, payload, &state).await?;
    let n = body.access_control_list.len();
    if n > MAX_GRANTS {
        return Err(refuse(
            "access_control_list",
            format!("{n} grants, more than the {MAX_GRANTS} an endpoint may have"),
        )
        .into());
    }
    // A grant to a token that does not exist would grant nothing, silently.
    if state.auth.enabled() {
        let unknown: Vec<Violation> = body
            .access_control_list
            .iter()
            .enumerate()
            .filter_map(|(i, g)| {
                let p = g.principal()?;
                (!state.auth.knows(p)).then(|| Violation {
                    key: format!("access_control_list[{i}]"),
                    message: format!("'{p}' is not the name of a configured token"),
                })
            })
            .collect();
        if !unknown.is_empty() {
            return Err(ControlError::Invalid(unknown).into());
        }
    }
    let change = move |s: &mut EndpointSettings| {
        if replace {
            s.permissions = body.access_control_list;
        } else {
            for grant in body.access_control_list {
                let same = |g: &AccessControl| {
                    g.principal().is_some() && g.principal() == grant.principal()
                };
                s.permissions.retain(|g| !same(g));
                s.permissions.push(grant);
            }
        }
        Ok(())
    };
    let app = state.clone();
    let name = path.into_inner();
    let shown = name.clone();
    amend(&state, name, change, move |s| {
        permissions_json(&app, &shown, &s.permissions)
    })
    .await
}

/// `GET .../permissionLevels`.
pub async fn permission_levels(
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    endpoint(&state, &path)?;
    let levels: Vec<Value> = PermissionLevel::ALL
        .iter()
        .map(|l| json!({"permission_level": l.as_str(), "description": l.description()}))
        .collect();
    Ok(reply(
        StatusCode::OK,
        json!({ "permission_levels": levels }),
    ))
}

/// Databricks' `ServingEndpointPermissions`: each token with the level its scopes give on
/// every endpoint (inherited from `/serving-endpoints`), and each direct grant. With tokens
/// off, everyone (`users`) can manage.
fn permissions_json(state: &AppState, name: &str, grants: &[AccessControl]) -> Value {
    let root = "/serving-endpoints";
    let inherited = |level: PermissionLevel| json!({"permission_level": level.as_str(), "inherited": true, "inherited_from_object": [root]});
    let mut list: Vec<Value> = Vec::new();
    if !state.auth.enabled() {
        list.push(json!({"group_name": "users", "all_permissions": [inherited(PermissionLevel::CanManage)]}));
    }
    let mut tokens = state.auth.inherited_levels();
    // A granted principal that is no token (tokens off, or one removed since) still shows.
    for g in grants {
        if let Some(p) = g.principal() {
            if !tokens.iter().any(|(n, _)| &**n == p) {
                tokens.push((p.into(), PermissionLevel::CanView));
            }
        }
    }
    for (token, scope_level) in tokens {
        let direct: Vec<&AccessControl> = grants
            .iter()
            .filter(|g| g.principal() == Some(&*token))
            .collect();
        let mut all = Vec::new();
        if state.auth.knows(&token) {
            all.push(inherited(scope_level));
        }
        for g in &direct {
            all.push(json!({"permission_level": g.permission_level.as_str(), "inherited": false}));
        }
        let mut entry = json!({ "all_permissions": all });
        let field = match direct.first() {
            Some(g) if g.service_principal_name.is_some() => "service_principal_name",
            _ => "user_name",
        };
        entry[field] = json!(&*token);
        list.push(entry);
    }
    json!({
        "object_id": format!("{root}/{name}"),
        "object_type": "serving-endpoint",
        "access_control_list": list,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guardrails_that_ask_for_nothing_are_taken() {
        assert!(!asks_for_something(&json!({})));
        assert!(!asks_for_something(
            &json!({"input": {"pii": null, "safety": false, "invalid_keywords": []}})
        ));
        assert!(asks_for_something(&json!({"input": {"safety": true}})));
        assert!(asks_for_something(
            &json!({"output": {"invalid_keywords": ["x"]}})
        ));
    }
}
