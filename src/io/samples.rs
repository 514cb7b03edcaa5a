//! Writing samples: CSV (with log weights) or NumPy `.npy`, chosen by extension.
//!
//! The NPY writer is written here (a 10-line format: magic, header dict, little-endian f32
//! data) rather than pulling a crate for it.

use super::atomic_write;
use crate::error::{DsbError, Result};
use crate::sampler::SampleSet;
use std::fmt::Write as _;
use std::path::Path;

/// Writes samples as CSV: a header `x1,…,xd,log_weight`, then one row per sample.
pub fn write_samples_csv(path: &Path, set: &SampleSet) -> Result<()> {
    let mut s = String::with_capacity(set.len() * (set.dim + 1) * 12);
    let header: Vec<String> = (1..=set.dim).map(|i| format!("x{i}")).collect();
    s.push_str(&header.join(","));
    s.push_str(",log_weight\n");
    for i in 0..set.len() {
        for v in set.row(i) {
            write!(s, "{v},").expect("write to string");
        }
        writeln!(s, "{}", set.log_w[i]).expect("write to string");
    }
    atomic_write(path, s.as_bytes())
}

/// Writes unweighted points as CSV: a header of the coordinate names, then one row per point.
pub fn write_points_csv(path: &Path, points: &crate::data::Points) -> Result<()> {
    let mut s = String::with_capacity(points.data.len() * 12);
    s.push_str(&points.names.join(","));
    s.push('\n');
    for row in points.data.chunks(points.dim.max(1)) {
        let cells: Vec<String> = row.iter().map(|v| v.to_string()).collect();
        s.push_str(&cells.join(","));
        s.push('\n');
    }
    atomic_write(path, s.as_bytes())
}

/// Writes samples as a NumPy array `float32[n, dim]` (log weights are not included).
pub fn write_samples_npy(path: &Path, set: &SampleSet) -> Result<()> {
    let mut header = format!(
        "{{'descr': '<f4', 'fortran_order': False, 'shape': ({}, {}), }}",
        set.len(),
        set.dim
    );
    // Magic (6) + version (2) + header length (2) + header, padded with spaces to a multiple of 64
    // and ended by a newline.
    let total = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - total % 64) % 64));
    header.push('\n');
    let mut bytes = Vec::with_capacity(10 + header.len() + 4 * set.samples.len());
    bytes.extend_from_slice(b"\x93NUMPY\x01\x00");
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    for v in &set.samples {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    atomic_write(path, &bytes)
}

/// Writes samples in the format named by the extension: `.npy` or `.csv`.
pub fn write_samples(path: &Path, set: &SampleSet) -> Result<()> {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(|e| e.to_ascii_lowercase())
    {
        Some(e) if e == "npy" => write_samples_npy(path, set),
        Some(e) if e == "csv" => write_samples_csv(path, set),
        _ => Err(DsbError::InvalidInput(format!(
            "{}: unknown output format; use a .csv or .npy extension",
            path.display()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::estimate::Estimates;

    fn set() -> SampleSet {
        let log_w = vec![0.0, -1.0, -2.0];
        SampleSet {
            dim: 2,
            samples: vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.5],
            estimates: Estimates::from_log_weights(&log_w),
            log_w,
        }
    }

    #[test]
    fn csv_has_header_and_rows() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.csv");
        write_samples(&p, &set()).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        let lines: Vec<_> = text.lines().collect();
        assert_eq!(lines[0], "x1,x2,log_weight");
        assert_eq!(lines[3], "5,6.5,-2");
    }

    #[test]
    fn npy_header_is_aligned_and_data_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.npy");
        write_samples(&p, &set()).unwrap();
        let b = std::fs::read(&p).unwrap();
        assert_eq!(&b[..6], b"\x93NUMPY");
        let hlen = u16::from_le_bytes([b[8], b[9]]) as usize;
        assert_eq!((10 + hlen) % 64, 0);
        let header = std::str::from_utf8(&b[10..10 + hlen]).unwrap();
        assert!(header.contains("'shape': (3, 2)"));
        let data: Vec<f32> = b[10 + hlen..]
            .chunks(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(data, set().samples);
    }

    #[test]
    fn points_csv_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("p.csv");
        let pts = crate::data::Points::new(vec![1.5, -2.0, 3.0, 4.25], 2, 2).unwrap();
        write_points_csv(&p, &pts).unwrap();
        assert_eq!(crate::data::read_points_csv(&p).unwrap().data, pts.data);
    }

    #[test]
    fn unknown_extension_is_an_error() {
        assert!(write_samples(Path::new("x.txt"), &set()).is_err());
    }
}
