//! What the benches share: the demo model loaded, and request bodies of the v1 fixture.

use std::sync::Arc;

use modelgate::endpoint::loader::{load_served_entity, LoadContext};
use modelgate::endpoint::ServedEntity;
use modelgate::engine::pool::InferencePool;
use modelgate::engine::{EngineChoice, Engines};
use modelgate::registry::file::FileRegistry;
use modelgate::settings::{InferenceSettings, ServedEntitySettings};
use serde_json::{json, Value};

#[path = "../../tests/checkout/mod.rs"]
mod checkout;
use checkout::checkout;

pub fn load(
    engines: &Engines,
    pool: &Arc<InferencePool>,
    engine: EngineChoice,
    version: &str,
) -> Arc<ServedEntity> {
    let registry = FileRegistry::new(registry_without_specs());
    let inference = InferenceSettings {
        warmup_runs: 10,
        ..InferenceSettings::default()
    };
    let ctx = LoadContext {
        registry: &registry,
        engines,
        pool,
        inference: &inference,
        default_engine: engine,
        replaces: None,
        store: None,
        metrics: None,
        journal: None,
        activity: None,
    };
    let mut cfg = ServedEntitySettings::new("transactions", version);
    cfg.engine = Some(engine);
    load_served_entity(&ctx, &cfg, version)
        .expect("demo model loads")
        .entity
}

/// The demo registry with its versions' feature specs left out: the bench sends the model's
/// own columns (the feature join has its own loadtest, loadtests/features.sh).
fn registry_without_specs() -> std::path::PathBuf {
    static DIR: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let dir = tempfile::tempdir().expect("a temp dir");
        let from = checkout().join("models/transactions");
        let to = dir.path().join("transactions");
        for version in ["1", "2"] {
            std::fs::create_dir_all(to.join(version)).expect("a version folder");
            for entry in std::fs::read_dir(from.join(version)).expect("the demo registry") {
                let entry = entry.expect("a file");
                if entry.file_name() != "feature_spec.yaml" {
                    std::fs::copy(entry.path(), to.join(version).join(entry.file_name()))
                        .expect("copying the demo registry");
                }
            }
        }
        dir
    });
    dir.path().to_owned()
}

/// `rows` rows of the v1 fixture as a `dataframe_split` body.
pub fn body(rows: usize) -> Vec<u8> {
    let path = checkout().join("tests/fixtures/transactions_v1_cases.json");
    let cases: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let data: Vec<Value> = cases["data"]
        .as_array()
        .unwrap()
        .iter()
        .cycle()
        .take(rows)
        .cloned()
        .collect();
    serde_json::to_vec(&json!({"dataframe_split": {"columns": cases["columns"], "data": data}}))
        .unwrap()
}
