//! Evaluation of models fitted by [`crate::fit`]: the classifier-Fréchet distance of generated
//! images, the likelihood bound in bits per dimension, and MMD / energy distance for points.
//!
//! **Classifier-Fréchet distance (FD).** A small digit classifier ([`Classifier`], trained by the
//! fixed recipe of [`ClassifierConfig::default`]) maps each image to the 32 activations of its
//! penultimate layer. Gaussians are fitted to the features of the generated images and of the
//! held-out images, and FD is the Fréchet distance between them ([`frechet_distance`]), as FID
//! does with Inception features. Generated images are clamped to the pixel range [−1, 1] first.
//! The estimate depends on the number of images (it is biased upwards by O(dim/n)), so
//! [`evaluate_images`] reports two references computed with the same numbers of images: the
//! FD of real training images (the floor a perfect model would reach) and of N(0, I) noise
//! clamped to [−1, 1] (the prior, i.e. an untrained model).
//!
//! ```no_run
//! use dsb::eval::{ClassifierConfig, ImageEvalOptions, evaluate_images, train_classifier};
//! use dsb::fit::load_model;
//! use candle_core::Device;
//!
//! let dev = Device::Cpu;
//! let (model, saved) = load_model(std::path::Path::new("runs/mnist"), &dev).unwrap();
//! let (train, held) = saved.data.load_images().unwrap();
//! let (classifier, report) =
//!     train_classifier(ClassifierConfig::default(), &train, &held, "mnist", &dev, |_, _, _| {})
//!         .unwrap();
//! println!("classifier accuracy {:.3}", report.held_out_accuracy);
//! let eval = evaluate_images(&model, &train, &held, &classifier, &ImageEvalOptions::default())
//!     .unwrap();
//! println!("FD {:.2} (real {:.2}, noise {:.2})", eval.fd_generated, eval.fd_real, eval.fd_noise);
//! ```

mod classifier;
mod frechet;

pub use classifier::{
    CLASSES, CLASSIFIER_SETTINGS, CLASSIFIER_WEIGHTS, Classifier, ClassifierConfig,
    ClassifierReport, SavedClassifier, train_classifier,
};
pub use frechet::{FeatureStats, frechet_distance};

use crate::data::ImageDataset;
use crate::error::{DsbError, Result};
use crate::fit::{Elbo, ElboOptions, FitModel, GenerateOptions, elbo};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};

/// Settings of [`evaluate_images`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageEvalOptions {
    /// Images generated (and, at most, held-out and training images used as references).
    pub n: usize,
    /// Sampling steps (default: the model's own; see [`GenerateOptions::steps`]).
    pub steps: Option<usize>,
    /// Seed of the generated images, the reference subsets and the bound's noise.
    pub seed: u64,
    /// Also compute the likelihood bound on the held-out images (one forward path each).
    pub bound: bool,
}

impl Default for ImageEvalOptions {
    /// 500 images, the model's steps, seed 0, with the bound.
    fn default() -> Self {
        Self {
            n: 500,
            steps: None,
            seed: 0,
            bound: true,
        }
    }
}

/// The outcome of [`evaluate_images`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageEval {
    /// Images generated.
    pub generated: usize,
    /// Held-out images the features were compared with.
    pub held_out: usize,
    /// Sampling steps used.
    pub steps: usize,
    /// FD of the generated images against the held-out images.
    pub fd_generated: f64,
    /// FD of as many real training images against the held-out images: the floor at these
    /// sample sizes.
    pub fd_real: f64,
    /// FD of as many N(0, I) images clamped to [−1, 1] against the held-out images: the
    /// ceiling of an untrained model.
    pub fd_noise: f64,
    /// Fraction of the generated images that the classifier assigns to each class.
    pub class_histogram: Vec<f64>,
    /// The likelihood bound on the held-out images (with `bits_per_dim`), when asked for.
    pub bound: Option<Elbo>,
}

/// Pixels clamped to [−1, 1].
fn clamp_pixels(v: &mut [f32]) {
    for p in v {
        *p = p.clamp(-1.0, 1.0);
    }
}

/// The rows `indices` of flattened images.
fn rows(pixels: &[f32], dim: usize, indices: &[usize]) -> Vec<f32> {
    indices
        .iter()
        .flat_map(|&i| pixels[i * dim..(i + 1) * dim].iter().copied())
        .collect()
}

/// Classifier-Fréchet distances and the bound for the image model `model`: `n` generated
/// images against (at most `n`) held-out images, with the floor (as many training images,
/// a seeded random subset) and the ceiling (clamped Gaussian noise) at the same sizes. See the
/// module documentation.
pub fn evaluate_images(
    model: &FitModel,
    train: &ImageDataset,
    held_out: &ImageDataset,
    classifier: &Classifier,
    opts: &ImageEvalOptions,
) -> Result<ImageEval> {
    let device = model.device();
    let size = classifier.config().size;
    let dim = size * size;
    if model.settings().example_shape != [1, size, size] {
        return Err(DsbError::InvalidInput(format!(
            "the model generates examples of shape {:?}, the classifier takes [1, {size}, {size}] \
             images",
            model.settings().example_shape
        )));
    }
    for (what, set) in [("training", train), ("held-out", held_out)] {
        if (set.rows, set.cols) != (size, size) || set.n < 2 {
            return Err(DsbError::InvalidInput(format!(
                "the {what} images ({} of {}×{}) cannot serve as a reference for {size}×{size} \
                 images; at least 2 are needed",
                set.n, set.rows, set.cols
            )));
        }
    }
    if opts.n < 2 {
        return Err(DsbError::InvalidInput(format!(
            "the Fréchet distance needs at least 2 generated images, got {}",
            opts.n
        )));
    }
    let mut rng = StdRng::seed_from_u64(opts.seed);
    let stats = |pixels: &[f32], n: usize| -> Result<FeatureStats> {
        let f = classifier.features_of(pixels, n, device)?;
        FeatureStats::from_rows(&f, n, classifier.config().features)
    };

    // Seeded random subsets, never the first rows: data files may be sorted by class (the
    // fixture is).
    let n_held = held_out.n.min(opts.n);
    let mut held_idx = rand::seq::index::sample(&mut rng, held_out.n, n_held).into_vec();
    held_idx.sort_unstable();
    let held_pixels = rows(&held_out.images, dim, &held_idx);
    let reference = stats(&held_pixels, n_held)?;

    let gen_opts = GenerateOptions {
        steps: opts.steps,
        final_noise: false,
    };
    let mut generated = model.generate(opts.n, &gen_opts, &mut rng)?;
    clamp_pixels(&mut generated.data);
    let generated_features = classifier.features_of(&generated.data, opts.n, device)?;
    let fd_generated = frechet_distance(
        &FeatureStats::from_rows(&generated_features, opts.n, classifier.config().features)?,
        &reference,
    )?;

    let n_real = train.n.min(opts.n);
    let mut real_idx = rand::seq::index::sample(&mut rng, train.n, n_real).into_vec();
    real_idx.sort_unstable();
    let fd_real = frechet_distance(
        &stats(&rows(&train.images, dim, &real_idx), n_real)?,
        &reference,
    )?;

    let mut noise: Vec<f32> = (0..opts.n * dim)
        .map(|_| {
            let z: f64 = StandardNormal.sample(&mut rng);
            z as f32
        })
        .collect();
    clamp_pixels(&mut noise);
    let fd_noise = frechet_distance(&stats(&noise, opts.n)?, &reference)?;

    let mut class_histogram = vec![0.0; CLASSES];
    for c in classifier.classes_of_features(&generated_features, opts.n, device)? {
        class_histogram[c as usize] += 1.0 / opts.n as f64;
    }

    let bound = if opts.bound {
        let elbo_opts = ElboOptions {
            dequantise_bin: model.settings().dequantise_bin(),
        };
        Some(elbo(model, &held_pixels, &elbo_opts, &mut rng)?)
    } else {
        None
    };
    Ok(ImageEval {
        generated: opts.n,
        held_out: n_held,
        steps: opts.steps.unwrap_or(model.settings().steps),
        fd_generated,
        fd_real,
        fd_noise,
        class_histogram,
        bound,
    })
}
