//! `dsb bridge`: a Schrödinger bridge between two data sets by IPF (DSB as a continuous
//! Sinkhorn), checked against the entropic OT plan between samples of them.

use super::bridge_images::ImageBridgeEval;
use super::checks;
use super::fit::{RunLock, cpu_unet};
use super::progress::spinner;
use super::run_control::{RunControl, train};
use crate::bridge::{OtComparison, compare_with_sinkhorn};
use crate::data::Points;
use crate::fit::{BridgeMetrics, DataSpec, Fit, FitConfig, FitRow, NetworkSpec};
use crate::io::{ScatterPlot, atomic_write, image_grid_png, scatter_png, write_points_csv};
use crate::nn::UNetConfig;
use crate::process::{ReferenceKind, Schedule};
use anyhow::{Context, bail};
use rand::SeedableRng;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Arguments of `dsb bridge`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "IPF alternates mean-matching half-steps between the two data sets: \
    the backward network is fitted to the reversal of the forward process started at --from, the \
    forward network to the reversal of the backward process started at --to. With the Brownian \
    reference of variance σ² per unit time on [0, T] the bridge's coupling (X_0, X_T) is the \
    entropic OT plan with cost |x − y|² and ε = 2σ²T, which the run computes by Sinkhorn \
    iterations between held-out points of both sets and compares (--sinkhorn).\n\n\
    Writes into the output directory: model.safetensors + model.json (both networks, also the \
    checkpoint), train-state.safetensors (for --resume), forward.csv (held-out points of --from \
    and where the forward process carries them), backward.csv (the same from --to), bridge.png \
    (paths over both sets; images: rows of sources above rows of their transports), \
    transport.png (points: both directions) and summary.json \
    (settings, one row per IPF iteration, the untrained baseline, the OT comparison).\n\n\
    Examples:\n  dsb bridge --from two-moons --to 8gaussians\n  \
    dsb bridge --from a.csv --to b.csv --sigma 0.5 --horizon 1 --ipf-iters 6 --out runs/ab\n  \
    dsb bridge --resume runs/two-moons-to-8gaussians --ipf-iters 8"
)]
pub struct BridgeArgs {
    /// The data set at t = 0: anything `dsb fit --data` takes (a toy set, a .csv of points, or
    /// images).
    #[arg(long, required_unless_present = "resume", conflicts_with = "resume")]
    pub from: Option<String>,
    /// The data set at t = T, of the same shape as --from.
    #[arg(long, required_unless_present = "resume", conflicts_with = "resume")]
    pub to: Option<String>,
    /// Points generated for a toy data set (each end; default 10000); for images, the training
    /// images kept (default: all).
    #[arg(long, conflicts_with = "resume")]
    pub n_data: Option<usize>,
    /// Fraction of each data set held out for the metrics and the OT comparison.
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

    /// Reference process: Brownian motion (the Schrödinger bridge of optimal transport) or
    /// Ornstein–Uhlenbeck.
    #[arg(long, value_enum, default_value_t = ReferenceKind::Brownian, conflicts_with = "resume")]
    pub reference: ReferenceKind,
    /// σ, the Brownian reference's standard deviation per unit time in data units (default: the
    /// pooled standard deviation of both sets, the unit of the standardised coordinates; not for
    /// --reference ou, which is stationary at that scale).
    #[arg(long, allow_negative_numbers = true, conflicts_with = "resume")]
    pub sigma: Option<f64>,
    /// Horizon T. The reference's variance over [0, T] is σ²T per coordinate; ε = 2σ²T.
    #[arg(
        long,
        allow_negative_numbers = true,
        default_value_t = 0.2,
        conflicts_with = "resume"
    )]
    pub horizon: f64,
    /// Time steps N.
    #[arg(long, default_value_t = 20, conflicts_with = "resume")]
    pub steps: usize,
    /// Spread of the steps over [0, T] (symmetric: fine at both ends, as in DSB).
    #[arg(long, value_enum, default_value_t = Schedule::Symmetric, conflicts_with = "resume")]
    pub schedule: Schedule,
    /// Hidden units per layer of the MLP (default 128 for points, 512 for images with --mlp).
    #[arg(long, conflicts_with = "resume")]
    pub width: Option<usize>,
    /// Hidden layers of the MLP.
    #[arg(long, default_value_t = 3, conflicts_with = "resume")]
    pub depth: usize,
    /// Images: bridge with the MLP (--width, --depth) on the flattened pixels instead of the
    /// UNet, about a hundred times cheaper per step on the CPU, with blurrier images.
    #[arg(long, conflicts_with = "resume")]
    pub mlp: bool,
    /// Images: a classifier directory (`dsb train-classifier`) to score the transports by the
    /// classifier-Fréchet distance to the other end's held-out images and by the classes it
    /// gives them (summary.json `classifier`).
    #[arg(long)]
    pub classifier: Option<PathBuf>,

    /// IPF refinements after iteration 0 (each fits the forward network, then the backward
    /// one). With --resume: raise it to continue a finished run further.
    #[arg(long)]
    pub ipf_iters: Option<usize>,
    /// Gradient steps per half-step.
    #[arg(long, default_value_t = 1000, conflicts_with = "resume")]
    pub iters: usize,
    /// Gradient steps of IPF iteration 0 (default: --iters).
    #[arg(long, conflicts_with = "resume")]
    pub first_iters: Option<usize>,
    /// Examples per gradient step (default: 256 for points; for images 32 on the CPU, 128 on a
    /// GPU, as `dsb fit`).
    #[arg(long, conflicts_with = "resume")]
    pub batch: Option<usize>,
    /// Peak learning rate of Adam (cosine decay to a tenth within each half-step).
    #[arg(
        long,
        allow_negative_numbers = true,
        default_value_t = 1e-3,
        conflicts_with = "resume"
    )]
    pub lr: f64,
    /// EMA decay of the weights (0: none).
    #[arg(
        long,
        allow_negative_numbers = true,
        default_value_t = 0.99,
        conflicts_with = "resume"
    )]
    pub ema: f64,
    /// Paths in the trajectory cache of the half-steps.
    #[arg(long, default_value_t = 2000, conflicts_with = "resume")]
    pub cache: usize,
    /// Refill the cache every this many gradient steps.
    #[arg(long, default_value_t = 100, conflicts_with = "resume")]
    pub refresh: usize,
    /// Held-out points of each end used for the metrics of each IPF iteration.
    #[arg(long, default_value_t = 1000, conflicts_with = "resume")]
    pub eval_samples: usize,
    /// Held-out points of each end in the entropic OT comparison (0: none). Sinkhorn costs
    /// O(n²) per iteration; it needs the Brownian reference and points, not images.
    #[arg(long, default_value_t = 500)]
    pub sinkhorn: usize,
    /// Forward paths per point for the learned coupling's cost and conditional means.
    #[arg(long, default_value_t = 16)]
    pub sinkhorn_draws: usize,
    /// Random seed (data, split, weights, training).
    #[arg(long, default_value_t = 0, conflicts_with = "resume")]
    pub seed: u64,

    /// Output directory (default: runs/<from>-to-<to>).
    #[arg(long, conflicts_with = "resume")]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub run: RunControl,
}

/// What `dsb bridge` writes to summary.json (and prints).
#[derive(Debug, Serialize)]
pub struct BridgeSummary {
    /// The data set at t = 0.
    pub from: String,
    /// The data set at t = T.
    pub to: String,
    /// Numbers per example.
    pub dim: usize,
    /// The fit's settings (horizon in standardised units).
    pub config: FitConfig,
    /// The standardisation's scale (one for every coordinate).
    pub scale: f64,
    /// σ²T, the reference's variance per coordinate over [0, T] in data units.
    pub reference_variance: f64,
    /// One row per IPF iteration.
    pub rows: Vec<FitRow>,
    /// The untrained bridge's metrics (backward MMD², energy, and both directions).
    pub untrained: Option<UntrainedRow>,
    /// The learned coupling against the entropic OT plan.
    pub ot: Option<OtComparison>,
    /// Images with --classifier: the transports scored by the classifier.
    pub classifier: Option<ImageBridgeEval>,
    /// Wall seconds of the command.
    pub wall_seconds: f64,
}

/// The untrained bridge's metrics.
#[derive(Debug, Serialize)]
pub struct UntrainedRow {
    /// MMD² of --to carried back (untrained) against --from.
    pub mmd2: f64,
    /// Energy distance of the same.
    pub energy: f64,
    /// Both directions.
    pub bridge: BridgeMetrics,
}

fn spec(name: &str, a: &BridgeArgs, images: bool) -> DataSpec {
    DataSpec {
        name: name.to_string(),
        n: a.n_data.unwrap_or(if images { 0 } else { 10_000 }),
        seed: a.seed,
        held_out: a.held_out,
        data_dir: a.data_dir.clone(),
    }
}

fn config(a: &BridgeArgs, images: bool, gpu: bool) -> FitConfig {
    let network = if images && !a.mlp {
        NetworkSpec::Unet(if gpu { UNetConfig::mnist() } else { cpu_unet() })
    } else {
        NetworkSpec::Mlp {
            width: a.width.unwrap_or(if images { 512 } else { 128 }),
            depth: a.depth,
        }
    };
    FitConfig {
        steps: a.steps,
        horizon: a.horizon,
        schedule: a.schedule,
        first_step: None,
        reference: a.reference,
        network,
        ipf_iters: a.ipf_iters.unwrap_or(4),
        iters: a.iters,
        first_iters: a.first_iters,
        batch: a.batch.unwrap_or(match (images, gpu) {
            (false, _) => 256,
            (true, false) if !a.mlp => 32,
            (true, _) => 128,
        }),
        lr: a.lr,
        grad_clip: 10.0,
        ema: a.ema,
        cache: a.cache,
        refresh: a.refresh,
        eval_samples: a.eval_samples,
        seed: a.seed,
    }
}

/// The file stem of a data set's name.
fn stem(name: &str) -> String {
    Path::new(name)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| name.to_string())
}

/// Runs `dsb bridge`.
pub fn run(a: BridgeArgs) -> anyhow::Result<()> {
    let start = Instant::now();
    let device = super::device(a.run.device)?;
    let quiet = a.run.quiet();
    let (mut fit, out) = match (&a.run.resume, &a.from, &a.to) {
        (Some(dir), _, _) => {
            let fit = Fit::resume(dir, None, &device)
                .with_context(|| format!("cannot resume from {}", dir.display()))?;
            if fit.far_data().is_none() {
                bail!(
                    "--resume {}: this is a `dsb fit` run, not a bridge; continue it with `dsb \
                     fit --resume`",
                    dir.display()
                );
            }
            (fit, dir.clone())
        }
        (None, Some(from), Some(to)) => {
            let out = a.out.clone().unwrap_or_else(|| {
                Path::new("runs").join(format!("{}-to-{}", stem(from), stem(to)))
            });
            checks::output_dir("--out", &out)?;
            if a.sigma.is_some() && a.reference != ReferenceKind::Brownian {
                bail!(
                    "--sigma sets the Brownian reference's variance per unit time; the OU \
                     reference is stationary at the pooled scale of the data, so give its \
                     length with --horizon only (or use --reference brownian)"
                );
            }
            let images = crate::fit::is_image_data(from);
            if images != crate::fit::is_image_data(to) {
                bail!("--from and --to must both be points or both be images");
            }
            if images && a.sinkhorn > 0 && !quiet {
                eprintln!("note: the OT comparison (--sinkhorn) is for points; skipped for images");
            }
            let cfg = config(&a, images, device.is_cuda());
            let pb = spinner("loading both data sets", quiet);
            let fit = Fit::bridge(
                spec(from, &a, images),
                spec(to, &a, images),
                cfg,
                a.sigma,
                &device,
            )?;
            pb.finish_and_clear();
            (fit, out)
        }
        _ => bail!("--from and --to are required (or --resume DIR)"),
    };
    if let Some(k) = a.ipf_iters
        && a.run.resume.is_some()
    {
        fit.extend_ipf_iters(k);
    }
    let images = fit.model.settings().is_image();
    if let Some(dir) = &a.classifier {
        if !images {
            bail!(
                "--classifier {}: the classifier scores image bridges; points are scored by \
                 MMD², energy distance and --sinkhorn; drop --classifier",
                dir.display()
            );
        }
        let (clf, _) = crate::eval::Classifier::load(dir, &device)
            .with_context(|| format!("--classifier {}: cannot load it", dir.display()))?;
        let shape = &fit.model.settings().example_shape;
        let size = clf.config().size;
        if shape[1..] != [size, size] {
            bail!(
                "--classifier {}: it takes {size}×{size} images, the bridge's are {}×{}",
                dir.display(),
                shape[1],
                shape[2]
            );
        }
        let per_side = fit
            .config()
            .eval_samples
            .min(fit.held_out().len())
            .min(fit.far_held_out().map_or(0, |p| p.len()));
        if per_side < 4 {
            bail!(
                "--classifier needs at least 4 held-out images of each end, there are {per_side}; \
                 raise --eval-samples or --held-out"
            );
        }
    }
    if a.sinkhorn > 0 && !images && fit.model.settings().reference != ReferenceKind::Brownian {
        bail!(
            "--sinkhorn {}: the entropic OT comparison needs --reference brownian (or --sinkhorn \
             0)",
            a.sinkhorn
        );
    }
    let _lock = RunLock::for_output(&out)?;
    let pb = spinner("evaluating the untrained bridge", quiet);
    let untrained = fit
        .untrained_bridge_metrics()?
        .map(|(mmd2, energy, bridge)| UntrainedRow {
            mmd2,
            energy,
            bridge,
        });
    pb.finish_and_clear();
    let row_line = |row: &FitRow| {
        let b = row.bridge.expect("a bridge's rows have bridge metrics");
        format!(
            "ipf {}: to→from MMD² {:.5}, from→to MMD² {:.5}, transport cost {:.4}",
            row.iteration, row.mmd2, b.forward_mmd2, b.forward_cost
        )
    };
    if !train(&mut fit, &out, &a.run, "bridge", row_line)? {
        return Ok(());
    }
    let ot = if a.sinkhorn > 0 && !images {
        let pb = spinner(
            &format!(
                "entropic OT between {} points of each set (Sinkhorn)",
                a.sinkhorn
            ),
            quiet,
        );
        let mut rng = rand::rngs::StdRng::seed_from_u64(fit.config().seed ^ 0x0f_5eed);
        let c = compare_with_sinkhorn(&fit, a.sinkhorn, a.sinkhorn_draws, &mut rng)?;
        pb.finish_and_clear();
        Some(c)
    } else {
        None
    };
    let pb = spinner("writing transports, plots and summary", quiet);
    let (from_side, to_side) = write_transports(&fit, &out)?;
    let classifier = match &a.classifier {
        Some(dir) => Some(super::bridge_images::evaluate(
            dir,
            (&from_side.0, &from_side.1),
            (&to_side.0, &to_side.1),
            (
                &fit.data().name,
                &fit.far_data().map(|d| d.name.clone()).unwrap_or_default(),
            ),
            &device,
        )?),
        None => None,
    };
    let settings = fit.model.settings();
    let scale = settings.normalisation.scale[0];
    let summary = BridgeSummary {
        from: fit.data().name.clone(),
        to: fit.far_data().map(|d| d.name.clone()).unwrap_or_default(),
        dim: fit.model.dim(),
        config: fit.config().clone(),
        scale,
        reference_variance: scale * scale * settings.horizon,
        rows: fit.progress().rows.clone(),
        untrained,
        ot,
        classifier,
        wall_seconds: start.elapsed().as_secs_f64(),
    };
    atomic_write(
        &out.join("summary.json"),
        serde_json::to_string_pretty(&summary)?.as_bytes(),
    )?;
    pb.finish_and_clear();
    if a.run.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print_summary(&summary, &out);
    }
    Ok(())
}

/// Held-out points of both ends with their transports.
type Transported = (Points, Points);

/// Held-out points of both ends with their transports: forward.csv, backward.csv, and the
/// pictures. Returns (held-out --from, its transport) and (held-out --to, its transport).
fn write_transports(fit: &Fit, out: &Path) -> anyhow::Result<(Transported, Transported)> {
    let n = fit.config().eval_samples;
    let far = fit.far_held_out().expect("a bridge has a far end");
    let mut rng = rand::rngs::StdRng::seed_from_u64(fit.config().seed ^ 0x7a_5eed);
    // Images: seeded random subsets, since image files are often sorted by class (the
    // fixture is) and the classifier's scores need every class; points keep their first rows.
    let image = fit.model.settings().example_shape.len() == 3;
    let pick = |p: &Points, rng: &mut rand::rngs::StdRng| -> anyhow::Result<Points> {
        if !image || p.len() <= n {
            return Ok(p.head(n));
        }
        let mut idx = rand::seq::index::sample(rng, p.len(), n).into_vec();
        idx.sort_unstable();
        Ok(p.subset(&idx)?)
    };
    let (a, b) = (pick(fit.held_out(), &mut rng)?, pick(far, &mut rng)?);
    let fwd = fit.model.to_data(
        &fit.model
            .transport_forward(&fit.model.standardise(&a)?, &mut rng)?,
    )?;
    let back = fit.model.to_data(&fit.model.transport_backward(
        &fit.model.standardise(&b)?,
        false,
        &mut rng,
    )?)?;
    write_points_csv(&out.join("forward.csv"), &pairs(&a, &fwd)?)?;
    write_points_csv(&out.join("backward.csv"), &pairs(&b, &back)?)?;
    let shape = &fit.model.settings().example_shape;
    if shape.len() == 3 {
        // An 8 × 8 grid (with 16 examples per direction): rows of 8 sources, each above the
        // row of their transports; --from → --to in the top half, --to → --from below.
        let k = 16.min(a.len()).min(b.len());
        let d = a.dim;
        let mut grid = Vec::with_capacity(4 * k * d);
        for (src, dst) in [(&a, &fwd), (&b, &back)] {
            for start in (0..k).step_by(8) {
                let end = (start + 8).min(k);
                grid.extend_from_slice(&src.data[start * d..end * d]);
                grid.extend_from_slice(&dst.data[start * d..end * d]);
            }
        }
        image_grid_png(&out.join("bridge.png"), &grid, 4 * k, shape)?;
        return Ok(((a, fwd), (b, back)));
    }
    if a.dim < 2 {
        return Ok(((a, fwd), (b, back)));
    }
    let xy = |p: &Points| -> Vec<(f64, f64)> {
        p.data
            .chunks(p.dim)
            .map(|r| (f64::from(r[0]), f64::from(r[1])))
            .collect()
    };
    // 40 forward paths, every state, as grey dots over both sets.
    let starts = a.head(40);
    let paths = fit
        .model
        .simulate_forward(&fit.model.standardise(&starts)?, &mut rng)?;
    let mut trail = Vec::new();
    for s in &paths {
        trail.extend(xy(&fit.model.to_data(s)?));
    }
    let to_name = fit.far_data().map(|d| d.name.clone()).unwrap_or_default();
    let plot = ScatterPlot {
        title: format!("{} → {}: 40 forward paths", fit.data().name, to_name),
        layers: vec![
            (
                format!("{} (t = 0)", fit.data().name),
                xy(&a),
                (31, 119, 180),
            ),
            (format!("{to_name} (t = T)"), xy(&b), (255, 127, 14)),
            ("paths".into(), trail, (90, 90, 90)),
        ],
        markers: None,
        side_by_side: false,
    };
    scatter_png(&out.join("bridge.png"), &plot)?;
    let panels = ScatterPlot {
        title: format!("{} ⇄ {}", fit.data().name, to_name),
        layers: vec![
            (format!("{} → T", fit.data().name), xy(&fwd), (44, 160, 44)),
            (format!("{to_name} (held out)"), xy(&b), (255, 127, 14)),
            (format!("{to_name} → 0"), xy(&back), (148, 103, 189)),
            (
                format!("{} (held out)", fit.data().name),
                xy(&a),
                (31, 119, 180),
            ),
        ],
        markers: None,
        side_by_side: true,
    };
    scatter_png(&out.join("transport.png"), &panels)?;
    Ok(((a, fwd), (b, back)))
}

/// Rows (x, T(x)): the source coordinates then the transported ones.
fn pairs(src: &Points, dst: &Points) -> anyhow::Result<Points> {
    let d = src.dim;
    let mut data = Vec::with_capacity(2 * src.data.len());
    for (s, t) in src.data.chunks(d).zip(dst.data.chunks(d)) {
        data.extend_from_slice(s);
        data.extend_from_slice(t);
    }
    let names = (1..=d)
        .map(|i| format!("x{i}"))
        .chain((1..=d).map(|i| format!("y{i}")))
        .collect();
    Ok(Points::with_names(data, src.len(), 2 * d, names)?)
}

fn print_summary(s: &BridgeSummary, out: &Path) {
    println!(
        "bridge {} → {} ({}-D), σ²T = {:.4} (ε = {:.4})",
        s.from,
        s.to,
        s.dim,
        s.reference_variance,
        2.0 * s.reference_variance
    );
    println!("  iteration   to→from MMD²   from→to MMD²   cost (fwd)   cost (bwd)");
    if let Some(u) = &s.untrained {
        println!(
            "  untrained   {:>12.5}   {:>12.5}   {:>10.4}   {:>10.4}",
            u.mmd2, u.bridge.forward_mmd2, u.bridge.forward_cost, u.bridge.backward_cost
        );
    }
    for r in &s.rows {
        if let Some(b) = r.bridge {
            println!(
                "  {:>9}   {:>12.5}   {:>12.5}   {:>10.4}   {:>10.4}",
                r.iteration, r.mmd2, b.forward_mmd2, b.forward_cost, b.backward_cost
            );
        }
    }
    if let Some(o) = &s.ot {
        println!(
            "entropic OT on {} points of each set: Sinkhorn cost {:.4}, bridge cost {:.4} ± {:.4} \
             (reference alone {:.4}); conditional means off by {:.4} RMS, of which the {} draws \
             per point explain {:.4} (their spread: {:.4})",
            o.points,
            o.sinkhorn_cost,
            o.bridge_cost,
            o.bridge_cost_stderr,
            o.reference_cost,
            o.conditional_mean_rmse,
            o.draws,
            o.conditional_mean_noise,
            o.conditional_mean_spread
        );
    }
    if let Some(c) = &s.classifier {
        println!(
            "classifier-FD ({} images a side): from→to {:.2}, to→from {:.2}; before transport \
             {:.2}; floors (two halves of one set) {:.2} (to), {:.2} (from){}",
            c.per_set,
            c.forward_fd,
            c.backward_fd,
            c.untransported_fd,
            c.floor_to_fd,
            c.floor_from_fd,
            match (c.forward_in_to_classes, c.backward_in_from_classes) {
                (Some(f), Some(b)) => format!(
                    "; transports in the other end's classes: {:.0}% from→to, {:.0}% to→from",
                    100.0 * f,
                    100.0 * b
                ),
                _ => String::new(),
            }
        );
    }
    println!("outputs in {}", out.display());
}
