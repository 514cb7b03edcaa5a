//! The drift network of the backward (and forward) processes: an MLP with a sinusoidal time
//! embedding in the "PIS-grad" form.
//!
//! For a state x at time t with target score g = clip(∇log γ̃(x)) (a stop-gradient input), the
//! network returns
//!
//! h(t, x) = clip( NN₁(x/σ, ℓg, e(t)) / σ + κ(t) ⊙ NN₂(e(t)) ⊙ g )
//!
//! (divisions by σ elementwise, per coordinate) where e(t) is an MLP of sinusoidal features of t/T
//! and κ(t) is a fixed envelope supplied by the
//! sampler (see [`crate::sampler`]): the exact score coefficient for a Gaussian bump of width ℓ,
//! which keeps the score term from dominating at large t where the drift is most sensitive. The
//! last layers of NN₁ and NN₂ start at zero, so an untrained network returns h = 0 and the
//! sampler starts as the exact reversal of the reference from the prior (it samples the prior). Clips: g elementwise to ±`score_clip` before it enters (the anchors' "score
//! input" clip), and h to ±`output_clip` (their "network output" clip).

use super::params::{Init, ParamStore};
use crate::error::Result;
use candle_core::{Device, Tensor};
use candle_nn::{Linear, Module};
use rand::SeedableRng;
use rand::rngs::StdRng;

/// Number of sinusoidal frequencies in the time embedding (the embedding has twice as many
/// features).
const FREQS: usize = 16;

/// Number of sinusoidal time features fed to a time MLP ([`sinusoidal_features`],
/// [`sinusoidal_embedding`]).
pub(crate) const TIME_FEATURES: usize = 2 * FREQS;

/// Angular frequency of the `j`-th time feature: 2π·1000^(j/(FREQS−1))/8, i.e. from 1/8 to
/// 125 cycles over [0, 1], geometrically spaced.
fn time_frequency(j: usize) -> f64 {
    2.0 * std::f64::consts::PI * 1000f64.powf(j as f64 / (FREQS - 1) as f64) / 8.0
}

/// Sinusoidal features of the normalised times `u ∈ [0, 1]`, row-major `[u.len(), TIME_FEATURES]`:
/// for each frequency its sine then its cosine.
fn sinusoidal_features(u: &[f64]) -> Vec<f32> {
    let mut feats = Vec::with_capacity(u.len() * TIME_FEATURES);
    for &t in u {
        for j in 0..FREQS {
            let w = time_frequency(j);
            feats.push((w * t).sin() as f32);
            feats.push((w * t).cos() as f32);
        }
    }
    feats
}

/// The features of [`sinusoidal_features`] computed on the device from a tensor of normalised
/// times `[n]`, giving `[n, TIME_FEATURES]` (in f32, so equal to them up to rounding of the
/// angle).
pub(crate) fn sinusoidal_embedding(u: &Tensor) -> Result<Tensor> {
    let n = u.dim(0)?;
    let w: Vec<f32> = (0..FREQS).map(|j| time_frequency(j) as f32).collect();
    let w = Tensor::from_vec(w, (1, FREQS), u.device())?;
    let angle = u
        .to_dtype(candle_core::DType::F32)?
        .reshape((n, 1))?
        .broadcast_mul(&w)?;
    Ok(Tensor::stack(&[angle.sin()?, angle.cos()?], 2)?.reshape((n, TIME_FEATURES))?)
}

/// The PIS-grad drift network.
#[derive(Debug)]
pub struct DriftNet {
    dim: usize,
    time_in: Linear,
    time_hidden: Linear,
    first: Linear,
    hidden: Vec<Linear>,
    out: Linear,
    /// NN₂ (hidden and output layer); absent for a network that does not see the score.
    coef: Option<(Linear, Linear)>,
    output_clip: f64,
    inv_sigma: Tensor,
    length_scale: f64,
}

/// Time-dependent parts of the network evaluated once for a set of times: the embedding added
/// to the first hidden layer, `[n_times, width]`, and the score coefficient κ(t)(1 + NN₂),
/// `[n_times, dim]`.
#[derive(Debug, Clone)]
pub struct TimeFeatures {
    /// e(t) after the time MLP.
    pub embedding: Tensor,
    /// κ(t) NN₂(e(t)).
    pub coefficient: Tensor,
}

impl TimeFeatures {
    /// The features of the `i`-th time, `[1, ·]`, for a batch that shares one time.
    pub fn row(&self, i: usize) -> Result<TimeFeatures> {
        Ok(TimeFeatures {
            embedding: self.embedding.narrow(0, i, 1)?,
            coefficient: self.coefficient.narrow(0, i, 1)?,
        })
    }

    /// The embedding and the coefficient on the host, flattened row by row (`[N·width]` and
    /// `[N·dim]`), as the CPU fast path ([`super::FastDrift`]) reads them.
    pub fn to_host(&self) -> Result<(Vec<f32>, Vec<f32>)> {
        Ok((
            self.embedding.flatten_all()?.to_vec1::<f32>()?,
            self.coefficient.flatten_all()?.to_vec1::<f32>()?,
        ))
    }
}

/// The parts of a [`DriftNet`] that the CPU fast path ([`super::fast`]) reads.
pub(crate) struct FastParts<'a> {
    pub(crate) dim: usize,
    pub(crate) uses_score: bool,
    pub(crate) first: &'a Linear,
    pub(crate) hidden: &'a [Linear],
    pub(crate) out: &'a Linear,
    pub(crate) inv_sigma: &'a Tensor,
    pub(crate) length_scale: f64,
    pub(crate) output_clip: f64,
}

impl DriftNet {
    /// The per-row layers and constants, for the CPU fast path.
    pub(crate) fn fast_parts(&self) -> FastParts<'_> {
        FastParts {
            dim: self.dim,
            uses_score: self.coef.is_some(),
            first: &self.first,
            hidden: &self.hidden,
            out: &self.out,
            inv_sigma: &self.inv_sigma,
            length_scale: self.length_scale,
            output_clip: self.output_clip,
        }
    }

    /// [`DriftNet::new`] with `layers` = (width, depth) and unit prior scales and length scale
    /// (for coordinates that are already standardised: the data fit's networks, the sequential
    /// sampler's control), in a [`ParamStore`] of its own, its weights drawn from a generator
    /// seeded by `seed`.
    pub fn new_in_own_store(
        prefix: &str,
        uses_score: bool,
        dim: usize,
        (width, depth): (usize, usize),
        output_clip: f64,
        seed: u64,
        device: &Device,
    ) -> Result<(ParamStore, Self)> {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut params = ParamStore::new();
        let net = Self::new(
            prefix,
            uses_score,
            dim,
            width,
            depth,
            output_clip,
            &vec![1.0; dim],
            1.0,
            &mut params,
            &mut rng,
            device,
        )?;
        Ok((params, net))
    }

    /// A network for dimension `dim` with `depth` hidden layers of `width` units, its parameters
    /// registered in `params` under `prefix` and drawn from `rng`. `sigma` holds the prior scale of
    /// each coordinate and `length_scale` is the target's length scale ℓ. With `uses_score` false
    /// the network is h = NN₁(x/σ, e(t))/σ: it ignores the score (the forward drift of IPF, whose
    /// kernel enters the reverse-KL objective, where a stop-gradient input would bias the
    /// pathwise gradient).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        prefix: &str,
        uses_score: bool,
        dim: usize,
        width: usize,
        depth: usize,
        output_clip: f64,
        sigma: &[f64],
        length_scale: f64,
        params: &mut ParamStore,
        rng: &mut impl rand::Rng,
        device: &Device,
    ) -> Result<Self> {
        let p = |s: &str| format!("{prefix}.{s}");
        let time_in = params.linear(
            &p("time_in"),
            TIME_FEATURES,
            width,
            Init::Default,
            rng,
            device,
        )?;
        let time_hidden =
            params.linear(&p("time_hidden"), width, width, Init::Default, rng, device)?;
        let inputs = if uses_score { 2 * dim } else { dim };
        let first = params.linear(&p("first"), inputs, width, Init::Default, rng, device)?;
        let hidden = (0..depth.saturating_sub(1))
            .map(|i| {
                params.linear(
                    &p(&format!("hidden{i}")),
                    width,
                    width,
                    Init::Default,
                    rng,
                    device,
                )
            })
            .collect::<Result<Vec<_>>>()?;
        let out = params.linear(&p("out"), width, dim, Init::Zero, rng, device)?;
        let coef = if uses_score {
            Some((
                params.linear(&p("coef_hidden"), width, width, Init::Default, rng, device)?,
                params.linear(&p("coef_out"), width, dim, Init::Zero, rng, device)?,
            ))
        } else {
            None
        };
        Ok(Self {
            dim,
            time_in,
            time_hidden,
            first,
            hidden,
            out,
            coef,
            output_clip,
            inv_sigma: Tensor::from_vec(
                sigma.iter().map(|&v| (1.0 / v) as f32).collect::<Vec<_>>(),
                (1, dim),
                device,
            )?,
            length_scale,
        })
    }

    /// Time features for the normalised times `u ∈ [0, 1]` with score envelopes `kappa`
    /// (row-major `[u.len(), dim]`: one per time and coordinate).
    pub fn time_features(&self, u: &[f64], kappa: &[f64], device: &Device) -> Result<TimeFeatures> {
        let n = u.len();
        let f = Tensor::from_vec(sinusoidal_features(u), (n, TIME_FEATURES), device)?;
        let e = self
            .time_hidden
            .forward(&self.time_in.forward(&f)?.silu()?)?;
        let k = Tensor::from_vec(
            kappa.iter().map(|&v| v as f32).collect::<Vec<_>>(),
            (n, self.dim),
            device,
        )?;
        let coefficient = match &self.coef {
            Some((hidden, out)) => (out.forward(&hidden.forward(&e)?.silu()?)? * k)?,
            None => k.zeros_like()?,
        };
        Ok(TimeFeatures {
            embedding: e,
            coefficient,
        })
    }

    /// h for a batch `[rows, dim]` where consecutive groups of `rows / n_times` rows share the
    /// time of the corresponding row of `tf` (one time for a whole batch when `tf` has one row).
    /// `x` is the state; `score` is the clipped target score.
    pub fn forward(&self, x: &Tensor, score: &Tensor, tf: &TimeFeatures) -> Result<Tensor> {
        let (rows, _) = x.dims2()?;
        let n_times = tf.embedding.dim(0)?;
        let per = rows / n_times;
        let scaled = x.broadcast_mul(&self.inv_sigma)?;
        let input = if self.coef.is_some() {
            Tensor::cat(&[scaled, (score * self.length_scale)?], 1)?
        } else {
            scaled
        };
        let a = self.first.forward(&input)?;
        let width = a.dim(1)?;
        let a = a
            .reshape((n_times, per, width))?
            .broadcast_add(&tf.embedding.unsqueeze(1)?)?
            .reshape((rows, width))?;
        let mut hdn = a.silu()?;
        for layer in &self.hidden {
            hdn = layer.forward(&hdn)?.silu()?;
        }
        let nn1 = self.out.forward(&hdn)?.broadcast_mul(&self.inv_sigma)?;
        if self.coef.is_none() {
            return Ok(nn1.clamp(-self.output_clip, self.output_clip)?);
        }
        let guided = score
            .reshape((n_times, per, self.dim))?
            .broadcast_mul(&tf.coefficient.unsqueeze(1)?)?
            .reshape((rows, self.dim))?;
        let h = (nn1 + guided)?;
        Ok(h.clamp(-self.output_clip, self.output_clip)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tensor_time_embedding_matches_host_features() {
        let u = [0.0, 0.1, 0.37, 0.9, 1.0];
        let host = sinusoidal_features(&u);
        let t = Tensor::from_vec(
            u.iter().map(|&v| v as f32).collect::<Vec<_>>(),
            5,
            &Device::Cpu,
        )
        .unwrap();
        let dev = sinusoidal_embedding(&t).unwrap();
        assert_eq!(dev.dims(), &[5, TIME_FEATURES]);
        let dev = dev.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        for (a, b) in host.iter().zip(&dev) {
            assert!((a - b).abs() < 1e-3, "{a} vs {b}");
        }
    }
}
