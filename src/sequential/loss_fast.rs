//! The segment loss ([`SequentialSampler::segment_loss`]) on the CPU fast path: both network
//! passes (u_θ(z, k) and u_θ(z′, k + 1) over all K·N transitions) through [`FastDrift`], and the
//! gradient carried back by hand to the network and to the Langevin steps δ_k = e^{log δ_k}:
//!
//! with v_F = δ(g(z) + u_F), v_B = δ(g(z′) − u_B), m = clip(v), r_F = z′ − z − m_F,
//! r_B = z − z′ − m_B, the kernel w_k,i = (|r_F|² − |r_B|²)/(4δ_k) and the loss
//! L = Σ_segments Var_i(Σ_k∈seg w_k,i + c_i):
//! ∂L/∂w_k,i = 2(lw_i − mean)/m for the m usable particles of k's segment, then
//! ∂L/∂m_F = −2 r_F ∂L/∂w /(4δ), ∂L/∂m_B = 2 r_B ∂L/∂w /(4δ), through the clip where |v| ≤ clip,
//! ∂L/∂u_F = δ ∂L/∂v_F, ∂L/∂u_B = −δ ∂L/∂v_B, and
//! ∂L/∂δ = Σ ∂L/∂v_F (g + u_F) + Σ ∂L/∂v_B (g − u_B) − Σ_i ∂L/∂w (|r_F|² − |r_B|²)/(4δ²).
//!
//! The same loss and gradients as candle's autograd on [`SequentialSampler::segment_loss`], to
//! f32 rounding (tested).

use super::SequentialSampler;
use super::system::Transitions;
use crate::error::Result;
use crate::nn::FastDrift;
use candle_core::Tensor;
use candle_core::backprop::GradStore;

/// The two passes' per-row layers, kept from iteration to iteration (their buffers reused).
#[derive(Debug)]
pub(crate) struct FastSegments {
    forward: FastDrift,
    backward: FastDrift,
}

impl SequentialSampler {
    /// The fast path's networks for [`SequentialSampler::segment_loss_fast`] (`None` off the CPU
    /// or with the fast path switched off).
    pub(crate) fn fast_segments(&self) -> Result<Option<FastSegments>> {
        if !self.uses_fast_path() {
            return Ok(None);
        }
        Ok(Some(FastSegments {
            forward: FastDrift::new(&self.net)?,
            backward: FastDrift::new(&self.net)?,
        }))
    }

    /// [`SequentialSampler::segment_loss`]'s value and the gradients of every parameter (the
    /// network's and log δ), on the fast path; `None` when no segment has two usable particles.
    pub(crate) fn segment_loss_fast(
        &self,
        rec: &Transitions,
        nets: &mut FastSegments,
    ) -> Result<Option<(f64, GradStore)>> {
        let (d, n, k) = (self.dim, rec.particles, self.betas.len() - 1);
        let rows = k * n;
        // The tempered scores g = −(1 − β)z + β s at the steps' temperatures (β_k for z, β_{k+1}
        // for z′), as candle computes them.
        let tempered = |z: &[f32], sz: &[f32], shift: usize| -> Vec<f32> {
            let mut g = vec![0.0f32; rows * d];
            for (s, gs) in g.chunks_exact_mut(n * d).enumerate() {
                let b = self.betas[s + shift] as f32;
                let one_minus = 1.0 - b;
                let src = z[s * n * d..(s + 1) * n * d].iter();
                for ((v, &x), &sc) in gs.iter_mut().zip(src).zip(&sz[s * n * d..]) {
                    *v = -(x * one_minus) + sc * b;
                }
            }
            g
        };
        let (gz, gy) = (tempered(&rec.z, &rec.sz, 0), tempered(&rec.y, &rec.sy, 1));
        let tf = self.time_features()?;
        let (emb, coef) = tf.to_host()?;
        let width = emb.len() / (k + 1);
        nets.forward.refresh(&self.net)?;
        nets.backward.refresh(&self.net)?;
        let u_f = nets
            .forward
            .forward(&rec.z, &gz, &emb[..k * width], &coef[..k * d], k);
        let u_b = nets
            .backward
            .forward(&rec.y, &gy, &emb[width..], &coef[d..], k);
        let deltas: Vec<f32> = self.log_delta.exp()?.to_vec1::<f32>()?;
        let clip = self.config.drift_clip as f32;
        // Per transition: the kernel w (f32, then f64 as in candle) and the residuals.
        let (mut r_f, mut r_b) = (vec![0.0f32; rows * d], vec![0.0f32; rows * d]);
        let mut kernel = vec![0.0f64; rows];
        let mut diff = vec![0.0f32; rows];
        for r in 0..rows {
            let (s, cols) = (r / n, r * d..(r + 1) * d);
            let delta = deltas[s];
            let inv4d = 1.0 / (delta * 4.0);
            let (mut sf, mut sb) = (0.0f32, 0.0f32);
            for i in cols {
                let m_f = ((gz[i] + u_f[i]) * delta).clamp(-clip, clip);
                let m_b = ((gy[i] - u_b[i]) * delta).clamp(-clip, clip);
                r_f[i] = (rec.y[i] - rec.z[i]) - m_f;
                r_b[i] = (rec.z[i] - rec.y[i]) - m_b;
                sf += r_f[i] * r_f[i];
                sb += r_b[i] * r_b[i];
            }
            diff[r] = sf - sb;
            kernel[r] = f64::from(diff[r] * inv4d);
        }
        // The loss and ∂L/∂w per transition.
        let mut d_kernel = vec![0.0f32; rows];
        let mut total: Option<f64> = None;
        for &(a, b) in &rec.segments {
            let valid: Vec<usize> = (0..n)
                .filter(|&i| (a..b).all(|s| rec.constant[s * n + i].is_finite()))
                .collect();
            if valid.len() < 2 || b <= a {
                continue;
            }
            let lw: Vec<f64> = valid
                .iter()
                .map(|&i| {
                    let c: f64 = (a..b).map(|s| rec.constant[s * n + i]).sum();
                    (a..b).map(|s| kernel[s * n + i]).sum::<f64>() + c
                })
                .collect();
            let m = lw.len() as f64;
            let mean = lw.iter().sum::<f64>() / m;
            let var = lw.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / m;
            total = Some(total.unwrap_or(0.0) + var);
            for (&i, v) in valid.iter().zip(&lw) {
                let g = (2.0 * (v - mean) / m) as f32;
                for s in a..b {
                    d_kernel[s * n + i] = g;
                }
            }
        }
        let Some(total) = total else {
            return Ok(None);
        };
        // Back through the kernel, the clips and the steps.
        let (mut du_f, mut du_b) = (vec![0.0f32; rows * d], vec![0.0f32; rows * d]);
        let mut d_delta = vec![0.0f64; k];
        for r in 0..rows {
            let g = d_kernel[r];
            if g == 0.0 {
                continue;
            }
            let (s, cols) = (r / n, r * d..(r + 1) * d);
            let delta = deltas[s];
            let inv4d = 1.0 / (delta * 4.0);
            let gd = g * inv4d;
            let mut dd = -f64::from(g * diff[r]) * f64::from(inv4d * inv4d) * 4.0;
            for i in cols {
                let v_f = (gz[i] + u_f[i]) * delta;
                let v_b = (gy[i] - u_b[i]) * delta;
                let inside = |v: f32| v >= -clip && v <= clip;
                let dv_f = if inside(v_f) { -2.0 * r_f[i] * gd } else { 0.0 };
                let dv_b = if inside(v_b) { 2.0 * r_b[i] * gd } else { 0.0 };
                du_f[i] = dv_f * delta;
                du_b[i] = -dv_b * delta;
                dd += f64::from(dv_f * (gz[i] + u_f[i]) + dv_b * (gy[i] - u_b[i]));
            }
            d_delta[s] += dd;
        }
        let grads_f = nets.forward.backward(&du_f);
        let grads_b = nets.backward.backward(&du_b);
        // The two passes' time-feature gradients on the K + 1 rows (z at rows 0..K, z′ at 1..K+1).
        let mut both = grads_f;
        both.add_at(&grads_b, 1);
        let mut store = FastDrift::all_gradients(&self.net, &tf, &both)?;
        // ∂L/∂log δ = δ ∂L/∂δ.
        let d_log: Vec<f32> = (d_delta.iter().zip(&deltas))
            .map(|(g, &dl)| (g * f64::from(dl)) as f32)
            .collect();
        let g = Tensor::from_vec(d_log, k, &self.device)?;
        store.insert(&self.log_delta, g);
        Ok(Some((total, store)))
    }
}

#[cfg(test)]
mod tests {
    use super::super::{SequentialConfig, geometric_betas};
    use super::*;
    use crate::mcmc::DiagGaussian;
    use crate::target::{Funnel, Target};
    use candle_core::Device;
    use rand::{SeedableRng, rngs::StdRng};

    fn sampler(cfg: SequentialConfig) -> SequentialSampler {
        let start = DiagGaussian {
            mean: vec![0.0; 3],
            scale: vec![2.0; 3],
        };
        let betas = geometric_betas(cfg.steps);
        SequentialSampler::new(start, betas, cfg, 0, &Device::Cpu).unwrap()
    }

    fn config() -> SequentialConfig {
        SequentialConfig {
            steps: 10,
            langevin_step: 0.3,
            drift_clip: 2.0,
            iterations: 6,
            batch: 150,
            refresh: 2,
            width: 16,
            depth: 2,
            pilot_particles: 0,
            ..SequentialConfig::default()
        }
    }

    /// On a recorded simulation with several segments and some clipped drifts, the fast path's
    /// loss and the gradients of every parameter (network and log δ) equal candle's autograd on
    /// [`SequentialSampler::segment_loss`] to f32 rounding.
    #[test]
    fn fast_segment_loss_equals_candle() {
        let target = Funnel::new(3);
        let mut s = sampler(config());
        s.perturb_control(0.8, 7).unwrap();
        let mut rng = StdRng::seed_from_u64(3);
        let rec = s.run(&target, 150, &mut rng, true).unwrap();
        let rec = rec.transitions.unwrap();
        assert!(rec.segments.len() >= 2, "segments {:?}", rec.segments);
        let want = s.segment_loss(&rec).unwrap().unwrap();
        let want_value = want.to_scalar::<f64>().unwrap();
        let want_grads = want.backward().unwrap();
        let mut nets = s.fast_segments().unwrap().unwrap();
        let (value, grads) = s.segment_loss_fast(&rec, &mut nets).unwrap().unwrap();
        assert!(want_value > 0.1, "a loss to fit: {want_value}");
        assert!(
            (value - want_value).abs() <= 1e-4 * want_value,
            "loss {value} vs {want_value}"
        );
        crate::test_support::assert_gradients_close(&s.params, &want_grads, &grads, 1e-3, "seg");
        let g = grads.get(&s.log_delta).unwrap().to_vec1::<f32>().unwrap();
        assert!(g.iter().all(|v| v.is_finite()) && g.iter().any(|v| v.abs() > 1e-3));
    }

    /// Training with the fast loss follows training with candle's: the same losses and weights
    /// after a few iterations (fresh simulations among them), to f32 rounding carried through.
    #[test]
    fn fast_training_follows_the_candle_path() {
        let target = Funnel::new(3);
        let run = |fast: bool| {
            let mut s = sampler(config());
            s.set_fast_path(fast);
            let mut rng = StdRng::seed_from_u64(5);
            let mut losses = Vec::new();
            s.train(&target as &dyn Target, &mut rng, |it| losses.push(it.loss))
                .unwrap();
            let w: Vec<f32> = (s.params.named().iter())
                .flat_map(|(_, v)| v.flatten_all().unwrap().to_vec1::<f32>().unwrap())
                .collect();
            (losses, w)
        };
        let (fast, slow) = (run(true), run(false));
        assert_eq!(fast.0.len(), 6);
        for (a, b) in fast.0.iter().zip(&slow.0) {
            assert!((a - b).abs() <= 1e-3 * b.abs().max(1.0), "loss {a} vs {b}");
        }
        for (a, b) in fast.1.iter().zip(&slow.1) {
            assert!((a - b).abs() <= 1e-4, "weight {a} vs {b}");
        }
        let start = sampler(config());
        let moved = (start.params.named().iter())
            .flat_map(|(_, v)| v.flatten_all().unwrap().to_vec1::<f32>().unwrap())
            .zip(&fast.1)
            .filter(|(a, b)| (a - *b).abs() > 1e-4)
            .count();
        assert!(moved > 50, "training moved {moved} weights");
    }
}
