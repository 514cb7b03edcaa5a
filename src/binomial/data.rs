//! Binary data for binomial diffusion: the paper's heartbeat sequences, binarised images and
//! CSV files of bits.

use super::heartbeat;
use crate::data::ToyDataset;
use crate::error::{DsbError, Result};
use crate::fit::DataSpec;
use rand::SeedableRng;
use rand::rngs::StdRng;

/// The name of the heartbeat data set: [`HEARTBEAT_LEN`]-bit sequences with a 1 every
/// [`HEARTBEAT_PERIOD`] bits at a random phase (Sohl-Dickstein et al., 2015, § 3.2), whose
/// entropy is log₂ 5 = 2.32 bits per sequence.
pub const HEARTBEAT: &str = "heartbeat";
/// Bits per heartbeat sequence.
pub const HEARTBEAT_LEN: usize = 20;
/// The heartbeat's period.
pub const HEARTBEAT_PERIOD: usize = 5;

/// Binary examples, split into training and held-out rows.
#[derive(Debug, Clone, PartialEq)]
pub struct BinaryData {
    /// Training rows, values 0 or 1.
    pub train: Vec<f32>,
    /// Held-out rows.
    pub held_out: Vec<f32>,
    /// Shape of one example: `[d]` for sequences and CSV rows, `[1, rows, cols]` for images.
    pub example_shape: Vec<usize>,
    /// How the bits were made, for the reports.
    pub binarisation: String,
}

impl BinaryData {
    /// Bits per example.
    pub fn dim(&self) -> usize {
        self.example_shape.iter().product()
    }

    /// Training examples.
    pub fn n_train(&self) -> usize {
        self.train.len() / self.dim()
    }

    /// Held-out examples.
    pub fn n_held_out(&self) -> usize {
        self.held_out.len() / self.dim()
    }

    /// Whether the examples are images.
    pub fn is_image(&self) -> bool {
        self.example_shape.len() == 3
    }
}

/// Whether `name` names the heartbeat data set.
pub fn is_heartbeat(name: &str) -> bool {
    name.eq_ignore_ascii_case(HEARTBEAT)
}

/// Loads binary data: [`HEARTBEAT`] (`spec.n` sequences from `spec.seed`, the last
/// `spec.held_out` of them held out), images (mnist, fashion-mnist, an IDX directory; a pixel
/// is 1 when its byte is at least 128, i.e. thresholded at ½, as the fixed binarisations of
/// MNIST are) or a CSV file (a value is 1 when above ½, so a file of 0s and 1s is read as it
/// is). The toy point sets are refused: they are not binary.
pub fn load_binary(spec: &DataSpec) -> Result<BinaryData> {
    if is_heartbeat(&spec.name) {
        if spec.n < 2 {
            return Err(DsbError::InvalidInput(format!(
                "--n-data must be at least 2 for the heartbeat data, got {}",
                spec.n
            )));
        }
        if !(spec.held_out > 0.0 && spec.held_out < 1.0) {
            return Err(DsbError::InvalidInput(format!(
                "--held-out must be in (0, 1) for the heartbeat data, got {}",
                spec.held_out
            )));
        }
        let mut rng = StdRng::seed_from_u64(spec.seed);
        let all = heartbeat(spec.n, HEARTBEAT_LEN, HEARTBEAT_PERIOD, &mut rng);
        let held = ((spec.held_out * spec.n as f64).round() as usize).clamp(1, spec.n - 1);
        let cut = (spec.n - held) * HEARTBEAT_LEN;
        return Ok(BinaryData {
            train: all[..cut].to_vec(),
            held_out: all[cut..].to_vec(),
            example_shape: vec![HEARTBEAT_LEN],
            binarisation: format!(
                "heartbeat sequences ({HEARTBEAT_LEN} bits, period {HEARTBEAT_PERIOD})"
            ),
        });
    }
    if spec.name.parse::<ToyDataset>().is_ok() {
        return Err(DsbError::InvalidInput(format!(
            "--binarize: '{}' is a set of 2-D points, not binary data; give heartbeat, mnist, \
             fashion-mnist, an IDX directory or a CSV file of 0s and 1s",
            spec.name
        )));
    }
    let loaded = spec.load()?;
    let image = loaded.example_shape.len() == 3;
    // Images are scaled to [−1, 1] (b / 127.5 − 1), so v > 0 is b ≥ 128.
    let cut = if image { 0.0 } else { 0.5 };
    let bits = |v: &[f32]| -> Vec<f32> {
        v.iter()
            .map(|&x| f32::from(u8::from(f64::from(x) > cut)))
            .collect()
    };
    Ok(BinaryData {
        train: bits(&loaded.train.data),
        held_out: bits(&loaded.held_out.data),
        example_shape: loaded.example_shape,
        binarisation: if image {
            "pixels thresholded at ½ (byte ≥ 128 → 1)".into()
        } else {
            "values above ½ → 1".into()
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, n: usize) -> DataSpec {
        DataSpec {
            name: name.into(),
            n,
            seed: 3,
            held_out: 0.1,
            data_dir: None,
        }
    }

    #[test]
    fn heartbeat_splits_and_csv_thresholds() {
        let d = load_binary(&spec("heartbeat", 100)).unwrap();
        assert_eq!((d.n_train(), d.n_held_out(), d.dim()), (90, 10, 20));
        assert_eq!(d, load_binary(&spec("Heartbeat", 100)).unwrap());
        let tmp = tempfile::tempdir().unwrap();
        let csv = tmp.path().join("bits.csv");
        std::fs::write(&csv, "a,b,c\n0,1,0.7\n1,0,0.2\n0,0,1\n1,1,1\n").unwrap();
        let s = DataSpec {
            held_out: 0.25,
            ..spec(csv.to_str().unwrap(), 0)
        };
        let d = load_binary(&s).unwrap();
        assert_eq!(d.dim(), 3);
        assert!(
            d.train
                .iter()
                .chain(&d.held_out)
                .all(|&v| v == 0.0 || v == 1.0)
        );
        let ones: f32 = d.train.iter().chain(&d.held_out).sum();
        assert_eq!(ones, 7.0);
        let e = load_binary(&spec("two-moons", 100))
            .unwrap_err()
            .to_string();
        assert!(e.contains("not binary data"), "{e}");
        let e = load_binary(&spec("heartbeat", 1)).unwrap_err().to_string();
        assert!(e.contains("--n-data"), "{e}");
        let no_held = DataSpec {
            held_out: 0.0,
            ..spec("heartbeat", 100)
        };
        let e = load_binary(&no_held).unwrap_err().to_string();
        assert!(e.contains("--held-out"), "{e}");
    }
}
