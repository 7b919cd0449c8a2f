//! Compresses the shipped OFAC snapshot (`data/ofac`, ~6 MB of CSV) into the binary as DEFLATE
//! streams (~1 MB), so `serve` screens from any working directory with nothing beside the binary.
//! Done here rather than committing a compressed copy: `data/ofac` stays the one reviewable source.

use std::path::{Path, PathBuf};

const FILES: [&str; 5] = ["sdn.csv", "alt.csv", "add.csv", "sdn_comments.csv", "PUBLISHED"];

fn main() {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let dir = Path::new("data/ofac");
    println!("cargo::rerun-if-changed=data/ofac");
    for name in FILES {
        let bytes = std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("data/ofac/{name}: {e}"));
        let packed = miniz_oxide::deflate::compress_to_vec(&bytes, 9);
        std::fs::write(out.join(format!("{name}.deflate")), packed).expect("write to OUT_DIR");
    }
}
