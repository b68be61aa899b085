"""Drives the gateway's serving-endpoints API with databricks-sdk, unmodified, as a user would,
and prints one JSON document of what each call returned.

Usage: python databricks_sdk_endpoints.py ENDPOINT BODY_JSON
with DATABRICKS_HOST (the gateway's URL), DATABRICKS_TOKEN (a token with the manage scope) and
QUERY_TOKEN (the token named `app`, with the query scope only) in the environment. BODY_JSON is a
`dataframe_split` scoring body for version 1 of the demo model `transactions`.
"""
import json
import logging
import os
import sys
from datetime import timedelta

from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import DatabricksError
from databricks.sdk.service.serving import (
    AiGatewayInferenceTableConfig,
    AiGatewayRateLimit,
    AiGatewayRateLimitKey,
    AiGatewayRateLimitRenewalPeriod,
    AiGatewayUsageTrackingConfig,
    AutoCaptureConfigInput,
    DataframeSplitInput,
    EndpointCoreConfigInput,
    EndpointTag,
    RateLimit,
    RateLimitKey,
    RateLimitRenewalPeriod,
    Route,
    ServedEntityInput,
    ServingEndpointAccessControlRequest,
    ServingEndpointPermissionLevel,
    ServingModelWorkloadType,
    TrafficConfig,
)



class Warnings(logging.Handler):
    """The SDK's own warnings (a host metadata probe that failed, say): there should be none."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.seen = []

    def emit(self, record):
        self.seen.append(record.getMessage())


warnings = Warnings()
logging.getLogger("databricks.sdk").addHandler(warnings)

name, body = sys.argv[1], json.loads(sys.argv[2])
w = WorkspaceClient(host=os.environ["DATABRICKS_HOST"], token=os.environ["DATABRICKS_TOKEN"])
# The same gateway as the token `app` sees it: query scope only, plus what it is granted.
app = WorkspaceClient(host=os.environ["DATABRICKS_HOST"], token=os.environ["QUERY_TOKEN"])
wait = timedelta(seconds=60)
out = {}


def entity(version, served_name):
    # Every compute field a Databricks user may set (external_model apart): the gateway
    # accepts and keeps them.
    return ServedEntityInput(
        name=served_name,
        entity_name="transactions",
        entity_version=version,
        workload_size="Small",
        workload_type=ServingModelWorkloadType.CPU,
        scale_to_zero_enabled=True,
        environment_vars={"LOG_LEVEL": "info"},
        instance_profile_arn="arn:aws:iam::1:instance-profile/p",
        min_provisioned_throughput=0,
        max_provisioned_throughput=0,
        min_provisioned_concurrency=0,
        max_provisioned_concurrency=4,
        provisioned_model_units=0,
        burst_scaling_enabled=False,
    )


created = w.serving_endpoints.create_and_wait(
    name=name,
    config=EndpointCoreConfigInput(
        name=name,
        served_entities=[entity("1", "champion")],
        auto_capture_config=AutoCaptureConfigInput(enabled=False),
    ),
    tags=[EndpointTag(key="team", value="risk")],
    route_optimized=False,
    description="created by databricks-sdk",
    budget_policy_id="policy-1",
    timeout=wait,
)
out["created"] = created.as_dict()
out["get"] = w.serving_endpoints.get(name).as_dict()
out["list"] = [e.name for e in w.serving_endpoints.list()]
split = DataframeSplitInput.from_dict(body["dataframe_split"])
out["query"] = w.serving_endpoints.query(name=name, dataframe_split=split).as_dict()


def outcome(call):
    """What a call as `app` got: ok, or the error's code."""
    try:
        call()
        return "ok"
    except DatabricksError as e:
        return e.error_code or type(e).__name__


out["metrics"] = w.serving_endpoints.export_metrics(name).contents.read().decode()
out["openapi"] = json.loads(w.serving_endpoints.get_open_api(name).contents.read())
out["tags"] = w.serving_endpoints.patch(
    name, add_tags=[EndpointTag(key="owner", value="ml"), EndpointTag(key="tier")], delete_tags=["team"]
).as_dict()
out["rate_limits"] = w.serving_endpoints.put(
    name,
    rate_limits=[RateLimit(calls=1000, key=RateLimitKey.USER, renewal_period=RateLimitRenewalPeriod.MINUTE)],
).as_dict()
out["ai_gateway"] = w.serving_endpoints.put_ai_gateway(
    name,
    inference_table_config=AiGatewayInferenceTableConfig(
        enabled=True, catalog_name="ml", schema_name="sdk", table_name_prefix="sdk_endpoint"
    ),
    rate_limits=[
        AiGatewayRateLimit(
            calls=500, key=AiGatewayRateLimitKey.ENDPOINT, renewal_period=AiGatewayRateLimitRenewalPeriod.MINUTE
        ),
        AiGatewayRateLimit(
            calls=2,
            key=AiGatewayRateLimitKey.SERVICE_PRINCIPAL,
            principal="app",
            renewal_period=AiGatewayRateLimitRenewalPeriod.MINUTE,
        ),
    ],
    usage_tracking_config=AiGatewayUsageTrackingConfig(enabled=True),
).as_dict()
out["logs"] = w.serving_endpoints.logs(name, "champion").logs
out["build_logs"] = w.serving_endpoints.build_logs(name, "champion").logs
out["permission_levels"] = w.serving_endpoints.get_permission_levels(name).as_dict()
out["permissions_before"] = w.serving_endpoints.get_permissions(name).as_dict()
out["app_before"] = {
    "get": outcome(lambda: app.serving_endpoints.get(name)),
    "tags": outcome(lambda: app.serving_endpoints.patch(name, add_tags=[EndpointTag(key="by", value="app")])),
}
out["permissions_set"] = w.serving_endpoints.set_permissions(
    name,
    access_control_list=[
        ServingEndpointAccessControlRequest(user_name="app", permission_level=ServingEndpointPermissionLevel.CAN_VIEW)
    ],
).as_dict()
out["app_viewer"] = {
    "get": outcome(lambda: app.serving_endpoints.get(name)),
    "tags": outcome(lambda: app.serving_endpoints.patch(name, add_tags=[EndpointTag(key="by", value="app")])),
}
out["permissions_updated"] = w.serving_endpoints.update_permissions(
    name,
    access_control_list=[
        ServingEndpointAccessControlRequest(
            service_principal_name="app", permission_level=ServingEndpointPermissionLevel.CAN_MANAGE
        )
    ],
).as_dict()
out["app_manager"] = {
    "tags": outcome(lambda: app.serving_endpoints.patch(name, add_tags=[EndpointTag(key="by", value="app")])),
    "query": outcome(lambda: app.serving_endpoints.query(name=name, dataframe_split=split)),
}
updated = w.serving_endpoints.update_config_and_wait(
    name=name,
    served_entities=[entity("1", "champion"), entity("2", "challenger")],
    traffic_config=TrafficConfig(
        routes=[
            Route(served_model_name="champion", traffic_percentage=90),
            Route(served_model_name="challenger", traffic_percentage=10),
        ]
    ),
    timeout=wait,
)
out["updated"] = updated.as_dict()
out["build_logs_challenger"] = w.serving_endpoints.build_logs(name, "challenger").logs
w.serving_endpoints.delete(name)
out["after_delete"] = [e.name for e in w.serving_endpoints.list()]
out["sdk_warnings"] = warnings.seen
print(json.dumps(out), flush=True)
# Leave without the interpreter's teardown (as tests/readers/delta_tables.py does).
os._exit(0)
