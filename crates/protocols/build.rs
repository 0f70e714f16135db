//! Compiles every `.proto` file under `proto/` into Rust (prost messages, tonic services) with protox,
//! a pure-Rust protobuf compiler, so building gatewayd never needs a system `protoc`.

use std::path::{Path, PathBuf};

fn proto_files(dir: &Path, found: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            proto_files(&path, found)?;
        } else if path.extension().is_some_and(|ext| ext == "proto") {
            found.push(path);
        }
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = Path::new("proto");
    println!("cargo:rerun-if-changed={}", root.display());
    let mut files = Vec::new();
    if root.is_dir() {
        proto_files(root, &mut files)?;
    }
    files.sort();
    if files.is_empty() {
        return Ok(());
    }
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
    }
    let descriptors = protox::compile(&files, [root])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .bytes(".")
        .codec_path("crate::messageloop::grpc_codec::SmallBufferCodec")
        .compile_fds(descriptors)?;
    Ok(())
}
