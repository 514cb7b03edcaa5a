//! Reading a labelled data set for regression targets: a CSV whose last column is a 0/1 label.

use crate::csv_table;
use crate::error::{DsbError, Result};
use std::path::Path;

/// Features and 0/1 labels read from a CSV, with the feature names.
#[derive(Debug, Clone)]
pub struct LabelledData {
    /// Feature column names (from the header, or `x1..xd` without one).
    pub names: Vec<String>,
    /// Rows of features.
    pub features: Vec<Vec<f64>>,
    /// Labels, each 0 or 1.
    pub labels: Vec<f64>,
}

impl LabelledData {
    /// Parses CSV text. `source` names it in errors. The table rules are
    /// [`crate::csv_table`]'s (a first row of names only is the header; blank lines and `#`
    /// comments are skipped; every cell a finite number); on top of them, there must be at least
    /// one feature, the last column (the label) must be 0 or 1, and there must be two data rows.
    pub fn parse(text: &str, source: &Path) -> Result<Self> {
        let bad = |m: String| DsbError::bad_file(source, m);
        let table = csv_table::parse(text).map_err(|e| bad(e.to_string()))?;
        if table.is_empty() {
            return Err(bad(
                "the file is empty (no rows, only blank lines or # comments); \
                 expected a CSV with a 0/1 label in the last column"
                    .into(),
            ));
        }
        let width = table.width;
        if width < 2 {
            return Err(bad(format!(
                "line {} has {width} column; expected at least one feature and a label (the last column)",
                table.first_line
            )));
        }
        let mut names = table.names();
        names.pop();
        let (mut features, mut labels) = (Vec::new(), Vec::new());
        for row in table.rows {
            let mut values = row.values;
            let label = values.pop().expect("width ≥ 2");
            if label != 0.0 && label != 1.0 {
                return Err(bad(format!(
                    "line {}: label {label} in the last column; labels must be 0 or 1",
                    row.line
                )));
            }
            features.push(values);
            labels.push(label);
        }
        if features.len() < 2 {
            return Err(bad("fewer than two data rows".into()));
        }
        Ok(Self {
            names,
            features,
            labels,
        })
    }

    /// Reads and parses a CSV file.
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| DsbError::io(path, e))?;
        Self::parse(&text, path)
    }

    /// Features z-scored per column with the population standard deviation. A constant column
    /// cannot be standardised and is an error that names it.
    pub fn standardised(&self, source: &Path) -> Result<Vec<Vec<f64>>> {
        self.standardised_with(source, false)
    }

    /// [`LabelledData::standardised`], but with `keep_constant` a constant column becomes zeros
    /// (scikit-learn's convention, which the published ionosphere benchmark follows: its second
    /// feature is constant, and the reference log Z is for 35 weights).
    pub fn standardised_with(&self, source: &Path, keep_constant: bool) -> Result<Vec<Vec<f64>>> {
        let n = self.features.len() as f64;
        let d = self.names.len();
        let mut out = self.features.clone();
        for j in 0..d {
            let mean = self.features.iter().map(|r| r[j]).sum::<f64>() / n;
            let var = self
                .features
                .iter()
                .map(|r| (r[j] - mean).powi(2))
                .sum::<f64>()
                / n;
            if !(mean.is_finite() && var.is_finite()) {
                return Err(DsbError::bad_file(
                    source,
                    format!(
                        "feature column {} ('{}') has values too large to standardise (its mean \
                         or variance overflows f64, e.g. values near ±1e308); rescale it",
                        j + 1,
                        self.names[j]
                    ),
                ));
            }
            let constant = var <= 1e-24 * mean.abs().max(1.0);
            if constant && keep_constant {
                for r in &mut out {
                    r[j] = 0.0;
                }
                continue;
            }
            if constant {
                return Err(DsbError::bad_file(
                    source,
                    format!(
                        "feature column {} ('{}') is constant and cannot be standardised; remove it (the model has its own intercept)",
                        j + 1,
                        self.names[j]
                    ),
                ));
            }
            let sd = var.sqrt();
            for r in &mut out {
                r[j] = (r[j] - mean) / sd;
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        LabelledData::parse(text, Path::new("d.csv"))
            .and_then(|d| d.standardised(Path::new("d.csv")).map(|_| ()))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn reads_with_and_without_header() {
        let d = LabelledData::parse("a,b,y\n1,2,0\n3,5,1\n", Path::new("d.csv")).unwrap();
        assert_eq!(d.names, ["a", "b"]);
        assert_eq!(d.labels, [0.0, 1.0]);
        let d = LabelledData::parse("1,2,0\n3,5,1\n", Path::new("d.csv")).unwrap();
        assert_eq!(d.names, ["x1", "x2"]);
        let z = d.standardised(Path::new("d.csv")).unwrap();
        assert!((z[0][0] + 1.0).abs() < 1e-12 && (z[1][1] - 1.0).abs() < 1e-12);
    }

    #[test]
    fn bad_files_are_clear_errors() {
        assert!(err("a,b,y\n1,2,0\n3,1\n").contains("line 3: 2 cells, but the header has 3"));
        assert!(
            err("a,b,y\n1,2,0\n3,x,1\n").contains("line 3, column 2: 'x' is not a finite number")
        );
        assert!(
            err("a,b,y\n1,2,0\n3,4,2\n")
                .contains("label 2 in the last column; labels must be 0 or 1")
        );
        assert!(err("a,b,y\n1,2,0\n1,4,1\n1,5,0\n").contains("feature column 1 ('a') is constant"));
        for huge in [
            "a,b,y\n1e308,2,0\n-1e308,4,1\n1e308,5,0\n",
            "a,b,y\n1e308,2,0\n1e308,4,1\n",
        ] {
            let e = err(huge);
            assert!(
                e.contains("feature column 1 ('a') has values too large to standardise")
                    && !e.contains("constant"),
                "{e}"
            );
        }
        assert!(err("").contains("empty"));
        assert!(err("# nothing but a comment\n\n").contains("empty"));
        // One header rule for every CSV (crate::csv_table): a first row that mixes names and
        // numbers is an error, not a header.
        assert!(
            err("a,2,y\n1,2,0\n3,4,1\n").contains("line 1, column 1: 'a' is not a number"),
            "{}",
            err("a,2,y\n1,2,0\n3,4,1\n")
        );
        assert!(err("y\n1\n0\n").contains("line 1 has 1 column"));
        assert!(err("a,b,y\n1,2,0\n").contains("fewer than two data rows"));
    }

    #[test]
    fn comments_blank_lines_and_quoted_names() {
        let text = "\u{feff}# two features\n\"a\", \"b\",y\n\n1,2,0\n# skipped\n3,5,1\n";
        let d = LabelledData::parse(text, Path::new("d.csv")).unwrap();
        assert_eq!(d.names, ["a", "b"]);
        assert_eq!(d.features, [[1.0, 2.0], [3.0, 5.0]]);
        let e = err("a,b,y\n1,2,0\n\n3,4,0.5\n");
        assert!(e.contains("line 4: label 0.5 in the last column"), "{e}");
    }

    /// Every labelled CSV the repository ships parses, with the documented shape and both labels.
    #[test]
    fn shipped_labelled_files_parse() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        for (file, n, d) in [
            ("targets/ionosphere.csv", 351, 34),
            ("targets/sonar.csv", 208, 60),
            ("targets/german_credit.csv", 1000, 24),
            ("tests/fixtures/logistic_small.csv", 150, 4),
        ] {
            let data = LabelledData::read(&root.join(file)).unwrap();
            assert_eq!(
                (data.features.len(), data.names.len(), data.labels.len()),
                (n, d, n),
                "{file}"
            );
            assert!(data.features.iter().all(|r| r.len() == d), "{file}");
            assert!(
                data.labels.contains(&0.0) && data.labels.contains(&1.0),
                "{file}"
            );
        }
    }
}
