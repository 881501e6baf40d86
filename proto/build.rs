//! Compiles the gNMI protos with protox (pure Rust, no system `protoc`) and generates the
//! prost messages plus tonic client and server.

const PROTO_DIR: &str = "proto";
const PROTOS: [&str; 2] = ["proto/gnmi.proto", "proto/gnmi_ext.proto"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    let fds = protox::compile(PROTOS, [PROTO_DIR])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // Small per-RPC buffers: see src/codec.rs.
        .codec_path("crate::codec::LeanCodec")
        .compile_fds(fds)?;
    Ok(())
}
