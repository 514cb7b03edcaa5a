//! The logistic-regression benchmark targets against their reference log Z values.
//!
//! An independent estimate: importance sampling from the Laplace approximation N(ŵ, c²H⁻¹)
//! (mode ŵ by Newton's method in f64, H the Hessian of −log γ̃ there, c = 1.2 to cover the
//! tails), 100 000 draws, with log γ̃ evaluated by the target itself. This checks that the
//! target's model (standardisation, intercept position, labels, normalised prior) is the one
//! the reference values were computed for: |log Ẑ − log Z_ref| must be below 5 standard errors
//! of the estimate plus 0.01 (the reference's own ±0.005 and the f32 evaluation of log γ̃).

use candle_core::{Device, Tensor};
use dsb::estimate::Estimates;
use dsb::prelude::*;
use dsb::target::LogisticRegression;
use nalgebra::{DMatrix, DVector};
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};

fn laplace_is(t: &LogisticRegression, draws: usize) -> Estimates {
    let (rows, y) = t.design().unwrap();
    let (n, d) = (rows.len(), t.dim());
    let x = DMatrix::from_fn(n, d, |i, j| rows[i][j]);
    let y = DVector::from_vec(y);
    let s2 = t.prior_scale().powi(2);
    let mut w = DVector::zeros(d);
    let mut hess = DMatrix::identity(d, d);
    for _ in 0..50 {
        let eta = &x * &w;
        let p = eta.map(|e| 1.0 / (1.0 + (-e).exp()));
        let grad = x.transpose() * (&y - &p) - &w / s2;
        let wts = p.map(|v| v * (1.0 - v));
        let xw = DMatrix::from_fn(n, d, |i, j| x[(i, j)] * wts[i]);
        hess = x.transpose() * xw + DMatrix::identity(d, d) / s2;
        let step = hess.clone().cholesky().unwrap().solve(&grad);
        w += &step;
        if step.norm() < 1e-10 {
            break;
        }
    }
    let c = 1.2;
    let cov = hess.cholesky().unwrap().inverse() * (c * c);
    let l = cov.clone().cholesky().unwrap().l();
    let log_det: f64 = (0..d).map(|i| 2.0 * l[(i, i)].ln()).sum();
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let mut log_w = Vec::with_capacity(draws);
    for _ in 0..draws / 1000 {
        let mut batch = Vec::with_capacity(1000 * d);
        let mut log_q = Vec::with_capacity(1000);
        for _ in 0..1000 {
            let z = DVector::from_fn(d, |_, _| StandardNormal.sample(&mut rng));
            let v = &w + &l * &z;
            log_q.push(
                -0.5 * z.norm_squared()
                    - 0.5 * log_det
                    - 0.5 * d as f64 * (2.0 * std::f64::consts::PI).ln(),
            );
            batch.extend(v.iter().map(|&a| a as f32));
        }
        let xt = Tensor::from_vec(batch, (1000, d), &Device::Cpu).unwrap();
        let lp = t.log_density(&xt).unwrap().to_vec1::<f32>().unwrap();
        log_w.extend(lp.iter().zip(&log_q).map(|(&a, b)| a as f64 - b));
    }
    Estimates::from_log_weights(&log_w)
}

#[test]
fn benchmark_targets_match_their_reference_log_z() {
    for t in [
        LogisticRegression::ionosphere().unwrap(),
        LogisticRegression::sonar().unwrap(),
        LogisticRegression::german_credit().unwrap(),
    ] {
        let e = laplace_is(&t, 100_000);
        let reference = t.log_z().unwrap();
        eprintln!(
            "{}: Laplace IS {:.4} ± {:.4} (ESS {:.2}) vs reference {reference}",
            t.name(),
            e.log_z,
            e.log_z_stderr,
            e.ess
        );
        assert!(
            (e.log_z - reference).abs() < 5.0 * e.log_z_stderr + 0.01,
            "{}: {} ± {} vs {reference}",
            t.name(),
            e.log_z,
            e.log_z_stderr
        );
    }
}
