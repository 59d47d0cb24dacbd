//! Compiles the wire protocol with protox, a pure-Rust protobuf compiler,
//! so that building needs no `protoc` on the machine.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/keel_raft.proto";
    println!("cargo:rerun-if-changed={proto}");
    let descriptors = protox::compile([proto], ["proto"])?;
    tonic_prost_build::configure()
        .bytes(".keel.raft.v1")
        .compile_fds(descriptors)?;
    Ok(())
}
