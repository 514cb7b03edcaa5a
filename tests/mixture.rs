//! A 2-D mixture with known, unequal weights: every mode is found and the mode proportions pass
//! a chi-square test.

mod common;

use dsb::metrics::{mode_report, weighted_proportion_test};
use dsb::prelude::*;

#[test]
fn unequal_mixture_finds_every_mode_with_the_right_proportions() {
    let weights = vec![0.1, 0.2, 0.3, 0.4];
    let means = vec![
        vec![-6.0, -6.0],
        vec![6.0, -6.0],
        vec![-6.0, 6.0],
        vec![6.0, 6.0],
    ];
    let target = GaussianMixture::new("four-modes", means.clone(), weights.clone(), 1.0).unwrap();
    let scfg = SamplerConfig {
        sigma: target.suggested_sigma().unwrap(),
        steps: 64,
        width: 64,
        ..Default::default()
    };
    let tcfg = TrainConfig {
        iterations: 300,
        batch: 256,
        lr: 2e-3,
        ..Default::default()
    };
    let (sampler, mut rng) = common::trained(&target, scfg, tcfg, 5);
    let set = sampler.sample(&target, 20_000, 5_000, &mut rng).unwrap();
    let report = mode_report(&set.samples, 2, &means, &set.log_w);
    // Found: each mode holds at least 2% of the raw (unweighted) samples, a fifth of the smallest
    // weight; a sampler that dropped a mode would leave it (nearly) empty.
    for (i, &c) in report.counts.iter().enumerate() {
        assert!(
            c as f64 > 0.02 * set.len() as f64,
            "mode {i} has only {c} of {} samples",
            set.len()
        );
    }
    // Proportions: Wald chi-square test of the importance-weighted mode shares against the true
    // weights (3 degrees of freedom), with the delta-method covariance of the weighted shares; a
    // correct sampler fails it with probability 1%.
    let (stat, p) = weighted_proportion_test(&report.assignment, &set.log_w, &weights);
    eprintln!(
        "mixture: counts {:?}, weighted shares {:?}, chi2 {stat:.2}, p {p:.3}, ESS {:.3}",
        report.counts, report.weighted_proportions, set.estimates.ess
    );
    assert!(
        p > 0.01,
        "chi-square {stat:.2}, p = {p:.4}; weighted shares {:?}",
        report.weighted_proportions
    );
}
