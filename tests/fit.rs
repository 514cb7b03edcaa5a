//! Statistical checks of generative modelling from data (`dsb::fit`) on the swiss roll.
//!
//! The metric is the unbiased MMD² (Gaussian kernels at 1/8 to 2 times the median distance) of
//! 4000 generated points against 4000 held-out points, compared with the MMD² of 4000 draws of
//! the prior N(mean, diag(scale²)) (0.0109 here). Between two draws of the same model it varies
//! by about ±0.0003 at these sizes, so the held-out ELBO (whose differences between models on the
//! same held-out points are much less noisy) is checked as well where the MMD² differences are
//! small.

use candle_core::Device;
use dsb::fit::{DataSpec, Fit, FitConfig, NetworkSpec, RunOptions, sample_metrics};
use dsb::process::Schedule;

fn swiss_roll() -> DataSpec {
    DataSpec {
        name: "swiss-roll".into(),
        n: 10_000,
        seed: 0,
        held_out: 0.4,
        data_dir: None,
    }
}

/// MMD² of the fit's generated points (those its last row reports, or the untrained model's)
/// against the held-out points.
fn mmd2_now(fit: &Fit) -> f64 {
    let held = fit.held_out();
    let n = fit.config().eval_samples.min(held.len());
    sample_metrics(
        &fit.evaluated_samples().unwrap(),
        &held.data[..n * held.dim],
        held.dim,
    )
    .0
}

/// A DDPM-style model (IPF iteration 0; 30 steps, T = 5, 2000 gradient steps, ~10 s) generates
/// points whose MMD² is below a quarter of the prior's. Measured: 0.013 of the prior's (MMD²
/// 0.00014 vs 0.0109), so the bound leaves a margin of almost 20×. The test can fail: the
/// untrained model (zero network, so it samples the prior) is checked first and must not pass;
/// its ratio is about 1.
#[test]
fn ddpm_style_model_beats_the_prior_by_a_wide_margin() {
    let config = FitConfig {
        steps: 30,
        horizon: 5.0,
        schedule: Schedule::Geometric,
        iters: 2000,
        eval_samples: 4000,
        ..Default::default()
    };
    let mut fit = Fit::new(swiss_roll(), config, &Device::Cpu).unwrap();
    let (prior, _) = fit.prior_baseline().unwrap();
    let untrained = mmd2_now(&fit) / prior;
    assert!(
        untrained > 0.5,
        "the untrained model must fail the test: ratio {untrained}"
    );
    assert!(fit.run(&RunOptions::default(), |_| {}).unwrap());
    let row = &fit.progress().rows[0];
    let ratio = row.mmd2 / prior;
    assert!(
        ratio < 0.25,
        "generated MMD² {} is {ratio:.3} of the prior's {prior}",
        row.mmd2
    );
    assert!(row.elbo.nats_per_dim.is_finite());
}

/// Two IPF refinements at a short horizon (T = 0.05, 10 steps: the reference keeps 95% of the
/// data's scale, so a DDPM-style model that starts from N(0, I) is biased) lower the MMD² of the
/// converged iteration 0 and raise the held-out ELBO (64×2 MLP, 9000 + 4 × 3000 gradient steps,
/// ~40 s on 2 cores).
///
/// Measured (seed 0): MMD² 0.00173 → 0.00180 → 0.00090 over iterations 0, 1, 2 (prior 0.0109),
/// ELBO −1.525 → −1.498 → −1.483 nats/dim: the MMD² falls to 0.52 of iteration 0's (bound:
/// 0.75) and the ELBO rises by 0.042 (bound: 0.02). Iteration 0 is trained for 9000 steps
/// because it is then converged: with 3000 it measured 0.00467 (on 2000 points), and refining
/// that one only matched what 6000 more DDPM-style steps give, so the comparison would not
/// isolate refinement. The first refinement does not lower the MMD² yet (its mean-matching
/// targets are noisy, unlike iteration 0's exact conditional means, which costs sharpness);
/// the second does.
///
/// The test can fail: with the forward network left at zero (the forward half-step skipped, so
/// each "refinement" only retrains the backward network against the reference), the same run
/// measured MMD² 0.00173 → 0.00269 → 0.00186 (1.07 of iteration 0's) and an ELBO gain of
/// 0.004, failing both checks.
#[test]
fn refinement_at_a_short_horizon_lowers_the_mmd_further() {
    let config = FitConfig {
        steps: 10,
        horizon: 0.05,
        schedule: Schedule::Geometric,
        network: NetworkSpec::Mlp {
            width: 64,
            depth: 2,
        },
        ipf_iters: 2,
        first_iters: Some(9000),
        iters: 3000,
        cache: 2048,
        refresh: 250,
        eval_samples: 4000,
        ..Default::default()
    };
    let mut fit = Fit::new(swiss_roll(), config, &Device::Cpu).unwrap();
    assert!(fit.run(&RunOptions::default(), |_| {}).unwrap());
    let rows = &fit.progress().rows;
    let (first, last) = (&rows[0], &rows[2]);
    assert!(
        last.mmd2 < 0.75 * first.mmd2,
        "MMD² {} at iteration 0, {} after two refinements",
        first.mmd2,
        last.mmd2
    );
    let gain = last.elbo.nats_per_dim - first.elbo.nats_per_dim;
    assert!(gain > 0.02, "held-out ELBO rose by {gain} nats/dim only");
    // Still far better than the prior.
    let (prior, _) = fit.prior_baseline().unwrap();
    assert!(last.mmd2 < 0.25 * prior);
}
