//! Unit tests of the LGCP target against an independent f64 implementation of the model.

use super::*;
use nalgebra::Cholesky;
use std::sync::OnceLock;

fn plain() -> &'static Lgcp {
    static T: OnceLock<Lgcp> = OnceLock::new();
    T.get_or_init(|| Lgcp::new(false))
}

fn whitened() -> &'static Lgcp {
    static T: OnceLock<Lgcp> = OnceLock::new();
    T.get_or_init(|| Lgcp::new(true))
}

/// The model written out again in f64: K from a loop over grid index pairs, its own
/// Cholesky factor, quadratic forms by nalgebra's solve.
struct Direct {
    y: Vec<f64>,
    mu: f64,
    chol: Cholesky<f64, nalgebra::Dyn>,
    log_det_k: f64,
}

impl Direct {
    fn new() -> Self {
        let m = 40usize;
        let mut k = DMatrix::zeros(m * m, m * m);
        for (r1, c1, r2, c2) in (0..m).flat_map(|r1| {
            (0..m).flat_map(move |c1| {
                (0..m).flat_map(move |r2| (0..m).map(move |c2| (r1, c1, r2, c2)))
            })
        }) {
            let dist = ((r1 as f64 - r2 as f64).hypot(c1 as f64 - c2 as f64)) * 33.0 / 40.0;
            k[(r1 * m + c1, r2 * m + c2)] = 1.91 * (-dist).exp();
        }
        let chol = k.cholesky().unwrap();
        let log_det_k = 2.0 * chol.l().diagonal().iter().map(|v| v.ln()).sum::<f64>();
        Self {
            y: plain().counts().to_vec(),
            mu: 126f64.ln() - 0.955,
            chol,
            log_det_k,
        }
    }
    fn loglik(&self, x: &[f64]) -> f64 {
        x.iter()
            .zip(&self.y)
            .map(|(xi, yi)| xi * yi - xi.exp() / 1600.0)
            .sum()
    }
    fn plain(&self, x: &[f64]) -> f64 {
        let xc = DVector::from_iterator(1600, x.iter().map(|v| v - self.mu));
        let quad = xc.dot(&self.chol.solve(&xc));
        -0.5 * quad - 0.5 * (1600.0 * (2.0 * std::f64::consts::PI).ln() + self.log_det_k)
            + self.loglik(x)
    }
    fn latent(&self, z: &[f64]) -> Vec<f64> {
        let x = self.chol.l() * DVector::from_column_slice(z);
        x.iter().map(|v| v + self.mu).collect()
    }
    fn whitened(&self, z: &[f64]) -> f64 {
        -0.5 * z.iter().map(|v| v * v).sum::<f64>() - 800.0 * (2.0 * std::f64::consts::PI).ln()
            + self.loglik(&self.latent(z))
    }
}

fn direct() -> &'static Direct {
    static D: OnceLock<Direct> = OnceLock::new();
    D.get_or_init(Direct::new)
}

fn row(v: &[f64]) -> Tensor {
    let f: Vec<f32> = v.iter().map(|&x| x as f32).collect();
    Tensor::from_vec(f, (1, v.len()), &Device::Cpu).unwrap()
}

/// Two fixed test points: a latent field near the prior mean and a whitened point.
fn points() -> (Vec<f64>, Vec<f64>) {
    let mu = plain().prior_mean();
    let x = (0..1600)
        .map(|i| mu + 0.8 * (0.37 * i as f64).sin())
        .collect();
    let z = (0..1600)
        .map(|i| 0.9 * (0.11 * i as f64 + 1.0).cos())
        .collect();
    (x, z)
}

#[test]
fn counts_follow_the_reference_binning() {
    let pts = pines_points();
    assert_eq!(pts.len(), 126);
    assert!(pts.iter().flatten().all(|v| (0.0..=1.0).contains(v)));
    let y = plain().counts();
    assert_eq!((y.len(), y.iter().sum::<f64>()), (1600, 126.0));
    assert_eq!(y.iter().filter(|&&v| v > 0.0).count(), 111);
    assert_eq!(y.iter().cloned().fold(0.0, f64::max), 3.0);
    // The first pine (0.3006, 0.8930) lies in row 12, column 35.
    assert!(y[12 * 40 + 35] >= 1.0);
    // A point on the upper edge goes into the last bin.
    assert_eq!(bin_counts(&[[1.0, 0.0]], 4)[3 * 4], 1.0);
    let (t, w) = (plain(), whitened());
    assert_eq!((t.name(), t.dim(), t.log_z()), ("lgcp", 1600, Some(LOG_Z)));
    assert_eq!(
        (w.name(), w.suggested_sigma()),
        ("lgcp-whitened", Some(1.0))
    );
}

#[test]
fn log_densities_match_an_independent_f64_computation() {
    let (x, z) = points();
    let d = direct();
    let lp = plain()
        .log_density(&row(&x))
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()[0] as f64;
    let want = d.plain(&x);
    assert!(
        (lp - want).abs() < 1e-5 * want.abs(),
        "plain {lp} vs {want}"
    );
    let lw = whitened()
        .log_density(&row(&z))
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()[0] as f64;
    let want = d.whitened(&z);
    assert!(
        (lw - want).abs() < 1e-5 * want.abs(),
        "whitened {lw} vs {want}"
    );
}

/// γ̃_w(z) = γ̃(μ + Lz) det L, since N(μ + Lz; μ, K) det L = N(z; 0, I).
#[test]
fn whitened_is_plain_at_the_latent_field_plus_log_det_l() {
    let (_, z) = points();
    let x = direct().latent(&z);
    let lw = whitened()
        .log_density(&row(&z))
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()[0] as f64;
    let lp = plain()
        .log_density(&row(&x))
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()[0] as f64;
    let rhs = lp + plain().half_log_det_k();
    assert!((lw - rhs).abs() < 1e-5 * lw.abs(), "{lw} vs {rhs}");
    assert!((2.0 * plain().half_log_det_k() - direct().log_det_k).abs() < 1e-8 * 1600.0);
}

#[test]
fn gradients_match_finite_differences_and_autograd() {
    let (x, z) = points();
    let d = direct();
    type F = fn(&Direct, &[f64]) -> f64;
    let cases: [(&Lgcp, &Vec<f64>, F); 2] = [
        (plain(), &x, Direct::plain),
        (whitened(), &z, Direct::whitened),
    ];
    for (t, p, f) in cases {
        let g = t
            .grad_log_density(&row(p))
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        for j in [0, 515, 777, 1599] {
            let h = 1e-4;
            let (mut up, mut dn) = (p.clone(), p.clone());
            up[j] += h;
            dn[j] -= h;
            let fd = (f(d, &up) - f(d, &dn)) / (2.0 * h);
            assert!(
                (g[0][j] as f64 - fd).abs() < 1e-3 * fd.abs().max(1.0),
                "{} coordinate {j}: {} vs {fd}",
                t.name(),
                g[0][j]
            );
        }
        let ag = super::super::autograd_gradient(t, &row(p)).unwrap();
        let ag = ag.to_vec2::<f32>().unwrap();
        let scale = g[0].iter().fold(1f32, |m, v| m.max(v.abs()));
        for (a, c) in ag[0].iter().zip(&g[0]) {
            assert!((a - c).abs() < 1e-4 * scale, "{}: {a} vs {c}", t.name());
        }
    }
}

/// Newton's mode has zero gradient, and the Laplace log Z lands within 10 nats above the
/// reference (the posterior's skew makes it 9.4 high; see the module notes).
#[test]
fn laplace_finds_the_mode_and_a_nearby_log_z() {
    let fit = whitened().laplace();
    let g = whitened()
        .grad_log_density(&row(&fit.mode_z))
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    assert!(g[0].iter().all(|v| v.abs() < 1e-3), "gradient at the mode");
    assert!(
        fit.log_z > LOG_Z && fit.log_z < LOG_Z + 10.0,
        "{}",
        fit.log_z
    );
    let x = direct().latent(&fit.mode_z);
    assert!(x.iter().zip(&fit.mode_x).all(|(a, b)| (a - b).abs() < 1e-8));
}
