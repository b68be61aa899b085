//! docs/your-model.md, run: a scikit-learn pipeline (scaler, one-hot encoder, gradient-boosted
//! trees) exported with skl2onnx's defaults (its probabilities through a ZipMap), logged to a
//! real `mlflow server` with `mlflow.onnx.log_model` and aliased `champion`, is served with one
//! command; its answers equal scikit-learn's, and moving the alias rolls out version 2.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::mlflow::MlflowServer;
use common::*;
use serde_json::Value;

/// `docs/examples/your_model.py ARGS --expect FILE` against `server`, with `env`; what it
/// expects.
fn train(
    server: &MlflowServer,
    work: &Path,
    args: &[&str],
    expect: &str,
    env: &[(&str, &str)],
) -> Value {
    let expect = work.join(expect);
    succeed(
        Command::new(train_python())
            .arg(repo().join("docs/examples/your_model.py"))
            .args(args)
            .arg("--expect")
            .arg(&expect)
            .env("MLFLOW_TRACKING_URI", &server.uri)
            // MLflow's telemetry thread edits os.environ while requests iterates it (a
            // KeyError on `_MLFLOW_TELEMETRY_SESSION_ID` now and then); not what is tested.
            .env("MLFLOW_DISABLE_TELEMETRY", "true")
            .envs(env.iter().copied())
            .current_dir(work),
    );
    serde_json::from_slice(&std::fs::read(expect).unwrap()).unwrap()
}

/// The gateway's answers to the expected rows equal scikit-learn's labels and probabilities.
fn answers_as_scikit_learn_does(gw: &Gateway, expect: &Value) {
    answers_on("fraud", gw, expect)
}

fn answers_on(endpoint: &str, gw: &Gateway, expect: &Value) {
    let reply = gw.invoke(endpoint, &expect["body"]);
    assert_eq!(reply.status, 200, "{}", reply.text);
    if let Some(version) = expect.get("version") {
        assert_eq!(
            reply.header("served-model-version").as_deref(),
            version.as_str()
        );
    }
    let predictions = reply.json()["predictions"].as_array().unwrap().clone();
    let labels = expect["labels"].as_array().unwrap();
    let probabilities = expect["probabilities"].as_array().unwrap();
    assert_eq!(predictions.len(), labels.len());
    for (i, p) in predictions.iter().enumerate() {
        // As MLflow's pyfunc answers for a ZipMap model: each output by name, a map per row.
        assert_eq!(p["output_label"], labels[i], "row {i}: {p}");
        let got = p["output_probability"]["1"].as_f64().unwrap();
        let want = probabilities[i].as_f64().unwrap();
        assert!((got - want).abs() <= 1e-5, "row {i}: {got} against {want}");
        let other = p["output_probability"]["0"].as_f64().unwrap();
        assert!((got + other - 1.0).abs() <= 1e-5, "row {i}: {p}");
    }
}

/// The walkthrough against `server`; `env` reaches the training script and the gateway (the
/// artifact store's endpoint and credentials, when there is one).
fn walkthrough(server: &MlflowServer, env: &[(&str, &str)]) {
    let work = tempfile::tempdir().unwrap();
    let v1 = train(server, work.path(), &[], "v1.json", env);
    assert_eq!(v1["version"], "1");
    let gw = server.serve_alias("fraud", "champion", work.path(), env);
    answers_as_scikit_learn_does(&gw, &v1);

    // The rollout: version 2 registered, the alias moved; the gateway follows by itself.
    let v2 = train(server, work.path(), &["--retrain"], "v2.json", env);
    assert_eq!(v2["version"], "2");
    wait_for("version 2 to serve", Duration::from_secs(60), || {
        let version = gw
            .invoke("fraud", &v2["body"])
            .header("served-model-version");
        (version.as_deref() == Some("2")).then_some(())
    });
    answers_as_scikit_learn_does(&gw, &v2);
}

#[test]
fn a_scikit_learn_pipeline_is_served_with_one_command_and_rolled_out_by_its_alias() {
    walkthrough(&MlflowServer::start(), &[]);
}

/// The same with a tracking server that does not proxy artifacts: the client writes them to an
/// S3-compatible store (moto's server), and the gateway reads them from there itself.
#[test]
fn a_model_whose_artifacts_are_in_s3_is_served_from_there() {
    let s3 = common::s3::MotoServer::start(&delta_python());
    let bucket = s3.create_bucket("mlflow-artifacts");
    let env = [
        ("MLFLOW_S3_ENDPOINT_URL", s3.endpoint.as_str()),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_DEFAULT_REGION", "us-east-1"),
        ("AWS_REGION", "us-east-1"),
    ];
    let server = MlflowServer::start_with_artifact_root(&format!("s3://{bucket}/mlflow"), &env);
    walkthrough(&server, &env);
}

/// The pure-Rust engine alone (no ONNX Runtime) serves skl2onnx's default export of a numeric
/// pipeline: its FeatureVectorizer and Scaler run as standard ops, its ZipMap is cut, and the
/// answers equal scikit-learn's.
#[test]
fn a_numeric_pipeline_is_served_by_the_pure_rust_engine_alone() {
    let work = tempfile::tempdir().unwrap();
    let (model, expect) = (work.path().join("scaled"), work.path().join("expect.json"));
    succeed(
        Command::new(train_python())
            .arg(repo().join("tests/clients/scaler_pipeline.py"))
            .arg(&model)
            .arg(&expect),
    );
    let expect: Value = serde_json::from_slice(&std::fs::read(&expect).unwrap()).unwrap();
    let gw = start_args_tract(&["serve", "--model", model.to_str().unwrap()], work.path())
        .unwrap_or_else(|e| panic!("did not start: {e}"));
    let state = gw.get("/api/2.0/serving-endpoints/scaled").json();
    assert_eq!(
        state["config"]["served_entities"][0]["served_engine"],
        "tract"
    );
    answers_on("scaled", &gw, &expect);
}
