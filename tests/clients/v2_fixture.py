"""The model columns of a demo fixture (tests/fixtures/transactions_v1_cases.json) as V2
tensors: one (name, datatype, numpy array of shape [rows, 1]) per column, for the tritonclient
scripts."""
import numpy as np

TYPES = ["BYTES", "FP32", "INT64", "BOOL", "FP64", "FP64"]
DTYPES = {"BYTES": np.object_, "FP32": np.float32, "INT64": np.int64, "BOOL": np.bool_, "FP64": np.float64}


def columns(cases, rows):
    for c, name in enumerate(cases["columns"]):
        values = [cases["data"][r][c] for r in range(rows)]
        if TYPES[c] == "BYTES":
            values = [v.encode() for v in values]
        yield name, TYPES[c], np.array(values, dtype=DTYPES[TYPES[c]]).reshape(rows, 1)
