//! Compiles our CRI proto with protox (pure Rust), so no system `protoc` is needed.
fn main() {
    let files = ["proto/api.proto", "proto/health.proto"];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["proto"]).expect("protos compile");
    tonic_prost_build::configure().compile_fds(fds).expect("code generation");
}
