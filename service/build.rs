//! Compresses the API reference script (src/routes/docs/scalar-standalone.js) at build time,
//! in parts, for `routes/docs.rs`.
//!
//! Behind an ALB, a Lambda function's whole response must stay under 1 MB, and a compressed
//! body travels base64-encoded (+1/3). No encoding of the 4.9 MB script gets there in one
//! piece (brotli 11 gives 1.05 MB), so it is cut into parts of at most `PART_MAX` bytes, each
//! small enough to pass even uncompressed. Each part is stored brotli-compressed only (every
//! browser decodes brotli over HTTPS and from localhost): the binary holds a quarter of the
//! script's size, and the Lambda zip less than the deflated script took. A client that does
//! not accept brotli gets the part decoded on request.
//!
//! Writes `$OUT_DIR/scalar_parts.rs`: `SCALAR_PARTS`, one `ScalarPart` per part, in order, and
//! the whole script's SRI value and content address (`SCALAR_INTEGRITY`, `SCALAR_HEX`).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use sha2::{Digest, Sha384};

const SCRIPT: &str = "src/routes/docs/scalar-standalone.js";

/// The largest part, in bytes: as text in a Lambda response for an ALB, with its JSON escapes
/// (under 2 % for this script) and headers, it stays under 1 MB.
const PART_MAX: usize = 900_000;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed={SCRIPT}");
    println!("cargo:rerun-if-changed=build.rs");
    let script = std::fs::read(SCRIPT)?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);

    let whole = Sha384::digest(&script);
    let mut code = format!(
        "const SCALAR_INTEGRITY: &str = {:?};\nconst SCALAR_HEX: &str = {:?};\n\
         static SCALAR_PARTS: &[ScalarPart] = &[\n",
        sri(&whole),
        hex(&whole[..16]),
    );
    for (index, part) in split(&script).into_iter().enumerate() {
        let br = out.join(format!("scalar.{index}.js.br"));
        std::fs::write(&br, brotli(part)?)?;
        let digest = Sha384::digest(part);
        writeln!(
            code,
            "    ScalarPart {{ integrity: {:?}, hex: {:?}, len: {}, br: include_bytes!({:?}) }},",
            sri(&digest),
            hex(&digest[..16]),
            part.len(),
            path_str(&br)?,
        )?;
    }
    code.push_str("];\n");
    std::fs::write(out.join("scalar_parts.rs"), code)?;
    Ok(())
}

/// Equal parts of at most `PART_MAX` bytes, each cut at a UTF-8 character boundary: a part
/// served as text must decode on its own.
fn split(script: &[u8]) -> Vec<&[u8]> {
    let count = script.len().div_ceil(PART_MAX).max(1);
    let target = script.len().div_ceil(count);
    let mut parts = Vec::with_capacity(count);
    let mut rest = script;
    while !rest.is_empty() {
        let mut end = target.min(rest.len());
        // Back off a continuation byte (10xxxxxx) to the start of its character.
        while end < rest.len() && end > 0 && rest[end] & 0xC0 == 0x80 {
            end -= 1;
        }
        let (part, tail) = rest.split_at(end);
        parts.push(part);
        rest = tail;
    }
    parts
}

/// Quality 11 with the largest window browsers decode (16 MiB).
fn brotli(data: &[u8]) -> std::io::Result<Vec<u8>> {
    let params = brotli::enc::BrotliEncoderParams {
        quality: 11,
        lgwin: 24,
        size_hint: data.len(),
        ..Default::default()
    };
    let mut out = Vec::new();
    brotli::BrotliCompress(&mut &data[..], &mut out, &params)?;
    Ok(out)
}

fn sri(digest: &[u8]) -> String {
    format!(
        "sha384-{}",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn path_str(path: &Path) -> Result<&str, String> {
    path.to_str()
        .ok_or_else(|| format!("OUT_DIR is not UTF-8: {}", path.display()))
}
