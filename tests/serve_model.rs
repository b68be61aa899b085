//! `modelgate serve --model ...`: one model served with one command and no config file.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

fn model_folder(into: &Path) -> PathBuf {
    version_without_spec(into, "fraud model")
}

/// Runs `modelgate ARGS` to its end with no config around it: exit code and stderr.
fn refused(args: &[&str], cwd: &Path) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_modelgate"))
        .args(args)
        .current_dir(cwd)
        .env_remove("MLFLOW_TRACKING_URI")
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_model_folder_is_served_as_an_endpoint_named_after_it() {
    let work = tempfile::tempdir().unwrap();
    let folder = model_folder(work.path());
    let gw = start_args(&["serve", "--model", folder.to_str().unwrap()], work.path())
        .unwrap_or_else(|e| panic!("did not start: {e}"));
    let reply = gw.invoke("fraud-model", &one_row());
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.header("served-model-version").as_deref(), Some("1"));
    assert_eq!(reply.json()["predictions"].as_array().unwrap().len(), 1);
    // One endpoint: `/invocations` reaches it too, as `mlflow models serve` answers.
    let plain = gw.post_json("/invocations", &one_row());
    assert_eq!(plain.json(), reply.json());
    let state = gw.get("/api/2.0/serving-endpoints/fraud-model").json();
    assert_eq!(
        state["config"]["served_entities"][0]["entity_name"],
        "fraud-model"
    );

    // --name names the endpoint.
    let named = start_args(
        &[
            "serve",
            "--model",
            folder.to_str().unwrap(),
            "--name",
            "fraud",
        ],
        work.path(),
    )
    .unwrap_or_else(|e| panic!("did not start: {e}"));
    assert_eq!(named.invoke("fraud", &one_row()).status, 200);
}

#[test]
fn a_model_argument_that_cannot_be_served_is_refused_naming_the_problem() {
    let work = tempfile::tempdir().unwrap();
    let folder = model_folder(work.path());
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["--model".into(), "models:/fraud@champion".into()],
            "--registry-uri URL or MLFLOW_TRACKING_URI",
        ),
        (
            vec!["--model".into(), "models:/fraud".into()],
            "models:/NAME@ALIAS or models:/NAME/VERSION",
        ),
        (
            vec!["--model".into(), work.path().display().to_string()],
            "is not an MLflow model folder (it has no MLmodel file",
        ),
        (
            vec![
                "--model".into(),
                folder.display().to_string(),
                "--config".into(),
                repo().join("config/demo.yaml").display().to_string(),
            ],
            "the configuration names endpoints too",
        ),
    ];
    for (args, says) in cases {
        let mut all = vec!["serve"];
        all.extend(args.iter().map(String::as_str));
        all.extend(["--listen", "127.0.0.1:0"]);
        let (code, stderr) = refused(&all, work.path());
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}
