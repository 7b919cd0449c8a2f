//! Compresses the shipped OFAC snapshot (`data/ofac`, ~6 MB of CSV) into the binary as DEFLATE
//! streams (~1 MB), so `serve` screens from any working directory with nothing beside the binary.
//! Done here rather than committing a compressed copy: `data/ofac` stays the one reviewable source.
//! The vendored Swagger UI (`assets/swagger-ui`, ~1.9 MB) is gzipped here for the same reason, so
//! `/docs` sends ~0.5 MB to a browser that accepts gzip.

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
    println!("cargo::rerun-if-changed=assets/swagger-ui");
    for name in ["swagger-ui-bundle.js", "swagger-ui.css"] {
        let bytes = std::fs::read(Path::new("assets/swagger-ui").join(name)).expect("assets/swagger-ui");
        std::fs::write(out.join(format!("{name}.gz")), gzip(&bytes)).expect("write to OUT_DIR");
    }
}

/// RFC 1952: a ten-byte header, the DEFLATE stream, then CRC-32 and length. By hand because
/// miniz_oxide (already here for the snapshot) writes only the stream, and a gzip crate for twelve
/// lines of framing would be one more dependency.
fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 2, 255];
    out.extend(miniz_oxide::deflate::compress_to_vec(bytes, 9));
    out.extend(crc32(bytes).to_le_bytes());
    out.extend((bytes.len() as u32).to_le_bytes());
    out
}

/// CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320), bit by bit: run once per build.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}
