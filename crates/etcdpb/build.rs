//! Compiles the protos with protox (pure Rust), so no system `protoc` is needed.
fn main() {
    let files = ["proto/kv.proto", "proto/rpc.proto", "proto/skiff.proto"];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["proto"]).expect("protos compile");
    tonic_prost_build::configure()
        .bytes(".")
        .compile_fds(fds)
        .expect("code generation");
}
