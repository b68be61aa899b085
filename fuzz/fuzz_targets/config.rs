//! The config file: YAML into settings, then the start-up checks.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(settings) = serde_yaml::from_slice::<modelgate::settings::Settings>(data) {
        let _ = settings.validate();
    }
});
