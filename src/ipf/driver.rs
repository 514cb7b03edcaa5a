//! The one IPF loop: the sequence of half-steps that both the density sampler
//! ([`super::SampleRun`], `dsb sample`) and the data fit ([`crate::fit::Fit`], `dsb fit`,
//! `dsb bridge`) run, with their checkpoints and early stops.
//!
//! A run is a sequence of phases: phase 0 is the backward half-step of IPF iteration 0 (the
//! backward process fitted against the reference started at the target or the data); phases
//! 2n − 1 and 2n are the forward and backward half-steps of refinement n. The two engines
//! differ only in where their paths start and which loss each half-step applies; what they
//! implement is [`HalfSteps`], and [`drive`] decides when to open, step and close a phase, when
//! to write a checkpoint and when to stop:
//!
//! - inside a phase whose state can be saved ([`HalfSteps::resumable_within`]) a checkpoint is
//!   written every [`LoopOptions::checkpoint_every`] gradient steps (counted over the whole
//!   run) and once more when its last step is done, before the phase is closed (closing
//!   evaluates, which can take long; an interrupted evaluation then loses no training);
//! - after every phase is closed, a checkpoint between phases;
//! - [`LoopOptions::stop_after`] gradient steps into the call, the run stops with a checkpoint,
//!   inside the phase when it can be saved there, else at the start of the next phase.

use crate::error::Result;
use serde::{Deserialize, Serialize};

/// Which network a half-step trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Half {
    /// The forward network, on paths of the backward process.
    Forward,
    /// The backward network, on paths of the reference (iteration 0) or the forward process.
    Backward,
}

/// A half-step: its IPF iteration (counted from the run's first, 0 for the training that
/// opens it) and which network it trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Phase {
    /// The IPF iteration, counted within the run.
    pub ipf: usize,
    /// The network trained.
    pub half: Half,
}

impl Phase {
    /// Phase number p: 0 → (0, backward), 2n − 1 → (n, forward), 2n → (n, backward).
    pub fn of(p: usize) -> Self {
        Self {
            ipf: p.div_ceil(2),
            half: if p % 2 == 1 {
                Half::Forward
            } else {
                Half::Backward
            },
        }
    }
}

/// Where a run stands: saved in its checkpoints.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// The current phase (1 + 2K when a run of K refinements is done).
    pub phase: usize,
    /// Gradient steps done in the current phase.
    pub phase_step: usize,
    /// Gradient steps done in all phases.
    pub global_step: usize,
}

/// When [`drive`] writes checkpoints and stops.
#[derive(Debug, Clone, Copy, Default)]
pub struct LoopOptions {
    /// Also checkpoint every this many gradient steps inside a phase (0: only at the ends of
    /// phases).
    pub checkpoint_every: usize,
    /// Stop, with a checkpoint, after this many gradient steps of this call.
    pub stop_after: Option<usize>,
}

/// When a checkpoint is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Moment {
    /// Inside an open phase (whose state the checkpoint must hold).
    Within(Phase),
    /// Between two phases (no phase is open).
    Between,
}

/// What an engine does for [`drive`]: one half-step loss and its state, its evaluation and its
/// checkpoints.
pub trait HalfSteps {
    /// Phases of the whole run: 1 + 2K for K refinements.
    fn phases(&self) -> usize;
    /// Where the run stands.
    fn position(&self) -> Position;
    /// Records where the run stands (the loop's own bookkeeping).
    fn set_position(&mut self, position: Position);
    /// Opens a phase at [`Position::phase_step`]: a fresh optimiser at step 0, or the state a
    /// checkpoint inside the phase saved.
    fn open(&mut self, phase: Phase) -> Result<()>;
    /// Whether the open phase has gradient steps left.
    fn more(&self, phase: Phase) -> bool;
    /// One gradient step of the open phase.
    fn step(&mut self, phase: Phase) -> Result<()>;
    /// Whether a checkpoint inside this phase can hold its state.
    fn resumable_within(&self, phase: Phase) -> bool;
    /// Closes the open phase: the network takes its average, and a backward half-step is
    /// evaluated.
    fn close(&mut self, phase: Phase) -> Result<()>;
    /// Writes a checkpoint, when the run writes them.
    fn checkpoint(&mut self, at: Moment) -> Result<()>;
}

/// Runs the phases an engine has left. Returns whether the run is done (false when it stopped
/// at [`LoopOptions::stop_after`], after a checkpoint).
pub fn drive(engine: &mut impl HalfSteps, opts: &LoopOptions) -> Result<bool> {
    let mut steps = 0usize;
    let stop = |steps: usize| opts.stop_after.is_some_and(|s| steps >= s);
    while engine.position().phase < engine.phases() {
        let phase = Phase::of(engine.position().phase);
        if engine.position().phase_step == 0 && stop(steps) {
            engine.checkpoint(Moment::Between)?;
            return Ok(false);
        }
        engine.open(phase)?;
        let within = engine.resumable_within(phase);
        let mut trained = false;
        while engine.more(phase) {
            if within && stop(steps) {
                engine.checkpoint(Moment::Within(phase))?;
                return Ok(false);
            }
            engine.step(phase)?;
            let mut at = engine.position();
            at.phase_step += 1;
            at.global_step += 1;
            engine.set_position(at);
            steps += 1;
            trained = true;
            let every = opts.checkpoint_every;
            if within && every > 0 && at.global_step.is_multiple_of(every) && engine.more(phase) {
                engine.checkpoint(Moment::Within(phase))?;
            }
        }
        if trained && within {
            engine.checkpoint(Moment::Within(phase))?;
        }
        engine.close(phase)?;
        let at = engine.position();
        engine.set_position(Position {
            phase: at.phase + 1,
            phase_step: 0,
            ..at
        });
        engine.checkpoint(Moment::Between)?;
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An engine that records what the loop asks of it.
    struct Log {
        phases: usize,
        steps: usize,
        at: Position,
        resumable_forward: bool,
        seen: Vec<String>,
    }

    impl HalfSteps for Log {
        fn phases(&self) -> usize {
            self.phases
        }
        fn position(&self) -> Position {
            self.at
        }
        fn set_position(&mut self, position: Position) {
            self.at = position;
        }
        fn open(&mut self, phase: Phase) -> Result<()> {
            self.seen
                .push(format!("open {}{:?}", phase.ipf, phase.half));
            Ok(())
        }
        fn more(&self, _: Phase) -> bool {
            self.at.phase_step < self.steps
        }
        fn step(&mut self, _: Phase) -> Result<()> {
            self.seen.push(format!("step {}", self.at.global_step));
            Ok(())
        }
        fn resumable_within(&self, phase: Phase) -> bool {
            self.resumable_forward || phase.half == Half::Backward
        }
        fn close(&mut self, phase: Phase) -> Result<()> {
            self.seen
                .push(format!("close {}{:?}", phase.ipf, phase.half));
            Ok(())
        }
        fn checkpoint(&mut self, at: Moment) -> Result<()> {
            self.seen.push(match at {
                Moment::Within(_) => format!("save in {}", self.at.phase_step),
                Moment::Between => format!("save at {}", self.at.phase),
            });
            Ok(())
        }
    }

    fn log(resumable_forward: bool) -> Log {
        Log {
            phases: 3,
            steps: 3,
            at: Position::default(),
            resumable_forward,
            seen: Vec::new(),
        }
    }

    #[test]
    fn phases_checkpoints_and_stops_come_in_order() {
        let mut e = log(false);
        let opts = LoopOptions {
            checkpoint_every: 2,
            stop_after: None,
        };
        assert!(drive(&mut e, &opts).unwrap());
        let want = "open 0Backward, step 0, step 1, save in 2, step 2, save in 3, \
             close 0Backward, save at 1, open 1Forward, step 3, step 4, step 5, \
             close 1Forward, save at 2, open 1Backward, step 6, step 7, save in 2, step 8, \
             save in 3, close 1Backward, save at 3";
        assert_eq!(e.seen.join(", "), want);
        assert_eq!(e.at.global_step, 9);

        // A stop inside a phase that cannot be saved waits for the next phase.
        let mut e = log(false);
        let opts = LoopOptions {
            checkpoint_every: 0,
            stop_after: Some(4),
        };
        assert!(!drive(&mut e, &opts).unwrap());
        assert_eq!(e.seen.last().unwrap(), "save at 2");
        assert_eq!(e.at.global_step, 6);
        // ... and inside one that can be saved it stops there.
        let mut e = log(true);
        assert!(!drive(&mut e, &opts).unwrap());
        assert_eq!(e.seen.last().unwrap(), "save in 1");
        assert_eq!(e.at.global_step, 4);
        // The continued run picks up where it stopped.
        e.seen.clear();
        assert!(drive(&mut e, &LoopOptions::default()).unwrap());
        assert_eq!(e.seen[0], "open 1Forward");
        assert_eq!(e.at.global_step, 9);
    }
}
