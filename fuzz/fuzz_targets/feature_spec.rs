//! A version's feature_spec.yaml: parsed as the registry reads it.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = serde_yaml::from_slice::<modelgate::features::spec::FeatureSpec>(data);
});
