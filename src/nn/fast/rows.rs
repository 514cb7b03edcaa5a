//! The forward and backward passes over one range of rows: what one thread computes. The rows
//! of a block are split between threads ([`super::FastDrift`]); each range writes its own rows
//! of the kept activations and accumulates the parameter gradients in its own [`Scratch`].

use super::FastGradients;
use super::kernels::{HostLinear, Simd, sigmoid, silu_row, simd, simd_builds, tiled};

/// The per-row layers and constants of the network, read by every thread.
#[derive(Debug, Clone)]
pub(super) struct Layers {
    pub(super) dim: usize,
    pub(super) uses_score: bool,
    /// first, hidden…, out.
    pub(super) layers: Vec<HostLinear>,
    /// σ⁻¹ per coordinate, repeated over 16 rows when d < 16 ([`tiled`]): its first d values
    /// are σ⁻¹.
    pub(super) inv_sigma: Vec<f32>,
    pub(super) length_scale: f32,
    pub(super) clip: f32,
}

impl Layers {
    pub(super) fn width(&self) -> usize {
        self.layers[0].out
    }

    pub(super) fn inputs(&self) -> usize {
        self.layers[0].inp
    }

    pub(super) fn n_hidden(&self) -> usize {
        self.layers.len() - 1
    }
}

/// The activations a forward pass keeps for the backward pass, for all the rows of a pass.
#[derive(Debug, Clone, Default)]
pub(super) struct Kept {
    /// The first layer's input (x/σ, ℓg).
    pub(super) input: Vec<f32>,
    /// Pre-activations of the first and hidden layers (their sigmoid and SiLU are not kept:
    /// the backward pass recomputes them block by block, in cache, which costs less than
    /// writing them to memory and reading them back).
    pub(super) pre: Vec<Vec<f32>>,
    /// The output h (clipped), before the clip, and the score input.
    pub(super) h: Vec<f32>,
    pub(super) unclipped: Vec<f32>,
    pub(super) score: Vec<f32>,
}

/// Mutable views of the kept activations of a range of rows.
#[derive(Debug)]
pub(super) struct KeptRows<'a> {
    input: &'a mut [f32],
    pre: Vec<&'a mut [f32]>,
    h: &'a mut [f32],
    unclipped: &'a mut [f32],
    score: &'a mut [f32],
}

impl Kept {
    /// Sizes the buffers for `rows` rows.
    pub(super) fn resize(&mut self, net: &Layers, rows: usize) {
        let (d, width) = (net.dim, net.width());
        self.input.resize(rows * net.inputs(), 0.0);
        self.pre.resize(net.n_hidden(), Vec::new());
        for b in self.pre.iter_mut() {
            b.resize(rows * width, 0.0);
        }
        for b in [&mut self.h, &mut self.unclipped, &mut self.score] {
            b.resize(rows * d, 0.0);
        }
    }

    /// The rows `first..first + count`.
    pub(super) fn rows_mut(&mut self, net: &Layers, first: usize, count: usize) -> KeptRows<'_> {
        let (d, width, inputs) = (net.dim, net.width(), net.inputs());
        let range = |w: usize| first * w..(first + count) * w;
        KeptRows {
            input: &mut self.input[range(inputs)],
            pre: self.pre.iter_mut().map(|b| &mut b[range(width)]).collect(),
            h: &mut self.h[range(d)],
            unclipped: &mut self.unclipped[range(d)],
            score: &mut self.score[range(d)],
        }
    }

    /// All rows as blocks of `batch` rows (block b: rows b·batch..), each block split at its
    /// row `split`: the first parts of every block, and the second parts.
    pub(super) fn halves_by_block<'a>(
        &'a mut self,
        net: &Layers,
        batch: usize,
        split: usize,
    ) -> (Vec<KeptRows<'a>>, Vec<KeptRows<'a>>) {
        let (d, width, inputs) = (net.dim, net.width(), net.inputs());
        fn split_blocks(
            v: &mut [f32],
            (batch, split, w): (usize, usize, usize),
        ) -> impl Iterator<Item = (&mut [f32], &mut [f32])> {
            v.chunks_exact_mut(batch * w)
                .map(move |b| b.split_at_mut(split * w))
        }
        let blocks = |v: &'a mut Vec<f32>, w: usize| split_blocks(v, (batch, split, w));
        let input = blocks(&mut self.input, inputs);
        let mut pre: Vec<_> = self.pre.iter_mut().map(|b| blocks(b, width)).collect();
        let mut h = blocks(&mut self.h, d);
        let mut unclipped = blocks(&mut self.unclipped, d);
        let mut score = blocks(&mut self.score, d);
        let (mut first, mut second) = (Vec::new(), Vec::new());
        for (ia, ib) in input {
            let (mut pa, mut pb) = (Vec::new(), Vec::new());
            for p in pre.iter_mut() {
                let (p0, p1) = p.next().expect("block");
                pa.push(p0);
                pb.push(p1);
            }
            let (ha, hb) = h.next().expect("block");
            let (ua, ub) = unclipped.next().expect("block");
            let (ga, gb) = score.next().expect("block");
            first.push(KeptRows {
                input: ia,
                pre: pa,
                h: ha,
                unclipped: ua,
                score: ga,
            });
            second.push(KeptRows {
                input: ib,
                pre: pb,
                h: hb,
                unclipped: ub,
                score: gb,
            });
        }
        (first, second)
    }
}

impl KeptRows<'_> {
    /// The output h of these rows (after a forward pass over them).
    pub(super) fn h(&self) -> &[f32] {
        self.h
    }
}

/// One thread's working buffers and gradient accumulators.
#[derive(Debug, Clone, Default)]
pub(super) struct Scratch {
    /// The sigmoid and SiLU outputs pre·sigmoid of the range's rows, per hidden layer: not kept
    /// for the whole pass, recomputed from `pre` when the backward pass needs them.
    sig: Vec<Vec<f32>>,
    post: Vec<Vec<f32>>,
    dy: Vec<f32>,
    dpost: Vec<f32>,
    dpre: Vec<f32>,
    din: Vec<f32>,
    /// A layer's weight gradient, transposed ([`HostLinear::backward_params`]).
    dw_tmp: Vec<f32>,
    /// The score coefficient's gradient of one time, repeated over 16 rows ([`tiled`]).
    coefficient_t: Vec<f32>,
    /// ∂loss/∂h and ∂loss/∂x of the half's rows of one step ([`super::FastDrift::backward_steps`]).
    pub(super) path_dh: Vec<f32>,
    pub(super) path_dx: Vec<f32>,
    /// Gradients accumulated over the ranges this scratch has run.
    pub(super) acc: FastGradients,
}

impl Scratch {
    /// Zeroes the accumulators, sized for `net` and `n_times` times.
    pub(super) fn clear(&mut self, net: &Layers, n_times: usize) {
        let acc = &mut self.acc;
        acc.layers
            .resize(net.layers.len(), (Vec::new(), Vec::new()));
        for (l, (dw, db)) in net.layers.iter().zip(acc.layers.iter_mut()) {
            dw.clear();
            dw.resize(l.out * l.inp, 0.0);
            db.clear();
            db.resize(l.out, 0.0);
        }
        acc.embedding.clear();
        acc.embedding.resize(n_times * net.width(), 0.0);
        acc.coefficient.clear();
        acc.coefficient.resize(n_times * net.dim, 0.0);
    }
}

/// The time features of a pass: row r has the time r / `per`.
#[derive(Clone, Copy)]
pub(super) struct Times<'a> {
    pub(super) embedding: &'a [f32],
    pub(super) coefficient: &'a [f32],
    pub(super) per: usize,
}

simd_builds! {
    /// The forward pass of the rows `first..` (as many as `xs`' states hold) into `kept`, given
    /// their states and scores `xs`.
    pub(super) fn forward_rows => forward_impl(
        net: &Layers,
        kept: &mut KeptRows<'_>,
        scratch: &mut Scratch,
        first: usize,
        xs: (&[f32], &[f32]),
        times: Times<'_>,
    )
}

#[inline(always)]
fn forward_impl(
    net: &Layers,
    kept: &mut KeptRows<'_>,
    scratch: &mut Scratch,
    first: usize,
    (x, score): (&[f32], &[f32]),
    times: Times<'_>,
) {
    let d = net.dim;
    let count = x.len() / d;
    let (width, inputs, per) = (net.width(), net.inputs(), times.per);
    let KeptRows {
        input,
        pre,
        h,
        unclipped,
        score: kept_score,
    } = kept;
    let scores = score.chunks_exact(d).chain(std::iter::repeat(&[][..]));
    for ((row, xr), sr) in input
        .chunks_exact_mut(inputs)
        .zip(x.chunks_exact(d))
        .zip(scores)
    {
        for ((v, &xv), &is) in row.iter_mut().zip(xr).zip(&net.inv_sigma[..d]) {
            *v = xv * is;
        }
        if net.uses_score {
            for (v, &g) in row[d..].iter_mut().zip(sr) {
                *v = g * net.length_scale;
            }
        }
    }
    let n_hidden = net.n_hidden();
    scratch.post.resize(n_hidden, Vec::new());
    for l in 0..n_hidden {
        let layer = &net.layers[l];
        let (done, rest) = scratch.post.split_at_mut(l);
        let src: &[f32] = if l == 0 { input } else { &done[l - 1] };
        let post = &mut rest[0];
        post.resize(count * width, 0.0);
        let pre = &mut *pre[l];
        layer.forward_no_bias(src, count, pre);
        let rows = pre
            .chunks_exact_mut(width)
            .zip(post.chunks_exact_mut(width));
        for (r, (pr, qr)) in (first..).zip(rows) {
            if l == 0 {
                // The first layer adds the time embedding of the row's step.
                let e = &times.embedding[(r / per) * width..(r / per + 1) * width];
                silu_row(pr, qr, layer.bias.iter().zip(e));
            } else {
                silu_row(pr, qr, layer.bias.iter().map(|b| (b, &0.0)));
            }
        }
    }
    let out = &net.layers[n_hidden];
    out.forward_no_bias(&scratch.post[n_hidden - 1], count, h);
    if net.uses_score {
        kept_score.copy_from_slice(score);
    }
    // One run of rows per time (the coefficient changes with it), each as flat values against
    // the per-coordinate constants repeated over 16 rows ([`tiled`]).
    let bias_t = tiled(&out.bias);
    for (t, rows) in time_runs(first, count, per) {
        let span = (rows.start - first) * d..(rows.end - first) * d;
        let coefficient_t = tiled(&times.coefficient[t * d..(t + 1) * d]);
        let consts = (&bias_t[..], &net.inv_sigma[..], &coefficient_t[..]);
        let score = net.uses_score.then(|| &score[span.clone()]);
        let outputs = (&mut h[span.clone()], &mut unclipped[span]);
        output_run(outputs, score, consts, net.clip);
    }
}

/// The rows `first..first + count` in runs that share a time (row r has the time r / `per`):
/// (time, rows) for each run, in order.
fn time_runs(
    first: usize,
    count: usize,
    per: usize,
) -> impl Iterator<Item = (usize, std::ops::Range<usize>)> {
    let end = first + count;
    let next_start = move |&r: &usize| Some((r / per + 1) * per).filter(|&n| n < end);
    std::iter::successors(Some(first).filter(|&r| r < end), next_start)
        .map(move |r| (r / per, r..((r / per + 1) * per).min(end)))
}

/// The output values of whole rows of one time: u = (h + b)·σ⁻¹ (+ g·c with a score input)
/// and h = u clipped to ±`clip`, in chunks of the constants' length (whole rows; see
/// [`tiled`]).
#[inline(always)]
fn output_run(
    (h, u): (&mut [f32], &mut [f32]),
    score: Option<&[f32]>,
    (bias, inv_sigma, coefficient): (&[f32], &[f32], &[f32]),
    clip: f32,
) {
    let len = bias.len();
    let consts = || bias.iter().zip(inv_sigma).zip(coefficient);
    let chunks = h.chunks_mut(len).zip(u.chunks_mut(len));
    match score {
        Some(g) => {
            for ((hc, uc), gc) in chunks.zip(g.chunks(len)) {
                let values = hc.iter_mut().zip(uc.iter_mut()).zip(gc);
                for (((hv, uv), &gv), ((&b, &is), &c)) in values.zip(consts()) {
                    let v = (*hv + b) * is + gv * c;
                    *uv = v;
                    *hv = v.clamp(-clip, clip);
                }
            }
        }
        None => {
            for (hc, uc) in chunks {
                for ((hv, uv), ((&b, &is), _)) in hc.iter_mut().zip(uc.iter_mut()).zip(consts()) {
                    let v = (*hv + b) * is;
                    *uv = v;
                    *hv = v.clamp(-clip, clip);
                }
            }
        }
    }
}

simd_builds! {
    /// Adds the gradients from the rows `first..` (as many as `grads.0` holds), given the loss's
    /// gradient `grads.0` with respect to their h, to `scratch`'s accumulators; with `grads.1`,
    /// writes the gradient with respect to their states x.
    pub(super) fn backward_rows => backward_impl(
        net: &Layers,
        kept: &Kept,
        scratch: &mut Scratch,
        first: usize,
        grads: (&[f32], Option<&mut [f32]>),
        per: usize,
    )
}

#[inline(always)]
fn backward_impl(
    net: &Layers,
    kept: &Kept,
    scratch: &mut Scratch,
    first: usize,
    (dh, dx): (&[f32], Option<&mut [f32]>),
    per: usize,
) {
    let d = net.dim;
    let count = dh.len() / d;
    let (width, inputs, n_hidden) = (net.width(), net.inputs(), net.n_hidden());
    let Scratch {
        sig,
        post,
        dy,
        dpost,
        dpre,
        din,
        dw_tmp,
        coefficient_t,
        acc,
        ..
    } = scratch;
    post.resize(n_hidden, Vec::new());
    sig.resize(n_hidden, Vec::new());
    // Gradient at the unclipped output, then at the output layer's result (× σ⁻¹).
    let block = |w: usize| first * w..(first + count) * w;
    dy.resize(count * d, 0.0);
    let len = net.inv_sigma.len();
    coefficient_t.resize(len, 0.0);
    for (t, rows) in time_runs(first, count, per) {
        let span = (rows.start - first) * d..(rows.end - first) * d;
        let kept_span = rows.start * d..rows.end * d;
        coefficient_t.fill(0.0);
        let values = (&mut dy[span.clone()], &dh[span]);
        let kept_values = (&kept.unclipped[kept_span.clone()], &kept.score[kept_span]);
        output_grad_run(
            values,
            kept_values,
            &net.inv_sigma,
            (coefficient_t, net.clip),
        );
        if net.uses_score {
            let coefficient = &mut acc.coefficient[t * d..(t + 1) * d];
            for row in coefficient_t.chunks_exact(d) {
                for (c, v) in coefficient.iter_mut().zip(row) {
                    *c += v;
                }
            }
        }
    }
    // The range's sigmoid and SiLU outputs of hidden layer l, as the forward pass computed
    // them (a function, not a closure, so that it is compiled with the caller's SIMD features).
    #[inline(always)]
    fn recompute(sig: &mut Vec<f32>, post: &mut Vec<f32>, pre: &[f32]) {
        sig.resize(pre.len(), 0.0);
        post.resize(pre.len(), 0.0);
        for ((g, q), &p) in sig.iter_mut().zip(post.iter_mut()).zip(pre) {
            let s = sigmoid(p);
            *g = s;
            *q = p * s;
        }
    }
    let last = n_hidden - 1;
    recompute(
        &mut sig[last],
        &mut post[last],
        &kept.pre[last][block(width)],
    );
    let (dw, db) = &mut acc.layers[n_hidden];
    net.layers[n_hidden].backward_params(&post[last], dy, count, (dw, db), dw_tmp);
    dpost.resize(count * width, 0.0);
    net.layers[n_hidden].backward_input(dy, count, dpost);
    dpre.resize(count * width, 0.0);
    for l in (0..n_hidden).rev() {
        let pre = &kept.pre[l][block(width)];
        for ((g, &p), (&q, &s)) in dpre.iter_mut().zip(pre).zip(dpost.iter().zip(&sig[l])) {
            *g = q * s * (1.0 + p * (1.0 - s));
        }
        let src: &[f32] = if l == 0 {
            &kept.input[block(inputs)]
        } else {
            recompute(
                &mut sig[l - 1],
                &mut post[l - 1],
                &kept.pre[l - 1][block(width)],
            );
            &post[l - 1]
        };
        let (dw, db) = &mut acc.layers[l];
        net.layers[l].backward_params(src, dpre, count, (dw, db), dw_tmp);
        if l > 0 {
            net.layers[l].backward_input(dpre, count, dpost);
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
        // Only the gradient with respect to the first d inputs (x/σ): the score input is a
        // constant of the pass.
        din.resize(count * d, 0.0);
        net.layers[0].backward_input_cols(dpre, count, d, din);
        for (dxc, dc) in dx.chunks_mut(len).zip(din.chunks(len)) {
            for ((v, &g), &is) in dxc.iter_mut().zip(dc).zip(&net.inv_sigma) {
                *v = g * is;
            }
        }
    }
}

/// The gradient at the output layer's result for whole rows of one time: ∂/∂u = ∂/∂h where
/// the clip let u through (else 0), times σ⁻¹ into `dy`; adds ∂/∂u · g (the score) to
/// `coefficient`, the per-coordinate sums repeated over the rows of a chunk ([`tiled`]).
#[inline(always)]
fn output_grad_run(
    (dy, dh): (&mut [f32], &[f32]),
    (unclipped, score): (&[f32], &[f32]),
    inv_sigma: &[f32],
    (coefficient, clip): (&mut [f32], f32),
) {
    let len = inv_sigma.len();
    let chunks = dy.chunks_mut(len).zip(dh.chunks(len));
    let kept = unclipped.chunks(len).zip(score.chunks(len));
    for ((yc, hc), (uc, gc)) in chunks.zip(kept) {
        let values = yc.iter_mut().zip(hc).zip(uc.iter().zip(gc));
        for (((y, &h), (&u, &g)), (&is, c)) in
            values.zip(inv_sigma.iter().zip(coefficient.iter_mut()))
        {
            let grad = if u >= -clip && u <= clip { h } else { 0.0 };
            *c += grad * g;
            *y = grad * is;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The AVX-512, AVX2 and portable builds of the passes give the same numbers, bit for bit
    /// (each build that this CPU can run).
    #[test]
    fn simd_builds_agree_bit_for_bit() {
        let (d, width, rows, n_times) = (3, 16, 40, 4);
        let mut k = 0u32;
        let mut next = |n: usize, scale: f32| -> Vec<f32> {
            (0..n)
                .map(|_| {
                    k = k.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                    (k >> 8) as f32 / (1u32 << 24) as f32 * 2.0 * scale - scale
                })
                .collect()
        };
        let linear = |inp: usize, out: usize, next: &mut dyn FnMut(usize, f32) -> Vec<f32>| {
            HostLinear::new(inp, out, next(inp * out, 0.5), next(out, 0.5))
        };
        let layers = vec![
            linear(2 * d, width, &mut next),
            linear(width, width, &mut next),
            linear(width, d, &mut next),
        ];
        let net = Layers {
            dim: d,
            uses_score: true,
            layers,
            inv_sigma: tiled(&[1.0, 0.5, 2.0]),
            length_scale: 0.7,
            clip: 1.0,
        };
        let (x, score) = (next(rows * d, 2.0), next(rows * d, 2.0));
        let (emb, coef, dh) = (
            next(n_times * width, 1.0),
            next(n_times * d, 1.0),
            next(rows * d, 1.0),
        );
        let times = Times {
            embedding: &emb,
            coefficient: &coef,
            per: rows / n_times,
        };
        let run = |level: Simd| {
            let mut kept = Kept::default();
            kept.resize(&net, rows);
            let mut scratch = Scratch::default();
            scratch.clear(&net, n_times);
            let mut dx = vec![0.0; rows * d];
            let grads = (&dh[..], Some(&mut dx[..]));
            let mut kept_rows = kept.rows_mut(&net, 0, rows);
            let s = &mut scratch;
            forward_rows(level, &net, &mut kept_rows, s, 0, (&x, &score), times);
            backward_rows(level, &net, &kept, s, 0, grads, times.per);
            (kept.h.clone(), dx, scratch.acc.layers.clone())
        };
        let want = run(Simd::Portable);
        assert!(want.0.iter().all(|v| v.is_finite()) && want.1.iter().any(|&v| v != 0.0));
        if simd() != Simd::Portable {
            assert_eq!(run(Simd::Avx2), want, "AVX2");
        }
        if simd() == Simd::Avx512 {
            assert_eq!(run(Simd::Avx512), want, "AVX-512");
        }
    }
}
