//! `dsb sample`: train a diffusion sampler on a target and report its estimates.

use super::baseline::{BaselineArgs, print_baseline_summary, run_baseline};
use super::checks;
use super::progress::bar;
use super::refine::{CheckpointArgs, IpfArgs, run_diffusion};
use super::summary::{Summary, print_summary};
use crate::baseline::Method;
use crate::io::{Histogram, ScatterPlot, histogram_png, scatter_png, write_samples};
use crate::ipf::{RunSpec, SampleRun};
use crate::metrics::mode_report;
use crate::process::Schedule;
use crate::recommend::recommended_settings;
use crate::sampler::DiffusionSampler;
use crate::sampler::SampleSet;
use crate::sequential::SequentialConfig;
use crate::target::{Preconditioned, Target, TargetOptions, builtin_target};
use crate::train::Loss;
use crate::train::checkpoint::RunRng;
use anyhow::{Context, bail};
use rand::SeedableRng;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

/// Arguments of `dsb sample`. Every setting left out takes the target's recommended value
/// (`dsb sample --target NAME --help` shows the generic defaults; the summary prints those used).
#[derive(Debug, clap::Args)]
#[command(
    after_help = "The default method is the sequential sampler (--method sequential); a flag that only the diffusion sampler reads (--save, --load, --log, --checkpoint, --resume, --ipf-iters, --horizon, --loss, --replay, --device, ...) selects --method dsb instead. Settings shown without a default take the target's recommended value (src/recommend.rs); the summary prints every value used.\n\nExamples:\n  dsb sample --target gmm --plot gmm.png\n  dsb sample --target gmm --method dsb --plot gmm.png\n  dsb sample --target funnel --out funnel.csv --json\n  dsb sample --target gaussian --dim 8 --save g8.safetensors\n  dsb sample --target gaussian --dim 8 --load g8.safetensors --n 100000 --out g8.npy\n  dsb sample --target gaussian --steps 8 --horizon 0.25 --ipf-iters 3 --iters 400\n  dsb sample --target funnel --iters 2000 --checkpoint runs/funnel\n  dsb sample --target funnel --iters 2000 --resume runs/funnel   (continue an interrupted run)\n  dsb sample --target german-credit --precondition laplace --iters 100 --steps 16\n  dsb sample --target sonar --method smc\n  dsb sample --target german-credit --method nuts --out draws.csv"
)]
pub struct SampleArgs {
    /// Built-in target (see `dsb targets`): gaussian, gmm, mixture, funnel, many-well,
    /// ionosphere, sonar, german-credit, lgcp, lgcp-whitened, seeds, brownian, or logistic (with
    /// --data).
    #[arg(long, short)]
    pub target: String,
    /// Dimension, for targets whose dimension can be set (gaussian: 5, mixture: 2).
    #[arg(long)]
    pub dim: Option<usize>,
    /// Number of modes of `mixture`.
    #[arg(long, default_value_t = 8)]
    pub modes: usize,
    /// Half-width of the box holding the means of `mixture`.
    #[arg(long, allow_negative_numbers = true, default_value_t = 10.0)]
    pub spread: f64,
    /// Data of the `logistic` target: a CSV whose last column is the 0/1 label (an optional
    /// header row is detected). Features are z-scored and an intercept is added first.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Prior scale s of the `logistic` weights: w ~ N(0, s²I).
    #[arg(long, allow_negative_numbers = true, default_value_t = 1.0)]
    pub prior_scale: f64,
    /// `lgcp` in whitened coordinates z, x = μ + Lz (the same as `--target lgcp-whitened`).
    #[arg(long)]
    pub whiten: bool,

    /// Time steps N of the diffusion.
    #[arg(long)]
    pub steps: Option<usize>,
    /// Horizon T of the Ornstein–Uhlenbeck reference, in its relaxation times.
    #[arg(long, allow_negative_numbers = true)]
    pub horizon: Option<f64>,
    /// Prior scale σ: the sampler starts from N(0, σ²I). Give one value, or one per coordinate
    /// separated by commas for N(0, diag(σᵢ²)) (default: scales that cover the target).
    #[arg(long, allow_negative_numbers = true, value_delimiter = ',', num_args = 1..)]
    pub sigma: Option<Vec<f64>>,
    /// Length scale ℓ of the target's finest structure (mode width); damps the score term of
    /// the drift as the forward noise grows past it.
    #[arg(long, allow_negative_numbers = true)]
    pub length_scale: Option<f64>,
    /// Spread of the steps over [0, T].
    #[arg(long, value_enum)]
    pub schedule: Option<Schedule>,
    /// Hidden units per layer of the drift network.
    #[arg(long)]
    pub width: Option<usize>,
    /// Hidden layers of the drift network.
    #[arg(long)]
    pub depth: Option<usize>,

    /// Training iterations (gradient steps).
    #[arg(long)]
    pub iters: Option<usize>,
    /// Paths simulated per training iteration.
    #[arg(long)]
    pub batch: Option<usize>,
    /// Peak learning rate of Adam (cosine decay to a tenth).
    #[arg(long, allow_negative_numbers = true)]
    pub lr: Option<f64>,
    /// Global gradient-norm clip.
    #[arg(long, allow_negative_numbers = true)]
    pub grad_clip: Option<f64>,
    /// Training objective: `kl` (reverse KL through the path) or `log-var` (log-variance of the
    /// importance weights, better at covering modes).
    #[arg(long, value_enum)]
    pub loss: Option<Loss>,

    /// Exploration factor λ ≥ 1 for the log-variance loss: training paths use λ times the prior
    /// scale and the noise, reaching regions the sampler still misses (1 = on-policy).
    #[arg(long, allow_negative_numbers = true)]
    pub explore: Option<f64>,

    /// Replay paths per log-variance batch, as a fraction of --batch (0 = none): noising paths
    /// started at persistent HMC chains on the target, trained by cross-entropy. They show the
    /// loss the parts of the target the sampler misses (the funnel's wide part and neck).
    #[arg(long, allow_negative_numbers = true)]
    pub replay: Option<f64>,
    /// Train through candle's autograd instead of the CPU fast path of the drift network (the
    /// log-variance loss's default on the CPU; the fast path is tested equal to this one, which
    /// is slower).
    #[arg(long)]
    pub no_fast_path: bool,
    /// HMC transitions of every replay chain per training iteration.
    #[arg(long)]
    pub replay_moves: Option<usize>,
    /// Weight of the replay paths' cross-entropy in the loss.
    #[arg(long, allow_negative_numbers = true)]
    pub replay_weight: Option<f64>,

    /// Number of output samples.
    #[arg(long, short, default_value_t = 10_000)]
    pub n: usize,
    /// Random seed: the same seed gives the same numbers on the same machine.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Write the samples here: `.csv` (with a log_weight column) or `.npy` (float32 [n, dim]).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Write importance-resampled (unweighted) samples instead of the raw weighted ones.
    #[arg(long)]
    pub resample: bool,
    /// Draw a PNG scatter plot of the first two coordinates here.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Save the trained sampler: weights to FILE (safetensors), settings to FILE with extension .json.
    #[arg(long)]
    pub save: Option<PathBuf>,
    /// Load a saved sampler instead of training one.
    #[arg(long, conflicts_with_all = ["steps", "horizon", "sigma", "schedule", "width", "depth", "length_scale"])]
    pub load: Option<PathBuf>,
    /// Write the training curve (iteration, loss, ELBO, log Z-hat, ESS, gradient norm) as CSV here.
    #[arg(long)]
    pub log: Option<PathBuf>,
    /// Write checkpoints of the training into this directory (created if missing): every
    /// --checkpoint-every gradient steps of a backward half-step (the training, or a
    /// refinement's), when one ends, and after each half-step. An interrupted run continues
    /// with the same command line and --resume DIR instead.
    #[arg(long, value_name = "DIR", conflicts_with = "resume")]
    pub checkpoint: Option<PathBuf>,
    /// Gradient steps between two checkpoints inside a backward half-step.
    #[arg(long, default_value_t = 100)]
    pub checkpoint_every: usize,
    /// Stop after this many gradient steps of this command (training and refinement steps
    /// together), with a checkpoint; continue with --resume. Needs --checkpoint or --resume.
    #[arg(long, value_name = "STEPS")]
    pub stop_after: Option<usize>,
    /// Continue the run checkpointed in DIR (by --checkpoint DIR), writing further checkpoints
    /// there. Give the interrupted run's command line: settings that differ are an error. The
    /// result is the one the uninterrupted run would have given.
    #[arg(long, value_name = "DIR")]
    pub resume: Option<PathBuf>,
    /// Where the networks run: `cpu`, or `cuda` (GPU 0; needs a build with `--features cuda`).
    #[arg(long, default_value = "cpu")]
    pub device: super::DeviceArg,
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,

    #[command(flatten)]
    #[allow(missing_docs)]
    pub ipf: IpfArgs,

    #[command(flatten)]
    #[allow(missing_docs)]
    pub baseline: BaselineArgs,

    /// Change of variables the sampler works in: `none`, or `laplace` (x = x̂ + Lz with
    /// N(x̂, LLᵀ) the Laplace approximation: mode by L-BFGS, Hessian by differences of the
    /// gradient). Same Z and exact weights; samples are written in the original coordinates.
    /// Helps every method on near-Gaussian posteriors (logistic regressions, seeds).
    #[arg(long, value_enum, default_value_t = Precondition::None)]
    pub precondition: Precondition,
    /// Widen the Laplace covariance by this factor (its square on the variances), to cover
    /// tails heavier than Gaussian.
    #[arg(long, allow_negative_numbers = true, default_value_t = 1.0)]
    pub laplace_inflate: f64,
}

/// The change of variables of `--precondition`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Precondition {
    /// Sample the target as it is.
    None,
    /// Sample in the coordinates that whiten the target's Laplace approximation.
    Laplace,
}

/// The sequential sampler's settings from the flags it shares with the diffusion sampler and
/// SMC (`--steps`, `--iters`, `--batch`, `--lr`, `--grad-clip`, `--width`, `--depth`,
/// `--particles`, `--moves`, `--leapfrog`); the rest are the library's defaults.
fn sequential_config(a: &SampleArgs) -> SequentialConfig {
    let d = SequentialConfig::default();
    SequentialConfig {
        steps: a.steps.unwrap_or(d.steps),
        iterations: a.iters.unwrap_or(d.iterations),
        batch: a.batch.unwrap_or(d.batch),
        lr: a.lr.unwrap_or(d.lr),
        grad_clip: a.grad_clip.unwrap_or(d.grad_clip),
        width: a.width.unwrap_or(d.width),
        depth: a.depth.unwrap_or(d.depth),
        particles: a.baseline.particles,
        moves: a.baseline.moves.unwrap_or(d.moves),
        step_moves: a.baseline.step_moves.unwrap_or(d.step_moves),
        leapfrog_steps: a.baseline.leapfrog,
        ..d
    }
}

/// The flags that only the diffusion sampler (`--method dsb`) reads, given on this command line.
fn diffusion_flags(a: &SampleArgs) -> Vec<&'static str> {
    let given = [
        (a.load.is_some(), "--load"),
        (a.save.is_some(), "--save"),
        (a.log.is_some(), "--log"),
        (a.checkpoint.is_some(), "--checkpoint"),
        (a.resume.is_some(), "--resume"),
        (a.stop_after.is_some(), "--stop-after"),
        (a.ipf.ipf_iters > 0, "--ipf-iters"),
        (a.horizon.is_some(), "--horizon"),
        (a.length_scale.is_some(), "--length-scale"),
        (a.schedule.is_some(), "--schedule"),
        (a.loss.is_some(), "--loss"),
        (a.explore.is_some(), "--explore"),
        (a.replay.is_some(), "--replay"),
        (a.replay_moves.is_some(), "--replay-moves"),
        (a.no_fast_path, "--no-fast-path"),
        (a.replay_weight.is_some(), "--replay-weight"),
        (a.device != super::DeviceArg::Cpu, "--device"),
    ];
    given
        .into_iter()
        .filter_map(|(on, flag)| on.then_some(flag))
        .collect()
}

/// Fixes the method when `--method` is not given: the sequential sampler, or the diffusion
/// sampler alone when a flag only it reads is given (said on stderr unless quiet).
fn resolve_method(a: &mut SampleArgs) {
    if a.baseline.method.is_some() {
        return;
    }
    let flags = diffusion_flags(a);
    if flags.is_empty() {
        a.baseline.method = Some(Method::Sequential);
    } else {
        if !a.quiet {
            eprintln!(
                "method: dsb (the diffusion sampler alone), because {} only it reads; the \
                 default is --method sequential",
                flags.join(", ")
            );
        }
        a.baseline.method = Some(Method::Dsb);
    }
}

/// Runs `dsb sample`.
pub fn run(mut a: SampleArgs) -> anyhow::Result<()> {
    let start = Instant::now();
    resolve_method(&mut a);
    check_before_work(&a)?;
    let opts = TargetOptions {
        dim: a.dim,
        modes: a.modes,
        spread: a.spread,
        data: a.data.clone(),
        prior_scale: a.prior_scale,
        whiten: a.whiten,
    };
    let original: Arc<dyn Target> = Arc::from(builtin_target(&a.target, &opts)?);
    let pre = match a.precondition {
        Precondition::None => None,
        Precondition::Laplace => Some(Arc::new(
            Preconditioned::laplace(
                original.clone(),
                &vec![0.0; original.dim()],
                a.laplace_inflate,
            )
            .context("--precondition laplace")?,
        )),
    };
    if let Some(p) = &pre
        && p.floored_eigenvalues() > 0
    {
        eprintln!(
            "warning: --precondition laplace: {} eigenvalue(s) of the Hessian at the mode were not \
             positive and were floored (a saddle or a flat direction); the whitening is a guess \
             along those directions",
            p.floored_eigenvalues()
        );
    }
    let target: Arc<dyn Target> = match &pre {
        Some(p) => p.clone(),
        None => original.clone(),
    };
    let (mut scfg, mut tcfg) = recommended_settings(target.as_ref());
    if let Some(v) = a.steps {
        scfg.steps = v;
    }
    if let Some(v) = a.horizon {
        scfg.horizon = v;
    }
    match a.sigma.as_deref() {
        Some([one]) => {
            scfg.sigma = *one;
            scfg.prior_scales = None;
        }
        Some(many) => scfg.prior_scales = Some(many.to_vec()),
        None => {}
    }
    if let Some(v) = a.schedule {
        scfg.schedule = v;
    }
    if let Some(v) = a.length_scale {
        scfg.length_scale = v;
    }
    if let Some(v) = a.width {
        scfg.width = v;
    }
    if let Some(v) = a.depth {
        scfg.depth = v;
    }
    if let Some(v) = a.iters {
        tcfg.iterations = v;
    }
    if let Some(v) = a.batch {
        tcfg.batch = v;
    }
    if let Some(v) = a.lr {
        tcfg.lr = v;
    }
    if let Some(v) = a.grad_clip {
        tcfg.grad_clip = v;
    }
    if let Some(v) = a.loss {
        tcfg.loss = v;
    }
    if let Some(v) = a.explore {
        tcfg.explore = v;
    }
    if let Some(v) = a.replay {
        tcfg.replay = v;
    }
    if let Some(v) = a.replay_moves {
        tcfg.replay_moves = v;
    }
    tcfg.fast_path = !a.no_fast_path;
    if let Some(v) = a.replay_weight {
        tcfg.replay_weight = v;
    }
    // A recommended replay belongs to the log-variance loss; `--loss kl` alone turns it off.
    if tcfg.loss == Loss::ReverseKl && a.replay.is_none() {
        tcfg.replay = 0.0;
    }
    if a.load.is_none() || a.ipf.ipf_iters > 0 {
        run_memory(&a, target.dim(), &scfg, &tcfg)?;
    } else {
        // A loaded sampler's settings are read later; its output alone can be checked now.
        let d = target.dim();
        checks::memory(
            24.0 * a.n as f64 * d as f64,
            &format!("--n {} samples of dimension {d}", a.n),
            "--n",
        )?;
    }
    let device = super::device(a.device)?;
    let mut rng = RunRng::seed_from_u64(a.seed);
    if a.baseline.method() != Method::Dsb {
        if a.load.is_some() || a.save.is_some() || a.ipf.ipf_iters > 0 || a.log.is_some() {
            bail!(
                "--load, --save, --log and --ipf-iters belong to the diffusion sampler; drop them \
                 with --method {}",
                super::kebab(&a.baseline.method())
            );
        }
        scfg.checked_scales(target.dim())?;
        let seq = sequential_config(&a);
        let (mut set, mut summary) = run_baseline(
            target.as_ref(),
            &a.baseline,
            &scfg,
            &seq,
            a.seed,
            a.quiet || a.json,
            &mut rng,
        )?;
        // The samples are in the original coordinates already (`Target::original_coordinates`).
        if pre.is_some() {
            summary.moments = crate::metrics::sample_moment_errors(&set, original.as_ref());
        }
        match a.baseline.method() {
            Method::Smc => check_weights(&set, "SMC's particles")?,
            Method::Sequential => check_weights(&set, "the sequential sampler's particles")?,
            _ => {}
        }
        if a.resample {
            set = set.resampled(a.n, &mut rng);
        }
        write_outputs(&a, target.as_ref(), &set)?;
        if a.json {
            if let Some(w) = &summary.warning {
                eprintln!("warning: {w}");
            }
            println!("{}", serde_json::to_string_pretty(&summary)?);
        } else {
            print_baseline_summary(&summary);
        }
        return Ok(());
    }
    // Checked now, so that a bad IPF flag fails before the training it would follow.
    let ipf_cfg = a.ipf.config(&tcfg)?;

    let mut first_ipf = 1;
    let mut sampler = match &a.load {
        Some(path) => {
            let (s, settings) = DiffusionSampler::load(path, &device)
                .with_context(|| format!("cannot load the sampler from {}", path.display()))?;
            if settings.target != target.name() || settings.dim != target.dim() {
                let fix = match (
                    settings.target == target.name(),
                    settings.dim == target.dim(),
                ) {
                    (true, _) => format!("use --dim {}", settings.dim),
                    (false, true) => format!("use --target {}", settings.target),
                    (false, false) => {
                        format!("use --target {} --dim {}", settings.target, settings.dim)
                    }
                };
                bail!(
                    "{} was trained on target '{}' ({}-D), not on '{}' ({}-D); {fix}",
                    path.display(),
                    settings.target,
                    settings.dim,
                    target.name(),
                    target.dim(),
                );
            }
            scfg = s.config().clone();
            first_ipf = s.refinements() + 1;
            s
        }
        None => DiffusionSampler::new(target.dim(), scfg.clone(), a.seed, &device)?,
    };
    sampler.set_fast_path(!a.no_fast_path);
    let (sampler, trained, ipf_rows, train_secs) = if a.load.is_none() || a.ipf.ipf_iters > 0 {
        let spec = RunSpec {
            target: target.name().to_string(),
            dim: target.dim(),
            sampler: scfg.clone(),
            train: a.load.is_none().then(|| tcfg.clone()),
            refine: crate::train::TrainConfig {
                ema: a.ipf.ema,
                ..tcfg.clone()
            },
            ipf: ipf_cfg.clone(),
            first_ipf,
            seed: a.seed,
        };
        let ckpt = CheckpointArgs {
            dir: a.checkpoint.as_deref().or(a.resume.as_deref()),
            resume: a.resume.is_some(),
            every: a.checkpoint_every,
            stop_after: a.stop_after,
        };
        let quiet = a.quiet || a.json;
        let Some(done) = run_diffusion(sampler, spec, target.as_ref(), &ckpt, &mut rng, quiet)?
        else {
            let dir = ckpt.dir.expect("--stop-after needs a checkpoint directory");
            let msg = format!(
                "stopped after {} gradient step(s) (--stop-after); checkpoint in {}; continue \
                 with the same command line and --resume {}",
                a.stop_after.unwrap_or(0),
                dir.display(),
                dir.display()
            );
            if a.json {
                println!("{}", serde_json::json!({"stopped": true, "message": msg}));
            } else {
                eprintln!("{msg}");
            }
            return Ok(());
        };
        if let Some(p) = &a.log {
            crate::io::atomic_write(p, done.curve.as_bytes())?;
        }
        (done.sampler, done.train_report, done.rows, done.seconds)
    } else {
        (sampler, None, Vec::new(), 0.0)
    };
    let ipf_done = sampler.refinements();
    if let Some(p) = &a.save {
        sampler.save(p, target.name())?;
    }

    let sample_start = Instant::now();
    let pb = bar(a.n as u64, "sample", a.quiet);
    let mut set = sampler.sample_with_progress(target.as_ref(), a.n, 2048, &mut rng, |done| {
        pb.set_position(done as u64)
    })?;
    pb.finish_and_clear();
    check_weights(&set, "the sampler's output")?;
    let sample_secs = sample_start.elapsed().as_secs_f64();
    let modes = target
        .modes()
        .map(|(centres, _)| mode_report(&set.samples, set.dim, &centres, &set.log_w));

    let moments = crate::metrics::sample_moment_errors(&set, original.as_ref());
    if a.resample {
        set = set.resampled(a.n, &mut rng);
    }
    write_outputs(&a, target.as_ref(), &set)?;

    let summary = Summary {
        target: target.name().to_string(),
        dim: target.dim(),
        loaded: a.load.as_ref().map(|p| p.display().to_string()),
        sampler: scfg,
        training: trained.as_ref().map(|_| tcfg.clone()),
        ipf: (a.ipf.ipf_iters > 0).then_some(ipf_cfg),
        ipf_rows,
        ipf_iterations: ipf_done,
        train_report: trained,
        estimates: set.estimates,
        ess_below_floor: set.estimates.ess_warning().is_some(),
        warning: set.estimates.ess_warning(),
        elbo_warning: set.estimates.elbo_warning(),
        true_log_z: target.log_z(),
        abs_error: target.log_z().map(|z| (set.estimates.log_z - z).abs()),
        modes,
        moments,
        n_samples: a.n,
        seed: a.seed,
        gradient_evaluations: sampler.gradient_evaluations(),
        train_seconds: train_secs,
        sample_seconds: sample_secs,
        wall_seconds: start.elapsed().as_secs_f64(),
    };
    if a.json {
        for w in summary.warning.iter().chain(&summary.elbo_warning) {
            eprintln!("warning: {w}");
        }
        if let Some(why) = summary
            .train_report
            .as_ref()
            .and_then(|r| r.stopped_early.as_ref())
        {
            eprintln!("note: training {why}");
        }
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print_summary(&summary);
    }
    Ok(())
}

/// A sample set with no finite log weight has no estimate: an error, never a printed −∞.
fn check_weights(set: &SampleSet, what: &str) -> anyhow::Result<()> {
    let e = &set.estimates;
    if e.n == 0 || e.n_nonfinite == e.n || !e.log_z.is_finite() {
        bail!(
            "{what}: {} of {} samples have a non-finite log weight (log Z-hat {}), so there is no \
             estimate; the sampler or the target's density is broken (a sampler loaded with \
             --load may be damaged: retrain it), or the target is far from the prior (--sigma)",
            e.n_nonfinite,
            e.n,
            e.log_z
        );
    }
    Ok(())
}

/// The checks that need no target: output paths, `--iters 0`, and the memory the target itself
/// takes for the targets whose size is set on the command line.
fn check_before_work(a: &SampleArgs) -> anyhow::Result<()> {
    if a.n == 0 {
        bail!("--n must be at least 1");
    }
    if a.baseline.method() == Method::Dsb
        && a.iters == Some(0)
        && (a.load.is_none() || a.ipf.ipf_iters > 0)
    {
        bail!(
            "--iters must be at least 1: an untrained sampler's estimates mean nothing (to \
             sample a saved sampler without training, --load it)"
        );
    }
    if let Some(p) = a
        .save
        .as_ref()
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
    {
        bail!(
            "--save {}: the settings go to FILE.json beside the weights, so the weights file \
             cannot end in .json; use e.g. model.safetensors",
            p.display()
        );
    }
    if let Some(p) = &a.out {
        checks::output_file("--out", p, &["csv", "npy"], ".csv or .npy")?;
    }
    if let Some(p) = &a.plot {
        checks::output_file("--plot", p, &["png"], ".png")?;
    }
    if let Some(p) = &a.save {
        checks::output_file("--save", p, &[], "")?;
    }
    if let Some(p) = &a.log {
        checks::output_file("--log", p, &[], "")?;
    }
    check_checkpoint_flags(a)?;
    let (bytes, what, flags) = match a.target.as_str() {
        "gaussian" => {
            let d = a.dim.unwrap_or(5) as f64;
            (28.0 * d * d, format!("a dense {d}×{d} covariance"), "--dim")
        }
        "mixture" => {
            let (k, d) = (a.modes as f64, a.dim.unwrap_or(2) as f64);
            (
                16.0 * k * d,
                format!("{k} means of dimension {d}"),
                "--dim or --modes",
            )
        }
        _ => return Ok(()),
    };
    checks::memory(bytes, &what, flags)
}

/// `--checkpoint` must not overwrite a run's checkpoint, `--resume` needs one, and both need
/// something to train.
fn check_checkpoint_flags(a: &SampleArgs) -> anyhow::Result<()> {
    if a.checkpoint_every == 0 {
        bail!("--checkpoint-every must be at least 1");
    }
    if a.stop_after.is_some() && a.checkpoint.is_none() && a.resume.is_none() {
        bail!("--stop-after stops with a checkpoint: give --checkpoint DIR (or --resume DIR)");
    }
    if (a.checkpoint.is_some() || a.resume.is_some()) && a.load.is_some() && a.ipf.ipf_iters == 0 {
        bail!(
            "--checkpoint and --resume checkpoint training, and a --load'ed sampler without \
             --ipf-iters trains nothing; drop them"
        );
    }
    if let Some(dir) = &a.checkpoint
        && SampleRun::exists(dir)
    {
        bail!(
            "--checkpoint {}: the directory holds a checkpoint already; continue that run with \
             --resume {0} (and its command line), or choose another directory",
            dir.display()
        );
    }
    if let Some(dir) = &a.resume
        && !SampleRun::exists(dir)
    {
        bail!(
            "--resume {}: no checkpoint there ({} is missing); start the run with --checkpoint \
             DIR to write one",
            dir.display(),
            dir.join(crate::train::checkpoint::MODEL_SETTINGS).display()
        );
    }
    Ok(())
}

/// Refuses a run whose training and sampling would need more memory than the machine has,
/// estimated from dim × batch × steps × width (and --n for the output).
fn run_memory(
    a: &SampleArgs,
    dim: usize,
    scfg: &crate::sampler::SamplerConfig,
    tcfg: &crate::train::TrainConfig,
) -> anyhow::Result<()> {
    let (d, w, l) = (dim as f64, scfg.width as f64, scfg.depth as f64);
    let steps = scfg.steps as f64 + 1.0;
    let n = a.n as f64;
    let (work, what) = if a.baseline.method() == Method::Dsb {
        // Parameters with their gradients and Adam's two moments; per path and step, the state,
        // its score, the network's activations (kept for the backward pass) and candle's
        // temporaries. Calibrated on peak resident memory: lgcp (1600-D, 64 steps, batch 256,
        // 2048 samples) 6.4 GB measured, 6.5 GB estimated; gaussian 200-D 1.0 GB and 0.9 GB.
        let params = 16.0 * ((3.0 * d + 16.0) * w + l * w * w);
        let paths = tcfg.batch as f64 * (1.0 + tcfg.replay.max(0.0));
        let per_path = 4.0 * steps * (20.0 * d + 8.0 * w * l);
        let sample = 4.0 * n.min(2048.0) * steps * 5.0 * d;
        (
            params + paths * per_path + sample,
            format!(
                "dim {dim} × batch {} × steps {} × width {} x {}",
                tcfg.batch, scfg.steps, scfg.width, scfg.depth
            ),
        )
    } else if a.baseline.method() == Method::Sequential {
        // Per training particle and step: the recorded states and scores (f32) and the
        // network's activations; per particle of the final run, a few copies of its state.
        let c = sequential_config(a);
        let (w, l) = (c.width as f64, c.depth as f64);
        let per_path = (c.steps as f64 + 1.0) * (16.0 * d + 8.0 + 16.0 * w * l);
        let batch = c.batch as f64 * c.buffer as f64;
        let run = 10.0 * 8.0 * d * c.particles.max(c.batch) as f64;
        (
            batch * per_path + run + 16.0 * c.steps as f64 * d,
            format!(
                "dim {dim} × batch {} × steps {} (replay buffer of {}) and {} particles",
                c.batch, c.steps, c.buffer, c.particles
            ),
        )
    } else {
        let b = &a.baseline;
        let held = (b.particles as f64 * 10.0).max(b.chains as f64 * b.draws as f64);
        (
            8.0 * held * d,
            format!(
                "dim {dim} × {} particles or {} × {} draws",
                b.particles, b.chains, b.draws
            ),
        )
    };
    // The output: the samples in f32 and in f64 (original coordinates, resampling).
    let output = 24.0 * n * d;
    checks::memory(
        work + output,
        &format!("{what}, and --n {} samples", a.n),
        "--dim, --batch, --steps, --width, --depth, --particles, --draws or --n",
    )
}

/// Writes `--out` and `--plot` for a finished sample set.
fn write_outputs(a: &SampleArgs, target: &dyn Target, set: &SampleSet) -> anyhow::Result<()> {
    if let Some(p) = &a.out {
        write_samples(p, set)?;
    }
    if let Some(p) = a.plot.as_ref().filter(|_| set.dim == 1) {
        plot_1d(a, p, target, set)?;
    } else if let Some(p) = &a.plot {
        let pts = |s: &crate::sampler::SampleSet| -> Vec<(f64, f64)> {
            (0..s.len())
                .map(|i| {
                    let r = s.row(i);
                    (r[0] as f64, r.get(1).copied().unwrap_or(0.0) as f64)
                })
                .collect()
        };
        let mut plot = ScatterPlot {
            title: format!(
                "{} — {} samples{}",
                target.name(),
                set.len(),
                if a.resample { " (resampled)" } else { "" }
            ),
            layers: vec![(super::kebab(&a.baseline.method()), pts(set), (31, 119, 180))],
            markers: None,
            side_by_side: false,
        };
        if let Some((centres, _)) = target.modes() {
            plot.markers = Some((
                "modes".into(),
                centres
                    .iter()
                    .map(|c| (c[0], c.get(1).copied().unwrap_or(0.0)))
                    .collect(),
            ));
        } else if let Some(exact) =
            target.exact_samples(set.len().min(5000), &mut RunRng::seed_from_u64(a.seed ^ 7))
        {
            plot.layers.insert(
                0,
                (
                    "exact".into(),
                    exact
                        .iter()
                        .map(|r| (r[0], r.get(1).copied().unwrap_or(0.0)))
                        .collect(),
                    (255, 127, 14),
                ),
            );
        }
        scatter_png(p, &plot)?;
    }

    Ok(())
}

/// `--plot` of a 1-D sample set: a histogram weighted by the importance weights (beside the
/// exact samples' or over the modes, when the target has them), not a scatter with a made-up
/// second coordinate.
fn plot_1d(
    a: &SampleArgs,
    p: &std::path::Path,
    target: &dyn Target,
    set: &SampleSet,
) -> anyhow::Result<()> {
    let mut hist = Histogram {
        title: format!(
            "{} — {} samples{}",
            target.name(),
            set.len(),
            if a.resample {
                " (resampled)"
            } else {
                ", weighted"
            }
        ),
        layers: vec![(
            super::kebab(&a.baseline.method()),
            (0..set.len()).map(|i| set.row(i)[0] as f64).collect(),
            crate::estimate::normalised_weights(&set.log_w),
            (31, 119, 180),
        )],
        markers: None,
    };
    if let Some((centres, _)) = target.modes() {
        hist.markers = Some(("modes".into(), centres.iter().map(|c| c[0]).collect()));
    } else if let Some(exact) =
        target.exact_samples(set.len().min(5000), &mut RunRng::seed_from_u64(a.seed ^ 7))
    {
        let n = exact.len();
        hist.layers.insert(
            0,
            (
                "exact".into(),
                exact.iter().map(|r| r[0]).collect(),
                vec![1.0; n],
                (255, 127, 14),
            ),
        );
    }
    histogram_png(p, &hist)?;
    Ok(())
}
