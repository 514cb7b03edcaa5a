//! A binomial model trained as a resumable run (what `dsb fit --binarize` runs): every gradient
//! step draws from a generator seeded by (seed, step), so a run stopped and resumed gives the
//! weights of the uninterrupted run; checkpoints are written atomically in the format of
//! [`crate::train::checkpoint`] (`model.json`, `model.safetensors` with the EMA weights, and
//! `train-state.safetensors` inside the run).

use super::data::{BinaryData, load_binary};
use super::{BinaryBound, BinomialModel, check_binary};
use crate::error::{DsbError, Result};
use crate::fit::{DataSpec, MODEL_SETTINGS, MODEL_WEIGHTS, RunOptions, TRAIN_STATE, tagged_rng};
use crate::train::Optimiser;
use crate::train::checkpoint::{
    OptimiserCounters, add_marker, check_marker, pack_optimiser, read_settings, read_tensors,
    save_tensors, settings_kind, unpack_optimiser,
};
use candle_core::{DType, Device, Tensor};
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Instant;

pub use crate::train::checkpoint::BINOMIAL_KIND;
/// Version of the checkpoint format.
const FORMAT: u32 = 1;
/// Tags of the seeded generators (one family per use).
const TAG_STEP: u64 = 101;
const TAG_EVAL: u64 = 102;

/// The settings of a binomial fit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BinomialFitConfig {
    /// Diffusion steps T.
    pub steps: usize,
    /// Hidden units per layer of the MLP.
    pub width: usize,
    /// Hidden layers.
    pub depth: usize,
    /// Gradient steps.
    pub iters: usize,
    /// Examples per step.
    pub batch: usize,
    /// Peak learning rate (Adam, cosine decay to a tenth).
    pub lr: f64,
    /// Global gradient-norm clip.
    pub grad_clip: f64,
    /// EMA decay of the weights (0: none).
    pub ema: f64,
    /// Held-out examples for the bound, and examples generated for the report.
    pub eval_samples: usize,
    /// Seed of the weights, the batches and the evaluation.
    pub seed: u64,
}

impl BinomialFitConfig {
    /// Refuses settings that cannot train, naming the flag.
    pub fn validate(&self) -> Result<()> {
        let bad = |msg: String| Err(DsbError::InvalidInput(msg));
        if self.steps == 0 || self.width == 0 || self.depth == 0 {
            return bad(format!(
                "--steps, --width and --depth must be at least 1, got {}, {}, {}",
                self.steps, self.width, self.depth
            ));
        }
        if self.iters == 0 || self.batch == 0 || self.eval_samples < 2 {
            return bad(format!(
                "--iters and --batch must be at least 1 and --eval-samples at least 2, got {}, \
                 {}, {}",
                self.iters, self.batch, self.eval_samples
            ));
        }
        let positive = |v: f64| v > 0.0 && v.is_finite();
        if !positive(self.lr) || !positive(self.grad_clip) {
            return bad(format!(
                "--lr and --grad-clip must be positive, got {} and {}",
                self.lr, self.grad_clip
            ));
        }
        if !(0.0..1.0).contains(&self.ema) {
            return bad(format!("--ema must be in [0, 1), got {}", self.ema));
        }
        Ok(())
    }
}

/// What a finished fit reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BinaryReport {
    /// The bound on held-out examples, bits per dimension.
    pub held_out: BinaryBound,
    /// The same in nats per example (the unit of published binarised-MNIST figures).
    pub held_out_nats_per_example: f64,
    /// The bound on as many training examples.
    pub train: BinaryBound,
    /// The untrained model's bound: exactly 1 bit/dim.
    pub untrained_bits_per_dim: f64,
    /// Mean over the bits of |frequency of 1s in generated examples − in held-out examples|.
    pub frequency_error: f64,
    /// The same between training and held-out examples (the sampling noise at these sizes).
    pub frequency_floor: f64,
    /// Examples generated for the frequencies.
    pub samples: usize,
    /// Seconds of the evaluation.
    pub eval_seconds: f64,
}

/// The contents of a binomial model's `model.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SavedBinomial {
    /// Format version.
    pub format: u32,
    /// Always [`BINOMIAL_KIND`].
    pub kind: String,
    /// Shape of one example.
    pub example_shape: Vec<usize>,
    /// How the data were made binary.
    pub binarisation: String,
    /// Where the data came from.
    pub data: DataSpec,
    /// The fit's settings.
    pub config: BinomialFitConfig,
    /// Gradient steps done.
    pub step: usize,
    /// The optimiser's counters while the run is unfinished.
    pub optimiser: Option<OptimiserCounters>,
    /// Seconds of training so far.
    pub train_seconds: f64,
    /// The report, once the run is finished.
    pub report: Option<BinaryReport>,
}

/// A binomial fit in progress: the model, its data, the optimiser and how far it got.
#[derive(Debug)]
pub struct BinomialFit {
    model: BinomialModel,
    data: BinaryData,
    spec: DataSpec,
    config: BinomialFitConfig,
    step: usize,
    opt: Option<Optimiser>,
    train_seconds: f64,
    report: Option<BinaryReport>,
}

impl BinomialFit {
    /// A new fit of the data `spec` names (see [`load_binary`]).
    pub fn new(spec: DataSpec, config: BinomialFitConfig, device: &Device) -> Result<Self> {
        config.validate()?;
        let data = load_binary(&spec)?;
        check_binary(&data.train, data.dim())?;
        check_binary(&data.held_out, data.dim())?;
        let model = BinomialModel::new(
            data.dim(),
            config.steps,
            config.width,
            config.depth,
            config.seed,
            device,
        )?;
        Ok(Self {
            model,
            data,
            spec,
            config,
            step: 0,
            opt: None,
            train_seconds: 0.0,
            report: None,
        })
    }

    /// Continues the fit checkpointed in `dir` (its data are loaded again from their spec,
    /// image files from `data_dir` when given, e.g. after they moved).
    pub fn resume(
        dir: &Path,
        data_dir: Option<std::path::PathBuf>,
        device: &Device,
    ) -> Result<Self> {
        let (model, mut saved) = load_binomial(dir, device)?;
        if data_dir.is_some() {
            saved.data.data_dir = data_dir;
        }
        let data = load_binary(&saved.data)?;
        if data.example_shape != saved.example_shape {
            return Err(DsbError::InvalidInput(format!(
                "wrong data shape: '{}' now has examples of shape {:?}, the model was fitted to \
                 {:?}",
                saved.data.name, data.example_shape, saved.example_shape
            )));
        }
        let mut opt = None;
        if saved.step < saved.config.iters {
            let c = &saved.config;
            let mut o = Optimiser::new(model.params(), c.lr, c.grad_clip, c.iters, c.ema)?;
            if saved.step > 0 {
                let path = dir.join(TRAIN_STATE);
                let map = read_tensors(&path, "the optimiser state of an unfinished run")?;
                check_marker(&map, saved.step, &path)?;
                let counters = saved.optimiser.ok_or_else(|| {
                    DsbError::bad_file(dir.join(MODEL_SETTINGS), "no optimiser counters")
                })?;
                let (raw, state) = unpack_optimiser(&map, model.params(), counters, &path)?;
                model.params().assign(&raw, &path)?;
                o.restore(state)?;
            }
            opt = Some(o);
        }
        Ok(Self {
            model,
            data,
            spec: saved.data,
            config: saved.config,
            step: saved.step,
            opt,
            train_seconds: saved.train_seconds,
            report: saved.report,
        })
    }

    /// The model.
    pub fn model(&self) -> &BinomialModel {
        &self.model
    }

    /// The data.
    pub fn data(&self) -> &BinaryData {
        &self.data
    }

    /// Where the data came from.
    pub fn spec(&self) -> &DataSpec {
        &self.spec
    }

    /// The settings.
    pub fn config(&self) -> &BinomialFitConfig {
        &self.config
    }

    /// Gradient steps done.
    pub fn step(&self) -> usize {
        self.step
    }

    /// Seconds of training so far (over all calls).
    pub fn train_seconds(&self) -> f64 {
        self.train_seconds
    }

    /// The report of a finished fit.
    pub fn report(&self) -> Option<&BinaryReport> {
        self.report.as_ref()
    }

    /// Whether all gradient steps are done.
    pub fn is_trained(&self) -> bool {
        self.step >= self.config.iters
    }

    /// Runs the remaining gradient steps, checkpointing into `opts.dir`, calling
    /// `on_step(step, loss, seconds)` after each. Returns whether training is done (false when
    /// it stopped at `opts.stop_after`, with a checkpoint). A non-finite loss is an error.
    pub fn train(
        &mut self,
        opts: &RunOptions,
        mut on_step: impl FnMut(usize, f64, f64),
    ) -> Result<bool> {
        let mut this_call = 0;
        while self.step < self.config.iters {
            let t0 = Instant::now();
            let c = &self.config;
            let opt = match self.opt.as_mut() {
                Some(o) => o,
                None => self.opt.insert(Optimiser::new(
                    self.model.params(),
                    c.lr,
                    c.grad_clip,
                    c.iters,
                    c.ema,
                )?),
            };
            let mut rng = tagged_rng(c.seed, TAG_STEP, self.step as u64);
            let loss = train_step(
                &self.model,
                opt,
                &self.data.train,
                c.batch,
                self.step,
                &mut rng,
            )?;
            self.step += 1;
            this_call += 1;
            let secs = t0.elapsed().as_secs_f64();
            self.train_seconds += secs;
            on_step(self.step - 1, loss, secs);
            let stop = opts.stop_after == Some(this_call) && !self.is_trained();
            if let Some(dir) = &opts.dir {
                let every =
                    opts.checkpoint_every > 0 && self.step.is_multiple_of(opts.checkpoint_every);
                if (every || stop) && !self.is_trained() {
                    self.save(dir)?;
                }
            }
            if stop {
                return Ok(false);
            }
        }
        if let Some(opt) = self.opt.take() {
            opt.finish(self.model.params())?;
            if let Some(dir) = &opts.dir {
                self.save(dir)?;
                // The optimiser's state of the finished run is no longer needed.
                let _ = std::fs::remove_file(dir.join(TRAIN_STATE));
            }
        }
        Ok(true)
    }

    /// Evaluates the trained model ([`evaluate_model`] at `eval_samples`), keeps the report, saves it into `dir` when given,
    /// and returns the report and the generated examples.
    pub fn evaluate(&mut self, dir: Option<&Path>) -> Result<(BinaryReport, Vec<f32>)> {
        if !self.is_trained() {
            return Err(DsbError::InvalidInput(format!(
                "the binomial fit is unfinished ({} of {} gradient steps)",
                self.step, self.config.iters
            )));
        }
        let mut rng = tagged_rng(self.config.seed, TAG_EVAL, 0);
        let (report, samples) =
            evaluate_model(&self.model, &self.data, self.config.eval_samples, &mut rng)?;
        self.report = Some(report.clone());
        if let Some(dir) = dir {
            self.save(dir)?;
        }
        Ok((report, samples))
    }

    /// Writes the checkpoint into `dir` atomically: the settings, the weights that sample (the
    /// EMA inside the run) and, inside the run, the optimiser's state.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let params = self.model.params();
        let mut weights = params.snapshot()?;
        let mut counters = None;
        if let Some(opt) = &self.opt {
            let mut state = std::collections::HashMap::new();
            add_marker(&mut state, self.step)?;
            let s = opt.state();
            counters = Some(OptimiserCounters::of(&s));
            pack_optimiser(params, &s, &mut state, &mut weights)?;
            save_tensors(&dir.join(TRAIN_STATE), &state)?;
        }
        add_marker(&mut weights, self.step)?;
        let saved = SavedBinomial {
            format: FORMAT,
            kind: BINOMIAL_KIND.into(),
            example_shape: self.data.example_shape.clone(),
            binarisation: self.data.binarisation.clone(),
            data: self.spec.clone(),
            config: self.config.clone(),
            step: self.step,
            optimiser: counters,
            train_seconds: self.train_seconds,
            report: self.report.clone(),
        };
        let json = serde_json::to_string_pretty(&saved).expect("settings serialise");
        save_tensors(&dir.join(MODEL_WEIGHTS), &weights)?;
        crate::fsutil::atomic_write(&dir.join(MODEL_SETTINGS), json.as_bytes())
    }
}

/// Evaluates `model` on `data`: the bound on (at most) `n` held-out examples and on as many
/// training examples, and the bit frequencies of `n` generated examples against the held-out
/// ones, beside the training examples' (the noise floor at these sizes). Returns the report and
/// the generated examples.
pub fn evaluate_model(
    model: &BinomialModel,
    data: &BinaryData,
    n: usize,
    rng: &mut impl Rng,
) -> Result<(BinaryReport, Vec<f32>)> {
    let t0 = Instant::now();
    let d = data.dim();
    if d != model.dim() {
        return Err(DsbError::InvalidInput(format!(
            "the data have {d} bits per example, the model {}",
            model.dim()
        )));
    }
    let m = n.min(data.n_held_out()).min(data.n_train());
    if m < 2 {
        return Err(DsbError::InvalidInput(format!(
            "the bound needs at least 2 examples (--n, and held-out and training examples), got \
             {n}, {} and {}",
            data.n_held_out(),
            data.n_train()
        )));
    }
    // Random subsets: files are often ordered (by class, for the MNIST fixture).
    let mut pick = |rows: &[f32]| -> Vec<f32> {
        let mut idx = rand::seq::index::sample(rng, rows.len() / d, m).into_vec();
        idx.sort_unstable();
        idx.iter()
            .flat_map(|&i| rows[i * d..(i + 1) * d].iter().copied())
            .collect()
    };
    let held = pick(&data.held_out);
    let train = pick(&data.train);
    let (held, train) = (&held[..], &train[..]);
    let held_bound = model.bound(held, rng)?;
    let train_bound = model.bound(train, rng)?;
    let samples = model.sample(n, rng)?;
    let (fg, fh, ft) = (
        frequencies(&samples, d),
        frequencies(held, d),
        frequencies(train, d),
    );
    let report = BinaryReport {
        held_out: held_bound,
        held_out_nats_per_example: held_bound.bits_per_dim * d as f64 * std::f64::consts::LN_2,
        train: train_bound,
        untrained_bits_per_dim: 1.0,
        frequency_error: mean_abs_diff(&fg, &fh),
        frequency_floor: mean_abs_diff(&ft, &fh),
        samples: n,
        eval_seconds: t0.elapsed().as_secs_f64(),
    };
    Ok((report, samples))
}

/// One gradient step on a batch of `batch` rows drawn from `data`; returns the loss.
pub(super) fn train_step(
    model: &BinomialModel,
    opt: &mut Optimiser,
    data: &[f32],
    batch: usize,
    step: usize,
    rng: &mut impl Rng,
) -> Result<f64> {
    let d = model.dim();
    let n = data.len() / d;
    let mut rows = Vec::with_capacity(batch * d);
    for _ in 0..batch {
        let i = rng.random_range(0..n);
        rows.extend_from_slice(&data[i * d..(i + 1) * d]);
    }
    let x0 = Tensor::from_vec(rows, (batch, d), model.device())?;
    let loss = model.loss(&x0, rng)?;
    let value = loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
    if !value.is_finite() {
        return Err(DsbError::Diverged {
            iteration: step,
            loss: value,
            why: "the binomial loss is not finite".into(),
            advice: crate::error::FIT_DIVERGENCE_ADVICE,
        });
    }
    opt.step(step, &loss, model.params())?;
    Ok(value)
}

/// The frequency of 1s of each bit over the rows of `data`.
fn frequencies(data: &[f32], d: usize) -> Vec<f64> {
    let n = (data.len() / d).max(1) as f64;
    let mut f = vec![0.0; d];
    for row in data.chunks(d) {
        for (a, &v) in f.iter_mut().zip(row) {
            *a += f64::from(v);
        }
    }
    f.iter().map(|a| a / n).collect()
}

fn mean_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).sum::<f64>() / a.len().max(1) as f64
}

/// Whether `dir` holds a binomial model (its `model.json` has `"kind": "binomial"`).
pub fn is_binomial_model(dir: &Path) -> bool {
    read_settings(dir).is_ok_and(|(_, v)| settings_kind(&v) == Some(BINOMIAL_KIND))
}

/// Loads the binomial model saved in `dir` (its sampling weights) and its settings.
pub fn load_binomial(dir: &Path, device: &Device) -> Result<(BinomialModel, SavedBinomial)> {
    let (sp, value) = read_settings(dir)?;
    let saved: SavedBinomial = serde_json::from_value(value)
        .map_err(|e| DsbError::bad_file(&sp, format!("not a binomial model's settings ({e})")))?;
    if saved.format != FORMAT || saved.kind != BINOMIAL_KIND {
        return Err(DsbError::bad_file(
            &sp,
            format!(
                "unsupported format version {} of kind '{}'",
                saved.format, saved.kind
            ),
        ));
    }
    saved.config.validate()?;
    let c = &saved.config;
    let dim = saved.example_shape.iter().product();
    let model = BinomialModel::new(dim, c.steps, c.width, c.depth, c.seed, device)?;
    let wp = dir.join(MODEL_WEIGHTS);
    let map = read_tensors(&wp, "the model's weights")?;
    check_marker(&map, saved.step, &wp)?;
    model.params().assign(&map, &wp)?;
    Ok((model, saved))
}
