//! Compiles `proto/nanny/v1` with protox (a pure-Rust protobuf compiler, so no
//! `protoc` is needed on the machine) and generates tonic clients and servers.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Read at run time: a build script binary can be reused for another
    // checkout of the crate sharing the target directory.
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let files = ["common", "snapshot", "healing", "services"]
        .map(|name| root.join(format!("nanny/v1/{name}.proto")));
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
    }

    let descriptors = protox::compile(&files, [&root])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    // The descriptor set feeds gRPC server reflection, so grpcurl can list and
    // describe every service without local .proto files.
    std::fs::write(
        out_dir.join("nanny_descriptor.bin"),
        prost::Message::encode_to_vec(&descriptors),
    )?;

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}
