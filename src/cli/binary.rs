//! Binomial diffusion from the command line: `dsb fit --binarize` (and `dsb fit --data
//! heartbeat`), and `dsb generate` / `dsb eval` on the models it writes.

use super::eval::EvalArgs;
use super::fit::{FitArgs, RunLock, default_out};
use super::generate::GenerateArgs;
use super::progress::{bar, spinner};
use super::run_control::{LossLog, say_nothing_to_do, say_stopped};
use crate::binomial::{
    BinaryData, BinaryReport, BinomialFit, BinomialFitConfig, SavedBinomial, evaluate_model,
    is_binomial_model, is_heartbeat, load_binary, load_binomial,
};
use crate::data::Points;
use crate::fit::{DataSpec, Phase, RunOptions};
use crate::io::{image_grid_png, write_points_csv};
use anyhow::{Context, bail};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::Serialize;
use std::path::Path;
use std::time::Instant;

/// Whether `dsb fit` should fit a binomial model: `--binarize`, the heartbeat data, or
/// `--resume` of a binomial model.
pub(super) fn wants_binary(a: &FitArgs) -> bool {
    if let Some(dir) = &a.run.resume {
        return is_binomial_model(dir);
    }
    a.binarize || a.data.as_deref().is_some_and(is_heartbeat)
}

/// The flags of a Gaussian fit that a binomial fit has no use for, when given.
fn gaussian_only_flags(a: &FitArgs) -> Vec<&'static str> {
    let given = [
        (a.ipf_iters.is_some_and(|k| k > 0), "--ipf-iters"),
        (a.first_iters.is_some(), "--first-iters"),
        (a.first_step.is_some(), "--first-step"),
        (a.unet_width.is_some(), "--unet-width"),
        (a.unet_levels.is_some(), "--unet-levels"),
        (a.unet_mults.is_some(), "--unet-mults"),
        (a.unet_blocks.is_some(), "--unet-blocks"),
        (a.unet_groups.is_some(), "--unet-groups"),
        (a.no_attention, "--no-attention"),
    ];
    given
        .into_iter()
        .filter_map(|(g, f)| g.then_some(f))
        .collect()
}

/// The summary of a binomial fit (summary.json).
#[derive(Debug, Serialize)]
struct BinarySummary<'a> {
    kind: &'static str,
    data: &'a str,
    binarisation: &'a str,
    example_shape: &'a [usize],
    n_train: usize,
    n_held_out: usize,
    config: &'a BinomialFitConfig,
    parameters: usize,
    gradient_steps: usize,
    train_seconds: f64,
    steps_per_second: f64,
    /// The held-out bound per example, in bits (bits/dim × dim).
    held_out_bits_per_example: f64,
    report: &'a BinaryReport,
    resumed_at: Option<usize>,
    wall_seconds: f64,
    out: String,
}

/// Runs `dsb fit` for binary data.
pub(super) fn fit(a: &FitArgs) -> anyhow::Result<()> {
    let start = Instant::now();
    let device = super::device(a.run.device)?;
    let given = gaussian_only_flags(a);
    if !given.is_empty() {
        bail!(
            "{} {} not apply to binomial diffusion (--binarize or the heartbeat data); binary \
             models take --steps, --width, --depth, --iters, --batch, --lr, --grad-clip, --ema \
             and --eval-samples",
            given.join(", "),
            if given.len() == 1 { "does" } else { "do" }
        );
    }
    let (mut fit, out) = match &a.run.resume {
        Some(dir) => {
            if a.data.is_some() {
                bail!(
                    "--data with --resume: a binomial fit resumes on the data it was started \
                     with (saved in {}); drop --data (--data-dir can say where they moved)",
                    dir.display()
                );
            }
            let fit = BinomialFit::resume(dir, a.data_dir.clone(), &device)
                .with_context(|| format!("cannot resume from {}", dir.display()))?;
            (fit, dir.clone())
        }
        None => {
            let name = a
                .data
                .clone()
                .context("--data is required (or --resume DIR)")?;
            let out = a.out.clone().unwrap_or_else(|| default_out(&name));
            super::checks::output_dir("--out", &out)?;
            let heartbeat = is_heartbeat(&name);
            let image = crate::fit::is_image_data(&name);
            let spec = DataSpec {
                name,
                n: a.n_data.unwrap_or(if heartbeat { 10_000 } else { 0 }),
                seed: a.seed,
                held_out: a.held_out,
                data_dir: a.data_dir.clone(),
            };
            let config = BinomialFitConfig {
                steps: a.steps,
                width: a.width.unwrap_or(if image { 512 } else { 128 }),
                depth: a.depth,
                iters: a.iters.unwrap_or(4000),
                batch: a.batch.unwrap_or(if image { 128 } else { 256 }),
                lr: a.lr.unwrap_or(if image { 1e-3 } else { 2e-3 }),
                grad_clip: a.grad_clip,
                ema: a.ema,
                eval_samples: a.eval_samples.unwrap_or(if image { 1000 } else { 2000 }),
                seed: a.seed,
            };
            config.validate()?;
            let pb = spinner("loading the data", a.run.quiet());
            let fit = BinomialFit::new(spec, config, &device)?;
            pb.finish_and_clear();
            (fit, out)
        }
    };
    let resumed_at = a.run.resume.as_ref().map(|_| fit.step());
    let _lock = RunLock::for_output(&out)?;
    // Finished, with its outputs written (a run stopped between the evaluation and the
    // outputs evaluates again, which gives the same numbers).
    if resumed_at.is_some() && fit.report().is_some() && out.join("summary.json").exists() {
        let msg = format!(
            "nothing to do: the binomial fit in {} is finished ({} gradient steps); its outputs \
             are left as they are",
            out.display(),
            fit.step()
        );
        say_nothing_to_do(&msg, fit.step(), a.run.json);
        return Ok(());
    }
    let mut loss_log = match &a.run.loss_log {
        Some(path) => Some(LossLog::open(path, resumed_at.is_some())?),
        None => None,
    };
    let iters = fit.config().iters;
    let pb = bar(iters as u64, "binomial", a.run.quiet());
    pb.set_position(fit.step() as u64);
    let opts = RunOptions {
        dir: Some(out.clone()),
        checkpoint_every: a.run.checkpoint_every,
        stop_after: a.run.stop_after,
    };
    let done = fit.train(&opts, |step, loss, secs| {
        if let Some(log) = loss_log.as_mut() {
            log.row(step, Phase::of(0), step, loss, secs);
        }
        pb.set_position(step as u64 + 1);
        if step % 10 == 0 {
            pb.set_message(format!("loss {loss:.4}"));
        }
    })?;
    pb.finish_and_clear();
    if let Some(log) = loss_log {
        log.finish()?;
    }
    if !done {
        say_stopped(&out, fit.step(), "fit", a.run.json);
        return Ok(());
    }
    let pb = spinner("evaluating the bound and generating", a.run.quiet());
    let (report, samples) = fit.evaluate(Some(&out))?;
    let data = fit.data();
    write_examples(
        &out.join("samples.csv"),
        &out.join("samples.png"),
        &samples,
        data.dim(),
        &data.example_shape,
    )?;
    pb.finish_and_clear();
    let dim = data.dim();
    let summary = BinarySummary {
        kind: "binomial",
        data: &fit.spec().name,
        binarisation: &data.binarisation,
        example_shape: &data.example_shape,
        n_train: data.n_train(),
        n_held_out: data.n_held_out(),
        config: fit.config(),
        parameters: fit.model().params().count(),
        gradient_steps: fit.step(),
        train_seconds: fit.train_seconds(),
        steps_per_second: fit.step() as f64 / fit.train_seconds().max(1e-9),
        held_out_bits_per_example: report.held_out.bits_per_dim * dim as f64,
        report: &report,
        resumed_at,
        wall_seconds: start.elapsed().as_secs_f64(),
        out: out.display().to_string(),
    };
    let json = serde_json::to_string_pretty(&summary)?;
    crate::fsutil::atomic_write(&out.join("summary.json"), json.as_bytes())?;
    if a.run.json {
        println!("{json}");
    } else {
        print_report(&report, dim, &out);
        println!(
            "{} gradient steps in {:.1} s ({:.1} steps/s); wrote model.safetensors, model.json, \
             samples.csv, samples.png and summary.json to {}",
            fit.step(),
            fit.train_seconds(),
            summary.steps_per_second,
            out.display()
        );
    }
    Ok(())
}

/// Prints a report's bound and bit frequencies.
fn print_report(r: &BinaryReport, dim: usize, out: &Path) {
    println!(
        "held-out bound {:.4} ± {:.4} bits/dim ({:.2} bits, {:.2} nats per example; {} examples); \
         training examples {:.4}; untrained model 1 bit/dim",
        r.held_out.bits_per_dim,
        r.held_out.stderr,
        r.held_out.bits_per_dim * dim as f64,
        r.held_out_nats_per_example,
        r.held_out.n,
        r.train.bits_per_dim
    );
    println!(
        "bit frequencies of {} generated examples off by {:.4} on average (held-out against \
         training examples: {:.4}); results in {}",
        r.samples,
        r.frequency_error,
        r.frequency_floor,
        out.display()
    );
    if r.held_out.bits_per_dim > 1.0 - 1e-3 {
        eprintln!(
            "warning: the bound is no better than the untrained model's 1 bit/dim: the model \
             has not learnt the data (train longer: --iters, or raise --lr)"
        );
    }
}

/// Writes generated bits to a CSV file (columns x1.., values 0/1) and a PNG: a grid of up to 64
/// images, or for sequences a raster of up to 64 rows with each bit an 8×8 block (black 0,
/// white 1).
fn write_examples(
    csv: &Path,
    png: &Path,
    bits: &[f32],
    dim: usize,
    shape: &[usize],
) -> anyhow::Result<()> {
    let n = bits.len() / dim;
    write_points_csv(csv, &Points::new(bits.to_vec(), n, dim)?)?;
    write_png(png, bits, dim, shape)
}

/// The PNG of [`write_examples`].
fn write_png(png: &Path, bits: &[f32], dim: usize, shape: &[usize]) -> anyhow::Result<()> {
    let n = (bits.len() / dim).min(64);
    let pixels: Vec<f32> = bits[..n * dim].iter().map(|&b| 2.0 * b - 1.0).collect();
    if shape.len() == 3 {
        image_grid_png(png, &pixels, n, shape)?;
    } else {
        const S: usize = 8;
        let (h, w) = (n * S, dim * S);
        let mut raster = vec![0.0f32; h * w];
        for (y, px) in raster.chunks_mut(w).enumerate() {
            let row = &pixels[(y / S) * dim..(y / S + 1) * dim];
            for (x, p) in px.iter_mut().enumerate() {
                *p = row[x / S];
            }
        }
        image_grid_png(png, &raster, 1, &[1, h, w])?;
    }
    Ok(())
}

/// `dsb generate` on a binomial model.
pub(super) fn generate(a: &GenerateArgs) -> anyhow::Result<()> {
    let device = super::device(a.device)?;
    let (model, saved) = load(&a.model, &device)?;
    if a.steps.is_some() || a.final_noise {
        bail!(
            "--steps and --final-noise are for Gaussian models; a binomial model samples on its \
             own {} steps",
            model.steps()
        );
    }
    super::checks::memory(
        16.0 * a.n as f64 * model.dim() as f64,
        &format!("--n {} examples of {} bits", a.n, model.dim()),
        "--n",
    )?;
    let mut rng = StdRng::seed_from_u64(a.seed);
    let pb = spinner(&format!("generating {} examples", a.n), a.quiet);
    let bits = model.sample(a.n, &mut rng)?;
    pb.finish_and_clear();
    let ext = a
        .out
        .extension()
        .and_then(|e| e.to_str())
        .map(|e| e.to_ascii_lowercase());
    if ext.as_deref() == Some("csv") {
        write_points_csv(&a.out, &Points::new(bits, a.n, model.dim())?)?;
    } else {
        write_png(&a.out, &bits, model.dim(), &saved.example_shape)?;
    }
    eprintln!("wrote {} binary examples to {}", a.n, a.out.display());
    Ok(())
}

/// A binomial model and its settings, with the error naming the directory.
fn load(
    dir: &Path,
    device: &candle_core::Device,
) -> anyhow::Result<(crate::binomial::BinomialModel, SavedBinomial)> {
    let (model, saved) = load_binomial(dir, device)
        .with_context(|| format!("cannot load the model from {}", dir.display()))?;
    if saved.step < saved.config.iters {
        eprintln!(
            "warning: the model in {} is unfinished ({} of {} gradient steps); continue it with \
             `dsb fit --resume {}`",
            dir.display(),
            saved.step,
            saved.config.iters,
            dir.display()
        );
    }
    Ok((model, saved))
}

/// `dsb eval` on a binomial model: the bound on `--n` held-out examples and the bit
/// frequencies of `--n` generated ones, into MODEL/eval.json (or `--out`).
pub(super) fn eval(a: &EvalArgs) -> anyhow::Result<()> {
    if a.steps.is_some() || a.classifier.is_some() || a.fine_steps.is_some() || a.no_bound {
        bail!(
            "--steps, --classifier, --fine-steps and --no-bound are for Gaussian models; a \
             binomial model is evaluated by its bound and bit frequencies on its own steps"
        );
    }
    let device = super::device(a.device)?;
    let (model, saved) = load(&a.model, &device)?;
    let spec = DataSpec {
        data_dir: a.data_dir.clone().or(saved.data.data_dir.clone()),
        ..saved.data.clone()
    };
    let data: BinaryData = load_binary(&spec)
        .with_context(|| format!("cannot load the model's data '{}'", spec.name))?;
    if data.example_shape != saved.example_shape {
        bail!(
            "the data '{}' have examples of shape {:?}, the model {:?}",
            spec.name,
            data.example_shape,
            saved.example_shape
        );
    }
    let mut rng = StdRng::seed_from_u64(a.seed);
    let pb = spinner("evaluating the bound and generating", a.quiet || a.json);
    let (report, _) = evaluate_model(&model, &data, a.n, &mut rng)?;
    pb.finish_and_clear();
    let out = a.out.clone().unwrap_or_else(|| a.model.join("eval.json"));
    let dim = data.dim();
    let json = serde_json::to_string_pretty(&serde_json::json!({
        "kind": "binomial",
        "model": a.model.display().to_string(),
        "data": spec.name,
        "binarisation": data.binarisation,
        "held_out_bits_per_example": report.held_out.bits_per_dim * dim as f64,
        "report": report,
        "seed": a.seed,
    }))?;
    crate::fsutil::atomic_write(&out, json.as_bytes())?;
    if a.json {
        println!("{json}");
    } else {
        print_report(&report, dim, &out);
    }
    Ok(())
}
