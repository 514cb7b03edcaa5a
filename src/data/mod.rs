//! Data sets for generative training: 2-D toy generators, CSV point clouds and MNIST-style IDX
//! image files.
//!
//! [`load`] turns a name into data: a toy name ([`ToyDataset`]) generates points, a path ending
//! in `.csv` reads points ([`read_points_csv`]), `mnist` or `fashion-mnist` finds IDX files
//! on disk ([`locate_image_dataset`]) and reads them as images in [−1, 1] ([`ImageDataset`]),
//! and so does a path to a directory holding IDX files. Nothing is downloaded.
//!
//! ```
//! use dsb::data::{Dataset, LoadOptions, load};
//!
//! let loaded = load("two-moons", &LoadOptions { n: 1000, seed: 3, data_dir: None }).unwrap();
//! let (train, held_out) = loaded.train_and_held_out(0.1, 0).unwrap();
//! assert_eq!((train.len(), held_out.len()), (900, 100));
//! let x = train.to_tensor(&candle_core::Device::Cpu).unwrap();
//! assert_eq!(x.dims(), &[900, 2]);
//! ```

mod classes;
mod error;
mod idx;
mod images;
mod locate;
mod points;
mod points_csv;
mod toy;

pub use classes::split_classes;
pub use error::{DataError, Result};
pub use idx::{
    IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC, IdxImages, encode_idx_images, encode_idx_labels,
    parse_idx_images, parse_idx_labels, read_idx_images, read_idx_labels, read_maybe_gzip,
};
pub use images::{ImageDataset, scale_pixel};
pub use locate::{
    DATA_DIR_ENV, IMAGE_DATASETS, ImageFiles, first_with_images, image_dataset_name,
    locate_image_dataset, search_dirs,
};
pub use points::Points;
pub use points_csv::{parse_points_csv, read_points_csv};
pub use toy::ToyDataset;

use candle_core::{Device, Tensor};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use std::path::{Path, PathBuf};

/// A data set in memory: points `[n, d]` or single-channel images `[n, 1, rows, cols]`.
#[derive(Debug, Clone, PartialEq)]
pub enum Dataset {
    /// A point cloud (toy generators, CSV files).
    Points(Points),
    /// Grey-scale images (IDX files).
    Images(ImageDataset),
}

/// Settings for [`load`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadOptions {
    /// How many points a toy data set generates (files are read whole).
    pub n: usize,
    /// The seed of a toy data set's generator.
    pub seed: u64,
    /// A directory searched first for image data sets (see [`locate_image_dataset`]).
    pub data_dir: Option<PathBuf>,
}

impl Default for LoadOptions {
    /// 10,000 toy points, seed 0, no data directory.
    fn default() -> Self {
        Self {
            n: 10_000,
            seed: 0,
            data_dir: None,
        }
    }
}

/// A loaded data set: the training data, the test data that came with it (the t10k files of an
/// IDX directory), and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedDataset {
    /// The training data.
    pub train: Dataset,
    /// Separate test data, when the source has some.
    pub test: Option<Dataset>,
    /// Where it came from, for logs: `swiss-roll (n = 10000, seed 0)` or a path.
    pub origin: String,
}

impl LoadedDataset {
    /// The training data and held-out data: the test set when there is one (and then
    /// `held_out_fraction` is unused), otherwise a [`Dataset::split`] of the training data.
    pub fn train_and_held_out(
        self,
        held_out_fraction: f64,
        seed: u64,
    ) -> Result<(Dataset, Dataset)> {
        match self.test {
            Some(test) => Ok((self.train, test)),
            None => self.train.split(held_out_fraction, seed),
        }
    }
}

/// Loads the data set called `name`: a toy data set (`swiss-roll`, …, generated from
/// `opts.n` and `opts.seed`), a `.csv` file of points, `mnist` / `fashion-mnist` (located with
/// `opts.data_dir`), or a directory holding MNIST-style IDX files. Labelled images take a
/// class subset after a colon: `mnist:0-4`, `fashion-mnist:1,7` (see [`split_classes`]).
pub fn load(name: &str, opts: &LoadOptions) -> Result<LoadedDataset> {
    let (base, classes) = split_classes(name)?;
    let Some(classes) = classes else {
        return load_whole(name, opts);
    };
    let whole = load_whole(base, opts)?;
    let keep = |d: Dataset| -> Result<Dataset> {
        match d {
            Dataset::Images(i) => Ok(Dataset::Images(classes::keep_classes(i, &classes, name)?)),
            Dataset::Points(_) => Err(DataError::InvalidInput(format!(
                "'{name}': class subsets (NAME:CLASSES) are for labelled images, and '{base}' \
                 holds points"
            ))),
        }
    };
    Ok(LoadedDataset {
        train: keep(whole.train)?,
        test: whole.test.map(keep).transpose()?,
        origin: format!("{} (classes {classes:?})", whole.origin),
    })
}

/// [`load`] without a class subset.
fn load_whole(name: &str, opts: &LoadOptions) -> Result<LoadedDataset> {
    let path = Path::new(name);
    let is_csv = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"));
    if is_csv {
        let points = read_points_csv(path)?;
        return Ok(loaded(
            Dataset::Points(points),
            None,
            path.display().to_string(),
        ));
    }
    if let Ok(toy) = name.parse::<ToyDataset>() {
        if opts.n == 0 {
            return Err(DataError::InvalidInput(format!(
                "cannot generate 0 points of {toy}; ask for at least one"
            )));
        }
        let origin = format!("{toy} (n = {}, seed {})", opts.n, opts.seed);
        return Ok(loaded(
            Dataset::Points(toy.sample(opts.n, opts.seed)),
            None,
            origin,
        ));
    }
    let dir = if let Some(image) = image_dataset_name(name) {
        locate_image_dataset(image, opts.data_dir.as_deref())?
    } else if path.is_dir() {
        path.to_path_buf()
    } else if path.is_file() {
        return Err(DataError::bad_file(
            path,
            "not a data file dsb reads; give a .csv file of points, or the directory that \
             holds IDX files (train-images-idx3-ubyte(.gz))",
        ));
    } else {
        return Err(DataError::UnknownDataset {
            name: name.to_string(),
            toys: ToyDataset::names(),
            images: IMAGE_DATASETS.join(", "),
        });
    };
    let files = ImageFiles::in_dir(&dir).ok_or_else(|| {
        DataError::bad_file(
            &dir,
            "a directory, but it holds no train-images-idx3-ubyte(.gz); a directory given as \
             the data set must hold MNIST-style IDX files",
        )
    })?;
    let (train, test) = files.load()?;
    Ok(loaded(
        Dataset::Images(train),
        test.map(Dataset::Images),
        dir.display().to_string(),
    ))
}

fn loaded(train: Dataset, test: Option<Dataset>, origin: String) -> LoadedDataset {
    LoadedDataset {
        train,
        test,
        origin,
    }
}

impl Dataset {
    /// Number of examples (points or images).
    pub fn len(&self) -> usize {
        match self {
            Dataset::Points(p) => p.len(),
            Dataset::Images(i) => i.len(),
        }
    }

    /// Whether there are no examples.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The shape of one example: `[d]` for points, `[1, rows, cols]` for images.
    pub fn example_shape(&self) -> Vec<usize> {
        match self {
            Dataset::Points(p) => vec![p.dim],
            Dataset::Images(i) => vec![1, i.rows, i.cols],
        }
    }

    /// Numbers per example: `d` for points, `rows * cols` for images.
    pub fn example_size(&self) -> usize {
        self.example_shape().iter().product()
    }

    /// All examples as one tensor, `[n, d]` or `[n, 1, rows, cols]`.
    pub fn to_tensor(&self, device: &Device) -> Result<Tensor> {
        match self {
            Dataset::Points(p) => p.to_tensor(device),
            Dataset::Images(i) => i.to_tensor(device),
        }
    }

    /// The examples at `indices` (repeats allowed) as one tensor.
    pub fn batch(&self, indices: &[usize], device: &Device) -> Result<Tensor> {
        match self {
            Dataset::Points(p) => p.batch(indices, device),
            Dataset::Images(i) => i.batch(indices, device),
        }
    }

    /// A new data set holding the examples at `indices`, in that order.
    pub fn subset(&self, indices: &[usize]) -> Result<Self> {
        Ok(match self {
            Dataset::Points(p) => Dataset::Points(p.subset(indices)?),
            Dataset::Images(i) => Dataset::Images(i.subset(indices)?),
        })
    }

    /// Splits into (training, held-out) parts, a pure function of `seed`.
    ///
    /// The held-out part has round(`held_out_fraction` · n) examples, at least 1 and at most
    /// n − 1, chosen by a uniformly random permutation (from `StdRng::seed_from_u64(seed)`);
    /// both parts keep the original order of their examples. The fraction must lie strictly
    /// between 0 and 1, and there must be at least two examples.
    pub fn split(&self, held_out_fraction: f64, seed: u64) -> Result<(Self, Self)> {
        let (train, held_out) = split_indices(self.len(), held_out_fraction, seed)?;
        Ok((self.subset(&train)?, self.subset(&held_out)?))
    }
}

/// The (training, held-out) indices of [`Dataset::split`] for `n` examples, each part sorted.
pub fn split_indices(
    n: usize,
    held_out_fraction: f64,
    seed: u64,
) -> Result<(Vec<usize>, Vec<usize>)> {
    if !(held_out_fraction > 0.0 && held_out_fraction < 1.0) {
        return Err(DataError::InvalidInput(format!(
            "held-out fraction {held_out_fraction} must lie strictly between 0 and 1 (e.g. 0.1)"
        )));
    }
    if n < 2 {
        return Err(DataError::InvalidInput(format!(
            "cannot split {n} example(s) into training and held-out parts; need at least 2"
        )));
    }
    let k = ((held_out_fraction * n as f64).round() as usize).clamp(1, n - 1);
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut StdRng::seed_from_u64(seed));
    let (mut held_out, mut train) = (order[..k].to_vec(), order[k..].to_vec());
    held_out.sort_unstable();
    train.sort_unstable();
    Ok((train, held_out))
}

#[cfg(test)]
mod tests;
