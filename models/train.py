#!/usr/bin/env python3
"""Train the demo models served by modelgate (see shared DEMO.md: card transactions).

Generates a deterministic synthetic transaction stream, computes the streaming
features (transactionCount / isTimeout over 2 minutes per customer,
MaxProductAmount over 3 minutes per product, on-demand MaxDifferenceRatio),
trains

  * version 1 ("champion"):   logistic regression, pre-drift data, tract + ORT
  * version 2 ("challenger"): gradient boosting,   post-drift data, ORT

exports each to ONNX with a hand-built preprocessing head (one input tensor per
column), and writes MLflow 3.x model directories, the registry aliases, small
online feature tables and the Rust test fixtures.

Run from anywhere:  python models/train.py [--out DIR] [--fixtures DIR]
Outputs are byte-identical on rerun (fixed seeds, uuids and timestamps).
"""

from __future__ import annotations

import argparse
import json
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import yaml
from onnx import TensorProto, helper, numpy_helper
from skl2onnx import to_onnx
from skl2onnx.common.data_types import FloatTensorType
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score
from sklearn.preprocessing import StandardScaler

SEED = 20261122
MODEL_NAME = "transactions"

# Stream layout (UTC). The drift switch flips the Beta parameters; v1 trains on
# everything before it, v2 on everything after. The stream ends at 10:30 so the
# DEMO.md example request (10:19:05) falls inside the exported feature tables.
STREAM_START = datetime(2026, 11, 21, 6, 0, 0, tzinfo=timezone.utc)
DRIFT_AT = datetime(2026, 11, 21, 20, 15, 0, tzinfo=timezone.utc)
STREAM_END = datetime(2026, 11, 22, 10, 30, 0, tzinfo=timezone.utc)

CUSTOMERS = list(range(1234, 1261))  # 27 customers
PRODUCTS = ["Product A", "Product B", "Product C"]
PRODUCT_WEIGHTS = [0.4, 0.3, 0.3]
# DEMO.md generator (values before the division by 100).
PRODUCT_PARAMS = {
    "Product A": dict(min=1000, max=25001, mean=15520, a=4, b=10),
    "Product B": dict(min=1000, max=5501, mean=35520, a=10, b=4),
    "Product C": dict(min=10000, max=40001, mean=30520, a=3, b=10),
}
DRIFT_FROM, DRIFT_TO = 10, 8  # every Beta parameter equal to 10 becomes 8 after the drift

BACKGROUND_RATE = 0.30  # legitimate transactions per second (all customers)
LEGIT_BETA_SHARE = 0.10  # share of legitimate transactions whose Amount is Beta-drawn
BURST_RATE = 0.006  # risky bursts per second
BURST_SIZE = (4, 10)  # inclusive
BURST_SPAN_S = (40.0, 120.0)

COUNT_WINDOW_MS = 120_000  # transaction_count_ft: 2 minutes
MAX_WINDOW_MS = 180_000  # product_3minute_max_price_ft: 3 minutes
HOLDOUT_SHARE = 0.2

INPUT_COLUMNS = ["Product", "Amount", "transactionCount", "isTimeout", "MaxProductAmount", "MaxDifferenceRatio"]
FEATURE_NAMES = ["Product_A", "Product_B", "Product_C", "Amount", "transactionCount", "isTimeout",
                 "MaxProductAmount", "MaxDifferenceRatio"]

# Fixed metadata so reruns are byte-identical.
MLFLOW_VERSION = "3.17.2"
PYTHON_VERSION = "3.11.7"
PIP_VERSION = "23.2.1"
SETUPTOOLS_VERSION = "65.5.0"
UUID_NAMESPACE = uuid.UUID("6f1c1f0e-6d6f-4465-6c67-617465000001")
CREATED_AT = {1: "2026-11-21 20:20:00.000000", 2: "2026-11-22 10:35:00.000000"}
ONNX_OPSET = {"": 17, "ai.onnx.ml": 3}
ONNX_IR_VERSION = 8


# --------------------------------------------------------------------------- data

def ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


def iso(ts_ms: int) -> str:
    dt = datetime.fromtimestamp(ts_ms / 1000, tz=timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts_ms % 1000:03d}Z"


def beta_params(product: str, drifted: bool) -> tuple[float, float]:
    p = PRODUCT_PARAMS[product]
    a, b = p["a"], p["b"]
    if drifted:
        a = DRIFT_TO if a == DRIFT_FROM else a
        b = DRIFT_TO if b == DRIFT_FROM else b
    return a, b


def draw_amount(rng: np.random.Generator, product: str, beta: bool, drifted: bool) -> float:
    p = PRODUCT_PARAMS[product]
    if beta:
        a, b = beta_params(product, drifted)
        raw = rng.beta(a, b) * (p["max"] - p["min"]) + p["min"]
    else:
        raw = rng.normal(p["mean"], 0.001)
    return round(raw / 100.0, 2)


def generate_stream(rng: np.random.Generator) -> list[dict]:
    """Raw transactions: background (Label 0) plus risky bursts (Label 1)."""
    start, end, drift = ms(STREAM_START), ms(STREAM_END), ms(DRIFT_AT)
    events = []  # (ts_ms, customer, product, amount, label)

    t = float(start)
    while True:
        t += rng.exponential(1000.0 / BACKGROUND_RATE)
        if t >= end:
            break
        ts = int(t)
        customer = int(rng.choice(CUSTOMERS))
        product = PRODUCTS[int(rng.choice(3, p=PRODUCT_WEIGHTS))]
        beta = rng.random() < LEGIT_BETA_SHARE
        events.append((ts, customer, product, draw_amount(rng, product, beta, ts >= drift), 0))

    t = float(start)
    while True:
        t += rng.exponential(1000.0 / BURST_RATE)
        if t >= end:
            break
        customer = int(rng.choice(CUSTOMERS))
        size = int(rng.integers(BURST_SIZE[0], BURST_SIZE[1] + 1))
        span = rng.uniform(*BURST_SPAN_S) * 1000.0
        offsets = np.sort(rng.uniform(0.0, span, size))
        offsets[0] = 0.0
        for off in offsets:
            ts = int(t + off)
            if ts >= end:
                break
            product = PRODUCTS[int(rng.choice(3, p=PRODUCT_WEIGHTS))]
            events.append((ts, customer, product, draw_amount(rng, product, True, ts >= drift), 1))

    events.sort(key=lambda e: (e[0], e[1], e[2]))
    # Make timestamps unique so windows are unambiguous.
    rows, last = [], -1
    for ts, customer, product, amount, label in events:
        ts = max(ts, last + 1)
        last = ts
        rows.append(dict(CustomerID=customer, ts=ts, Product=product, Amount=amount, Label=label))
    return rows


def compute_features(rows: list[dict]) -> None:
    """Streaming features, each computed from what the stream has seen up to the row."""
    per_customer: dict[int, list[int]] = {}
    per_product: dict[str, list[tuple[int, float]]] = {}
    for r in rows:
        ts = r["ts"]
        hist = per_customer.setdefault(r["CustomerID"], [])
        hist.append(ts)
        while hist[0] <= ts - COUNT_WINDOW_MS:
            hist.pop(0)
        r["transactionCount"] = len(hist)  # includes this transaction
        r["isTimeout"] = len(hist) == 1  # no other event of the customer in the window

        win = per_product.setdefault(r["Product"], [])
        win.append((ts, r["Amount"]))
        while win[0][0] <= ts - MAX_WINDOW_MS:
            win.pop(0)
        mx = max(a for _, a in win)
        r["MaxProductAmount"] = mx
        r["MaxDifferenceRatio"] = round((mx - r["Amount"]) / mx, 2)


def to_matrix(rows: list[dict]) -> np.ndarray:
    x = np.zeros((len(rows), 8), dtype=np.float32)
    for i, r in enumerate(rows):
        x[i, PRODUCTS.index(r["Product"])] = 1.0
        x[i, 3] = r["Amount"]
        x[i, 4] = r["transactionCount"]
        x[i, 5] = 1.0 if r["isTimeout"] else 0.0
        x[i, 6] = r["MaxProductAmount"]
        x[i, 7] = r["MaxDifferenceRatio"]
    return x


def feeds(rows: list[dict]) -> dict[str, np.ndarray]:
    col = lambda name, dt: np.array([[r[name]] for r in rows], dtype=dt)  # noqa: E731
    return {
        "Product": col("Product", object),
        "Amount": col("Amount", np.float32),
        "transactionCount": col("transactionCount", np.int64),
        "isTimeout": col("isTimeout", np.bool_),
        "MaxProductAmount": col("MaxProductAmount", np.float32),
        "MaxDifferenceRatio": col("MaxDifferenceRatio", np.float32),
    }


def input_row(r: dict) -> list:
    return [r["Product"], r["Amount"], r["transactionCount"], r["isTimeout"], r["MaxProductAmount"],
            r["MaxDifferenceRatio"]]


# --------------------------------------------------------------------------- models

def train_v1(x: np.ndarray, y: np.ndarray) -> tuple[LogisticRegression, dict]:
    scaler = StandardScaler().fit(x.astype(np.float64))
    lr = LogisticRegression(C=1.0, max_iter=2000).fit(scaler.transform(x.astype(np.float64)), y)
    # Fold the standardisation into the coefficients: tract has no Scaler op.
    coef = lr.coef_[0] / scaler.scale_
    intercept = lr.intercept_[0] - float(np.sum(lr.coef_[0] * scaler.mean_ / scaler.scale_))
    bare = LogisticRegression()
    bare.classes_ = np.array([0, 1])
    bare.coef_ = coef.reshape(1, -1)
    bare.intercept_ = np.array([intercept])
    bare.n_features_in_ = 8
    bare.n_iter_ = lr.n_iter_
    info = {"standardised_coef": dict(zip(FEATURE_NAMES, np.round(lr.coef_[0], 3).tolist())),
            "raw_coef": dict(zip(FEATURE_NAMES, np.round(coef, 5).tolist())),
            "intercept": round(float(intercept), 5)}
    return bare, info


def train_v2(x: np.ndarray, y: np.ndarray) -> GradientBoostingClassifier:
    return GradientBoostingClassifier(n_estimators=120, max_depth=3, learning_rate=0.1,
                                      random_state=SEED).fit(x, y)


def preprocessing_nodes() -> tuple[list, list, list]:
    """Graph head: six [N, 1] column tensors -> float features [N, 8]."""
    n = "N"
    inputs = [
        helper.make_tensor_value_info("Product", TensorProto.STRING, [n, 1]),
        helper.make_tensor_value_info("Amount", TensorProto.FLOAT, [n, 1]),
        helper.make_tensor_value_info("transactionCount", TensorProto.INT64, [n, 1]),
        helper.make_tensor_value_info("isTimeout", TensorProto.BOOL, [n, 1]),
        helper.make_tensor_value_info("MaxProductAmount", TensorProto.FLOAT, [n, 1]),
        helper.make_tensor_value_info("MaxDifferenceRatio", TensorProto.FLOAT, [n, 1]),
    ]
    inits = [numpy_helper.from_array(np.array([[0, 1, 2]], dtype=np.int64), "pre_product_ids")]
    nodes = [
        helper.make_node("CategoryMapper", ["Product"], ["pre_product_index"], name="pre_category_mapper",
                         domain="ai.onnx.ml", cats_strings=PRODUCTS, cats_int64s=[0, 1, 2], default_int64=-1),
        helper.make_node("Equal", ["pre_product_index", "pre_product_ids"], ["pre_product_onehot_bool"],
                         name="pre_onehot_equal"),
        helper.make_node("Cast", ["pre_product_onehot_bool"], ["pre_product_onehot"], name="pre_onehot_cast",
                         to=TensorProto.FLOAT),
        helper.make_node("Cast", ["transactionCount"], ["pre_transaction_count"], name="pre_count_cast",
                         to=TensorProto.FLOAT),
        helper.make_node("Cast", ["isTimeout"], ["pre_is_timeout"], name="pre_timeout_cast", to=TensorProto.FLOAT),
        helper.make_node("Concat", ["pre_product_onehot", "Amount", "pre_transaction_count", "pre_is_timeout",
                                    "MaxProductAmount", "MaxDifferenceRatio"], ["features"],
                         name="pre_concat", axis=1),
    ]
    return inputs, inits, nodes


def export(model, version: int) -> onnx.ModelProto:
    clf = to_onnx(model, initial_types=[("features", FloatTensorType([None, 8]))],
                  options={id(model): {"zipmap": False}}, target_opset=dict(ONNX_OPSET))
    inputs, inits, nodes = preprocessing_nodes()
    for node in clf.graph.node:
        assert not node.name.startswith("pre_")
        nodes.append(node)
    outputs = [
        helper.make_tensor_value_info("label", TensorProto.INT64, ["N"]),
        helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 2]),
    ]
    assert [o.name for o in clf.graph.output] == ["label", "probabilities"], clf.graph.output
    graph = helper.make_graph(nodes, f"{MODEL_NAME}_v{version}", inputs, outputs,
                              initializer=inits + list(clf.graph.initializer))
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in ONNX_OPSET.items()],
                          producer_name="modelgate-train", producer_version="1")
    m.ir_version = ONNX_IR_VERSION
    m.doc_string = (f"modelgate demo model '{MODEL_NAME}' version {version}: "
                    f"{type(model).__name__} on {', '.join(FEATURE_NAMES)}")
    onnx.checker.check_model(m, full_check=True)
    return m


def run(session: ort.InferenceSession, rows: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    label, proba = session.run(["label", "probabilities"], feeds(rows))
    return label, proba


# --------------------------------------------------------------------------- MLflow files

# Exactly what mlflow.models.infer_signature writes for a pandas input frame and a dict of
# numpy outputs (ONNX Runtime returns one array per graph output).
SIGNATURE_INPUTS = json.dumps([
    {"type": "string", "name": "Product", "required": True},
    {"type": "double", "name": "Amount", "required": True},
    {"type": "long", "name": "transactionCount", "required": True},
    {"type": "boolean", "name": "isTimeout", "required": True},
    {"type": "double", "name": "MaxProductAmount", "required": True},
    {"type": "double", "name": "MaxDifferenceRatio", "required": True},
])
SIGNATURE_OUTPUTS = json.dumps([
    {"name": "label", "type": "tensor", "tensor-spec": {"dtype": "int64", "shape": [-1]}},
    {"name": "probabilities", "type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1, 2]}},
])


def write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj) + "\n")


def write_mlflow_model(dest: Path, version: int, model: onnx.ModelProto, example: list[dict],
                       session: ort.InferenceSession) -> None:
    """The directory mlflow.onnx.log_model (MLflow 3.x) writes, with fixed uuid and timestamp."""
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "model.onnx").write_bytes(model.SerializeToString())
    split = {"columns": INPUT_COLUMNS, "data": [input_row(r) for r in example]}
    (dest / "input_example.json").write_text(json.dumps(split))
    (dest / "serving_input_example.json").write_text(json.dumps({"dataframe_split": split}, indent=2))
    # MLflow counts the model and the examples, written before the environment files.
    size = sum((dest / f).stat().st_size for f in ("model.onnx", "input_example.json", "serving_input_example.json"))

    reqs = [f"mlflow=={MLFLOW_VERSION}", f"onnx=={onnx.__version__}", f"onnxruntime=={ort.__version__}"]
    (dest / "requirements.txt").write_text("\n".join(reqs))
    conda = {"channels": ["conda-forge"],
             "dependencies": [f"python={PYTHON_VERSION}", f"pip<={PIP_VERSION}", {"pip": reqs}],
             "name": "mlflow-env"}
    (dest / "conda.yaml").write_text(yaml.safe_dump(conda, default_flow_style=False))
    env = {"python": PYTHON_VERSION,
           "build_dependencies": [f"pip=={PIP_VERSION}", f"setuptools=={SETUPTOOLS_VERSION}", "wheel"],
           "dependencies": ["-r requirements.txt"]}
    (dest / "python_env.yaml").write_text(yaml.safe_dump(env, default_flow_style=False, sort_keys=False))

    mlmodel = {
        "artifact_path": "model",
        "flavors": {
            "onnx": {"code": None, "data": "model.onnx", "onnx_session_options": None,
                     "onnx_version": onnx.__version__,
                     "providers": ["CUDAExecutionProvider", "CPUExecutionProvider"]},
            "python_function": {"data": "model.onnx",
                                "env": {"conda": "conda.yaml", "virtualenv": "python_env.yaml"},
                                "loader_module": "mlflow.onnx", "python_version": PYTHON_VERSION},
        },
        "is_signature_from_type_hint": False,
        "mlflow_version": MLFLOW_VERSION,
        "model_id": None,
        "model_size_bytes": size,
        "model_uuid": uuid.uuid5(UUID_NAMESPACE, f"{MODEL_NAME}/{version}").hex,
        "prompts": None,
        "saved_input_example_info": {"artifact_path": "input_example.json", "pandas_orient": "split",
                                     "serving_input_path": "serving_input_example.json", "type": "dataframe"},
        "signature": {"inputs": SIGNATURE_INPUTS, "outputs": SIGNATURE_OUTPUTS, "params": None},
        "type_hint_from_example": False,
        "utc_time_created": CREATED_AT[version],
    }
    (dest / "MLmodel").write_text(yaml.safe_dump(mlmodel, default_flow_style=False))

    # Ours, not MLflow's: what the model needs looked up and computed beyond the request.
    (dest / "feature_spec.yaml").write_text(FEATURE_SPEC)
    # Ours, not MLflow's: what the served model must answer for the input example.
    label, proba = run(session, example)
    write_json(dest / "expected_output.json",
               {"predictions": [{"label": int(lb), "probability": float(p[1])} for lb, p in zip(label, proba)]})


# --------------------------------------------------------------------------- feature spec

# What the gateway looks up and computes for a request that carries only what a caller knows
# (modelgate's docs/features.md). The same semantics as join_request below.
FEATURE_SPEC = f"""# Written by models/train.py: what the model needs beyond the request.
request_columns:
  - {{name: CustomerID, type: int}}
  - {{name: TransactionTimestamp, type: timestamp}}
  - {{name: Product, type: string}}
  - {{name: Amount, type: float}}
request_timestamp: TransactionTimestamp
lookups:
  - table: transaction_count_ft
    lookup_key: [CustomerID]
    features:
      # No event in the last 2 minutes (or an unknown customer): none counted, timed out.
      - {{name: transactionCount, type: int, default: 0, on_missing: default, max_age_seconds: {COUNT_WINDOW_MS // 1000}}}
      - {{name: isTimeout, type: bool, default: true, on_missing: default, max_age_seconds: {COUNT_WINDOW_MS // 1000}}}
  - table: product_3minute_max_price_ft
    lookup_key: [Product]
    timestamp_lookup_key: TransactionTimestamp
    features:
      - {{name: MaxProductAmount, type: float, on_missing: reject}}
functions:
  - name: MaxDifferenceRatio
    expression: round((max_price - amount) / max_price, 2)
    inputs: {{max_price: MaxProductAmount, amount: Amount}}
    type: float
    on_null: default
    default: 0.0
model_columns: [{", ".join(INPUT_COLUMNS)}]
"""


def parse_iso(text: str) -> int:
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def join_request(req: dict, counts: dict[int, dict], prices: dict[str, list[dict]]) -> dict | None:
    """The joined row of a raw request, as FEATURE_SPEC says; None when no price row is old enough."""
    ts = parse_iso(req["TransactionTimestamp"])
    c = counts.get(req["CustomerID"])
    if c is None or ts - parse_iso(c["eventTimestamp"]) > COUNT_WINDOW_MS:
        count, timeout = 0, True
    else:
        count, timeout = c["transactionCount"], c["isTimeout"]
    older = [p for p in prices.get(req["Product"], []) if parse_iso(p["LookupTimestamp"]) <= ts]
    if not older:
        return None
    mx = max(older, key=lambda p: parse_iso(p["LookupTimestamp"]))["MaxProductAmount"]
    ratio = round((mx - req["Amount"]) / mx, 2) if mx else 0.0
    return {"Product": req["Product"], "Amount": req["Amount"], "transactionCount": count,
            "isTimeout": timeout, "MaxProductAmount": mx, "MaxDifferenceRatio": ratio}


def write_join_fixture(path: Path, tables: Path, sessions: dict, rng: np.random.Generator) -> None:
    """Raw requests (what a caller knows), their rows joined from the feature table files, and
    both versions' predictions on the joined rows: the gateway's join must give the same."""
    counts = {}
    for line in (tables / "transaction_count_ft.jsonl").read_text().splitlines():
        row = json.loads(line)
        counts[row["CustomerID"]] = row
    prices: dict[str, list[dict]] = {}
    for line in (tables / "product_3minute_max_price_ft.jsonl").read_text().splitlines():
        row = json.loads(line)
        prices.setdefault(row["Product"], []).append(row)
    requests = [{"CustomerID": 1240, "TransactionTimestamp": "2026-11-22T10:19:05.123Z",
                 "Product": "Product A", "Amount": 132.75}]
    start, end = ms(STREAM_END) - 30 * 60_000, ms(STREAM_END) + 5 * 60_000
    while len(requests) < 64:
        product = PRODUCTS[int(rng.choice(len(PRODUCTS), p=PRODUCT_WEIGHTS))]
        customer = 1299 if len(requests) % 16 == 5 else int(rng.choice(CUSTOMERS))  # 1299: unknown
        amount = round(draw_amount(rng, product, bool(rng.random() < 0.3), True), 2)
        requests.append({"CustomerID": customer, "TransactionTimestamp": iso(int(rng.integers(start, end))),
                         "Product": product, "Amount": amount})
    joined = [join_request(r, counts, prices) for r in requests]
    assert all(j is not None for j in joined)
    out = {"columns": ["CustomerID", "TransactionTimestamp", "Product", "Amount"],
           "data": [[r["CustomerID"], r["TransactionTimestamp"], r["Product"], r["Amount"]] for r in requests],
           "joined": {"columns": INPUT_COLUMNS, "data": [input_row(j) for j in joined]}}
    for version, session in sessions.items():
        label, proba = run(session, joined)
        out[f"v{version}"] = {"label": [int(v) for v in label],
                              "probabilities": [[float(a), float(b)] for a, b in proba]}
    write_json(path, out)


# --------------------------------------------------------------------------- feature tables, fixtures

def write_feature_tables(dest: Path, rows: list[dict]) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    latest: dict[int, dict] = {}
    for r in rows:
        latest[r["CustomerID"]] = r
    with open(dest / "transaction_count_ft.jsonl", "w") as f:
        for cid in sorted(latest):
            r = latest[cid]
            f.write(json.dumps({"CustomerID": cid, "transactionCount": r["transactionCount"],
                                "isTimeout": r["isTimeout"], "eventTimestamp": iso(r["ts"])}) + "\n")
    # 3-minute window sliding by one minute: the row at minute m covers [m - 3 min, m),
    # so an as-of lookup (LookupTimestamp <= TransactionTimestamp) never sees the future.
    end = ms(STREAM_END)
    with open(dest / "product_3minute_max_price_ft.jsonl", "w") as f:
        for m in range(end - 60 * 60_000, end + 1, 60_000):
            for product in PRODUCTS:
                amounts = [r["Amount"] for r in rows
                           if r["Product"] == product and m - MAX_WINDOW_MS <= r["ts"] < m]
                if amounts:
                    f.write(json.dumps({"Product": product, "LookupTimestamp": iso(m),
                                        "MaxProductAmount": max(amounts)}) + "\n")


def pick_fixture_rows(rows: list[dict], rng: np.random.Generator, n: int = 64) -> list[dict]:
    chosen: list[int] = []

    def take(pred, k):
        idx = [i for i, r in enumerate(rows) if pred(r) and i not in chosen]
        for i in rng.permutation(len(idx))[:k]:
            chosen.append(idx[int(i)])

    for p in PRODUCTS:
        for label in (0, 1):
            take(lambda r, p=p, label=label: r["Product"] == p and r["Label"] == label, 3)
    take(lambda r: r["isTimeout"] and r["Label"] == 1, 2)
    take(lambda r: not r["isTimeout"] and r["Label"] == 0, 2)
    biggest = max(r["transactionCount"] for r in rows)
    take(lambda r: r["transactionCount"] == biggest, 1)
    take(lambda r: r["transactionCount"] >= 8, 2)
    take(lambda r: r["MaxDifferenceRatio"] == 0.0 and r["Label"] == 1, 2)
    take(lambda r: True, n - len(chosen))
    return [rows[i] for i in sorted(chosen)]


def pick_example_rows(rows: list[dict], rng: np.random.Generator) -> list[dict]:
    """Five rows for the MLflow input example: one legitimate row per product, two risky ones."""
    picked = []
    for pred in [lambda r: r["Product"] == "Product A" and r["Label"] == 0,
                 lambda r: r["Product"] == "Product B" and r["Label"] == 0 and r["isTimeout"],
                 lambda r: r["Product"] == "Product C" and r["Label"] == 0,
                 lambda r: r["Label"] == 1 and r["transactionCount"] >= 5,
                 lambda r: r["Label"] == 1 and r["Product"] == "Product C"]:
        idx = [i for i, r in enumerate(rows) if pred(r) and i not in picked]
        picked.append(idx[int(rng.integers(len(idx)))])
    return [rows[i] for i in sorted(picked)]


def write_fixture(path: Path, rows: list[dict], session: ort.InferenceSession) -> None:
    label, proba = run(session, rows)
    write_json(path, {"columns": INPUT_COLUMNS, "data": [input_row(r) for r in rows],
                      "label": [int(v) for v in label],
                      "probabilities": [[float(a), float(b)] for a, b in proba]})


# --------------------------------------------------------------------------- baseline

BASELINE_FORMAT_VERSION = 1
BASELINE_QUANTILES = 20  # edges at the 0, 5, ..., 100 % quantiles
BASELINE_TOP_CATEGORIES = 20
NUMERIC_COLUMNS = {"Amount", "transactionCount", "MaxProductAmount", "MaxDifferenceRatio"}


def category_text(v) -> str:
    """A categorical value as text: strings as they are, booleans true/false, integers in decimal."""
    if isinstance(v, (bool, np.bool_)):
        return "true" if v else "false"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    assert isinstance(v, str), v
    return v


def between_values(edges: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Edges that fall on a data value move off it: inner edges halfway to the next value below
    (never below the edge before them), the first and last edge outward by a float32 rounding
    margin. Model outputs repeat exact
    values (identical inputs), and another engine computes them a rounding error apart: an edge
    on such a value would move a whole atom between bins."""
    distinct = np.unique(v)
    out = edges.copy()
    for i, e in enumerate(edges):
        at = int(np.searchsorted(distinct, e))
        if at >= distinct.size or distinct[at] != e:
            continue
        margin = max(abs(e), 1.0) * 1e-6
        if i == 0:
            gap = distinct[1] - e if distinct.size > 1 else margin
            out[i] = e - min(margin, gap / 2)
        elif i == len(edges) - 1:
            gap = e - distinct[at - 1] if at > 0 else margin
            out[i] = e + min(margin, gap / 2)
        else:
            out[i] = max(out[i - 1], (distinct[at - 1] + e) / 2)
    return out


def numeric_profile(values) -> dict:
    """Moments, quantile edges and the share of each bin (two open tails + inner bins)."""
    v = np.asarray(values, dtype=np.float64)
    assert v.size > 0 and np.all(np.isfinite(v))
    edges = np.unique(np.quantile(v, np.linspace(0.0, 1.0, BASELINE_QUANTILES + 1))).astype(np.float64)
    if edges.size == 1:
        edges = np.array([edges[0], edges[0]])
    edges = between_values(edges, v)
    # Bin 0: x < edges[0]; bin len(edges): x > edges[-1]; inner bin j: [edges[j-1], edges[j]),
    # with x == edges[-1] in the last inner bin.
    idx = np.minimum(np.searchsorted(edges, v, side="right"), len(edges) - 1)
    idx[v < edges[0]] = 0
    idx[v > edges[-1]] = len(edges)
    counts = np.bincount(idx, minlength=len(edges) + 1)
    return {"type": "numeric", "count": int(v.size), "null_count": 0,
            "mean": float(np.mean(v)), "std": float(np.std(v)), "min": float(np.min(v)), "max": float(np.max(v)),
            "edges": [float(e) for e in edges], "shares": [float(c / v.size) for c in counts]}


def categorical_profile(values) -> dict:
    """Shares of the most frequent categories (count descending, then value ascending) and the rest."""
    texts = [category_text(v) for v in values]
    assert texts
    counts: dict[str, int] = {}
    for t in texts:
        counts[t] = counts.get(t, 0) + 1
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    top = ranked[:BASELINE_TOP_CATEGORIES]
    rest = sum(c for _, c in ranked[BASELINE_TOP_CATEGORIES:])
    n = len(texts)
    return {"type": "categorical", "count": n, "null_count": 0,
            "categories": [{"value": t, "share": float(c / n)} for t, c in top],
            "other_share": float(rest / n)}


def write_baseline(path: Path, version: int, train: list[dict], session: ort.InferenceSession) -> None:
    """The training-data profile the gateway compares served traffic against (drift monitoring)."""
    period = "pre-drift stream (before" if version == 1 else "post-drift stream (from"
    label, proba = run(session, train)
    features = {}
    for name in INPUT_COLUMNS:
        values = [r[name] for r in train]
        features[name] = numeric_profile(values) if name in NUMERIC_COLUMNS else categorical_profile(values)
    baseline = {
        "format_version": BASELINE_FORMAT_VERSION,
        "model": MODEL_NAME,
        "version": str(version),
        "source": (f"training rows of version {version}: the {period} {iso(ms(DRIFT_AT))}), "
                   f"first {round((1 - HOLDOUT_SHARE) * 100)} % by time"),
        "rows": len(train),
        "features": features,
        "outputs": {"probability": numeric_profile([float(p) for p in proba[:, 1]]),
                    "label": categorical_profile([int(v) for v in label])},
    }
    json.dumps(baseline, allow_nan=False)  # no NaN / Infinity
    write_json(path, baseline)


# --------------------------------------------------------------------------- main

def evaluate(name: str, session: ort.InferenceSession, rows: list[dict]) -> dict:
    y = np.array([r["Label"] for r in rows])
    label, proba = run(session, rows)
    res = {"rows": len(rows), "positives": int(y.sum()), "accuracy": round(accuracy_score(y, label), 4),
           "auc": round(roc_auc_score(y, proba[:, 1]), 4), "f1": round(f1_score(y, label), 4)}
    print(f"{name}: {res}")
    return res


def sensitivity(name: str, session: ort.InferenceSession, rows: list[dict]) -> None:
    """How much a wrong join moves the prediction (mean |delta p1| on held-out rows)."""
    _, base = run(session, rows)
    for desc, change in [
        ("transactionCount=1,isTimeout=true", lambda r: {**r, "transactionCount": 1, "isTimeout": True}),
        ("transactionCount+5,isTimeout=false", lambda r: {**r, "transactionCount": r["transactionCount"] + 5,
                                                         "isTimeout": False}),
        ("MaxProductAmount=Amount (ratio 0)", lambda r: {**r, "MaxProductAmount": r["Amount"],
                                                         "MaxDifferenceRatio": 0.0}),
    ]:
        _, p = run(session, [change(r) for r in rows])
        flipped = float(np.mean((p[:, 1] >= 0.5) != (base[:, 1] >= 0.5)))
        print(f"  {name} sensitivity {desc}: mean|dp|={np.mean(np.abs(p[:, 1] - base[:, 1])):.3f} "
              f"labels flipped={flipped:.1%}")


def split(data: list[dict]) -> tuple[list[dict], list[dict]]:
    """Time-ordered split: the latest rows are held out."""
    cut = int(len(data) * (1 - HOLDOUT_SHARE))
    return data[:cut], data[cut:]


def write_training_rows(path: Path, rows: list[dict]) -> None:
    """The rows a baseline is made from, as CSV: the model's inputs, then the label (booleans
    true/false, floats at full precision), for `modelgate baseline`."""
    import csv
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(INPUT_COLUMNS + ["Label"])
        for r in rows:
            values = [r[c] for c in INPUT_COLUMNS] + [r["Label"]]
            out.writerow([("true" if v else "false") if isinstance(v, (bool, np.bool_))
                          else repr(float(v)) if isinstance(v, (float, np.floating))
                          else int(v) if isinstance(v, np.integer) else v for v in values])


def main() -> None:
    here = Path(__file__).resolve().parent
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=here, help="output folder (default: the models/ folder)")
    ap.add_argument("--fixtures", type=Path, default=here.parent / "tests" / "fixtures",
                    help="folder for the Rust test fixtures (default: tests/fixtures)")
    ap.add_argument("--training-data", type=Path, default=None,
                    help="only write each version's training rows (its inputs and Label) as "
                         "transactions_v<version>_train.csv into this folder, and stop")
    args = ap.parse_args()

    rng = np.random.default_rng(SEED)
    rows = generate_stream(rng)
    compute_features(rows)
    drift = ms(DRIFT_AT)
    pre = [r for r in rows if r["ts"] < drift]
    post = [r for r in rows if r["ts"] >= drift]
    print(f"stream: {len(rows)} rows ({len(pre)} before drift, {len(post)} after), "
          f"risky share {np.mean([r['Label'] for r in rows]):.3f}")

    if args.training_data is not None:
        for version, data in ((1, pre), (2, post)):
            write_training_rows(args.training_data / f"{MODEL_NAME}_v{version}_train.csv",
                                split(data)[0])
        return

    metrics = {}
    sessions = {}
    for version, data in ((1, pre), (2, post)):
        train, held = split(data)
        x, y = to_matrix(train), np.array([r["Label"] for r in train])
        if version == 1:
            model, info = train_v1(x, y)
            print(f"v1 logistic regression: {info}")
        else:
            model = train_v2(x, y)
            print("v2 gradient boosting feature importances:",
                  dict(zip(FEATURE_NAMES, np.round(model.feature_importances_, 3).tolist())))
        onnx_model = export(model, version)
        # One thread, as the gateway runs it: a tree ensemble's sums come out in another order
        # (float32 results a few ulps apart) with another thread count, so the baseline's
        # output profile is the gateway's, and the same on every machine.
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(onnx_model.SerializeToString(), options,
                                       providers=["CPUExecutionProvider"])
        sessions[version] = session
        # The ONNX graph must agree with sklearn on the same float32 features.
        xs = to_matrix(held)
        _, proba = run(session, held)
        assert np.allclose(proba[:, 1], model.predict_proba(xs)[:, 1], atol=1e-4)
        metrics[version] = evaluate(f"v{version} held-out", session, held)
        sensitivity(f"v{version}", session, held)

        frng = np.random.default_rng(SEED + version)
        example = pick_example_rows(held, frng)
        write_mlflow_model(args.out / MODEL_NAME / str(version), version, onnx_model, example, session)
        write_baseline(args.out / MODEL_NAME / str(version) / "baseline.json", version, train, session)
        write_fixture(args.fixtures / f"transactions_v{version}_cases.json", pick_fixture_rows(held, frng), session)

    (args.out / MODEL_NAME / "aliases.yaml").write_text("champion: 1\nchallenger: 2\n")
    write_feature_tables(args.out / "feature_tables", rows)
    write_join_fixture(args.fixtures / "transactions_join_cases.json", args.out / "feature_tables", sessions,
                       np.random.default_rng(SEED + 100))
    print("metrics:", json.dumps(metrics))


if __name__ == "__main__":
    main()
