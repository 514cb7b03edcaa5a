//! `dsb condition`: samples of a fitted model conditioned on an observation (inpainting,
//! denoising, observed coordinates), by sequential Monte Carlo over its backward process.

use super::progress::bar;
use crate::condition::{ConditionOptions, Conditioned, Observation, condition_with_progress};
use crate::data::Points;
use crate::fit::load_model;
use crate::io::{
    ScatterPlot, atomic_write, image_grid_png, scatter_png, upscale, write_points_csv,
};
use anyhow::{Context, bail};
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};
use serde_json::json;
use std::path::PathBuf;
use std::time::Instant;

/// Arguments of `dsb condition`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Samples p(x) r(x) under the model, where r is the observation: each backward \
    kernel is multiplied by r evaluated along the path (Sohl-Dickstein et al. 2015), and the \
    perturbed process is corrected by importance weights and resampling, so the weighted \
    samples are exact for the model's posterior as --particles grows (docs/design.md \
    § Conditioning). A final ESS below 0.1 is flagged.\n\n\
    Writes into the output directory: samples.csv (the particles, with a log_weight column), \
    summary.json, and a picture: for images grid.png (3×3: the observation with unknown \
    pixels mid-grey, the truth, the weighted mean; then six resampled samples), for points \
    samples.png (resampled samples).\n\nExamples:\n  \
    dsb condition --model runs/mnist --truth 3 --mask left\n  \
    dsb condition --model runs/mnist --truth 3 --noisy --noise-sd 0.4\n  \
    dsb condition --model runs/mnist --image noisy.csv --noisy --noise-sd 0.4\n  \
    dsb condition --model runs/two-moons --observe x1=0.5 --noise-sd 0.05"
)]
pub struct ConditionArgs {
    /// The model directory written by `dsb fit`.
    #[arg(long)]
    pub model: PathBuf,
    /// Points: observed coordinates as NAME=VALUE with names x1..xd (x1=0.5),
    /// comma-separated; each is seen with noise of sd --noise-sd.
    #[arg(long, value_delimiter = ',')]
    pub observe: Vec<String>,
    /// Images: the held-out image of the model's data set that is observed (its index).
    #[arg(long, conflicts_with = "image")]
    pub truth: Option<usize>,
    /// Images: your own image instead, from a CSV file: its first row holds the pixels in
    /// [−1, 1], row-major (as `dsb generate --out x.csv` writes). With --mask its unknown
    /// pixels are ignored (and scored against it); with --noisy it is taken as already noisy,
    /// with noise of sd --noise-sd, and nothing is added.
    #[arg(long)]
    pub image: Option<PathBuf>,
    /// Images, inpainting: the known pixels of the truth: left, right, top or bottom (that
    /// half), centre (all but the central square of half the size), or random:FRAC (each pixel
    /// known with probability FRAC).
    #[arg(long)]
    pub mask: Option<String>,
    /// Images, denoising: every pixel of the truth is observed with Gaussian noise of sd
    /// --noise-sd added (seeded by --seed).
    #[arg(long)]
    pub noisy: bool,
    /// Standard deviation of the observation noise (data units; pixels are in [−1, 1]).
    #[arg(long, allow_negative_numbers = true, default_value_t = 0.05)]
    pub noise_sd: f64,
    /// Particles (default: 2000 for points, 64 for images).
    #[arg(long)]
    pub particles: Option<usize>,
    /// Resample when the effective sample size falls below this fraction of the particles.
    #[arg(long, allow_negative_numbers = true, default_value_t = 0.5)]
    pub resample_below: f64,
    /// Directory searched first for the image data set (default: the one saved with the model).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Output directory (default: MODEL/condition).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Random seed (the particles, and the noise of --noisy).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Where the network runs: `cpu`, or `cuda` (needs a build with `--features cuda`).
    #[arg(long, default_value = "cpu")]
    pub device: super::DeviceArg,
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,
}

/// The mask of known pixels of an `h × w` image (one channel or more: the same per channel).
fn mask(
    kind: &str,
    c: usize,
    h: usize,
    w: usize,
    rng: &mut impl rand::Rng,
) -> anyhow::Result<Vec<bool>> {
    if let Some(frac) = kind.strip_prefix("random:") {
        let p: f64 = frac
            .parse()
            .ok()
            .filter(|p| (0.0..=1.0).contains(p))
            .with_context(|| format!("--mask {kind}: FRAC must be a number in [0, 1]"))?;
        return Ok((0..c * h * w).map(|_| rng.random::<f64>() < p).collect());
    }
    let (h2, w2) = (h / 2, w / 2);
    let known: fn(usize, usize, usize, usize) -> bool = match kind {
        "left" => |_, x, _, w2| x < w2,
        "right" => |_, x, _, w2| x >= w2,
        "top" => |y, _, h2, _| y < h2,
        "bottom" => |y, _, h2, _| y >= h2,
        // All but the central square of half the size.
        "centre" | "center" => |y, x, h2, w2| {
            let (h4, w4) = (h2 / 2, w2 / 2);
            !(y >= h4 && y < h4 + h2 && x >= w4 && x < w4 + w2)
        },
        _ => bail!("--mask {kind}: use left, right, top, bottom, centre or random:FRAC"),
    };
    let mut m = Vec::with_capacity(c * h * w);
    for _ in 0..c {
        for y in 0..h {
            for x in 0..w {
                m.push(known(y, x, h2, w2));
            }
        }
    }
    Ok(m)
}

/// Runs `dsb condition`.
pub fn run(a: ConditionArgs) -> anyhow::Result<()> {
    let start = Instant::now();
    let device = super::device(a.device)?;
    let (model, saved) = load_model(&a.model, &device)
        .with_context(|| format!("cannot load the model from {}", a.model.display()))?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(a.seed);
    let images = saved.model.is_image();
    let d = model.dim();
    // The observation (and, for images, the truth), checked before any long work.
    let (obs, truth, known): (Observation, Option<Vec<f32>>, Vec<bool>) = if images {
        if !a.observe.is_empty() {
            bail!(
                "--observe names coordinates of points; for an image model use --truth with --mask or --noisy"
            );
        }
        if a.mask.is_some() == a.noisy {
            bail!(
                "give one of --mask KIND (inpainting) or --noisy (denoising), with --truth N or \
                 --image FILE.csv"
            );
        }
        let truth = match &a.image {
            Some(path) => own_image(path, d)?,
            None => held_out_image(&a, &saved.data, d)?,
        };
        let shape = &saved.model.example_shape;
        let (c, h, w) = (shape[0], shape[1], shape[2]);
        let known = match &a.mask {
            Some(kind) => mask(kind, c, h, w, &mut rng)?,
            None => vec![true; d],
        };
        let noise = Normal::new(0.0, a.noise_sd.max(0.0)).context("--noise-sd must be finite")?;
        let observed: Vec<usize> = (0..d).filter(|&j| known[j]).collect();
        // An own image given as noisy is the observation itself: nothing is added, and there
        // is no truth to score against.
        let add_noise = a.noisy && a.image.is_none();
        let values: Vec<f64> = observed
            .iter()
            .map(|&j| {
                truth[j] as f64
                    + if add_noise {
                        noise.sample(&mut rng)
                    } else {
                        0.0
                    }
            })
            .collect();
        let scored = !(a.noisy && a.image.is_some());
        (
            Observation::Coordinates {
                observed,
                values,
                noise_sd: a.noise_sd,
            },
            scored.then_some(truth),
            known,
        )
    } else {
        if a.mask.is_some() || a.noisy || a.truth.is_some() || a.image.is_some() {
            bail!(
                "--mask, --noisy, --truth and --image are for image models; for points give \
                 --observe NAME=VALUE"
            );
        }
        if a.observe.is_empty() {
            bail!("give the observed coordinates: --observe x1=0.5 (names x1..x{d})");
        }
        let names: Vec<String> = saved
            .model
            .normalisation
            .mean
            .iter()
            .enumerate()
            .map(|(i, _)| format!("x{}", i + 1))
            .collect();
        let mut observed = Vec::new();
        let mut values = Vec::new();
        for item in &a.observe {
            let (name, value) = item
                .split_once('=')
                .with_context(|| format!("--observe {item}: write NAME=VALUE, e.g. x1=0.5"))?;
            let j = names
                .iter()
                .position(|n| n == name.trim())
                .with_context(|| {
                    format!(
                        "--observe {item}: no coordinate '{name}' (the model's are {})",
                        names.join(", ")
                    )
                })?;
            let v: f64 = value
                .trim()
                .parse()
                .ok()
                .filter(|v: &f64| v.is_finite())
                .with_context(|| format!("--observe {item}: '{value}' is not a finite number"))?;
            observed.push(j);
            values.push(v);
        }
        let mut known = vec![false; d];
        observed.iter().for_each(|&j| known[j] = true);
        (
            Observation::Coordinates {
                observed,
                values,
                noise_sd: a.noise_sd,
            },
            None,
            known,
        )
    };
    obs.validate(d)?;
    let out = a.out.clone().unwrap_or_else(|| a.model.join("condition"));
    std::fs::create_dir_all(&out)
        .with_context(|| format!("--out {}: cannot create the directory", out.display()))?;
    let opts = ConditionOptions {
        particles: a.particles.unwrap_or(if images { 64 } else { 2000 }),
        resample_below: a.resample_below,
    };
    let steps = model.kernels().steps();
    let quiet = a.quiet || a.json;
    let pb = bar(steps as u64, "condition", quiet);
    let result =
        condition_with_progress(&model, &obs, &opts, &mut rng, |k| pb.set_position(k as u64))?;
    pb.finish_and_clear();
    let mean = result.weighted_mean();
    write_outputs(
        &a,
        &out,
        &result,
        &mean,
        truth.as_deref(),
        &obs,
        images.then_some(&saved.model.example_shape[..]),
        &mut rng,
    )?;
    let summary = summary(
        &a,
        &out,
        &result,
        &mean,
        truth.as_deref(),
        &known,
        start.elapsed().as_secs_f64(),
    );
    atomic_write(
        &out.join("summary.json"),
        serde_json::to_string_pretty(&summary)?.as_bytes(),
    )?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        println!(
            "{} particles over {steps} steps: final ESS {:.3} (lowest {:.3}), {} resampling steps, log evidence {:.4}",
            opts.particles, result.ess, result.min_ess, result.resamples, result.log_evidence
        );
        if let Some(e) = summary.get("unknown_rmse") {
            println!(
                "weighted mean vs truth, RMSE: unknown pixels {e}, known pixels {}",
                summary["known_rmse"]
            );
        }
        println!("outputs in {}", out.display());
    }
    if result.ess < 0.1 {
        eprintln!(
            "warning: final ESS {:.3} is below 0.1: few particles carry the weight, so the \
             samples and the evidence are unreliable; raise --particles or --noise-sd",
            result.ess
        );
    }
    Ok(())
}

/// The held-out image `--truth` (default 0) of the model's data set.
fn held_out_image(
    a: &ConditionArgs,
    spec: &crate::fit::DataSpec,
    d: usize,
) -> anyhow::Result<Vec<f32>> {
    let mut data = spec.clone();
    if a.data_dir.is_some() {
        data.data_dir = a.data_dir.clone();
    }
    let (_, held) = data.load_images().with_context(|| {
        format!(
            "cannot load the model's data '{}' (give --data-dir if it moved)",
            data.name
        )
    })?;
    let i = a.truth.unwrap_or(0);
    if i >= held.n {
        bail!(
            "--truth {i}: the held-out set has {} images (0 to {})",
            held.n,
            held.n.saturating_sub(1)
        );
    }
    Ok(held.images[i * d..(i + 1) * d].to_vec())
}

/// The first row of the CSV file `path`, which must hold `d` finite pixels.
fn own_image(path: &std::path::Path, d: usize) -> anyhow::Result<Vec<f32>> {
    let pts = crate::data::read_points_csv(path)
        .with_context(|| format!("--image {}: cannot read it", path.display()))?;
    if pts.dim != d {
        bail!(
            "--image {}: a row has {} values, the model's images have {d} pixels",
            path.display(),
            pts.dim
        );
    }
    let row = pts.data[..d].to_vec();
    if row.iter().any(|v| !v.is_finite() || v.abs() > 10.0) {
        bail!(
            "--image {}: the pixels must be finite and on the scale of [−1, 1] (as dsb generate \
             writes them; |v| ≤ 10 is accepted for noisy images)",
            path.display()
        );
    }
    Ok(row)
}

/// RMSE over the coordinates where `mask == want` of `x` against `truth`.
fn rmse(x: &[f64], truth: &[f32], mask: &[bool], want: bool) -> Option<f64> {
    let (s, n) = x
        .iter()
        .zip(truth)
        .zip(mask)
        .filter(|(_, m)| **m == want)
        .fold((0.0, 0usize), |(s, n), ((a, b), _)| {
            (s + (a - *b as f64).powi(2), n + 1)
        });
    (n > 0).then(|| (s / n as f64).sqrt())
}

fn summary(
    a: &ConditionArgs,
    out: &std::path::Path,
    r: &Conditioned,
    mean: &[f64],
    truth: Option<&[f32]>,
    known: &[bool],
    seconds: f64,
) -> serde_json::Value {
    let mut s = json!({
        "model": a.model,
        "out": out,
        "particles": r.log_weights.len(),
        "noise_sd": a.noise_sd,
        "observed": known.iter().filter(|k| **k).count(),
        "ess": r.ess,
        "min_ess": r.min_ess,
        "resamples": r.resamples,
        "log_evidence": r.log_evidence,
        "weighted_mean": mean,
        "low_ess": r.ess < 0.1,
        "seconds": seconds,
    });
    if let Some(t) = truth {
        s["unknown_rmse"] = json!(rmse(mean, t, known, false));
        s["known_rmse"] = json!(rmse(mean, t, known, true));
        s["truth_index"] = json!(a.truth.unwrap_or(0));
    }
    if let Some(path) = &a.image {
        s["image"] = json!(path);
        s.as_object_mut().map(|o| o.remove("truth_index"));
    }
    s
}

#[allow(clippy::too_many_arguments)]
fn write_outputs(
    a: &ConditionArgs,
    out: &std::path::Path,
    r: &Conditioned,
    mean: &[f64],
    truth: Option<&[f32]>,
    obs: &Observation,
    image_shape: Option<&[usize]>,
    rng: &mut impl rand::Rng,
) -> anyhow::Result<()> {
    let d = r.samples.dim;
    // samples.csv: the particles and their log weights.
    let mut names = r.samples.names.clone();
    names.push("log_weight".into());
    let mut data = Vec::with_capacity(r.samples.data.len() + r.log_weights.len());
    for (row, lw) in r.samples.data.chunks(d).zip(&r.log_weights) {
        data.extend_from_slice(row);
        data.push(*lw as f32);
    }
    let table = Points {
        data,
        n: r.samples.n,
        dim: d + 1,
        names,
    };
    write_points_csv(&out.join("samples.csv"), &table)?;
    match image_shape {
        Some(shape) => {
            let Observation::Coordinates {
                observed, values, ..
            } = obs
            else {
                unreachable!("images are observed by coordinates")
            };
            // Unknown pixels mid-grey (0 in [−1, 1]).
            let mut seen = vec![0.0f32; d];
            for (&j, &v) in observed.iter().zip(values) {
                seen[j] = v as f32;
            }
            // Without a truth (an own noisy image) its place shows the observation again.
            let shown = truth.map_or_else(|| seen.clone(), <[f32]>::to_vec);
            let mut grid = seen;
            grid.extend_from_slice(&shown);
            grid.extend(mean.iter().map(|&v| v as f32));
            grid.extend(r.resampled(6, rng)?.data);
            let (big, big_shape) = upscale(&grid, 9, shape, 4);
            image_grid_png(&out.join("grid.png"), &big, 9, &big_shape)?;
        }
        None => {
            if d >= 2 {
                let pts = r.resampled(r.samples.n.min(2000), rng)?;
                let xy = pts
                    .data
                    .chunks(d)
                    .map(|p| (p[0] as f64, p[1] as f64))
                    .collect();
                let plot = ScatterPlot {
                    title: format!(
                        "{} conditioned (resampled; first two coordinates)",
                        a.model.display()
                    ),
                    layers: vec![("samples".into(), xy, (31, 119, 180))],
                    ..Default::default()
                };
                scatter_png(&out.join("samples.png"), &plot)?;
            }
        }
    }
    Ok(())
}
