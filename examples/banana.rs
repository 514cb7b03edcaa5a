//! A user's own target sampled through the library API: a banana-shaped density.
//!
//! `cargo run --release --example banana` trains a sampler on
//! log γ̃(x) = −x₁²/8 − 2 (x₂ − x₁²/2)², whose normalising constant is known
//! (Z = √(8π) · √(π/2) = 2π, since x₁ ~ N(0, 4) and x₂ | x₁ ~ N(x₁²/2, 1/4)), and prints log Ẑ.

use candle_core::{Device, Result, Tensor};
use dsb::prelude::*;
use rand::SeedableRng;

// Recommended in programs that train samplers: candle allocates a fresh buffer for every
// intermediate tensor, and glibc's allocator maps and unmaps each large one (a third of the time).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The banana: a Gaussian in x₁ with x₂ bent around the parabola x₁²/2.
struct Banana;

impl Target for Banana {
    fn name(&self) -> &str {
        "banana"
    }
    fn dim(&self) -> usize {
        2
    }
    fn log_density(&self, x: &Tensor) -> Result<Tensor> {
        let x1 = x.narrow(1, 0, 1)?.squeeze(1)?;
        let x2 = x.narrow(1, 1, 1)?.squeeze(1)?;
        let bent = (x2 - (x1.sqr()? * 0.5)?)?;
        ((x1.sqr()? / 8.0)? + (bent.sqr()? * 2.0)?)? * -1.0
    }
    fn log_z(&self) -> Option<f64> {
        Some((2.0 * std::f64::consts::PI).ln())
    }
}

fn main() -> dsb::error::Result<()> {
    let config = SamplerConfig {
        sigma: 3.0,
        steps: 64,
        ..Default::default()
    };
    let mut sampler = DiffusionSampler::new(2, config, 0, &Device::Cpu)?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let train_cfg = TrainConfig {
        iterations: 400,
        ..Default::default()
    };
    train(&mut sampler, &Banana, &train_cfg, &mut rng, |it| {
        if it.iteration % 100 == 0 {
            println!(
                "iteration {:>4}  elbo {:>8.3}  ess {:.2}",
                it.iteration, it.estimates.elbo, it.estimates.ess
            );
        }
    })?;
    let set = sampler.sample(&Banana, 10_000, 2_048, &mut rng)?;
    let e = set.estimates;
    println!(
        "log Z ≈ {:.3} ± {:.3} (true {:.3}), ESS {:.2}",
        e.log_z,
        e.log_z_stderr,
        Banana.log_z().unwrap(),
        e.ess
    );
    Ok(())
}
