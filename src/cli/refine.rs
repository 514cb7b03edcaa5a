//! The IPF part of `dsb sample`: flags, progress bars and per-iteration rows.

use super::progress::bar;
use crate::ipf::{
    Checkpoints, ForwardFitConfig, IpfConfig, IpfProgress, IpfRow, RunEvent, RunSpec, SampleRun,
};
use crate::sampler::DiffusionSampler;
use crate::target::Target;
use crate::train::checkpoint::RunRng;
use crate::train::{TrainConfig, TrainReport};
use indicatif::ProgressBar;
use std::path::Path;

/// IPF flags of `dsb sample`.
#[derive(Debug, Clone, clap::Args)]
pub struct IpfArgs {
    /// Schrödinger-bridge refinements K: after the diffusion sampler (IPF iteration 0), run K
    /// IPF iterations, each fitting a forward drift by mean matching and then the backward drift
    /// against it. It raises the ELBO, most when the horizon is too short for the reference to
    /// forget the target; it does not replace more steps (see the README's results). Prints one
    /// summary row per iteration.
    #[arg(long, default_value_t = 0)]
    pub ipf_iters: usize,
    /// Backward gradient steps per refinement (default: half of --iters).
    #[arg(long)]
    pub ipf_backward_iters: Option<usize>,
    /// Forward (mean-matching) gradient steps per refinement (default: half of --iters).
    #[arg(long)]
    pub forward_iters: Option<usize>,
    /// Paths in the trajectory cache of the forward fit.
    #[arg(long, default_value_t = 2048)]
    pub cache: usize,
    /// Refill the trajectory cache every this many forward steps.
    #[arg(long, default_value_t = 100)]
    pub refresh: usize,
    /// EMA decay of both networks' weights during refinement (0 = none); the averages are what
    /// is simulated, evaluated and saved.
    #[arg(long, allow_negative_numbers = true, default_value_t = 0.99)]
    pub ema: f64,
    /// Paths drawn to estimate log Z-hat, ELBO and ESS after each IPF iteration.
    #[arg(long, default_value_t = 4096)]
    pub ipf_eval: usize,
}

impl IpfArgs {
    /// The refinement settings for a run whose training settings are `tcfg`, checked.
    pub fn config(&self, tcfg: &TrainConfig) -> crate::error::Result<IpfConfig> {
        let half = (tcfg.iterations / 2).max(1);
        let cfg = IpfConfig {
            refinements: self.ipf_iters,
            backward_iterations: self.ipf_backward_iters.unwrap_or(half),
            forward: ForwardFitConfig {
                iterations: self.forward_iters.unwrap_or(half),
                batch: tcfg.batch,
                lr: tcfg.lr,
                grad_clip: tcfg.grad_clip,
                cache: self.cache,
                refresh: self.refresh,
                ema: self.ema,
            },
            eval_samples: self.ipf_eval,
        };
        if self.ipf_iters > 0 {
            cfg.validate()?;
        }
        Ok(cfg)
    }
}

/// One row of the IPF table, as text.
pub fn format_row(row: &IpfRow, true_log_z: Option<f64>) -> String {
    let e = &row.estimates;
    let err = true_log_z
        .map(|z| format!("{:8.4}", (e.log_z - z).abs()))
        .unwrap_or_else(|| "       -".into());
    let fwd = row
        .forward_loss
        .map(|v| format!("{v:9.4}"))
        .unwrap_or_else(|| "        -".into());
    format!(
        "{:>4}  {:>9.4} ± {:<7.4} {err}  {:>9.4}  {:>6.3}  {fwd}  {:>7.1}",
        row.iteration, e.log_z, e.log_z_stderr, e.elbo, e.ess, row.seconds
    )
}

/// Header of the IPF table.
pub const ROW_HEADER: &str =
    "ipf   log Z-hat ± s.e.       |error|       ELBO     ESS   fwd loss  train s";

/// What [`run_diffusion`] hands back.
pub struct DiffusionRun {
    /// The trained (and refined) sampler.
    pub sampler: DiffusionSampler,
    /// The report of its training (none for a loaded sampler).
    pub train_report: Option<TrainReport>,
    /// The IPF rows: the evaluation that opens the refinements, then one per refinement.
    pub rows: Vec<IpfRow>,
    /// Every training iteration, as the CSV of `--log`.
    pub curve: String,
    /// Seconds of training and refinement (over all sessions of a resumed run).
    pub seconds: f64,
}

/// Where checkpoints go and whether the run continues one.
pub struct CheckpointArgs<'a> {
    /// The directory (`--checkpoint`, or `--resume`'s).
    pub dir: Option<&'a Path>,
    /// Whether to continue the checkpoint in `dir`.
    pub resume: bool,
    /// Gradient steps between checkpoints.
    pub every: usize,
    /// Stop after this many gradient steps (`--stop-after`).
    pub stop_after: Option<usize>,
}

/// Runs the training and refinements of `spec` on `sampler` (or continues the run checkpointed
/// in `ckpt.dir`), with progress bars, a line per IPF row, and checkpoints. `None` when the run
/// stopped at `--stop-after` (after a checkpoint).
pub fn run_diffusion(
    sampler: DiffusionSampler,
    spec: RunSpec,
    target: &dyn Target,
    ckpt: &CheckpointArgs<'_>,
    rng: &mut RunRng,
    quiet: bool,
) -> crate::error::Result<Option<DiffusionRun>> {
    let (mut run, mut sampler) = match ckpt.dir.filter(|_| ckpt.resume) {
        Some(dir) => {
            let (run, mut s, r) = SampleRun::resume(dir, Some(&spec), sampler.device())?;
            s.set_fast_path(sampler.fast_path());
            *rng = r;
            (run, s)
        }
        None => (SampleRun::new(spec, &sampler)?, sampler),
    };
    let checkpoints = ckpt.dir.map(|d| Checkpoints {
        dir: d.to_path_buf(),
        every: ckpt.every,
        stop_after: ckpt.stop_after,
    });
    let (train_iters, ipf) = (
        run.spec().train.as_ref().map_or(0, |t| t.iterations),
        run.spec().ipf.clone(),
    );
    let log_z = target.log_z();
    let first_ipf = run.spec().first_ipf;
    let echo = |pb: &ProgressBar, line: String| {
        if !quiet {
            pb.suspend(|| eprintln!("{line}"));
        }
    };
    if !quiet && ckpt.resume {
        let p = run.progress();
        eprintln!(
            "resuming: {} training iteration(s) and {} IPF row(s) done",
            p.trainer
                .as_ref()
                .map(|t| t.iterations)
                .or(p.train_report.as_ref().map(|r| r.iterations))
                .unwrap_or(0),
            p.rows.len()
        );
    }
    for row in &run.progress().rows {
        if row.iteration + 1 == first_ipf {
            echo(&bar(0, "", true), ROW_HEADER.to_string());
        }
        echo(&bar(0, "", true), format_row(row, log_z));
    }
    let mut pb = bar(0, "", true);
    let done = run.run(
        &mut sampler,
        target,
        rng,
        checkpoints.as_ref(),
        |e| match e {
            RunEvent::Train(st) => {
                if pb.length() != Some(train_iters as u64) {
                    pb = bar(train_iters as u64, "train", quiet);
                }
                pb.set_position(st.iteration as u64 + 1);
                pb.set_message(format!(
                    "loss {:.3e} elbo {:.3} logZ {:.3} ess {:.2}",
                    st.loss, st.estimates.elbo, st.estimates.log_z, st.estimates.ess
                ));
            }
            RunEvent::TrainDone => pb.finish_and_clear(),
            RunEvent::Checkpoint => {}
            RunEvent::Ipf(p) => match p {
                IpfProgress::Forward { ipf: k, step, loss } => {
                    if step == 0 || pb.length() != Some(ipf.forward.iterations as u64) {
                        pb.finish_and_clear();
                        pb = bar(ipf.forward.iterations as u64, &format!("ipf{k} fwd"), quiet);
                    }
                    pb.set_position(step as u64 + 1);
                    pb.set_message(format!("mean-matching loss {loss:.4}"));
                }
                IpfProgress::Backward { ipf: k, stats } => {
                    if stats.iteration == 0 || pb.length() != Some(ipf.backward_iterations as u64) {
                        pb.finish_and_clear();
                        pb = bar(
                            ipf.backward_iterations as u64,
                            &format!("ipf{k} bwd"),
                            quiet,
                        );
                    }
                    let e = &stats.estimates;
                    pb.set_position(stats.iteration as u64 + 1);
                    pb.set_message(format!(
                        "loss {:.3e} elbo {:.3} logZ {:.3} ess {:.2}",
                        stats.loss, e.elbo, e.log_z, e.ess
                    ));
                }
                IpfProgress::Row(row) => {
                    pb.finish_and_clear();
                    if row.iteration + 1 == first_ipf {
                        echo(&pb, ROW_HEADER.to_string());
                    }
                    echo(&pb, format_row(row, log_z));
                }
            },
        },
    )?;
    pb.finish_and_clear();
    if !done {
        return Ok(None);
    }
    let p = run.progress();
    let mut curve = String::from("iteration,loss,elbo,log_z,ess,grad_norm,nonfinite,ipf\n");
    for c in &p.curve {
        let (st, e) = (&c.stats, &c.stats.estimates);
        curve.push_str(&format!(
            "{},{},{},{},{},{},{},{}\n",
            st.iteration, st.loss, e.elbo, e.log_z, e.ess, st.grad_norm, e.n_nonfinite, c.ipf
        ));
    }
    Ok(Some(DiffusionRun {
        train_report: p.train_report.clone(),
        rows: p.rows.clone(),
        seconds: p.seconds,
        curve,
        sampler,
    }))
}
