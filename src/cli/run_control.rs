//! What `dsb fit` and `dsb bridge` share: the flags that control a training run (checkpoints,
//! resuming, early stops, the device, the loss log, the output), and the run itself with its
//! progress bars, loss log and stop message.

use super::progress::{bar, spinner};
use crate::fit::{Fit, FitEvent, FitRow, Half, Phase, RunOptions};
use anyhow::{Context, bail};
use indicatif::ProgressBar;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The flags of a training run that `dsb fit` and `dsb bridge` share.
#[derive(Debug, Clone, clap::Args)]
pub struct RunControl {
    /// Also checkpoint every this many gradient steps (0: only at the end of each half-step).
    #[arg(long, default_value_t = 1000)]
    pub checkpoint_every: usize,
    /// Continue the run checkpointed in this directory (its settings are reused; outputs are
    /// written there).
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// Stop after this many gradient steps (with a checkpoint); continue with --resume.
    #[arg(long)]
    pub stop_after: Option<usize>,
    /// Where the networks run: `cpu`, or `cuda` (needs a build with `--features cuda`).
    #[arg(long, default_value = "cpu")]
    pub device: super::DeviceArg,
    /// Also write every gradient step's loss to this CSV file as training goes (columns
    /// global_step (from 0), ipf, half, step, loss, seconds; flushed row by row). With --resume
    /// the rows are appended.
    #[arg(long)]
    pub loss_log: Option<PathBuf>,
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// No progress bars.
    #[arg(long, short)]
    pub quiet: bool,
}

impl RunControl {
    /// Whether progress bars and row lines are off (`--quiet`, or `--json`).
    pub fn quiet(&self) -> bool {
        self.quiet || self.json
    }
}

/// Runs the remaining half-steps of `fit`, checkpointing into `out`, with progress bars, the
/// `--loss-log` rows and `row_line` of every evaluated IPF iteration on stderr. When the run
/// stops at `--stop-after` it says so (as JSON with `--json`), naming `dsb {command} --resume`,
/// and returns false.
pub(super) fn train(
    fit: &mut Fit,
    out: &Path,
    ctl: &RunControl,
    command: &str,
    row_line: impl Fn(&FitRow) -> String,
) -> anyhow::Result<bool> {
    let mut loss_log = match &ctl.loss_log {
        Some(path) => Some(LossLog::open(path, ctl.resume.is_some())?),
        None => None,
    };
    let mut global_step = fit.progress().global_step;
    let opts = RunOptions {
        dir: Some(out.to_path_buf()),
        checkpoint_every: ctl.checkpoint_every,
        stop_after: ctl.stop_after,
    };
    let done = run_with_progress(
        fit,
        &opts,
        ctl.quiet(),
        |phase, step, loss, seconds| {
            if let Some(log) = loss_log.as_mut() {
                log.row(global_step, phase, step, loss, seconds);
            }
            global_step += 1;
        },
        row_line,
    )?;
    if let Some(log) = loss_log {
        log.finish()?;
    }
    if !done {
        say_stopped(out, fit.progress().global_step, command, ctl.json);
    }
    Ok(done)
}

/// Says that a run stopped at `--stop-after` after `steps` gradient steps, naming `dsb
/// {command} --resume` (as JSON with `json`).
pub(super) fn say_stopped(out: &Path, steps: usize, command: &str, json: bool) {
    let msg = format!(
        "stopped after {steps} gradient steps (checkpoint in {}); continue with \
         `dsb {command} --resume {}`",
        out.display(),
        out.display()
    );
    if json {
        println!(
            "{}",
            serde_json::json!({"stopped": true, "global_step": steps, "message": msg})
        );
    } else {
        println!("{msg}");
    }
}

/// Says that `--resume` found the run finished after `steps` gradient steps: `msg` (as JSON
/// with `json`).
pub(super) fn say_nothing_to_do(msg: &str, steps: usize, json: bool) {
    if json {
        println!(
            "{}",
            serde_json::json!({"nothing_to_do": true, "global_step": steps, "message": msg})
        );
    } else {
        println!("{msg}");
    }
}

/// The CSV of `--loss-log`: one row per gradient step, flushed as it is written so that an
/// interrupted run keeps its rows. A write error is kept and reported when the run ends.
#[derive(Debug)]
pub struct LossLog {
    path: PathBuf,
    out: std::io::BufWriter<std::fs::File>,
    error: Option<std::io::Error>,
}

impl LossLog {
    /// The header row.
    pub const HEADER: &'static str = "global_step,ipf,half,step,loss,seconds";

    /// Creates `path` (or appends to it when `append`; the header is written into an empty
    /// file only).
    pub fn open(path: &Path, append: bool) -> anyhow::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .append(append)
            .truncate(!append)
            .open(path)
            .with_context(|| format!("--loss-log {}: cannot create the file", path.display()))?;
        let empty = file.metadata().map(|m| m.len() == 0).unwrap_or(true);
        let mut log = Self {
            path: path.to_path_buf(),
            out: std::io::BufWriter::new(file),
            error: None,
        };
        if empty {
            log.write(format_args!("{}", Self::HEADER));
        }
        Ok(log)
    }

    /// Writes one line and flushes it, keeping the first error.
    fn write(&mut self, line: std::fmt::Arguments<'_>) {
        if self.error.is_none()
            && let Err(e) = writeln!(self.out, "{line}").and_then(|()| self.out.flush())
        {
            self.error = Some(e);
        }
    }

    /// The row of gradient step `step` of half-step `phase`, step `global` of the run.
    pub fn row(&mut self, global: usize, phase: Phase, step: usize, loss: f64, secs: f64) {
        let half = match phase.half {
            Half::Backward => "backward",
            Half::Forward => "forward",
        };
        self.write(format_args!(
            "{global},{},{half},{step},{loss},{secs:.6}",
            phase.ipf
        ));
    }

    /// Ends the log: an error if a row could not be written.
    pub fn finish(self) -> anyhow::Result<()> {
        match self.error {
            Some(e) => bail!("--loss-log {}: cannot write ({e})", self.path.display()),
            None => Ok(()),
        }
    }
}

/// Runs the remaining half-steps of `fit` with a progress bar per half-step (or nothing when
/// `quiet`), calling `on_step(phase, step, loss, seconds)` after every gradient step and printing
/// `row_line` of every evaluated IPF iteration on stderr. Returns whether the fit is done.
fn run_with_progress(
    fit: &mut Fit,
    opts: &RunOptions,
    quiet: bool,
    mut on_step: impl FnMut(Phase, usize, f64, f64),
    row_line: impl Fn(&FitRow) -> String,
) -> anyhow::Result<bool> {
    let mut pb: Option<ProgressBar> = None;
    let done = fit.run(opts, |event| match event {
        FitEvent::PhaseStart { phase, step, iters } => {
            if let Some(p) = pb.take() {
                p.finish_and_clear();
            }
            let half = match phase.half {
                Half::Backward => "bwd",
                Half::Forward => "fwd",
            };
            let p = bar(iters as u64, &format!("ipf{} {half}", phase.ipf), quiet);
            p.set_position(step as u64);
            pb = Some(p);
        }
        FitEvent::Step {
            phase,
            step,
            loss,
            seconds,
        } => {
            on_step(phase, step, loss, seconds);
            if let Some(p) = &pb {
                p.set_position(step as u64 + 1);
                if step % 10 == 0 {
                    p.set_message(format!("loss {loss:.4}"));
                }
            }
        }
        FitEvent::Row(row) => {
            if let Some(p) = pb.take() {
                p.finish_and_clear();
            }
            if !quiet {
                eprintln!("{}", row_line(row));
            }
        }
        FitEvent::Evaluating { ipf } => {
            if let Some(p) = pb.take() {
                p.finish_and_clear();
            }
            pb = Some(spinner(&format!("ipf{ipf}: evaluating"), quiet));
        }
        FitEvent::Checkpoint(_) => {}
    })?;
    if let Some(p) = pb.take() {
        p.finish_and_clear();
    }
    Ok(done)
}
