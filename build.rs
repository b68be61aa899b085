//! Compiles proto/inference.proto (the Open Inference Protocol's gRPC service) into Rust with
//! protox, a protobuf compiler in Rust: no `protoc` is needed to build.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/inference.proto");
    let descriptors = protox::compile(["proto/inference.proto"], ["proto"])?;
    tonic_prost_build::configure()
        // Raw tensors as `Bytes`: an answer's outputs are slices of its body, not copies.
        .bytes(".inference")
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}
