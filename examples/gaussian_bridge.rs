//! The Schrödinger bridge between two 2-D Gaussians by IPF, checked against its closed form.
//!
//! `cargo run --release --example gaussian_bridge [-- ITERATIONS]` prints, per IPF iteration,
//! the largest error of the empirical Cov(X₀, X₁), Cov(X₀) and Cov(X_½) against the closed form.

use candle_core::Device;
use dsb::bridge::{GaussianBridge, bridge_moments};
use dsb::ipf::{ForwardFitConfig, IpfConfig, fresh_estimates, refine};
use dsb::prelude::*;
use nalgebra::{DMatrix, DVector};
use rand::SeedableRng;

fn main() -> anyhow::Result<()> {
    let iterations: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(4);
    let bridge = GaussianBridge::new(
        DVector::from_vec(vec![1.0, -1.0]),
        DMatrix::from_row_slice(2, 2, &[1.0, 0.5, 0.5, 0.8]),
        DVector::from_vec(vec![0.0, 0.5]),
        DMatrix::from_row_slice(2, 2, &[0.6, -0.3, -0.3, 1.2]),
        1.0,
    )?;
    let target = bridge.start_target()?;
    let steps: usize = std::env::var("STEPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let cfg = bridge.sampler_config(steps, 64, 2);
    let mut sampler = DiffusionSampler::new(2, cfg, 0, &Device::Cpu)?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let iters: usize = std::env::var("ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(400);
    let tcfg = TrainConfig {
        iterations: iters,
        batch: 256,
        lr: 2e-3,
        loss: if std::env::var("LOSS").is_ok_and(|v| v == "log-var") {
            Loss::LogVariance
        } else {
            Loss::ReverseKl
        },
        ema: 0.99,
        ..Default::default()
    };
    let ipf = IpfConfig {
        refinements: 1,
        backward_iterations: iters,
        forward: ForwardFitConfig {
            iterations: iters,
            lr: 2e-3,
            ..Default::default()
        },
        eval_samples: 4096,
    };
    let t = std::time::Instant::now();
    train(&mut sampler, &target, &tcfg, &mut rng, |_| {})?;
    let c = bridge.cross_covariance();
    println!("closed-form C = {c:.4}");
    for it in 0..=iterations {
        if it > 0 {
            refine(&mut sampler, &target, &tcfg, &ipf, it, 1, &mut rng, |_| {})?;
        }
        let m = bridge_moments(&sampler, &target, 20_000, &mut rng)?;
        let e = fresh_estimates(&sampler, &target, 4096, &mut rng)?;
        println!(
            "iter {it}: C {:.3?} dS½ {:.3?} |C err| {:.4}  |Σ0 err| {:.4}  |Σ½ err| {:.4}  |m0 err| {:.4}  logZ err {:+.4} ESS {:.3}  ({:.0}s)",
            m.cross.as_slice(),
            (&m.cov_half - bridge.marginal_covariance(m.t_half)).as_slice(),
            (&m.cross - &c).abs().max(),
            (&m.cov0 - bridge.marginal_covariance(0.0)).abs().max(),
            (&m.cov_half - bridge.marginal_covariance(m.t_half))
                .abs()
                .max(),
            (&m.mean0 - bridge.marginal_mean(0.0)).abs().max(),
            e.log_z - target.log_z().unwrap(),
            e.ess,
            t.elapsed().as_secs_f64()
        );
    }
    Ok(())
}
