"""Drives the gateway's serving-endpoints API with databricks-sdk, unmodified, as a user would,
and prints one JSON document of what each call returned.

Usage: python databricks_sdk_endpoints.py ENDPOINT BODY_JSON
with DATABRICKS_HOST (the gateway's URL) and DATABRICKS_TOKEN in the environment. BODY_JSON is a
`dataframe_split` scoring body for version 1 of the demo model `transactions`.
"""
import json
import os
import sys
from datetime import timedelta

from databricks.sdk import WorkspaceClient
from databricks.sdk.service.serving import (
    AutoCaptureConfigInput,
    DataframeSplitInput,
    EndpointCoreConfigInput,
    EndpointTag,
    Route,
    ServedEntityInput,
    ServingModelWorkloadType,
    TrafficConfig,
)

name, body = sys.argv[1], json.loads(sys.argv[2])
w = WorkspaceClient(host=os.environ["DATABRICKS_HOST"], token=os.environ["DATABRICKS_TOKEN"])
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
w.serving_endpoints.delete(name)
out["after_delete"] = [e.name for e in w.serving_endpoints.list()]
print(json.dumps(out), flush=True)
# Leave without the interpreter's teardown (as tests/readers/delta_tables.py does).
os._exit(0)
