//! Matrix products with at most 16 result columns, `c[m × n] = a[m × k] · b`, for AVX-512:
//! the forward pass of any layer with at most 16 outputs (the output layer, width → d) and
//! the input gradients with at most 16 columns (the first layer's state input). `gemm` runs
//! such shapes slowly, about 45 GFLOP/s at n = 10 against its 150–165 on the square ones
//! (`cargo bench --bench sampler -- gemm-shapes`): it packs `a`, the large operand, on every
//! call, for only n uses of each of its values. Here `a` is read in place and each register
//! holds one row of the result (16 lanes, n of them kept), 8 rows at a time.
//!
//! Every entry is one chain of fused multiply-adds in the order p = 0, 1, …, k − 1, so a row's
//! result does not depend on the other rows of the call (nor on how the rows are split between
//! threads). Used whenever the CPU has AVX-512, whichever SIMD build of the surrounding loops
//! runs, so that every build gives the same numbers.

/// Whether [`product`] runs on this CPU.
pub(super) fn available() -> bool {
    super::kernels::simd() == super::kernels::Simd::Avx512
}

/// `c[m × n] = a · b`, `a` row-major with rows `a_rs` apart (k columns), `b` row-major
/// `[k × 16]` (only its first n columns matter). Panics unless `n ≤ 16`, the slices hold the
/// shape and [`available`].
pub(super) fn product(
    c: &mut [f32],
    a: &[f32],
    (m, k, n): (usize, usize, usize),
    a_rs: usize,
    b: &[f32],
) {
    assert!(available(), "the CPU lacks AVX-512");
    let fits = |len: usize, need: Option<usize>| need.is_some_and(|need| len >= need);
    assert!(n <= 16 && fits(c.len(), m.checked_mul(n)) && fits(b.len(), k.checked_mul(16)));
    let a_need = (m.saturating_sub(1))
        .checked_mul(a_rs)
        .and_then(|v| v.checked_add(k));
    assert!(m == 0 || k == 0 || fits(a.len(), a_need));
    #[cfg(target_arch = "x86_64")]
    // SAFETY: AVX-512 is present (asserted); the asserts above keep every read inside `a` and
    // `b`, and the masked stores write n ≤ 16 values of each of the m rows of `c`.
    unsafe {
        avx512(c, a, (m, k, n), a_rs, b)
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn avx512(
    c: &mut [f32],
    a: &[f32],
    (m, k, n): (usize, usize, usize),
    a_rs: usize,
    b: &[f32],
) {
    use std::arch::x86_64::*;
    const MR: usize = 8;
    let mask: __mmask16 = if n == 16 { 0xFFFF } else { (1u16 << n) - 1 };
    let (ap, bp, cp) = (a.as_ptr(), b.as_ptr(), c.as_mut_ptr());
    let mut i = 0;
    while i < m {
        let rows = (m - i).min(MR);
        // SAFETY (all pointer arithmetic below): row i + r < m, column p < k, as asserted by
        // the caller against the slices' lengths.
        unsafe {
            if rows == MR {
                let mut acc = [_mm512_setzero_ps(); MR];
                for p in 0..k {
                    let bv = _mm512_loadu_ps(bp.add(p * 16));
                    for (r, acc_r) in acc.iter_mut().enumerate() {
                        let x = _mm512_set1_ps(*ap.add((i + r) * a_rs + p));
                        *acc_r = _mm512_fmadd_ps(x, bv, *acc_r);
                    }
                }
                for (r, acc_r) in acc.iter().enumerate() {
                    _mm512_mask_storeu_ps(cp.add((i + r) * n), mask, *acc_r);
                }
            } else {
                for r in 0..rows {
                    let mut acc = _mm512_setzero_ps();
                    for p in 0..k {
                        let bv = _mm512_loadu_ps(bp.add(p * 16));
                        let x = _mm512_set1_ps(*ap.add((i + r) * a_rs + p));
                        acc = _mm512_fmadd_ps(x, bv, acc);
                    }
                    _mm512_mask_storeu_ps(cp.add((i + r) * n), mask, acc);
                }
            }
        }
        i += rows;
    }
}

/// The first 16 columns of the row-major `[rows × cols]` matrix `src`, zero-padded when
/// `cols < 16`: the `b` of [`product`].
pub(super) fn lead16(src: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    assert!(
        cols > 0 && src.len() == rows * cols,
        "a [{rows} × {cols}] matrix"
    );
    let mut out = vec![0.0; rows * 16];
    for (dst, row) in out.chunks_exact_mut(16).zip(src.chunks_exact(cols)) {
        let w = cols.min(16);
        dst[..w].copy_from_slice(&row[..w]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Equal to the products of `gemm` to f32 rounding, for every n ≤ 16 and row counts that
    /// leave a remainder; each row's numbers are independent of the rows around it.
    #[test]
    fn thin_products_match_gemm() {
        if !available() {
            eprintln!("no AVX-512 on this CPU: the thin products are not used, nothing to test");
            return;
        }
        let mut s = 7u32;
        let mut next = |len: usize| -> Vec<f32> {
            (0..len)
                .map(|_| {
                    s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                    (s >> 8) as f32 / (1u32 << 24) as f32 - 0.5
                })
                .collect()
        };
        for (m, k, n) in [(37, 64, 10), (8, 20, 16), (3, 64, 1), (100, 10, 7)] {
            let a_rs = k + 3;
            let a = next(m * a_rs);
            let w = next(k * n); // [k × n]
            let b = lead16(&w, k, n);
            let mut got = vec![0.0f32; m * n];
            product(&mut got, &a, (m, k, n), a_rs, &b);
            let mut want = vec![0.0f32; m * n];
            super::super::kernels::matmul(&mut want, &a, (m, k, n), (a_rs, 1), &w, (n, 1), false);
            for (g, w) in got.iter().zip(&want) {
                assert!(
                    (g - w).abs() <= 1e-5 * (1.0 + w.abs()),
                    "{m}x{k}x{n}: {g} vs {w}"
                );
            }
            // The last row alone gives the same bits as within the call.
            let last = &a[(m - 1) * a_rs..];
            let mut one = vec![0.0f32; n];
            product(&mut one, last, (1, k, n), a_rs, &b);
            assert_eq!(one, got[(m - 1) * n..]);
        }
    }
}
