//! Settings of a fit: the process, the network, the optimisation and the data.

use super::net::NetworkSpec;
use crate::data::{Dataset, ImageDataset, LoadOptions, Points, load};
use crate::error::{DsbError, Result};
use crate::process::{ReferenceKind, Schedule};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Settings of a fit (saved in `model.json`, so that `--resume` continues with them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FitConfig {
    /// Time steps N.
    pub steps: usize,
    /// Horizon T of the reference, in its relaxation times (standardised data).
    pub horizon: f64,
    /// Spread of the steps over [0, T].
    pub schedule: Schedule,
    /// t_1 of the geometric schedule or γ_min of the symmetric one (default:
    /// [`FitConfig::first_step`]).
    pub first_step: Option<f64>,
    /// The reference process.
    pub reference: ReferenceKind,
    /// The network of both processes.
    pub network: NetworkSpec,
    /// IPF refinements after iteration 0 (0: a DDPM-style model only).
    pub ipf_iters: usize,
    /// Gradient steps per half-step.
    pub iters: usize,
    /// Gradient steps of IPF iteration 0 (default: `iters`). A converged iteration 0 is the
    /// DDPM-style model that refinement starts from; DSB trains it longer than the
    /// refinements.
    #[serde(default)]
    pub first_iters: Option<usize>,
    /// Examples per gradient step.
    pub batch: usize,
    /// Peak learning rate of Adam (no weight decay), decaying to a tenth along a cosine within
    /// each half-step.
    pub lr: f64,
    /// Global gradient-norm clip.
    pub grad_clip: f64,
    /// EMA decay of the weights (0: none); the averages are what is sampled and saved.
    pub ema: f64,
    /// Paths held in the trajectory cache of the IPF half-steps.
    pub cache: usize,
    /// Refill the cache every this many gradient steps.
    pub refresh: usize,
    /// Points generated (and held-out points used, at most) for the metrics of each IPF
    /// iteration.
    pub eval_samples: usize,
    /// Seed of the initial weights and of every random draw of training.
    pub seed: u64,
}

impl Default for FitConfig {
    fn default() -> Self {
        Self {
            steps: 50,
            horizon: 5.0,
            schedule: Schedule::Geometric,
            first_step: None,
            reference: ReferenceKind::Ou,
            network: NetworkSpec::Mlp {
                width: 128,
                depth: 3,
            },
            ipf_iters: 0,
            iters: 4000,
            first_iters: None,
            batch: 256,
            lr: 2e-3,
            grad_clip: 10.0,
            ema: 0.995,
            cache: 4096,
            refresh: 200,
            eval_samples: 2000,
            seed: 0,
        }
    }
}

impl FitConfig {
    /// t_1 (geometric) or γ_min (symmetric): the value given, or a hundredth of the mean step
    /// T/N by default.
    pub fn first_step(&self) -> f64 {
        self.first_step
            .unwrap_or(0.01 * self.horizon / self.steps.max(1) as f64)
    }

    /// Gradient steps of phase `phase` (0: the backward half-step of iteration 0).
    pub fn iters_of(&self, phase: usize) -> usize {
        match (phase, self.first_iters) {
            (0, Some(n)) => n,
            _ => self.iters,
        }
    }

    /// Checks every setting, so that a bad value fails before any work.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(DsbError::InvalidInput(m));
        let positive = |v: f64| v > 0.0 && v.is_finite();
        if self.steps == 0 {
            return bad("--steps must be at least 1".into());
        }
        if !positive(self.horizon) {
            return bad(format!(
                "--horizon must be positive and finite, got {}",
                self.horizon
            ));
        }
        if let Some(v) = self.first_step.filter(|v| !positive(*v)) {
            return bad(format!("the first step must be positive, got {v}"));
        }
        self.network.validate()?;
        if self.iters == 0 || self.batch == 0 || self.first_iters == Some(0) {
            return bad("--iters, --first-iters and --batch must be at least 1".into());
        }
        if !positive(self.lr) || !positive(self.grad_clip) {
            return bad("--lr and the gradient clip must be positive and finite".into());
        }
        if !(0.0..1.0).contains(&self.ema) {
            return bad(format!("--ema must be in [0, 1), got {}", self.ema));
        }
        if self.cache == 0 || self.refresh == 0 {
            return bad("--cache and --refresh must be at least 1".into());
        }
        if self.eval_samples < 2 {
            return bad(format!(
                "--eval-samples must be at least 2, got {}",
                self.eval_samples
            ));
        }
        Ok(())
    }
}

/// Where the data come from (saved, so that `--resume` reloads the same split).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataSpec {
    /// A name for [`crate::data::load`]: a toy set, a `.csv` file, `mnist`, `fashion-mnist`, or
    /// a directory of IDX files.
    pub name: String,
    /// Points generated for a toy set; for images, the number of training images kept (a
    /// seeded random subset; 0 or more than there are keeps them all).
    pub n: usize,
    /// Seed of a toy set's generator, of the training/held-out split and of the image subset.
    pub seed: u64,
    /// Fraction of the data held out (unused when the data set has its own test set).
    pub held_out: f64,
    /// A directory searched first for image data sets.
    #[serde(default)]
    pub data_dir: Option<PathBuf>,
}

/// Data loaded for a fit: examples flattened to rows of `example_shape`'s product.
#[derive(Debug, Clone, PartialEq)]
pub struct FitData {
    /// Training examples (data coordinates).
    pub train: Points,
    /// Held-out examples (data coordinates).
    pub held_out: Points,
    /// Shape of one example: `[d]` for points, `[channels, height, width]` for images (pixels in
    /// [−1, 1], flattened row-major).
    pub example_shape: Vec<usize>,
}

/// Whether `name` names image data ([`crate::data::load`] would read IDX images): `mnist`,
/// `fashion-mnist` or an existing directory, with or without a class subset (`mnist:0-4`).
pub fn is_image_data(name: &str) -> bool {
    let base = crate::data::split_classes(name).map_or(name, |(b, _)| b);
    crate::data::image_dataset_name(base).is_some() || Path::new(base).is_dir()
}

/// Images as flattened points (one row of rows·cols pixels per image).
fn flatten(images: ImageDataset) -> Result<Points> {
    let d = images.rows * images.cols;
    Ok(Points::new(images.images, images.n, d)?)
}

impl DataSpec {
    /// Loads the data and splits off the held-out part. Images (single-channel, pixels in
    /// [−1, 1]) come flattened with shape `[1, rows, cols]`; their training part is cut to a
    /// seeded random subset of `n` images when `n` is smaller.
    pub fn load(&self) -> Result<FitData> {
        match self.load_split()? {
            (Dataset::Points(a), Dataset::Points(b)) => Ok(FitData {
                example_shape: vec![a.dim],
                train: a,
                held_out: b,
            }),
            (Dataset::Images(a), Dataset::Images(b)) => Ok(FitData {
                example_shape: vec![1, a.rows, a.cols],
                train: flatten(a)?,
                held_out: flatten(b)?,
            }),
            _ => unreachable!("load_split checks that both parts are of one kind"),
        }
    }

    /// The (training, held-out) images of an image data set with their labels, exactly as
    /// [`DataSpec::load`] splits and subsets them (for the classifier of [`crate::eval`]).
    pub fn load_images(&self) -> Result<(ImageDataset, ImageDataset)> {
        match self.load_split()? {
            (Dataset::Images(a), Dataset::Images(b)) => Ok((a, b)),
            _ => Err(DsbError::InvalidInput(format!(
                "'{}' holds points, not images",
                self.name
            ))),
        }
    }

    /// The training and held-out parts, the training images cut to `n`.
    fn load_split(&self) -> Result<(Dataset, Dataset)> {
        let opts = LoadOptions {
            n: self.n,
            seed: self.seed,
            data_dir: self.data_dir.clone(),
        };
        let (train, held_out) =
            load(&self.name, &opts)?.train_and_held_out(self.held_out, self.seed)?;
        match (train, held_out) {
            (a @ Dataset::Points(_), b @ Dataset::Points(_)) => Ok((a, b)),
            (Dataset::Images(a), Dataset::Images(b)) => {
                if (a.rows, a.cols) != (b.rows, b.cols) {
                    return Err(DsbError::InvalidInput(format!(
                        "'{}': training images are {}×{} but held-out images {}×{}",
                        self.name, a.rows, a.cols, b.rows, b.cols
                    )));
                }
                let a = if self.n > 0 && self.n < a.n {
                    let mut rng = StdRng::seed_from_u64(self.seed ^ 0x5eb_5e7);
                    let mut keep = rand::seq::index::sample(&mut rng, a.n, self.n).into_vec();
                    keep.sort_unstable();
                    a.subset(&keep)?
                } else {
                    a
                };
                Ok((Dataset::Images(a), Dataset::Images(b)))
            }
            _ => Err(DsbError::InvalidInput(format!(
                "'{}': training and held-out data are of different kinds",
                self.name
            ))),
        }
    }
}
