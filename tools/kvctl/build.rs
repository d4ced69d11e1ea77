//! Compiles the vendored Kubernetes `generated.proto` files (proto/k8s.io, see proto/README.md)
//! with protox (no system protoc) into one encoded `FileDescriptorSet`, `$OUT_DIR/kubernetes.fds`.
//!
//! `src/render/kube_schema.rs` embeds that set and decodes objects stored by kube-apiserver with
//! prost-reflect; nothing is generated as Rust code.

use std::path::{Path, PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let mut protos = Vec::new();
    collect_protos(Path::new("proto/k8s.io"), &mut protos)?;
    // Sorted so that the descriptor set, and so the build, is reproducible.
    protos.sort();
    let mut compiler = protox::Compiler::new(["proto"])?;
    compiler.include_source_info(false).include_imports(true);
    compiler.open_files(&protos)?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?).join("kubernetes.fds");
    std::fs::write(out, compiler.encode_file_descriptor_set())?;
    Ok(())
}

fn collect_protos(dir: &Path, protos: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_protos(&path, protos)?;
        } else if path.extension().is_some_and(|ext| ext == "proto") {
            protos.push(path);
        }
    }
    Ok(())
}
