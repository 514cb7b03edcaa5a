//! The bookkeeping of a fit: half-steps ("phases"), progress saved in checkpoints, events for
//! progress bars, and the options of a run.

use super::evaluate::FitRow;
use crate::train::OptimiserState;
use candle_core::Tensor;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::PathBuf;

pub use crate::ipf::{Half, Phase};

/// How far a run has got (saved in `model.json`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// The current phase (see the module doc); 1 + 2·ipf_iters when done.
    pub phase: usize,
    /// Gradient steps done in the current phase.
    pub phase_step: usize,
    /// Gradient steps done in all phases.
    pub global_step: usize,
    /// Adam updates of the current phase's optimiser.
    pub optimiser_step: usize,
    /// EMA updates of the current phase's optimiser.
    pub ema_updates: usize,
    /// Sum and count of the losses of the last tenth of the current phase.
    pub tail: (f64, usize),
    /// Final loss of the forward half-step of the current IPF iteration.
    pub forward_loss: Option<f64>,
    /// Seconds and gradient steps of training in the current IPF iteration so far.
    pub iteration_time: (f64, usize),
    /// Seconds of training (gradient steps and cache refills) in all phases.
    pub train_seconds: f64,
    /// One row per finished IPF iteration.
    pub rows: Vec<FitRow>,
}

/// What a run reports as it goes.
#[derive(Debug)]
pub enum FitEvent<'a> {
    /// A half-step starts (or continues, from `step`).
    PhaseStart {
        /// The half-step.
        phase: Phase,
        /// Its first step in this run.
        step: usize,
        /// Its length.
        iters: usize,
    },
    /// A gradient step finished.
    Step {
        /// The half-step.
        phase: Phase,
        /// Step within it, from 0.
        step: usize,
        /// The loss (nats per dimension per step, see [`super::losses`]).
        loss: f64,
        /// Wall-clock seconds of the step (drawing the batch, the loss, its gradient and the
        /// update; a cache refill falls into the step that needs it).
        seconds: f64,
    },
    /// An IPF iteration's training finished and its evaluation (generated samples, held-out
    /// bound) starts.
    Evaluating {
        /// The IPF iteration.
        ipf: usize,
    },
    /// An IPF iteration finished and was evaluated.
    Row(&'a FitRow),
    /// A checkpoint was written.
    Checkpoint(usize),
}

/// Checkpoints and early stops of [`super::Fit::run`].
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Directory of the checkpoints (none: nothing is written).
    pub dir: Option<PathBuf>,
    /// Also write a checkpoint every this many gradient steps (0: only at the end of each
    /// half-step).
    pub checkpoint_every: usize,
    /// Stop (with a checkpoint) after this many gradient steps of this call.
    pub stop_after: Option<usize>,
}

/// The state of a half-step interrupted by a checkpoint: the trained network's raw weights and
/// its optimiser.
#[derive(Debug)]
pub(crate) struct Pending {
    pub(crate) weights: HashMap<String, Tensor>,
    pub(crate) optimiser: OptimiserState,
}
