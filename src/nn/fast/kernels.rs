//! The arithmetic of the fast path: matrix products through `gemm`, the vectorisable e^x and
//! sigmoid, the fused SiLU pass, and the choice of SIMD build.

use super::thin;
use crate::error::Result;
use gemm::Parallelism;

/// One linear layer on the host: `weight` row-major `[out, inp]` (candle's layout), `bias [out]`.
#[derive(Debug, Clone)]
pub(super) struct HostLinear {
    pub(super) inp: usize,
    pub(super) out: usize,
    /// Private: the padded copies below are built from it ([`HostLinear::new`]).
    weight: Vec<f32>,
    pub(super) bias: Vec<f32>,
    /// For the thin products ([`super::thin`]): Wᵀ `[inp × 16]` (with at most 16 outputs; else
    /// empty), and the first 16 columns of W `[out × 16]`, both zero-padded.
    weight_t16: Vec<f32>,
    weight_lead16: Vec<f32>,
}

/// `dst[rows, n] = a[rows, k] · b` where `b` is read with strides (`b_rs`, `b_cs`); `accumulate`
/// adds to `dst` instead of overwriting it.
#[allow(clippy::too_many_arguments)]
pub(crate) fn matmul(
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
    pub(super) fn of(layer: &candle_nn::Linear) -> Result<Self> {
        let (out, inp) = layer.weight().dims2()?;
        let weight = layer.weight().flatten_all()?.to_vec1::<f32>()?;
        let bias = match layer.bias() {
            Some(b) => b.to_vec1::<f32>()?,
            None => vec![0.0; out],
        };
        Ok(Self::new(inp, out, weight, bias))
    }

    /// The layer with `weight [out, inp]` and `bias [out]`.
    pub(super) fn new(inp: usize, out: usize, weight: Vec<f32>, bias: Vec<f32>) -> Self {
        assert!(inp > 0 && out > 0, "a layer with inputs and outputs");
        assert_eq!(weight.len(), out * inp, "weight [out, inp]");
        assert_eq!(bias.len(), out, "bias [out]");
        let weight_t16 = if out <= 16 {
            let mut t = vec![0.0; inp * out];
            for (o, row) in weight.chunks_exact(inp).enumerate() {
                for (i, &w) in row.iter().enumerate() {
                    t[i * out + o] = w;
                }
            }
            thin::lead16(&t, inp, out)
        } else {
            Vec::new()
        };
        let weight_lead16 = thin::lead16(&weight, out, inp);
        Self {
            inp,
            out,
            weight,
            bias,
            weight_t16,
            weight_lead16,
        }
    }

    /// `y[rows, out] = x[rows, inp] · Wᵀ`, without the bias: the callers add it in their
    /// elementwise pass over `y` (one pass instead of a copy of the bias per row first).
    pub(super) fn forward_no_bias(&self, x: &[f32], rows: usize, y: &mut [f32]) {
        if self.out <= 16 && thin::available() {
            let shape = (rows, self.inp, self.out);
            return thin::product(y, x, shape, self.inp, &self.weight_t16);
        }
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
    /// `dw` and `db`. With fewer inputs than outputs (the first layer: 2d inputs, width
    /// outputs), the product is computed as (dyᵀ x)ᵀ = xᵀ dy into `tmp` and added transposed:
    /// `gemm` runs that orientation about twice as fast (its microkernels span 64 rows of the
    /// result; `cargo bench --bench sampler -- gemm-shapes`). Inlined, so that the sums are
    /// compiled with the caller's SIMD build.
    #[inline(always)]
    pub(super) fn backward_params(
        &self,
        x: &[f32],
        dy: &[f32],
        rows: usize,
        (dw, db): (&mut [f32], &mut [f32]),
        tmp: &mut Vec<f32>,
    ) {
        let (inp, out) = (self.inp, self.out);
        if inp < out {
            tmp.resize(inp * out, 0.0);
            matmul(tmp, x, (inp, rows, out), (1, inp), dy, (out, 1), false);
            for (i, t_row) in tmp.chunks_exact(out).enumerate() {
                for (o, &t) in t_row.iter().enumerate() {
                    dw[o * inp + i] += t;
                }
            }
        } else {
            matmul(dw, dy, (out, rows, inp), (1, out), x, (inp, 1), true);
        }
        for r in 0..rows {
            for (d, g) in db.iter_mut().zip(&dy[r * out..(r + 1) * out]) {
                *d += g;
            }
        }
    }

    /// `dx[rows, inp] = dy[rows, out] · W`.
    pub(super) fn backward_input(&self, dy: &[f32], rows: usize, dx: &mut [f32]) {
        self.backward_input_cols(dy, rows, self.inp, dx);
    }

    /// The first `cols` columns of [`HostLinear::backward_input`]: `dx[rows, cols]`.
    pub(super) fn backward_input_cols(&self, dy: &[f32], rows: usize, cols: usize, dx: &mut [f32]) {
        assert!(cols <= self.inp);
        if cols <= 16 && thin::available() {
            let shape = (rows, self.out, cols);
            return thin::product(dx, dy, shape, self.out, &self.weight_lead16);
        }
        matmul(
            dx,
            dy,
            (rows, self.out, cols),
            (self.out, 1),
            &self.weight,
            (self.inp, 1),
            false,
        );
    }
}

/// e^x for f32 without a libm call, so that loops over it vectorise: x = n ln2 + r with
/// |r| ≤ ln2/2, e^r by its degree-6 Taylor polynomial in Horner form (relative error below
/// 2·10⁻⁷, near f32 rounding), 2ⁿ by building the exponent bits. Inputs are clamped to
/// [−87, 88], where e^x is a normal f32. The reduction and the polynomial use fused
/// multiply-adds (`f32::mul_add`, one rounding each): one instruction in the AVX2 and AVX-512
/// builds, which is why those builds need FMA, and libm's correctly rounded `fmaf` in the
/// portable one, so every build gives the same bits.
#[inline(always)]
pub(super) fn fast_exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    const ROUND: f32 = 12_582_912.0; // 1.5·2²³: adding it rounds to an integer
    let x = x.clamp(-87.0, 88.0);
    let shifted = x.mul_add(LOG2E, ROUND);
    let n = shifted - ROUND;
    let r = n.mul_add(-LN2_LO, n.mul_add(-LN2_HI, x));
    let mut p: f32 = 1.0 / 720.0;
    for c in [1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0] {
        p = p.mul_add(r, c);
    }
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
/// Ordered: each level's instructions include the lower ones'.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(in crate::nn) enum Simd {
    Portable,
    Avx2,
    Avx512,
}

/// Defines `fn $name(level: Simd, args…)`, which runs `$body(args…)` (an `#[inline(always)]`
/// function) compiled for `level`'s instructions: AVX-512, AVX2 with FMA, or the baseline. The
/// one copy of the dispatch that every pass uses; callers pass [`simd`] (tests any lower
/// level). Panics when the CPU lacks `level`'s instructions.
macro_rules! simd_builds {
    ($(#[$meta:meta])* $vis:vis fn $name:ident => $body:ident($($arg:ident: $ty:ty),* $(,)?)) => {
        $(#[$meta])*
        $vis fn $name(level: Simd, $($arg: $ty),*) {
            assert!(level <= simd(), "the CPU lacks the instructions of {level:?}");
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx512f,avx2,fma")]
            unsafe fn avx512($($arg: $ty),*) {
                $body($($arg),*)
            }
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2,fma")]
            unsafe fn avx2($($arg: $ty),*) {
                $body($($arg),*)
            }
            match level {
                // SAFETY: the CPU has the level's features (asserted above).
                #[cfg(target_arch = "x86_64")]
                Simd::Avx512 => unsafe { avx512($($arg),*) },
                #[cfg(target_arch = "x86_64")]
                Simd::Avx2 => unsafe { avx2($($arg),*) },
                _ => $body($($arg),*),
            }
        }
    };
}
pub(in crate::nn) use simd_builds;

pub(in crate::nn) fn simd() -> Simd {
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

/// One row of a hidden layer after its matrix product: p = pre + b (+ e), then SiLU(p) =
/// p·sigmoid(p), p in place of `pre` and SiLU(p) into `post`. `shift` yields (b, e) per
/// column; e = 0 adds nothing.
#[inline(always)]
pub(super) fn silu_row<'a>(
    pre: &mut [f32],
    post: &mut [f32],
    shift: impl Iterator<Item = (&'a f32, &'a f32)>,
) {
    for ((p, q), (b, e)) in pre.iter_mut().zip(post).zip(shift) {
        let v = (*p + b) + e;
        *p = v;
        *q = v * sigmoid(v);
    }
}

/// Per-coordinate constants `c` (d of them) repeated over 16 rows when d < 16: loops over the
/// values of whole rows (rows × d, flat) then zip with the repeat in chunks of its length, which
/// vectorise, where a loop over each row's d = 10 values does not. Chunks start on row
/// boundaries, so value i of a chunk is coordinate i mod d.
pub(crate) fn tiled(c: &[f32]) -> Vec<f32> {
    let reps = if c.len() < 16 { 16 } else { 1 };
    c.repeat(reps)
}

#[inline(always)]
pub(crate) fn sigmoid(a: f32) -> f32 {
    1.0 / (1.0 + fast_exp(-a))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_exp_is_accurate() {
        for i in -2000..=2000 {
            let x = i as f32 * 0.043;
            let (a, b) = (fast_exp(x), x.exp());
            assert!((a - b).abs() <= 3e-7 * b, "{x}: {a} vs {b}");
        }
        assert!(fast_exp(-1e4) > 0.0 && fast_exp(1e4).is_finite());
    }
}
