//! Importance-sampling estimates from log weights, accumulated in f64.
//!
//! For paths with log weights wᵢ (−∞ for particles whose target density was non-finite):
//! log Ẑ = logsumexp(w) − log n, ELBO = mean of the finite wᵢ, and the normalised effective
//! sample size ESS = (Σ e^{wᵢ})² / (n Σ e^{2wᵢ}) ∈ [0, 1].

use rand::Rng;
use serde::{Deserialize, Deserializer, Serialize};

/// Reads an f64 that JSON may hold as `null` (serde_json writes NaN and ±∞ so) as NaN: the
/// checkpoints store estimates and losses that need not be finite.
pub(crate) fn f64_or_nan<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// The estimates of one batch of weighted paths. Read back from JSON, a value that was not
/// finite (written as `null`) is NaN.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Estimates {
    /// Number of particles.
    pub n: usize,
    /// Particles whose log weight was not finite (they get weight zero).
    pub n_nonfinite: usize,
    /// log Ẑ, the log of the mean importance weight.
    #[serde(deserialize_with = "f64_or_nan")]
    pub log_z: f64,
    /// Delta-method standard error of log Ẑ: √((1/ESS − 1)/n).
    #[serde(deserialize_with = "f64_or_nan")]
    pub log_z_stderr: f64,
    /// Mean log weight of the finite particles, a lower bound on log Z in expectation.
    #[serde(deserialize_with = "f64_or_nan")]
    pub elbo: f64,
    /// Normalised effective sample size in [0, 1].
    #[serde(deserialize_with = "f64_or_nan")]
    pub ess: f64,
    /// Median of the finite log weights: a summary a few outliers cannot move.
    #[serde(deserialize_with = "f64_or_nan")]
    pub log_w_median: f64,
    /// Whether the ELBO (a mean) is dominated by a few outlying log weights: it is then far
    /// from the median ([`elbo_dominated_by_outliers`]) and says little about the sampler.
    pub elbo_outliers: bool,
}

/// Whether the mean of `finite` (sorted, finite log weights) is dominated by outliers: it differs
/// from their median by more than 10 interquartile ranges (at least 10⁻²). For any unimodal
/// spread of log weights the mean is within about one interquartile range of the median; a gap
/// of ten takes a few far outliers (e.g. 7 of 10,000 log weights near −2·10¹⁶).
pub fn elbo_dominated_by_outliers(mean: f64, sorted: &[f64]) -> bool {
    if sorted.is_empty() {
        return false;
    }
    let q = |p: f64| sorted[((sorted.len() - 1) as f64 * p).round() as usize];
    let iqr = q(0.75) - q(0.25);
    (mean - q(0.5)).abs() > 10.0 * iqr.max(1e-3)
}

/// Effective samples n·ESS below which the delta-method ± of log Ẑ (and log Ẑ itself) is not
/// trustworthy: the weights are dominated by so few paths that the variance estimate is itself
/// a guess.
pub const ESS_FLOOR: f64 = 100.0;

/// log Σ exp(vᵢ) over the finite entries (−∞ when there are none).
pub fn log_sum_exp(v: &[f64]) -> f64 {
    let m = v
        .iter()
        .copied()
        .filter(|x| x.is_finite())
        .fold(f64::NEG_INFINITY, f64::max);
    if !m.is_finite() {
        return f64::NEG_INFINITY;
    }
    m + v
        .iter()
        .filter(|x| x.is_finite())
        .map(|x| (x - m).exp())
        .sum::<f64>()
        .ln()
}

impl Estimates {
    /// The effective number of samples n·ESS.
    pub fn effective_samples(&self) -> f64 {
        self.ess * self.n as f64
    }

    /// Whether the effective number of samples is below [`ESS_FLOOR`], and then a warning that
    /// says the ± is not trustworthy.
    pub fn ess_warning(&self) -> Option<String> {
        (self.effective_samples() < ESS_FLOOR).then(|| {
            format!(
                "ESS of {:.1} effective samples (of {}) is below the floor of {ESS_FLOOR:.0}: \
                 the ± of log Z-hat is not trustworthy; train longer or draw more samples",
                self.effective_samples(),
                self.n
            )
        })
    }

    /// When the ELBO is dominated by outliers ([`Estimates::elbo_outliers`]), a warning that
    /// says so and gives the median log weight.
    pub fn elbo_warning(&self) -> Option<String> {
        self.elbo_outliers.then(|| {
            format!(
                "the ELBO ({:.4e}) is dominated by a few outlying log weights: it is far from \
                 their median ({:.4}), so it says little about the sampler (log Z-hat is not \
                 affected by low outliers)",
                self.elbo, self.log_w_median
            )
        })
    }

    /// Estimates from log weights. Non-finite entries count as zero weight.
    pub fn from_log_weights(lw: &[f64]) -> Self {
        let n = lw.len();
        let n_nonfinite = lw.iter().filter(|x| !x.is_finite()).count();
        let mut finite: Vec<f64> = lw.iter().copied().filter(|x| x.is_finite()).collect();
        let lse = log_sum_exp(lw);
        let log_z = lse - (n as f64).ln();
        let ess = if finite.is_empty() {
            0.0
        } else {
            let lse2 = log_sum_exp(&finite.iter().map(|x| 2.0 * x).collect::<Vec<_>>());
            (2.0 * lse - lse2 - (n as f64).ln()).exp()
        };
        let elbo = if finite.is_empty() {
            f64::NEG_INFINITY
        } else {
            finite.iter().sum::<f64>() / finite.len() as f64
        };
        let log_z_stderr = if ess > 0.0 {
            ((1.0 / ess - 1.0).max(0.0) / n as f64).sqrt()
        } else {
            f64::INFINITY
        };
        finite.sort_by(f64::total_cmp);
        let log_w_median = if finite.is_empty() {
            f64::NAN
        } else {
            finite[(finite.len() - 1) / 2]
        };
        Self {
            n,
            n_nonfinite,
            log_z,
            log_z_stderr,
            elbo,
            ess,
            log_w_median,
            elbo_outliers: elbo_dominated_by_outliers(elbo, &finite),
        }
    }
}

/// Normalised importance weights e^{wᵢ − logsumexp(w)} (zero for non-finite entries).
pub fn normalised_weights(lw: &[f64]) -> Vec<f64> {
    let lse = log_sum_exp(lw);
    lw.iter()
        .map(|&x| if x.is_finite() { (x - lse).exp() } else { 0.0 })
        .collect()
}

/// Weighted mean and variance per coordinate of `samples` (`[n, dim]` row-major) under the
/// normalised weights `w` (summing to 1, as from [`normalised_weights`]).
pub fn weighted_mean_var(samples: &[f32], dim: usize, w: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let mut mean = vec![0.0; dim];
    for (row, wi) in samples.chunks(dim).zip(w) {
        for j in 0..dim {
            mean[j] += wi * row[j] as f64;
        }
    }
    let mut var = vec![0.0; dim];
    for (row, wi) in samples.chunks(dim).zip(w) {
        for j in 0..dim {
            var[j] += wi * (row[j] as f64 - mean[j]).powi(2);
        }
    }
    (mean, var)
}

/// Systematic resampling: `m` indices drawn in proportion to the weights e^{wᵢ}.
pub fn systematic_resample(lw: &[f64], m: usize, rng: &mut impl Rng) -> Vec<usize> {
    let u0: f64 = rng.random::<f64>() / m as f64;
    inverse_cdf(lw, (0..m).map(|j| u0 + j as f64 / m as f64), m)
}

/// Multinomial resampling: `m` independent draws of an index with probabilities ∝ e^{wᵢ}
/// (inverse-CDF sampling of sorted uniforms, O(n + m log m)).
pub fn multinomial_resample(lw: &[f64], m: usize, rng: &mut impl Rng) -> Vec<usize> {
    let mut u: Vec<f64> = (0..m).map(|_| rng.random::<f64>()).collect();
    u.sort_unstable_by(f64::total_cmp);
    inverse_cdf(lw, u.into_iter(), m)
}

/// The index of each of the `m` increasing points `sorted_u` in [0, 1) under the cumulative
/// distribution of the weights e^{wᵢ}: one pass over both (the common step of the resamplers).
fn inverse_cdf(lw: &[f64], sorted_u: impl Iterator<Item = f64>, m: usize) -> Vec<usize> {
    let w = normalised_weights(lw);
    let mut out = Vec::with_capacity(m);
    let (mut i, mut cum) = (0usize, w.first().copied().unwrap_or(0.0));
    for u in sorted_u {
        while u > cum && i + 1 < w.len() {
            i += 1;
            cum += w[i];
        }
        out.push(i);
    }
    out
}

/// Standard error of log Ẑ from a particle system, by the Lee–Whiteley variance estimator
/// (Lee & Whiteley, 2018; for adaptive resampling Du & Guyader, 2021): with the final
/// normalised log weights `log_w`, the particles' Eve indices `eve` (the index of each one's
/// ancestor among the initial particles) and `resamplings` resampling events,
///
/// V̂/Ẑ² = 1 − (N/(N−1))^{m+1} (1 − Σ_e (Σ_{i: E_i = e} W_i)²),
///
/// and the standard error of log Ẑ is √V̂/Ẑ (delta method; 0 when V̂ < 0). Without resampling
/// this is the importance-sampling variance (N Σ W² − 1)/(N − 1). It is exact in expectation for
/// multinomial resampling; with systematic resampling it is the usual approximation (its
/// calibration is tested in `tests/sequential.rs`). When every particle shares one Eve index
/// it returns 1 (degenerate: the estimate's error cannot be judged from one run).
pub fn eve_log_z_stderr(log_w: &[f64], eve: &[usize], resamplings: usize) -> f64 {
    let n = log_w.len();
    if n < 2 {
        return f64::INFINITY;
    }
    let w = normalised_weights(log_w);
    let mut by_eve = std::collections::HashMap::<usize, f64>::new();
    for (wi, e) in w.iter().zip(eve) {
        *by_eve.entry(*e).or_default() += wi;
    }
    let s: f64 = by_eve.values().map(|v| v * v).sum();
    let factor = (n as f64 / (n as f64 - 1.0)).powi(resamplings as i32 + 1);
    let rel_var = 1.0 - factor * (1.0 - s);
    rel_var.max(0.0).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn equal_weights_give_full_ess_and_exact_log_z() {
        let e = Estimates::from_log_weights(&[-1.0; 100]);
        assert!((e.log_z + 1.0).abs() < 1e-12 && (e.ess - 1.0).abs() < 1e-12);
        assert_eq!(e.elbo, -1.0);
    }

    #[test]
    fn ess_below_the_floor_is_flagged() {
        // 200 equal weights: 200 effective samples, above the floor.
        assert!(
            Estimates::from_log_weights(&[0.0; 200])
                .ess_warning()
                .is_none()
        );
        // One path dominates: about one effective sample.
        let mut lw = vec![-50.0; 10_000];
        lw[0] = 0.0;
        let w = Estimates::from_log_weights(&lw).ess_warning().unwrap();
        assert!(
            w.contains("not trustworthy") && w.contains("of 10000"),
            "{w}"
        );
    }

    /// Seven of 10,000 log weights near −2·10¹⁶ wreck the mean: flagged, with the median in the
    /// warning; a skewed but outlier-free spread is not flagged.
    #[test]
    fn elbo_wrecked_by_outliers_is_flagged() {
        let mut lw: Vec<f64> = (0..10_000)
            .map(|i| -3.0 + (i as f64 * 0.37).sin())
            .collect();
        let clean = Estimates::from_log_weights(&lw);
        assert!(!clean.elbo_outliers && clean.elbo_warning().is_none());
        assert!(
            (clean.log_w_median + 3.0).abs() < 0.1,
            "{}",
            clean.log_w_median
        );
        for w in lw.iter_mut().take(7) {
            *w = -2e16;
        }
        let e = Estimates::from_log_weights(&lw);
        assert!(e.elbo < -1e12 && e.elbo_outliers);
        assert!((e.log_z - clean.log_z).abs() < 1e-2);
        let w = e.elbo_warning().unwrap();
        assert!(w.contains("dominated") && w.contains("median (-3."), "{w}");
        // Left-skewed log weights (an exponential tail) are not outliers.
        let skew: Vec<f64> = (1..10_000).map(|i| (i as f64 / 10_000.0).ln()).collect();
        assert!(!Estimates::from_log_weights(&skew).elbo_outliers);
        // Equal weights: nothing to flag.
        assert!(!Estimates::from_log_weights(&[-1.0; 100]).elbo_outliers);
    }

    #[test]
    fn nonfinite_weights_count_as_zero() {
        let e = Estimates::from_log_weights(&[0.0, f64::NAN, f64::NEG_INFINITY, 0.0]);
        assert_eq!(e.n_nonfinite, 2);
        assert!((e.log_z - (0.5f64).ln()).abs() < 1e-12);
        assert!((e.ess - 0.5).abs() < 1e-12);
    }

    #[test]
    fn huge_log_weights_do_not_overflow() {
        let e = Estimates::from_log_weights(&[1000.0, 1000.0 + 2f64.ln()]);
        assert!((e.log_z - (1000.0 + 1.5f64.ln())).abs() < 1e-9);
    }

    #[test]
    fn eve_stderr_without_resampling_is_the_importance_sampling_one() {
        let lw: Vec<f64> = (0..50).map(|i| (i as f64 / 10.0).sin()).collect();
        let eve: Vec<usize> = (0..50).collect();
        let w = normalised_weights(&lw);
        let s2: f64 = w.iter().map(|v| v * v).sum();
        let want = ((50.0 * s2 - 1.0) / 49.0).sqrt();
        assert!((eve_log_z_stderr(&lw, &eve, 0) - want).abs() < 1e-12);
        // Equal weights, all distinct Eves: zero; one shared Eve: degenerate (1).
        assert!(eve_log_z_stderr(&[0.0; 10], &(0..10).collect::<Vec<_>>(), 3) < 1e-12);
        assert!((eve_log_z_stderr(&[0.0; 10], &[4; 10], 3) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn multinomial_resampling_follows_the_weights() {
        let lw = [0f64.ln(), 1f64.ln(), 3f64.ln()];
        let mut rng = rand::rngs::StdRng::seed_from_u64(2);
        let idx = multinomial_resample(&lw, 40_000, &mut rng);
        let c2 = idx.iter().filter(|&&i| i == 2).count() as f64;
        // Binomial(40000, 3/4): sd ≈ 87; 4 sd.
        assert!((c2 - 30_000.0).abs() < 350.0, "{c2}");
        assert!(idx.iter().all(|&i| i != 0));
    }

    #[test]
    fn systematic_resampling_follows_the_weights() {
        let lw = [0f64.ln(), 1f64.ln(), 3f64.ln()];
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let idx = systematic_resample(&lw, 4000, &mut rng);
        let c2 = idx.iter().filter(|&&i| i == 2).count();
        // Systematic resampling puts exactly m·w ± 1 copies on each particle.
        assert!((c2 as i64 - 3000).abs() <= 1, "{c2}");
        assert!(idx.iter().all(|&i| i != 0));
    }
}
