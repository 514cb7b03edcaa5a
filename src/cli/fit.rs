//! `dsb fit`: fit a generative model (DDPM-style, refined into a Schrödinger bridge by IPF) to a
//! data set, write the model, samples, a plot and a summary.

use super::fit_report::{FitSummary, print_summary, write_outputs};
use super::progress::spinner;
use super::run_control::{RunControl, say_nothing_to_do, train};
use crate::fit::{DataSpec, Fit, FitConfig, FitRow, NetworkSpec, is_image_data};
use crate::nn::UNetConfig;
use crate::process::{ReferenceKind, Schedule};
use anyhow::{Context, bail};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Arguments of `dsb fit`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Writes into the output directory: model.safetensors + model.json (the \
    model, also the checkpoint), train-state.safetensors (for --resume), samples.csv, \
    samples.png (data beside generated points; for images, a grid of up to 64 generated \
    images) and summary.json.\n\nExamples:\n  \
    dsb fit --data swiss-roll\n  dsb fit --data two-moons --steps 20 --horizon 1 --ipf-iters 2 \
    --out runs/moons-dsb\n  dsb fit --data points.csv --json\n  dsb fit --resume runs/swiss-roll\n  \
    dsb generate --model runs/swiss-roll --n 1000 --out samples.png"
)]
pub struct FitArgs {
    /// Data set: a toy set (swiss-roll, two-moons, circles, 8gaussians, checkerboard, s-curve),
    /// a .csv file of points (one per row, optional header), or images: mnist, fashion-mnist
    /// (located with --data-dir) or a directory of IDX files; images are fitted with the UNet
    /// (--unet-* flags), pixels in [−1, 1] and the prior N(0, I). With --resume: other data of the same dimension (e.g. a moved
    /// file); the saved standardisation is kept.
    #[arg(long, required_unless_present = "resume")]
    pub data: Option<String>,
    /// Points generated for a toy data set (default 10000); for images, the number of training
    /// images kept (a seeded random subset; default: all).
    #[arg(long, conflicts_with = "resume")]
    pub n_data: Option<usize>,
    /// Fraction of the data held out for the metrics and the likelihood bound.
    #[arg(
        long,
        allow_negative_numbers = true,
        default_value_t = 0.1,
        conflicts_with = "resume"
    )]
    pub held_out: f64,
    /// Directory searched first for image data sets.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,

    /// Time steps N.
    #[arg(long, default_value_t = 50, conflicts_with = "resume")]
    pub steps: usize,
    /// Horizon T of the reference, in its relaxation times (data standardised to unit scale).
    #[arg(
        long,
        allow_negative_numbers = true,
        default_value_t = 5.0,
        conflicts_with = "resume"
    )]
    pub horizon: f64,
    /// Spread of the steps over [0, T].
    #[arg(long, value_enum, default_value_t = Schedule::Geometric, conflicts_with = "resume")]
    pub schedule: Schedule,
    /// t_1 of the geometric schedule, γ_min of the symmetric one (default: T/N/100).
    #[arg(long, allow_negative_numbers = true, conflicts_with = "resume")]
    pub first_step: Option<f64>,
    /// Reference process of IPF iteration 0.
    #[arg(long, value_enum, default_value_t = ReferenceKind::Ou, conflicts_with = "resume")]
    pub reference: ReferenceKind,
    /// Hidden units per layer of the MLP (default 128; 512 for binarised images).
    #[arg(long, conflicts_with = "resume")]
    pub width: Option<usize>,
    /// Hidden layers of the MLP.
    #[arg(long, default_value_t = 3, conflicts_with = "resume")]
    pub depth: usize,
    /// Images: fit the MLP (--width, default 512, and --depth) on the flattened pixels instead
    /// of the UNet: about a hundred times cheaper per step on the CPU, with blurrier samples.
    #[arg(
        long,
        conflicts_with_all = ["resume", "unet_width", "unet_levels", "unet_mults", "unet_blocks", "unet_groups", "no_attention"]
    )]
    pub mlp: bool,
    /// UNet (images only): feature channels at full resolution (default 32 on a GPU, 16 on the
    /// CPU).
    #[arg(long, conflicts_with = "resume")]
    pub unet_width: Option<usize>,
    /// UNet: resolution levels, with width multipliers 1, 2, 2, … (default on a GPU 3:
    /// 28 → 14 → 7; on the CPU 2: 28 → 14).
    #[arg(long, conflicts_with_all = ["resume", "unet_mults"])]
    pub unet_levels: Option<usize>,
    /// UNet: width multipliers, one per level, e.g. `1,2,2` (instead of --unet-levels).
    #[arg(long, value_delimiter = ',', conflicts_with = "resume")]
    pub unet_mults: Option<Vec<usize>>,
    /// UNet: residual blocks per level on the way down (default 2 on a GPU, 1 on the CPU).
    #[arg(long, conflicts_with = "resume")]
    pub unet_blocks: Option<usize>,
    /// UNet: GroupNorm groups (default 8; must divide every layer's channels).
    #[arg(long, conflicts_with = "resume")]
    pub unet_groups: Option<usize>,
    /// UNet: no self-attention at the lowest resolution.
    #[arg(long, conflicts_with = "resume")]
    pub no_attention: bool,

    /// IPF refinements after iteration 0 (0: a DDPM-style model only). Each fits the forward
    /// network and then the backward one; useful with a short horizon or few steps. With
    /// --resume: raise it to continue a finished run further.
    #[arg(long)]
    pub ipf_iters: Option<usize>,
    /// Gradient steps per half-step (iteration 0 has one half-step, each refinement two).
    /// Default: 4000 for points, for images on a GPU and with --mlp, 1200 for images on the
    /// CPU.
    #[arg(long, conflicts_with = "resume")]
    pub iters: Option<usize>,
    /// Gradient steps of IPF iteration 0 (default: --iters); refinements start from a
    /// converged iteration 0, so it is usually trained longer.
    #[arg(long, conflicts_with = "resume")]
    pub first_iters: Option<usize>,
    /// Examples per gradient step. Default: 256 for points, 128 for images on a GPU or with
    /// --mlp, 32 for images on the CPU.
    #[arg(long, conflicts_with = "resume")]
    pub batch: Option<usize>,
    /// Peak learning rate of Adam (cosine decay to a tenth within each half-step). Default: 2e-3
    /// for points, 1e-3 for images.
    #[arg(long, allow_negative_numbers = true, conflicts_with = "resume")]
    pub lr: Option<f64>,
    /// Global gradient-norm clip.
    #[arg(
        long,
        allow_negative_numbers = true,
        default_value_t = 10.0,
        conflicts_with = "resume"
    )]
    pub grad_clip: f64,
    /// EMA decay of the weights (0: none); the averages are sampled and saved.
    #[arg(
        long,
        allow_negative_numbers = true,
        default_value_t = 0.995,
        conflicts_with = "resume"
    )]
    pub ema: f64,
    /// Paths in the trajectory cache of the IPF half-steps.
    #[arg(long, default_value_t = 4096, conflicts_with = "resume")]
    pub cache: usize,
    /// Refill the cache every this many gradient steps.
    #[arg(long, default_value_t = 200, conflicts_with = "resume")]
    pub refresh: usize,
    /// Points generated (and held-out points used, at most) for the metrics of each IPF
    /// iteration; also the number written to samples.csv (default: 2000 for points, 256 for
    /// images).
    #[arg(long, conflicts_with = "resume")]
    pub eval_samples: Option<usize>,
    /// Random seed (data, split, weights, training): the same seed gives the same numbers on
    /// the same machine.
    #[arg(long, default_value_t = 0, conflicts_with = "resume")]
    pub seed: u64,

    /// Binary data: fit a binomial diffusion model (Sohl-Dickstein et al., 2015) whose forward
    /// process flips bits towards Bernoulli(½) and whose reverse kernels are Bernoulli, with the
    /// bound in bits/dim. Images are thresholded at ½ (byte ≥ 128 → 1), CSV values above ½
    /// become 1s. The paper's heartbeat data (`--data heartbeat`: 20-bit sequences, a 1 every
    /// 5th bit at a random phase) are always fitted this way. Takes --steps, --width, --depth,
    /// --iters, --batch, --lr, --grad-clip, --ema, --eval-samples and the run flags.
    #[arg(
        long,
        conflicts_with_all = ["resume", "horizon", "schedule", "reference", "cache", "refresh", "mlp"]
    )]
    pub binarize: bool,

    /// Output directory (default: runs/<data>).
    #[arg(long, conflicts_with = "resume")]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub run: RunControl,
}

impl FitArgs {
    /// Whether any UNet flag was given.
    fn unet_flags(&self) -> bool {
        self.unet_width.is_some()
            || self.unet_levels.is_some()
            || self.unet_mults.is_some()
            || self.unet_blocks.is_some()
            || self.unet_groups.is_some()
            || self.no_attention
    }

    /// The network: a UNet for images (its image size is set from the data), the MLP for
    /// points (which refuse the UNet flags).
    fn network(&self, images: bool, gpu: bool) -> anyhow::Result<NetworkSpec> {
        if images && self.mlp {
            return Ok(NetworkSpec::Mlp {
                width: self.width.unwrap_or(512),
                depth: self.depth,
            });
        }
        if !images {
            if self.unet_flags() {
                bail!(
                    "the --unet-* and --no-attention flags are for image data (mnist, \
                     fashion-mnist, a directory of IDX files); points are fitted with the MLP \
                     (--width, --depth)"
                );
            }
            return Ok(NetworkSpec::Mlp {
                width: self.width.unwrap_or(128),
                depth: self.depth,
            });
        }
        let d = if gpu { UNetConfig::mnist() } else { cpu_unet() };
        let mults = match (&self.unet_mults, self.unet_levels) {
            (Some(m), _) => m.clone(),
            (None, Some(0)) => bail!("--unet-levels must be at least 1"),
            (None, Some(l)) => (0..l).map(|i| if i == 0 { 1 } else { 2 }).collect(),
            (None, None) => d.channel_mults.clone(),
        };
        let width = self.unet_width.unwrap_or(d.base_width);
        Ok(NetworkSpec::Unet(UNetConfig {
            base_width: width,
            channel_mults: mults,
            res_blocks_per_level: self.unet_blocks.unwrap_or(d.res_blocks_per_level),
            attention: !self.no_attention,
            groups: self.unet_groups.unwrap_or(d.groups),
            time_embed_dim: 4 * width,
            ..d
        }))
    }

    fn config(&self, images: bool, gpu: bool) -> anyhow::Result<FitConfig> {
        let (iters, batch, lr) = match (images, gpu) {
            (false, _) => (4000, 256, 2e-3),
            (true, _) if self.mlp => (4000, 128, 1e-3),
            (true, false) => (1200, 32, 1e-3),
            (true, true) => (4000, 128, 1e-3),
        };
        Ok(FitConfig {
            steps: self.steps,
            horizon: self.horizon,
            schedule: self.schedule,
            first_step: self.first_step,
            reference: self.reference,
            network: self.network(images, gpu)?,
            ipf_iters: self.ipf_iters.unwrap_or(0),
            iters: self.iters.unwrap_or(iters),
            first_iters: self.first_iters,
            batch: self.batch.unwrap_or(batch),
            lr: self.lr.unwrap_or(lr),
            grad_clip: self.grad_clip,
            ema: self.ema,
            cache: self.cache,
            refresh: self.refresh,
            eval_samples: self.eval_samples.unwrap_or(if images { 256 } else { 2000 }),
            seed: self.seed,
        })
    }
}

/// The UNet used for images on the CPU when no flag says otherwise: base width 16, two levels
/// (28 → 14) of one residual block, attention at 14×14, 8 groups. About 3 s per gradient step
/// at batch 32 on two busy cores (0.34 steps/s, BENCHMARKS.md); the full [`UNetConfig::mnist`]
/// took 56 s per step at batch 256 there and is the GPU default.
pub(super) fn cpu_unet() -> UNetConfig {
    UNetConfig {
        base_width: 16,
        channel_mults: vec![1, 2],
        res_blocks_per_level: 1,
        time_embed_dim: 64,
        ..UNetConfig::mnist()
    }
}

/// A lock file `DIR/.lock` holding this process's id, so that a second `dsb fit` into the same
/// directory refuses to start; removed when dropped (on success, on error and on a panic). A lock
/// whose process is gone (killed) is stale and taken over.
#[derive(Debug)]
pub struct RunLock {
    path: PathBuf,
    /// Remove the directory too if it is empty when the lock goes (it was created for this run,
    /// which failed before writing anything).
    remove_empty_dir: bool,
}

impl RunLock {
    /// The lock file's name inside an output directory.
    pub const FILE: &'static str = ".lock";

    /// Creates the output directory `dir` when it is missing and takes its lock.
    pub fn for_output(dir: &Path) -> anyhow::Result<Self> {
        let created = !dir.exists();
        std::fs::create_dir_all(dir)
            .with_context(|| format!("--out {}: cannot create the directory", dir.display()))?;
        Self::acquire(dir, created)
    }

    /// Takes the lock of `dir` (which exists; `created`: by this run).
    pub fn acquire(dir: &Path, created: bool) -> anyhow::Result<Self> {
        let path = dir.join(Self::FILE);
        for _ in 0..2 {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(mut f) => {
                    writeln!(f, "{}", std::process::id()).with_context(|| {
                        format!("cannot write the lock file {}", path.display())
                    })?;
                    return Ok(Self {
                        path,
                        remove_empty_dir: created,
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let pid = std::fs::read_to_string(&path)
                        .ok()
                        .and_then(|t| t.trim().parse::<u32>().ok());
                    let alive = match pid {
                        Some(pid) => {
                            !Path::new("/proc/self").exists()
                                || Path::new(&format!("/proc/{pid}")).exists()
                        }
                        // Being written by a process that has just created it.
                        None => true,
                    };
                    if alive {
                        bail!(
                            "{} is in use by another dsb fit{} (lock file {}); wait for it to \
                             finish or choose another --out. If no such run is going on, \
                             delete the lock file",
                            dir.display(),
                            pid.map(|p| format!(" (process {p})")).unwrap_or_default(),
                            path.display()
                        );
                    }
                    // Stale: its process is gone. Remove it and try again.
                    let _ = std::fs::remove_file(&path);
                }
                Err(e) => bail!(
                    "--out {}: cannot create the lock file {} ({e})",
                    dir.display(),
                    path.display()
                ),
            }
        }
        bail!(
            "{}: cannot take the lock file {}; delete it if no dsb fit is running there",
            dir.display(),
            path.display()
        )
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        if self.remove_empty_dir
            && let Some(dir) = self.path.parent()
        {
            // Fails, as it should, unless the directory is empty.
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// Refuses a fit whose data, trajectory cache and training batch would need more memory than
/// the machine has (estimated before the data are loaded; a CSV's dimension counts as 2).
fn fit_memory(a: &FitArgs, gpu: bool) -> anyhow::Result<()> {
    let Some(name) = &a.data else { return Ok(()) };
    let images = is_image_data(name);
    let cfg = a.config(images, gpu)?;
    let d = if images { 784.0 } else { 2.0 };
    let n = a.n_data.unwrap_or(if images { 60_000 } else { 10_000 }) as f64;
    let steps = cfg.steps as f64 + 1.0;
    let batch = cfg.batch as f64;
    let per_example = match &cfg.network {
        NetworkSpec::Mlp { width, depth } => 16.0 * (*width * *depth) as f64 + 8.0 * d,
        NetworkSpec::Unet(u) => 160.0 * d * u.base_width as f64 * u.channel_mults.len() as f64,
    };
    let bytes = 8.0 * n * d
        + 8.0 * cfg.cache as f64 * steps * d
        + batch * per_example
        + 32.0 * cfg.eval_samples as f64 * d;
    super::checks::memory(
        bytes,
        &format!(
            "{n} examples of dimension {d}, a cache of {} paths × {} steps, batches of {}",
            cfg.cache, cfg.steps, cfg.batch
        ),
        "--n-data, --cache, --steps, --batch, --width or --eval-samples",
    )
}

/// The default output directory for data `name`: `runs/<file stem or name>`.
pub(super) fn default_out(name: &str) -> PathBuf {
    let stem = Path::new(name)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| name.to_string());
    Path::new("runs").join(stem)
}

/// Runs `dsb fit`.
pub fn run(a: FitArgs) -> anyhow::Result<()> {
    if super::binary::wants_binary(&a) {
        return super::binary::fit(&a);
    }
    let start = Instant::now();
    let device = super::device(a.run.device)?;
    let out = match (&a.run.resume, &a.out, &a.data) {
        (Some(dir), _, _) => dir.clone(),
        (None, Some(dir), _) => dir.clone(),
        (None, None, Some(name)) => default_out(name),
        (None, None, None) => bail!("--data is required (or --resume DIR)"),
    };
    if a.run.resume.is_none() {
        super::checks::output_dir("--out", &out)?;
        fit_memory(&a, device.is_cuda())?;
    }
    let (mut fit, out) = match &a.run.resume {
        Some(dir) => {
            let data = match &a.data {
                Some(name) => {
                    let saved = crate::fit::load_model(dir, &device)
                        .with_context(|| format!("cannot resume from {}", dir.display()))?
                        .1
                        .data;
                    Some(DataSpec {
                        name: name.clone(),
                        data_dir: a.data_dir.clone().or(saved.data_dir.clone()),
                        ..saved
                    })
                }
                None => None,
            };
            let mut fit = Fit::resume(dir, data, &device)
                .with_context(|| format!("cannot resume from {}", dir.display()))?;
            if let Some(k) = a.ipf_iters {
                fit.extend_ipf_iters(k);
            }
            (fit, dir.clone())
        }
        None => {
            let name = a
                .data
                .clone()
                .expect("clap requires --data without --resume");
            let images = is_image_data(&name);
            let config = a.config(images, device.is_cuda())?;
            let data = DataSpec {
                name: name.clone(),
                n: a.n_data.unwrap_or(if images { 0 } else { 10_000 }),
                seed: a.seed,
                held_out: a.held_out,
                data_dir: a.data_dir.clone(),
            };
            (Fit::new(data, config, &device)?, out)
        }
    };
    let resumed_at = a.run.resume.as_ref().map(|_| fit.progress().global_step);
    let _lock = RunLock::for_output(&out)?;
    if resumed_at.is_some() && fit.is_done() {
        let msg = format!(
            "nothing to do: the run in {} is already finished ({} gradient steps, IPF iteration \
             {}); its outputs are left as they are. Raise --ipf-iters to refine it further",
            out.display(),
            fit.progress().global_step,
            fit.progress().rows.last().map_or(0, |r| r.iteration)
        );
        say_nothing_to_do(&msg, fit.progress().global_step, a.run.json);
        return Ok(());
    }
    let row_line = |row: &FitRow| {
        format!(
            "ipf {}: MMD² {:.5}, energy {:.5}, held-out ELBO {:.4} nats/dim{}",
            row.iteration,
            row.mmd2,
            row.energy,
            row.elbo.nats_per_dim,
            row.elbo
                .bits_per_dim
                .map(|b| format!(" ({b:.3} bits/dim)"))
                .unwrap_or_default()
        )
    };
    if !train(&mut fit, &out, &a.run, "fit", row_line)? {
        return Ok(());
    }
    if fit.progress().rows.is_empty() {
        bail!("the run finished without an evaluated IPF iteration");
    }
    let pb = spinner("writing samples, plot and summary", a.run.quiet());
    let mut summary = FitSummary::new(&fit, &out, resumed_at, start.elapsed().as_secs_f64())?;
    write_outputs(&fit, &out, &summary)?;
    pb.finish_and_clear();
    // The wall time printed is the whole command's, writing the outputs included.
    summary.wall_seconds = start.elapsed().as_secs_f64();
    if a.run.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print_summary(&summary);
    }
    Ok(())
}
