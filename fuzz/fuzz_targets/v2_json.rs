//! Open Inference Protocol V2 infer bodies: decode, then validate as the request path does.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(req) = modelgate::protocol::v2::decode(data) {
        let _ = req.frame.validate(10_000);
    }
});
