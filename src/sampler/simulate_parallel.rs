//! Training paths on two threads: the simulation of the CPU fast path with the network's forward
//! pass and the step update of each step split between two threads at a fixed row
//! ([`crate::nn::split_point`]), while the rest of a step runs beside it: the calling thread
//! draws the step's normals (the generator stays on the calling thread, used in the same order
//! as by the sequential code) while the other calls the target's score for the whole batch
//! (once per step, as on one thread).
//!
//! Per step (k = N−1 down to 0), with the calling thread A (rows `0..split`) and the helper B
//! (rows `split..batch`):
//!
//! ```text
//! A: draw ε_k (all rows) ─ signal ─ wait for the score ─ half step (A's rows) ─ signal
//! B: wait for A's rows of x_{k+1} ─ score of x_{k+1} (all rows) ─ signal ─ wait for ε_k
//!    ─ half step (B's rows) ─ signal
//! ```
//!
//! A half step is the network's forward pass on the half's rows and the update
//! x_k = a_k x_{k+1} + σ²c_k h + s_k λε, r_k = (x_{k+1} − a_k x_k)/s_k. Each thread writes only its
//! own rows of x_k and r_k, A alone writes ε_k and B alone the score; what a thread reads of the
//! other's writes it reads after the matching signal (a counter stored with release ordering and
//! loaded with acquire ordering), which is what makes the shared buffers sound. The numbers are
//! those of the sequential loop (the same operations on the same rows), which runs instead when
//! the thread pool has one thread (a one-core machine, `RAYON_NUM_THREADS=1`).

use super::DiffusionSampler;
use super::simulate_fast::{HostStep, draw_normals, step_update};
use crate::error::Result;
use crate::nn::{FastDrift, HalfDrift, MIN_PART_ROWS};
use crate::target::Target;
use std::marker::PhantomData;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::Thread;

/// Simulated training paths on the host: N steps of `batch` rows of `dim` values per block,
/// in buffers lent by the [`FastDrift`] (give them back with [`HostPaths::give_back`]).
#[derive(Debug, Default)]
pub(crate) struct HostPaths {
    /// x_0..x_N: block k is x_k (block N the start).
    pub(crate) xs: Vec<f32>,
    /// Block k: the score at x_{k+1}, the input of step k.
    pub(crate) scores: Vec<f32>,
    /// Block k: the standard normals of step k.
    pub(crate) eps: Vec<f32>,
    /// Block k: the standardised forward residual r_k.
    pub(crate) rs: Vec<f32>,
    /// The prior's −log density of the starts x_N: its constant and each row's quadratic part.
    pub(crate) prior: (f64, Vec<f64>),
}

impl HostPaths {
    /// Returns the buffers to `fast`'s pool.
    pub(crate) fn give_back(self, fast: &mut FastDrift) {
        for b in [self.xs, self.scores, self.eps, self.rs] {
            fast.give_buffer(b);
        }
    }
}

/// What every step reads: the time features of all steps and the step coefficients.
#[derive(Clone, Copy)]
pub(crate) struct StepData<'a> {
    pub(crate) embedding: &'a [f32],
    pub(crate) coefficient: &'a [f32],
    /// a_k, σ²c_k (per coordinate) and s_k (per coordinate).
    pub(crate) steps: (&'a [f32], &'a [f32], &'a [f32]),
    /// λ: the prior's scale and the noise's factor.
    pub(crate) explore: f64,
}

impl StepData<'_> {
    pub(crate) fn step(&self, k: usize, d: usize) -> HostStep<'_> {
        let (a, c, s) = self.steps;
        (a[k], &c[k * d..(k + 1) * d], &s[k * d..(k + 1) * d])
    }
}

/// A buffer that two threads write in disjoint parts and read across only after a signal.
#[derive(Clone, Copy)]
struct Shared<'a> {
    ptr: *mut f32,
    len: usize,
    _buf: PhantomData<&'a mut [f32]>,
}

// SAFETY: the pointer comes from a `&mut [f32]` that outlives the threads (the lifetime), and
// the threads' accesses are ordered by the protocol of the module doc.
unsafe impl Send for Shared<'_> {}
unsafe impl Sync for Shared<'_> {}

impl<'a> Shared<'a> {
    fn new(v: &'a mut [f32]) -> Self {
        Self {
            ptr: v.as_mut_ptr(),
            len: v.len(),
            _buf: PhantomData,
        }
    }

    /// SAFETY: no thread writes `range` while the slice lives.
    unsafe fn get(&self, range: Range<usize>) -> &[f32] {
        assert!(range.start <= range.end && range.end <= self.len);
        unsafe { std::slice::from_raw_parts(self.ptr.add(range.start), range.len()) }
    }

    /// SAFETY: no other thread reads or writes `range` while the slice lives.
    #[allow(clippy::mut_from_ref)]
    unsafe fn get_mut(&self, range: Range<usize>) -> &mut [f32] {
        assert!(range.start <= range.end && range.end <= self.len);
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(range.start), range.len()) }
    }
}

/// The two threads' signals: steps whose normals are drawn, whose score is computed, and that
/// each thread has finished; `failed` ends the other thread's waits after an error.
#[derive(Default)]
struct Signals {
    eps: AtomicUsize,
    score: AtomicUsize,
    done_a: AtomicUsize,
    failed: AtomicBool,
}

impl Signals {
    /// Stores `value` into `counter` and wakes `other` if it is parked.
    fn signal(&self, counter: &AtomicUsize, value: usize, other: &Thread) {
        counter.store(value, Ordering::Release);
        other.unpark();
    }

    /// Waits until `counter` reaches `value`: spins for up to `spin` ([`SPIN`] where the other
    /// thread is usually some microseconds away, and waking a parked thread costs tens of them
    /// on a virtual machine; zero to park at once), then parks. False when the other thread
    /// failed.
    fn wait(&self, counter: &AtomicUsize, value: usize, spin: std::time::Duration) -> bool {
        let mut since: Option<std::time::Instant> = None;
        let mut rounds = 0u32;
        while counter.load(Ordering::Acquire) < value {
            if self.failed.load(Ordering::Acquire) {
                return false;
            }
            rounds = rounds.wrapping_add(1);
            if spin.is_zero() || rounds.is_multiple_of(64) {
                let start = *since.get_or_insert_with(std::time::Instant::now);
                if start.elapsed() > spin {
                    std::thread::park_timeout(std::time::Duration::from_micros(100));
                    continue;
                }
            }
            std::hint::spin_loop();
        }
        true
    }
}

/// The rows of each step that the calling thread takes when the target has a host gradient:
/// about 11/32 of them (a multiple of 16), since it also draws every row's normals. On the
/// DDS yardstick's funnel (issue 13; 2-core Xeon) drawing a row's 10 normals costs about half
/// a row's network pass, so 11/32 balances the threads: at batch 512 it took the iteration
/// from 28.4 to 24.4 ms of wall time against an even split (18/64 and 26/64 were slower). A
/// machine with other costs is less balanced, not wrong. Each part keeps at least
/// [`MIN_PART_ROWS`] rows, so the numbers are those of the even split
/// ([`FastDrift::split_halves_at`]).
fn host_split(batch: usize) -> usize {
    let split = crate::nn::split_point(batch);
    if split == batch {
        return batch;
    }
    (batch * 11 / 32)
        .next_multiple_of(16)
        .clamp(MIN_PART_ROWS, batch - MIN_PART_ROWS)
}

/// How long a thread spins before it parks.
const SPIN: std::time::Duration = std::time::Duration::from_micros(200);

/// Sets `failed` and wakes the other thread when dropped during a panic or before `disarm`.
struct FailGuard<'a> {
    signals: &'a Signals,
    other: Thread,
    armed: bool,
}

impl<'a> FailGuard<'a> {
    /// An armed guard that wakes `other`.
    fn new(signals: &'a Signals, other: &Thread) -> Self {
        Self {
            signals,
            other: other.clone(),
            armed: true,
        }
    }
}

impl Drop for FailGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.signals.failed.store(true, Ordering::Release);
            self.other.unpark();
        }
    }
}

/// Whether to run the two halves on two threads: when the thread pool the computation runs in
/// (rayon's; `RAYON_NUM_THREADS`) has two or more.
fn two_threads() -> bool {
    rayon::current_num_threads() >= 2
}

impl DiffusionSampler {
    /// Simulates `batch` training paths with the network in `fast` (with the sampler's current
    /// weights; prepared here for N·batch rows over N times, keeping every step's
    /// activations): draws the starts from the prior (scale λ), then runs the steps.
    pub(crate) fn simulate_host(
        &self,
        target: &dyn Target,
        batch: usize,
        rng: &mut impl rand::Rng,
        fast: &mut FastDrift,
        data: StepData<'_>,
    ) -> Result<HostPaths> {
        let n = self.grid().steps();
        let d = self.dim;
        let bd = batch * d;
        fast.prepare(n * batch, n);
        let x_start = self.prior.draw(rng, batch, data.explore)?;
        let mut out = HostPaths {
            xs: fast.take_buffer((n + 1) * bd),
            scores: fast.take_buffer(n * bd),
            eps: fast.take_buffer(n * bd),
            rs: fast.take_buffer(n * bd),
            prior: self.prior.neg_log_parts(&x_start)?,
        };
        out.xs[n * bd..].copy_from_slice(&x_start.flatten_all()?.to_vec1::<f32>()?);
        self.run_steps(target, rng, fast, data, &mut out)?;
        Ok(out)
    }

    /// The steps of [`DiffusionSampler::simulate_host`] from the starts in `out.xs`' last block.
    fn run_steps(
        &self,
        target: &dyn Target,
        rng: &mut impl rand::Rng,
        fast: &mut FastDrift,
        data: StepData<'_>,
        out: &mut HostPaths,
    ) -> Result<()> {
        let n = self.grid().steps();
        let d = self.dim;
        let bd = out.eps.len() / n;
        let batch = bd / d;
        let host_score = target.has_host_gradient();
        let split = if host_score {
            host_split(batch)
        } else {
            crate::nn::split_point(batch)
        };
        let (mut half_a, mut half_b) = fast.split_halves_at(batch, split);
        let bufs = Bufs {
            xs: Shared::new(&mut out.xs),
            scores: Shared::new(&mut out.scores),
            eps: Shared::new(&mut out.eps),
            rs: Shared::new(&mut out.rs),
            bd,
            d,
        };
        if !two_threads() || half_b.rows().is_empty() {
            for k in (0..n).rev() {
                // SAFETY: one thread.
                unsafe {
                    draw_normals(rng, bufs.eps.get_mut(k * bd..(k + 1) * bd));
                    let x = bufs.xs.get((k + 1) * bd..(k + 2) * bd);
                    self.score_rows(target, x, bufs.scores.get_mut(k * bd..(k + 1) * bd))?;
                    bufs.half_step(&mut half_a, k, data);
                    bufs.half_step(&mut half_b, k, data);
                }
            }
            return Ok(());
        }
        if host_score {
            return self.run_independent_halves(target, rng, (half_a, half_b), &bufs, data);
        }
        let signals = Signals::default();
        let thread_a = std::thread::current();
        std::thread::scope(|scope| {
            let (signals, bufs, thread_a) = (&signals, &bufs, &thread_a);
            let helper = scope.spawn(move || -> Result<()> {
                let mut guard = FailGuard::new(signals, thread_a);
                for (i, k) in (0..n).rev().enumerate() {
                    if !signals.wait(&signals.done_a, i, SPIN) {
                        return Ok(());
                    }
                    // SAFETY: x_{k+1} is complete (A's rows: done_a ≥ i; B's: its own last
                    // step); no thread writes it during step k. B alone writes the score.
                    let (x, out) = unsafe {
                        let x = bufs.xs.get((k + 1) * bd..(k + 2) * bd);
                        (x, bufs.scores.get_mut(k * bd..(k + 1) * bd))
                    };
                    self.score_rows(target, x, out)?;
                    signals.signal(&signals.score, i + 1, thread_a);
                    if !signals.wait(&signals.eps, i + 1, SPIN) {
                        return Ok(());
                    }
                    // SAFETY: ε_k is drawn (eps ≥ i + 1); B writes only its own rows.
                    unsafe { bufs.half_step(&mut half_b, k, data) };
                }
                guard.armed = false;
                Ok(())
            });
            let thread_b = helper.thread().clone();
            {
                let mut guard = FailGuard::new(signals, &thread_b);
                for (i, k) in (0..n).rev().enumerate() {
                    // SAFETY: A alone writes ε; B reads ε_k only after the signal.
                    draw_normals(rng, unsafe { bufs.eps.get_mut(k * bd..(k + 1) * bd) });
                    signals.signal(&signals.eps, i + 1, &thread_b);
                    if !signals.wait(&signals.score, i + 1, SPIN) {
                        break;
                    }
                    // SAFETY: the score of step k is written (score ≥ i + 1); A writes only
                    // its own rows.
                    unsafe { bufs.half_step(&mut half_a, k, data) };
                    signals.signal(&signals.done_a, i + 1, &thread_b);
                }
                guard.armed = false;
            }
            // The helper's error (its target call), or its panic passed on.
            helper
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }
}

impl DiffusionSampler {
    /// The steps of [`DiffusionSampler::run_steps`] for a target with a host gradient
    /// ([`Target::has_host_gradient`]): each thread computes the score of its own rows, so
    /// the halves' rows evolve apart and the only link is ε. The calling thread A draws ε_k
    /// for all rows (the generator in the sequential order) and signals it, then computes the
    /// score and half step of its rows; B waits only for ε_k, and A never waits for B:
    ///
    /// ```text
    /// A: draw ε_k ─ signal ─ score (A's rows) ─ half step (A's rows)
    /// B: wait for ε_k ─ score (B's rows) ─ half step (B's rows)
    /// ```
    ///
    /// B has the lighter load (no draws), so it catches up with A and waits for ε: it parks
    /// at once rather than spin, giving the core back (its waking late only delays B, which
    /// is ahead). The numbers are those of the sequential loop.
    fn run_independent_halves(
        &self,
        target: &dyn Target,
        rng: &mut impl rand::Rng,
        (mut half_a, mut half_b): (HalfDrift<'_>, HalfDrift<'_>),
        bufs: &Bufs<'_>,
        data: StepData<'_>,
    ) -> Result<()> {
        let n = self.grid().steps();
        let bd = bufs.bd;
        let signals = Signals::default();
        let thread_a = std::thread::current();
        // Score and half step of `half`'s rows of step k.
        let part_step = |half: &mut HalfDrift<'_>, k: usize| -> Result<()> {
            // SAFETY: this half's rows of x_{k+1} are complete (its own previous step) and
            // ε_k is drawn; only this thread writes this half's rows of the score.
            unsafe {
                let x = bufs.xs.get(bufs.part(half, k + 1));
                self.score_rows(target, x, bufs.scores.get_mut(bufs.part(half, k)))?;
                bufs.half_step(half, k, data);
            }
            Ok(())
        };
        std::thread::scope(|scope| {
            let (signals, thread_a, part_step) = (&signals, &thread_a, &part_step);
            let helper = scope.spawn(move || -> Result<()> {
                let mut guard = FailGuard::new(signals, thread_a);
                for (i, k) in (0..n).rev().enumerate() {
                    if !signals.wait(&signals.eps, i + 1, std::time::Duration::ZERO) {
                        return Ok(());
                    }
                    part_step(&mut half_b, k)?;
                }
                guard.armed = false;
                Ok(())
            });
            let thread_b = helper.thread().clone();
            let mut result = Ok(());
            {
                let mut guard = FailGuard::new(signals, &thread_b);
                for (i, k) in (0..n).rev().enumerate() {
                    if signals.failed.load(Ordering::Acquire) {
                        break;
                    }
                    // SAFETY: A alone writes ε; B reads ε_k only after the signal.
                    draw_normals(rng, unsafe { bufs.eps.get_mut(k * bd..(k + 1) * bd) });
                    signals.signal(&signals.eps, i + 1, &thread_b);
                    if let Err(e) = part_step(&mut half_a, k) {
                        result = Err(e);
                        break;
                    }
                }
                guard.armed = result.is_err();
            }
            // A's error first, else the helper's (or its panic, passed on).
            let helper = helper
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            result.and(helper)
        })
    }
}

/// The shared path buffers and their block sizes.
struct Bufs<'a> {
    xs: Shared<'a>,
    scores: Shared<'a>,
    eps: Shared<'a>,
    rs: Shared<'a>,
    bd: usize,
    d: usize,
}

impl Bufs<'_> {
    /// The values of `half`'s rows in block `block` (of any of the buffers).
    fn part(&self, half: &HalfDrift<'_>, block: usize) -> Range<usize> {
        let (rows, d, bd) = (half.rows(), self.d, self.bd);
        block * bd + rows.start * d..block * bd + rows.end * d
    }

    /// Step k on `half`'s rows: the network at x_{k+1} and the update into x_k and r_k.
    ///
    /// SAFETY: x_{k+1}'s, the score's and ε_k's rows of this half are written and not being
    /// written; no other thread touches this half's rows of x_k and r_k.
    unsafe fn half_step(&self, half: &mut HalfDrift<'_>, k: usize, data: StepData<'_>) {
        let (next, cur) = (self.part(half, k + 1), self.part(half, k));
        unsafe {
            let x = self.xs.get(next);
            let g = self.scores.get(cur.clone());
            let h = half.forward(k, x, g, data.embedding, data.coefficient);
            let eps = self.eps.get(cur.clone());
            let (x_new, r) = (self.xs.get_mut(cur.clone()), self.rs.get_mut(cur));
            step_update(
                data.step(k, self.d),
                (x, h, eps),
                data.explore as f32,
                (x_new, r),
            );
        }
    }
}
