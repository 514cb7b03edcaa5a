//! Targets that misbehave: non-finite log densities are counted and weighted zero, never a panic;
//! a target that is non-finite everywhere stops training with an error that names it.

use candle_core::{Device, Result, Tensor};
use dsb::prelude::*;
use rand::SeedableRng;

/// Standard normal in 2-D whose log density is NaN wherever x₁ > 1 (about 16% of its mass).
struct HoleyNormal;

impl Target for HoleyNormal {
    fn name(&self) -> &str {
        "holey-normal"
    }
    fn dim(&self) -> usize {
        2
    }
    fn log_density(&self, x: &Tensor) -> Result<Tensor> {
        let lp = (x.sqr()?.sum(1)? * -0.5)?;
        let x1 = x.narrow(1, 0, 1)?.squeeze(1)?;
        let nan = Tensor::full(f32::NAN, lp.dims(), x.device())?;
        x1.gt(1.0)?.where_cond(&nan, &lp)
    }
}

/// A target that is NaN everywhere.
struct AllNan;

impl Target for AllNan {
    fn name(&self) -> &str {
        "all-nan"
    }
    fn dim(&self) -> usize {
        2
    }
    fn log_density(&self, x: &Tensor) -> Result<Tensor> {
        Tensor::full(f32::NAN, x.dim(0)?, x.device())
    }
}

fn sampler() -> DiffusionSampler {
    let cfg = SamplerConfig {
        sigma: 1.0,
        steps: 8,
        width: 16,
        ..Default::default()
    };
    DiffusionSampler::new(2, cfg, 0, &Device::Cpu).unwrap()
}

#[test]
fn nan_region_gives_counted_zero_weight_particles() {
    let mut s = sampler();
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    for loss in [Loss::LogVariance, Loss::ReverseKl] {
        let cfg = TrainConfig {
            iterations: 5,
            batch: 64,
            loss,
            ..Default::default()
        };
        let report = train(&mut s, &HoleyNormal, &cfg, &mut rng, |st| {
            assert!(
                st.loss.is_finite(),
                "loss must stay finite with NaN particles"
            );
        })
        .unwrap();
        assert_eq!(report.skipped, 0);
    }
    let set = s.sample(&HoleyNormal, 4000, 1000, &mut rng).unwrap();
    let e = set.estimates;
    // The untrained-ish sampler is close to N(0, I), so about 16% of particles land where the
    // density is NaN; they are counted and excluded, and the estimates stay finite.
    assert!(
        e.n_nonfinite > 200 && e.n_nonfinite < 1200,
        "{}",
        e.n_nonfinite
    );
    assert!(e.log_z.is_finite() && e.elbo.is_finite() && e.ess > 0.0);
    // Every NaN particle got zero weight: log Ẑ estimates log of the mass where the density is
    // defined, 2π·Φ(1) ≈ log(2π) − 0.173, within a few standard errors.
    let expect = (2.0 * std::f64::consts::PI).ln() + 0.841_344_746f64.ln();
    assert!(
        (e.log_z - expect).abs() < 5.0 * e.log_z_stderr + 0.01,
        "{} vs {expect}",
        e.log_z
    );
}

#[test]
fn target_that_is_nan_everywhere_stops_with_a_named_error() {
    let mut s = sampler();
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let cfg = TrainConfig {
        iterations: 100,
        batch: 16,
        ..Default::default()
    };
    let err = train(&mut s, &AllNan, &cfg, &mut rng, |_| {}).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("all-nan") && msg.contains("non-finite"),
        "{msg}"
    );
}

#[test]
fn wrong_target_dimension_is_an_error() {
    let s = sampler();
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let err = s.sample(&Funnel::new(10), 10, 10, &mut rng).unwrap_err();
    assert!(err.to_string().contains("dimension 10"), "{err}");
}
