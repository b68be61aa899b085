//! What Databricks keeps beside an endpoint's config and changes without a model load: its
//! tags, its description, its permissions (access control list) and its usage tracking, with
//! the checks that bound them.

use serde::{Deserialize, Serialize};

/// Tags on one endpoint: each is kept in the state file and shown by every `GET`.
pub const MAX_TAGS: usize = 50;
/// Bytes of a tag key, and of a tag value.
pub const MAX_TAG_KEY_BYTES: usize = 255;
pub const MAX_TAG_VALUE_BYTES: usize = 1024;
/// Direct grants on one endpoint.
pub const MAX_GRANTS: usize = 100;
/// Rate limits on one endpoint (each is checked on every call).
pub const MAX_RATE_LIMITS: usize = 20;
/// Bytes of an endpoint's description.
pub const MAX_DESCRIPTION_BYTES: usize = 4096;

/// Databricks' `EndpointTag`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct EndpointTag {
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// A permission on one endpoint, weakest first: each level allows what the ones before it do.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PermissionLevel {
    /// Read the endpoint, its state, monitoring, metrics and logs.
    CanView,
    /// And score it.
    CanQuery,
    /// And change, reload, roll back or delete it, and its permissions.
    CanManage,
}

impl PermissionLevel {
    pub const ALL: [PermissionLevel; 3] = [Self::CanManage, Self::CanQuery, Self::CanView];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::CanView => "CAN_VIEW",
            Self::CanQuery => "CAN_QUERY",
            Self::CanManage => "CAN_MANAGE",
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            Self::CanView => "Can view the endpoint, its state, metrics and logs",
            Self::CanQuery => "Can view and query the endpoint",
            Self::CanManage => {
                "Can view, query, change and delete the endpoint and its permissions"
            }
        }
    }
}

/// One direct grant (Databricks' `ServingEndpointAccessControlRequest`). The principal is a
/// token's name (`auth.tokens_file`), given as `user_name` or `service_principal_name`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AccessControl {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_principal_name: Option<String>,
    /// Refused with a violation: tokens have no groups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_name: Option<String>,
    pub permission_level: PermissionLevel,
}

impl AccessControl {
    /// The token name this grant is for.
    pub fn principal(&self) -> Option<&str> {
        self.user_name
            .as_deref()
            .or(self.service_principal_name.as_deref())
    }
}

/// The level `principal` is granted directly on an endpoint with `grants`, if any.
pub fn granted(grants: &[AccessControl], principal: &str) -> Option<PermissionLevel> {
    grants
        .iter()
        .filter(|g| g.principal() == Some(principal))
        .map(|g| g.permission_level)
        .max()
}

/// Databricks' `AiGatewayUsageTrackingConfig`: kept and shown. Usage is always counted here
/// (`modelgate_requests_total` per endpoint and served entity), whatever it says.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields)]
pub struct UsageTrackingConfig {
    #[serde(default)]
    pub enabled: bool,
}

/// The problems of an endpoint's tags, description and grants, keys under `key`'s prefix.
pub fn governance_violations(
    tags: &[EndpointTag],
    description: Option<&str>,
    grants: &[AccessControl],
    key: &dyn Fn(&str) -> String,
    add: &mut impl FnMut(String, String),
) {
    if tags.len() > MAX_TAGS {
        add(
            key("tags"),
            format!(
                "{} tags, more than the {MAX_TAGS} an endpoint may have",
                tags.len()
            ),
        );
    }
    let mut seen = std::collections::HashSet::with_capacity(tags.len());
    for (i, tag) in tags.iter().enumerate() {
        if tag.key.is_empty() || tag.key.len() > MAX_TAG_KEY_BYTES {
            add(
                key(&format!("tags[{i}].key")),
                format!("must have 1 to {MAX_TAG_KEY_BYTES} bytes"),
            );
        } else if !seen.insert(tag.key.as_str()) {
            add(
                key(&format!("tags[{i}].key")),
                format!("'{}' is used twice", tag.key),
            );
        }
        if tag
            .value
            .as_ref()
            .is_some_and(|v| v.len() > MAX_TAG_VALUE_BYTES)
        {
            add(
                key(&format!("tags[{i}].value")),
                format!("has more than {MAX_TAG_VALUE_BYTES} bytes"),
            );
        }
    }
    if description.is_some_and(|d| d.len() > MAX_DESCRIPTION_BYTES) {
        add(
            key("description"),
            format!("has more than {MAX_DESCRIPTION_BYTES} bytes"),
        );
    }
    if grants.len() > MAX_GRANTS {
        add(
            key("permissions"),
            format!(
                "{} grants, more than the {MAX_GRANTS} an endpoint may have",
                grants.len()
            ),
        );
    }
    for (i, g) in grants.iter().enumerate() {
        let k = key(&format!("permissions[{i}]"));
        if g.group_name.is_some() {
            add(
                format!("{k}.group_name"),
                "there are no groups here: grant a token by its name in user_name or service_principal_name".into(),
            );
            continue;
        }
        match (&g.user_name, &g.service_principal_name) {
            (Some(_), Some(_)) => add(
                k,
                "names two principals: give user_name or service_principal_name".into(),
            ),
            (None, None) => add(
                k,
                "names no principal: give a token's name in user_name or service_principal_name"
                    .into(),
            ),
            (Some(p), None) | (None, Some(p)) if p.is_empty() => {
                add(k, "the principal's name is empty".into())
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(user: &str, level: PermissionLevel) -> AccessControl {
        AccessControl {
            user_name: Some(user.into()),
            service_principal_name: None,
            group_name: None,
            permission_level: level,
        }
    }

    fn violations(tags: &[EndpointTag], grants: &[AccessControl]) -> Vec<String> {
        let mut out = Vec::new();
        governance_violations(tags, None, grants, &|k| k.to_owned(), &mut |k, _| {
            out.push(k)
        });
        out
    }

    #[test]
    fn the_strongest_direct_grant_counts() {
        let grants = [
            grant("ann", PermissionLevel::CanView),
            grant("ann", PermissionLevel::CanQuery),
            grant("bob", PermissionLevel::CanManage),
        ];
        assert_eq!(granted(&grants, "ann"), Some(PermissionLevel::CanQuery));
        assert_eq!(granted(&grants, "bob"), Some(PermissionLevel::CanManage));
        assert_eq!(granted(&grants, "cy"), None);
        assert!(PermissionLevel::CanManage > PermissionLevel::CanQuery);
        let parsed: AccessControl = serde_json::from_str(
            r#"{"service_principal_name": "etl", "permission_level": "CAN_QUERY"}"#,
        )
        .unwrap();
        assert_eq!(parsed.principal(), Some("etl"));
    }

    #[test]
    fn tags_and_grants_are_bounded_and_named() {
        let tag = |k: &str| EndpointTag {
            key: k.into(),
            value: None,
        };
        assert_eq!(
            violations(&[tag("a"), tag("a"), tag("")], &[]),
            ["tags[1].key", "tags[2].key"]
        );
        let many: Vec<EndpointTag> = (0..=MAX_TAGS).map(|i| tag(&i.to_string())).collect();
        assert_eq!(violations(&many, &[]), ["tags"]);
        let mut group = grant("x", PermissionLevel::CanView);
        group.user_name = None;
        group.group_name = Some("admins".into());
        let mut both = grant("x", PermissionLevel::CanView);
        both.service_principal_name = Some("y".into());
        assert_eq!(
            violations(&[], &[group, both, grant("ok", PermissionLevel::CanView)]),
            ["permissions[0].group_name", "permissions[1]"]
        );
    }
}
