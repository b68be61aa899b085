"""Drives the gateway's Open Inference Protocol V2 gRPC service with tritonclient.grpc,
unmodified, and prints one JSON document of what it got.

Usage: python tritonclient_grpc.py HOST:PORT MODEL CASES_JSON ROWS [TOKEN]
CASES_JSON is a fixture of model columns and rows (tests/fixtures/transactions_v1_cases.json);
TOKEN, when given, goes in the `authorization` metadata as a bearer token. With the
environment variable MODELGATE_GRPC_CA (a CA's PEM file) it connects over TLS.
"""
import json
import os
import sys

import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException
from v2_fixture import columns

url, model, cases_path, rows = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
headers = {"authorization": f"Bearer {sys.argv[5]}"} if len(sys.argv) > 5 else None
cases = json.load(open(cases_path))
# MODELGATE_GRPC_CA: the CA's PEM file; the listener then speaks TLS.
ca = os.environ.get("MODELGATE_GRPC_CA")
if ca:
    client = grpcclient.InferenceServerClient(
        url=url, ssl=True, root_certificates=ca
    )
else:
    client = grpcclient.InferenceServerClient(url=url)
out = {
    "live": client.is_server_live(headers=headers),
    "ready": client.is_server_ready(headers=headers),
    "model_ready": client.is_model_ready(model, headers=headers),
    "server_metadata": client.get_server_metadata(headers=headers, as_json=True),
    "model_metadata": client.get_model_metadata(model, headers=headers, as_json=True),
}


def inputs():
    made = []
    for name, datatype, array in columns(cases, rows):
        tensor = grpcclient.InferInput(name, list(array.shape), datatype)
        tensor.set_data_from_numpy(array)
        made.append(tensor)
    return made


result = client.infer(model, inputs(), request_id="tg-1", headers=headers)
out["infer"] = {n: result.as_numpy(n).tolist() for n in ["label", "probabilities"]}
out["infer_id"] = result.get_response(as_json=True).get("id")
asked = [grpcclient.InferRequestedOutput("probabilities")]
out["asked"] = list(result.get_response(as_json=True).get("outputs", [{}])[0].keys())
only = client.infer(model, inputs(), outputs=asked, headers=headers)
out["only"] = [o["name"] for o in only.get_response(as_json=True)["outputs"]]
try:
    client.infer("nope", inputs(), headers=headers)
    out["missing"] = "ok"
except InferenceServerException as e:
    out["missing"] = [e.status(), e.message()]
print(json.dumps(out), flush=True)
os._exit(0)
