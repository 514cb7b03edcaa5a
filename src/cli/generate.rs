//! `dsb generate`: draw points from a model fitted by `dsb fit`.

use crate::fit::{GenerateOptions, load_model};
use crate::io::{ScatterPlot, image_grid_png, scatter_png, write_points_csv};
use anyhow::{Context, bail};
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::path::PathBuf;

/// Arguments of `dsb generate`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  dsb generate --model runs/swiss-roll --n 1000 --out samples.csv\n  \
    dsb generate --model runs/swiss-roll --n 2000 --steps 20 --out fast.png\n  \
    dsb generate --model runs/mnist --n 64 --out grid.png"
)]
pub struct GenerateArgs {
    /// The output directory of `dsb fit` (holding model.safetensors and model.json).
    #[arg(long)]
    pub model: PathBuf,
    /// Number of points.
    #[arg(long, short, default_value_t = 64)]
    pub n: usize,
    /// Sampling steps (default: the model's own). Fewer steps use every (N/K)-th time of the
    /// model's grid, with each coarse kernel's mean recomputed from the network's score
    /// estimate (Tweedie's formula for the reference's composed kernel, i.e. DDPM ancestral
    /// sampling on the sub-grid). Only for models of IPF iteration 0: an IPF-refined model's
    /// kernels belong to its own grid, and it refuses other step counts.
    #[arg(long)]
    pub steps: Option<usize>,
    /// Keep the noise of the last step (default: output its mean, as DDPM and DSB do).
    #[arg(long)]
    pub final_noise: bool,
    /// Write the points here: `.csv` (one row per point; for images, the flattened pixels in
    /// [−1, 1]) or `.png` (scatter of the first two coordinates; for images, a grid of the
    /// images, ⌈√n⌉ per row, pixels mapped from [−1, 1] to 0..255).
    #[arg(long)]
    pub out: PathBuf,
    /// Random seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Where the networks run: `cpu`, or `cuda` (needs a build with `--features cuda`).
    #[arg(long, default_value = "cpu")]
    pub device: super::DeviceArg,
    /// No progress output.
    #[arg(long, short)]
    pub quiet: bool,
}

/// Runs `dsb generate`.
pub fn run(a: GenerateArgs) -> anyhow::Result<()> {
    if a.n == 0 {
        bail!("--n must be at least 1");
    }
    super::checks::output_file("--out", &a.out, &["csv", "png"], ".csv or .png")?;
    if crate::binomial::is_binomial_model(&a.model) {
        return super::binary::generate(&a);
    }
    let ext = a
        .out
        .extension()
        .and_then(|e| e.to_str())
        .map(|e| e.to_ascii_lowercase());
    let device = super::device(a.device)?;
    let (model, saved) = load_model(&a.model, &device)
        .with_context(|| format!("cannot load the model from {}", a.model.display()))?;
    // The points in f32 three times over (chunks, their concatenation, the data coordinates).
    let dim = saved.model.example_shape.iter().product::<usize>().max(1);
    super::checks::memory(
        16.0 * a.n as f64 * dim as f64,
        &format!("--n {} points of dimension {dim}", a.n),
        "--n",
    )?;
    let opts = GenerateOptions {
        steps: a.steps,
        final_noise: a.final_noise,
    };
    let mut rng = StdRng::seed_from_u64(a.seed);
    let pb = super::progress::spinner(&format!("generating {} examples", a.n), a.quiet);
    let points = model.generate(a.n, &opts, &mut rng)?;
    pb.finish_and_clear();
    if ext.as_deref() == Some("csv") {
        write_points_csv(&a.out, &points)?;
    } else if saved.model.is_image() {
        image_grid_png(
            &a.out,
            &points.data,
            points.len(),
            &saved.model.example_shape,
        )?;
    } else {
        if points.dim < 2 {
            bail!(
                "--out {}: a plot needs points of dimension 2 or more",
                a.out.display()
            );
        }
        let plot = ScatterPlot {
            title: format!(
                "{}: {} points, {} steps",
                saved.model.data,
                points.len(),
                a.steps.unwrap_or(saved.model.steps)
            ),
            layers: vec![(
                "generated".into(),
                points
                    .data
                    .chunks(points.dim)
                    .map(|r| (f64::from(r[0]), f64::from(r[1])))
                    .collect(),
                (31, 119, 180),
            )],
            markers: None,
            side_by_side: false,
        };
        scatter_png(&a.out, &plot)?;
    }
    let what = if saved.model.is_image() {
        "images"
    } else {
        "points"
    };
    eprintln!("wrote {} {what} to {}", points.len(), a.out.display());
    Ok(())
}
