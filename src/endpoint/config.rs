//! The control plane's bodies for an endpoint's config (Databricks' `EndpointCoreConfigInput`):
//! what an update changes and what it keeps. The settings they make live in
//! [`crate::settings::endpoint`]; they are re-exported here for the old paths.

use serde::{Deserialize, Serialize};

use crate::settings::capture::{all_requests, enabled_by_default, Backpressure};
pub use crate::settings::capture::{shared_table_violations, AutoCaptureConfig};
pub use crate::settings::endpoint::{
    valid_name, BatchRouting, EndpointSettings, Route, RoutingSettings, ServedEntitySettings,
    TrafficConfig, Violation, DEFAULT_KEY_HEADER,
};

/// `auto_capture_config` in a control-plane body (Databricks' `AutoCaptureConfigInput`): a field
/// left out keeps the endpoint's current value (or the default for a new capture); `null` clears
/// `catalog_name`, `schema_name` or `table_name_prefix`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AutoCaptureConfigInput {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(
        default,
        deserialize_with = "given",
        skip_serializing_if = "Option::is_none"
    )]
    pub catalog_name: Option<Option<String>>,
    #[serde(
        default,
        deserialize_with = "given",
        skip_serializing_if = "Option::is_none"
    )]
    pub schema_name: Option<Option<String>>,
    #[serde(
        default,
        deserialize_with = "given",
        skip_serializing_if = "Option::is_none"
    )]
    pub table_name_prefix: Option<Option<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sampling_fraction: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backpressure: Option<Backpressure>,
    /// Databricks reports the table state here; accepted from its clients and ignored.
    #[serde(default, skip_serializing)]
    pub state: Option<serde_json::Value>,
}

/// A field that is present: `Some(None)` for `null`, `Some(Some(v))` for a value (a missing
/// field is `None` through `default`).
fn given<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

impl AutoCaptureConfigInput {
    /// The capture this input makes of `current` (the endpoint's capture before the update;
    /// `None` for a new endpoint or one that never logged).
    pub fn apply(self, current: Option<&AutoCaptureConfig>) -> AutoCaptureConfig {
        let keep = |given: Option<Option<String>>, now: Option<&Option<String>>| match given {
            Some(v) => v,
            None => now.cloned().flatten(),
        };
        AutoCaptureConfig {
            enabled: self
                .enabled
                .or(current.map(|c| c.enabled))
                .unwrap_or_else(enabled_by_default),
            catalog_name: keep(self.catalog_name, current.map(|c| &c.catalog_name)),
            schema_name: keep(self.schema_name, current.map(|c| &c.schema_name)),
            table_name_prefix: keep(
                self.table_name_prefix,
                current.map(|c| &c.table_name_prefix),
            ),
            sampling_fraction: self
                .sampling_fraction
                .or(current.map(|c| c.sampling_fraction))
                .unwrap_or_else(all_requests),
            backpressure: self
                .backpressure
                .or(current.map(|c| c.backpressure))
                .unwrap_or_default(),
            state: None,
        }
    }
}

/// The body of `PUT /api/2.0/serving-endpoints/{name}/config` and the `config` of a create.
/// An update keeps what its body leaves out: `routing`, `auto_capture_config` (field by field)
/// and the rate limits. `served_entities` are required, and `traffic_config` goes with them (left
/// out, the one served entity gets all the traffic).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EndpointConfig {
    /// The endpoint's name, as `databricks-sdk`'s `EndpointCoreConfigInput` carries it: accepted
    /// and not used (the name is the create body's, or the path's).
    #[serde(default, skip_serializing)]
    pub name: Option<String>,
    #[serde(alias = "served_models")]
    pub served_entities: Vec<ServedEntitySettings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic_config: Option<TrafficConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routing: Option<RoutingSettings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_capture_config: Option<AutoCaptureConfigInput>,
}

impl EndpointConfig {
    /// The settings of a new endpoint `name` with this config.
    pub fn named(self, name: String) -> EndpointSettings {
        self.update(name, None)
    }

    /// The settings this config makes of `current` (an endpoint's settings before an update;
    /// `None` for a new endpoint): what the config leaves out is kept.
    pub fn update(self, name: String, current: Option<&EndpointSettings>) -> EndpointSettings {
        let capture = current.and_then(|c| c.auto_capture_config.as_ref());
        EndpointSettings {
            name,
            served_entities: self.served_entities,
            traffic_config: self.traffic_config,
            routing: self
                .routing
                .or_else(|| current.map(|c| c.routing.clone()))
                .unwrap_or_default(),
            auto_capture_config: match self.auto_capture_config {
                Some(input) => Some(input.apply(capture)),
                None => capture.cloned(),
            },
            // Changed by their own calls (rate limits, tags, permissions, AI gateway).
            rate_limits: current.map(|c| c.rate_limits.clone()).unwrap_or_default(),
            tags: current.map(|c| c.tags.clone()).unwrap_or_default(),
            description: current.and_then(|c| c.description.clone()),
            permissions: current.map(|c| c.permissions.clone()).unwrap_or_default(),
            usage_tracking_config: current.and_then(|c| c.usage_tracking_config),
            promotion: current.and_then(|c| c.promotion.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logging(name: &str, capture: &str) -> EndpointSettings {
        EndpointSettings {
            name: name.into(),
            served_entities: vec![ServedEntitySettings::new("m", "1")],
            traffic_config: None,
            routing: RoutingSettings::default(),
            auto_capture_config: Some(serde_json::from_str(capture).unwrap()),
            rate_limits: Vec::new(),
            ..Default::default()
        }
    }

    fn config(body: serde_json::Value) -> EndpointConfig {
        serde_json::from_value(body).unwrap()
    }

    #[test]
    fn an_update_keeps_what_it_leaves_out() {
        let mut current = logging(
            "e",
            r#"{"catalog_name": "ml", "table_name_prefix": "tx", "sampling_fraction": 0.5}"#,
        );
        current.routing.key_column = Some("CustomerID".into());
        current.rate_limits = vec![serde_json::from_str(r#"{"calls": 5, "key": "user"}"#).unwrap()];
        let served = serde_json::json!([{"entity_name": "m", "entity_version": "3"}]);
        let kept = config(serde_json::json!({"served_entities": served}))
            .update("e".into(), Some(&current));
        assert_eq!(kept.auto_capture_config, current.auto_capture_config);
        assert_eq!(kept.routing, current.routing);
        assert_eq!(kept.rate_limits, current.rate_limits);
        assert_eq!(kept.served_entities[0].entity_version, "3");
        assert_eq!(
            kept.traffic_config, None,
            "routes go with the served entities"
        );

        // Off, and on again at the same tables.
        let off = config(serde_json::json!({"served_entities": served, "auto_capture_config": {"enabled": false}}))
            .update("e".into(), Some(&kept));
        let capture = off.auto_capture_config.as_ref().unwrap();
        assert!(!capture.enabled);
        assert_eq!(off.table_location(), None);
        assert_eq!(capture.location("e"), "ml/tx");
        let on = config(serde_json::json!({"served_entities": served, "auto_capture_config": {"enabled": true, "catalog_name": null}}))
            .update("e".into(), Some(&off));
        assert_eq!(on.table_location().as_deref(), Some("tx"));
        assert_eq!(on.auto_capture_config.unwrap().sampling_fraction, 0.5);

        // A new endpoint gets the defaults.
        let new = config(serde_json::json!({"served_entities": served, "auto_capture_config": {}}))
            .named("n".into());
        let capture = new.auto_capture_config.as_ref().unwrap();
        assert!(capture.enabled);
        assert_eq!(capture.sampling_fraction, 1.0);
        assert_eq!(new.table_location().as_deref(), Some("n"));
        assert_eq!(new.routing, RoutingSettings::default());
    }

    #[test]
    fn databricks_legacy_names_are_read() {
        let c: EndpointConfig = serde_json::from_str(
            r#"{"served_models": [{"model_name": "m", "model_version": "1", "workload_size": "Small", "scale_to_zero_enabled": true}],
                "traffic_config": {"routes": [{"served_model_name": "m-1", "traffic_percentage": 100}]}}"#,
        )
        .unwrap();
        let e = c.named("e".into());
        assert_eq!(e.served_entities[0].served_name(), "m-1");
        assert_eq!(e.violations(""), vec![]);
    }

    /// What `databricks-sdk`'s `EndpointCoreConfigInput` and `ServedEntityInput` carry is
    /// taken; an external model is refused by name.
    #[test]
    fn every_field_databricks_sdk_sends_is_accepted() {
        let entity = serde_json::json!({
            "name": "champion", "entity_name": "m", "entity_version": "1",
            "workload_size": "Small", "workload_type": "CPU", "scale_to_zero_enabled": true,
            "environment_vars": {"A": "b"}, "instance_profile_arn": "arn:aws:iam::1:instance-profile/p",
            "min_provisioned_throughput": 0, "max_provisioned_throughput": 0,
            "min_provisioned_concurrency": 0, "max_provisioned_concurrency": 4,
            "provisioned_model_units": 0, "burst_scaling_enabled": false});
        let c: EndpointConfig = serde_json::from_value(serde_json::json!({
            "name": "e", "served_entities": [entity],
            "auto_capture_config": {"enabled": false}}))
        .unwrap();
        assert_eq!(c.named("e".into()).violations(""), vec![]);

        // As Databricks' external models come: a name and the provider's model, no registry.
        let external = serde_json::json!({"served_entities": [{"name": "chat",
            "external_model": {"provider": "openai", "name": "gpt"}}]});
        let c: EndpointConfig = serde_json::from_value(external).unwrap();
        let keys: Vec<String> = (c.named("e".into()).violations(""))
            .into_iter()
            .map(|v| v.key)
            .collect();
        assert_eq!(
            keys,
            [
                "served_entities[0].entity_name",
                "served_entities[0].entity_version",
                "served_entities[0].external_model"
            ]
        );
    }
}
