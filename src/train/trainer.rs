//! The training loop of [`super::train`], one iteration at a time, with a state that a
//! checkpoint saves and a resumed run restores exactly.

use super::checkpoint::{OptimiserCounters, TensorMap, pack_optimiser, unpack_optimiser};
use super::replay::ReplayChains;
use super::{
    ExplosionWatch, IterStats, Loss, Optimiser, PATIENCE, TrainConfig, TrainReport, ZERO_LOSS,
    ZERO_LOSS_PATIENCE, log_variance_loss_fast, log_variance_loss_with_replay, reverse_kl_loss,
    reverse_kl_loss_fast,
};
use crate::error::{DsbError, Result};
use crate::estimate::Estimates;
use crate::nn::FastDrift;
use crate::sampler::DiffusionSampler;
use crate::target::Target;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// How a loss's gradient is had: candle's autograd from the loss tensor, or computed already.
enum Gradient {
    Autograd(candle_core::Tensor),
    Computed(candle_core::backprop::GradStore),
}

impl Gradient {
    /// The value of a loss tensor and its gradient by autograd.
    fn of_loss(loss: candle_core::Tensor) -> Result<(f64, Self)> {
        let v = loss.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?;
        Ok((v, Self::Autograd(loss)))
    }
}

/// Name of the replay chains' states in a train-state file.
const REPLAY_STATES: &str = "replay.states";

/// What a [`Trainer`] counts between iterations, saved in a checkpoint's settings.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TrainerCounters {
    /// Iterations run (the index of the next one).
    pub iterations: usize,
    /// Iterations skipped because the loss or its gradient was not finite.
    pub skipped: usize,
    bad_loss: usize,
    bad_target: usize,
    zero_run: usize,
    watch: ExplosionWatch,
    /// Statistics of the last iteration.
    pub last: Option<IterStats>,
    /// Why training stopped early, when it did.
    pub stopped_early: Option<String>,
    /// The optimiser's counters (filled in by [`Trainer::save`]).
    optimiser: Option<OptimiserCounters>,
}

/// The training loop of [`super::train`] as a value: [`Trainer::step`] runs one iteration,
/// [`Trainer::save`] and [`Trainer::resume`] checkpoint it, [`Trainer::finish`] ends it (the
/// network then holds the EMA of its weights, if one is kept). Stepping a resumed trainer gives
/// the same weights and statistics as the uninterrupted run, given the same random generator
/// state.
#[derive(Debug)]
pub struct Trainer {
    cfg: TrainConfig,
    opt: Optimiser,
    counters: TrainerCounters,
    chains: Option<ReplayChains>,
    /// The CPU fast path's buffers, when it is used.
    fast: Option<FastDrift>,
}

/// Checks the training settings, so that a bad value fails before any work.
pub(crate) fn validate(cfg: &TrainConfig) -> Result<()> {
    crate::error::ensure_valid!(
        cfg.iterations > 0,
        "--iters must be at least 1: an untrained sampler's estimates mean nothing (to sample a \
         trained one without training, --load it)"
    );
    crate::error::ensure_valid!(cfg.batch >= 2, "--batch must be at least 2");
    let positive = |v: f64| v > 0.0 && v.is_finite();
    crate::error::ensure_valid!(
        positive(cfg.lr) && positive(cfg.grad_clip),
        "--lr and --grad-clip must be positive"
    );
    crate::error::ensure_valid!(
        cfg.replay >= 0.0 && cfg.replay.is_finite(),
        "--replay must be a non-negative fraction, got {}",
        cfg.replay
    );
    crate::error::ensure_valid!(
        cfg.replay == 0.0 || cfg.loss == Loss::LogVariance,
        "--replay works with the log-variance loss (--loss log-var)"
    );
    crate::error::ensure_valid!(
        cfg.replay_weight >= 0.0 && cfg.replay_weight.is_finite(),
        "--replay-weight must be non-negative, got {}",
        cfg.replay_weight
    );
    crate::error::ensure_valid!(
        (0.0..1.0).contains(&cfg.ema),
        "--ema must be in [0, 1), got {}",
        cfg.ema
    );
    Ok(())
}

impl Trainer {
    /// A trainer of `sampler`'s backward network with the settings `cfg` (checked here).
    pub fn new(sampler: &DiffusionSampler, cfg: &TrainConfig) -> Result<Self> {
        validate(cfg)?;
        let opt = Optimiser::new(
            &sampler.params,
            cfg.lr,
            cfg.grad_clip,
            cfg.iterations,
            cfg.ema,
        )?;
        let fast = (cfg.fast_path && sampler.device().is_cpu())
            .then(|| FastDrift::new(sampler.backward_net()))
            .transpose()?;
        Ok(Self {
            cfg: cfg.clone(),
            opt,
            counters: TrainerCounters::default(),
            chains: None,
            fast,
        })
    }

    /// Whether the run is over: all iterations ran, or it stopped early.
    pub fn is_done(&self) -> bool {
        self.counters.iterations >= self.cfg.iterations || self.counters.stopped_early.is_some()
    }

    /// Iterations run so far.
    pub fn iterations(&self) -> usize {
        self.counters.iterations
    }

    /// Runs the next iteration; `on_iter` sees its statistics. Errors when the run diverged or
    /// the target stayed non-finite (see [`super::train`]).
    pub fn step(
        &mut self,
        sampler: &mut DiffusionSampler,
        target: &dyn Target,
        rng: &mut impl rand::Rng,
        mut on_iter: impl FnMut(&IterStats),
    ) -> Result<()> {
        let cfg = &self.cfg;
        let c = &mut self.counters;
        let it = c.iterations;
        // The loss's value and what its gradient step needs: a loss tensor for candle's
        // autograd, or the gradients the fast path computed.
        let (loss, log_w): (Option<(f64, Gradient)>, Vec<f64>) = match cfg.loss {
            Loss::LogVariance => {
                let m = (cfg.replay * cfg.batch as f64).round() as usize;
                // On the fast path without replay paths, the simulation's network pass is the
                // loss's (same rows, same weights): it is kept and not run again.
                let reuse = m == 0 && self.fast.is_some() && sampler.uses_fast_path();
                let mut paths = match self.fast.as_mut().filter(|_| reuse) {
                    Some(fast) => {
                        fast.refresh(sampler.backward_net())?;
                        sampler.simulate_for_training(target, cfg.batch, rng, cfg.explore, fast)?
                    }
                    None => {
                        sampler.simulate_exploring(target, cfg.batch, rng, true, cfg.explore)?
                    }
                };
                if m > 0 {
                    if self.chains.is_none() {
                        let starts = paths.x0().narrow(0, 0, m.min(cfg.batch))?;
                        self.chains = Some(ReplayChains::new(&starts)?);
                    }
                    let chains = self.chains.as_mut().expect("chains exist");
                    let evals = chains.advance(target, cfg.replay_moves, rng)?;
                    sampler.count_gradient_evaluations(evals);
                    let extra = sampler.simulate_noising(target, &chains.states()?, rng)?;
                    paths = paths.with_extra(extra)?;
                }
                match self.fast.as_mut() {
                    Some(fast) => {
                        let (l, w) = log_variance_loss_fast(
                            sampler,
                            &paths,
                            cfg.batch,
                            cfg.replay_weight,
                            fast,
                            reuse,
                        )?;
                        (l.map(|(v, g)| (v, Gradient::Computed(g))), w)
                    }
                    None => {
                        let (l, w) = log_variance_loss_with_replay(
                            sampler,
                            &paths,
                            cfg.batch,
                            cfg.replay_weight,
                        )?;
                        (l.map(Gradient::of_loss).transpose()?, w)
                    }
                }
            }
            Loss::ReverseKl => match self.fast.as_mut().filter(|_| sampler.uses_fast_path()) {
                Some(fast) => {
                    let (l, w) = reverse_kl_loss_fast(sampler, target, cfg.batch, rng, fast)?;
                    (l.map(|(v, g)| (v, Gradient::Computed(g))), w)
                }
                None => {
                    let (l, w) = reverse_kl_loss(sampler, target, cfg.batch, rng)?;
                    (l.map(Gradient::of_loss).transpose()?, w)
                }
            },
        };
        let estimates = Estimates::from_log_weights(&log_w);
        let frac_bad = estimates.n_nonfinite as f64 / estimates.n as f64;
        c.bad_target = if frac_bad > 0.5 { c.bad_target + 1 } else { 0 };
        if c.bad_target >= PATIENCE {
            return Err(DsbError::PersistentNonFinite {
                target: target.name().into(),
                fraction: 100.0 * frac_bad,
                iterations: c.bad_target,
            });
        }
        let loss_value = loss.as_ref().map_or(f64::NAN, |(v, _)| *v);
        let mut grad_norm = f64::NAN;
        if loss_value.is_finite() {
            grad_norm = match loss.expect("finite loss exists").1 {
                Gradient::Autograd(l) => self.opt.step(it, &l, &sampler.params)?,
                Gradient::Computed(g) => self.opt.step_with_gradients(it, g, &sampler.params)?,
            };
        }
        if grad_norm.is_finite() {
            c.bad_loss = 0;
        } else {
            c.skipped += 1;
            c.bad_loss += 1;
        }
        if c.bad_loss >= PATIENCE {
            return Err(DsbError::Diverged {
                iteration: it,
                loss: loss_value,
                why: format!(
                    "loss {loss_value} or its gradient not finite {} times in a row",
                    c.bad_loss
                ),
                advice: crate::error::SAMPLE_DIVERGENCE_ADVICE,
            });
        }
        if let Some(why) = c.watch.see(loss_value, grad_norm)
            && (c.watch.stop() || it + 1 == cfg.iterations)
        {
            return Err(DsbError::Diverged {
                iteration: it,
                loss: loss_value,
                why,
                advice: crate::error::SAMPLE_DIVERGENCE_ADVICE,
            });
        }
        let stats = IterStats {
            iteration: it,
            loss: loss_value,
            grad_norm,
            estimates,
        };
        on_iter(&stats);
        c.last = Some(stats);
        c.iterations = it + 1;
        // Only the log-variance loss is zero at the optimum (the KL one is −log Z there).
        let zero = cfg.loss == Loss::LogVariance
            && loss_value.abs() < ZERO_LOSS
            && estimates.n_nonfinite == 0;
        c.zero_run = if zero { c.zero_run + 1 } else { 0 };
        if c.zero_run >= ZERO_LOSS_PATIENCE && c.iterations < cfg.iterations {
            c.stopped_early = Some(format!(
                "stopped after {} of {} iterations: the loss was below {ZERO_LOSS:.0e} for {} \
                 iterations in a row (all log weights equal: the sampler is already exact on \
                 this target, nothing left to train)",
                c.iterations, cfg.iterations, c.zero_run
            ));
        }
        Ok(())
    }

    /// Ends the run: the network takes the EMA of its weights, if one is kept.
    pub fn finish(self, sampler: &DiffusionSampler) -> Result<TrainReport> {
        self.opt.finish(&sampler.params)?;
        Ok(TrainReport {
            iterations: self.counters.iterations,
            skipped: self.counters.skipped,
            last: self.counters.last,
            stopped_early: self.counters.stopped_early,
        })
    }

    /// Puts the state of the run into a checkpoint: the raw weights, the optimiser's moments,
    /// the EMA and the replay chains into `state`, the EMA (what samples) into `weights`.
    /// Returns the counters, which go into the checkpoint's settings.
    pub fn save(
        &self,
        sampler: &DiffusionSampler,
        state: &mut TensorMap,
        weights: &mut TensorMap,
    ) -> Result<TrainerCounters> {
        let opt = self.opt.state();
        pack_optimiser(&sampler.params, &opt, state, weights)?;
        if let Some(c) = &self.chains {
            state.insert(REPLAY_STATES.into(), c.states_f64()?);
        }
        Ok(TrainerCounters {
            optimiser: Some(OptimiserCounters::of(&opt)),
            ..self.counters.clone()
        })
    }

    /// Continues a run saved by [`Trainer::save`] with the same settings `cfg`: `sampler`'s
    /// network takes the saved raw weights. `path` names the train-state file in errors.
    pub fn resume(
        sampler: &DiffusionSampler,
        cfg: &TrainConfig,
        counters: TrainerCounters,
        state: &TensorMap,
        path: &Path,
    ) -> Result<Self> {
        let mut trainer = Self::new(sampler, cfg)?;
        let oc = counters
            .optimiser
            .ok_or_else(|| DsbError::bad_file(path, "the optimiser's counters are missing"))?;
        if oc.ema_updates.is_some() != (cfg.ema > 0.0) {
            return Err(DsbError::bad_file(
                path,
                "the saved run and these settings disagree on keeping an EMA (--ema)",
            ));
        }
        let (raw, opt) = unpack_optimiser(state, &sampler.params, oc, path)?;
        sampler.params.assign(&raw, path)?;
        trainer.opt.restore(opt)?;
        if let Some(x) = state.get(REPLAY_STATES) {
            // f64 on the host (older checkpoints hold f32); states come back on the sampler's device.
            let x = x.to_dtype(candle_core::DType::F64)?;
            let mut chains = ReplayChains::new(&x)?;
            chains.set_device(sampler.device());
            trainer.chains = Some(chains);
        }
        trainer.counters = counters;
        Ok(trainer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sampler::SamplerConfig;
    use crate::target::Funnel;
    use candle_core::Device;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    /// Training on the CPU fast path (the simulation's network pass reused by the loss, or, with
    /// replay paths, run again) follows the candle path: the same losses and weights after a
    /// few iterations, to f32 rounding carried through the updates; also with a learned forward
    /// drift (an IPF backward half-step).
    #[test]
    fn fast_path_training_follows_the_candle_path() {
        let target = Funnel::new(4);
        for (loss, replay, forward) in [
            (Loss::LogVariance, 0.0, false),
            (Loss::LogVariance, 0.25, false),
            (Loss::ReverseKl, 0.0, false),
            (Loss::LogVariance, 0.0, true),
            (Loss::LogVariance, 0.25, true),
            (Loss::ReverseKl, 0.0, true),
        ] {
            let run = |fast: bool| {
                let scfg = SamplerConfig {
                    steps: 6,
                    width: 16,
                    sigma: 1.5,
                    ..Default::default()
                };
                let mut s = DiffusionSampler::new(4, scfg, 0, &Device::Cpu).unwrap();
                if forward {
                    s.enable_forward(3).unwrap();
                    crate::test_support::randomise(&s.forward.as_ref().unwrap().params, 5, 0.3);
                }
                s.set_fast_path(fast);
                let cfg = TrainConfig {
                    iterations: 6,
                    batch: 136,
                    lr: 3e-3,
                    loss,
                    replay,
                    replay_moves: 2,
                    fast_path: fast,
                    ..Default::default()
                };
                let mut rng = StdRng::seed_from_u64(1);
                let mut losses = Vec::new();
                super::super::train(&mut s, &target, &cfg, &mut rng, |st| losses.push(st.loss))
                    .unwrap();
                let w: Vec<f32> = s
                    .params
                    .named()
                    .iter()
                    .flat_map(|(_, v)| v.flatten_all().unwrap().to_vec1::<f32>().unwrap())
                    .collect();
                (losses, w)
            };
            let (fast, slow) = (run(true), run(false));
            for (a, b) in fast.0.iter().zip(&slow.0) {
                assert!(
                    (a - b).abs() <= 1e-3 * b.abs().max(1.0),
                    "{loss:?} replay {replay}: loss {a} vs {b}"
                );
            }
            for (a, b) in fast.1.iter().zip(&slow.1) {
                assert!(
                    (a - b).abs() <= 1e-4,
                    "{loss:?} replay {replay}: weight {a} vs {b}"
                );
            }
        }
    }
}
