"""Drives the gateway's Open Inference Protocol V2 REST with tritonclient.http, unmodified, and
prints one JSON document of what it got.

Usage: python tritonclient_http.py HOST:PORT MODEL CASES_JSON ROWS
CASES_JSON is a fixture of model columns and rows (tests/fixtures/transactions_v1_cases.json).
Each call is made with tensors as raw bytes (the client's default) and as JSON.
"""
import json
import os
import sys

import tritonclient.http as httpclient
from v2_fixture import columns

url, model, cases_path, rows = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
cases = json.load(open(cases_path))
client = httpclient.InferenceServerClient(url=url)
out = {
    "live": client.is_server_live(),
    "ready": client.is_server_ready(),
    "model_ready": client.is_model_ready(model),
    "server_metadata": client.get_server_metadata(),
    "model_metadata": client.get_model_metadata(model),
}


def inputs(binary):
    made = []
    for name, datatype, array in columns(cases, rows):
        tensor = httpclient.InferInput(name, list(array.shape), datatype)
        tensor.set_data_from_numpy(array, binary_data=binary)
        made.append(tensor)
    return made


def answer(result, names):
    got = {name: result.as_numpy(name).tolist() for name in names}
    for name, values in got.items():
        # BYTES come back as bytes objects.
        got[name] = [[v.decode() if isinstance(v, bytes) else v for v in row] if isinstance(row, list) else (row.decode() if isinstance(row, bytes) else row) for row in values]
    return got


names = ["label", "probabilities"]
# The client's defaults: raw tensors both ways, every output (binary_data_output).
out["binary"] = answer(client.infer(model, inputs(True), request_id="tc-1"), names)
# Raw tensors in, outputs asked for one by one: one as raw bytes, one as JSON.
asked = [httpclient.InferRequestedOutput("label", binary_data=True),
         httpclient.InferRequestedOutput("probabilities", binary_data=False)]
mixed = client.infer(model, inputs(True), outputs=asked)
out["mixed"] = answer(mixed, names)
out["mixed_json_part"] = mixed.get_response()
# JSON both ways.
plain = [httpclient.InferRequestedOutput(n, binary_data=False) for n in names]
out["json"] = answer(client.infer(model, inputs(False), outputs=plain), names)
print(json.dumps(out), flush=True)
os._exit(0)
