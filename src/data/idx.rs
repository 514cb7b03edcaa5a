//! IDX files, the format of MNIST and Fashion-MNIST, plain or gzip-compressed.
//!
//! An IDX file is a big-endian header followed by the data: two zero bytes, a type byte (0x08 for
//! unsigned bytes), the number of dimensions, then one 4-byte size per dimension. Images are
//! magic 0x00000803 with sizes [n, rows, cols]; labels are magic 0x00000801 with size [n]. A
//! file is gunzipped first when it starts with the gzip magic bytes 1f 8b, whatever its name.

use super::error::{DataError, Result};
use flate2::read::MultiGzDecoder;
use std::io::Read;
use std::path::Path;

/// Magic number of an IDX file of unsigned-byte images `[n, rows, cols]`.
pub const IDX_IMAGES_MAGIC: u32 = 0x0000_0803;
/// Magic number of an IDX file of unsigned-byte labels `[n]`.
pub const IDX_LABELS_MAGIC: u32 = 0x0000_0801;

/// Unsigned-byte images read from an IDX file, row-major: image `i` is
/// `pixels[i * rows * cols..(i + 1) * rows * cols]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxImages {
    /// Number of images.
    pub n: usize,
    /// Rows of each image.
    pub rows: usize,
    /// Columns of each image.
    pub cols: usize,
    /// The pixels, `n * rows * cols` bytes.
    pub pixels: Vec<u8>,
}

/// Reads a whole file, gunzipping it when it starts with the gzip magic bytes 1f 8b.
pub fn read_maybe_gzip(path: &Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    if !raw.starts_with(&[0x1f, 0x8b]) {
        return Ok(raw);
    }
    let mut out = Vec::new();
    MultiGzDecoder::new(&raw[..])
        .read_to_end(&mut out)
        .map_err(|e| {
            DataError::bad_file(
                path,
                format!("starts like a gzip file but cannot be decompressed ({e}); the file is damaged or incomplete"),
            )
        })?;
    Ok(out)
}

/// Reads an IDX image file (magic 0x00000803), plain or gzipped.
pub fn read_idx_images(path: &Path) -> Result<IdxImages> {
    parse_idx_images(&read_maybe_gzip(path)?, path)
}

/// Reads an IDX label file (magic 0x00000801), plain or gzipped.
pub fn read_idx_labels(path: &Path) -> Result<Vec<u8>> {
    parse_idx_labels(&read_maybe_gzip(path)?, path)
}

/// Parses the bytes of an (uncompressed) IDX image file; `source` names it in errors.
pub fn parse_idx_images(bytes: &[u8], source: &Path) -> Result<IdxImages> {
    let (dims, body) = parse(bytes, source, IDX_IMAGES_MAGIC, "images [n, rows, cols]")?;
    Ok(IdxImages {
        n: dims[0],
        rows: dims[1],
        cols: dims[2],
        pixels: body.to_vec(),
    })
}

/// Parses the bytes of an (uncompressed) IDX label file; `source` names it in errors.
pub fn parse_idx_labels(bytes: &[u8], source: &Path) -> Result<Vec<u8>> {
    let (_, body) = parse(bytes, source, IDX_LABELS_MAGIC, "labels [n]")?;
    Ok(body.to_vec())
}

/// The bytes of an IDX image file holding `pixels` as `[n, rows, cols]`. Fails when
/// `pixels.len()` is not `n * rows * cols` or a size does not fit in 32 bits.
pub fn encode_idx_images(n: usize, rows: usize, cols: usize, pixels: &[u8]) -> Result<Vec<u8>> {
    if n.checked_mul(rows).and_then(|v| v.checked_mul(cols)) != Some(pixels.len()) {
        return Err(DataError::InvalidInput(format!(
            "{} pixels cannot be {n} images of {rows}×{cols}",
            pixels.len()
        )));
    }
    encode(IDX_IMAGES_MAGIC, &[n, rows, cols], pixels)
}

/// The bytes of an IDX label file holding `labels`.
pub fn encode_idx_labels(labels: &[u8]) -> Result<Vec<u8>> {
    encode(IDX_LABELS_MAGIC, &[labels.len()], labels)
}

fn encode(magic: u32, dims: &[usize], body: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(4 + 4 * dims.len() + body.len());
    out.extend_from_slice(&magic.to_be_bytes());
    for &d in dims {
        let d = u32::try_from(d).map_err(|_| {
            DataError::InvalidInput(format!("size {d} does not fit in an IDX header (32 bits)"))
        })?;
        out.extend_from_slice(&d.to_be_bytes());
    }
    out.extend_from_slice(body);
    Ok(out)
}

/// Checks the header against `magic` and the body against the sizes; returns the sizes and body.
fn parse<'a>(
    bytes: &'a [u8],
    source: &Path,
    magic: u32,
    what: &str,
) -> Result<(Vec<usize>, &'a [u8])> {
    let bad = |m: String| DataError::bad_file(source, m);
    let expected = format!("expected IDX {what}, magic 0x{magic:08x}");
    let Some(head) = bytes.get(..4) else {
        return Err(bad(format!(
            "truncated: {} bytes, too short for an IDX header; {expected}",
            bytes.len()
        )));
    };
    let found = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
    if found != magic {
        let kind = match found {
            IDX_IMAGES_MAGIC => " (IDX images)",
            IDX_LABELS_MAGIC => " (IDX labels)",
            _ if head[..2] != [0, 0] => " (not an IDX file)",
            _ => "",
        };
        return Err(bad(format!(
            "wrong magic number 0x{found:08x}{kind}; {expected}; check that the file is the \
             right one and not damaged"
        )));
    }
    let ndims = usize::from(head[3]);
    let header_len = 4 + 4 * ndims;
    let Some(size_bytes) = bytes.get(4..header_len) else {
        return Err(bad(format!(
            "truncated: {} bytes, but the IDX header alone needs {header_len}",
            bytes.len()
        )));
    };
    let dims: Vec<usize> = size_bytes
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize)
        .collect();
    let want = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| bad(format!("sizes {dims:?} in the header overflow")))?;
    let have = bytes.len() - header_len;
    let shape = dims
        .iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join(" × ");
    if have < want {
        return Err(bad(format!(
            "truncated: the header says {shape} = {want} bytes of data, but only {have} follow; \
             the file is incomplete (download or copy it again)"
        )));
    }
    if have > want {
        return Err(bad(format!(
            "wrong size: the header says {shape} = {want} bytes of data, but {have} follow \
             ({} trailing bytes); the file is damaged or not this IDX type",
            have - want
        )));
    }
    Ok((dims, &bytes[header_len..]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{Compression, write::GzEncoder};
    use std::io::Write;

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut enc = GzEncoder::new(Vec::new(), Compression::default());
        enc.write_all(bytes).unwrap();
        enc.finish().unwrap()
    }

    fn sample() -> IdxImages {
        let pixels: Vec<u8> = (0..3 * 4 * 5).map(|i| (i * 17 % 256) as u8).collect();
        IdxImages {
            n: 3,
            rows: 4,
            cols: 5,
            pixels,
        }
    }

    #[test]
    fn idx_round_trip_plain_and_gzipped() {
        let dir = tempfile::tempdir().unwrap();
        let img = sample();
        let bytes = encode_idx_images(img.n, img.rows, img.cols, &img.pixels).unwrap();
        let labels = encode_idx_labels(&[7, 0, 9]).unwrap();
        // The gzipped copy has no .gz extension: detection is by content.
        for (name, data) in [("plain", bytes.clone()), ("zipped", gzip(&bytes))] {
            let path = dir.path().join(name);
            std::fs::write(&path, data).unwrap();
            assert_eq!(read_idx_images(&path).unwrap(), img, "{name}");
        }
        let path = dir.path().join("labels.gz");
        std::fs::write(&path, gzip(&labels)).unwrap();
        assert_eq!(read_idx_labels(&path).unwrap(), vec![7, 0, 9]);
    }

    #[test]
    fn wrong_magic_is_an_error_that_says_which() {
        let labels = encode_idx_labels(&[1, 2]).unwrap();
        let e = parse_idx_images(&labels, Path::new("f"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("wrong magic number 0x00000801 (IDX labels)"),
            "{e}"
        );
        assert!(e.contains("0x00000803"), "{e}");
        let e = parse_idx_labels(b"PK\x03\x04zip", Path::new("f")).unwrap_err();
        assert!(e.to_string().contains("not an IDX file"), "{e}");
    }

    #[test]
    fn truncated_files_are_errors() {
        let img = sample();
        let bytes = encode_idx_images(img.n, img.rows, img.cols, &img.pixels).unwrap();
        for cut in [0, 3, 10, bytes.len() - 1] {
            let e = parse_idx_images(&bytes[..cut], Path::new("f")).unwrap_err();
            assert!(e.to_string().contains("truncated"), "cut {cut}: {e}");
        }
        let e = parse_idx_images(&bytes[..bytes.len() - 1], Path::new("f")).unwrap_err();
        assert!(
            e.to_string()
                .contains("3 × 4 × 5 = 60 bytes of data, but only 59"),
            "{e}"
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cut.gz");
        let zipped = gzip(&bytes);
        std::fs::write(&path, &zipped[..zipped.len() / 2]).unwrap();
        let e = read_idx_images(&path).unwrap_err().to_string();
        assert!(e.contains("cannot be decompressed"), "{e}");
    }

    #[test]
    fn trailing_bytes_are_a_wrong_size_error() {
        let mut bytes = encode_idx_labels(&[1, 2, 3]).unwrap();
        bytes.push(4);
        let e = parse_idx_labels(&bytes, Path::new("f"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("wrong size") && e.contains("1 trailing bytes"),
            "{e}"
        );
    }

    #[test]
    fn encoding_checks_the_pixel_count() {
        assert!(encode_idx_images(2, 2, 2, &[0; 7]).is_err());
    }
}
