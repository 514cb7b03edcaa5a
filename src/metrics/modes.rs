//! How well samples cover the modes of a mixture.

use crate::estimate::normalised_weights;
use serde::Serialize;

/// Nearest-mode statistics of a sample.
#[derive(Debug, Clone, Serialize)]
pub struct ModeReport {
    /// Number of modes.
    pub modes: usize,
    /// Modes that are nearest to at least one sample.
    pub modes_found: usize,
    /// Samples per mode (nearest-mode histogram, unweighted).
    pub counts: Vec<usize>,
    /// Entropy of the unweighted histogram divided by log(number of modes): 1 for perfectly even
    /// coverage of equal-weight modes.
    pub entropy_ratio: f64,
    /// Same ratio for the importance-weighted histogram.
    pub weighted_entropy_ratio: f64,
    /// Importance-weighted share of each mode.
    pub weighted_proportions: Vec<f64>,
    /// Index of the nearest mode for each sample.
    #[serde(skip)]
    pub assignment: Vec<usize>,
}

fn entropy_ratio(p: &[f64]) -> f64 {
    let h: f64 = p.iter().filter(|&&x| x > 0.0).map(|&x| -x * x.ln()).sum();
    if p.len() > 1 {
        h / (p.len() as f64).ln()
    } else {
        1.0
    }
}

/// Assigns each sample (row-major `[n, dim]`) to its nearest centre and summarises the histogram.
pub fn mode_report(samples: &[f32], dim: usize, centres: &[Vec<f64>], log_w: &[f64]) -> ModeReport {
    let n = samples.len() / dim;
    let assignment: Vec<usize> = (0..n)
        .map(|i| {
            let x = &samples[i * dim..(i + 1) * dim];
            let dist = |c: &Vec<f64>| {
                c.iter()
                    .zip(x)
                    .map(|(a, &b)| (a - b as f64).powi(2))
                    .sum::<f64>()
            };
            (0..centres.len())
                .min_by(|&a, &b| dist(&centres[a]).total_cmp(&dist(&centres[b])))
                .unwrap_or(0)
        })
        .collect();
    let mut counts = vec![0usize; centres.len()];
    for &a in &assignment {
        counts[a] += 1;
    }
    let w = normalised_weights(log_w);
    let mut wp = vec![0f64; centres.len()];
    for (&a, &wi) in assignment.iter().zip(&w) {
        wp[a] += wi;
    }
    let p: Vec<f64> = counts.iter().map(|&c| c as f64 / n.max(1) as f64).collect();
    ModeReport {
        modes: centres.len(),
        modes_found: counts.iter().filter(|&&c| c > 0).count(),
        entropy_ratio: entropy_ratio(&p),
        weighted_entropy_ratio: entropy_ratio(&wp),
        counts,
        weighted_proportions: wp,
        assignment,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn even_coverage_has_ratio_one_and_missing_modes_lower_it() {
        let centres = vec![vec![0.0], vec![10.0]];
        let even = mode_report(&[0.1, 9.0, -0.3, 11.0], 1, &centres, &[0.0; 4]);
        assert_eq!(even.modes_found, 2);
        assert!((even.entropy_ratio - 1.0).abs() < 1e-12);
        let one = mode_report(&[0.1, 0.2, -0.3, 1.0], 1, &centres, &[0.0; 4]);
        assert_eq!(one.modes_found, 1);
        assert_eq!(one.entropy_ratio, 0.0);
    }
}
