//! Hypothesis tests (library code, used by the statistical tests in `tests/` and by the
//! examples): Kolmogorov–Smirnov against a normal law, and a chi-square test of
//! importance-weighted category proportions.

use crate::estimate::normalised_weights;
use nalgebra::{DMatrix, DVector};
use statrs::distribution::{ChiSquared, ContinuousCDF, Normal};

/// Asymptotic p-value of the Kolmogorov statistic D for sample size n, with Stephens' (1970)
/// small-sample correction λ = (√n + 0.12 + 0.11/√n) D and P(K > λ) = 2 Σ (−1)^{k−1} e^{−2k²λ²}.
pub fn kolmogorov_p_value(d: f64, n: usize) -> f64 {
    let sn = (n as f64).sqrt();
    let lambda = (sn + 0.12 + 0.11 / sn) * d;
    if lambda < 0.2 {
        return 1.0;
    }
    let mut p = 0.0;
    for k in 1..200 {
        let term = (-2.0 * (k * k) as f64 * lambda * lambda).exp();
        p += if k % 2 == 1 { 2.0 * term } else { -2.0 * term };
        if term < 1e-16 {
            break;
        }
    }
    p.clamp(0.0, 1.0)
}

/// One-sample KS test of `xs` against N(mean, sd²): returns (D, p-value).
pub fn ks_test_normal(xs: &[f64], mean: f64, sd: f64) -> (f64, f64) {
    let mut v: Vec<f64> = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let law = Normal::new(mean, sd).expect("valid normal");
    let mut d = 0f64;
    for (i, &x) in v.iter().enumerate() {
        let f = law.cdf(x);
        d = d
            .max(f - i as f64 / n as f64)
            .max((i + 1) as f64 / n as f64 - f);
    }
    (d, kolmogorov_p_value(d, n))
}

/// Wald chi-square test that importance-weighted category proportions equal `expected`.
///
/// With normalised weights w̄ⱼ and categories aⱼ, the estimate is p̂ₐ = Σⱼ w̄ⱼ 1[aⱼ = a] and its
/// delta-method covariance is Vₐᵦ = Σⱼ w̄ⱼ² (1[aⱼ=a] − p̂ₐ)(1[aⱼ=b] − p̂ᵦ). The statistic
/// X² = (p̂ − π)ᵀ V⁻¹ (p̂ − π) over the first K − 1 categories is asymptotically χ²(K − 1) when
/// the sampler is correct. With equal weights this is the ordinary multinomial test. A category
/// with no sample makes V singular: the test then fails outright (X² = ∞, p = 0).
/// Returns (X², p-value).
pub fn weighted_proportion_test(
    categories: &[usize],
    log_w: &[f64],
    expected: &[f64],
) -> (f64, f64) {
    let k = expected.len();
    assert!(k >= 2, "need at least two categories");
    let w = normalised_weights(log_w);
    let mut p = vec![0f64; k];
    for (&a, &wi) in categories.iter().zip(&w) {
        p[a] += wi;
    }
    let m = k - 1;
    let mut v = DMatrix::<f64>::zeros(m, m);
    for (&a, &wi) in categories.iter().zip(&w) {
        if wi == 0.0 {
            continue;
        }
        let dev: Vec<f64> = (0..m)
            .map(|c| (if a == c { 1.0 } else { 0.0 }) - p[c])
            .collect();
        for r in 0..m {
            for c in 0..m {
                v[(r, c)] += wi * wi * dev[r] * dev[c];
            }
        }
    }
    let diff = DVector::from_iterator(m, (0..m).map(|c| p[c] - expected[c]));
    let stat = match v.cholesky() {
        Some(ch) if p.iter().all(|&x| x > 0.0) => (diff.transpose() * ch.solve(&diff))[(0, 0)],
        _ => f64::INFINITY,
    };
    let pval = if stat.is_finite() {
        1.0 - ChiSquared::new(m as f64).expect("dof > 0").cdf(stat)
    } else {
        0.0
    };
    (stat, pval)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_distr::StandardNormal;

    #[test]
    fn ks_accepts_the_right_law_and_rejects_a_shifted_one() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let xs: Vec<f64> = (0..2000)
            .map(|_| rng.sample::<f64, _>(StandardNormal) * 3.0)
            .collect();
        assert!(ks_test_normal(&xs, 0.0, 3.0).1 > 0.01);
        assert!(ks_test_normal(&xs, 0.5, 3.0).1 < 1e-4);
    }

    #[test]
    fn kolmogorov_p_value_matches_tabulated_quantiles() {
        // The asymptotic 5% critical value of √n·D is 1.358.
        let p = kolmogorov_p_value(1.358 / 1e3, 1_000_000);
        assert!((p - 0.05).abs() < 2e-3, "{p}");
    }

    /// statrs' one-sample KS test is the oracle: the same statistic D; p-values within 0.02 of
    /// its exact Kolmogorov distribution (Marsaglia, Tsang & Wang 2003) for n ≤ 100 (within
    /// 0.002 in the tail p < 0.1, where tests decide), and of its asymptotic series for large n,
    /// which Stephens' correction only nudges.
    #[test]
    fn ks_test_agrees_with_statrs() {
        use statrs::stats_tests::NaNPolicy;
        use statrs::stats_tests::ks_test::{KSOneSampleAlternativeMethod, ks_onesample};
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        let law = Normal::new(1.0, 2.0).unwrap();
        for n in [10usize, 20, 30, 50, 100, 5000, 20000] {
            for shift in [0.0, 0.2, 0.5, 1.0] {
                let shift = shift * 10.0 / (n as f64).sqrt();
                let xs: Vec<f64> = (0..n)
                    .map(|_| 1.0 + 2.0 * rng.sample::<f64, _>(StandardNormal) + shift)
                    .collect();
                let (d, p) = ks_test_normal(&xs, 1.0, 2.0);
                let method = if n <= 100 {
                    KSOneSampleAlternativeMethod::TwoSidedExact
                } else {
                    KSOneSampleAlternativeMethod::TwoSidedAsymptotic
                };
                let (d_ref, p_ref) = ks_onesample(xs, &law, method, NaNPolicy::Error).unwrap();
                assert!((d - d_ref).abs() < 1e-12, "n {n}: D {d} vs statrs {d_ref}");
                let tol = if p_ref < 0.1 { 0.002 } else { 0.02 };
                assert!(
                    (p - p_ref).abs() < tol,
                    "n {n}, shift {shift}: p {p} vs statrs {p_ref}"
                );
            }
        }
    }

    #[test]
    fn proportion_test_accepts_truth_and_rejects_wrong_or_missing() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let probs = [0.1, 0.2, 0.3, 0.4];
        let cats: Vec<usize> = (0..5000)
            .map(|_| {
                let u: f64 = rng.random();
                probs
                    .iter()
                    .scan(0.0, |c, p| {
                        *c += p;
                        Some(*c)
                    })
                    .position(|c| u < c)
                    .unwrap()
            })
            .collect();
        let lw = vec![0.0; cats.len()];
        assert!(weighted_proportion_test(&cats, &lw, &probs).1 > 0.01);
        assert!(weighted_proportion_test(&cats, &lw, &[0.13, 0.2, 0.3, 0.37]).1 < 0.01);
        let no_last: Vec<usize> = cats.iter().map(|&c| c.min(2)).collect();
        assert_eq!(weighted_proportion_test(&no_last, &lw, &probs).1, 0.0);
    }
}
