//! The particle system of the sequential sampler: controlled Langevin transitions with exact
//! incremental weights, adaptive resampling (multinomial by default, or systematic) and HMC
//! moves, in f64 on the host (the control network runs in f32, on the CPU fast path
//! [`FastDrift`] or through candle).

use super::Resampling;
use super::SequentialSampler;
use crate::baseline::final_set;
use crate::error::{DsbError, Result};
use crate::estimate::{eve_log_z_stderr, log_sum_exp, multinomial_resample, systematic_resample};
use crate::mcmc::{Population, Preconditioner, TemperedMove, tempered};
use crate::nn::FastDrift;
use crate::sampler::SampleSet;
use crate::target::{Target, Want, Whitened, evaluate};
use candle_core::Tensor;

use rand_distr::StandardNormal;
use serde::Serialize;

/// The transitions of one simulation, kept for the loss: per step k (outer) and particle
/// (inner), the whitened state before the transition and after it, the whitened target score
/// s ⊙ ∇log γ̃ at both, and the θ-independent part log π_{k+1}(x′) − log π_k(x) of the weight.
#[derive(Debug, Clone)]
pub(crate) struct Transitions {
    pub(crate) particles: usize,
    pub(crate) z: Vec<f32>,
    pub(crate) sz: Vec<f32>,
    pub(crate) y: Vec<f32>,
    pub(crate) sy: Vec<f32>,
    pub(crate) constant: Vec<f64>,
    /// Step ranges between resampling events: the particles keep their identity inside each.
    pub(crate) segments: Vec<(usize, usize)>,
}

/// The outcome of a run of the particle system.
#[derive(Debug, Clone, Serialize)]
pub struct SequentialRun {
    /// The final weighted particles (in the target's coordinates); their estimates hold log Ẑ,
    /// its Lee–Whiteley standard error and the final ESS (the ELBO does not apply: NaN).
    #[serde(skip)]
    pub samples: SampleSet,
    /// log Ẑ: the sum over steps of the log mean incremental weight.
    pub log_z: f64,
    /// Standard error of log Ẑ (Lee–Whiteley, from the Eve indices).
    pub log_z_stderr: f64,
    /// Distinct Eve indices (time-0 ancestors) among the final particles.
    pub eves: usize,
    /// Resampling events.
    pub resamplings: usize,
    /// HMC moves made per particle.
    pub moves: usize,
    /// Mean acceptance probability of the HMC moves (NaN without moves).
    pub acceptance: f64,
    /// Target gradient evaluations of this run (per particle and evaluation).
    pub gradient_evaluations: u64,
    /// The transitions, when recorded for training.
    #[serde(skip)]
    pub(crate) transitions: Option<Transitions>,
}

/// Half the squared norm of each row of length `d`.
fn row_sq(v: &[f64], d: usize) -> Vec<f64> {
    v.chunks(d)
        .map(|r| 0.5 * r.iter().map(|a| a * a).sum::<f64>())
        .collect()
}

/// The control network on the CPU fast path for a run of `n` particles: its per-row layers and
/// the host time features of every step.
struct HostControl {
    fast: FastDrift,
    embedding: Vec<f32>,
    coefficient: Vec<f32>,
}

impl HostControl {
    /// [`SequentialSampler::control`] at step k, to f32 rounding.
    fn control(&mut self, k: usize, z: &[f64], g: &[f64]) -> Vec<f64> {
        let f32s = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<_>>();
        let times = (&self.embedding[..], &self.coefficient[..]);
        let u = self.fast.forward_at(k, &f32s(z), &f32s(g), times);
        u.iter().map(|&v| f64::from(v)).collect()
    }
}

impl SequentialSampler {
    /// The control network on the fast path for runs of `n` particles (`None` off the CPU or
    /// with the fast path switched off).
    fn host_control(&self, n: usize) -> Result<Option<HostControl>> {
        if !self.uses_fast_path() {
            return Ok(None);
        }
        let mut fast = FastDrift::new(&self.net)?;
        fast.prepare(n, 1);
        let (embedding, coefficient) = self.time_features()?.to_host()?;
        Ok(Some(HostControl {
            fast,
            embedding,
            coefficient,
        }))
    }

    /// The control u_θ(z, k) at whitened states `z` (`n` rows) with whitened tempered scores `g`.
    fn control(
        &self,
        z: &[f64],
        g: &[f64],
        n: usize,
        tf: &super::TimeFeatures,
    ) -> Result<Vec<f64>> {
        let d = self.dim;
        let zt = Tensor::from_vec(
            z.iter().map(|&v| v as f32).collect::<Vec<_>>(),
            (n, d),
            &self.device,
        )?;
        let gt = Tensor::from_vec(
            g.iter().map(|&v| v as f32).collect::<Vec<_>>(),
            (n, d),
            &self.device,
        )?;
        let u = self.net.forward(&zt, &gt, tf)?.detach();
        Ok(u.flatten_all()?
            .to_vec1::<f32>()?
            .iter()
            .map(|&v| v as f64)
            .collect())
    }

    /// Whitened states, whitened target scores and whitened tempered scores at β of the
    /// population's particles.
    fn whiten(&self, pop: &Population, beta: f64) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        let d = self.dim;
        let (m, s) = (&self.start.mean, &self.start.scale);
        let z: Vec<f64> = pop
            .x
            .iter()
            .enumerate()
            .map(|(i, x)| (x - m[i % d]) / s[i % d])
            .collect();
        let sz: Vec<f64> = pop
            .g
            .iter()
            .enumerate()
            .map(|(i, g)| g * s[i % d])
            .collect();
        let gz = z
            .iter()
            .zip(&sz)
            .map(|(z, g)| -(1.0 - beta) * z + beta * g)
            .collect();
        (z, sz, gz)
    }

    /// Runs the particle system with `n` particles from π₀ to the target, recording the
    /// transitions when `record`; with a whitening, on the whitened target, and the samples are
    /// mapped back to the target's coordinates.
    pub(crate) fn run(
        &mut self,
        target: &dyn Target,
        n: usize,
        rng: &mut impl rand::Rng,
        record: bool,
    ) -> Result<SequentialRun> {
        // From here on, the target in the sampler's own coordinates.
        let map = self.whitening.clone();
        let whitened = map.as_ref().map(|m| Whitened::new(target, m)).transpose()?;
        let target: &dyn Target = match &whitened {
            Some(w) => w,
            None => target,
        };
        crate::target::check_dimension(target, self.dim)?;
        let d = self.dim;
        let k_steps = self.betas.len() - 1;
        let tf_all = self.time_features()?;
        let mut host = self.host_control(n)?;
        let mut control = |k: usize, z: &[f64], g: &[f64]| -> Result<Vec<f64>> {
            match host.as_mut() {
                Some(h) => Ok(h.control(k, z, g)),
                None => self.control(z, g, n, &tf_all.row(k)?),
            }
        };
        let deltas = self.langevin_steps()?;
        let clip = self.config.drift_clip;
        let (m, s) = (self.start.mean.clone(), self.start.scale.clone());
        // π₀ draws.
        let mut x = Vec::with_capacity(n * d);
        for _ in 0..n {
            for j in 0..d {
                let e: f64 = rng.sample(StandardNormal);
                x.push(m[j] + s[j] * e);
            }
        }
        let l0 = x.chunks(d).map(|r| self.start.log_density(r)).collect();
        let (l, g) = evaluate(target, &x, d, Want::Both)?;
        let mut grads = n as u64;
        let mut pop = Population {
            dim: d,
            x,
            l0,
            l,
            g,
            log_w: vec![-(n as f64).ln(); n],
        };
        let mut eve: Vec<usize> = (0..n).collect();
        let mut rec = record.then(|| Transitions {
            particles: n,
            z: Vec::with_capacity(k_steps * n * d),
            sz: Vec::with_capacity(k_steps * n * d),
            y: Vec::with_capacity(k_steps * n * d),
            sy: Vec::with_capacity(k_steps * n * d),
            constant: Vec::with_capacity(k_steps * n),
            segments: Vec::new(),
        });
        let mut seg_start = 0;
        let (mut log_z, mut resamplings, mut moves) = (0.0f64, 0usize, 0usize);
        let (mut acc_sum, mut acc_n) = (0.0, 0usize);
        let mut pre = Preconditioner::Diagonal(s.clone());
        let mut step_size = 1.0 / (d as f64).powf(0.25);
        for (k, &delta) in deltas.iter().enumerate() {
            let (b0, b1) = (self.betas[k], self.betas[k + 1]);
            let (z, sz, gz) = self.whiten(&pop, b0);
            let u = control(k, &z, &gz)?;
            let noise_sd = (2.0 * delta).sqrt();
            let xi: Vec<f64> = (0..n * d).map(|_| rng.sample(StandardNormal)).collect();
            let y: Vec<f64> = (0..n * d)
                .map(|i| z[i] + (delta * (gz[i] + u[i])).clamp(-clip, clip) + noise_sd * xi[i])
                .collect();
            let x_new: Vec<f64> = y
                .iter()
                .enumerate()
                .map(|(i, v)| m[i % d] + s[i % d] * v)
                .collect();
            let (l_new, g_new) = evaluate(target, &x_new, d, Want::Both)?;
            grads += n as u64;
            let l0_new: Vec<f64> = x_new.chunks(d).map(|r| self.start.log_density(r)).collect();
            let new_pop = Population {
                dim: d,
                x: x_new,
                l0: l0_new,
                l: l_new,
                g: g_new,
                log_w: Vec::new(),
            };
            let (_, sy, gy) = self.whiten(&new_pop, b1);
            let u_back = control(k + 1, &y, &gy)?;
            let back: Vec<f64> = (0..n * d)
                .map(|i| {
                    let mb = (delta * (gy[i] - u_back[i])).clamp(-clip, clip);
                    (z[i] - y[i] - mb) / noise_sd
                })
                .collect();
            let (back_e, fwd_e) = (row_sq(&back, d), row_sq(&xi, d));
            let mut inc = Vec::with_capacity(n);
            let mut constant = Vec::with_capacity(n);
            for i in 0..n {
                let c =
                    tempered(new_pop.l0[i], new_pop.l[i], b1) - tempered(pop.l0[i], pop.l[i], b0);
                let c = if c.is_nan() { f64::NEG_INFINITY } else { c };
                constant.push(c);
                inc.push(pop.log_w[i] + c - back_e[i] + fwd_e[i]);
            }
            let lse = log_sum_exp(&inc);
            if !lse.is_finite() {
                return Err(DsbError::InvalidInput(format!(
                    "sequential sampler: every particle has zero weight at step {} of {k_steps} \
                     (β = {b1:.3e}); the target's density is not finite where the particles are: \
                     check the target, or lower --lr",
                    k + 1
                )));
            }
            log_z += lse;
            let log_w: Vec<f64> = inc.iter().map(|v| v - lse).collect();
            if let Some(r) = rec.as_mut() {
                r.z.extend(z.iter().map(|&v| v as f32));
                r.sz.extend(sz.iter().map(|&v| v as f32));
                r.y.extend(y.iter().map(|&v| v as f32));
                r.sy.extend(sy.iter().map(|&v| v as f32));
                r.constant.extend(constant);
            }
            pop = Population { log_w, ..new_pop };
            let ess = crate::baseline::ess_fraction(&pop.log_w);
            if k + 1 == k_steps {
                continue;
            }
            let n_moves = if ess < self.config.resample_threshold {
                let idx = match self.config.resampling {
                    Resampling::Multinomial => multinomial_resample(&pop.log_w, n, rng),
                    Resampling::Systematic => systematic_resample(&pop.log_w, n, rng),
                };
                pop.select(&idx);
                eve = idx.iter().map(|&i| eve[i]).collect();
                resamplings += 1;
                if let Some(r) = rec.as_mut() {
                    r.segments.push((seg_start, k + 1));
                }
                seg_start = k + 1;
                self.config.moves
            } else {
                self.config.step_moves
            };
            if n_moves > 0 {
                // HMC leaves π_{k+1} invariant, so the weights are unchanged; a move splits
                // no segment of the loss either, whose states are the transitions' own.
                let w: Vec<f64> = pop.log_w.iter().map(|l| l.exp()).collect();
                pre = Preconditioner::from_population(&pop.x, d, &w, false, &pre);
                let mut counts = (0u64, 0u64);
                let mover = TemperedMove {
                    target,
                    start: &self.start,
                    beta: b1,
                    pre: &pre,
                };
                for _ in 0..n_moves {
                    let acc = mover
                        .hmc(
                            &mut pop,
                            step_size,
                            self.config.leapfrog_steps,
                            rng,
                            &mut counts,
                        )
                        .map_err(|e| DsbError::InvalidInput(format!("HMC move: {e}")))?;
                    step_size = (step_size * (acc - 0.65).exp()).clamp(1e-4, 10.0);
                    acc_sum += acc;
                    acc_n += 1;
                }
                grads += counts.1;
                moves += n_moves;
            }
        }
        if let Some(r) = rec.as_mut() {
            r.segments.push((seg_start, k_steps));
        }
        self.grad_evals += grads;
        let eves = {
            let mut e = eve.clone();
            e.sort_unstable();
            e.dedup();
            e.len()
        };
        let stderr = eve_log_z_stderr(&pop.log_w, &eve, resamplings);
        let mut samples = final_set(&pop, log_z);
        samples.estimates.log_z_stderr = stderr;
        if let Some(map) = &map {
            samples.samples = map.to_original(&samples.samples);
        }
        Ok(SequentialRun {
            samples,
            log_z,
            log_z_stderr: stderr,
            eves,
            resamplings,
            moves,
            acceptance: if acc_n > 0 {
                acc_sum / acc_n as f64
            } else {
                f64::NAN
            },
            gradient_evaluations: grads,
            transitions: rec,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::{SequentialConfig, geometric_betas};
    use super::*;
    use crate::mcmc::DiagGaussian;
    use crate::target::Funnel;
    use candle_core::Device;
    use rand::{SeedableRng, rngs::StdRng};

    /// The control network on the CPU fast path gives the candle path's runs: the same log Ẑ,
    /// resamplings, weights and samples to f32 rounding, with a perturbed (non-zero) control,
    /// recorded for training and not.
    #[test]
    fn fast_control_equals_the_candle_path() {
        let target = Funnel::new(3);
        let run = |fast: bool, record: bool| {
            let cfg = SequentialConfig {
                steps: 12,
                particles: 200,
                langevin_step: 0.05,
                iterations: 0,
                width: 16,
                depth: 2,
                pilot_particles: 0,
                ..SequentialConfig::default()
            };
            let start = DiagGaussian {
                mean: vec![0.0; 3],
                scale: vec![2.0; 3],
            };
            let mut s =
                SequentialSampler::new(start, geometric_betas(12), cfg, 0, &Device::Cpu).unwrap();
            s.set_fast_path(fast);
            s.perturb_control(0.5, 7).unwrap();
            let mut rng = StdRng::seed_from_u64(3);
            let r = s.run(&target, 200, &mut rng, record).unwrap();
            let y = r.transitions.map(|t| t.y).unwrap_or_default();
            (
                r.log_z,
                r.resamplings,
                r.samples.log_w,
                r.samples.samples,
                y,
            )
        };
        for record in [false, true] {
            let (fast, slow) = (run(true, record), run(false, record));
            assert!(
                (fast.0 - slow.0).abs() < 1e-4,
                "log Z {} vs {}",
                fast.0,
                slow.0
            );
            assert!(
                fast.1 == slow.1 && slow.1 > 0,
                "resamplings {} vs {}",
                fast.1,
                slow.1
            );
            for (a, b) in fast.2.iter().zip(&slow.2) {
                assert!((a - b).abs() < 1e-4 * (1.0 + b.abs()), "log w {a} vs {b}");
            }
            for (a, b) in fast.3.iter().zip(&slow.3).chain(fast.4.iter().zip(&slow.4)) {
                assert!((a - b).abs() < 1e-4 * (1.0 + b.abs()), "state {a} vs {b}");
            }
            assert_eq!(fast.4.len(), if record { 12 * 200 * 3 } else { 0 });
        }
    }
}
