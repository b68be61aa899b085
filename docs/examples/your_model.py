"""The walkthrough of docs/your-model.md as one script: a scikit-learn pipeline (scaler, one-hot
encoder, gradient-boosted trees) trained on a small synthetic fraud table, exported to ONNX with
skl2onnx's defaults (ZipMap included), logged with mlflow.onnx.log_model, registered as `fraud`
and aliased `champion`. Run it with MLFLOW_TRACKING_URI pointing at your tracking server.

    python docs/examples/your_model.py            # version 1 -> champion
    python docs/examples/your_model.py --retrain  # version 2 -> champion (the rollout)

It writes what the pipeline predicts for a few held-out rows (`--expect FILE`): a scoring body
and scikit-learn's own probabilities, to compare the gateway's answers with.
"""
import argparse
import json

import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from skl2onnx import to_onnx
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

NAME = "fraud"
NUMERIC = ["amount", "account_age_days"]
CATEGORICAL = ["country", "channel"]


def table(rows: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Transactions with a fraud label that depends on amount, account age and channel."""
    rng = np.random.default_rng(seed)
    x = pd.DataFrame({
        "amount": rng.lognormal(4.0, 1.0, rows).round(2),
        "account_age_days": rng.integers(0, 3000, rows).astype(np.int64),
        "country": rng.choice(["DE", "FR", "NL", "US"], rows),
        "channel": rng.choice(["web", "app", "pos"], rows, p=[0.5, 0.3, 0.2]),
    })
    score = 0.015 * x["amount"] - 0.002 * x["account_age_days"] + (x["channel"] == "web") * 1.5
    y = (score + rng.normal(0, 1.0, rows) > 1.0).astype(np.int64).to_numpy()
    return x, y


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--retrain", action="store_true", help="train version 2 (more trees)")
    ap.add_argument("--expect", help="write a scoring body and scikit-learn's probabilities here")
    args = ap.parse_args()

    x, y = table(4000, seed=7)
    pipeline = Pipeline([
        ("prepare", ColumnTransformer([
            ("scale", StandardScaler(), NUMERIC),
            ("one_hot", OneHotEncoder(handle_unknown="ignore"), CATEGORICAL),
        ])),
        ("trees", GradientBoostingClassifier(n_estimators=80 if args.retrain else 40, random_state=0)),
    ])
    pipeline.fit(x, y)

    # skl2onnx's defaults: one input per column, and the probabilities through a ZipMap. The
    # amounts go in as float32 (ONNX's ZipMap takes float probabilities, and float64 columns
    # would make them double).
    as_onnx_sees = x.astype({"amount": np.float32})
    onnx_model = to_onnx(pipeline, as_onnx_sees[:1], target_opset={"": 17, "ai.onnx.ml": 3})
    with mlflow.start_run():
        info = mlflow.onnx.log_model(
            onnx_model, name="model", input_example=as_onnx_sees.head(3),
            registered_model_name=NAME,
        )
    version = info.registered_model_version
    MlflowClient().set_registered_model_alias(NAME, "champion", version)
    print(f"registered {NAME} version {version} as champion")

    if args.expect:
        held, _ = table(50, seed=11)
        body = {"dataframe_split": json.loads(held.to_json(orient="split", index=False))}
        held = held.astype({"amount": np.float32})
        with open(args.expect, "w") as f:
            json.dump({
                "version": str(version),
                "body": body,
                "labels": pipeline.predict(held).tolist(),
                "probabilities": pipeline.predict_proba(held)[:, 1].tolist(),
            }, f)


if __name__ == "__main__":
    main()
