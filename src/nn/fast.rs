//! A CPU fast path for the per-row part of [`DriftNet`]: the layers that run once per particle
//! and step (the first layer on (x/σ, ℓg) plus the time embedding, the hidden layers, the output
//! layer, the score term κ(t)NN₂(e(t)) ⊙ g and the output clip), forward and backward, as a few
//! large matrix products (the `gemm` crate, which candle's CPU backend uses too) and fused
//! elementwise passes over buffers that are reused from call to call.
//!
//! Why: on the CPU, candle allocates and zero-fills every intermediate and splits elementwise
//! kernels over its thread pool, which costs more than the arithmetic at these sizes (width 64,
//! tens of thousands of rows; issue 13's profile). The per-time part of the network (the time
//! MLP and NN₂, a few hundred rows) stays in candle: the fast path returns the gradients with
//! respect to the embedding and the score coefficient, and candle's autograd carries them into
//! the time MLP's weights ([`FastDrift::all_gradients`]).
//!
//! The fast path computes what [`DriftNet::forward`] computes, to f32 rounding (the sums run in
//! another order); the tests below hold it to the candle path, forward and backward.

use super::drift::{DriftNet, TimeFeatures};
use crate::error::Result;
use candle_core::Tensor;
use gemm::Parallelism;

/// One linear layer on the host: `weight` row-major `[out, inp]` (candle's layout), `bias [out]`.
#[derive(Debug, Clone)]
struct HostLinear {
    inp: usize,
    out: usize,
    weight: Vec<f32>,
    bias: Vec<f32>,
}

/// `dst[rows, n] = a[rows, k] · b` where `b` is read with strides (`b_rs`, `b_cs`); `accumulate`
/// adds to `dst` instead of overwriting it.
#[allow(clippy::too_many_arguments)]
fn matmul(
    dst: &mut [f32],
    a: &[f32],
    (m, k, n): (usize, usize, usize),
    (a_rs, a_cs): (usize, usize),
    b: &[f32],
    (b_rs, b_cs): (usize, usize),
    accumulate: bool,
) {
    assert!(dst.len() >= m * n);
    assert!(m == 0 || k == 0 || a.len() > (m - 1) * a_rs + (k - 1) * a_cs);
    assert!(k == 0 || n == 0 || b.len() > (k - 1) * b_rs + (n - 1) * b_cs);
    // SAFETY: the asserts above keep every index gemm reads or writes inside the slices; dst
    // does not alias a or b (distinct borrows).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.as_ptr(),
            a_cs as isize,
            a_rs as isize,
            b.as_ptr(),
            b_cs as isize,
            b_rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            Parallelism::None,
        );
    }
}

impl HostLinear {
    fn of(layer: &candle_nn::Linear) -> Result<Self> {
        let (out, inp) = layer.weight().dims2()?;
        let weight = layer.weight().flatten_all()?.to_vec1::<f32>()?;
        let bias = match layer.bias() {
            Some(b) => b.to_vec1::<f32>()?,
            None => vec![0.0; out],
        };
        Ok(Self {
            inp,
            out,
            weight,
            bias,
        })
    }

    /// `y[rows, out] = x[rows, inp] · Wᵀ`, without the bias: the callers add it in their
    /// elementwise pass over `y` (one pass instead of a copy of the bias per row first).
    fn forward_no_bias(&self, x: &[f32], rows: usize, y: &mut [f32]) {
        matmul(
            y,
            x,
            (rows, self.inp, self.out),
            (self.inp, 1),
            &self.weight,
            (1, self.inp),
            false,
        );
    }

    /// Adds the gradients of the weight `[out, inp]` (dyᵀ x) and bias (column sums of dy) to
    /// `dw` and `db`.
    fn backward_params(&self, x: &[f32], dy: &[f32], rows: usize, dw: &mut [f32], db: &mut [f32]) {
        matmul(
            dw,
            dy,
            (self.out, rows, self.inp),
            (1, self.out),
            x,
            (self.inp, 1),
            true,
        );
        for r in 0..rows {
            for (d, g) in db.iter_mut().zip(&dy[r * self.out..(r + 1) * self.out]) {
                *d += g;
            }
        }
    }

    /// `dx[rows, inp] = dy[rows, out] · W`.
    fn backward_input(&self, dy: &[f32], rows: usize, dx: &mut [f32]) {
        matmul(
            dx,
            dy,
            (rows, self.out, self.inp),
            (self.out, 1),
            &self.weight,
            (self.inp, 1),
            false,
        );
    }
}

/// e^x for f32 without a libm call, so that loops over it vectorise: x = n ln2 + r with
/// |r| ≤ ln2/2, e^r by its degree-6 Taylor polynomial (relative error below 2·10⁻⁷, near f32
/// rounding), 2ⁿ by building the exponent bits. Inputs are clamped to [−87, 88], where e^x is a
/// normal f32.
#[inline(always)]
fn fast_exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    const ROUND: f32 = 12_582_912.0; // 1.5·2²³: adding it rounds to an integer
    let x = x.clamp(-87.0, 88.0);
    let shifted = x * LOG2E + ROUND;
    let n = shifted - ROUND;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    // The low bits of `shifted` hold n + 2²² (its exponent is fixed): 2ⁿ's exponent field is
    // n + 127. Integer arithmetic on the bits, not a float-to-int cast, so that loops vectorise.
    let bits = shifted
        .to_bits()
        .wrapping_sub(ROUND.to_bits())
        .wrapping_add(127)
        << 23;
    p * f32::from_bits(bits)
}

/// Which build of the elementwise loops the CPU runs: AVX-512, AVX2 (both with FMA), or the
/// portable one. Each build performs the same operations in the same order (no fused
/// multiply-adds are introduced: Rust does not contract `a * b + c`), so all three give the same
/// numbers; the wider registers only take fewer instructions. Checked once; the answer is cached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Simd {
    Avx512,
    Avx2,
    Portable,
}

fn simd() -> Simd {
    #[cfg(target_arch = "x86_64")]
    {
        static LEVEL: std::sync::OnceLock<Simd> = std::sync::OnceLock::new();
        *LEVEL.get_or_init(|| {
            let avx2 = std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma");
            if avx2 && std::arch::is_x86_feature_detected!("avx512f") {
                Simd::Avx512
            } else if avx2 {
                Simd::Avx2
            } else {
                Simd::Portable
            }
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    Simd::Portable
}

/// One row of a hidden layer after its matrix product: p = pre + b (+ e), then sigmoid(p) and
/// SiLU(p) = p·sigmoid(p), in place of `pre`, into `sig` and `post`. `shift` yields (b, e)
/// per column; e = 0 adds nothing (p + 0 = p exactly).
#[inline(always)]
fn silu_row<'a>(
    pre: &mut [f32],
    sig: &mut [f32],
    post: &mut [f32],
    shift: impl Iterator<Item = (&'a f32, &'a f32)>,
) {
    for (((p, g), q), (b, e)) in pre.iter_mut().zip(sig).zip(post).zip(shift) {
        let v = (*p + b) + e;
        let s = sigmoid(v);
        *p = v;
        *g = s;
        *q = v * s;
    }
}

#[inline(always)]
fn sigmoid(a: f32) -> f32 {
    1.0 / (1.0 + fast_exp(-a))
}

/// The per-row layers of a [`DriftNet`] copied to the host, with buffers for the activations of
/// the last forward pass (kept for the backward pass).
#[derive(Debug, Clone)]
pub struct FastDrift {
    dim: usize,
    uses_score: bool,
    /// first, hidden…, out.
    layers: Vec<HostLinear>,
    inv_sigma: Vec<f32>,
    length_scale: f32,
    clip: f32,
    // Buffers of the last forward pass.
    rows: usize,
    n_times: usize,
    input: Vec<f32>,
    /// Pre-activations of the first and hidden layers.
    pre: Vec<Vec<f32>>,
    /// Their sigmoid.
    sig: Vec<Vec<f32>>,
    /// The SiLU pre·sigmoid of one block of rows per layer: not kept for the whole pass (a
    /// third less memory traffic), but recomputed from `pre` and `sig` in the backward pass.
    post: Vec<Vec<f32>>,
    /// The output h, and the backward pass's buffers.
    h: Vec<f32>,
    dy: Vec<f32>,
    dpost: Vec<f32>,
    dpre: Vec<f32>,
    /// ∂/∂input of the first layer, and the gradients accumulated over blocks.
    din: Vec<f32>,
    acc: FastGradients,
    /// Scratch buffers lent to callers ([`FastDrift::take_buffer`]).
    spare: Vec<Vec<f32>>,
    /// Score (for the score term's gradient) and the unclipped output.
    score: Vec<f32>,
    unclipped: Vec<f32>,
}

/// Gradients of one backward pass: the per-row layers' weights and biases (in the order of
/// the layers: first, hidden…, out) and the gradients with respect to the time features.
#[derive(Debug, Clone, Default)]
pub struct FastGradients {
    /// (weight, bias) gradient per layer: first, hidden…, out.
    pub layers: Vec<(Vec<f32>, Vec<f32>)>,
    /// ∂/∂ embedding `[n_times, width]`.
    pub embedding: Vec<f32>,
    /// ∂/∂ coefficient `[n_times, dim]`.
    pub coefficient: Vec<f32>,
}

impl FastDrift {
    /// The per-row layers of `net` as they are now (copy again after the weights change).
    pub fn new(net: &DriftNet) -> Result<Self> {
        let parts = net.fast_parts();
        let mut layers = vec![HostLinear::of(parts.first)?];
        for h in parts.hidden {
            layers.push(HostLinear::of(h)?);
        }
        layers.push(HostLinear::of(parts.out)?);
        Ok(Self {
            dim: parts.dim,
            uses_score: parts.uses_score,
            layers,
            inv_sigma: parts.inv_sigma.flatten_all()?.to_vec1::<f32>()?,
            length_scale: parts.length_scale as f32,
            clip: parts.output_clip as f32,
            rows: 0,
            n_times: 0,
            input: Vec::new(),
            pre: Vec::new(),
            sig: Vec::new(),
            post: Vec::new(),
            h: Vec::new(),
            dy: Vec::new(),
            dpost: Vec::new(),
            dpre: Vec::new(),
            spare: Vec::new(),
            din: Vec::new(),
            acc: FastGradients::default(),
            score: Vec::new(),
            unclipped: Vec::new(),
        })
    }

    /// Copies the current weights of `net`'s per-row layers (same architecture) into this one,
    /// keeping the buffers.
    pub fn refresh(&mut self, net: &DriftNet) -> Result<()> {
        let parts = net.fast_parts();
        let all = std::iter::once(parts.first)
            .chain(parts.hidden.iter())
            .chain(std::iter::once(parts.out));
        for (dst, src) in self.layers.iter_mut().zip(all) {
            *dst = HostLinear::of(src)?;
        }
        Ok(())
    }

    /// A buffer of `len` values (contents unspecified) from the pool that callers give back with
    /// [`FastDrift::give_buffer`], so that repeated calls reuse their memory.
    pub fn take_buffer(&mut self, len: usize) -> Vec<f32> {
        let mut v = self.spare.pop().unwrap_or_default();
        v.resize(len, 0.0);
        v
    }

    /// Returns a buffer to the pool.
    pub fn give_buffer(&mut self, v: Vec<f32>) {
        self.spare.push(v);
    }

    /// Width of the hidden layers.
    pub fn width(&self) -> usize {
        self.layers[0].out
    }

    /// Sizes the buffers for a pass over `rows` rows in `n_times` equal groups of consecutive
    /// rows, each group sharing one time (a row of the time features). Blocks of rows are then
    /// computed with [`FastDrift::forward_block`], in any order, and [`FastDrift::backward`]
    /// runs over all of them.
    pub fn prepare(&mut self, rows: usize, n_times: usize) {
        assert!(
            n_times > 0 && rows.is_multiple_of(n_times),
            "rows must split evenly over the times"
        );
        let (d, width) = (self.dim, self.width());
        let n_hidden = self.layers.len() - 1;
        self.rows = rows;
        self.n_times = n_times;
        self.input.resize(rows * self.layers[0].inp, 0.0);
        self.post.resize(n_hidden, Vec::new());
        for bufs in [&mut self.pre, &mut self.sig] {
            bufs.resize(n_hidden, Vec::new());
            for b in bufs.iter_mut() {
                b.resize(rows * width, 0.0);
            }
        }
        for b in [&mut self.h, &mut self.unclipped, &mut self.score] {
            b.resize(rows * d, 0.0);
        }
    }

    /// h at `rows` states `x` `[rows, dim]` with scores `score` (ignored without a score input),
    /// where consecutive groups of `rows / n_times` rows share the time of the matching row of
    /// `embedding` `[n_times, width]` and `coefficient` `[n_times, dim]`. Returns h
    /// `[rows, dim]` and keeps the activations for [`FastDrift::backward`].
    pub fn forward(
        &mut self,
        x: &[f32],
        score: &[f32],
        embedding: &[f32],
        coefficient: &[f32],
        n_times: usize,
    ) -> &[f32] {
        self.prepare(x.len() / self.dim, n_times);
        self.forward_block(0, x, score, embedding, coefficient)
    }

    /// The rows `first..first + x.len()/dim` of the pass sized by [`FastDrift::prepare`]: their
    /// states `x` and scores `score`; `embedding` and `coefficient` hold all the pass's times.
    /// Returns those rows' h.
    pub fn forward_block(
        &mut self,
        first: usize,
        x: &[f32],
        score: &[f32],
        embedding: &[f32],
        coefficient: &[f32],
    ) -> &[f32] {
        let (d, count) = (self.dim, x.len() / self.dim);
        assert!(first + count <= self.rows, "rows outside the prepared pass");
        match simd() {
            // SAFETY: the CPU has the features the functions are compiled for.
            #[cfg(target_arch = "x86_64")]
            Simd::Avx512 => unsafe { self.forward_avx512(first, x, score, embedding, coefficient) },
            #[cfg(target_arch = "x86_64")]
            Simd::Avx2 => unsafe { self.forward_avx2(first, x, score, embedding, coefficient) },
            _ => self.forward_impl(first, x, score, embedding, coefficient),
        }
        &self.h[first * d..(first + count) * d]
    }

    /// [`FastDrift::forward_impl`] compiled for AVX-512.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx2,fma")]
    unsafe fn forward_avx512(
        &mut self,
        first: usize,
        x: &[f32],
        score: &[f32],
        embedding: &[f32],
        coefficient: &[f32],
    ) {
        self.forward_impl(first, x, score, embedding, coefficient)
    }

    /// [`FastDrift::forward_impl`] compiled for AVX2.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn forward_avx2(
        &mut self,
        first: usize,
        x: &[f32],
        score: &[f32],
        embedding: &[f32],
        coefficient: &[f32],
    ) {
        self.forward_impl(first, x, score, embedding, coefficient)
    }

    #[inline(always)]
    fn forward_impl(
        &mut self,
        first: usize,
        x: &[f32],
        score: &[f32],
        embedding: &[f32],
        coefficient: &[f32],
    ) {
        let d = self.dim;
        let count = x.len() / d;
        let per = self.rows / self.n_times;
        let width = self.width();
        let inputs = self.layers[0].inp;
        let input = &mut self.input[first * inputs..(first + count) * inputs];
        for ((row, xr), sr) in input
            .chunks_exact_mut(inputs)
            .zip(x.chunks_exact(d))
            .zip(score.chunks_exact(d).chain(std::iter::repeat(&[][..])))
        {
            for ((v, &xv), &is) in row.iter_mut().zip(xr).zip(&self.inv_sigma) {
                *v = xv * is;
            }
            if self.uses_score {
                for (v, &g) in row[d..].iter_mut().zip(sr) {
                    *v = g * self.length_scale;
                }
            }
        }
        let n_hidden = self.layers.len() - 1;
        let block = |w: usize| first * w..(first + count) * w;
        for l in 0..n_hidden {
            let layer = &self.layers[l];
            let src: &[f32] = if l == 0 {
                &self.input[block(inputs)]
            } else {
                &self.post[l - 1]
            };
            let range = block(width);
            layer.forward_no_bias(src, count, &mut self.pre[l][range.clone()]);
            let pre = &mut self.pre[l][range.clone()];
            let sig = &mut self.sig[l][range];
            let post = &mut self.post[l];
            post.resize(count * width, 0.0);
            let rows = pre
                .chunks_exact_mut(width)
                .zip(sig.chunks_exact_mut(width))
                .zip(post.chunks_exact_mut(width));
            for (r, ((pr, sr), qr)) in (first..).zip(rows) {
                if l == 0 {
                    // The first layer adds the time embedding of the row's step.
                    let e = &embedding[(r / per) * width..(r / per + 1) * width];
                    silu_row(pr, sr, qr, layer.bias.iter().zip(e).map(|(b, e)| (b, e)));
                } else {
                    silu_row(pr, sr, qr, layer.bias.iter().map(|b| (b, &0.0)));
                }
            }
        }
        let out = &self.layers[n_hidden];
        let range = first * d..(first + count) * d;
        let last = &self.post[n_hidden - 1];
        let h = &mut self.h[range.clone()];
        out.forward_no_bias(last, count, h);
        if self.uses_score {
            self.score[range.clone()].copy_from_slice(score);
        }
        let unclipped = &mut self.unclipped[range];
        let rows = h.chunks_exact_mut(d).zip(unclipped.chunks_exact_mut(d));
        for (i, (r, (hr, ur))) in (first..).zip(rows).enumerate() {
            let c = &coefficient[(r / per) * d..(r / per + 1) * d];
            for j in 0..d {
                let mut v = (hr[j] + out.bias[j]) * self.inv_sigma[j];
                if self.uses_score {
                    v += score[i * d + j] * c[j];
                }
                ur[j] = v;
                hr[j] = v.clamp(-self.clip, self.clip);
            }
        }
    }

    /// h of every row of the last pass (after [`FastDrift::forward`], or after
    /// [`FastDrift::forward_block`] has filled all the prepared rows).
    pub fn output(&self) -> &[f32] {
        &self.h[..self.rows * self.dim]
    }

    /// The gradients of a scalar loss, given its gradient `dh` `[rows, dim]` with respect to the
    /// output of the last [`FastDrift::forward`] (all prepared rows). The clip passes the
    /// gradient where the output was inside ±clip (candle's `clamp` does the same).
    pub fn backward(&mut self, dh: &[f32]) -> FastGradients {
        self.begin_backward();
        self.backward_block(0, dh, None);
        self.finish_backward()
    }

    /// Starts accumulating gradients over blocks of rows ([`FastDrift::backward_block`]).
    pub fn begin_backward(&mut self) {
        let width = self.width();
        let n_hidden = self.layers.len() - 1;
        let mut acc = std::mem::take(&mut self.acc);
        acc.layers.resize(n_hidden + 1, (Vec::new(), Vec::new()));
        for (l, (dw, db)) in self.layers.iter().zip(acc.layers.iter_mut()) {
            dw.clear();
            dw.resize(l.out * l.inp, 0.0);
            db.clear();
            db.resize(l.out, 0.0);
        }
        acc.embedding.clear();
        acc.embedding.resize(self.n_times * width, 0.0);
        acc.coefficient.clear();
        acc.coefficient.resize(self.n_times * self.dim, 0.0);
        self.acc = acc;
    }

    /// Adds the gradients from the rows `first..first + dh.len()/dim` of the prepared pass, given
    /// the loss's gradient `dh` with respect to their h. With `dx`, also writes the gradient
    /// with respect to their states x (through the x/σ input; the score input is a
    /// stop-gradient).
    pub fn backward_block(&mut self, first: usize, dh: &[f32], dx: Option<&mut [f32]>) {
        match simd() {
            // SAFETY: the CPU has the features the functions are compiled for.
            #[cfg(target_arch = "x86_64")]
            Simd::Avx512 => unsafe { self.backward_avx512(first, dh, dx) },
            #[cfg(target_arch = "x86_64")]
            Simd::Avx2 => unsafe { self.backward_avx2(first, dh, dx) },
            _ => self.backward_impl(first, dh, dx),
        }
    }

    /// The gradients accumulated since [`FastDrift::begin_backward`].
    pub fn finish_backward(&mut self) -> FastGradients {
        self.acc.clone()
    }

    /// [`FastDrift::backward_impl`] compiled for AVX-512.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx2,fma")]
    unsafe fn backward_avx512(&mut self, first: usize, dh: &[f32], dx: Option<&mut [f32]>) {
        self.backward_impl(first, dh, dx)
    }

    /// [`FastDrift::backward_impl`] compiled for AVX2.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn backward_avx2(&mut self, first: usize, dh: &[f32], dx: Option<&mut [f32]>) {
        self.backward_impl(first, dh, dx)
    }

    #[inline(always)]
    fn backward_impl(&mut self, first: usize, dh: &[f32], dx: Option<&mut [f32]>) {
        let d = self.dim;
        let count = dh.len() / d;
        assert!(first + count <= self.rows, "rows outside the prepared pass");
        let per = self.rows / self.n_times;
        let width = self.width();
        let inputs = self.layers[0].inp;
        let n_hidden = self.layers.len() - 1;
        let mut acc = std::mem::take(&mut self.acc);
        // Gradient at the unclipped output, then at the output layer's result (× σ⁻¹).
        let mut dy = std::mem::take(&mut self.dy);
        dy.resize(count * d, 0.0);
        for (r, (dyr, dhr)) in dy.chunks_exact_mut(d).zip(dh.chunks_exact(d)).enumerate() {
            let row = first + r;
            let t = row / per;
            for j in 0..d {
                let i = row * d + j;
                let u = self.unclipped[i];
                let g = if u >= -self.clip && u <= self.clip {
                    dhr[j]
                } else {
                    0.0
                };
                if self.uses_score {
                    acc.coefficient[t * d + j] += g * self.score[i];
                }
                dyr[j] = g * self.inv_sigma[j];
            }
        }
        let block = |w: usize| first * w..(first + count) * w;
        // The block's SiLU outputs of a hidden layer, as the forward pass computed them.
        let recompute_post = |post: &mut Vec<f32>, pre: &[f32], sig: &[f32]| {
            post.resize(count * width, 0.0);
            for (q, (&p, &s)) in post.iter_mut().zip(pre.iter().zip(sig)) {
                *q = p * s;
            }
        };
        let last = n_hidden - 1;
        recompute_post(
            &mut self.post[last],
            &self.pre[last][block(width)],
            &self.sig[last][block(width)],
        );
        let (dw, db) = &mut acc.layers[n_hidden];
        self.layers[n_hidden].backward_params(&self.post[last], &dy, count, dw, db);
        let mut dpost = std::mem::take(&mut self.dpost);
        dpost.resize(count * width, 0.0);
        self.layers[n_hidden].backward_input(&dy, count, &mut dpost);
        let mut dpre = std::mem::take(&mut self.dpre);
        dpre.resize(count * width, 0.0);
        for l in (0..n_hidden).rev() {
            for ((g, &p), (&q, &s)) in dpre
                .iter_mut()
                .zip(&self.pre[l][block(width)])
                .zip(dpost.iter().zip(&self.sig[l][block(width)]))
            {
                *g = q * s * (1.0 + p * (1.0 - s));
            }
            let src: &[f32] = if l == 0 {
                &self.input[block(inputs)]
            } else {
                recompute_post(
                    &mut self.post[l - 1],
                    &self.pre[l - 1][block(width)],
                    &self.sig[l - 1][block(width)],
                );
                &self.post[l - 1]
            };
            let (dw, db) = &mut acc.layers[l];
            self.layers[l].backward_params(src, &dpre, count, dw, db);
            if l > 0 {
                self.layers[l].backward_input(&dpre, count, &mut dpost);
            } else {
                for (r, g) in dpre.chunks_exact(width).enumerate() {
                    let t = (first + r) / per;
                    for (v, g) in acc.embedding[t * width..(t + 1) * width].iter_mut().zip(g) {
                        *v += g;
                    }
                }
            }
        }
        if let Some(dx) = dx {
            let mut din = std::mem::take(&mut self.din);
            din.resize(count * inputs, 0.0);
            self.layers[0].backward_input(&dpre, count, &mut din);
            for (dxr, dr) in dx.chunks_exact_mut(d).zip(din.chunks_exact(inputs)) {
                for j in 0..d {
                    dxr[j] = dr[j] * self.inv_sigma[j];
                }
            }
            self.din = din;
        }
        self.dy = dy;
        self.dpost = dpost;
        self.dpre = dpre;
        self.acc = acc;
    }

    /// The gradients of the time MLP and NN₂ from those of the time features: candle's autograd
    /// on Σ embedding ⊙ ∂embedding + Σ coefficient ⊙ ∂coefficient, with `tf` computed with its
    /// graph. Returns candle's gradient store (empty for variables the features do not use).
    pub fn all_gradients(
        net: &DriftNet,
        tf: &TimeFeatures,
        grads: &FastGradients,
    ) -> Result<candle_core::backprop::GradStore> {
        let dev = tf.embedding.device();
        let de = Tensor::from_slice(&grads.embedding, tf.embedding.dims(), dev)?;
        let dc = Tensor::from_slice(&grads.coefficient, tf.coefficient.dims(), dev)?;
        let surrogate = ((&tf.embedding * de)?.sum_all()? + (&tf.coefficient * dc)?.sum_all()?)?;
        let mut store = surrogate.backward()?;
        let parts = net.fast_parts();
        let layers = std::iter::once(parts.first)
            .chain(parts.hidden.iter())
            .chain(std::iter::once(parts.out));
        for (layer, (dw, db)) in layers.zip(&grads.layers) {
            let w = layer.weight();
            store.insert(w, Tensor::from_slice(dw, w.dims(), dev)?);
            if let Some(b) = layer.bias() {
                store.insert(b, Tensor::from_slice(db, b.dims(), dev)?);
            }
        }
        Ok(store)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::ParamStore;
    use crate::test_support::{assert_gradients_close, host, randomise};
    use candle_core::{Device, Var};
    use rand::{Rng, SeedableRng, rngs::StdRng};

    fn randn(rng: &mut StdRng, n: usize, scale: f32) -> Vec<f32> {
        (0..n)
            .map(|_| rng.random_range(-1.0f32..1.0) * scale)
            .collect()
    }

    /// A network with every weight random (the output layers too, which start at zero), and a
    /// batch of 4 × 7 rows over 4 times.
    fn setup(
        uses_score: bool,
        depth: usize,
    ) -> (ParamStore, DriftNet, TimeFeatures, Tensor, Tensor) {
        let dev = Device::Cpu;
        let mut rng = StdRng::seed_from_u64(5);
        let (d, width, n_times, per) = (3, 16, 4, 7);
        let mut params = ParamStore::new();
        let net = DriftNet::new(
            "n",
            uses_score,
            d,
            width,
            depth,
            2.0,
            &[1.5, 0.7, 1.0],
            0.8,
            &mut params,
            &mut rng,
            &dev,
        )
        .unwrap();
        randomise(&params, 6, 0.6);
        let u: Vec<f64> = (0..n_times)
            .map(|k| (k as f64 + 0.5) / n_times as f64)
            .collect();
        let kappa: Vec<f64> = (0..n_times * d).map(|i| 0.3 + 0.1 * i as f64).collect();
        let tf = net.time_features(&u, &kappa, &dev).unwrap();
        let rows = n_times * per;
        let x = Tensor::from_vec(randn(&mut rng, rows * d, 2.0), (rows, d), &dev).unwrap();
        let g = Tensor::from_vec(randn(&mut rng, rows * d, 3.0), (rows, d), &dev).unwrap();
        (params, net, tf, x, g)
    }

    fn assert_close(a: &[f32], b: &[f32], what: &str) {
        assert_eq!(a.len(), b.len(), "{what}");
        let scale = b.iter().fold(1e-3f32, |m, v| m.max(v.abs()));
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!(
                (x - y).abs() <= 1e-4 * scale,
                "{what}[{i}]: fast {x} vs candle {y}"
            );
        }
    }

    #[test]
    fn fast_exp_is_accurate() {
        for i in -2000..=2000 {
            let x = i as f32 * 0.043;
            let (a, b) = (fast_exp(x), x.exp());
            assert!((a - b).abs() <= 3e-7 * b, "{x}: {a} vs {b}");
        }
        assert!(fast_exp(-1e4) > 0.0 && fast_exp(1e4).is_finite());
    }

    /// Forward outputs, every parameter's gradient (time MLP and NN₂ included) and the gradient
    /// with respect to the states equal candle's to f32 rounding, with and without the score
    /// input, with one and two hidden layers, with some outputs clipped; computed in one pass
    /// or block by block in any order.
    #[test]
    fn fast_path_equals_candle_forward_and_backward() {
        for (uses_score, depth) in [(true, 2), (true, 1), (false, 2)] {
            let (params, net, tf, x, g) = setup(uses_score, depth);
            let xv = Var::from_tensor(&x).unwrap();
            let h = net.forward(xv.as_tensor(), &g, &tf).unwrap();
            let mut fast = FastDrift::new(&net).unwrap();
            let (xh, gh) = (host(&x), host(&g));
            let (eh, ch) = (host(&tf.embedding), host(&tf.coefficient));
            let hf = fast.forward(&xh, &gh, &eh, &ch, 4).to_vec();
            assert_close(&hf, &host(&h), "h");
            let clipped = hf.iter().filter(|v| v.abs() >= 2.0).count();
            assert!(
                clipped > 0 && clipped < hf.len(),
                "some outputs clipped: {clipped}"
            );
            // Loss Σ h ⊙ R for a fixed random R: ∂loss/∂h = R.
            let mut rng = StdRng::seed_from_u64(8);
            let r = randn(&mut rng, hf.len(), 1.0);
            let rt = Tensor::from_vec(r.clone(), h.dims(), &Device::Cpu).unwrap();
            let candle_grads = (h * rt).unwrap().sum_all().unwrap().backward().unwrap();
            let store = FastDrift::all_gradients(&net, &tf, &fast.backward(&r)).unwrap();
            assert_gradients_close(&params, &candle_grads, &store, 1e-4, "one pass");
            // Blocks of 7 rows (one time each), forward last to first, backward first to last,
            // with the states' gradient.
            let d = 3;
            fast.prepare(28, 4);
            for b in (0..4).rev() {
                let rows = b * 7 * d..(b + 1) * 7 * d;
                fast.forward_block(b * 7, &xh[rows.clone()], &gh[rows], &eh, &ch);
            }
            assert_close(fast.output(), &hf, "h by blocks");
            fast.begin_backward();
            let mut dx = vec![0.0f32; 28 * d];
            for b in 0..4 {
                let rows = b * 7 * d..(b + 1) * 7 * d;
                fast.backward_block(b * 7, &r[rows.clone()], Some(&mut dx[rows]));
            }
            let store = FastDrift::all_gradients(&net, &tf, &fast.finish_backward()).unwrap();
            assert_gradients_close(&params, &candle_grads, &store, 1e-4, "by blocks");
            let want_dx = host(candle_grads.get(xv.as_tensor()).unwrap());
            assert_close(&dx, &want_dx, "dx");
        }
    }
}
