//! The image bridge's evaluation by a digit classifier (`dsb bridge --classifier DIR`): the
//! classifier-Fréchet distance of the transported images to the held-out images of the other
//! end, beside the distance before transport and the floor between two halves of one held-out
//! set, and the classes the classifier gives the transports.

use crate::data::{Points, split_classes};
use crate::eval::{CLASSES, Classifier, FeatureStats, frechet_distance};
use anyhow::Context;
use candle_core::Device;
use serde::Serialize;
use std::path::Path;

/// The classifier's view of an image bridge, each distance between two sets of `per_set`
/// images: the even and odd rows of the held-out images of each end, and the transports of the
/// even rows.
#[derive(Debug, Clone, Serialize)]
pub struct ImageBridgeEval {
    /// The classifier's directory.
    pub classifier: String,
    /// Images per set in each distance.
    pub per_set: usize,
    /// FD(--from transported to T, held-out --to).
    pub forward_fd: f64,
    /// FD(--to transported to 0, held-out --from).
    pub backward_fd: f64,
    /// FD(held-out --from, held-out --to): before any transport.
    pub untransported_fd: f64,
    /// FD between two halves of the held-out --to images (the floor at these sizes).
    pub floor_to_fd: f64,
    /// FD between two halves of the held-out --from images.
    pub floor_from_fd: f64,
    /// How many forward transports the classifier puts in each class.
    pub forward_classes: Vec<usize>,
    /// How many backward transports it puts in each class.
    pub backward_classes: Vec<usize>,
    /// Share of the forward transports in --to's classes (when --to names a class subset).
    pub forward_in_to_classes: Option<f64>,
    /// Share of the backward transports in --from's classes (when --from names one).
    pub backward_in_from_classes: Option<f64>,
}

/// Evaluates transports `fwd` (of held-out `a`) and `back` (of held-out `b`) with the classifier
/// in `dir`; `from` and `to` are the data sets' names (for their class subsets).
pub fn evaluate(
    dir: &Path,
    (a, fwd): (&Points, &Points),
    (b, back): (&Points, &Points),
    (from, to): (&str, &str),
    device: &Device,
) -> anyhow::Result<ImageBridgeEval> {
    let (clf, _) = Classifier::load(dir, device)
        .with_context(|| format!("--classifier {}: cannot load the classifier", dir.display()))?;
    let m = a.len().min(b.len()) / 2;
    anyhow::ensure!(
        m >= 2,
        "the classifier-Fréchet distance needs at least 4 held-out images of each end \
         (--eval-samples)"
    );
    let f = clf.config().features;
    // Halves by parity (rows 0, 2, 4, … and 1, 3, 5, …): held-out files are often sorted by
    // class, and the two halves must have the same mix.
    let feats = |p: &Points, parity: usize, n: usize| -> anyhow::Result<Vec<f64>> {
        let d = p.dim;
        let pixels: Vec<f32> = (0..n)
            .flat_map(|i| {
                p.data[(2 * i + parity) * d..(2 * i + parity + 1) * d]
                    .iter()
                    .copied()
            })
            .collect();
        Ok(clf.features_of(&pixels, n, device)?)
    };
    let fd = |x: &[f64], y: &[f64]| -> anyhow::Result<f64> {
        Ok(frechet_distance(
            &FeatureStats::from_rows(x, m, f)?,
            &FeatureStats::from_rows(y, m, f)?,
        )?)
    };
    let (a1, a2) = (feats(a, 0, m)?, feats(a, 1, m)?);
    let (b1, b2) = (feats(b, 0, m)?, feats(b, 1, m)?);
    let (f1, k1) = (feats(fwd, 0, m)?, feats(back, 0, m)?);
    let classes = |x: &[f64]| -> anyhow::Result<Vec<usize>> {
        let mut h = vec![0; CLASSES];
        for c in clf.classes_of_features(x, m, device)? {
            h[c as usize] += 1;
        }
        Ok(h)
    };
    let (fc, bc) = (classes(&f1)?, classes(&k1)?);
    let share = |h: &[usize], name: &str| -> Option<f64> {
        let (_, kept) = split_classes(name).ok()?;
        let kept = kept?;
        let inside: usize = kept.iter().filter_map(|&c| h.get(c as usize)).sum();
        Some(inside as f64 / m as f64)
    };
    Ok(ImageBridgeEval {
        classifier: dir.display().to_string(),
        per_set: m,
        forward_fd: fd(&f1, &b2)?,
        backward_fd: fd(&k1, &a2)?,
        untransported_fd: fd(&a1, &b2)?,
        floor_to_fd: fd(&b1, &b2)?,
        floor_from_fd: fd(&a1, &a2)?,
        forward_in_to_classes: share(&fc, to),
        backward_in_from_classes: share(&bc, from),
        forward_classes: fc,
        backward_classes: bc,
    })
}
