//! `endpoints[]`: what an endpoint serves and how its traffic is shared, as the config file and
//! the control plane (Databricks' `served_entities`, `traffic_config`, `rate_limits`) both write
//! it, and the checks that name every violation at once.

use serde::{Deserialize, Serialize};

use super::capture::{capture_violations, AutoCaptureConfig};
use super::engine::EngineChoice;
use super::governance::{governance_violations, AccessControl, EndpointTag, UsageTrackingConfig};

/// The header that carries a routing key when the endpoint does not name another.
pub const DEFAULT_KEY_HEADER: &str = "X-Routing-Key";

/// One endpoint as the config file writes it: a name and its config.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct EndpointSettings {
    pub name: String,
    #[serde(alias = "served_models")]
    pub served_entities: Vec<ServedEntitySettings>,
    /// Shares of traffic per served entity; optional with one served entity (it gets 100%).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic_config: Option<TrafficConfig>,
    #[serde(default)]
    pub routing: RoutingSettings,
    /// Inference tables (Databricks' `auto_capture_config`): requests and predictions of this
    /// endpoint logged to Delta tables under `inference_log.location`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_capture_config: Option<AutoCaptureConfig>,
    /// Databricks' `rate_limits`: calls per minute for the endpoint or per caller.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rate_limits: Vec<RateLimit>,
    /// Databricks' endpoint tags (`PATCH .../tags`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<EndpointTag>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Direct grants on this endpoint, beyond the tokens' scopes (`PUT
    /// /api/2.0/permissions/serving-endpoints/{name}`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub permissions: Vec<AccessControl>,
    /// The AI gateway's `usage_tracking_config`, kept and shown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage_tracking_config: Option<UsageTrackingConfig>,
    /// Ours: when the challenger replaces the champion on labelled live quality.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promotion: Option<super::promotion::PromotionSettings>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServedEntitySettings {
    /// Name in routes and responses (`served-model-name`); defaults to
    /// `<entity_name>-<entity_version>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Registered model name. Missing (a Databricks external model has none), it is empty and
    /// refused by name with the entity's other problems.
    #[serde(alias = "model_name", default)]
    pub entity_name: String,
    /// Version number or alias (`champion`).
    #[serde(alias = "model_version", default)]
    pub entity_version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<EngineChoice>,
    /// Accepted from Databricks clients; one process has no workload sizes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_size: Option<String>,
    /// Accepted from Databricks clients; a loaded model stays loaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_to_zero_enabled: Option<bool>,
    /// Accepted from Databricks clients; models run on the CPU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_type: Option<String>,
    /// Accepted from Databricks clients (`databricks-sdk` sends whatever its caller set) and
    /// kept in the config; the models run in this process, with its environment and
    /// credentials, at no provisioned throughput or concurrency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment_vars: Option<std::collections::BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_profile_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_provisioned_throughput: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_provisioned_throughput: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_provisioned_concurrency: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_provisioned_concurrency: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioned_model_units: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst_scaling_enabled: Option<bool>,
    /// A Databricks external model (a provider's API): refused with a violation, since this
    /// gateway serves registry models only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_model: Option<serde_json::Value>,
    /// Ours: concurrent requests to this served entity combined into one engine call
    /// (adaptive batching); off when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batching: Option<BatchingSettings>,
}

/// Adaptive batching of one served entity: while other requests wait in the inference queue,
/// a request's rows wait (at most `max_delay_us`) for theirs, and the batch runs as one engine
/// call of at most `max_rows` rows. The batch runs as soon as a worker finds the (pool-wide)
/// queue empty.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct BatchingSettings {
    /// Rows in one engine call; a request with more runs alone.
    #[serde(default = "BatchingSettings::default_max_rows")]
    pub max_rows: usize,
    /// The longest a request waits for others to join its batch, in microseconds.
    #[serde(default = "BatchingSettings::default_max_delay_us")]
    pub max_delay_us: u64,
}

impl BatchingSettings {
    /// The largest `max_rows`: a batch's inputs are copied into one set of tensors.
    pub const MAX_ROWS: usize = 65_536;
    /// The largest `max_delay_us` (one second).
    pub const MAX_DELAY_US: u64 = 1_000_000;

    fn default_max_rows() -> usize {
        64
    }

    fn default_max_delay_us() -> u64 {
        1_000
    }

    pub fn max_delay(&self) -> std::time::Duration {
        std::time::Duration::from_micros(self.max_delay_us)
    }
}

impl Default for BatchingSettings {
    fn default() -> Self {
        Self {
            max_rows: Self::default_max_rows(),
            max_delay_us: Self::default_max_delay_us(),
        }
    }
}

impl ServedEntitySettings {
    pub fn new(entity_name: &str, entity_version: &str) -> Self {
        Self {
            name: None,
            entity_name: entity_name.into(),
            entity_version: entity_version.into(),
            engine: None,
            workload_size: None,
            scale_to_zero_enabled: None,
            workload_type: None,
            environment_vars: None,
            instance_profile_arn: None,
            min_provisioned_throughput: None,
            max_provisioned_throughput: None,
            min_provisioned_concurrency: None,
            max_provisioned_concurrency: None,
            provisioned_model_units: None,
            burst_scaling_enabled: None,
            external_model: None,
            batching: None,
        }
    }

    /// The name routes, responses and metrics use.
    pub fn served_name(&self) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| format!("{}-{}", self.entity_name, self.entity_version))
    }

    /// Same model, version, engine and batching: a served entity's slot (its loaded version,
    /// its batching) can be kept across config updates; any other change loads it anew, with
    /// the load's checks (a model that cannot take batches is refused there).
    pub fn same_model(&self, other: &Self) -> bool {
        self.entity_name == other.entity_name
            && self.entity_version == other.entity_version
            && self.engine == other.engine
            && self.batching == other.batching
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct TrafficConfig {
    pub routes: Vec<Route>,
}

/// A served entity's share of the traffic, or a mirror of it (`shadow: true`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Route {
    #[serde(alias = "served_model_name")]
    pub served_entity_name: String,
    /// Integer percent of requests answered by this entity; the split routes sum to 100.
    #[serde(default)]
    pub traffic_percentage: i64,
    /// Gets a copy of requests instead of a share; its answers are recorded, never returned.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub shadow: bool,
    /// Percent of requests a shadow route copies (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow_percentage: Option<i64>,
}

/// How a request finds its arm.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RoutingSettings {
    /// A request column whose value keeps a caller on one arm (e.g. `CustomerID`). Models that do
    /// not take the column never see it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_column: Option<String>,
    /// A header whose value keeps a caller on one arm; it routes the whole request and wins over
    /// `key_column`.
    pub key_header: String,
    /// A batch whose rows carry different keys: split by row, or route whole by the first key.
    pub batch: BatchRouting,
}

impl Default for RoutingSettings {
    fn default() -> Self {
        Self {
            key_column: None,
            key_header: DEFAULT_KEY_HEADER.into(),
            batch: BatchRouting::SplitRows,
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum BatchRouting {
    /// Each row goes to its key's arm; the answer keeps the request's row order.
    #[default]
    SplitRows,
    /// The first row's key routes the whole request.
    FirstKey,
}

/// A config problem: the key it is at and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub key: String,
    pub message: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// Names, model names and versions: letters, digits, `-`, `_`, `.`; at most 63; no leading dot.
pub fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && !s.starts_with('.')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

impl EndpointSettings {
    /// Every problem of this endpoint's config, keys prefixed by `prefix` (`endpoints[0]`, or
    /// empty for an API body).
    pub fn violations(&self, prefix: &str) -> Vec<Violation> {
        let mut out = Vec::new();
        let key = |k: &str| {
            if prefix.is_empty() {
                k.to_owned()
            } else {
                format!("{prefix}.{k}")
            }
        };
        let mut add = |k: String, message: String| out.push(Violation { key: k, message });
        if !valid_name(&self.name) {
            add(
                key("name"),
                format!(
                    "'{}' is not a valid endpoint name (letters, digits, '-', '_', '.'; at most 63)",
                    self.name
                ),
            );
        }
        if self.served_entities.is_empty() {
            add(
                key("served_entities"),
                "needs at least one served entity".into(),
            );
        }
        let names: Vec<String> = self
            .served_entities
            .iter()
            .map(ServedEntitySettings::served_name)
            .collect();
        for (j, se) in self.served_entities.iter().enumerate() {
            let k = |f: &str| key(&format!("served_entities[{j}].{f}"));
            if se.entity_name.is_empty() {
                add(
                    k("entity_name"),
                    "is required: the registered model to serve".into(),
                );
            } else if !valid_name(&se.entity_name) {
                add(
                    k("entity_name"),
                    format!("'{}' is not a valid model name", se.entity_name),
                );
            }
            if se.entity_version.is_empty() {
                add(
                    k("entity_version"),
                    "is required: a version number or alias".into(),
                );
            } else if !valid_name(&se.entity_version) {
                add(
                    k("entity_version"),
                    format!("'{}' is not a version number or alias", se.entity_version),
                );
            }
            if !valid_name(&names[j]) {
                add(
                    k("name"),
                    format!("'{}' is not a valid served entity name", names[j]),
                );
            } else if names[..j].contains(&names[j]) {
                add(
                    k("name"),
                    format!(
                        "served entity name '{}' is used twice (name each entity)",
                        names[j]
                    ),
                );
            }
            if se.external_model.is_some() {
                add(
                    k("external_model"),
                    "external models are not served here: serve a registered model (entity_name and entity_version)".into(),
                );
            }
            if let Some(b) = &se.batching {
                if !(1..=BatchingSettings::MAX_ROWS).contains(&b.max_rows) {
                    add(
                        k("batching.max_rows"),
                        format!(
                            "{} is outside 1..={} (rows in one engine call)",
                            b.max_rows,
                            BatchingSettings::MAX_ROWS
                        ),
                    );
                }
                if !(1..=BatchingSettings::MAX_DELAY_US).contains(&b.max_delay_us) {
                    add(
                        k("batching.max_delay_us"),
                        format!(
                            "{} is outside 1..={} (microseconds a request may wait for others)",
                            b.max_delay_us,
                            BatchingSettings::MAX_DELAY_US
                        ),
                    );
                }
            }
        }
        match &self.traffic_config {
            None if self.served_entities.len() > 1 => add(
                key("traffic_config"),
                "is required when an endpoint has more than one served entity".into(),
            ),
            None => {}
            Some(tc) => route_violations(tc, &names, &key("traffic_config"), &mut add),
        }
        let r = &self.routing;
        if let Some(col) = &r.key_column {
            if col.is_empty() {
                add(
                    key("routing.key_column"),
                    "must name a request column".into(),
                );
            }
        }
        if actix_web::http::header::HeaderName::from_bytes(r.key_header.as_bytes()).is_err() {
            add(
                key("routing.key_header"),
                format!("'{}' is not a valid header name", r.key_header),
            );
        }
        if let Some(capture) = &self.auto_capture_config {
            capture_violations(capture, &self.name, &key("auto_capture_config"), &mut add);
        }
        let limits = self.rate_limits.len();
        if limits > super::governance::MAX_RATE_LIMITS {
            add(
                key("rate_limits"),
                format!(
                    "{limits} limits, more than the {} an endpoint may have",
                    super::governance::MAX_RATE_LIMITS
                ),
            );
        } else {
            for (i, limit) in self.rate_limits.iter().enumerate() {
                limit.violations(&key(&format!("rate_limits[{i}]")), &mut add);
            }
        }
        governance_violations(
            &self.tags,
            self.description.as_deref(),
            &self.permissions,
            &key,
            &mut add,
        );
        if let Some(promotion) = &self.promotion {
            out.extend(promotion.violations(self, &key("promotion")));
        }
        out
    }
}

fn route_violations(
    tc: &TrafficConfig,
    names: &[String],
    prefix: &str,
    add: &mut impl FnMut(String, String),
) {
    let mut split_sum = 0i64;
    for (i, route) in tc.routes.iter().enumerate() {
        let k = |f: &str| format!("{prefix}.routes[{i}].{f}");
        if !names.contains(&route.served_entity_name) {
            add(
                k("served_entity_name"),
                format!(
                    "'{}' is not a served entity of this endpoint (served entities: {})",
                    route.served_entity_name,
                    names.join(", ")
                ),
            );
        } else if tc.routes[..i]
            .iter()
            .any(|r| r.served_entity_name == route.served_entity_name)
        {
            add(
                k("served_entity_name"),
                format!("'{}' has more than one route", route.served_entity_name),
            );
        }
        if route.shadow {
            if route.traffic_percentage != 0 {
                add(
                    k("traffic_percentage"),
                    "a shadow route answers no traffic: leave it out or set 0 (shadow_percentage sets how much it copies)".into(),
                );
            }
            if let Some(p) = route.shadow_percentage {
                if !(1..=100).contains(&p) {
                    add(
                        k("shadow_percentage"),
                        format!("{p} is not between 1 and 100"),
                    );
                }
            }
        } else {
            if !(0..=100).contains(&route.traffic_percentage) {
                add(
                    k("traffic_percentage"),
                    format!("{} is not between 0 and 100", route.traffic_percentage),
                );
            }
            if route.shadow_percentage.is_some() {
                add(
                    k("shadow_percentage"),
                    "only a shadow route (shadow: true) copies traffic".into(),
                );
            }
            split_sum = split_sum.saturating_add(route.traffic_percentage);
        }
    }
    if split_sum != 100 {
        add(
            format!("{prefix}.routes"),
            format!("the traffic percentages of the routes that are not shadow sum to {split_sum}, not 100"),
        );
    }
}

/// Who a rate limit counts: each caller apart (`user`, and `service_principal` alike: a token
/// is both), or the whole endpoint. `user_group` (the AI gateway's) is refused: tokens have no
/// groups.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RateLimitKey {
    User,
    Endpoint,
    ServicePrincipal,
    UserGroup,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RenewalPeriod {
    Minute,
}

/// Databricks' `rate_limits` entry: at most `calls` requests per minute for the whole endpoint
/// or per caller. Counted by `endpoint::rate_limit`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Databricks' AI gateway may leave it out (with a `tokens` limit); refused then.
    #[serde(default)]
    pub calls: u64,
    #[serde(default = "endpoint_key")]
    pub key: RateLimitKey,
    #[serde(default = "minute")]
    pub renewal_period: RenewalPeriod,
    /// The AI gateway's: the one caller (a token's name) the limit is for; every caller,
    /// each apart, without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    /// The AI gateway's token limit (of LLM endpoints): refused, since calls are what is
    /// counted here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<u64>,
}

impl RateLimit {
    /// Calls per minute for the whole endpoint.
    pub fn per_endpoint(calls: u64) -> Self {
        Self {
            calls,
            key: RateLimitKey::Endpoint,
            renewal_period: RenewalPeriod::Minute,
            principal: None,
            tokens: None,
        }
    }

    /// Whether a call by `requester` is counted by this limit.
    pub fn counts(&self, requester: &str) -> bool {
        self.principal.as_deref().is_none_or(|p| p == requester)
    }

    fn violations(&self, key: &str, add: &mut impl FnMut(String, String)) {
        if self.tokens.is_some() {
            add(
                format!("{key}.tokens"),
                "token limits are for LLM endpoints: calls are counted here (set calls)".into(),
            );
        } else if self.calls == 0 {
            add(
                format!("{key}.calls"),
                "must be at least 1 (remove the limit to allow every call)".into(),
            );
        }
        match (self.key, &self.principal) {
            (RateLimitKey::UserGroup, _) => add(
                format!("{key}.key"),
                "there are no user groups here: limit each caller (user) or one caller (user with principal)".into(),
            ),
            (RateLimitKey::Endpoint, Some(_)) => add(
                format!("{key}.principal"),
                "an endpoint-wide limit has no principal: use key user".into(),
            ),
            (_, Some(p)) if p.is_empty() => {
                add(format!("{key}.principal"), "is empty".into())
            }
            _ => {}
        }
    }
}

fn endpoint_key() -> RateLimitKey {
    RateLimitKey::Endpoint
}

fn minute() -> RenewalPeriod {
    RenewalPeriod::Minute
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::capture::shared_table_violations;

    /// Databricks' compute fields change nothing that is loaded: a config update that changes
    /// only them keeps the served entity's model (no reload).
    #[test]
    fn compute_fields_alone_are_the_same_model() {
        let before = ServedEntitySettings::new("m", "1");
        let mut after = before.clone();
        after.environment_vars = Some([("A".to_owned(), "b".to_owned())].into());
        after.workload_size = Some("Large".into());
        after.max_provisioned_concurrency = Some(4);
        after.burst_scaling_enabled = Some(true);
        assert!(after.same_model(&before));
        after.entity_version = "2".into();
        assert!(!after.same_model(&before));
    }

    fn two_arms(a: i64, b: i64) -> EndpointSettings {
        let mut a_entity = ServedEntitySettings::new("m", "1");
        a_entity.name = Some("a".into());
        let mut b_entity = ServedEntitySettings::new("m", "2");
        b_entity.name = Some("b".into());
        EndpointSettings {
            name: "e".into(),
            served_entities: vec![a_entity, b_entity],
            traffic_config: Some(TrafficConfig {
                routes: vec![route("a", a), route("b", b)],
            }),
            routing: RoutingSettings::default(),
            auto_capture_config: None,
            rate_limits: Vec::new(),
            ..Default::default()
        }
    }

    #[test]
    fn rate_limits_are_bounded_and_each_checked() {
        let mut e = two_arms(50, 50);
        e.rate_limits = vec![RateLimit::per_endpoint(5); 21];
        let keys: Vec<String> = e.violations("").into_iter().map(|v| v.key).collect();
        assert_eq!(keys, ["rate_limits"]);
        e.rate_limits = vec![
            RateLimit {
                tokens: Some(10),
                ..RateLimit::per_endpoint(5)
            },
            RateLimit {
                key: RateLimitKey::UserGroup,
                ..RateLimit::per_endpoint(5)
            },
            RateLimit {
                principal: Some("etl".into()),
                ..RateLimit::per_endpoint(5)
            },
        ];
        let keys: Vec<String> = e.violations("").into_iter().map(|v| v.key).collect();
        assert_eq!(
            keys,
            [
                "rate_limits[0].tokens",
                "rate_limits[1].key",
                "rate_limits[2].principal"
            ]
        );
    }

    fn route(name: &str, pct: i64) -> Route {
        Route {
            served_entity_name: name.into(),
            traffic_percentage: pct,
            shadow: false,
            shadow_percentage: None,
        }
    }

    fn keys(v: &[Violation]) -> Vec<&str> {
        v.iter().map(|v| v.key.as_str()).collect()
    }

    #[test]
    fn a_ninety_ten_split_is_valid() {
        assert_eq!(two_arms(90, 10).violations(""), vec![]);
    }

    #[test]
    fn one_entity_needs_no_traffic_config_but_two_do() {
        let mut e = two_arms(90, 10);
        e.traffic_config = None;
        assert_eq!(keys(&e.violations("")), ["traffic_config"]);
        e.served_entities.pop();
        assert_eq!(e.violations(""), vec![]);
    }

    #[test]
    fn every_violation_is_named_at_once() {
        let mut e = two_arms(120, 10);
        e.served_entities[1].name = Some("a".into());
        e.traffic_config
            .as_mut()
            .unwrap()
            .routes
            .push(route("ghost", -5));
        e.routing.key_header = "bad header".into();
        let v = e.violations("");
        assert_eq!(
            keys(&v),
            [
                "served_entities[1].name",
                "traffic_config.routes[0].traffic_percentage",
                "traffic_config.routes[1].served_entity_name",
                "traffic_config.routes[2].served_entity_name",
                "traffic_config.routes[2].traffic_percentage",
                "traffic_config.routes",
                "routing.key_header",
            ],
            "{v:?}"
        );
        assert!(v[5].message.contains("sum to 125"), "{}", v[5]);
        assert!(v[3].message.contains("'ghost'"), "{}", v[3]);
    }

    #[test]
    fn shadow_routes_copy_and_do_not_count_towards_the_split() {
        let mut e = two_arms(100, 0);
        let b = &mut e.traffic_config.as_mut().unwrap().routes[1];
        b.shadow = true;
        b.shadow_percentage = Some(50);
        assert_eq!(e.violations(""), vec![]);
        let b = &mut e.traffic_config.as_mut().unwrap().routes[1];
        b.traffic_percentage = 10;
        b.shadow_percentage = Some(0);
        assert_eq!(
            keys(&e.violations("")),
            [
                "traffic_config.routes[1].traffic_percentage",
                "traffic_config.routes[1].shadow_percentage"
            ]
        );
    }

    #[test]
    fn prefixes_keys_for_the_config_file() {
        let mut e = two_arms(50, 40);
        e.name = "a b".into();
        assert_eq!(
            keys(&e.violations("endpoints[2]")),
            ["endpoints[2].name", "endpoints[2].traffic_config.routes"]
        );
    }

    fn logging(name: &str, capture: &str) -> EndpointSettings {
        let mut e = two_arms(90, 10);
        e.name = name.into();
        e.auto_capture_config = Some(serde_json::from_str(capture).unwrap());
        e
    }

    #[test]
    fn endpoints_that_would_share_inference_tables_are_named() {
        let endpoints = [
            logging("a", r#"{"table_name_prefix": "tx"}"#),
            logging("b", r#"{"table_name_prefix": "TX"}"#),
            logging("c", r#"{"catalog_name": "ml", "table_name_prefix": "tx"}"#),
            logging("d", r#"{"schema_name": "ml", "table_name_prefix": "tx"}"#),
            logging("tx", r#"{"enabled": false}"#),
            logging("e", r#"{}"#),
            logging("f", r#"{"table_name_prefix": "e"}"#),
        ];
        let v = shared_table_violations(&endpoints);
        assert_eq!(
            keys(&v),
            [
                "endpoints[1].auto_capture_config.table_name_prefix",
                "endpoints[3].auto_capture_config.table_name_prefix",
                "endpoints[6].auto_capture_config.table_name_prefix",
            ],
            "{v:?}"
        );
        assert!(
            v[0].message.contains("'b' and 'a'") && v[0].message.contains("'TX_payload'"),
            "{}",
            v[0]
        );
        assert!(v[1].message.contains("'d' and 'c'"), "{}", v[1]);
        assert!(v[2].message.contains("'f' and 'e'"), "{}", v[2]);
        assert_eq!(endpoints[0].shared_tables(&endpoints[0]), None);
        assert_eq!(endpoints[0].shared_tables(&endpoints[4]), None);
    }
}
