//! Group normalisation whose CPU forward and backward passes are hand-written loops over each
//! (image, group) block (a candle custom op), and candle's own `GroupNorm` elsewhere.
//!
//! Why: candle's `GroupNorm` is a chain of tensor ops (mean, subtract, square, mean, divide,
//! scale, shift), each allocating its result, and the gradients of the per-channel scale and
//! shift are strided reductions of broadcasts over (batch, height, width); in the UNet's CPU
//! training step those reductions were the largest item of the profile after the convolutions
//! (issue 13, item 3). Here, per block of the C/G channels of one group of one image (n values,
//! contiguous): μ and σ² = mean (x − μ)² (accumulated in f64), x̂ = (x − μ)/√(σ² + ε),
//! y = γ_c x̂ + β_c; backward, with g = γ_c ∂y: ∂x = (g − mean g − x̂ mean(g x̂))/√(σ² + ε),
//! ∂γ_c = Σ ∂y x̂, ∂β_c = Σ ∂y (each half of the batch on its own thread, then added).
//! [`GroupNorm::forward_silu`] fuses the SiLU that follows every normalisation in the UNet:
//! y = p σ(p) with p = γ_c x̂ + β_c, and ∂p = ∂y σ(p)(1 + p(1 − σ(p))) enters the backward pass
//! in place of ∂y (σ by the fast path's vectorisable e^x).
//!
//! The same results as candle's `GroupNorm` and its gradients to f32 rounding (tested).

use super::fast::{Simd, sigmoid, simd, simd_builds};
use super::op_support::{
    Gradients3, HostView, backward_on_halves, forward_on_halves, gradients3, slice,
};
use candle_core::{CpuStorage, CustomOp3, DType, Layout, Module, Shape, Tensor};

/// Group normalisation over `groups` groups of `channels` channels, with a per-channel scale and
/// shift.
#[derive(Debug, Clone)]
pub struct GroupNorm {
    weight: Tensor,
    bias: Tensor,
    groups: usize,
    eps: f64,
    inner: candle_nn::GroupNorm,
}

impl GroupNorm {
    /// The normalisation with scale `weight` `[channels]` and shift `bias` `[channels]`;
    /// `groups` must divide the channels.
    pub fn new(
        weight: Tensor,
        bias: Tensor,
        groups: usize,
        eps: f64,
    ) -> crate::error::Result<Self> {
        let channels = weight.dim(0)?;
        let inner = candle_nn::GroupNorm::new(weight.clone(), bias.clone(), channels, groups, eps)?;
        Ok(Self {
            weight,
            bias,
            groups,
            eps,
            inner,
        })
    }

    /// SiLU of the normalised `x`, in one op on the CPU.
    pub fn forward_silu(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.apply(x, true)
    }

    fn apply(&self, x: &Tensor, silu: bool) -> candle_core::Result<Tensor> {
        if !(x.device().is_cpu() && x.dtype() == DType::F32 && x.rank() >= 3) {
            let y = self.inner.forward(x)?;
            return if silu { y.silu() } else { Ok(y) };
        }
        let op = GroupNormOp {
            groups: self.groups,
            eps: self.eps,
            silu,
        };
        x.contiguous()?
            .apply_op3(&self.weight.contiguous()?, &self.bias.contiguous()?, op)
    }
}

impl Module for GroupNorm {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.apply(x, false)
    }
}

#[derive(Debug, Clone, Copy)]
struct GroupNormOp {
    groups: usize,
    eps: f64,
    /// SiLU applied to the output.
    silu: bool,
}

/// The sizes of one normalisation: images, channels, values per channel.
#[derive(Debug, Clone, Copy)]
struct Sizes {
    batch: usize,
    channels: usize,
    per_channel: usize,
    groups: usize,
}

impl Sizes {
    fn of(dims: &[usize], channels: usize, groups: usize) -> candle_core::Result<Self> {
        if dims.len() < 3 || dims[1] != channels || groups == 0 || !channels.is_multiple_of(groups)
        {
            candle_core::bail!(
                "group norm: input {dims:?} for {channels} channels in {groups} groups"
            );
        }
        Ok(Self {
            batch: dims[0],
            channels,
            per_channel: dims[2..].iter().product(),
            groups,
        })
    }

    fn image(&self) -> usize {
        self.channels * self.per_channel
    }

    /// Values of one group of one image.
    fn block(&self) -> usize {
        self.image() / self.groups
    }

    fn channels_per_group(&self) -> usize {
        self.channels / self.groups
    }
}

/// μ and 1/√(σ² + ε) of a block.
fn moments(x: &[f32], eps: f64) -> (f32, f32) {
    let n = x.len() as f64;
    let mean = x.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
    let var = x
        .iter()
        .map(|&v| (f64::from(v) - mean) * (f64::from(v) - mean))
        .sum::<f64>()
        / n;
    (mean as f32, (1.0 / (var + eps).sqrt()) as f32)
}

simd_builds! {
    /// y for the images `xs` into `ys` ([`forward_images_impl`] in the CPU's SIMD build).
    fn forward_images => forward_images_impl(
        op: &GroupNormOp,
        s: &Sizes,
        params: (&[f32], &[f32]),
        xs: &[f32],
        ys: &mut [f32],
    )
}

#[inline(always)]
fn forward_images_impl(
    op: &GroupNormOp,
    s: &Sizes,
    (gamma, beta): (&[f32], &[f32]),
    xs: &[f32],
    ys: &mut [f32],
) {
    let (cpg, pc) = (s.channels_per_group(), s.per_channel);
    for (b, (x, y)) in xs
        .chunks_exact(s.block())
        .zip(ys.chunks_exact_mut(s.block()))
        .enumerate()
    {
        let (mean, inv) = moments(x, op.eps);
        let c0 = (b % s.groups) * cpg;
        let rows = x.chunks_exact(pc).zip(y.chunks_exact_mut(pc));
        for (c, (xr, yr)) in (c0..).zip(rows) {
            let (g, sh) = (gamma[c], beta[c]);
            for (v, &u) in yr.iter_mut().zip(xr) {
                *v = (u - mean) * inv * g + sh;
            }
            if op.silu {
                for v in yr.iter_mut() {
                    *v *= sigmoid(*v);
                }
            }
        }
    }
}

simd_builds! {
    /// The gradients of the images `xs` given `dys`: ∂x into `dxs`, ∂γ and ∂β added to `dg`,
    /// `db` ([`backward_images_impl`] in the CPU's SIMD build).
    fn backward_images => backward_images_impl(
        op: &GroupNormOp,
        s: &Sizes,
        inputs: (&[f32], &[f32], &[f32], &[f32]),
        acc: (&mut [f32], &mut [f32]),
        dxs: &mut [f32],
    )
}

#[inline(always)]
fn backward_images_impl(
    op: &GroupNormOp,
    s: &Sizes,
    (gamma, beta, xs, dys): (&[f32], &[f32], &[f32], &[f32]),
    (dg, db): (&mut [f32], &mut [f32]),
    dxs: &mut [f32],
) {
    let (cpg, pc) = (s.channels_per_group(), s.per_channel);
    let mut xhat = vec![0.0f32; s.block()];
    // ∂y, or with the SiLU ∂p, of the block's values.
    let mut dp = vec![0.0f32; s.block()];
    let blocks = xs.chunks_exact(s.block()).zip(dys.chunks_exact(s.block()));
    for (b, ((x, dy), dx)) in blocks.zip(dxs.chunks_exact_mut(s.block())).enumerate() {
        let (mean, inv) = moments(x, op.eps);
        let c0 = (b % s.groups) * cpg;
        // x̂ and ∂p, and the block's sums of g = γ ∂p and of g x̂.
        let (mut sum_g, mut sum_gx) = (0.0f64, 0.0f64);
        let rows = (x.chunks_exact(pc).zip(dy.chunks_exact(pc)))
            .zip(xhat.chunks_exact_mut(pc).zip(dp.chunks_exact_mut(pc)));
        for (c, ((xr, dyr), (hr, dr))) in (c0..).zip(rows) {
            let (g, sh) = (gamma[c], beta[c]);
            for ((h, d), (&u, &e)) in hr.iter_mut().zip(dr.iter_mut()).zip(xr.iter().zip(dyr)) {
                *h = (u - mean) * inv;
                *d = if op.silu {
                    let p = *h * g + sh;
                    let sg = sigmoid(p);
                    e * sg * (1.0 + p * (1.0 - sg))
                } else {
                    e
                };
            }
            let (mut sdy, mut sdyx) = (0.0f32, 0.0f32);
            for (&h, &d) in hr.iter().zip(dr.iter()) {
                sdy += d;
                sdyx += d * h;
            }
            db[c] += sdy;
            dg[c] += sdyx;
            sum_g += f64::from(g * sdy);
            sum_gx += f64::from(g * sdyx);
        }
        let n = s.block() as f64;
        let (mean_g, mean_gx) = ((sum_g / n) as f32, (sum_gx / n) as f32);
        let rows = dp
            .chunks_exact(pc)
            .zip(xhat.chunks_exact(pc))
            .zip(dx.chunks_exact_mut(pc));
        for (c, ((dr, hr), dxr)) in (c0..).zip(rows) {
            let g = gamma[c];
            for ((v, &d), &h) in dxr.iter_mut().zip(dr).zip(hr) {
                *v = (d * g - mean_g - h * mean_gx) * inv;
            }
        }
    }
}

impl CustomOp3 for GroupNormOp {
    fn name(&self) -> &'static str {
        "group-norm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (x, gamma, beta) = (slice(s1, l1)?, slice(s2, l2)?, slice(s3, l3)?);
        let s = Sizes::of(l1.dims(), gamma.len(), self.groups)?;
        if beta.len() != s.channels {
            candle_core::bail!(
                "group norm: {} shifts for {} channels",
                beta.len(),
                s.channels
            );
        }
        let layout = (s.image(), s.image(), s.batch);
        let y = forward_on_halves(layout, x, |xs, ys| {
            forward_images(simd(), self, &s, (gamma, beta), xs, ys)
        });
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        _res: &Tensor,
        dy: &Tensor,
    ) -> candle_core::Result<Gradients3> {
        let (xh, gh) = (HostView::of(x)?, HostView::of(gamma)?);
        let (bh, dyh) = (HostView::of(beta)?, HostView::of(dy)?);
        let (xv, gv, bv, dyv) = (xh.values(), gh.values(), bh.values(), dyh.values());
        let s = Sizes::of(x.dims(), gv.len(), self.groups)?;
        let mut dx = vec![0.0f32; xv.len()];
        let (c, image) = (s.channels, s.image());
        let layout = (image, image, s.batch);
        let (dg, db) = backward_on_halves(layout, (xv, dyv), (c, c), &mut dx, |xd, acc, dx| {
            backward_images(simd(), self, &s, (gv, bv, xd.0, xd.1), acc, dx)
        });
        gradients3([(dx, x), (dg, gamma), (db, beta)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::host;
    use candle_core::{Device, Var};
    use rand::{Rng, SeedableRng, rngs::StdRng};

    fn random(rng: &mut StdRng, dims: &[usize], shift: f32) -> Tensor {
        let n = dims.iter().product();
        let v: Vec<f32> = (0..n)
            .map(|_| rng.random_range(-1.0f32..1.0) + shift)
            .collect();
        Tensor::from_vec(v, dims, &Device::Cpu).unwrap()
    }

    /// The AVX-512, AVX2 and portable builds of both passes give the same numbers, bit for
    /// bit (each build that this CPU can run), with and without the SiLU.
    #[test]
    fn simd_builds_agree_bit_for_bit() {
        let mut rng = StdRng::seed_from_u64(4);
        let dims = [2, 8, 6, 5];
        let host_of = |dims: &[usize], shift, rng: &mut StdRng| host(&random(rng, dims, shift));
        let (x, dy) = (host_of(&dims, 1.0, &mut rng), host_of(&dims, 0.0, &mut rng));
        let (gamma, beta) = (host_of(&[8], 1.0, &mut rng), host_of(&[8], 0.0, &mut rng));
        let s = Sizes::of(&dims, 8, 4).unwrap();
        for silu in [false, true] {
            let op = GroupNormOp {
                groups: 4,
                eps: 1e-5,
                silu,
            };
            let run = |level: Simd| {
                let mut y = vec![0.0f32; x.len()];
                forward_images(level, &op, &s, (&gamma, &beta), &x, &mut y);
                let (mut dg, mut db, mut dx) =
                    (vec![0.0f32; 8], vec![0.0f32; 8], vec![0.0; x.len()]);
                let inputs = (&gamma[..], &beta[..], &x[..], &dy[..]);
                backward_images(level, &op, &s, inputs, (&mut dg, &mut db), &mut dx);
                (y, dg, db, dx)
            };
            let want = run(Simd::Portable);
            assert!(want.0.iter().any(|&v| v != 0.0) && want.3.iter().any(|&v| v != 0.0));
            if simd() != Simd::Portable {
                assert!(run(Simd::Avx2) == want, "AVX2, silu {silu}");
            }
            if simd() == Simd::Avx512 {
                assert!(run(Simd::Avx512) == want, "AVX-512, silu {silu}");
            }
        }
    }

    /// Output and the gradients with respect to the input, the scale and the shift equal
    /// candle's `GroupNorm` to f32 rounding, and with the SiLU fused (all but the one-group
    /// case) candle's `GroupNorm` then `silu`: several group counts, 3-D and 4-D inputs, odd
    /// batches, inputs off centre.
    #[test]
    fn group_norm_equals_candle() {
        let mut rng = StdRng::seed_from_u64(3);
        for (dims, groups) in [
            (vec![3, 8, 5, 4], 4),
            (vec![2, 6, 7, 7], 1),
            (vec![5, 4, 9], 4),
            (vec![1, 12, 3, 3], 3),
        ] {
            let x = Var::from_tensor(&random(&mut rng, &dims, 2.0)).unwrap();
            let gamma = Var::from_tensor(&random(&mut rng, &[dims[1]], 1.0)).unwrap();
            let beta = Var::from_tensor(&random(&mut rng, &[dims[1]], 0.0)).unwrap();
            let norm = GroupNorm::new(
                gamma.as_tensor().clone(),
                beta.as_tensor().clone(),
                groups,
                1e-5,
            )
            .unwrap();
            let silu = groups != 1;
            let (fast, slow) = if silu {
                let slow = norm.inner.forward(x.as_tensor()).unwrap().silu().unwrap();
                (norm.forward_silu(x.as_tensor()).unwrap(), slow)
            } else {
                let slow = norm.inner.forward(x.as_tensor()).unwrap();
                (norm.forward(x.as_tensor()).unwrap(), slow)
            };
            let r = random(&mut rng, &dims, 0.0);
            let gf = (&fast * &r).unwrap().sum_all().unwrap().backward().unwrap();
            let gs = (&slow * &r).unwrap().sum_all().unwrap().backward().unwrap();
            let pairs = [
                (host(&fast), host(&slow), "y"),
                (host(gf.get(&x).unwrap()), host(gs.get(&x).unwrap()), "∂x"),
                (
                    host(gf.get(&gamma).unwrap()),
                    host(gs.get(&gamma).unwrap()),
                    "∂γ",
                ),
                (
                    host(gf.get(&beta).unwrap()),
                    host(gs.get(&beta).unwrap()),
                    "∂β",
                ),
            ];
            for (a, b, what) in pairs {
                let scale = b.iter().fold(1e-3f32, |m, v| m.max(v.abs()));
                for (i, (u, v)) in a.iter().zip(&b).enumerate() {
                    assert!(
                        (u - v).abs() <= 2e-5 * scale,
                        "{dims:?}/{groups} silu {silu} {what}[{i}]: fast {u} vs candle {v}"
                    );
                }
            }
        }
    }
}
