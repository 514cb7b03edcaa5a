//! Finding MNIST-style image data sets on disk. Nothing is downloaded: a data set that is in none
//! of the searched directories is an error that lists them and says how to get the files.
//!
//! A directory holds a data set when it contains `train-images-idx3-ubyte` or
//! `train-images-idx3-ubyte.gz` (also accepted: `train-images.idx3-ubyte`, as some mirrors name
//! it). Beside it, `train-labels-idx1-ubyte`, `t10k-images-idx3-ubyte` and
//! `t10k-labels-idx1-ubyte` (each optionally `.gz`) are used when present. Debian's
//! `dataset-fashion-mnist` package installs exactly these four files, gzipped, into
//! `/usr/share/datasets/fashion-mnist/`.

use super::error::{DataError, Result};
use super::images::ImageDataset;
use std::path::{Path, PathBuf};

/// The image data sets known by name.
pub const IMAGE_DATASETS: [&str; 2] = ["mnist", "fashion-mnist"];

/// The environment variable naming a directory to search (itself, then its `<name>` subdirectory).
pub const DATA_DIR_ENV: &str = "DSB_DATA_DIR";

const TRAIN_IMAGES: &str = "train-images-idx3-ubyte";
const TRAIN_LABELS: &str = "train-labels-idx1-ubyte";
const TEST_IMAGES: &str = "t10k-images-idx3-ubyte";
const TEST_LABELS: &str = "t10k-labels-idx1-ubyte";

/// The IDX files of one image data set, found in one directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageFiles {
    /// The directory they are in.
    pub dir: PathBuf,
    /// The training images (always present).
    pub train_images: PathBuf,
    /// The training labels, if present.
    pub train_labels: Option<PathBuf>,
    /// The test images, if present.
    pub test_images: Option<PathBuf>,
    /// The test labels, if present (used only with the test images).
    pub test_labels: Option<PathBuf>,
}

impl ImageFiles {
    /// The data set's files in `dir`, or `None` when `dir` holds no training images.
    pub fn in_dir(dir: &Path) -> Option<Self> {
        Some(Self {
            dir: dir.to_path_buf(),
            train_images: find_file(dir, TRAIN_IMAGES)?,
            train_labels: find_file(dir, TRAIN_LABELS),
            test_images: find_file(dir, TEST_IMAGES),
            test_labels: find_file(dir, TEST_LABELS),
        })
    }

    /// Reads the training set, and the test set when its images are present.
    pub fn load(&self) -> Result<(ImageDataset, Option<ImageDataset>)> {
        let train = ImageDataset::read(&self.train_images, self.train_labels.as_deref())?;
        let test = match &self.test_images {
            Some(images) => Some(ImageDataset::read(images, self.test_labels.as_deref())?),
            None => None,
        };
        Ok((train, test))
    }
}

/// `stem` or `stem.gz` in `dir`, also with the `.idx` spelling some mirrors use.
fn find_file(dir: &Path, stem: &str) -> Option<PathBuf> {
    let dotted = stem.replacen("-idx", ".idx", 1);
    [
        stem.to_string(),
        format!("{stem}.gz"),
        dotted.clone(),
        format!("{dotted}.gz"),
    ]
    .into_iter()
    .map(|f| dir.join(f))
    .find(|p| p.is_file())
}

/// The canonical name of an image data set (`mnist` or `fashion-mnist`), ignoring case and
/// treating `_` as `-`; `None` for other names.
pub fn image_dataset_name(name: &str) -> Option<&'static str> {
    let key = name.trim().to_ascii_lowercase().replace('_', "-");
    IMAGE_DATASETS.into_iter().find(|n| *n == key)
}

/// Finds the directory holding the image data set `name` (`mnist` or `fashion-mnist`).
///
/// Searched in order, the first directory with training images wins (see [`search_dirs`]):
/// `data_dir` and `data_dir/<name>`; `$DSB_DATA_DIR` and `$DSB_DATA_DIR/<name>`;
/// `/usr/share/datasets/<name>` (where Debian's `dataset-fashion-mnist` installs);
/// `$XDG_DATA_HOME/dsb/<name>` and `~/.local/share/dsb/<name>`. A `data_dir` that does not exist
/// is an error rather than skipped, since it is most likely a typo.
pub fn locate_image_dataset(name: &str, data_dir: Option<&Path>) -> Result<PathBuf> {
    let name = image_dataset_name(name).ok_or_else(|| {
        DataError::InvalidInput(format!(
            "unknown image data set '{name}'; the image data sets are: {}",
            IMAGE_DATASETS.join(", ")
        ))
    })?;
    if let Some(dir) = data_dir
        && !dir.is_dir()
    {
        return Err(DataError::InvalidInput(format!(
            "data directory {} does not exist or is not a directory; pass a directory that \
             holds {TRAIN_IMAGES}(.gz)",
            dir.display()
        )));
    }
    first_with_images(name, &search_dirs(name, data_dir))
}

/// The directories searched for `name`, in order, from `data_dir`, the environment
/// (`DSB_DATA_DIR`, `XDG_DATA_HOME`, `HOME`) and the standard locations.
pub fn search_dirs(name: &str, data_dir: Option<&Path>) -> Vec<PathBuf> {
    let env_dir = std::env::var_os(DATA_DIR_ENV).filter(|v| !v.is_empty());
    let xdg = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty());
    let home = std::env::var_os("HOME").filter(|v| !v.is_empty());
    search_dirs_with(
        name,
        data_dir,
        env_dir.as_deref().map(Path::new),
        xdg.as_deref().map(Path::new),
        home.as_deref().map(Path::new),
    )
}

/// [`search_dirs`] with the environment given explicitly.
fn search_dirs_with(
    name: &str,
    data_dir: Option<&Path>,
    env_dir: Option<&Path>,
    xdg_data_home: Option<&Path>,
    home: Option<&Path>,
) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    for base in [data_dir, env_dir].into_iter().flatten() {
        dirs.push(base.to_path_buf());
        dirs.push(base.join(name));
    }
    dirs.push(Path::new("/usr/share/datasets").join(name));
    if let Some(x) = xdg_data_home {
        dirs.push(x.join("dsb").join(name));
    }
    if let Some(h) = home {
        dirs.push(h.join(".local/share/dsb").join(name));
    }
    let mut seen = std::collections::HashSet::new();
    dirs.retain(|d| seen.insert(d.clone()));
    dirs
}

/// The first of `dirs` that holds training images for `name`; otherwise a [`DataError::NotFound`]
/// that lists every directory and says how to get the files.
pub fn first_with_images(name: &str, dirs: &[PathBuf]) -> Result<PathBuf> {
    if let Some(dir) = dirs.iter().find(|d| find_file(d, TRAIN_IMAGES).is_some()) {
        return Ok(dir.clone());
    }
    Err(DataError::NotFound {
        name: name.to_string(),
        wanted: format!("{TRAIN_IMAGES}(.gz)"),
        looked: dirs.to_vec(),
        hint: how_to_get(name),
    })
}

fn how_to_get(name: &str) -> String {
    let pass = "pass that directory with --data-dir DIR (or set DSB_DATA_DIR=DIR)";
    match name {
        "fashion-mnist" => format!(
            "To get Fashion-MNIST, install the Debian package: `sudo apt install \
             dataset-fashion-mnist` (it puts the IDX files in /usr/share/datasets/fashion-mnist/); \
             or copy {TRAIN_IMAGES}.gz and {TRAIN_LABELS}.gz from \
             https://github.com/zalandoresearch/fashion-mnist into a directory and {pass}."
        ),
        _ => format!(
            "To get MNIST, download the IDX files {TRAIN_IMAGES}.gz and {TRAIN_LABELS}.gz \
             (optionally the t10k test files) from a mirror of http://yann.lecun.com/exdb/mnist/ \
             into a directory and {pass}. The dsb sources ship a 5,000-digit subset in \
             tests/fixtures/mnist-5k/ (--data-dir tests/fixtures/mnist-5k)."
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::idx::encode_idx_images;

    #[test]
    fn search_order_puts_explicit_dirs_first() {
        let dirs = search_dirs_with(
            "mnist",
            Some(Path::new("/d")),
            Some(Path::new("/e")),
            Some(Path::new("/x")),
            Some(Path::new("/h")),
        );
        let want = [
            "/d",
            "/d/mnist",
            "/e",
            "/e/mnist",
            "/usr/share/datasets/mnist",
            "/x/dsb/mnist",
            "/h/.local/share/dsb/mnist",
        ];
        assert_eq!(dirs, want.map(PathBuf::from));
    }

    #[test]
    fn not_found_lists_every_place_looked_and_how_to_get_the_files() {
        let tmp = tempfile::tempdir().unwrap();
        let dirs = vec![tmp.path().join("a"), tmp.path().join("b")];
        let e = first_with_images("fashion-mnist", &dirs).unwrap_err();
        let DataError::NotFound { looked, .. } = &e else {
            panic!("expected NotFound, got {e}");
        };
        assert_eq!(looked, &dirs);
        let msg = e.to_string();
        for d in &dirs {
            assert!(msg.contains(&d.display().to_string()), "{msg}");
        }
        assert!(msg.contains("apt install dataset-fashion-mnist"), "{msg}");
        let msg = first_with_images("mnist", &dirs).unwrap_err().to_string();
        assert!(
            msg.contains("--data-dir") && msg.contains("train-images-idx3-ubyte"),
            "{msg}"
        );
    }

    #[test]
    fn finds_gzipped_or_plain_files_in_a_subdirectory() {
        let tmp = tempfile::tempdir().unwrap();
        let sub = tmp.path().join("mnist");
        std::fs::create_dir(&sub).unwrap();
        let bytes = encode_idx_images(1, 1, 1, &[0]).unwrap();
        std::fs::write(sub.join("t10k-images-idx3-ubyte"), &bytes).unwrap();
        assert!(
            ImageFiles::in_dir(&sub).is_none(),
            "test images alone are not a data set"
        );
        std::fs::write(sub.join("train-images-idx3-ubyte.gz"), &bytes).unwrap();
        let found = locate_image_dataset("MNIST", Some(tmp.path())).unwrap();
        assert_eq!(found, sub);
        let files = ImageFiles::in_dir(&found).unwrap();
        assert!(files.train_labels.is_none() && files.test_images.is_some());
        let (train, test) = files.load().unwrap();
        assert_eq!((train.n, test.map(|t| t.n)), (1, Some(1)));
    }

    #[test]
    fn bad_names_and_missing_data_dirs_are_errors() {
        let e = locate_image_dataset("cifar", None).unwrap_err().to_string();
        assert!(e.contains("'cifar'") && e.contains("fashion-mnist"), "{e}");
        let e = locate_image_dataset("mnist", Some(Path::new("/no/such/dir")));
        assert!(
            e.unwrap_err()
                .to_string()
                .contains("/no/such/dir does not exist")
        );
    }
}
