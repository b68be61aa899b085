//! Bodies of the labels API and a version's baseline.json.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = modelgate::inference_log::labels::parse(data, 0);
    if let Ok(b) = modelgate::drift::baseline::Baseline::parse(data) {
        let _ = modelgate::drift::profile::ProfilePlan::compile(&b);
    }
});
