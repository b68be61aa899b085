//! CSV scoring bodies (text/csv): decode, then validate as the request path does.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(req) = modelgate::protocol::mlflow::decode_csv(data) {
        let _ = req.frame.validate(10_000);
    }
});
