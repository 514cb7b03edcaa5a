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
//! Threads: the rows of each step's batch are split in two halves at a fixed row
//! ([`split_point`]: when each half has at least [`MIN_PART_ROWS`] rows), computed on the calling
//! thread and a helper thread ([`FastDrift::split_halves`] for the forward pass of a simulation,
//! [`FastDrift::backward_steps`] for the backward pass over a path); each half accumulates its
//! gradients in its own buffers, summed in a fixed order at the end. The split depends only on
//! the batch size, not on the number of threads, so the numbers are the same with one thread or
//! two (with `RAYON_NUM_THREADS=1` both halves run in turn).
//!
//! The fast path computes what [`DriftNet::forward`] computes, to f32 rounding (the sums run in
//! another order); the tests below hold it to the candle path, forward and backward.

mod kernels;
mod rows;
mod thin;

use super::drift::{DriftNet, TimeFeatures};
use crate::error::Result;
use candle_core::Tensor;
use kernels::HostLinear;
pub(crate) use kernels::tiled;
pub(super) use kernels::{Simd, matmul, sigmoid, simd, simd_builds};
use rows::{Kept, Layers, Scratch, Times, backward_rows, forward_rows};

/// A batch is split between two threads only when each half gets at least this many rows.
pub const MIN_PART_ROWS: usize = 64;

/// The rows of a batch of `batch` rows that the first half of [`FastDrift::backward_steps`]
/// takes: half of them, or all of them when the batch is too small to split.
pub fn split_point(batch: usize) -> usize {
    if batch >= 2 * MIN_PART_ROWS {
        batch / 2
    } else {
        batch
    }
}

/// One half's part in [`FastDrift::backward_steps`]: the loss's gradients of its rows, step by
/// step. Row i of the slices is the half's i-th row of the step (row `start + i` of the batch).
pub trait StepAdjoint: Send {
    /// Writes ∂loss/∂h of the half's rows at step k into `dh` `[rows, dim]`.
    fn dh(&mut self, k: usize, dh: &mut [f32]);
    /// Receives ∂loss/∂x of the half's rows at step k (when the pass was asked for it), after
    /// step k's backward pass and before step k + 1's [`StepAdjoint::dh`].
    fn dx(&mut self, k: usize, dx: &[f32]);
}

/// The per-row layers of a [`DriftNet`] copied to the host, with buffers for the activations of
/// the last forward pass (kept for the backward pass).
#[derive(Debug, Clone)]
pub struct FastDrift {
    net: Layers,
    // The pass sized by `prepare`.
    rows: usize,
    n_times: usize,
    kept: Kept,
    /// The two halves' working buffers and gradient accumulators.
    halves: [Scratch; 2],
    /// The gradients of the last backward pass (the halves' sum).
    acc: FastGradients,
    /// Scratch buffers lent to callers ([`FastDrift::take_buffer`]).
    spare: Vec<Vec<f32>>,
}

/// One half of the rows of every step of a pass ([`FastDrift::split_halves`]).
#[derive(Debug)]
pub struct HalfDrift<'a> {
    net: &'a Layers,
    scratch: &'a mut Scratch,
    blocks: Vec<rows::KeptRows<'a>>,
    rows: std::ops::Range<usize>,
    batch: usize,
    per: usize,
}

impl HalfDrift<'_> {
    /// The rows of each step's batch that this half computes.
    pub fn rows(&self) -> std::ops::Range<usize> {
        self.rows.clone()
    }

    /// h of this half's rows of step block `block` (rows `block·batch + rows()`), at their
    /// states `x` and scores `score`; `embedding` and `coefficient` hold all the pass's times.
    pub fn forward(
        &mut self,
        block: usize,
        x: &[f32],
        score: &[f32],
        embedding: &[f32],
        coefficient: &[f32],
    ) -> &[f32] {
        let times = Times {
            embedding,
            coefficient,
            per: self.per,
        };
        let kept = &mut self.blocks[block];
        if !x.is_empty() {
            let first = block * self.batch + self.rows.start;
            forward_rows(
                simd(),
                self.net,
                kept,
                self.scratch,
                first,
                (x, score),
                times,
            );
        }
        kept.h()
    }
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

impl FastGradients {
    /// Adds `other` (the same network) to these gradients.
    fn add(&mut self, other: &FastGradients) {
        self.add_at(other, 0);
    }

    /// Adds `other`, a pass of the same network whose time t was this pass's time
    /// `first_time + t`: the layers' gradients as they are, the time features' at rows shifted
    /// by `first_time` (growing these to cover them).
    pub fn add_at(&mut self, other: &FastGradients, first_time: usize) {
        let add = |a: &mut [f32], b: &[f32]| {
            for (x, y) in a.iter_mut().zip(b) {
                *x += y;
            }
        };
        for ((w, b), (ow, ob)) in self.layers.iter_mut().zip(&other.layers) {
            add(w, ow);
            add(b, ob);
        }
        // Row widths: the first layer's outputs (width) and the output layer's (dim).
        let width = self.layers.first().map_or(0, |l| l.1.len());
        let dim = self.layers.last().map_or(0, |l| l.1.len());
        for (mine, theirs, row) in [
            (&mut self.embedding, &other.embedding, width),
            (&mut self.coefficient, &other.coefficient, dim),
        ] {
            let start = first_time * row;
            if mine.len() < start + theirs.len() {
                mine.resize(start + theirs.len(), 0.0);
            }
            add(&mut mine[start..], theirs);
        }
    }
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
            net: Layers {
                dim: parts.dim,
                uses_score: parts.uses_score,
                layers,
                inv_sigma: kernels::tiled(&parts.inv_sigma.flatten_all()?.to_vec1::<f32>()?),
                length_scale: parts.length_scale as f32,
                clip: parts.output_clip as f32,
            },
            rows: 0,
            n_times: 0,
            kept: Kept::default(),
            halves: Default::default(),
            acc: FastGradients::default(),
            spare: Vec::new(),
        })
    }

    /// Copies the current weights of `net`'s per-row layers (same architecture) into this one,
    /// keeping the buffers.
    pub fn refresh(&mut self, net: &DriftNet) -> Result<()> {
        let parts = net.fast_parts();
        let all = std::iter::once(parts.first)
            .chain(parts.hidden.iter())
            .chain(std::iter::once(parts.out));
        for (dst, src) in self.net.layers.iter_mut().zip(all) {
            *dst = HostLinear::of(src)?;
        }
        Ok(())
    }

    /// A buffer of `len` values (contents unspecified) from the pool that callers give back with
    /// [`FastDrift::give_buffer`], so that repeated calls reuse their memory.
    pub fn take_buffer(&mut self, len: usize) -> Vec<f32> {
        // The smallest spare buffer that holds `len` values, else the largest (so that buffers
        // given back in another order than taken are not reallocated every call).
        let fits = (0..self.spare.len())
            .filter(|&i| self.spare[i].capacity() >= len)
            .min_by_key(|&i| self.spare[i].capacity());
        let largest = (0..self.spare.len()).max_by_key(|&i| self.spare[i].capacity());
        let mut v = match fits.or(largest) {
            Some(i) => self.spare.swap_remove(i),
            None => Vec::new(),
        };
        v.resize(len, 0.0);
        v
    }

    /// Returns a buffer to the pool.
    pub fn give_buffer(&mut self, v: Vec<f32>) {
        self.spare.push(v);
    }

    /// Width of the hidden layers.
    pub fn width(&self) -> usize {
        self.net.width()
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
        self.rows = rows;
        self.n_times = n_times;
        self.kept.resize(&self.net, rows);
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
        self.prepare(x.len() / self.net.dim, n_times);
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
        let (d, count) = (self.net.dim, x.len() / self.net.dim);
        assert!(first + count <= self.rows, "rows outside the prepared pass");
        assert!(
            !self.net.uses_score || score.len() == x.len(),
            "one score per state"
        );
        let times = Times {
            embedding,
            coefficient,
            per: self.rows / self.n_times,
        };
        let net = &self.net;
        let mut kept = self.kept.rows_mut(net, first, count);
        forward_rows(
            simd(),
            net,
            &mut kept,
            &mut self.halves[0],
            first,
            (x, score),
            times,
        );
        &self.kept.h[first * d..(first + count) * d]
    }

    /// [`FastDrift::forward_block`] of all the rows of a pass prepared for one time
    /// (`prepare(rows, 1)`), at the time of row `k` of the all-time features `times`
    /// (embedding `[N, width]` and coefficient `[N, dim]`, flattened).
    pub fn forward_at(
        &mut self,
        k: usize,
        x: &[f32],
        score: &[f32],
        (embedding, coefficient): (&[f32], &[f32]),
    ) -> &[f32] {
        let (w, d) = (self.net.width(), self.net.dim);
        let e = &embedding[k * w..(k + 1) * w];
        self.forward_block(0, x, score, e, &coefficient[k * d..(k + 1) * d])
    }

    /// The two halves of a pass prepared over whole steps of `batch` rows
    /// ([`FastDrift::prepare`] with `rows` a multiple of `batch`): rows `0..split_point(batch)`
    /// of every step's block and the rest, each with its own working buffers, for two threads
    /// to compute at once ([`HalfDrift::forward`]).
    pub fn split_halves(&mut self, batch: usize) -> (HalfDrift<'_>, HalfDrift<'_>) {
        self.split_halves_at(batch, split_point(batch))
    }

    /// [`FastDrift::split_halves`] at row `split` of each step's block (0 < `split` ≤ `batch`)
    /// instead of [`split_point`]. A forward pass computes each row alone, so where the rows
    /// are split changes each thread's work, and no number as long as each part has at least
    /// [`MIN_PART_ROWS`] rows (below that `gemm` takes another path; a test holds this).
    pub fn split_halves_at(
        &mut self,
        batch: usize,
        split: usize,
    ) -> (HalfDrift<'_>, HalfDrift<'_>) {
        assert!(
            batch > 0 && self.rows.is_multiple_of(batch),
            "the pass's rows are whole steps of the batch"
        );
        assert!(split > 0 && split <= batch, "split row {split} of {batch}");
        let per = self.rows / self.n_times;
        let (b0, b1) = self.kept.halves_by_block(&self.net, batch, split);
        let [s0, s1] = &mut self.halves;
        let half = |scratch, blocks, rows| HalfDrift {
            net: &self.net,
            scratch,
            blocks,
            rows,
            batch,
            per,
        };
        (half(s0, b0, 0..split), half(s1, b1, split..batch))
    }

    /// h of every row of the last pass (after [`FastDrift::forward`], or after
    /// [`FastDrift::forward_block`] has filled all the prepared rows).
    pub fn output(&self) -> &[f32] {
        &self.kept.h[..self.rows * self.net.dim]
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
        for s in &mut self.halves {
            s.clear(&self.net, self.n_times);
        }
    }

    /// Adds the gradients from the rows `first..first + dh.len()/dim` of the prepared pass, given
    /// the loss's gradient `dh` with respect to their h. With `dx`, also writes the gradient
    /// with respect to their states x (through the x/σ input; the score input is a
    /// stop-gradient).
    pub fn backward_block(&mut self, first: usize, dh: &[f32], dx: Option<&mut [f32]>) {
        let count = dh.len() / self.net.dim;
        assert!(first + count <= self.rows, "rows outside the prepared pass");
        let per = self.rows / self.n_times;
        let (net, kept) = (&self.net, &self.kept);
        backward_rows(simd(), net, kept, &mut self.halves[0], first, (dh, dx), per);
    }

    /// The backward pass over a path: `rows / batch` steps of `batch` rows each (step k's rows
    /// at k·batch..), in the order k = 0, 1, …, with each step's rows split at
    /// [`split_point`]`(batch)` and the two halves run on two threads (one helper thread for
    /// the whole pass). `halves` are the adjoints of rows `0..split_point(batch)` and of the
    /// rest: before each step, [`StepAdjoint::dh`] gives the loss's gradient with respect to h
    /// of its rows; with `want_dx`, [`StepAdjoint::dx`] then receives the gradient with respect
    /// to their states. Adds to the gradients begun with [`FastDrift::begin_backward`].
    pub fn backward_steps<A: StepAdjoint>(&mut self, batch: usize, halves: (A, A), want_dx: bool) {
        assert!(
            batch > 0 && self.rows.is_multiple_of(batch),
            "the pass's rows are whole steps of the batch"
        );
        let (n, d, split) = (self.rows / batch, self.net.dim, split_point(batch));
        let per = self.rows / self.n_times;
        let (net, kept) = (&self.net, &self.kept);
        let run = |s: &mut Scratch, mut adj: A, rows: std::ops::Range<usize>| {
            let m = rows.len() * d;
            let mut dh = std::mem::take(&mut s.path_dh);
            let mut dx = std::mem::take(&mut s.path_dx);
            dh.resize(m, 0.0);
            dx.resize(if want_dx { m } else { 0 }, 0.0);
            for k in 0..n {
                adj.dh(k, &mut dh);
                let dx_out = want_dx.then_some(&mut dx[..]);
                backward_rows(
                    simd(),
                    net,
                    kept,
                    s,
                    k * batch + rows.start,
                    (&dh, dx_out),
                    per,
                );
                if want_dx {
                    adj.dx(k, &dx);
                }
            }
            s.path_dh = dh;
            s.path_dx = dx;
        };
        let [s0, s1] = &mut self.halves;
        let (a0, a1) = halves;
        if split == batch {
            run(s0, a0, 0..batch);
        } else if rayon::current_num_threads() < 2 {
            run(s0, a0, 0..split);
            run(s1, a1, split..batch);
        } else {
            // A thread of its own rather than the pool's: the pool's idle workers spin for a
            // while after each job, taking the core from the simulation that follows.
            std::thread::scope(|scope| {
                let helper = scope.spawn(|| run(s1, a1, split..batch));
                run(s0, a0, 0..split);
                helper
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            });
        }
    }

    /// The gradients accumulated since [`FastDrift::begin_backward`]: the first half's plus the
    /// second's.
    pub fn finish_backward(&mut self) -> FastGradients {
        self.acc.clone_from(&self.halves[0].acc);
        self.acc.add(&self.halves[1].acc);
        self.acc.clone()
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
mod tests;
