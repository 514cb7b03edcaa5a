//! Class subsets of labelled image data: `mnist:0-4`, `fashion-mnist:1,7`, `DIR:3`.

use super::error::{DataError, Result};
use super::images::ImageDataset;

/// Splits `NAME:CLASSES` into the data set's name and the classes kept (a comma-separated list
/// of labels 0–255 and ranges `a-b`), or returns `name` whole when it has no such suffix.
pub fn split_classes(name: &str) -> Result<(&str, Option<Vec<u8>>)> {
    let Some((base, list)) = name.rsplit_once(':') else {
        return Ok((name, None));
    };
    let looks_like_classes = !list.is_empty()
        && list
            .chars()
            .all(|c| c.is_ascii_digit() || c == ',' || c == '-' || c == ' ');
    if !looks_like_classes || base.is_empty() {
        return Ok((name, None));
    }
    let bad = || {
        DataError::InvalidInput(format!(
            "'{name}': write the classes kept after the colon as labels and ranges, e.g. \
             mnist:0-4 or mnist:1,7"
        ))
    };
    let mut classes = Vec::new();
    for part in list.split(',').map(str::trim) {
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (a.trim(), b.trim()),
            None => (part, part),
        };
        let (a, b): (u8, u8) = (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
        if a > b {
            return Err(bad());
        }
        classes.extend(a..=b);
    }
    classes.sort_unstable();
    classes.dedup();
    Ok((base, Some(classes)))
}

/// The images of `data` whose label is in `classes` (in their order); an error when the data
/// have no labels or none of them is kept.
pub fn keep_classes(data: ImageDataset, classes: &[u8], name: &str) -> Result<ImageDataset> {
    let labels = data.labels.as_ref().ok_or_else(|| {
        DataError::InvalidInput(format!(
            "'{name}': a class subset needs the label file beside the images \
             (train-labels-idx1-ubyte)"
        ))
    })?;
    let keep: Vec<usize> = labels
        .iter()
        .enumerate()
        .filter(|(_, l)| classes.contains(l))
        .map(|(i, _)| i)
        .collect();
    if keep.is_empty() {
        return Err(DataError::InvalidInput(format!(
            "'{name}': no image has one of the labels {classes:?}"
        )));
    }
    data.subset(&keep)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_lists_and_ranges() {
        assert_eq!(split_classes("mnist").unwrap(), ("mnist", None));
        assert_eq!(
            split_classes("mnist:0-2,7").unwrap(),
            ("mnist", Some(vec![0, 1, 2, 7]))
        );
        assert_eq!(
            split_classes("/d/x:3,1,1").unwrap(),
            ("/d/x", Some(vec![1, 3]))
        );
        // Not a class list: left whole.
        assert_eq!(split_classes("C:/data.csv").unwrap(), ("C:/data.csv", None));
        for bad in ["mnist:4-2", "mnist:1,,2", "mnist:300"] {
            let e = split_classes(bad).unwrap_err().to_string();
            assert!(e.contains("e.g. mnist:0-4"), "{bad}: {e}");
        }
    }
}
