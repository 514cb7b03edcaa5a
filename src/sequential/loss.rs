//! The log-variance loss on the sub-trajectories between resampling events.
//!
//! For a recorded simulation ([`super::system::Transitions`]) the incremental log weight of
//! particle i at step k, as a function of the control θ and the steps δ with the states held
//! fixed, is
//!
//! w_k,i(θ) = c_k,i + (|z′ − z − m_F|² − |z − z′ − m_B|²)/(4δ_k),
//!
//! m_F = clip(δ_k (g_k(z) + u_θ(z, k))), m_B = clip(δ_k (g_{k+1}(z′) − u_θ(z′, k+1))), where c_k,i
//! = log π_{k+1}(x′) − log π_k(x) does not depend on θ. Between two resampling events the
//! particles keep their identity and start with equal weights, so the optimal control makes the
//! segment's summed log weight the same for every particle: the loss is Σ_segments Var_i(Σ_k∈seg
//! w_k,i). All K·N transitions go through the network in two batched passes.

use super::SequentialSampler;
use super::system::Transitions;
use crate::error::Result;
use crate::nn::TimeFeatures;
use candle_core::{DType, Device, Tensor};

impl SequentialSampler {
    /// The loss on a recorded simulation (`None` when no segment has two usable particles).
    pub(crate) fn segment_loss(&self, rec: &Transitions) -> Result<Option<Tensor>> {
        let d = self.dim;
        let n = rec.particles;
        let k = self.betas.len() - 1;
        let dev = &self.device;
        let t = |v: &[f32]| Tensor::from_slice(v, (k * n, d), dev);
        let (z, sz, y, sy) = (t(&rec.z)?, t(&rec.sz)?, t(&rec.y)?, t(&rec.sy)?);
        let col = |v: Vec<f64>| -> Result<Tensor> {
            let v: Vec<f32> = v.iter().map(|&b| b as f32).collect();
            Ok(Tensor::from_vec(v, (k, 1, 1), dev)?)
        };
        let b0 = col(self.betas[..k].to_vec())?;
        let b1 = col(self.betas[1..].to_vec())?;
        let tempered = |z: &Tensor, sz: &Tensor, b: &Tensor| -> Result<Tensor> {
            let z3 = z.reshape((k, n, d))?;
            let s3 = sz.reshape((k, n, d))?;
            let one_minus = b.affine(-1.0, 1.0)?;
            Ok((z3.broadcast_mul(&one_minus)?.neg()? + s3.broadcast_mul(b)?)?)
        };
        let gz = tempered(&z, &sz, &b0)?;
        let gy = tempered(&y, &sy, &b1)?;
        let tf = self.time_features()?;
        let rows = |a: usize| TimeFeatures {
            embedding: tf.embedding.narrow(0, a, k).expect("rows"),
            coefficient: tf.coefficient.narrow(0, a, k).expect("rows"),
        };
        let u_f = self
            .net
            .forward(&z, &gz.reshape((k * n, d))?, &rows(0))?
            .reshape((k, n, d))?;
        let u_b = self
            .net
            .forward(&y, &gy.reshape((k * n, d))?, &rows(1))?
            .reshape((k, n, d))?;
        let delta = self.log_delta.exp()?.reshape((k, 1, 1))?;
        let clip = self.config.drift_clip;
        let m_f = (gz + u_f)?.broadcast_mul(&delta)?.clamp(-clip, clip)?;
        let m_b = (gy - u_b)?.broadcast_mul(&delta)?.clamp(-clip, clip)?;
        let (z3, y3) = (z.reshape((k, n, d))?, y.reshape((k, n, d))?);
        let r_f = ((&y3 - &z3)? - m_f)?;
        let r_b = ((&z3 - &y3)? - m_b)?;
        let diff = (r_f.sqr()?.sum(2)? - r_b.sqr()?.sum(2)?)?;
        let inv4d = (delta.reshape((k, 1))? * 4.0)?.recip()?;
        let kernel = diff.broadcast_mul(&inv4d)?.to_dtype(DType::F64)?;
        let mut total: Option<Tensor> = None;
        for &(a, b) in &rec.segments {
            let valid: Vec<u32> = (0..n as u32)
                .filter(|&i| (a..b).all(|s| rec.constant[s * n + i as usize].is_finite()))
                .collect();
            if valid.len() < 2 || b <= a {
                continue;
            }
            let consts: Vec<f64> = valid
                .iter()
                .map(|&i| (a..b).map(|s| rec.constant[s * n + i as usize]).sum())
                .collect();
            let idx = Tensor::from_vec(valid.clone(), valid.len(), dev)?;
            let seg = kernel.narrow(0, a, b - a)?.sum(0)?.index_select(&idx, 0)?;
            let lw =
                (seg + Tensor::from_vec(consts, valid.len(), &Device::Cpu)?.to_device(dev)?)?;
            let var = lw.broadcast_sub(&lw.mean_all()?)?.sqr()?.mean_all()?;
            total = Some(match total {
                Some(t) => (t + var)?,
                None => var,
            });
        }
        Ok(total)
    }
}
