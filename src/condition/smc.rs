//! The particle filter of [`super::condition`]: the model's backward process from the prior,
//! each kernel multiplied by a potential r_k, with importance weights and systematic
//! resampling. Weights, log Ẑ and the potentials are computed in f64 on the host; the network
//! runs on the model's device, one call per step for all particles.

use super::{ConditionOptions, Conditioned, Observation};
use crate::error::{DsbError, Result};
use crate::estimate::{Estimates, log_sum_exp, systematic_resample};
use crate::fit::FitModel;
use candle_core::Tensor;
use nalgebra::{DMatrix, DVector};
use rand_distr::{Distribution, StandardNormal};

/// log r and its gradient (in z) at rows of standardised states.
type Grad<'a> = dyn Fn(&[f64]) -> Result<(Vec<f64>, Vec<f64>)> + 'a;

/// The observation in the model's standardised coordinates z, where x = mean + scale ⊙ z.
enum Potential<'a> {
    /// Coordinates `idx` of z seen as `y` with noise sd `sd` (per coordinate); r in data
    /// units is r in z units times e^`log_jacobian` (−Σ log scale over the observed ones).
    Diagonal {
        idx: Vec<usize>,
        y: Vec<f64>,
        sd: Vec<f64>,
        log_jacobian: f64,
    },
    /// y = A x + ε as y − A·mean = (A diag(scale)) z + ε: `a` is A diag(scale), `y` the
    /// centred measurement, `var` the noise variance. Its potentials r_k are exact Gaussians.
    Linear {
        a: DMatrix<f64>,
        y: DVector<f64>,
        var: f64,
    },
    /// log r(x) and its gradient through a target in data coordinates (a likelihood).
    Tempered(Box<Grad<'a>>),
}

/// Samples p̃(x₀) ∝ q(x₀) r(x₀) under the model by sequential Monte Carlo over its backward
/// path (see the module doc of [`super`]). Errors on bad input (checked before any work), on a
/// bridge model (its backward process does not start at the prior), and when every weight
/// vanishes.
pub fn condition(
    model: &FitModel,
    obs: &Observation,
    opts: &ConditionOptions,
    rng: &mut impl rand::Rng,
) -> Result<Conditioned> {
    condition_with_progress(model, obs, opts, rng, |_| {})
}

/// [`condition`], calling `on_step(done)` after each of the model's backward steps.
pub fn condition_with_progress(
    model: &FitModel,
    obs: &Observation,
    opts: &ConditionOptions,
    rng: &mut impl rand::Rng,
    mut on_step: impl FnMut(usize),
) -> Result<Conditioned> {
    let d = model.dim();
    obs.validate(d)?;
    if opts.particles < 2 {
        return Err(DsbError::InvalidInput(format!(
            "--particles must be at least 2, got {}",
            opts.particles
        )));
    }
    if !(0.0..=1.0).contains(&opts.resample_below) {
        return Err(DsbError::InvalidInput(format!(
            "--resample-below must be in [0, 1], got {}",
            opts.resample_below
        )));
    }
    if let Some(to) = &model.settings().to {
        return Err(DsbError::InvalidInput(format!(
            "this model is a bridge to '{to}': its backward process starts at that data set, not \
             at the prior, so it has no unconditional law to condition"
        )));
    }
    let norm = &model.settings().normalisation;
    let potential = potential(obs, &norm.mean, &norm.scale);
    let kern = model.kernels();
    let n_steps = kern.steps();
    let n = opts.particles;
    let dev = model.device();

    let curvature = match &potential {
        Potential::Tempered(f) => likelihood_curvature(f.as_ref(), d)?,
        _ => 0.0,
    };
    // What r_k needs at step k, computed once per step: the reference's marginal (ā_k, ν_k²)
    // and, for a linear measurement, the Cholesky factor of C_k and its log-determinant.
    let prepare = |k: usize| -> Result<Step> {
        let (a, nu2) = kern.marginal(k);
        let linear = match &potential {
            Potential::Linear { a: am, y, var } => {
                // x₀ ≈ x_k / a with the forward noise ν²/a² (in z): y ~ N(A z / a, C_k),
                // C_k = σ² I + (ν²/a²) A Aᵀ.
                let m = y.len();
                let c = DMatrix::identity(m, m) * *var + am * am.transpose() * (nu2 / (a * a));
                let chol = c.cholesky().ok_or_else(|| {
                    DsbError::InvalidInput("the measurement's covariance is singular".into())
                })?;
                let log_det = 2.0 * chol.l().diagonal().iter().map(|v| v.ln()).sum::<f64>();
                Some((chol, log_det))
            }
            _ => None,
        };
        Ok(Step { a, nu2, linear })
    };
    // log r_k(x) for all particles (states z, row-major), and its gradient when asked.
    let log_r = |p: &Step, z: &[f64], grad: bool| -> Result<(Vec<f64>, Option<Vec<f64>>)> {
        let (a, nu2) = (p.a, p.nu2);
        match &potential {
            Potential::Diagonal { idx, y, sd, .. } => {
                let mut lr = vec![0.0; n];
                for (i, row) in z.chunks(d).enumerate() {
                    for ((&j, &yj), &sj) in idx.iter().zip(y).zip(sd) {
                        lr[i] += log_normal(yj - row[j] / a, sj * sj + nu2 / (a * a));
                    }
                }
                Ok((lr, None))
            }
            Potential::Linear { a: am, y, .. } => {
                let (chol, log_det) = p.linear.as_ref().expect("prepared for the measurement");
                let m = y.len();
                let mut lr = Vec::with_capacity(n);
                let mut g = grad.then(|| Vec::with_capacity(n * d));
                for row in z.chunks(d) {
                    let zr = DVector::from_column_slice(row) / a;
                    let r = y - am * zr;
                    let w = chol.solve(&r);
                    lr.push(
                        -0.5 * (r.dot(&w) + log_det + m as f64 * (2.0 * std::f64::consts::PI).ln()),
                    );
                    if let Some(g) = g.as_mut() {
                        g.extend((am.transpose() * w / a).iter());
                    }
                }
                Ok((lr, g))
            }
            Potential::Tempered(f) => {
                // As sharp as the Gaussian case's N(y; z/a, σ² + ν²/a²) for a likelihood of
                // curvature ĉ: r(z/a)^β with β = a² / (a² + ĉ ν²).
                let beta = a * a / (a * a + curvature * nu2);
                let scaled: Vec<f64> = z.iter().map(|v| v / a).collect();
                let (lr, g) = f(&scaled)?;
                let lr = lr.into_iter().map(|v| beta * v).collect();
                Ok((
                    lr,
                    grad.then(|| g.into_iter().map(|v| beta * v / a).collect()),
                ))
            }
        }
    };

    // x_N from the prior N(0, I); the first potential r_N.
    let mut z: Vec<f64> = (0..n * d).map(|_| StandardNormal.sample(rng)).collect();
    let (mut prev_r, _) = log_r(&prepare(n_steps)?, &z, false)?;
    let mut lw = prev_r.clone();
    let mut log_evidence = 0.0;
    let mut min_ess: f64 = 1.0;
    let mut resamples = 0;
    for k in (0..n_steps).rev() {
        on_step(n_steps - 1 - k);
        let step = kern.backward(k);
        let here = prepare(k)?;
        let x = Tensor::from_vec(z.iter().map(|&v| v as f32).collect(), (n, d), dev)?;
        let mean: Vec<f64> = model
            .backward_mean(&x, &step)?
            .flatten_all()?
            .to_vec1::<f32>()?
            .into_iter()
            .map(f64::from)
            .collect();
        let s2 = step.sd * step.sd;
        let mut next = vec![0.0; n * d];
        match &potential {
            Potential::Diagonal { idx, y, sd, .. } => {
                // The product of N(x; μ, s²) and r_k is Gaussian; its mass N(y; μ/a, v + s²/a²)
                // is the weight, which does not depend on the new state: weight and resample
                // first (fully adapted), then draw.
                let (a, nu2) = (here.a, here.nu2);
                for (i, m) in mean.chunks(d).enumerate() {
                    let mut add = 0.0;
                    for ((&j, &yj), &sj) in idx.iter().zip(y).zip(sd) {
                        add += log_normal(yj - m[j] / a, sj * sj + (nu2 + s2) / (a * a));
                    }
                    lw[i] += add - prev_r[i];
                }
                let resampled = reweigh(
                    &mut lw,
                    &mut log_evidence,
                    &mut min_ess,
                    opts.resample_below,
                    rng,
                )?;
                resamples += usize::from(resampled.is_some());
                let rows: Vec<usize> = resampled.unwrap_or_else(|| (0..n).collect());
                let mut observed = vec![None; d];
                for ((&j, &yj), &sj) in idx.iter().zip(y).zip(sd) {
                    observed[j] = Some((yj, sj * sj + nu2 / (a * a)));
                }
                for (i, &src) in rows.iter().enumerate() {
                    for j in 0..d {
                        let m = mean[src * d + j];
                        let eps: f64 = StandardNormal.sample(rng);
                        next[i * d + j] = match observed[j] {
                            None => m + step.sd * eps,
                            Some((yj, v)) => {
                                // Prior N(m, s²) times N(x; a·y, a²v).
                                let prec = 1.0 / s2 + 1.0 / (a * a * v);
                                let mu = (m / s2 + yj / (a * v)) / prec;
                                mu + eps / prec.sqrt()
                            }
                        };
                    }
                }
                z = next;
                prev_r = log_r(&here, &z, false)?.0;
            }
            Potential::Linear { .. } | Potential::Tempered(_) => {
                // The paper's perturbation, damped: the mean moves by s² ∇ log r_k(μ) / (1 + s² c)
                // and the variance shrinks to s² / (1 + s² c), where c ≥ 0 is each coordinate's
                // curvature of −log r_k measured by a secant along that move (one more gradient
                // evaluation). For a Gaussian r with a diagonal Hessian this is the exact product
                // of the kernel and r_k; without the damping a sharp r overshoots (s²c > 2 is
                // unstable) and the weights degenerate.
                let g0 = log_r(&here, &mean, true)?
                    .1
                    .expect("asked for the gradient");
                let probe: Vec<f64> = mean.iter().zip(&g0).map(|(m, g)| m + s2 * g).collect();
                let g1 = log_r(&here, &probe, true)?
                    .1
                    .expect("asked for the gradient");
                let mut log_ratio = vec![0.0; n];
                for (i, ratio) in log_ratio.iter_mut().enumerate() {
                    for j in 0..d {
                        let ij = i * d + j;
                        let (m, g) = (mean[ij], g0[ij]);
                        let c = if g != 0.0 {
                            (-(g1[ij] - g) / (s2 * g)).max(0.0)
                        } else {
                            0.0
                        };
                        let c = if c.is_finite() { c } else { 0.0 };
                        let shrink = 1.0 + s2 * c;
                        let sd = step.sd / shrink.sqrt();
                        let eps: f64 = StandardNormal.sample(rng);
                        let x = m + s2 * g / shrink + sd * eps;
                        next[ij] = x;
                        // log N(x; μ, s²) − log N(x; μ̃, s̃²).
                        *ratio +=
                            -(x - m).powi(2) / (2.0 * s2) + 0.5 * eps * eps + (sd / step.sd).ln();
                    }
                }
                let (r_now, _) = log_r(&here, &next, false)?;
                for i in 0..n {
                    lw[i] += log_ratio[i] + r_now[i] - prev_r[i];
                }
                z = next;
                prev_r = r_now;
                if let Some(rows) = reweigh(
                    &mut lw,
                    &mut log_evidence,
                    &mut min_ess,
                    opts.resample_below,
                    rng,
                )? {
                    z = rows
                        .iter()
                        .flat_map(|&r| z[r * d..(r + 1) * d].to_vec())
                        .collect();
                    prev_r = rows.iter().map(|&r| prev_r[r]).collect();
                    resamples += 1;
                }
            }
        }
    }
    on_step(n_steps);
    let e = Estimates::from_log_weights(&lw);
    if e.n_nonfinite == n || !e.log_z.is_finite() {
        return Err(DsbError::InvalidInput(
            "every particle's weight vanished: the observation is impossible under the model \
             (check the observed values' units, or raise --noise-sd)"
                .into(),
        ));
    }
    log_evidence += e.log_z;
    if let Potential::Diagonal { log_jacobian, .. } = &potential {
        log_evidence += log_jacobian;
    }
    let zf: Vec<f32> = z.iter().map(|&v| v as f32).collect();
    let x = Tensor::from_vec(zf, (n, d), dev)?;
    let samples = model.to_data(&x)?;
    Ok(Conditioned {
        samples,
        log_weights: lw,
        ess: e.ess,
        log_evidence,
        min_ess,
        resamples,
    })
}

/// What the potential r_k of one step needs, computed once per step.
struct Step {
    /// ā_k.
    a: f64,
    /// ν_k².
    nu2: f64,
    /// For a linear measurement: the Cholesky factor of C_k and log det C_k.
    linear: Option<(nalgebra::Cholesky<f64, nalgebra::Dyn>, f64)>,
}

/// The largest curvature of −log r along a coordinate (standardised units), by secants of the
/// gradient at the data mean (z = 0) with steps of 0.1; at least 0, and 0 where not finite.
/// It sets how fast a likelihood is tempered in (see [`condition`]).
fn likelihood_curvature(f: &Grad<'_>, d: usize) -> Result<f64> {
    const H: f64 = 0.1;
    let mut z = vec![0.0; (d + 1) * d];
    for j in 0..d {
        z[(j + 1) * d + j] = H;
    }
    let (_, g) = f(&z)?;
    let c = (0..d)
        .map(|j| -(g[(j + 1) * d + j] - g[j]) / H)
        .filter(|c| c.is_finite())
        .fold(0.0, f64::max);
    Ok(c)
}

/// log N(r; 0, v).
fn log_normal(r: f64, v: f64) -> f64 {
    -0.5 * (r * r / v + (2.0 * std::f64::consts::PI * v).ln())
}

/// After a weight update: records the ESS, and when it is below `below` (as a fraction) adds
/// the log mean weight to log Ẑ, resets the weights and returns the resampled rows.
fn reweigh(
    lw: &mut [f64],
    log_evidence: &mut f64,
    min_ess: &mut f64,
    below: f64,
    rng: &mut impl rand::Rng,
) -> Result<Option<Vec<usize>>> {
    let n = lw.len();
    let lse = log_sum_exp(lw);
    if !lse.is_finite() {
        return Err(DsbError::InvalidInput(
            "every particle's weight vanished along the path: the observation is impossible \
             under the model (check the observed values' units, or raise --noise-sd)"
                .into(),
        ));
    }
    let sq = log_sum_exp(&lw.iter().map(|l| 2.0 * l).collect::<Vec<_>>());
    let ess = (2.0 * lse - sq).exp() / n as f64;
    *min_ess = min_ess.min(ess);
    if ess >= below {
        return Ok(None);
    }
    let rows = systematic_resample(lw, n, rng);
    *log_evidence += lse - (n as f64).ln();
    lw.iter_mut().for_each(|l| *l = 0.0);
    Ok(Some(rows))
}

/// The observation as a potential on standardised coordinates.
fn potential<'a>(obs: &'a Observation, mean: &'a [f64], scale: &'a [f64]) -> Potential<'a> {
    let d = mean.len();
    let to_data = move |z: &[f64]| -> Vec<f64> {
        z.iter()
            .enumerate()
            .map(|(i, v)| mean[i % d] + scale[i % d] * v)
            .collect()
    };
    match obs {
        Observation::Coordinates {
            observed,
            values,
            noise_sd,
        } => Potential::Diagonal {
            idx: observed.clone(),
            y: observed
                .iter()
                .zip(values)
                .map(|(&j, v)| (v - mean[j]) / scale[j])
                .collect(),
            sd: observed.iter().map(|&j| noise_sd / scale[j]).collect(),
            log_jacobian: -observed.iter().map(|&j| scale[j].ln()).sum::<f64>(),
        },
        Observation::Linear { a, y, noise_sd } => {
            let scaled = a * DMatrix::from_diagonal(&DVector::from_column_slice(scale));
            let centred = DVector::from_column_slice(y) - a * DVector::from_column_slice(mean);
            Potential::Linear {
                a: scaled,
                y: centred,
                var: noise_sd * noise_sd,
            }
        }
        Observation::Likelihood(t) => Potential::Tempered(Box::new(move |z: &[f64]| {
            let x = to_data(z);
            let rows = x.len() / d;
            let xt = Tensor::from_vec(
                x.iter().map(|&v| v as f32).collect::<Vec<_>>(),
                (rows, d),
                &candle_core::Device::Cpu,
            )?;
            let lr: Vec<f64> = t
                .log_density(&xt)?
                .to_dtype(candle_core::DType::F64)?
                .to_vec1::<f64>()?;
            let g: Vec<f64> = t
                .grad_log_density(&xt)?
                .to_dtype(candle_core::DType::F64)?
                .flatten_all()?
                .to_vec1::<f64>()?
                .into_iter()
                .enumerate()
                .map(|(i, v)| scale[i % d] * v)
                .collect();
            Ok((lr, g))
        })),
    }
}
