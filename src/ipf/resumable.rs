//! A sampler's training run (IPF iteration 0, then the refinements) that checkpoints itself and
//! continues from a checkpoint exactly: the same weights, statistics and draws as the
//! uninterrupted run. `dsb sample --checkpoint DIR` and `--resume DIR` run it.
//!
//! The checkpoint is the format of [`crate::train::checkpoint`] (the one `dsb fit` writes):
//! `model.safetensors` (both networks; the EMA of the backward network while its training is in
//! progress), `model.json` ([`SavedRun`]: the settings and the progress, including the random
//! generator's state) and `train-state.safetensors` (the raw weights, Adam's moments, the EMA and
//! the replay chains of the training in progress). The run goes through the one IPF loop,
//! [`super::driver::drive`]: a checkpoint is written every [`Checkpoints::every`] gradient
//! steps inside a backward half-step, when one ends, and after every half-step (after the
//! evaluation of each IPF iteration). A forward half-step interrupted halfway starts again from
//! its beginning on resuming (it keeps no state across a checkpoint), which gives the same
//! result as the uninterrupted run, since the generator is restored too.

use super::driver::{self, Half, HalfSteps, LoopOptions, Moment, Phase, Position};
use super::forward_fit::ForwardFit;
use super::{IpfConfig, IpfProgress, IpfRow, fresh_estimates};
use crate::error::{DsbError, Result};
use crate::sampler::{DiffusionSampler, SamplerConfig};
use crate::target::Target;
use crate::train::checkpoint::{
    MODEL_SETTINGS, MODEL_WEIGHTS, RngState, RunRng, TRAIN_STATE, TensorMap, add_marker,
    check_marker, read_tensors, save_tensors,
};
use crate::train::{IterStats, TrainConfig, TrainReport, Trainer, TrainerCounters};
use candle_core::Device;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Version of [`SavedRun`] (2: the position of the one IPF loop replaced `next_ipf`).
const FORMAT: u32 = 2;
/// What [`SavedRun::kind`] says, so that a `dsb fit` directory is told apart.
const KIND: &str = "dsb sample";

/// Everything that defines a run; a resumed run must be given the same.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunSpec {
    /// Name of the target.
    pub target: String,
    /// Its dimension.
    pub dim: usize,
    /// The sampler's settings.
    pub sampler: SamplerConfig,
    /// Training of IPF iteration 0 (`None`: the sampler comes trained, e.g. loaded).
    pub train: Option<TrainConfig>,
    /// The backward objective and optimiser of the refinements (their iteration count is
    /// `ipf.backward_iterations`).
    pub refine: TrainConfig,
    /// The refinements (`ipf.refinements` = 0: none).
    pub ipf: IpfConfig,
    /// The IPF iteration the first refinement gets (1 after training; one more than a loaded
    /// sampler's refinements).
    pub first_ipf: usize,
    /// The run's seed (the sampler's weights and the forward drift's initialisation).
    pub seed: u64,
}

/// One training iteration of the run, with the IPF iteration it belongs to.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CurvePoint {
    /// IPF iteration (0: the diffusion sampler's training).
    pub ipf: usize,
    /// The iteration's statistics.
    pub stats: IterStats,
}

/// How far a run got.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RunProgress {
    /// Checkpoints written (the marker of the weight files).
    pub saves: usize,
    /// The training in progress, when it is.
    pub trainer: Option<TrainerCounters>,
    /// The report of the finished training.
    pub train_report: Option<TrainReport>,
    /// Every training iteration so far (iteration 0's and the refinements' backward steps).
    pub curve: Vec<CurvePoint>,
    /// The IPF rows so far: the evaluation that opens the refinements, then one per refinement.
    pub rows: Vec<IpfRow>,
    /// Where the run stands in the IPF loop (phase 0: the training; 2n − 1 and 2n: the forward
    /// and backward half-steps of the run's n-th refinement).
    pub position: Position,
    /// The final loss of the forward half-step of the refinement in progress.
    pub forward_loss: Option<f64>,
    /// Seconds spent training so far.
    pub seconds: f64,
    /// Seconds spent training in the refinement in progress.
    pub iteration_seconds: f64,
    /// The sampler's target gradient evaluations so far.
    pub gradient_evaluations: u64,
    /// The sampler's refinements.
    pub refinements: usize,
    /// Whether the sampler has a learned forward drift.
    pub has_forward: bool,
    /// The random generator's state at the checkpoint.
    pub rng: Option<RngState>,
}

/// The contents of a run checkpoint's `model.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SavedRun {
    /// Format version.
    pub format: u32,
    /// `"dsb sample"`.
    pub kind: String,
    /// The run's settings.
    pub spec: RunSpec,
    /// How far it got.
    pub progress: RunProgress,
}

/// Where and how often a run writes checkpoints.
#[derive(Debug, Clone)]
pub struct Checkpoints {
    /// The directory (created if missing).
    pub dir: PathBuf,
    /// Gradient steps between two checkpoints inside a backward half-step (≥ 1).
    pub every: usize,
    /// Stop, with a checkpoint, after this many gradient steps of this call (continue with
    /// [`SampleRun::resume`]).
    pub stop_after: Option<usize>,
}

/// What a run reports as it goes.
#[derive(Debug)]
pub enum RunEvent<'a> {
    /// A training iteration of IPF iteration 0.
    Train(&'a IterStats),
    /// Training ended.
    TrainDone,
    /// Progress of the refinements (rows included, the opening evaluation first).
    Ipf(IpfProgress<'a>),
    /// A checkpoint was written.
    Checkpoint,
}

/// A resumable run: [`SampleRun::new`] or [`SampleRun::resume`], then [`SampleRun::run`].
///
/// ```
/// use dsb::prelude::*;
/// use rand::SeedableRng;
///
/// let target = CorrelatedGaussian::builtin(2).unwrap();
/// let (sampler_cfg, mut train_cfg) = recommended_settings(&target);
/// train_cfg.iterations = 20;
/// train_cfg.batch = 64;
/// let spec = RunSpec {
///     target: target.name().into(),
///     dim: 2,
///     sampler: SamplerConfig { steps: 8, width: 16, ..sampler_cfg },
///     train: Some(train_cfg.clone()),
///     refine: train_cfg,
///     ipf: IpfConfig { refinements: 0, ..Default::default() },
///     first_ipf: 1,
///     seed: 0,
/// };
/// let dev = candle_core::Device::Cpu;
/// let mut sampler = DiffusionSampler::new(2, spec.sampler.clone(), spec.seed, &dev).unwrap();
/// let mut run = SampleRun::new(spec.clone(), &sampler).unwrap();
/// let mut rng = RunRng::seed_from_u64(0);
/// let dir = tempfile::tempdir().unwrap();
/// let checkpoints = Checkpoints { dir: dir.path().into(), every: 10, stop_after: None };
/// assert!(run.run(&mut sampler, &target, &mut rng, Some(&checkpoints), |_| {}).unwrap());
/// assert!(run.is_done());
///
/// // A later process continues from the directory (here: the finished run) and samples.
/// let (run, sampler, mut rng) = SampleRun::resume(dir.path(), Some(&spec), &dev).unwrap();
/// assert_eq!(run.progress().train_report.as_ref().unwrap().iterations, 20);
/// let set = sampler.sample(&target, 500, 500, &mut rng).unwrap();
/// assert!(set.estimates.log_z.is_finite());
/// ```
#[derive(Debug)]
pub struct SampleRun {
    spec: RunSpec,
    progress: RunProgress,
    /// The backward half-step in progress.
    trainer: Option<Trainer>,
    /// Whether IPF iteration 0 ends with an evaluation row (when refinements follow, and for
    /// [`super::run`]; never for [`super::refine`], which continues a caller's loop).
    opening_row: bool,
}

/// A signature of the function that writes a checkpoint of a run.
type Save<'a, R> = &'a dyn Fn(&mut SampleRun, &DiffusionSampler, &R) -> Result<()>;

impl SampleRun {
    /// A new run of `spec` for `sampler` (untrained when `spec.train` is set; trained otherwise).
    /// Checks the settings before any work.
    pub fn new(spec: RunSpec, sampler: &DiffusionSampler) -> Result<Self> {
        if spec.ipf.refinements > 0 {
            spec.ipf.validate()?;
            crate::train::validate_config(&spec.refine)?;
        }
        crate::error::ensure_valid!(
            spec.train.is_some() || spec.ipf.refinements > 0,
            "the run has nothing to do: no training (the sampler is loaded) and no refinement \
             (--ipf-iters 0)"
        );
        if let Some(cfg) = &spec.train {
            crate::train::validate_config(cfg)?;
        }
        crate::error::ensure_valid!(
            spec.first_ipf >= 1,
            "the first refinement is IPF iteration 1 or later"
        );
        let progress = RunProgress {
            refinements: sampler.refinements(),
            has_forward: sampler.has_learned_forward(),
            ..Default::default()
        };
        Ok(Self {
            opening_row: spec.ipf.refinements > 0,
            spec,
            progress,
            trainer: None,
        })
    }

    /// The settings.
    pub fn spec(&self) -> &RunSpec {
        &self.spec
    }

    /// How far the run got.
    pub fn progress(&self) -> &RunProgress {
        &self.progress
    }

    /// Whether training and all refinements are done.
    pub fn is_done(&self) -> bool {
        self.progress.position.phase >= self.phases()
    }

    /// Phases of the IPF loop: the training, then two per refinement.
    fn phases(&self) -> usize {
        1 + 2 * self.spec.ipf.refinements
    }

    /// Runs what is left: the training, then the evaluation that opens the refinements and the
    /// refinements, writing checkpoints when `checkpoints` is given. `rng` must be the
    /// generator the run was started with (or the one [`SampleRun::resume`] returned). Returns
    /// whether the run is done (false when it stopped at [`Checkpoints::stop_after`]).
    pub fn run(
        &mut self,
        sampler: &mut DiffusionSampler,
        target: &dyn Target,
        rng: &mut RunRng,
        checkpoints: Option<&Checkpoints>,
        on_event: impl FnMut(RunEvent<'_>),
    ) -> Result<bool> {
        let Some(c) = checkpoints else {
            return self.drive(sampler, target, rng, None, LoopOptions::default(), on_event);
        };
        crate::error::ensure_valid!(c.every >= 1, "--checkpoint-every must be at least 1");
        std::fs::create_dir_all(&c.dir).map_err(|e| DsbError::io(&c.dir, e))?;
        let save = |run: &mut SampleRun, sampler: &DiffusionSampler, rng: &RunRng| {
            run.save(&c.dir, sampler, rng)
        };
        let opts = LoopOptions {
            checkpoint_every: c.every,
            stop_after: c.stop_after,
        };
        self.drive(sampler, target, rng, Some(&save), opts, on_event)
    }

    /// Runs the whole loop in memory with any generator ([`super::run`], [`super::refine`]).
    pub(crate) fn run_in_memory<R: rand::Rng>(
        &mut self,
        sampler: &mut DiffusionSampler,
        target: &dyn Target,
        rng: &mut R,
        opening_row: bool,
        on_event: impl FnMut(RunEvent<'_>),
    ) -> Result<Vec<IpfRow>> {
        self.opening_row = opening_row;
        self.drive(sampler, target, rng, None, LoopOptions::default(), on_event)?;
        Ok(std::mem::take(&mut self.progress.rows))
    }

    fn drive<R: rand::Rng>(
        &mut self,
        sampler: &mut DiffusionSampler,
        target: &dyn Target,
        rng: &mut R,
        save: Option<Save<'_, R>>,
        opts: LoopOptions,
        on_event: impl FnMut(RunEvent<'_>),
    ) -> Result<bool> {
        crate::target::check_dimension(target, self.spec.dim)?;
        let mut steps = SampleSteps {
            run: self,
            sampler,
            target,
            rng,
            save,
            on_event,
            forward: None,
        };
        driver::drive(&mut steps, &opts)
    }

    /// The backward training settings of a phase (none for a loaded sampler's phase 0).
    fn backward_config(&self, phase: Phase) -> Option<TrainConfig> {
        if phase.ipf == 0 {
            self.spec.train.clone()
        } else {
            Some(TrainConfig {
                iterations: self.spec.ipf.backward_iterations,
                ..self.spec.refine.clone()
            })
        }
    }

    /// Writes the checkpoint of the run as it stands into `dir`.
    fn save(&mut self, dir: &Path, sampler: &DiffusionSampler, rng: &RunRng) -> Result<()> {
        let step = self.progress.saves + 1;
        let mut weights = sampler.weights()?;
        let mut state = TensorMap::new();
        self.progress.trainer = match &self.trainer {
            Some(t) => Some(t.save(sampler, &mut state, &mut weights)?),
            None => None,
        };
        self.progress.saves = step;
        self.progress.rng = Some(RngState::of(rng));
        self.progress.gradient_evaluations = sampler.gradient_evaluations();
        self.progress.refinements = sampler.refinements();
        self.progress.has_forward = sampler.has_learned_forward();
        add_marker(&mut state, step)?;
        add_marker(&mut weights, step)?;
        let saved = SavedRun {
            format: FORMAT,
            kind: KIND.into(),
            spec: self.spec.clone(),
            progress: self.progress.clone(),
        };
        let json = serde_json::to_string_pretty(&saved).expect("settings serialise");
        save_tensors(&dir.join(TRAIN_STATE), &state)?;
        save_tensors(&dir.join(MODEL_WEIGHTS), &weights)?;
        crate::fsutil::atomic_write(&dir.join(MODEL_SETTINGS), json.as_bytes())
    }

    /// Whether `dir` holds a checkpoint (of any run).
    pub fn exists(dir: &Path) -> bool {
        dir.join(MODEL_SETTINGS).exists()
    }

    /// Continues the run checkpointed in `dir`: the run, its sampler (on `device`) and the
    /// random generator in the state the checkpoint saved. `expected`, when given, is the spec
    /// of the command that resumes: any difference from the saved spec is an error that lists
    /// the fields.
    pub fn resume(
        dir: &Path,
        expected: Option<&RunSpec>,
        device: &Device,
    ) -> Result<(Self, DiffusionSampler, RunRng)> {
        let sp = dir.join(MODEL_SETTINGS);
        let text = std::fs::read_to_string(&sp).map_err(|e| {
            DsbError::bad_file(
                &sp,
                format!("cannot read the run's settings ({e}); give the --checkpoint directory of an earlier `dsb sample` run"),
            )
        })?;
        let value: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| DsbError::bad_file(&sp, format!("not JSON ({e})")))?;
        if value.get("kind").and_then(|k| k.as_str()) != Some(KIND) {
            return Err(DsbError::bad_file(
                &sp,
                "not a `dsb sample` checkpoint (a `dsb fit` directory continues with `dsb fit --resume`)",
            ));
        }
        let saved: SavedRun = serde_json::from_value(value)
            .map_err(|e| DsbError::bad_file(&sp, format!("not a dsb sample checkpoint ({e})")))?;
        if saved.format != FORMAT {
            return Err(DsbError::bad_file(
                &sp,
                format!("unsupported format version {}", saved.format),
            ));
        }
        let there = serde_json::to_value(&saved.spec).expect("settings serialise");
        if let Some(spec) = expected
            && serde_json::to_value(spec).expect("settings serialise") != there
        {
            let here = serde_json::to_value(spec).expect("settings serialise");
            let differ =
                crate::fsutil::json_differences(&here, &there, "here", "in the checkpoint");
            return Err(DsbError::InvalidInput(format!(
                "--resume {}: this command's settings differ from the interrupted run's ({}); \
                 repeat that run's command line with --resume added",
                dir.display(),
                differ.join("; ")
            )));
        }
        let progress = saved.progress;
        let step = progress.saves;
        let rng = progress
            .rng
            .as_ref()
            .ok_or_else(|| DsbError::bad_file(&sp, "the generator's state is missing"))?
            .restore(&sp)?;
        let spec = saved.spec;
        let mut sampler = DiffusionSampler::new(spec.dim, spec.sampler.clone(), spec.seed, device)?;
        let wp = dir.join(MODEL_WEIGHTS);
        let weights = read_tensors(&wp, "the sampler's weights")?;
        check_marker(&weights, step, &wp)?;
        sampler.assign_weights(&weights, progress.has_forward, &wp)?;
        sampler.refinements = progress.refinements;
        sampler.set_gradient_evaluations(progress.gradient_evaluations);
        let phase = Phase::of(progress.position.phase);
        let resumed = Self {
            spec,
            progress,
            trainer: None,
            opening_row: false,
        };
        let trainer = match (&resumed.progress.trainer, resumed.backward_config(phase)) {
            (Some(counters), Some(cfg)) => {
                let tp = dir.join(TRAIN_STATE);
                let state = read_tensors(&tp, "the state of the training in progress")?;
                check_marker(&state, step, &tp)?;
                Some(Trainer::resume(
                    &sampler,
                    &cfg,
                    counters.clone(),
                    &state,
                    &tp,
                )?)
            }
            (Some(_), None) => {
                return Err(DsbError::bad_file(
                    &sp,
                    "training in progress, but the run has no training settings",
                ));
            }
            (None, _) => None,
        };
        Ok((
            Self {
                trainer,
                opening_row: resumed.spec.ipf.refinements > 0,
                ..resumed
            },
            sampler,
            rng,
        ))
    }
}

/// A [`SampleRun`] with what its IPF loop works on: the engine [`driver::drive`] runs. Phase 0
/// trains the sampler (a [`Trainer`]); a refinement fits the forward drift ([`ForwardFit`]) and
/// then trains the backward drift against it.
struct SampleSteps<'a, R, F> {
    run: &'a mut SampleRun,
    sampler: &'a mut DiffusionSampler,
    target: &'a dyn Target,
    rng: &'a mut R,
    save: Option<Save<'a, R>>,
    on_event: F,
    /// The forward half-step in progress.
    forward: Option<ForwardFit>,
}

impl<R: rand::Rng, F: FnMut(RunEvent<'_>)> SampleSteps<'_, R, F> {
    /// The IPF iteration of a phase, counted as the sampler counts them.
    fn iteration(&self, phase: Phase) -> usize {
        self.run.spec.first_ipf - 1 + phase.ipf
    }

    /// Evaluates the sampler after a backward half-step into a row.
    fn row(&mut self, phase: Phase, backward_loss: Option<f64>) -> Result<()> {
        let p = &mut self.run.progress;
        let (forward_loss, seconds) = if phase.ipf == 0 {
            (None, p.seconds)
        } else {
            (
                p.forward_loss.take(),
                std::mem::take(&mut p.iteration_seconds),
            )
        };
        let eval = self.run.spec.ipf.eval_samples;
        let row = IpfRow {
            iteration: self.iteration(phase),
            estimates: fresh_estimates(self.sampler, self.target, eval, self.rng)?,
            forward_loss,
            backward_loss,
            seconds,
            gradient_evaluations: self.sampler.gradient_evaluations(),
        };
        if phase.ipf > 0 {
            self.sampler.refinements = row.iteration;
        }
        (self.on_event)(RunEvent::Ipf(IpfProgress::Row(&row)));
        self.run.progress.rows.push(row);
        Ok(())
    }
}

impl<R: rand::Rng, F: FnMut(RunEvent<'_>)> HalfSteps for SampleSteps<'_, R, F> {
    fn phases(&self) -> usize {
        self.run.phases()
    }

    fn position(&self) -> Position {
        self.run.progress.position
    }

    fn set_position(&mut self, position: Position) {
        self.run.progress.position = position;
    }

    fn open(&mut self, phase: Phase) -> Result<()> {
        match phase.half {
            Half::Forward => {
                let cfg = &self.run.spec.ipf.forward;
                self.forward = Some(ForwardFit::new(self.sampler, cfg, self.run.spec.seed)?);
            }
            Half::Backward if self.run.trainer.is_none() => {
                if self.run.progress.position.phase_step > 0 {
                    return Err(DsbError::InvalidInput(
                        "the run stopped inside a half-step but its training state is missing"
                            .into(),
                    ));
                }
                self.run.trainer = self
                    .run
                    .backward_config(phase)
                    .map(|cfg| Trainer::new(self.sampler, &cfg))
                    .transpose()?;
            }
            Half::Backward => {}
        }
        Ok(())
    }

    fn more(&self, phase: Phase) -> bool {
        match phase.half {
            Half::Forward => {
                self.run.progress.position.phase_step < self.run.spec.ipf.forward.iterations
            }
            Half::Backward => self.run.trainer.as_ref().is_some_and(|t| !t.is_done()),
        }
    }

    fn step(&mut self, phase: Phase) -> Result<()> {
        let start = Instant::now();
        let ipf = self.iteration(phase);
        match phase.half {
            Half::Forward => {
                let fit = self.forward.as_mut().expect("opened");
                let loss = fit.step(self.sampler, self.target, self.rng)?;
                let step = self.run.progress.position.phase_step;
                (self.on_event)(RunEvent::Ipf(IpfProgress::Forward { ipf, step, loss }));
            }
            Half::Backward => {
                let trainer = self.run.trainer.as_mut().expect("more() saw it");
                let curve = &mut self.run.progress.curve;
                let on_event = &mut self.on_event;
                trainer.step(self.sampler, self.target, self.rng, |stats| {
                    curve.push(CurvePoint { ipf, stats: *stats });
                    on_event(if phase.ipf == 0 {
                        RunEvent::Train(stats)
                    } else {
                        RunEvent::Ipf(IpfProgress::Backward { ipf, stats })
                    });
                })?;
            }
        }
        let seconds = start.elapsed().as_secs_f64();
        self.run.progress.seconds += seconds;
        if phase.ipf > 0 {
            self.run.progress.iteration_seconds += seconds;
        }
        Ok(())
    }

    fn resumable_within(&self, phase: Phase) -> bool {
        phase.half == Half::Backward
    }

    fn close(&mut self, phase: Phase) -> Result<()> {
        if phase.half == Half::Forward {
            let fit = self.forward.take().expect("opened");
            self.run.progress.forward_loss = Some(fit.finish(self.sampler)?);
            return Ok(());
        }
        let report = match self.run.trainer.take() {
            Some(t) => Some(t.finish(self.sampler)?),
            None => None,
        };
        let backward_loss = report.as_ref().and_then(|r| r.last).map(|s| s.loss);
        if phase.ipf > 0 {
            return self.row(phase, backward_loss);
        }
        if let Some(r) = report {
            self.run.progress.train_report = Some(r);
            (self.on_event)(RunEvent::TrainDone);
        }
        if !self.run.opening_row {
            return Ok(());
        }
        self.row(phase, backward_loss)
    }

    fn checkpoint(&mut self, _: Moment) -> Result<()> {
        if let Some(save) = self.save {
            save(self.run, self.sampler, self.rng)?;
            (self.on_event)(RunEvent::Checkpoint);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipf::ForwardFitConfig;
    use crate::target::CorrelatedGaussian;
    use crate::train::Loss;
    use rand::{Rng, SeedableRng};

    fn spec(dim: usize) -> RunSpec {
        let train = TrainConfig {
            iterations: 12,
            batch: 32,
            loss: Loss::LogVariance,
            ema: 0.9,
            replay: 0.25,
            replay_moves: 2,
            ..Default::default()
        };
        RunSpec {
            target: "gaussian".into(),
            dim,
            sampler: SamplerConfig {
                steps: 6,
                horizon: 0.5,
                width: 16,
                depth: 1,
                ..Default::default()
            },
            refine: train.clone(),
            train: Some(train),
            ipf: IpfConfig {
                refinements: 2,
                backward_iterations: 4,
                forward: ForwardFitConfig {
                    iterations: 4,
                    batch: 32,
                    cache: 64,
                    ..Default::default()
                },
                eval_samples: 64,
            },
            first_ipf: 1,
            seed: 3,
        }
    }

    fn copy_dir(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }

    /// Weights by name, losses, row estimates, gradient count, the generator's next draw.
    type Outcome = (Vec<(String, Vec<f32>)>, Vec<f64>, Vec<f64>, u64, u64);

    /// What a finished run ends with: weights, loss curve, rows and the generator's next draw.
    fn outcome(run: &SampleRun, sampler: &DiffusionSampler, rng: &mut RunRng) -> Outcome {
        let mut w: Vec<(String, Vec<f32>)> = sampler
            .weights()
            .unwrap()
            .into_iter()
            .map(|(k, t)| (k, t.flatten_all().unwrap().to_vec1::<f32>().unwrap()))
            .collect();
        w.sort_by(|a, b| a.0.cmp(&b.0));
        let losses = run.progress.curve.iter().map(|p| p.stats.loss).collect();
        let rows = run
            .progress
            .rows
            .iter()
            .map(|r| r.estimates.log_z)
            .collect();
        (
            w,
            losses,
            rows,
            sampler.gradient_evaluations(),
            rng.random(),
        )
    }

    /// A run interrupted at any checkpoint (mid-training, at the end of training, after the
    /// opening evaluation, between refinements) and resumed ends exactly where the
    /// uninterrupted run does: same weights, losses, rows, gradient count and generator state.
    #[test]
    fn a_resumed_run_equals_the_uninterrupted_one() {
        let target = CorrelatedGaussian::builtin(2).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let full_dir = tmp.path().join("full");
        let dev = Device::Cpu;
        let s = spec(2);
        let mut sampler = DiffusionSampler::new(2, s.sampler.clone(), s.seed, &dev).unwrap();
        let mut run = SampleRun::new(s.clone(), &sampler).unwrap();
        let mut rng = RunRng::seed_from_u64(11);
        let ckpt = Checkpoints {
            dir: full_dir.clone(),
            every: 5,
            stop_after: None,
        };
        let mut snapshots = 0;
        run.run(&mut sampler, &target, &mut rng, Some(&ckpt), |e| {
            if matches!(e, RunEvent::Checkpoint) {
                copy_dir(&full_dir, &tmp.path().join(format!("snap{snapshots}")));
                snapshots += 1;
            }
        })
        .unwrap();
        // Saves after iterations 5 and 10, at the end of training (before its evaluation),
        // after the opening row, after each forward half-step, at the end of each refinement's
        // backward training and after its row, and at global step 25 (inside the second
        // refinement's backward training).
        assert_eq!(snapshots, 11);
        assert!(run.is_done());
        let expected = outcome(&run, &sampler, &mut rng);
        assert_eq!(expected.1.len(), 12 + 2 * 4);
        assert_eq!(expected.2.len(), 3);
        for k in 0..snapshots {
            let dir = tmp.path().join(format!("snap{k}"));
            let (mut run, mut sampler, mut rng) = SampleRun::resume(&dir, Some(&s), &dev).unwrap();
            run.run(
                &mut sampler,
                &target,
                &mut rng,
                Some(&Checkpoints {
                    dir: dir.clone(),
                    every: 5,
                    stop_after: None,
                }),
                |_| {},
            )
            .unwrap();
            assert!(run.is_done());
            assert_eq!(
                outcome(&run, &sampler, &mut rng),
                expected,
                "resumed from checkpoint {k}"
            );
        }
    }

    #[test]
    fn resuming_checks_the_settings_and_the_files() {
        let target = CorrelatedGaussian::builtin(2).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let dev = Device::Cpu;
        let mut s = spec(2);
        s.ipf.refinements = 0;
        let mut sampler = DiffusionSampler::new(2, s.sampler.clone(), s.seed, &dev).unwrap();
        let mut run = SampleRun::new(s.clone(), &sampler).unwrap();
        let mut rng = RunRng::seed_from_u64(1);
        let ckpt = Checkpoints {
            dir: dir.clone(),
            every: 5,
            stop_after: None,
        };
        run.run(&mut sampler, &target, &mut rng, Some(&ckpt), |_| {})
            .unwrap();
        // Other settings: an error naming the field.
        let mut other = s.clone();
        other.train.as_mut().unwrap().lr = 0.5;
        let e = SampleRun::resume(&dir, Some(&other), &dev)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("train.lr: 0.5 here, 0.001 in the checkpoint"),
            "{e}"
        );
        // Weights from another step than the settings: refused.
        let settings = std::fs::read_to_string(dir.join(MODEL_SETTINGS)).unwrap();
        let edited = settings.replace("\"saves\": 4", "\"saves\": 3");
        assert_ne!(edited, settings);
        std::fs::write(dir.join(MODEL_SETTINGS), edited).unwrap();
        let e = SampleRun::resume(&dir, Some(&s), &dev)
            .unwrap_err()
            .to_string();
        assert!(e.contains("belongs to another step"), "{e}");
        // A directory of another kind of run.
        std::fs::write(dir.join(MODEL_SETTINGS), "{\"format\": 1}").unwrap();
        let e = SampleRun::resume(&dir, Some(&s), &dev)
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a `dsb sample` checkpoint"), "{e}");
    }
}
