//! What `dsb fit` writes and prints at the end: samples, a plot, and the summary.

use crate::fit::{DataSpec, Elbo, Fit, FitConfig, FitRow, ModelSettings};
use crate::io::{ScatterPlot, atomic_write, image_grid_png, scatter_png, write_points_csv};
use serde::Serialize;
use std::path::Path;

/// Metrics of one sample against the held-out data.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct SampleQuality {
    /// Unbiased MMD² (Gaussian kernels, median-heuristic bandwidths).
    pub mmd2: f64,
    /// Energy distance.
    pub energy: f64,
}

/// Everything `dsb fit` reports (`summary.json`).
#[derive(Debug, Serialize)]
pub struct FitSummary {
    /// The data and how they were split.
    pub data: DataSpec,
    /// Dimension of the data.
    pub dim: usize,
    /// Training points.
    pub n_train: usize,
    /// Held-out points.
    pub n_held_out: usize,
    /// The model's settings (with the standardisation).
    pub model: ModelSettings,
    /// The fit's settings.
    pub config: FitConfig,
    /// Trainable parameters of both networks.
    pub parameters: usize,
    /// Last finished IPF iteration.
    pub ipf_iteration_reached: usize,
    /// The generated points (samples.csv) against the held-out data.
    pub generated: SampleQuality,
    /// Prior samples N(mean, diag(scale²)) against the held-out data: the baseline.
    pub prior: SampleQuality,
    /// Generated MMD² as a fraction of the prior's.
    pub mmd2_ratio_to_prior: f64,
    /// The held-out likelihood bound of the final model.
    pub elbo: Elbo,
    /// For images: the bound as bits per dimension of the 8-bit data (see
    /// [`crate::fit::Elbo::bits_per_dim`]); lower is better.
    pub bits_per_dim: Option<f64>,
    /// One row per IPF iteration.
    pub rows: Vec<FitRow>,
    /// Gradient steps of the whole run.
    pub gradient_steps: usize,
    /// Seconds of training of the whole run (also across resumptions).
    pub train_seconds: f64,
    /// Gradient steps per second of training.
    pub steps_per_second: f64,
    /// Seconds of this command.
    pub wall_seconds: f64,
    /// The global step this command resumed from, if it did.
    pub resumed_at_step: Option<usize>,
    /// The output directory.
    pub out: String,
}

impl FitSummary {
    /// The summary of a finished fit.
    pub fn new(
        fit: &Fit,
        out: &Path,
        resumed_at_step: Option<usize>,
        wall_seconds: f64,
    ) -> crate::error::Result<Self> {
        let p = fit.progress();
        let last = p.rows.last().expect("a finished fit has rows");
        let (pm, pe) = fit.prior_baseline()?;
        Ok(Self {
            data: fit.data().clone(),
            dim: fit.model.dim(),
            n_train: fit.train_len(),
            n_held_out: fit.held_out().len(),
            model: fit.model.settings().clone(),
            config: fit.config().clone(),
            parameters: fit.model.parameter_count(),
            ipf_iteration_reached: last.iteration,
            generated: SampleQuality {
                mmd2: last.mmd2,
                energy: last.energy,
            },
            prior: SampleQuality {
                mmd2: pm,
                energy: pe,
            },
            mmd2_ratio_to_prior: last.mmd2 / pm,
            elbo: last.elbo,
            bits_per_dim: last.elbo.bits_per_dim,
            rows: p.rows.clone(),
            gradient_steps: p.global_step,
            train_seconds: p.train_seconds,
            steps_per_second: p.global_step as f64 / p.train_seconds.max(1e-9),
            wall_seconds,
            resumed_at_step,
            out: out.display().to_string(),
        })
    }
}

/// Images shown in the grid of samples.png.
const GRID_IMAGES: usize = 64;

/// Writes samples.csv, samples.png (for images: a grid of up to 64 generated images; for
/// points of dimension ≥ 2: the first two coordinates, held-out data beside generated points)
/// and summary.json into `out`.
pub fn write_outputs(fit: &Fit, out: &Path, summary: &FitSummary) -> anyhow::Result<()> {
    let samples = fit.evaluated_samples()?;
    write_points_csv(&out.join("samples.csv"), &samples)?;
    let settings = fit.model.settings();
    if settings.is_image() {
        let n = samples.len().min(GRID_IMAGES);
        image_grid_png(
            &out.join("samples.png"),
            &samples.data[..n * samples.dim],
            n,
            &settings.example_shape,
        )?;
    } else if samples.dim >= 2 {
        let xy = |data: &[f32], dim: usize| -> Vec<(f64, f64)> {
            data.chunks(dim)
                .map(|r| (f64::from(r[0]), f64::from(r[1])))
                .collect()
        };
        let held = fit.held_out();
        let plot = ScatterPlot {
            title: format!(
                "{}: IPF iteration {}, {} steps, MMD² {:.4} (prior {:.4})",
                fit.data().name,
                summary.ipf_iteration_reached,
                fit.model.settings().steps,
                summary.generated.mmd2,
                summary.prior.mmd2
            ),
            layers: vec![
                (
                    format!("held-out data ({})", held.len()),
                    xy(&held.data, held.dim),
                    (255, 127, 14),
                ),
                (
                    format!("generated ({})", samples.len()),
                    xy(&samples.data, samples.dim),
                    (31, 119, 180),
                ),
            ],
            markers: None,
            side_by_side: true,
        };
        scatter_png(&out.join("samples.png"), &plot)?;
    }
    let json = serde_json::to_string_pretty(summary)?;
    atomic_write(&out.join("summary.json"), json.as_bytes())?;
    Ok(())
}

/// Prints the summary as aligned text.
pub fn print_summary(s: &FitSummary) {
    let m = &s.model;
    println!(
        "data         {} ({}-D; {} training, {} held out)",
        s.data.name, s.dim, s.n_train, s.n_held_out
    );
    println!(
        "model        {} steps, T = {}, {} schedule, {} reference, {} ({} parameters)",
        m.steps,
        m.horizon,
        super::kebab(&m.schedule),
        super::kebab(&m.reference),
        m.network.describe(),
        s.parameters
    );
    println!("ipf  MMD²       energy    ELBO nats/dim   bwd loss  fwd loss   steps   steps/s");
    for r in &s.rows {
        let fwd = r
            .forward_loss
            .map(|v| format!("{v:8.4}"))
            .unwrap_or_else(|| "       -".into());
        println!(
            "{:>3}  {:<9.5}  {:<8.5}  {:>7.4} ± {:<5.3}  {:>8.4}  {fwd}  {:>6}  {:>8.1}",
            r.iteration,
            r.mmd2,
            r.energy,
            r.elbo.nats_per_dim,
            r.elbo.stderr / s.dim as f64,
            r.backward_loss,
            r.steps,
            r.steps_per_second
        );
    }
    println!(
        "prior        MMD² {:.5}, energy {:.5} (generated/prior MMD² = {:.3})",
        s.prior.mmd2, s.prior.energy, s.mmd2_ratio_to_prior
    );
    println!(
        "held-out     ELBO {:.4} ± {:.4} nats per example ({:.4} nats/dim)",
        s.elbo.nats, s.elbo.stderr, s.elbo.nats_per_dim
    );
    if let Some(b) = s.bits_per_dim {
        println!("held-out     {b:.4} bits/dim (8-bit pixels, uniform dequantisation)");
    }
    println!(
        "training     {} gradient steps in {:.1} s ({:.1} steps/s); wall {:.1} s",
        s.gradient_steps, s.train_seconds, s.steps_per_second, s.wall_seconds
    );
    // samples.png is drawn for images and for points of dimension 2 or more (write_outputs).
    let png = if s.dim >= 2 { " samples.png," } else { "" };
    println!(
        "written      {}/{{model.safetensors, model.json, samples.csv,{png} summary.json}}",
        s.out
    );
}
