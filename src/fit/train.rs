//! The IPF loop of the data fit: iteration 0 fits the backward network against the reference,
//! and each refinement n ≥ 1 fits the forward network to the reversal of the current backward
//! process and then the backward network to the reversal of the new forward process.
//!
//! The run is a sequence of half-steps ("phases") driven by the one IPF loop
//! ([`crate::ipf::driver`], which the density sampler runs too): phase 0 is the backward
//! half-step of iteration 0; phase 2n − 1 and 2n are the forward and backward half-steps of
//! iteration n.
//! Every random draw of gradient step i of phase p comes from a generator seeded by
//! (seed, p, i), and every cache refill from one seeded by (seed, p, refill step), so a run
//! continued from a checkpoint ([`super::checkpoint`]) draws what the uninterrupted run would.
//! Each phase starts a fresh optimiser (Adam, cosine decay over the phase) from the network's
//! current weights (warm start), and ends with the network holding its EMA.

use super::config::{DataSpec, FitConfig};
use super::elbo::Elbo;
use super::elbo::{ElboOptions, elbo};
use super::evaluate::{BridgeMetrics, FitRow, prior_baseline, sample_metrics};
use super::losses::{Loss, backward_loss_cached, backward_loss_reference, forward_loss_cached};
use super::model::{FitModel, GenerateOptions, chunk_rows};
use super::progress::{FitEvent, Pending, Progress, RunOptions};
use super::tagged_rng;
use crate::data::Points;
use crate::error::{DsbError, Result};
use crate::ipf::PathCache;
use crate::ipf::driver::{self, Half, HalfSteps, LoopOptions, Moment, Phase, Position};
use crate::train::Optimiser;
use candle_core::Tensor;
use rand::Rng;
use std::path::Path;
use std::time::Instant;

/// Tags of the seeded generators (one family per use).
pub(crate) const TAG_STEP: u64 = 1;
pub(crate) const TAG_CACHE: u64 = 2;
pub(crate) const TAG_EVAL: u64 = 3;

/// How many consecutive non-finite losses end the run with an error.
const PATIENCE: usize = 20;

/// A fit in progress: the model, its data and settings, and how far it got.
#[derive(Debug)]
pub struct Fit {
    /// The model being fitted.
    pub model: FitModel,
    pub(crate) config: FitConfig,
    pub(crate) data: DataSpec,
    /// Standardised training data, `[n, d]`.
    pub(crate) train: Tensor,
    /// Held-out points, data coordinates.
    pub(crate) held_out: Points,
    pub(crate) progress: Progress,
    pub(crate) pending: Option<Pending>,
    /// The far end of a bridge (none: the backward process starts at the prior).
    pub(crate) far: Option<FarEnd>,
}

/// The data set at t = T of a bridge ([`Fit::bridge`]).
#[derive(Debug)]
pub(crate) struct FarEnd {
    /// Where its data came from.
    pub(crate) spec: DataSpec,
    /// Standardised training data (the model's coordinates), `[n, d]`.
    pub(crate) train: Tensor,
    /// Held-out points, data coordinates.
    pub(crate) held_out: Points,
}

impl Fit {
    /// The settings.
    pub fn config(&self) -> &FitConfig {
        &self.config
    }
    /// Where the data came from (the data set at t = 0 of a bridge).
    pub fn data(&self) -> &DataSpec {
        &self.data
    }
    /// Where a bridge's data set at t = T came from (none for a model of one data set).
    pub fn far_data(&self) -> Option<&DataSpec> {
        self.far.as_ref().map(|f| &f.spec)
    }
    /// A bridge's held-out points at t = T (data coordinates).
    pub fn far_held_out(&self) -> Option<&Points> {
        self.far.as_ref().map(|f| &f.held_out)
    }
    /// How far the run has got.
    pub fn progress(&self) -> &Progress {
        &self.progress
    }
    /// The held-out points (data coordinates).
    pub fn held_out(&self) -> &Points {
        &self.held_out
    }
    /// Number of training points.
    pub fn train_len(&self) -> usize {
        self.train.dims()[0]
    }
    /// Whether every half-step is done.
    pub fn is_done(&self) -> bool {
        self.progress.phase >= self.total_phases()
    }
    /// Raises the number of IPF refinements (a resumed run may go further than planned).
    pub fn extend_ipf_iters(&mut self, ipf_iters: usize) {
        self.config.ipf_iters = self.config.ipf_iters.max(ipf_iters);
    }

    fn total_phases(&self) -> usize {
        1 + 2 * self.config.ipf_iters
    }

    /// The generated points whose metrics the last row reports (drawn again from the same
    /// seeded generator, so they are the same points), in data coordinates; before any row, a
    /// draw of the untrained model.
    pub fn evaluated_samples(&self) -> Result<Points> {
        let ipf = self.progress.rows.last().map_or(0, |r| r.iteration);
        let mut rng = tagged_rng(self.config.seed, TAG_EVAL, ipf as u64);
        self.model.generate(
            self.config.eval_samples,
            &GenerateOptions::default(),
            &mut rng,
        )
    }

    /// Metrics of prior samples (N(mean, diag(scale²)) in data coordinates) against the
    /// held-out data: the baseline of the rows' metrics.
    pub fn prior_baseline(&self) -> Result<(f64, f64)> {
        prior_baseline(&self.model, &self.held_out, &self.config)
    }

    /// Runs the remaining half-steps through the one IPF loop ([`crate::ipf::driver`]).
    /// Returns whether the fit is done (false when stopped by `opts.stop_after`, after a
    /// checkpoint).
    pub fn run(&mut self, opts: &RunOptions, on_event: impl FnMut(FitEvent<'_>)) -> Result<bool> {
        let loop_opts = LoopOptions {
            checkpoint_every: opts.checkpoint_every,
            stop_after: opts.stop_after,
        };
        let mut steps = FitSteps {
            fit: self,
            opts,
            on_event,
            open: None,
        };
        driver::drive(&mut steps, &loop_opts)
    }

    /// The parameters of the network that `half` trains.
    fn trained_params(&self, half: Half) -> &crate::nn::ParamStore {
        match half {
            Half::Backward => self.model.backward.params(),
            Half::Forward => self
                .model
                .forward
                .as_ref()
                .expect("the forward half-step enables the forward network")
                .params(),
        }
    }

    /// The loss of one gradient step.
    fn loss(
        &self,
        phase: Phase,
        cache: Option<&PathCache>,
        rng: &mut impl rand::Rng,
    ) -> Result<Loss> {
        let rows = self.config.batch;
        match (phase.half, cache) {
            (Half::Backward, None) => {
                let n = self.train_len();
                let idx: Vec<u32> = (0..rows).map(|_| rng.random_range(0..n) as u32).collect();
                let idx = Tensor::from_vec(idx, rows, self.model.device())?;
                backward_loss_reference(&self.model, &self.train.index_select(&idx, 0)?, rng)
            }
            (Half::Backward, Some(c)) => backward_loss_cached(&self.model, c, rows, rng),
            (Half::Forward, Some(c)) => forward_loss_cached(&self.model, c, rows, rng),
            (Half::Forward, None) => unreachable!("forward half-steps always have a cache"),
        }
    }

    /// Paths of the frozen process for a half-step: the backward process from the prior (for
    /// the forward half-step) or the forward process from random training points.
    fn fill_cache(&self, phase: Phase, refill: usize) -> Result<PathCache> {
        let mut rng = tagged_rng(
            self.config.seed,
            TAG_CACHE + 16 * self.progress.phase as u64,
            refill as u64,
        );
        let mut chunks = Vec::new();
        let mut done = 0;
        while done < self.config.cache {
            let rows = chunk_rows(self.model.dim()).min(self.config.cache - done);
            let paths = match (phase.half, &self.far) {
                (Half::Forward, None) => self.model.simulate_backward(rows, &mut rng)?,
                (Half::Forward, Some(far)) => {
                    let n = far.train.dim(0)?;
                    let idx: Vec<u32> = (0..rows).map(|_| rng.random_range(0..n) as u32).collect();
                    let idx = Tensor::from_vec(idx, rows, self.model.device())?;
                    let x_n = far.train.index_select(&idx, 0)?;
                    self.model.simulate_backward_from(&x_n, &mut rng)?
                }
                (Half::Backward, _) => {
                    let n = self.train_len();
                    let idx: Vec<u32> = (0..rows).map(|_| rng.random_range(0..n) as u32).collect();
                    let idx = Tensor::from_vec(idx, rows, self.model.device())?;
                    let x0 = self.train.index_select(&idx, 0)?;
                    self.model.simulate_forward(&x0, &mut rng)?
                }
            };
            chunks.push(PathCache::chunk(&paths)?);
            done += rows;
        }
        PathCache::from_chunks(&chunks)
    }

    /// Closes a half-step: records its loss, and after a backward half-step evaluates the model
    /// into a row.
    fn end_phase(&mut self, phase: Phase, on_event: &mut impl FnMut(FitEvent<'_>)) -> Result<()> {
        let p = &mut self.progress;
        let tail = if p.tail.1 > 0 {
            p.tail.0 / p.tail.1 as f64
        } else {
            f64::NAN
        };
        p.tail = (0.0, 0);
        p.optimiser_step = 0;
        p.ema_updates = 0;
        if phase.half == Half::Forward {
            p.forward_loss = Some(tail);
            return Ok(());
        }
        self.model.backward_iteration = phase.ipf;
        on_event(FitEvent::Evaluating { ipf: phase.ipf });
        let row = self.evaluate(phase.ipf, tail)?;
        on_event(FitEvent::Row(&row));
        self.progress.rows.push(row);
        Ok(())
    }

    /// The metrics of the current model against the held-out data.
    fn evaluate(&mut self, ipf: usize, backward_loss: f64) -> Result<FitRow> {
        let mut rng = tagged_rng(self.config.seed, TAG_EVAL, ipf as u64);
        let n = self.config.eval_samples;
        let held = &self.held_out;
        let held_slice = &held.data[..held.len().min(n) * held.dim];
        let (mmd2, energy, bound, bridge) = match &self.far {
            None => {
                let generated = self
                    .model
                    .generate(n, &GenerateOptions::default(), &mut rng)?;
                let (mmd2, energy) = sample_metrics(&generated, held_slice, held.dim);
                let opts = ElboOptions {
                    dequantise_bin: self.model.settings().dequantise_bin(),
                };
                let bound = elbo(&self.model, held_slice, &opts, &mut rng)?;
                (mmd2, energy, bound, None)
            }
            Some(far) => {
                let m = self.bridge_metrics(&self.model, far, n, &mut rng)?;
                (
                    m.0,
                    m.1,
                    Elbo::not_defined(held_slice.len() / held.dim),
                    Some(m.2),
                )
            }
        };
        let p = &mut self.progress;
        let (seconds, steps) = p.iteration_time;
        p.iteration_time = (0.0, 0);
        Ok(FitRow {
            iteration: ipf,
            mmd2,
            energy,
            elbo: bound,
            backward_loss,
            forward_loss: p.forward_loss.take(),
            steps,
            seconds,
            steps_per_second: steps as f64 / seconds.max(1e-9),
            bridge,
        })
    }

    /// The metrics of a bridge's untrained model (the reference forward from A, and the
    /// untrained backward network from B), on the points and with the draws of IPF iteration
    /// 0's evaluation: the baseline its rows must beat. `None` unless this fit is a bridge.
    pub fn untrained_bridge_metrics(&self) -> Result<Option<(f64, f64, BridgeMetrics)>> {
        let Some(far) = &self.far else {
            return Ok(None);
        };
        let untrained = FitModel::new(
            self.model.settings().clone(),
            self.config.seed,
            self.model.device(),
        )?;
        let mut rng = tagged_rng(self.config.seed, TAG_EVAL, 0);
        let n = self.config.eval_samples;
        Ok(Some(self.bridge_metrics(&untrained, far, n, &mut rng)?))
    }

    /// A bridge's metrics on the first `n` held-out points of each end: MMD² and energy
    /// distance of the far end carried back against this end, and [`BridgeMetrics`].
    fn bridge_metrics(
        &self,
        model: &FitModel,
        far: &FarEnd,
        n: usize,
        rng: &mut impl rand::Rng,
    ) -> Result<(f64, f64, BridgeMetrics)> {
        let (a, b) = (self.held_out.head(n), far.held_out.head(n));
        let back =
            model.to_data(&model.transport_backward(&model.standardise(&b)?, true, rng)?)?;
        let fwd = model.to_data(&model.transport_forward(&model.standardise(&a)?, rng)?)?;
        let (mmd2, energy) = sample_metrics(&back, &a.data, a.dim);
        let (forward_mmd2, forward_energy) = sample_metrics(&fwd, &b.data, b.dim);
        Ok((
            mmd2,
            energy,
            BridgeMetrics {
                forward_mmd2,
                forward_energy,
                forward_cost: mean_sq_distance(&a, &fwd),
                backward_cost: mean_sq_distance(&b, &back),
            },
        ))
    }

    /// Writes a checkpoint if the run has a directory; `training` is the half-step in progress.
    fn checkpoint(
        &mut self,
        opts: &RunOptions,
        training: Option<(&Optimiser, Half)>,
        on_event: &mut impl FnMut(FitEvent<'_>),
    ) -> Result<()> {
        if let Some((opt, _)) = training {
            let s = opt.state();
            self.progress.optimiser_step = s.adam.step;
            self.progress.ema_updates = s.ema.as_ref().map_or(0, |e| e.updates);
        }
        if let Some(dir) = &opts.dir {
            self.save_checkpoint(dir, training)?;
            on_event(FitEvent::Checkpoint(self.progress.global_step));
        }
        Ok(())
    }
}

/// A [`Fit`] with its run's options and the half-step in progress: the engine
/// [`driver::drive`] runs.
struct FitSteps<'a, F> {
    fit: &'a mut Fit,
    opts: &'a RunOptions,
    on_event: F,
    open: Option<OpenPhase>,
}

/// The state of the half-step in progress.
struct OpenPhase {
    opt: Optimiser,
    iters: usize,
    cache: Option<PathCache>,
    /// Non-finite losses in a row.
    bad: usize,
    watch: crate::train::ExplosionWatch,
}

impl<F: FnMut(FitEvent<'_>)> HalfSteps for FitSteps<'_, F> {
    fn phases(&self) -> usize {
        self.fit.total_phases()
    }

    fn position(&self) -> Position {
        let p = &self.fit.progress;
        Position {
            phase: p.phase,
            phase_step: p.phase_step,
            global_step: p.global_step,
        }
    }

    fn set_position(&mut self, at: Position) {
        let p = &mut self.fit.progress;
        (p.phase, p.phase_step, p.global_step) = (at.phase, at.phase_step, at.global_step);
    }

    fn open(&mut self, phase: Phase) -> Result<()> {
        let fit = &mut *self.fit;
        let iters = fit.config.iters_of(fit.progress.phase);
        if phase.half == Half::Forward {
            fit.model.enable_forward(fit.config.seed)?;
        }
        let c = &fit.config;
        let mut opt = Optimiser::new(
            fit.trained_params(phase.half),
            c.lr,
            c.grad_clip,
            iters,
            c.ema,
        )?;
        if fit.progress.phase_step > 0 {
            let pending = fit.pending.take().ok_or_else(|| {
                DsbError::InvalidInput(
                    "the run stopped inside a half-step but its optimiser state is missing".into(),
                )
            })?;
            fit.trained_params(phase.half)
                .assign(&pending.weights, Path::new("train-state.safetensors"))?;
            opt.restore(pending.optimiser)?;
        }
        (self.on_event)(FitEvent::PhaseStart {
            phase,
            step: fit.progress.phase_step,
            iters,
        });
        self.open = Some(OpenPhase {
            opt,
            iters,
            cache: None,
            bad: 0,
            watch: Default::default(),
        });
        Ok(())
    }

    fn more(&self, _: Phase) -> bool {
        self.open
            .as_ref()
            .is_some_and(|o| self.fit.progress.phase_step < o.iters)
    }

    fn step(&mut self, phase: Phase) -> Result<()> {
        let (fit, o) = (&mut *self.fit, self.open.as_mut().expect("opened"));
        let start = Instant::now();
        let (i, iters) = (fit.progress.phase_step, o.iters);
        let refill = i - i % fit.config.refresh;
        if phase != Phase::of(0) && (o.cache.is_none() || i == refill) {
            o.cache = Some(fit.fill_cache(phase, refill)?);
        }
        let mut rng = tagged_rng(
            fit.config.seed,
            TAG_STEP + 16 * fit.progress.phase as u64,
            i as u64,
        );
        let loss = fit.loss(phase, o.cache.as_ref(), &mut rng)?;
        let value = loss.reported;
        let grad_norm = if value.is_finite() {
            o.opt
                .step(i, &loss.tensor, fit.trained_params(phase.half))?
        } else {
            f64::NAN
        };
        o.bad = if grad_norm.is_finite() { 0 } else { o.bad + 1 };
        let diverged = |why| DsbError::Diverged {
            iteration: fit.progress.global_step,
            loss: value,
            why,
            advice: crate::error::FIT_DIVERGENCE_ADVICE,
        };
        if let Some(why) = o.watch.see(value, grad_norm)
            && (o.watch.stop() || i + 1 == iters)
        {
            return Err(diverged(why));
        }
        if o.bad >= PATIENCE {
            let bad = o.bad;
            return Err(diverged(format!(
                "loss {value} or its gradient not finite {bad} times in a row"
            )));
        }
        let p = &mut fit.progress;
        if i >= iters - iters.div_ceil(10) {
            p.tail = (p.tail.0 + value, p.tail.1 + 1);
        }
        let secs = start.elapsed().as_secs_f64();
        p.train_seconds += secs;
        p.iteration_time = (p.iteration_time.0 + secs, p.iteration_time.1 + 1);
        (self.on_event)(FitEvent::Step {
            phase,
            step: i,
            loss: value,
            seconds: secs,
        });
        Ok(())
    }

    fn resumable_within(&self, _: Phase) -> bool {
        true
    }

    fn close(&mut self, phase: Phase) -> Result<()> {
        let o = self.open.take().expect("opened");
        o.opt.finish(self.fit.trained_params(phase.half))?;
        self.fit.end_phase(phase, &mut self.on_event)
    }

    fn checkpoint(&mut self, at: Moment) -> Result<()> {
        let training = match (at, &self.open) {
            (Moment::Within(phase), Some(o)) => Some((&o.opt, phase.half)),
            _ => None,
        };
        self.fit.checkpoint(self.opts, training, &mut self.on_event)
    }
}

/// Mean of |x_i − y_i|² over paired rows (data coordinates, f64).
fn mean_sq_distance(x: &Points, y: &Points) -> f64 {
    let d = x.dim;
    let total: f64 = x
        .data
        .chunks(d)
        .zip(y.data.chunks(d))
        .map(|(a, b)| {
            a.iter()
                .zip(b)
                .map(|(u, v)| (f64::from(*u) - f64::from(*v)).powi(2))
                .sum::<f64>()
        })
        .sum();
    total / x.len().max(1) as f64
}
