//! 2-D convolution layers whose CPU forward and backward passes run as im2col + `gemm` (a
//! candle custom op), and candle's own `conv2d` elsewhere (CUDA, other dtypes, groups or
//! dilation).
//!
//! Why: candle 0.11's CPU convolution computes the input gradient with a direct
//! `conv_transpose2d` loop and the kernel gradient with a convolution whose "kernel" is the
//! whole output gradient; in a profile of the UNet's training step those loops (dot products of
//! short rows) took about 45% of the time (issue 13, item 3). Here every pass is a matrix
//! product over the unfolded input, per image:
//!
//! - forward: Y_b (O × HW′) = K (O × CKK) · cols(X_b) (CKK × HW′);
//! - kernel gradient: ∂K = Σ_b ∂Y_b · cols(X_b)ᵀ (the images of the first and second half of the
//!   batch summed on their own threads, then added: a fixed order);
//! - input gradient: ∂X_b = col2im(Kᵀ · ∂Y_b);
//! - the bias is added in the op (its gradient, a row sum of ∂Y_b, is a contiguous reduction,
//!   where candle's gradient of a broadcast add is a strided one).
//!
//! The same results as candle's `conv2d` and its gradients to f32 rounding (tested).

use super::op_support::{
    Gradients3, HostView, backward_on_halves, forward_on_halves, gradients3, slice,
};
use candle_core::{CpuStorage, CustomOp3, DType, Layout, Module, Shape, Tensor};
use candle_nn::Conv2dConfig;

/// A 2-D convolution with bias (candle's `Conv2d`, run on the im2col path on the CPU).
#[derive(Debug, Clone)]
pub struct Conv2d {
    inner: candle_nn::Conv2d,
}

impl Conv2d {
    /// The convolution with kernel `weight` `[out, in, kh, kw]`, optional `bias` `[out]`.
    pub fn new(weight: Tensor, bias: Option<Tensor>, config: Conv2dConfig) -> Self {
        Self {
            inner: candle_nn::Conv2d::new(weight, bias, config),
        }
    }

    /// The kernel `[out, in, kh, kw]`.
    pub fn weight(&self) -> &Tensor {
        self.inner.weight()
    }

    /// The bias `[out]`, if any.
    pub fn bias(&self) -> Option<&Tensor> {
        self.inner.bias()
    }
}

impl Module for Conv2d {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let cfg = self.inner.config();
        let w = self.inner.weight();
        let plain = cfg.groups == 1 && cfg.dilation == 1;
        if !(x.device().is_cpu() && plain && x.dtype() == DType::F32 && x.rank() == 4) {
            return self.inner.forward(x);
        }
        let op = Im2colConv {
            padding: cfg.padding,
            stride: cfg.stride,
        };
        // The bias is added in the op: its gradient is then a sum over contiguous rows, where
        // candle's reduction of a broadcast over (batch, height, width) is a strided one.
        let bias = match self.inner.bias() {
            Some(b) => b.contiguous()?,
            None => Tensor::zeros(w.dim(0)?, DType::F32, w.device())?,
        };
        x.contiguous()?.apply_op3(&w.contiguous()?, &bias, op)
    }
}

/// The convolution as a custom op on contiguous f32 tensors: input `[B, C, H, W]`, kernel
/// `[O, C, kh, kw]`, bias `[O]`.
#[derive(Debug, Clone, Copy)]
struct Im2colConv {
    padding: usize,
    stride: usize,
}

/// The sizes of one convolution.
#[derive(Debug, Clone, Copy)]
struct Geometry {
    batch: usize,
    c: usize,
    h: usize,
    w: usize,
    o: usize,
    kh: usize,
    kw: usize,
    ho: usize,
    wo: usize,
    padding: usize,
    stride: usize,
}

impl Geometry {
    fn of(x: &[usize], k: &[usize], op: Im2colConv) -> candle_core::Result<Self> {
        let (&[batch, c, h, w], &[o, kc, kh, kw]) = (x, k) else {
            candle_core::bail!("conv2d: input {x:?} or kernel {k:?} is not 4-D");
        };
        let (p, s) = (op.padding, op.stride);
        if kc != c || s == 0 || h + 2 * p < kh || w + 2 * p < kw {
            candle_core::bail!(
                "conv2d: input {x:?} and kernel {k:?} do not fit (pad {p}, stride {s})"
            );
        }
        Ok(Self {
            batch,
            c,
            h,
            w,
            o,
            kh,
            kw,
            ho: (h + 2 * p - kh) / s + 1,
            wo: (w + 2 * p - kw) / s + 1,
            padding: p,
            stride: s,
        })
    }

    /// Rows of the unfolded input (C·kh·kw), columns (output pixels), values per image.
    fn ckk(&self) -> usize {
        self.c * self.kh * self.kw
    }

    fn pixels(&self) -> usize {
        self.ho * self.wo
    }

    fn image(&self) -> usize {
        self.c * self.h * self.w
    }

    /// Visits every run of output pixels of one unfolded row and output row that read input
    /// values inside the image: `f(first index into cols, first index into the image, count)`;
    /// the run's input values are `stride` apart. The padding's entries are not visited.
    #[inline]
    fn for_each_run(&self, mut f: impl FnMut(usize, usize, usize)) {
        let (p, s, n) = (self.padding, self.stride, self.pixels());
        for c in 0..self.c {
            for ki in 0..self.kh {
                for kj in 0..self.kw {
                    let row = ((c * self.kh + ki) * self.kw + kj) * n;
                    // Output columns whose input column ox·s + kj − p lies in 0..w.
                    let lo = p.saturating_sub(kj).div_ceil(s);
                    let hi = if self.w + p > kj {
                        ((self.w + p - kj - 1) / s + 1).min(self.wo)
                    } else {
                        0
                    };
                    if lo >= hi {
                        continue;
                    }
                    for oy in 0..self.ho {
                        let iy = oy * s + ki;
                        if iy < p || iy - p >= self.h {
                            continue;
                        }
                        let x0 = (c * self.h + iy - p) * self.w + lo * s + kj - p;
                        f(row + oy * self.wo + lo, x0, hi - lo);
                    }
                }
            }
        }
    }

    /// The unfolded image `x` (C×H×W) into `cols` (CKK × pixels). Writes only the entries
    /// that fall inside the image: those in the padding must already be zero, as they are in a
    /// buffer allocated zeroed and written by nothing else (the same entries for every image
    /// of a geometry), so a buffer serves every image of a pass without being cleared again.
    fn im2col(&self, x: &[f32], cols: &mut [f32]) {
        let s = self.stride;
        self.for_each_run(|ci, xi, count| {
            let dst = &mut cols[ci..ci + count];
            if s == 1 {
                dst.copy_from_slice(&x[xi..xi + count]);
            } else {
                for (i, d) in dst.iter_mut().enumerate() {
                    *d = x[xi + i * s];
                }
            }
        });
    }

    /// Adds the folded-back `cols` to the image gradient `dx`.
    fn col2im(&self, cols: &[f32], dx: &mut [f32]) {
        let s = self.stride;
        self.for_each_run(|ci, xi, count| {
            let src = &cols[ci..ci + count];
            if s == 1 {
                for (d, v) in dx[xi..xi + count].iter_mut().zip(src) {
                    *d += v;
                }
            } else {
                for (i, v) in src.iter().enumerate() {
                    dx[xi + i * s] += v;
                }
            }
        });
    }
}

/// `dst (m × n) = a (m × k) · b (k × n)` (row-major), added to `dst` when `accumulate`; `a_t`
/// and `b_t` read `a` and `b` transposed (stored `k × m` and `n × k`).
#[allow(clippy::too_many_arguments)]
fn gemm(
    dst: &mut [f32],
    (m, k, n): (usize, usize, usize),
    a: &[f32],
    a_t: bool,
    b: &[f32],
    b_t: bool,
    accumulate: bool,
) {
    let (a_rs, a_cs) = if a_t { (1, m) } else { (k, 1) };
    let (b_rs, b_cs) = if b_t { (1, k) } else { (n, 1) };
    super::fast::matmul(dst, a, (m, k, n), (a_rs, a_cs), b, (b_rs, b_cs), accumulate);
}

impl Im2colConv {
    /// The output of images `xs` (a whole number of images) into `ys`.
    fn forward_images(
        &self,
        g: &Geometry,
        (k, bias): (&[f32], &[f32]),
        xs: &[f32],
        ys: &mut [f32],
    ) {
        let mut cols = vec![0.0f32; g.ckk() * g.pixels()];
        let n = g.pixels();
        for (x, y) in xs.chunks_exact(g.image()).zip(ys.chunks_exact_mut(g.o * n)) {
            g.im2col(x, &mut cols);
            for (row, &b) in y.chunks_exact_mut(n).zip(bias) {
                row.fill(b);
            }
            gemm(y, (g.o, g.ckk(), n), k, false, &cols, false, true);
        }
    }

    /// The gradients of images `xs` given their output gradients `dys`: ∂K and ∂bias summed
    /// over them into `dk` and `db`, and ∂X added to `dxs` (zero on entry).
    fn backward_images(
        &self,
        g: &Geometry,
        (k, xs, dys): (&[f32], &[f32], &[f32]),
        (dk, db): (&mut [f32], &mut [f32]),
        dxs: &mut [f32],
    ) {
        let n = g.pixels();
        // `cols` only ever holds unfolded images (its padding entries stay zero); `dcols` is
        // overwritten whole by each product. `dxs` comes zeroed, and col2im writes only its
        // own image's part.
        let (mut cols, mut dcols) = (vec![0.0f32; g.ckk() * n], vec![0.0f32; g.ckk() * n]);
        let images = xs.chunks_exact(g.image()).zip(dys.chunks_exact(g.o * n));
        for ((x, dy), dx) in images.zip(dxs.chunks_exact_mut(g.image())) {
            for (d, row) in db.iter_mut().zip(dy.chunks_exact(n)) {
                *d += row.iter().sum::<f32>();
            }
            g.im2col(x, &mut cols);
            // ∂K (O × CKK) += ∂Y (O × n) · colsᵀ (n × CKK).
            gemm(dk, (g.o, n, g.ckk()), dy, false, &cols, true, true);
            // ∂cols (CKK × n) = Kᵀ (CKK × O) · ∂Y (O × n), folded back into ∂X.
            gemm(&mut dcols, (g.ckk(), g.o, n), k, true, dy, false, false);
            g.col2im(&dcols, dx);
        }
    }
}

impl CustomOp3 for Im2colConv {
    fn name(&self) -> &'static str {
        "im2col-conv2d"
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
        let g = Geometry::of(l1.dims(), l2.dims(), *self)?;
        let (x, k, bias) = (slice(s1, l1)?, slice(s2, l2)?, slice(s3, l3)?);
        if bias.len() != g.o {
            candle_core::bail!("conv2d: {} bias values for {} channels", bias.len(), g.o);
        }
        let layout = (g.image(), g.o * g.pixels(), g.batch);
        let y = forward_on_halves(layout, x, |xs, ys| {
            self.forward_images(&g, (k, bias), xs, ys)
        });
        Ok((CpuStorage::F32(y), Shape::from((g.batch, g.o, g.ho, g.wo))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        k: &Tensor,
        bias: &Tensor,
        _res: &Tensor,
        dy: &Tensor,
    ) -> candle_core::Result<Gradients3> {
        let g = Geometry::of(x.dims(), k.dims(), *self)?;
        let (xh, kh, dyh) = (HostView::of(x)?, HostView::of(k)?, HostView::of(dy)?);
        let (xv, kv, dyv) = (xh.values(), kh.values(), dyh.values());
        let mut dx = vec![0.0f32; xv.len()];
        let layout = (g.image(), g.o * g.pixels(), g.batch);
        let (dk, db) = backward_on_halves(
            layout,
            (xv, dyv),
            (kv.len(), g.o),
            &mut dx,
            |xd, acc, dx| self.backward_images(&g, (kv, xd.0, xd.1), acc, dx),
        );
        gradients3([(dx, x), (dk, k), (db, bias)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::host;
    use candle_core::{Device, Var};
    use rand::{Rng, SeedableRng, rngs::StdRng};

    fn random(rng: &mut StdRng, dims: &[usize]) -> Tensor {
        let n = dims.iter().product();
        let v: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        Tensor::from_vec(v, dims, &Device::Cpu).unwrap()
    }

    fn close(a: &[f32], b: &[f32], what: &str) {
        assert_eq!(a.len(), b.len(), "{what}");
        let scale = b.iter().fold(1e-3f32, |m, v| m.max(v.abs()));
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!(
                (x - y).abs() <= 1e-5 * scale,
                "{what}[{i}]: im2col {x} vs candle {y}"
            );
        }
    }

    /// Output, input gradient, kernel gradient and bias gradient equal candle's `conv2d` to f32
    /// rounding: 3×3 with padding (stride 1 and 2), 1×1, a kernel wider than the padding leaves,
    /// and odd batch sizes (unequal halves). Stride 2 on square images only: candle 0.11's own
    /// backward fails on non-square ones (its transposed convolution's output padding is
    /// computed from the height alone; `adjoint_identities_hold_for_any_shape` covers them).
    #[test]
    fn im2col_convolution_equals_candle() {
        let mut rng = StdRng::seed_from_u64(1);
        let cases = [
            // (batch, c, h, w, o, k, padding, stride)
            (3, 4, 7, 6, 5, 3, 1, 1),
            (2, 3, 9, 9, 4, 3, 1, 2),
            (3, 2, 8, 8, 3, 3, 1, 2),
            (5, 6, 5, 5, 7, 1, 0, 1),
            (1, 2, 6, 7, 3, 5, 1, 1),
            (2, 2, 9, 9, 3, 5, 2, 2),
        ];
        for (b, c, h, w, o, k, padding, stride) in cases {
            let cfg = Conv2dConfig {
                padding,
                stride,
                ..Default::default()
            };
            let x = Var::from_tensor(&random(&mut rng, &[b, c, h, w])).unwrap();
            let kw = Var::from_tensor(&random(&mut rng, &[o, c, k, k])).unwrap();
            let bias = Var::from_tensor(&random(&mut rng, &[o])).unwrap();
            let conv = Conv2d::new(kw.as_tensor().clone(), Some(bias.as_tensor().clone()), cfg);
            let fast = conv.forward(x.as_tensor()).unwrap();
            let slow = conv.inner.forward(x.as_tensor()).unwrap();
            assert_eq!(fast.dims(), slow.dims());
            let what = format!("{b}×{c}×{h}×{w}, {o}×{k}×{k}, pad {padding}, stride {stride}");
            close(&host(&fast), &host(&slow), &format!("{what}: output"));
            // Loss Σ y ⊙ R for a fixed random R.
            let r = random(&mut rng, fast.dims());
            let gf = (fast * &r).unwrap().sum_all().unwrap().backward().unwrap();
            let gs = (slow * &r).unwrap().sum_all().unwrap().backward().unwrap();
            for (v, name) in [(&x, "∂x"), (&kw, "∂kernel"), (&bias, "∂bias")] {
                let (a, b) = (
                    gf.get(v.as_tensor()).unwrap(),
                    gs.get(v.as_tensor()).unwrap(),
                );
                close(&host(a), &host(b), &format!("{what}: {name}"));
            }
        }
    }

    /// The convolution without bias is linear in the input and in the kernel, so for any R,
    /// Σ conv(x, K) ⊙ R = Σ x ⊙ ∂x = Σ K ⊙ ∂K: checked on shapes candle's backward cannot do
    /// (stride 2 on non-square images, even and odd sizes).
    #[test]
    fn adjoint_identities_hold_for_any_shape() {
        let mut rng = StdRng::seed_from_u64(2);
        for (b, c, h, w, o, k, padding, stride) in
            [(2, 3, 9, 8, 4, 3, 1, 2), (3, 2, 10, 7, 3, 3, 0, 2)]
        {
            let cfg = Conv2dConfig {
                padding,
                stride,
                ..Default::default()
            };
            let x = Var::from_tensor(&random(&mut rng, &[b, c, h, w])).unwrap();
            let kw = Var::from_tensor(&random(&mut rng, &[o, c, k, k])).unwrap();
            let conv = Conv2d::new(kw.as_tensor().clone(), None, cfg);
            let y = conv.forward(x.as_tensor()).unwrap();
            let r = random(&mut rng, y.dims());
            let value = (&y * &r).unwrap().sum_all().unwrap();
            let grads = value.backward().unwrap();
            let dot = |a: &Tensor, b: &Tensor| -> f64 {
                (host(a).iter().zip(host(b)))
                    .map(|(x, y)| f64::from(*x) * f64::from(y))
                    .sum()
            };
            let want = f64::from(value.to_scalar::<f32>().unwrap());
            let via_x = dot(x.as_tensor(), grads.get(x.as_tensor()).unwrap());
            let via_k = dot(kw.as_tensor(), grads.get(kw.as_tensor()).unwrap());
            assert!(want.abs() > 1.0, "a non-trivial sum: {want}");
            for got in [via_x, via_k] {
                assert!((got - want).abs() < 1e-4 * want.abs(), "{got} vs {want}");
            }
        }
    }
}
