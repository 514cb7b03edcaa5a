//! The sequential diffusion sampler (`dsb::sequential`): exactness of its weights and estimates.
//!
//! - Untrained, without resampling or moves, it is annealed importance sampling with
//!   unadjusted Langevin transitions: the same numbers as a direct implementation in this file.
//! - Ẑ (not log Ẑ) is unbiased over repeated runs with the control untrained, trained and
//!   deliberately wrong, on a Gaussian and a 2-D mixture with known Z; the error shrinks with
//!   the number of particles.
//! - The Lee–Whiteley standard error matches the spread of log Ẑ over repeats.

use dsb::baseline::{DiagGaussian, Want, evaluate};
use dsb::sequential::{SequentialConfig, SequentialSampler, geometric_betas};
use dsb::target::{CorrelatedGaussian, GaussianMixture, Target};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;

fn start(d: usize, scale: f64) -> DiagGaussian {
    DiagGaussian {
        mean: vec![0.0; d],
        scale: vec![scale; d],
    }
}

fn small_config(particles: usize) -> SequentialConfig {
    SequentialConfig {
        steps: 16,
        particles,
        langevin_step: 0.02,
        iterations: 0,
        batch: 64,
        width: 16,
        depth: 1,
        pilot_particles: 0,
        ..SequentialConfig::default()
    }
}

/// log Σ exp − log n.
fn log_mean_exp(v: &[f64]) -> f64 {
    let m = v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    m + (v.iter().map(|x| (x - m).exp()).sum::<f64>() / v.len() as f64).ln()
}

/// Annealed importance sampling with unadjusted Langevin forward and backward kernels, written
/// out directly: the reference the untrained sampler must reproduce draw for draw.
fn ais_reference(
    target: &dyn Target,
    start: &DiagGaussian,
    betas: &[f64],
    delta: f64,
    n: usize,
    rng: &mut StdRng,
) -> f64 {
    let d = start.dim();
    let s = &start.scale;
    let mut x: Vec<f64> = (0..n * d)
        .map(|i| s[i % d] * rng.sample::<f64, _>(StandardNormal))
        .collect();
    let (mut l, mut g) = evaluate(target, &x, d, Want::Both).unwrap();
    let mut log_w = vec![0.0; n];
    let log_pi = |x: &[f64], l: f64, b: f64| {
        if b == 0.0 {
            start.log_density(x)
        } else {
            (1.0 - b) * start.log_density(x) + b * l
        }
    };
    // Whitened tempered score at β: −(1−β) z + β s ∇log γ̃.
    let score = |x: &[f64], g: &[f64], b: f64| -> Vec<f64> {
        (0..x.len())
            .map(|i| -(1.0 - b) * x[i] / s[i % d] + b * s[i % d] * g[i])
            .collect()
    };
    for k in 0..betas.len() - 1 {
        let (b0, b1) = (betas[k], betas[k + 1]);
        let gz = score(&x, &g, b0);
        let xi: Vec<f64> = (0..n * d).map(|_| rng.sample(StandardNormal)).collect();
        let z: Vec<f64> = (0..n * d).map(|i| x[i] / s[i % d]).collect();
        let y: Vec<f64> = (0..n * d)
            .map(|i| z[i] + (delta * gz[i]).clamp(-10.0, 10.0) + (2.0 * delta).sqrt() * xi[i])
            .collect();
        let x_new: Vec<f64> = (0..n * d).map(|i| y[i] * s[i % d]).collect();
        let (l_new, g_new) = evaluate(target, &x_new, d, Want::Both).unwrap();
        let gy = score(&x_new, &g_new, b1);
        for i in 0..n {
            let r = i * d..(i + 1) * d;
            let fwd: f64 = r.clone().map(|j| 0.5 * xi[j] * xi[j]).sum();
            let back: f64 = r
                .clone()
                .map(|j| {
                    let e =
                        (z[j] - y[j] - (delta * gy[j]).clamp(-10.0, 10.0)) / (2.0 * delta).sqrt();
                    0.5 * e * e
                })
                .sum();
            log_w[i] +=
                log_pi(&x_new[r.clone()], l_new[i], b1) - log_pi(&x[r], l[i], b0) - back + fwd;
        }
        (x, l, g) = (x_new, l_new, g_new);
    }
    log_mean_exp(&log_w)
}

#[test]
fn untrained_without_resampling_is_annealed_importance_sampling() {
    let target = CorrelatedGaussian::builtin(3).unwrap();
    let st = start(3, 2.0);
    let cfg = SequentialConfig {
        resample_threshold: 0.0,
        moves: 0,
        ..small_config(200)
    };
    let betas = geometric_betas(cfg.steps);
    let mut s =
        SequentialSampler::new(st.clone(), betas.clone(), cfg, 0, &candle_core::Device::Cpu)
            .unwrap();
    let run = s.sample(&target, &mut StdRng::seed_from_u64(5)).unwrap();
    assert_eq!(run.resamplings, 0);
    let want = ais_reference(
        &target,
        &st,
        &betas,
        0.02,
        200,
        &mut StdRng::seed_from_u64(5),
    );
    // Equal up to the f32 rounding of the states handed to the target (the two whiten and
    // unwhiten in a different order).
    assert!(
        (run.log_z - want).abs() < 1e-6,
        "sequential {} vs AIS {want}",
        run.log_z
    );
}

/// Ẑ/Z over `reps` independent runs: (mean, its standard error, mean |log Ẑ − log Z|,
/// sd of log Ẑ, mean reported standard error).
fn repeat(
    s: &mut SequentialSampler,
    target: &dyn Target,
    reps: usize,
    seed: u64,
) -> (f64, f64, f64, f64, f64) {
    let truth = target.log_z().unwrap();
    let mut rng = StdRng::seed_from_u64(seed);
    let runs: Vec<(f64, f64)> = (0..reps)
        .map(|_| {
            let r = s.sample(target, &mut rng).unwrap();
            (r.log_z - truth, r.log_z_stderr)
        })
        .collect();
    let ratio: Vec<f64> = runs.iter().map(|(e, _)| e.exp()).collect();
    let n = reps as f64;
    let mean = ratio.iter().sum::<f64>() / n;
    let sd = (ratio.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
    let abs = runs.iter().map(|(e, _)| e.abs()).sum::<f64>() / n;
    let m_log = runs.iter().map(|(e, _)| e).sum::<f64>() / n;
    let sd_log = (runs.iter().map(|(e, _)| (e - m_log).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
    let se_mean = runs.iter().map(|(_, s)| s).sum::<f64>() / n;
    (mean, sd / n.sqrt(), abs, sd_log, se_mean)
}

fn mixture() -> GaussianMixture {
    GaussianMixture::new(
        "two-modes",
        vec![vec![-2.0, 0.0], vec![2.5, 1.0]],
        vec![0.3, 0.7],
        0.6,
    )
    .unwrap()
}

/// Ẑ is unbiased for any control: within 3.5 standard errors of Z over 40 runs of 128 particles,
/// untrained, trained for 30 iterations and with random control weights. Seed 11; the same
/// holds at seeds 12–14 (checked when the test was written). The error of log Ẑ shrinks with
/// the number of particles.
#[test]
fn z_hat_is_unbiased_trained_untrained_and_wrong() {
    let gauss = CorrelatedGaussian::builtin(2).unwrap();
    let mix = mixture();
    let targets: [&dyn Target; 2] = [&gauss, &mix];
    for target in targets {
        for variant in ["untrained", "trained", "wrong"] {
            let cfg = SequentialConfig {
                iterations: if variant == "trained" { 30 } else { 0 },
                ..small_config(128)
            };
            let mut s = SequentialSampler::new(
                start(2, 2.0),
                geometric_betas(cfg.steps),
                cfg,
                0,
                &candle_core::Device::Cpu,
            )
            .unwrap();
            let mut rng = StdRng::seed_from_u64(3);
            match variant {
                "trained" => s.train(target, &mut rng, |_| {}).unwrap(),
                "wrong" => s.perturb_control(0.5, 7).unwrap(),
                _ => {}
            }
            let (mean, se, abs, _, _) = repeat(&mut s, target, 40, 11);
            println!(
                "{} {variant}: mean Z-hat/Z {mean:.4} ± {se:.4}, mean |err| {abs:.4}",
                target.name()
            );
            assert!(
                se > 0.0 && se < 0.2,
                "{variant}: uninformative test, se {se}"
            );
            assert!(
                (mean - 1.0).abs() < 3.5 * se,
                "{} {variant}: mean Z-hat/Z {mean} ± {se}",
                target.name()
            );
        }
    }
    // More particles, smaller error: 16× the particles should divide it by about 4.
    let errs: Vec<f64> = [32usize, 512]
        .iter()
        .map(|&n| {
            let cfg = small_config(n);
            let mut s = SequentialSampler::new(
                start(2, 2.0),
                geometric_betas(cfg.steps),
                cfg,
                0,
                &candle_core::Device::Cpu,
            )
            .unwrap();
            repeat(&mut s, &mix, 40, 21).2
        })
        .collect();
    println!(
        "mean |log Z-hat error|: 32 particles {}, 512 particles {}",
        errs[0], errs[1]
    );
    assert!(errs[1] < errs[0] / 2.0, "{errs:?}");
}

/// The reported (Lee–Whiteley) standard error matches the spread of log Ẑ over 60 runs of a
/// system that resamples several times and moves by HMC: their ratio lies in [0.6, 1.6] (the sd
/// of 60 draws is known to about ±9%, so this is beyond 4 standard errors of a calibrated
/// estimator).
#[test]
fn reported_standard_error_matches_the_spread_over_runs() {
    let target = mixture();
    let cfg = SequentialConfig {
        resample_threshold: 0.95,
        ..small_config(256)
    };
    let mut s = SequentialSampler::new(
        start(2, 2.0),
        geometric_betas(cfg.steps),
        cfg,
        0,
        &candle_core::Device::Cpu,
    )
    .unwrap();
    let r = s.sample(&target, &mut StdRng::seed_from_u64(1)).unwrap();
    assert!(
        r.resamplings >= 2 && r.moves > 0,
        "{} resamplings",
        r.resamplings
    );
    let (_, _, _, sd_log, se_mean) = repeat(&mut s, &target, 60, 31);
    println!("sd of log Z-hat {sd_log:.4}, mean reported s.e. {se_mean:.4}");
    let ratio = se_mean / sd_log;
    assert!((0.6..1.6).contains(&ratio), "s.e. {se_mean} vs sd {sd_log}");
}

/// With the pilot's full-covariance whitening (a correlated 5-D Gaussian, correlations 0.8,
/// scales 0.5 to 2), Ẑ stays unbiased over 40 runs (within 3.5 of its standard errors) and the
/// samples come back in the target's coordinates: the mean over runs of the weighted sample
/// means is within 0.1 posterior sd of the true mean (its Monte Carlo error is about 0.02 sd).
/// Shown to fail when the whitened density drops log det L (Ẑ/Z 0.87 ± 0.008) and when the
/// samples are not mapped back (mean error 2.2 sd); passes at seeds (5, 31), (6, 32), (7, 33).
#[test]
fn pilot_whitening_keeps_z_hat_unbiased_and_samples_in_target_coordinates() {
    let target = CorrelatedGaussian::builtin(5).unwrap();
    let cfg = SequentialConfig {
        pilot_particles: 256,
        ..small_config(256)
    };
    let mut rng = StdRng::seed_from_u64(5);
    let mut s = SequentialSampler::with_pilot(
        &target,
        &start(5, 3.0),
        cfg,
        0,
        &mut rng,
        &candle_core::Device::Cpu,
    )
    .unwrap();
    assert!(s.whitening().is_some(), "a correlated Gaussian is whitened");
    let (mean, se, _, _, _) = repeat(&mut s, &target, 40, 31);
    println!("whitened gaussian: mean Z-hat/Z {mean:.4} ± {se:.4}");
    assert!(se > 0.0 && se < 0.2, "uninformative test, se {se}");
    assert!((mean - 1.0).abs() < 3.5 * se, "mean Z-hat/Z {mean} ± {se}");
    let mut sums = [0.0f64; 5];
    let runs = 40;
    for _ in 0..runs {
        let r = s.sample(&target, &mut rng).unwrap();
        let set = &r.samples;
        let w = dsb::estimate::normalised_weights(&set.log_w);
        for (row, wi) in set.samples.chunks(5).zip(&w) {
            for j in 0..5 {
                sums[j] += wi * row[j] as f64 / runs as f64;
            }
        }
    }
    for (j, sum) in sums.iter().enumerate() {
        let sd = target.covariance()[(j, j)].sqrt();
        let err = (sum - target.mean()[j]) / sd;
        assert!(err.abs() < 0.1, "coordinate {j}: mean error {err:.3} sd");
    }
}
