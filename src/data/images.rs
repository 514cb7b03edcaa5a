//! Grey-scale image data sets (MNIST-like) held in memory as `f32` pixels in [−1, 1].

use super::error::{DataError, Result};
use super::idx::{IdxImages, read_idx_images, read_idx_labels};
use candle_core::{Device, Tensor};
use std::path::Path;

/// `n` single-channel images of `rows × cols` pixels, with optional class labels.
///
/// Pixels are stored row-major, one image after the other: image `i` is
/// `images[i * rows * cols..(i + 1) * rows * cols]`. Bytes b ∈ {0..255} become b / 127.5 − 1,
/// so 0 (MNIST's background) is −1 and 255 is 1.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageDataset {
    /// The pixels, `n * rows * cols` values in [−1, 1].
    pub images: Vec<f32>,
    /// Number of images.
    pub n: usize,
    /// Rows of each image.
    pub rows: usize,
    /// Columns of each image.
    pub cols: usize,
    /// One class label per image, when a label file was given.
    pub labels: Option<Vec<u8>>,
}

/// A pixel byte scaled to [−1, 1]: b / 127.5 − 1.
pub fn scale_pixel(b: u8) -> f32 {
    f32::from(b) / 127.5 - 1.0
}

impl ImageDataset {
    /// Scales IDX images to [−1, 1] and attaches `labels`, which must hold one label per image.
    pub fn from_idx(idx: IdxImages, labels: Option<Vec<u8>>) -> Result<Self> {
        let images = idx.pixels.iter().map(|&b| scale_pixel(b)).collect();
        let set = Self {
            images,
            n: idx.n,
            rows: idx.rows,
            cols: idx.cols,
            labels,
        };
        set.check()?;
        Ok(set)
    }

    /// Reads an IDX image file and, if given, its IDX label file (each plain or gzipped). The
    /// label file must hold exactly one label per image.
    pub fn read(images: &Path, labels: Option<&Path>) -> Result<Self> {
        let idx = read_idx_images(images)?;
        let labels = match labels {
            Some(path) => {
                let l = read_idx_labels(path)?;
                if l.len() != idx.n {
                    return Err(DataError::bad_file(
                        path,
                        format!(
                            "{} labels, but {} holds {} images; the label file must belong to \
                             the image file (train with train, t10k with t10k)",
                            l.len(),
                            images.display(),
                            idx.n
                        ),
                    ));
                }
                Some(l)
            }
            None => None,
        };
        Self::from_idx(idx, labels)
    }

    /// Checks that the fields agree with each other (they are public, so they can be changed).
    pub fn check(&self) -> Result<()> {
        let per = self.rows.checked_mul(self.cols);
        if per == Some(0) {
            return Err(DataError::InvalidInput(format!(
                "images of {}×{} pixels are empty",
                self.rows, self.cols
            )));
        }
        if per.and_then(|p| p.checked_mul(self.n)) != Some(self.images.len()) {
            return Err(DataError::InvalidInput(format!(
                "{} pixel values cannot be {} images of {}×{}",
                self.images.len(),
                self.n,
                self.rows,
                self.cols
            )));
        }
        if let Some(l) = &self.labels
            && l.len() != self.n
        {
            return Err(DataError::InvalidInput(format!(
                "{} labels for {} images; give one label per image",
                l.len(),
                self.n
            )));
        }
        Ok(())
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.n
    }

    /// Whether there are no images.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Pixels per image, `rows * cols`.
    pub fn pixels_per_image(&self) -> usize {
        self.rows * self.cols
    }

    /// The pixels of image `i`, or `None` past the end.
    pub fn image(&self, i: usize) -> Option<&[f32]> {
        let per = self.pixels_per_image();
        let start = i.checked_mul(per)?;
        self.images.get(start..start.checked_add(per)?)
    }

    /// All images as a tensor of shape `[n, 1, rows, cols]`.
    pub fn to_tensor(&self, device: &Device) -> Result<Tensor> {
        self.check()?;
        let shape = (self.n, 1, self.rows, self.cols);
        Ok(Tensor::from_slice(&self.images, shape, device)?)
    }

    /// The images at `indices` (repeats allowed) as a tensor of shape
    /// `[indices.len(), 1, rows, cols]`.
    pub fn batch(&self, indices: &[usize], device: &Device) -> Result<Tensor> {
        let pixels = self.gather(indices)?;
        let shape = (indices.len(), 1, self.rows, self.cols);
        Ok(Tensor::from_vec(pixels, shape, device)?)
    }

    /// A new data set holding the images (and labels) at `indices`, in that order.
    pub fn subset(&self, indices: &[usize]) -> Result<Self> {
        let images = self.gather(indices)?;
        let labels = self
            .labels
            .as_ref()
            .map(|l| indices.iter().map(|&i| l[i]).collect());
        Ok(Self {
            images,
            n: indices.len(),
            rows: self.rows,
            cols: self.cols,
            labels,
        })
    }

    fn gather(&self, indices: &[usize]) -> Result<Vec<f32>> {
        self.check()?;
        let mut out = Vec::with_capacity(indices.len() * self.pixels_per_image());
        for &i in indices {
            let img = self.image(i).ok_or_else(|| {
                DataError::InvalidInput(format!(
                    "image index {i} is out of range: there are {} images",
                    self.n
                ))
            })?;
            out.extend_from_slice(img);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::idx::{encode_idx_images, encode_idx_labels};

    fn tiny() -> ImageDataset {
        let idx = IdxImages {
            n: 3,
            rows: 2,
            cols: 2,
            pixels: vec![0, 255, 0, 255, 1, 2, 3, 4, 128, 128, 128, 128],
        };
        ImageDataset::from_idx(idx, Some(vec![5, 6, 7])).unwrap()
    }

    #[test]
    fn pixels_are_scaled_to_minus_one_one() {
        assert_eq!(scale_pixel(0), -1.0);
        assert_eq!(scale_pixel(255), 1.0);
        assert!(scale_pixel(128).abs() < 0.01);
        assert_eq!(tiny().image(0).unwrap(), &[-1.0, 1.0, -1.0, 1.0]);
    }

    #[test]
    fn tensors_have_a_channel_axis_and_batches_follow_indices() {
        let set = tiny();
        assert_eq!(set.to_tensor(&Device::Cpu).unwrap().dims(), &[3, 1, 2, 2]);
        let b = set.batch(&[2, 0], &Device::Cpu).unwrap();
        assert_eq!(b.dims(), &[2, 1, 2, 2]);
        let flat = b.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(&flat[4..], set.image(0).unwrap());
        let s = set.subset(&[1, 1]).unwrap();
        assert_eq!((s.n, s.labels.clone()), (2, Some(vec![6, 6])));
        let e = set.batch(&[3], &Device::Cpu).unwrap_err().to_string();
        assert!(e.contains("index 3 is out of range"), "{e}");
    }

    #[test]
    fn label_count_must_match_image_count() {
        let dir = tempfile::tempdir().unwrap();
        let (img, lab) = (dir.path().join("img"), dir.path().join("lab"));
        std::fs::write(&img, encode_idx_images(2, 1, 1, &[0, 9]).unwrap()).unwrap();
        std::fs::write(&lab, encode_idx_labels(&[1, 2, 3]).unwrap()).unwrap();
        let e = ImageDataset::read(&img, Some(&lab))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("3 labels, but") && e.contains("holds 2 images"),
            "{e}"
        );
        std::fs::write(&lab, encode_idx_labels(&[1, 2]).unwrap()).unwrap();
        let set = ImageDataset::read(&img, Some(&lab)).unwrap();
        assert_eq!(set.labels, Some(vec![1, 2]));
    }
}
