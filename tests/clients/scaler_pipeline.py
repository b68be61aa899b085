"""A numeric scikit-learn pipeline (StandardScaler, LogisticRegression) exported with skl2onnx's
defaults and saved as an MLflow model folder, with what scikit-learn predicts for a few rows.

Usage: python scaler_pipeline.py MODEL_DIR EXPECT_JSON
"""
import json
import sys

import mlflow
import numpy as np
import pandas as pd
from skl2onnx import to_onnx
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

rng = np.random.default_rng(3)
x = pd.DataFrame({
    "amount": rng.lognormal(4.0, 1.0, 2000).astype(np.float32),
    "account_age_days": rng.integers(0, 3000, 2000).astype(np.float32),
})
y = ((0.01 * x["amount"] - 0.001 * x["account_age_days"] + rng.normal(0, 1, 2000)) > 0.5).astype(int)
pipeline = make_pipeline(StandardScaler(), LogisticRegression()).fit(x, y)
onnx_model = to_onnx(pipeline, x[:1], target_opset={"": 17, "ai.onnx.ml": 3})
mlflow.onnx.save_model(onnx_model, sys.argv[1], input_example=x.head(3))
held = x.sample(30, random_state=1)
with open(sys.argv[2], "w") as f:
    json.dump({
        "body": {"dataframe_split": json.loads(held.to_json(orient="split", index=False))},
        "labels": pipeline.predict(held).tolist(),
        "probabilities": pipeline.predict_proba(held)[:, 1].tolist(),
    }, f)
