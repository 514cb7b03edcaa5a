//! Log-Gaussian Cox process on the Finnish pines (Møller, Syversveen & Waagepetersen 1998), the
//! 1600-D benchmark of Girolami & Calderhead (2011), Heng et al. (2020), Arbel et al. (2021,
//! "Annealed Flow Transport") and the DDS paper.
//!
//! The 126 pine locations (`targets/finnish_pines.csv`, rescaled to the unit square) are binned
//! on an M × M grid (M = 40): a point (p₁, p₂) falls in row ⌊M p₁⌋ and column ⌊M p₂⌋ (a point on
//! the upper edge goes into the last bin), and cell (r, c) is coordinate i = r M + c. With y_i the
//! count in cell i and u_i = (r, c) its grid indices, the latent field x ∈ ℝ^{M²} has the prior
//! N(μ1, K), K_ij = σ² exp(−‖u_i − u_j‖ / (M β)), σ² = 1.91, β = 1/33, μ = log 126 − σ²/2, and the
//! likelihood Π_i exp(x_i y_i − a e^{x_i}) with bin area a = 1/M². The log y_i! terms of the
//! Poisson likelihood are left out (Σ log y_i! = 11.61), as in the reference implementation
//! (`annealed_flow_transport/densities.py`, `cox_process_utils.py`), so log Z = 501.806 (long
//! SMC, docs/design.md § Reference values) is the normalising constant of exactly this density:
//! a tempered SMC run on this implementation (256 particles, 400 temperatures, MALA moves) gave
//! 501.76. The Laplace
//! approximation ([`Lgcp::laplace`]) gives 511.21, 9.4 nats high: the e^{x} terms of the 1489
//! empty cells make the posterior skewed (log weights of Laplace-proposal importance sampling
//! have a standard deviation of ≈ 9), so Laplace is a rough check here, not a reference.
//!
//! Two parameterisations, both with the same Z:
//! - plain x: log γ̃(x) = −½(x−μ)ᵀK⁻¹(x−μ) − ½ log det(2πK) + Σ_i (x_i y_i − a e^{x_i});
//! - whitened z, x = μ + Lz with K = LLᵀ (Cholesky): log γ̃_w(z) = −½‖z‖² − (d/2) log 2π +
//!   Σ_i (x_i y_i − a e^{x_i}).
//!
//! Since N(μ + Lz; μ, K) det L = N(z; 0, I), γ̃_w(z) = γ̃(μ + Lz) det L: the whitened density is
//! the plain one pushed through the change of variables, so ∫ γ̃_w dz = ∫ γ̃ dx. Both gradients
//! are closed-form: −K⁻¹(x−μ) + y − a e^{x} and −z + Lᵀ(y − a e^{x}).
//!
//! The batched density uses dense f32 matrices built once: L⁻ᵀ and L⁻¹ for the plain form
//! (‖L⁻¹(x−μ)‖² is a sum of squares, robust in f32), Lᵀ and L for the whitened one.

use super::Target;
use candle_core::{Device, Result, Tensor};
use nalgebra::{DMatrix, DVector};
use std::sync::Mutex;

const PINES: &str = include_str!("../../targets/finnish_pines.csv");

/// Grid cells per side of the benchmark (1600 cells).
pub const GRID: usize = 40;
/// Prior variance σ² of the latent field.
pub const SIGNAL_VARIANCE: f64 = 1.91;
/// Length scale β of the covariance, in unit-square units.
pub const BETA: f64 = 1.0 / 33.0;
/// Reference log Z of the 40 × 40 model (long SMC; docs/design.md § Reference values).
pub const LOG_Z: f64 = 501.806;

/// The pine locations (x, y) in the unit square, as shipped in `targets/finnish_pines.csv`.
pub fn pines_points() -> Vec<[f64; 2]> {
    crate::csv_table::parse(PINES)
        .expect("embedded pines data")
        .rows
        .into_iter()
        .map(|r| r.values.try_into().expect("pines rows have 2 columns"))
        .collect()
}

/// Counts of `points` on a `grid` × `grid` binning of the unit square, flattened row-major
/// (row from the first coordinate). Points on the upper edge go into the last bin.
pub fn bin_counts(points: &[[f64; 2]], grid: usize) -> Vec<f64> {
    let mut counts = vec![0.0; grid * grid];
    let cell = |v: f64| ((v * grid as f64).floor() as usize).min(grid - 1);
    for p in points {
        counts[cell(p[0]) * grid + cell(p[1])] += 1.0;
    }
    counts
}

/// The prior covariance K of the latent field on a `grid` × `grid` lattice.
pub fn gram_matrix(grid: usize) -> DMatrix<f64> {
    let d = grid * grid;
    let scale = grid as f64 * BETA;
    DMatrix::from_fn(d, d, |i, j| {
        let (dr, dc) = (
            (i / grid) as f64 - (j / grid) as f64,
            (i % grid) as f64 - (j % grid) as f64,
        );
        SIGNAL_VARIANCE * (-(dr * dr + dc * dc).sqrt() / scale).exp()
    })
}

/// A Laplace approximation of the LGCP posterior in whitened coordinates.
#[derive(Debug, Clone)]
pub struct LaplaceFit {
    /// log Z ≈ log γ̃_w(ẑ) + (d/2) log 2π − ½ log det(I + Lᵀ diag(a e^{x̂}) L).
    pub log_z: f64,
    /// Mode ẑ in whitened coordinates.
    pub mode_z: Vec<f64>,
    /// Mode x̂ = μ + Lẑ of the latent field.
    pub mode_x: Vec<f64>,
    /// Newton iterations taken.
    pub iterations: usize,
}

/// The LGCP posterior as a [`Target`], plain or whitened.
#[derive(Debug)]
pub struct Lgcp {
    grid: usize,
    whiten: bool,
    counts: Vec<f64>,
    mu: f64,
    area: f64,
    /// Cholesky factor L of K.
    chol: DMatrix<f64>,
    /// log det L = ½ log det K.
    half_log_det: f64,
    /// Plain: L⁻ᵀ and L⁻¹; whitened: Lᵀ and L; counts `[1, d]`. All f32 on the CPU.
    fwd: Tensor,
    bwd: Tensor,
    y: Tensor,
    /// The same three on the last non-CPU device used.
    on_device: Mutex<Option<(Device, Tensor, Tensor, Tensor)>>,
}

/// `m` as an f32 tensor, row-major.
fn tensor_of(m: &DMatrix<f64>) -> Tensor {
    let data: Vec<f32> = m.transpose().as_slice().iter().map(|&v| v as f32).collect();
    Tensor::from_vec(data, (m.nrows(), m.ncols()), &Device::Cpu).expect("matrix tensor")
}

impl Lgcp {
    /// The 1600-D benchmark, plain (`whiten = false`) or whitened.
    pub fn new(whiten: bool) -> Self {
        Self::with_grid(GRID, whiten)
    }

    /// The model on a `grid` × `grid` lattice (same σ², β, μ; a = 1/grid²), for tests and
    /// coarser variants. Panics if `grid` is 0.
    pub fn with_grid(grid: usize, whiten: bool) -> Self {
        assert!(grid > 0, "the LGCP grid needs at least one cell");
        let d = grid * grid;
        let counts = bin_counts(&pines_points(), grid);
        let chol = gram_matrix(grid)
            .cholesky()
            .expect("the exponential kernel's Gram matrix is positive definite")
            .unpack();
        let half_log_det = chol.diagonal().iter().map(|v| v.ln()).sum();
        let (fwd, bwd) = if whiten {
            (chol.transpose(), chol.clone())
        } else {
            let inv = chol
                .solve_lower_triangular(&DMatrix::identity(d, d))
                .expect("L has a positive diagonal");
            (inv.transpose(), inv)
        };
        let y: Vec<f32> = counts.iter().map(|&v| v as f32).collect();
        Self {
            grid,
            whiten,
            mu: 126f64.ln() - 0.5 * SIGNAL_VARIANCE,
            area: 1.0 / d as f64,
            half_log_det,
            fwd: tensor_of(&fwd),
            bwd: tensor_of(&bwd),
            y: Tensor::from_vec(y, (1, d), &Device::Cpu).expect("counts tensor"),
            counts,
            chol,
            on_device: Mutex::new(None),
        }
    }

    /// Counts per grid cell, flattened row-major.
    pub fn counts(&self) -> &[f64] {
        &self.counts
    }

    /// Constant prior mean μ = log 126 − σ²/2 of the latent field.
    pub fn prior_mean(&self) -> f64 {
        self.mu
    }

    /// Bin area a = 1/d.
    pub fn bin_area(&self) -> f64 {
        self.area
    }

    /// Cholesky factor L of the prior covariance K (lower triangular, f64).
    pub fn cholesky(&self) -> &DMatrix<f64> {
        &self.chol
    }

    /// log det L = ½ log det K: the difference log γ̃_w(z) − log γ̃(μ + Lz).
    pub fn half_log_det_k(&self) -> f64 {
        self.half_log_det
    }

    /// Whether the target's coordinates are the whitened z.
    pub fn is_whitened(&self) -> bool {
        self.whiten
    }

    /// The dense matrices and counts on `dev`, moved there once per device.
    fn mats(&self, dev: &Device) -> Result<(Tensor, Tensor, Tensor)> {
        if dev.is_cpu() {
            return Ok((self.fwd.clone(), self.bwd.clone(), self.y.clone()));
        }
        let mut cache = self.on_device.lock().expect("device cache");
        if let Some((d, f, b, y)) = cache.as_ref()
            && d.same_device(dev)
        {
            return Ok((f.clone(), b.clone(), y.clone()));
        }
        let moved = (
            self.fwd.to_device(dev)?,
            self.bwd.to_device(dev)?,
            self.y.to_device(dev)?,
        );
        *cache = Some((
            dev.clone(),
            moved.0.clone(),
            moved.1.clone(),
            moved.2.clone(),
        ));
        Ok(moved)
    }

    /// Σ_i (x_i y_i − a e^{x_i}) of latent fields `[batch, d]`.
    fn log_likelihood(&self, x: &Tensor, y: &Tensor) -> Result<Tensor> {
        x.broadcast_mul(y)?.sum(1)? - (x.exp()?.sum(1)? * self.area)?
    }

    /// Newton's method for the mode in whitened coordinates (f64), then the Laplace
    /// approximation of log Z there. Each step solves with the Hessian through Woodbury,
    /// (I + LᵀDL)⁻¹ = I − LᵀS B⁻¹ S L with S = D^{½}, B = I + S K S, and det(I + LᵀDL) = det B.
    pub fn laplace(&self) -> LaplaceFit {
        let d = self.counts.len();
        let l = &self.chol;
        let k = gram_matrix(self.grid);
        let y = DVector::from_column_slice(&self.counts);
        let latent = |z: &DVector<f64>| l * z + DVector::from_element(d, self.mu);
        let objective = |z: &DVector<f64>| {
            let x = latent(z);
            -0.5 * z.norm_squared() + x.dot(&y) - self.area * x.iter().map(|v| v.exp()).sum::<f64>()
        };
        // B = I + S K S at the latent field x, factorised.
        let factor_b = |x: &DVector<f64>| {
            let s = x.map(|v| (self.area * v.exp()).sqrt());
            let b = DMatrix::from_fn(d, d, |i, j| {
                s[i] * k[(i, j)] * s[j] + if i == j { 1.0 } else { 0.0 }
            });
            (s, b.cholesky().expect("I + SKS is positive definite"))
        };
        let mut z = DVector::zeros(d);
        let mut f = objective(&z);
        let mut iterations = 0;
        for _ in 0..100 {
            iterations += 1;
            let x = latent(&z);
            let r = &y - x.map(|v| self.area * v.exp());
            let g = l.tr_mul(&r) - &z;
            let (s, b) = factor_b(&x);
            let sl_g = s.component_mul(&(l * &g));
            let step = &g - l.tr_mul(&s.component_mul(&b.solve(&sl_g)));
            let decrement = g.dot(&step);
            let mut t = 1.0;
            loop {
                let trial = &z + &step * t;
                let ft = objective(&trial);
                if ft >= f + 1e-4 * t * decrement || t < 1e-8 {
                    z = trial;
                    f = ft;
                    break;
                }
                t *= 0.5;
            }
            if decrement < 1e-12 {
                break;
            }
        }
        let x = latent(&z);
        let (_, b) = factor_b(&x);
        let log_det_b: f64 = 2.0 * b.l().diagonal().iter().map(|v| v.ln()).sum::<f64>();
        LaplaceFit {
            log_z: f - 0.5 * log_det_b,
            mode_z: z.as_slice().to_vec(),
            mode_x: x.as_slice().to_vec(),
            iterations,
        }
    }

    /// The Laplace approximation of log Z ([`Lgcp::laplace`]).
    pub fn laplace_log_z(&self) -> f64 {
        self.laplace().log_z
    }
}

impl Target for Lgcp {
    fn name(&self) -> &str {
        if self.whiten { "lgcp-whitened" } else { "lgcp" }
    }
    fn dim(&self) -> usize {
        self.grid * self.grid
    }
    fn log_density(&self, x: &Tensor) -> Result<Tensor> {
        let (fwd, _, y) = self.mats(x.device())?;
        let x = x.contiguous()?;
        let norm = 0.5 * self.dim() as f64 * (2.0 * std::f64::consts::PI).ln();
        if self.whiten {
            let prior = ((x.sqr()?.sum(1)? * -0.5)? - norm)?;
            let latent = (x.matmul(&fwd)? + self.mu)?;
            prior + self.log_likelihood(&latent, &y)?
        } else {
            let w = (&x - self.mu)?.matmul(&fwd)?;
            let prior = ((w.sqr()?.sum(1)? * -0.5)? - (norm + self.half_log_det))?;
            prior + self.log_likelihood(&x, &y)?
        }
    }
    fn grad_log_density(&self, x: &Tensor) -> Result<Tensor> {
        let (fwd, bwd, y) = self.mats(x.device())?;
        let x = x.detach().contiguous()?;
        if self.whiten {
            let latent = (x.matmul(&fwd)? + self.mu)?;
            let resid = y.broadcast_sub(&(latent.exp()? * self.area)?)?;
            resid.matmul(&bwd)? - x
        } else {
            let prior = (&x - self.mu)?.matmul(&fwd)?.matmul(&bwd)?;
            y.broadcast_sub(&(x.exp()? * self.area)?)? - prior
        }
    }
    fn log_z(&self) -> Option<f64> {
        (self.grid == GRID).then_some(LOG_Z)
    }
    /// Whitened: the prior N(0, I) of z. Plain: none (the field sits near μ ≈ 3.9, not 0).
    fn suggested_sigma(&self) -> Option<f64> {
        self.whiten.then_some(1.0)
    }
}

#[cfg(test)]
mod tests;
