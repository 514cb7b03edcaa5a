//! Neal's funnel in 10-D: the x₀ marginal and log Z.

mod common;

use dsb::metrics::{kolmogorov_p_value, ks_test_normal};
use dsb::prelude::*;

/// The recommended funnel settings (`dsb::recommend`): the per-coordinate prior (3, 1, …, 1) and
/// replay paths from HMC chains on the target. Without the replay term training collapses x₀
/// (log Ẑ ≈ −0.4, KS p < 10⁻⁴; README, known limitations). About 30 s in release mode on 2
/// cores (4–5 minutes before the CPU fast path).
#[test]
fn funnel_x0_marginal_and_log_z() {
    let target = Funnel::new(10);
    let scfg = SamplerConfig {
        sigma: 1.0,
        prior_scales: target.suggested_scales(),
        steps: 64,
        width: 64,
        ..Default::default()
    };
    let tcfg = TrainConfig {
        iterations: 1000,
        batch: 256,
        lr: 2e-3,
        replay: 0.5,
        replay_moves: 20,
        replay_weight: 3.0,
        ..Default::default()
    };
    let (sampler, mut rng) = common::trained(&target, scfg, tcfg, 2);
    let set = sampler.sample(&target, 20_000, 5_000, &mut rng).unwrap();
    let e = set.estimates;
    eprintln!(
        "funnel: log Z-hat {:.4} ± {:.4}, ESS {:.4}",
        e.log_z, e.log_z_stderr, e.ess
    );
    assert!(
        e.log_z.abs() < 0.3,
        "|log Z-hat| = {} (ESS {})",
        e.log_z.abs(),
        e.ess
    );

    // KS test of x₀ on the importance-resampled sample against N(0, 3²). The resampled empirical
    // CDF deviates from the truth through the weighting (variance F(1−F)/n_eff, n_eff = n·ESS)
    // and the resampling (at most F(1−F)/m for m draws), so the p-value uses the sample size
    // 1/(1/m + 1/n_eff), which keeps the 1% level honest despite duplicated particles.
    let m = set.len();
    let resampled = set.resampled(m, &mut rng);
    let x0: Vec<f64> = (0..m).map(|i| resampled.row(i)[0] as f64).collect();
    // D against N(0, 3²); its p-value is recomputed below for the effective sample size.
    let (d, _) = ks_test_normal(&x0, 0.0, 3.0);
    let n_eff = e.ess * set.len() as f64;
    let size = 1.0 / (1.0 / m as f64 + 1.0 / n_eff);
    let p = kolmogorov_p_value(d, size.floor() as usize);
    eprintln!("funnel: KS D {d:.4}, effective size {size:.0}, p {p:.4}");
    assert!(
        p > 0.01,
        "KS D = {d:.4} with effective size {size:.0}: p = {p:.4}"
    );
}
