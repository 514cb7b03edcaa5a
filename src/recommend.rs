//! Recommended settings: what `dsb sample --target NAME` uses when a flag is not given. Generic
//! defaults, adjusted by the target's own [`crate::target::SamplerHints`] (each chosen from
//! measured runs: README, results table), never by its name.

use crate::sampler::SamplerConfig;
use crate::target::Target;
use crate::train::TrainConfig;

/// Sampler and training settings recommended for `target`: σ from
/// [`Target::suggested_scales`] or [`Target::suggested_sigma`] (or 1), 64 steps, the
/// log-variance loss, and whatever the target's [`Target::sampler_hints`] ask for (user targets:
/// nothing).
pub fn recommended_settings(target: &dyn Target) -> (SamplerConfig, TrainConfig) {
    let sigma = target.suggested_sigma().unwrap_or(1.0);
    let mut s = SamplerConfig {
        sigma,
        prior_scales: target.suggested_scales(),
        ..SamplerConfig::default()
    };
    let mut t = TrainConfig::default();
    let h = target.sampler_hints();
    if let Some(v) = h.sigma {
        s.sigma = v;
    }
    if let Some(v) = h.length_scale {
        s.length_scale = v;
    }
    if let Some(v) = h.steps {
        s.steps = v;
    }
    if let Some(v) = h.horizon {
        s.horizon = v;
    }
    if let Some(v) = h.width {
        s.width = v;
    }
    if let Some(v) = h.iterations {
        t.iterations = v;
    }
    if let Some(v) = h.batch {
        t.batch = v;
    }
    if let Some(v) = h.lr {
        t.lr = v;
    }
    if let Some((fraction, moves, weight)) = h.replay {
        t.replay = fraction;
        t.replay_moves = moves;
        t.replay_weight = weight;
    }
    (s, t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::{Funnel, GaussianMixture, ManyWell};
    use candle_core::Tensor;

    /// A user's target that happens to be called "funnel".
    struct Impostor;
    impl Target for Impostor {
        fn name(&self) -> &str {
            "funnel"
        }
        fn dim(&self) -> usize {
            10
        }
        fn log_density(&self, x: &Tensor) -> candle_core::Result<Tensor> {
            x.sqr()?.sum(1)?.affine(-0.5, 0.0)
        }
    }

    /// Settings follow the target's type and constructor, not its name.
    #[test]
    fn recommendations_come_from_the_target_not_its_name() {
        let generic = recommended_settings(&Impostor);
        assert_eq!(generic.0.steps, SamplerConfig::default().steps);
        assert_eq!(generic.1.replay, TrainConfig::default().replay);
        let funnel = recommended_settings(&Funnel::new(10));
        assert_eq!(funnel.1.replay, 0.5);
        assert_eq!(funnel.1.iterations, 1000);
        let gmm = recommended_settings(&GaussianMixture::gmm40());
        assert_eq!((gmm.0.steps, gmm.0.width, gmm.1.batch), (128, 128, 256));
        let mixture = recommended_settings(&GaussianMixture::random(8, 2, 10.0, 0).unwrap());
        assert_eq!(mixture.0.steps, SamplerConfig::default().steps);
        let wells = recommended_settings(&ManyWell::new(32));
        assert_eq!((wells.0.width, wells.1.iterations), (128, 1000));
    }
}
