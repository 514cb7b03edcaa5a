//! `dsb eval`: evaluate a model fitted by `dsb fit`; `dsb train-classifier`: train the digit
//! classifier whose features the Fréchet distance uses.

use super::progress::bar;
use crate::data::ImageDataset;
use crate::eval::{
    CLASSIFIER_SETTINGS, Classifier, ClassifierConfig, ImageEvalOptions, evaluate_images,
    train_classifier,
};
use crate::fit::{
    DataSpec, ElboOptions, GenerateOptions, elbo, elbo_subdivided, load_model, sample_metrics,
};
use anyhow::{Context, bail};
use candle_core::Device;
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Arguments of `dsb eval`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Images: generates --n images and reports the classifier-Fréchet distance \
    (FD) to as many held-out images, beside two references at the same sizes: real training \
    images (the floor) and N(0, I) noise clamped to [−1, 1] (an untrained model); plus the \
    bound on the held-out log-likelihood in bits/dim. The classifier is read from --classifier, \
    else from MODEL/classifier/, else trained there by the fixed recipe (`dsb train-classifier \
    --help`) on the model's training images, which needs their label file.\n\nPoints: MMD² \
    and energy distance of --n generated points to the held-out points, and the bound in \
    nats/dim.\n\nWrites MODEL/eval.json (or --out).\n\nExamples:\n  dsb eval --model \
    runs/mnist\n  dsb eval --model runs/mnist --n 1000 --steps 20 --json\n  dsb eval --model \
    runs/swiss-roll"
)]
pub struct EvalArgs {
    /// The output directory of `dsb fit`.
    #[arg(long)]
    pub model: PathBuf,
    /// Examples generated (and at most as many held-out and training examples as references).
    #[arg(long, short, default_value_t = 500)]
    pub n: usize,
    /// Sampling steps (default: the model's own; fewer only for IPF iteration 0 models).
    #[arg(long)]
    pub steps: Option<usize>,
    /// A classifier directory written by `dsb train-classifier` (images only).
    #[arg(long)]
    pub classifier: Option<PathBuf>,
    /// Skip the likelihood bound (it costs one forward path and N network calls per example).
    #[arg(long)]
    pub no_bound: bool,
    /// Points: also evaluate the bound with every step of the model's grid cut into equal parts,
    /// up to this many steps in all (0: not), so the report shows how much of the bound is
    /// discretisation (`bound_fine`). Only for models of IPF iteration 0. Default 1000 for
    /// points; images are not supported (the UNet on 1000 steps takes hours on the CPU).
    #[arg(long)]
    pub fine_steps: Option<usize>,
    /// Directory searched first for the image data set (default: the one saved with the model).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Random seed of the generated examples, the reference subsets and the bound.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Where to write the results as JSON (default: MODEL/eval.json).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Where the networks run: `cpu`, or `cuda` (needs a build with `--features cuda`).
    #[arg(long, default_value = "cpu")]
    pub device: super::DeviceArg,
    /// Print the results as JSON.
    #[arg(long)]
    pub json: bool,
    /// No progress bars.
    #[arg(long, short)]
    pub quiet: bool,
}

/// Arguments of `dsb train-classifier`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "The recipe: three 3×3 convolutions with ReLU (1 → 16 channels, 16 → 32 with \
    stride 2, 32 → 64 with stride 2), a 32-unit ReLU layer (the features of the Fréchet \
    distance) and 10 outputs; Adam on the cross-entropy, batches of 64, learning rate 1e-3, \
    4 epochs, seed 0. Writes classifier.safetensors and classifier.json (recipe and held-out \
    accuracy) into --out.\n\nExamples:\n  dsb train-classifier --data mnist --data-dir \
    tests/fixtures/mnist-5k --out classifiers/mnist\n  dsb eval --model runs/mnist \
    --classifier classifiers/mnist"
)]
pub struct TrainClassifierArgs {
    /// Labelled image data: mnist, fashion-mnist (located with --data-dir) or a directory of
    /// IDX files with their label files.
    #[arg(long)]
    pub data: String,
    /// Directory searched first for the data set.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Fraction of the training images held out for the accuracy (unused when the data set has
    /// t10k test files).
    #[arg(long, allow_negative_numbers = true, default_value_t = 0.1)]
    pub held_out: f64,
    /// Passes over the training images.
    #[arg(long, default_value_t = ClassifierConfig::default().epochs)]
    pub epochs: usize,
    /// Seed of the weights, the split and the image order.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output directory.
    #[arg(long)]
    pub out: PathBuf,
    /// Where the network runs: `cpu`, or `cuda`.
    #[arg(long, default_value = "cpu")]
    pub device: super::DeviceArg,
    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,
}

/// Trains the classifier with a progress bar and saves it into `dir`.
fn train_and_save(
    config: ClassifierConfig,
    train: &ImageDataset,
    held: &ImageDataset,
    data: &str,
    dir: &Path,
    device: &Device,
    quiet: bool,
) -> anyhow::Result<Classifier> {
    let steps = train.n.div_ceil(config.batch) * config.epochs;
    let pb = bar(steps as u64, "classifier", quiet);
    let (net, report) = train_classifier(config, train, held, data, device, |step, _, loss| {
        pb.set_position(step as u64);
        if step % 10 == 0 {
            pb.set_message(format!("loss {loss:.3}"));
        }
    })?;
    pb.finish_and_clear();
    net.save(dir, &report)?;
    if !quiet {
        eprintln!(
            "classifier: held-out accuracy {:.4} on {} images (trained on {}); saved in {}",
            report.held_out_accuracy,
            report.held_out_images,
            report.train_images,
            dir.display()
        );
    }
    Ok(net)
}

/// Runs `dsb train-classifier`.
pub fn run_train_classifier(a: TrainClassifierArgs) -> anyhow::Result<()> {
    if !crate::fit::is_image_data(&a.data) {
        bail!(
            "--data {}: holds points, not images; the classifier needs labelled images \
             (mnist, fashion-mnist, or a directory of IDX image and label files)",
            a.data
        );
    }
    let device = super::device(a.device)?;
    let spec = DataSpec {
        name: a.data.clone(),
        n: 0,
        seed: a.seed,
        held_out: a.held_out,
        data_dir: a.data_dir.clone(),
    };
    let (train, held) = spec.load_images()?;
    let config = ClassifierConfig {
        epochs: a.epochs,
        seed: a.seed,
        size: train.rows,
        ..ClassifierConfig::default()
    };
    if train.rows != train.cols {
        bail!(
            "the classifier takes square images; {} holds {}×{} images",
            a.data,
            train.rows,
            train.cols
        );
    }
    train_and_save(config, &train, &held, &a.data, &a.out, &device, a.quiet)?;
    Ok(())
}

/// Runs `dsb eval`.
pub fn run(a: EvalArgs) -> anyhow::Result<()> {
    let start = Instant::now();
    if a.n < 2 {
        bail!("--n must be at least 2");
    }
    if let Some(p) = &a.out {
        super::checks::output_file("--out", p, &["json"], ".json")?;
    }
    if crate::binomial::is_binomial_model(&a.model) {
        return super::binary::eval(&a);
    }
    if a.steps == Some(0) {
        bail!("--steps must be at least 1");
    }
    let device = super::device(a.device)?;
    let (model, saved) = load_model(&a.model, &device)
        .with_context(|| format!("cannot load the model from {}", a.model.display()))?;
    if let (Some(dir), false) = (&a.classifier, saved.model.is_image()) {
        bail!(
            "--classifier {}: {} is a model of points, which are scored by MMD² and energy \
             distance; the classifier is for image models only, drop --classifier",
            dir.display(),
            a.model.display()
        );
    }
    if a.fine_steps.is_some_and(|m| m > 0) && saved.model.is_image() {
        bail!(
            "--fine-steps: the bound on a finer grid is for models of points only (the UNet on \
             1000 steps takes hours on the CPU); drop --fine-steps"
        );
    }
    let mut data = saved.data.clone();
    if a.data_dir.is_some() {
        data.data_dir = a.data_dir.clone();
    }
    let quiet = a.quiet || a.json;
    let result = if saved.model.is_image() {
        let (train, held) = data.load_images().with_context(|| {
            format!(
                "cannot load the model's data '{}' (give --data-dir if it moved)",
                data.name
            )
        })?;
        let classifier = match &a.classifier {
            Some(dir) => {
                Classifier::load(dir, &device)
                    .with_context(|| format!("cannot load the classifier from {}", dir.display()))?
                    .0
            }
            None => {
                let dir = a.model.join("classifier");
                if dir.join(CLASSIFIER_SETTINGS).exists() {
                    Classifier::load(&dir, &device)
                        .with_context(|| {
                            format!("cannot load the classifier from {}", dir.display())
                        })?
                        .0
                } else {
                    if !quiet {
                        eprintln!(
                            "no classifier given: training one by the recipe on the model's {} \
                             training images",
                            train.n
                        );
                    }
                    let config = ClassifierConfig {
                        size: train.rows,
                        ..ClassifierConfig::default()
                    };
                    train_and_save(config, &train, &held, &data.name, &dir, &device, quiet)?
                }
            }
        };
        let accuracy = classifier.accuracy(&held, &device)?;
        let pb = super::progress::spinner("generating and scoring images", quiet);
        let eval = evaluate_images(
            &model,
            &train,
            &held,
            &classifier,
            &ImageEvalOptions {
                n: a.n,
                steps: a.steps,
                seed: a.seed,
                bound: !a.no_bound,
            },
        )?;
        pb.finish_and_clear();
        json!({
            "model": a.model,
            "kind": "images",
            "classifier_held_out_accuracy": accuracy,
            "eval": eval,
            "seconds": start.elapsed().as_secs_f64(),
        })
    } else {
        let fit_data = data
            .load()
            .with_context(|| format!("cannot load the model's data '{}'", data.name))?;
        let held = &fit_data.held_out;
        let n_held = held.len().min(a.n);
        let held_slice = &held.data[..n_held * held.dim];
        let mut rng = StdRng::seed_from_u64(a.seed);
        let opts = GenerateOptions {
            steps: a.steps,
            final_noise: false,
        };
        let generated = model.generate(a.n, &opts, &mut rng)?;
        let (mmd2, energy) = sample_metrics(&generated, held_slice, held.dim);
        let bound = if a.no_bound {
            None
        } else {
            Some(elbo(&model, held_slice, &ElboOptions::default(), &mut rng)?)
        };
        let n_steps = model.kernels().steps();
        let parts = a.fine_steps.unwrap_or(1000) / n_steps;
        let refined = model.backward_iteration() > 0 || model.has_forward();
        let bound_fine = if a.no_bound || parts < 2 || (refined && a.fine_steps.is_none()) {
            None
        } else {
            let pb = super::progress::spinner(
                &format!("bound on the {}-step grid", parts * n_steps),
                quiet,
            );
            let b = elbo_subdivided(&model, parts, held_slice, &ElboOptions::default(), &mut rng)?;
            pb.finish_and_clear();
            Some(json!({"steps": parts * n_steps, "bound": b}))
        };
        json!({
            "model": a.model,
            "kind": "points",
            "generated": a.n,
            "held_out": n_held,
            "steps": a.steps.unwrap_or(saved.model.steps),
            "mmd2": mmd2,
            "energy": energy,
            "bound": bound,
            "bound_fine": bound_fine,
            "seconds": start.elapsed().as_secs_f64(),
        })
    };
    let mut result = result;
    let bounds = model.kernels().entropy_bounds();
    result["entropy_bounds"] = json!(bounds);
    let out_json = a.out.clone().unwrap_or_else(|| a.model.join("eval.json"));
    let plot_path = out_json.with_file_name("entropy.png");
    entropy_plot(&plot_path, &bounds)?;
    result["entropy_plot"] = json!(plot_path);
    let out = out_json;
    crate::io::atomic_write(&out, serde_json::to_string_pretty(&result)?.as_bytes())?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&result)?);
    } else {
        print_result(&result);
        println!("written to {}", out.display());
    }
    Ok(())
}

/// The per-step entropy bounds as a PNG (nats per dimension against the step).
fn entropy_plot(
    path: &std::path::Path,
    bounds: &[crate::process::StepEntropy],
) -> anyhow::Result<()> {
    use crate::io::{LinePlot, lines_png};
    let curve = |f: &dyn Fn(&crate::process::StepEntropy) -> Option<f64>| -> Vec<(f64, f64)> {
        bounds
            .iter()
            .filter_map(|b| f(b).map(|v| ((b.step + 1) as f64, v)))
            .collect()
    };
    let plot = LinePlot {
        title: "entropy of each reverse step H(X_k | X_k+1), nats/dim".into(),
        x_desc: "step k + 1 (1: next to the data)".into(),
        y_desc: "nats per dimension".into(),
        curves: vec![
            (
                "upper bound H(X_k+1 | X_k) (= the model's kernel)".into(),
                curve(&|b| Some(b.upper)),
                (214, 39, 40),
            ),
            ("lower bound".into(), curve(&|b| b.lower), (31, 119, 180)),
        ],
    };
    lines_png(path, &plot)?;
    Ok(())
}

/// The console form of the results.
fn print_result(r: &serde_json::Value) {
    let f = |v: &serde_json::Value| v.as_f64().map_or("–".into(), |x| format!("{x:.4}"));
    if r["kind"] == "images" {
        let e = &r["eval"];
        println!(
            "classifier-Fréchet distance ({} generated vs {} held-out images, {} steps):",
            e["generated"], e["held_out"], e["steps"]
        );
        println!("  generated        {}", f(&e["fd_generated"]));
        println!("  real (floor)     {}", f(&e["fd_real"]));
        println!("  noise (ceiling)  {}", f(&e["fd_noise"]));
        let hist: Vec<String> = e["class_histogram"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|v| format!("{:.2}", v.as_f64().unwrap_or(0.0)))
                    .collect()
            })
            .unwrap_or_default();
        println!("  generated classes 0–9: {}", hist.join(" "));
        println!(
            "classifier held-out accuracy {}",
            f(&r["classifier_held_out_accuracy"])
        );
        if !e["bound"].is_null() {
            println!(
                "held-out bound: {} bits/dim ({} nats/dim)",
                f(&e["bound"]["bits_per_dim"]),
                f(&e["bound"]["nats_per_dim"])
            );
        }
    } else {
        println!(
            "{} generated vs {} held-out points ({} steps): MMD² {}, energy distance {}",
            r["generated"],
            r["held_out"],
            r["steps"],
            f(&r["mmd2"]),
            f(&r["energy"])
        );
        if !r["bound"].is_null() {
            println!(
                "held-out bound: {} nats/dim",
                f(&r["bound"]["nats_per_dim"])
            );
        }
        if !r["bound_fine"].is_null() {
            println!(
                "  on the {}-step grid: {} nats/dim (the difference is discretisation)",
                r["bound_fine"]["steps"],
                f(&r["bound_fine"]["bound"]["nats_per_dim"])
            );
        }
    }
    if let Some(p) = r["entropy_plot"].as_str() {
        println!("entropy bounds of the reverse steps: {p}");
    }
    println!("took {:.1} s", r["seconds"].as_f64().unwrap_or(0.0));
}
