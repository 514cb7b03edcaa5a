//! PNG grids of images (generated samples), drawn with plotters' bitmap backend.

use super::atomic_write_with;
use crate::error::{DsbError, Result};
use plotters::prelude::*;
use std::path::Path;

/// Pixels of background between and around the images of a grid.
pub const GRID_GAP: usize = 2;

/// The grid's size in pixels for `n` images of `height × width`: ⌈√n⌉ columns, as many rows as
/// needed, `GRID_GAP` pixels between and around the images: (width, height).
pub fn grid_size(n: usize, height: usize, width: usize) -> (usize, usize) {
    let cols = (n as f64).sqrt().ceil().max(1.0) as usize;
    let rows = n.div_ceil(cols).max(1);
    (
        cols * (width + GRID_GAP) + GRID_GAP,
        rows * (height + GRID_GAP) + GRID_GAP,
    )
}

/// A value in [−1, 1] as a byte: (v + 1)/2 · 255, rounded and clamped to 0..=255 (NaN is 0).
pub fn pixel_byte(v: f32) -> u8 {
    let b = ((v + 1.0) * 127.5).round();
    if b.is_nan() {
        0
    } else {
        b.clamp(0.0, 255.0) as u8
    }
}

/// `images` (`n` of `[channels, height, width]`) enlarged `k` times by repeating each pixel
/// into a k × k block, and their new shape: for pictures of a few small images.
pub fn upscale(images: &[f32], n: usize, shape: &[usize], k: usize) -> (Vec<f32>, Vec<usize>) {
    let [c, h, w] = shape[..] else {
        return (images.to_vec(), shape.to_vec());
    };
    let k = k.max(1);
    let mut out = Vec::with_capacity(images.len() * k * k);
    for plane in images.chunks(h * w).take(n * c) {
        for y in 0..h * k {
            let row = &plane[(y / k) * w..(y / k + 1) * w];
            out.extend((0..w * k).map(|x| row[x / k]));
        }
    }
    (out, vec![c, h * k, w * k])
}

/// Writes `images` (`n` images of `[channels, height, width]`, row-major, values in [−1, 1]) as
/// a PNG grid ([`grid_size`]), pixels mapped by [`pixel_byte`]. One channel is grey, three are
/// RGB; the background is mid-grey.
pub fn image_grid_png(path: &Path, images: &[f32], n: usize, shape: &[usize]) -> Result<()> {
    let (c, h, w) = match *shape {
        [c, h, w] if (c == 1 || c == 3) && h > 0 && w > 0 => (c, h, w),
        _ => {
            return Err(DsbError::InvalidInput(format!(
                "an image grid needs images of shape [1 or 3, height, width], got {shape:?}"
            )));
        }
    };
    if n == 0 || images.len() != n * c * h * w {
        return Err(DsbError::InvalidInput(format!(
            "an image grid needs at least one image and {} values per image; got {} values for \
             {n} images",
            c * h * w,
            images.len()
        )));
    }
    let (gw, gh) = grid_size(n, h, w);
    let cols = (gw - GRID_GAP) / (w + GRID_GAP);
    let mut rgb = vec![128u8; gw * gh * 3];
    for (i, img) in images.chunks(c * h * w).enumerate() {
        let (x0, y0) = (
            GRID_GAP + (i % cols) * (w + GRID_GAP),
            GRID_GAP + (i / cols) * (h + GRID_GAP),
        );
        for y in 0..h {
            for x in 0..w {
                let at = ((y0 + y) * gw + x0 + x) * 3;
                for k in 0..3 {
                    rgb[at + k] = pixel_byte(img[(k % c) * h * w + y * w + x]);
                }
            }
        }
    }
    atomic_write_with(path, |tmp| {
        let draw = || -> std::result::Result<(), Box<dyn std::error::Error>> {
            let mut backend = BitMapBackend::new(tmp, (gw as u32, gh as u32));
            backend.blit_bitmap((0, 0), (gw as u32, gh as u32), &rgb)?;
            backend.present()?;
            Ok(())
        };
        draw().map_err(|e| {
            DsbError::InvalidInput(format!(
                "{}: cannot write the image grid: {e}",
                path.display()
            ))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upscale_repeats_pixels_into_blocks() {
        let (big, shape) = upscale(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0], 2, &[1, 2, 2], 2);
        assert_eq!(shape, vec![1, 4, 4]);
        assert_eq!(&big[..8], &[1.0, 1.0, 2.0, 2.0, 1.0, 1.0, 2.0, 2.0]);
        assert_eq!(big[16..20], [5.0, 5.0, 6.0, 6.0]);
        assert_eq!(big.len(), 32);
    }

    #[test]
    fn grid_has_the_stated_size_and_maps_pixels() {
        assert_eq!(grid_size(64, 28, 28), (8 * 30 + 2, 8 * 30 + 2));
        assert_eq!(grid_size(5, 4, 6), (3 * 8 + 2, 2 * 6 + 2));
        assert_eq!(
            (pixel_byte(-1.0), pixel_byte(1.0), pixel_byte(3.0)),
            (0, 255, 255)
        );
        assert_eq!((pixel_byte(0.0), pixel_byte(f32::NAN)), (128, 0));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.png");
        image_grid_png(&path, &vec![0.5; 5 * 24], 5, &[1, 4, 6]).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let be = |i: usize| u32::from_be_bytes(bytes[i..i + 4].try_into().unwrap());
        assert_eq!((be(16), be(20)), (26, 14));
        assert!(image_grid_png(&path, &[0.0; 10], 1, &[1, 4, 6]).is_err());
    }
}
