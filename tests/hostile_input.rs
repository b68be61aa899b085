//! Hostile input for the decoders of files and bodies that come from outside (the config, a
//! version's registry files, labels): valid documents with random bytes changed, cut or
//! repeated, and arbitrary bytes, must give an error or a value, never a panic. (The request
//! decoders and expressions have their own property tests beside their code; every decoder
//! also has a cargo-fuzz target: docs/fuzzing.md.)

mod common;

use modelgate::drift::baseline::Baseline;
use modelgate::features::spec::FeatureSpec;
use modelgate::registry::mlmodel::{MlModel, Signature};
use modelgate::settings::Settings;
use proptest::prelude::*;

fn file(path: &str) -> Vec<u8> {
    std::fs::read(common::repo().join(path)).unwrap()
}

/// A valid document with some bytes replaced, then cut, then a slice repeated.
fn mutated(seed: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    let len = seed.len();
    (
        prop::collection::vec((0..len, any::<u8>()), 0..8),
        0..=len,
        0..len,
        0..4usize,
    )
        .prop_map(move |(edits, cut, from, repeat)| {
            let mut v = seed.clone();
            for (i, b) in edits {
                v[i] = b;
            }
            v.truncate(cut);
            if from < v.len() {
                let tail = v[from..].to_vec();
                for _ in 0..repeat {
                    v.extend_from_slice(&tail);
                }
            }
            v
        })
}

fn settings(bytes: &[u8]) {
    if let Ok(s) = serde_yaml::from_slice::<Settings>(bytes) {
        let _ = s.validate();
    }
}

fn mlmodel(bytes: &[u8]) {
    if let Ok(m) = serde_yaml::from_slice::<MlModel>(bytes) {
        if let Some(raw) = &m.signature {
            let _ = Signature::parse(raw);
        }
    }
}

fn baseline(bytes: &[u8]) {
    if let Ok(b) = Baseline::parse(bytes) {
        let _ = modelgate::drift::profile::Profiler::compile(&b);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn config_files(bytes in mutated(file("config/demo.yaml"))) {
        settings(&bytes);
    }

    #[test]
    fn feature_specs(bytes in mutated(file("models/transactions/1/feature_spec.yaml"))) {
        let _ = serde_yaml::from_slice::<FeatureSpec>(&bytes);
    }

    #[test]
    fn mlmodel_files(bytes in mutated(file("models/transactions/1/MLmodel"))) {
        mlmodel(&bytes);
    }

    #[test]
    fn baselines(bytes in mutated(file("models/transactions/1/baseline.json"))) {
        baseline(&bytes);
    }

    #[test]
    fn label_bodies(bytes in mutated(br#"{"labels": [{"request_id": "a", "row_index": 0, "label": 1}, {"keys": {"CustomerID": 1240}, "timestamp": "2026-11-22T10:19:05Z", "label": true}]}"#.to_vec())) {
        let _ = modelgate::inference_log::labels::parse(&bytes, 0);
    }

    #[test]
    fn arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        settings(&bytes);
        mlmodel(&bytes);
        baseline(&bytes);
        let _ = serde_yaml::from_slice::<FeatureSpec>(&bytes);
        let _ = modelgate::inference_log::labels::parse(&bytes, 0);
    }
}
