//! A cloud of points in ℝ^d, stored row-major as `f32`: what toy generators and CSV files give.

use super::error::{DataError, Result};
use candle_core::{Device, Tensor};

/// `n` points of dimension `dim`, row-major: point `i` is `data[i * dim..(i + 1) * dim]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Points {
    /// The coordinates, `n * dim` values, one point after the other.
    pub data: Vec<f32>,
    /// Number of points.
    pub n: usize,
    /// Dimension of each point.
    pub dim: usize,
    /// One name per coordinate (from a CSV header, or `x1..xd`).
    pub names: Vec<String>,
}

impl Points {
    /// Points from row-major values, with coordinates named `x1..xd`. The length of `data` must
    /// be `n * dim` and `dim` at least 1.
    pub fn new(data: Vec<f32>, n: usize, dim: usize) -> Result<Self> {
        let names = (1..=dim).map(|i| format!("x{i}")).collect();
        Self::with_names(data, n, dim, names)
    }

    /// Points from row-major values with the given coordinate names (one per coordinate).
    pub fn with_names(data: Vec<f32>, n: usize, dim: usize, names: Vec<String>) -> Result<Self> {
        let points = Self {
            data,
            n,
            dim,
            names,
        };
        points.check()?;
        Ok(points)
    }

    /// The first `k` points (all of them when there are fewer), with the same names.
    pub fn head(&self, k: usize) -> Self {
        let k = k.min(self.n);
        Self {
            data: self.data[..k * self.dim].to_vec(),
            n: k,
            dim: self.dim,
            names: self.names.clone(),
        }
    }

    /// Checks that the fields agree with each other (they are public, so they can be changed).
    pub fn check(&self) -> Result<()> {
        if self.dim == 0 {
            return Err(DataError::InvalidInput(
                "points need at least one coordinate (dim = 0)".into(),
            ));
        }
        if self.n.checked_mul(self.dim) != Some(self.data.len()) {
            return Err(DataError::InvalidInput(format!(
                "{} values cannot be {} points of dimension {}; expected n * dim values",
                self.data.len(),
                self.n,
                self.dim
            )));
        }
        if self.names.len() != self.dim {
            return Err(DataError::InvalidInput(format!(
                "{} coordinate names for points of dimension {}; give one name per coordinate",
                self.names.len(),
                self.dim
            )));
        }
        Ok(())
    }

    /// Number of points.
    pub fn len(&self) -> usize {
        self.n
    }

    /// Whether there are no points.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Point `i`, or `None` past the end.
    pub fn row(&self, i: usize) -> Option<&[f32]> {
        let start = i.checked_mul(self.dim)?;
        self.data.get(start..start.checked_add(self.dim)?)
    }

    /// All points as a tensor of shape `[n, dim]`.
    pub fn to_tensor(&self, device: &Device) -> Result<Tensor> {
        self.check()?;
        Ok(Tensor::from_slice(&self.data, (self.n, self.dim), device)?)
    }

    /// The points at `indices` (repeats allowed) as a tensor of shape `[indices.len(), dim]`.
    pub fn batch(&self, indices: &[usize], device: &Device) -> Result<Tensor> {
        let rows = self.gather(indices)?;
        Ok(Tensor::from_vec(rows, (indices.len(), self.dim), device)?)
    }

    /// A new set holding the points at `indices`, in that order.
    pub fn subset(&self, indices: &[usize]) -> Result<Self> {
        let data = self.gather(indices)?;
        Self::with_names(data, indices.len(), self.dim, self.names.clone())
    }

    fn gather(&self, indices: &[usize]) -> Result<Vec<f32>> {
        self.check()?;
        let mut out = Vec::with_capacity(indices.len() * self.dim);
        for &i in indices {
            let row = self.row(i).ok_or_else(|| {
                DataError::InvalidInput(format!(
                    "point index {i} is out of range: there are {} points",
                    self.n
                ))
            })?;
            out.extend_from_slice(row);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tensor_batch_and_subset_follow_the_rows() {
        let p = Points::new(vec![1., 2., 3., 4., 5., 6.], 3, 2).unwrap();
        let t = p.to_tensor(&Device::Cpu).unwrap();
        assert_eq!(t.dims(), &[3, 2]);
        let b = p.batch(&[2, 0, 2], &Device::Cpu).unwrap();
        assert_eq!(
            b.to_vec2::<f32>().unwrap(),
            vec![vec![5., 6.], vec![1., 2.], vec![5., 6.]]
        );
        let s = p.subset(&[1]).unwrap();
        assert_eq!((s.n, s.data.clone()), (1, vec![3., 4.]));
        assert_eq!(s.names, vec!["x1", "x2"]);
    }

    #[test]
    fn inconsistent_fields_and_bad_indices_are_errors() {
        assert!(Points::new(vec![1., 2., 3.], 2, 2).is_err());
        assert!(Points::new(vec![], 0, 0).is_err());
        let p = Points::new(vec![1., 2.], 1, 2).unwrap();
        let e = p.batch(&[1], &Device::Cpu).unwrap_err().to_string();
        assert!(e.contains("index 1 is out of range"), "{e}");
    }
}
