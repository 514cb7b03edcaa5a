//! The particle filter against closed forms. An untrained model's network outputs zero, so its
//! backward process is the exact reversal of the reference started at N(0, I): its x₀ is
//! exactly N(mean, diag(scale²)) in data coordinates, and every Gaussian observation has a
//! closed-form posterior and evidence. Tolerances are in standard errors of the weighted
//! estimates (from the final ESS).

use super::*;
use crate::data::Points;
use crate::fit::{DataSpec, Fit, FitConfig, FitModel, NetworkSpec};
use crate::target::{CorrelatedGaussian, Target};
use candle_core::Device;
use nalgebra::{DMatrix, DVector};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, Normal};

/// An untrained model of 2-D points whose standardisation has mean (1, −2) and scales (2, 0.5)
/// (to within the sampling error of 4000 points), and that prior N(m, S) in data coordinates.
fn untrained() -> (FitModel, DVector<f64>, DMatrix<f64>) {
    let mut rng = StdRng::seed_from_u64(5);
    let (n0, n1) = (
        Normal::new(1.0, 2.0).unwrap(),
        Normal::new(-2.0, 0.5).unwrap(),
    );
    let data: Vec<f32> = (0..4000)
        .flat_map(|_| [n0.sample(&mut rng) as f32, n1.sample(&mut rng) as f32])
        .collect();
    let train = Points::new(data[..6000].to_vec(), 3000, 2).unwrap();
    let held = Points::new(data[6000..].to_vec(), 1000, 2).unwrap();
    let spec = DataSpec {
        name: "gaussian-points".into(),
        n: 3000,
        seed: 0,
        held_out: 0.25,
        data_dir: None,
    };
    let config = FitConfig {
        steps: 20,
        horizon: 5.0,
        network: NetworkSpec::Mlp { width: 8, depth: 1 },
        ..Default::default()
    };
    let fit = Fit::with_points(spec, train, held, config, &Device::Cpu).unwrap();
    let norm = fit.model.settings().normalisation.clone();
    let m = DVector::from_vec(norm.mean.clone());
    let s = DMatrix::from_diagonal(&DVector::from_iterator(2, norm.scale.iter().map(|v| v * v)));
    (fit.model, m, s)
}

/// Posterior N(μ, Σ) of the prior N(m, S) and y = A x + ε, ε ~ N(0, R), and log N(y; Am, ASAᵀ + R).
fn gaussian_posterior(
    m: &DVector<f64>,
    s: &DMatrix<f64>,
    a: &DMatrix<f64>,
    y: &DVector<f64>,
    r: &DMatrix<f64>,
) -> (DVector<f64>, DMatrix<f64>, f64) {
    let s_inv = s.clone().try_inverse().unwrap();
    let r_inv = r.clone().try_inverse().unwrap();
    let cov = (&s_inv + a.transpose() * &r_inv * a).try_inverse().unwrap();
    let mean = &cov * (&s_inv * m + a.transpose() * &r_inv * y);
    let c = a * s * a.transpose() + r;
    let resid = y - a * m;
    let k = y.len() as f64;
    let log_ev = -0.5
        * (resid.dot(&(c.clone().try_inverse().unwrap() * &resid))
            + c.determinant().ln()
            + k * (2.0 * std::f64::consts::PI).ln());
    (mean, cov, log_ev)
}

/// Independent runs of the filter (seeds `seed·1000 + r`), 1000 particles each: 16, or
/// `DSB_TEST_RUNS` to look closer.
fn runs() -> usize {
    std::env::var("DSB_TEST_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(16)
}

/// The worst |mean over runs − truth| / s.e. (the spread of the runs over √runs, which counts
/// the correlation that resampling leaves between particles) over the posterior mean and
/// variances and the evidence Ẑ = E_q[r], and the lowest ESS of any run.
fn worst_z(
    model: &FitModel,
    obs: &Observation,
    seed: u64,
    truth: &(DVector<f64>, DMatrix<f64>, f64),
) -> (f64, f64) {
    let (mean, cov, log_ev) = truth;
    let d = mean.len();
    let opts = ConditionOptions {
        particles: 1000,
        ..Default::default()
    };
    // Per run: the means, the variances, and Ẑ / truth.
    let mut stats: Vec<Vec<f64>> = Vec::new();
    let mut lowest_ess: f64 = 1.0;
    let runs = runs();
    for r in 0..runs {
        let mut rng = StdRng::seed_from_u64(seed * 1000 + r as u64);
        let out = condition(model, obs, &opts, &mut rng).unwrap();
        lowest_ess = lowest_ess.min(out.ess);
        let (m, c) = (out.weighted_mean(), out.weighted_covariance());
        let mut row: Vec<f64> = m.clone();
        row.extend((0..d).map(|j| c[(j, j)]));
        row.push((out.log_evidence - log_ev).exp());
        stats.push(row);
    }
    let want: Vec<f64> = mean
        .iter()
        .copied()
        .chain((0..d).map(|j| cov[(j, j)]))
        .chain([1.0])
        .collect();
    let mut worst: f64 = 0.0;
    for (q, w) in want.iter().enumerate() {
        let v: Vec<f64> = stats.iter().map(|row| row[q]).collect();
        let avg = v.iter().sum::<f64>() / runs as f64;
        let sd = (v.iter().map(|x| (x - avg).powi(2)).sum::<f64>() / (runs - 1) as f64).sqrt();
        worst = worst.max((avg - w).abs() / (sd / (runs as f64).sqrt()));
    }
    (worst, lowest_ess)
}

/// An observed coordinate (the exact, fully adapted proposal), a linear measurement of the sum
/// and a Gaussian likelihood given as a target (both by the damped perturbed mean): the
/// posterior means and variances and the evidence Ẑ within 4 s.e. of the closed form over 16
/// independent runs, and every run's final ESS above 0.2.
#[test]
fn gaussian_observations_give_the_closed_form_posterior() {
    let (model, m, s) = untrained();
    let seed = std::env::var("DSB_TEST_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    // x₁ observed as 3.0 with noise sd 1.
    let coords = Observation::Coordinates {
        observed: vec![0],
        values: vec![3.0],
        noise_sd: 1.0,
    };
    let a1 = DMatrix::from_row_slice(1, 2, &[1.0, 0.0]);
    let truth1 = gaussian_posterior(
        &m,
        &s,
        &a1,
        &DVector::from_vec(vec![3.0]),
        &DMatrix::identity(1, 1),
    );
    // x₁ + x₂ measured as 0.5 with noise sd 0.5.
    let a2 = DMatrix::from_row_slice(1, 2, &[1.0, 1.0]);
    let linear = Observation::Linear {
        a: a2.clone(),
        y: vec![0.5],
        noise_sd: 0.5,
    };
    let truth2 = gaussian_posterior(
        &m,
        &s,
        &a2,
        &DVector::from_vec(vec![0.5]),
        &(DMatrix::identity(1, 1) * 0.25),
    );
    // r(x) ∝ N(x; (0, −1.5), diag(1, 0.25)) as a target; its evidence is the normalised one's
    // times the target's Z.
    let r_cov = DMatrix::from_diagonal(&DVector::from_vec(vec![1.0, 0.25]));
    let target = CorrelatedGaussian::new(vec![0.0, -1.5], r_cov.clone()).unwrap();
    let log_z = target.log_z().unwrap();
    let likelihood = Observation::Likelihood(Box::new(target));
    let mut truth3 = gaussian_posterior(
        &m,
        &s,
        &DMatrix::identity(2, 2),
        &DVector::from_vec(vec![0.0, -1.5]),
        &r_cov,
    );
    truth3.2 += log_z;
    for (name, obs, truth) in [
        ("coordinates", &coords, truth1),
        ("linear", &linear, truth2),
        ("likelihood", &likelihood, truth3),
    ] {
        let (z, ess) = worst_z(&model, obs, seed, &truth);
        eprintln!("{name}: worst z {z:.2}, lowest final ESS {ess:.3}");
        assert!(ess > 0.2, "{name}: final ESS {ess}");
        assert!(z < 4.0, "{name}: worst z-score {z:.2}");
    }
}

#[test]
fn bad_observations_are_refused_before_any_work() {
    let (model, _, _) = untrained();
    let mut rng = StdRng::seed_from_u64(0);
    let opts = ConditionOptions::default();
    let mut err = |obs: Observation| {
        condition(&model, &obs, &opts, &mut rng)
            .unwrap_err()
            .to_string()
    };
    let e = err(Observation::Coordinates {
        observed: vec![2],
        values: vec![1.0],
        noise_sd: 0.1,
    });
    assert!(e.contains("outside the model's 2 coordinates"), "{e}");
    let e = err(Observation::Coordinates {
        observed: vec![0],
        values: vec![1.0],
        noise_sd: 0.0,
    });
    assert!(e.contains("--noise-sd must be positive"), "{e}");
    let e = err(Observation::Linear {
        a: DMatrix::zeros(1, 3),
        y: vec![0.0],
        noise_sd: 1.0,
    });
    assert!(e.contains("needs A of m×2"), "{e}");
    let e = condition(
        &model,
        &Observation::Coordinates {
            observed: vec![0],
            values: vec![0.0],
            noise_sd: 1.0,
        },
        &ConditionOptions {
            particles: 1,
            ..Default::default()
        },
        &mut rng,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("--particles must be at least 2"), "{e}");
}
