//! Compiles our Kubernetes protos with protox (pure Rust, no system
//! `protoc`) into an encoded descriptor set that src/lib.rs loads into a
//! `prost_reflect::DescriptorPool`. No Rust types are generated: the API
//! server works on JSON values and transcodes dynamically.
use prost::Message;

fn main() {
    let files = ["proto/meta.proto", "proto/core.proto", "proto/apps.proto", "proto/batch.proto", "proto/other.proto"];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["proto"]).expect("protos compile");
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("k8s.fds");
    std::fs::write(out, fds.encode_to_vec()).expect("write descriptor set");
}
