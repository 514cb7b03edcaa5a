//! Correlated 5-D Gaussian: moments and log Z against the closed form.

mod common;

use dsb::prelude::*;

#[test]
fn correlated_gaussian_moments_and_log_z() {
    let target = CorrelatedGaussian::builtin(5).unwrap();
    let scfg = SamplerConfig {
        sigma: 3.0,
        steps: 64,
        width: 64,
        ..Default::default()
    };
    let tcfg = TrainConfig {
        iterations: 500,
        batch: 256,
        lr: 2e-3,
        ..Default::default()
    };
    let (sampler, mut rng) = common::trained(&target, scfg, tcfg, 11);
    let set = sampler.sample(&target, 50_000, 5_000, &mut rng).unwrap();
    let e = set.estimates;
    let n_eff = common::effective_n(&set);
    let (mean, cov) = common::weighted_moments(&set);
    let (m_true, c_true) = (target.mean(), target.covariance());
    eprintln!(
        "gaussian-5d: log Z-hat {:.4} ± {:.4} (true {:.4}), ESS {:.3}, mean {:?}",
        e.log_z,
        e.log_z_stderr,
        target.log_z().unwrap(),
        e.ess,
        mean
    );
    // Tolerance: 4 standard errors with the Kish effective sample size n_eff = n·ESS. Per entry
    // that is a two-sided p of 6e-5; over the 5 means and 15 distinct covariances (Bonferroni)
    // a correct sampler fails with probability below 0.2%. SE of a mean: sd/√n_eff; of a
    // covariance entry: √((Σaa Σbb + Σab²)/n_eff), the Gaussian (Wishart) formula.
    for a in 0..5 {
        let se = (c_true[(a, a)] / n_eff).sqrt();
        assert!(
            (mean[a] - m_true[a]).abs() < 4.0 * se,
            "mean[{a}] = {} vs {} (se {se})",
            mean[a],
            m_true[a]
        );
        for b in 0..=a {
            let se = ((c_true[(a, a)] * c_true[(b, b)] + c_true[(a, b)].powi(2)) / n_eff).sqrt();
            let diff = (cov[a][b] - c_true[(a, b)]).abs();
            assert!(
                diff < 4.0 * se,
                "cov[{a}][{b}] = {} vs {} (se {se})",
                cov[a][b],
                c_true[(a, b)]
            );
        }
    }
    // The bound on log Z. It is only meaningful if the estimate is precise enough: demand a
    // standard error below a fifth of the bound, so that |error| < 0.05 is a 5-SE margin.
    let err = (e.log_z - target.log_z().unwrap()).abs();
    assert!(
        e.log_z_stderr < 0.01,
        "log Z standard error {} too large (ESS {})",
        e.log_z_stderr,
        e.ess
    );
    assert!(
        err < 0.05,
        "|log Z-hat - log Z| = {err} (stderr {}, ESS {})",
        e.log_z_stderr,
        e.ess
    );
}
