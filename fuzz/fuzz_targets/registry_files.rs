//! Registry files a version ships: MLmodel (and its signature) and expected_output.json.
#![no_main]
use modelgate::registry::mlmodel::{MlModel, Signature};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(mlmodel) = serde_yaml::from_slice::<MlModel>(data) {
        if let Some(raw) = &mlmodel.signature {
            let _ = Signature::parse(raw);
        }
    }
    let _ = serde_json::from_slice::<serde_json::Value>(data);
});
