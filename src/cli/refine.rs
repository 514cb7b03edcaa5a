//! The IPF part of `dsb sample`: flags, progress bars and per-iteration rows.

use super::progress::bar;
use crate::ipf::{ForwardFitConfig, IpfConfig, IpfProgress, IpfRow, fresh_estimates, refine};
use crate::sampler::DiffusionSampler;
use crate::target::Target;
use crate::train::TrainConfig;
use indicatif::ProgressBar;
use rand::rngs::StdRng;

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

/// Evaluates the trained (or loaded) sampler as IPF iteration `first − 1`, then runs the
/// refinements with progress bars. Backward training steps are appended to `curve` (CSV with a
/// trailing `ipf` column). Returns every row, the evaluation of the starting point first.
#[allow(clippy::too_many_arguments)]
pub fn run_refinement(
    sampler: &mut DiffusionSampler,
    target: &dyn Target,
    tcfg: &TrainConfig,
    cfg: &IpfConfig,
    first: usize,
    seed: u64,
    rng: &mut StdRng,
    quiet: bool,
    start_seconds: f64,
    curve: &mut String,
) -> crate::error::Result<Vec<IpfRow>> {
    let row0 = IpfRow {
        iteration: first - 1,
        estimates: fresh_estimates(sampler, target, cfg.eval_samples, rng)?,
        forward_loss: None,
        backward_loss: None,
        seconds: start_seconds,
        gradient_evaluations: sampler.gradient_evaluations(),
    };
    let log_z = target.log_z();
    let hidden = bar(0, "", true);
    let echo = |pb: &ProgressBar, line: String| {
        if quiet {
            return;
        }
        pb.suspend(|| eprintln!("{line}"));
    };
    echo(&hidden, ROW_HEADER.to_string());
    echo(&hidden, format_row(&row0, log_z));
    let mut pb = hidden.clone();
    let mut rows = vec![row0];
    rows.extend(refine(
        sampler,
        target,
        tcfg,
        cfg,
        first,
        seed,
        rng,
        |p| match p {
            IpfProgress::Forward { ipf, step, loss } => {
                if step == 0 {
                    pb.finish_and_clear();
                    pb = bar(
                        cfg.forward.iterations as u64,
                        &format!("ipf{ipf} fwd"),
                        quiet,
                    );
                }
                pb.set_position(step as u64 + 1);
                pb.set_message(format!("mean-matching loss {loss:.4}"));
            }
            IpfProgress::Backward { ipf, stats } => {
                if stats.iteration == 0 {
                    pb.finish_and_clear();
                    pb = bar(
                        cfg.backward_iterations as u64,
                        &format!("ipf{ipf} bwd"),
                        quiet,
                    );
                }
                let e = &stats.estimates;
                curve.push_str(&format!(
                    "{},{},{},{},{},{},{},{ipf}\n",
                    stats.iteration,
                    stats.loss,
                    e.elbo,
                    e.log_z,
                    e.ess,
                    stats.grad_norm,
                    e.n_nonfinite
                ));
                pb.set_position(stats.iteration as u64 + 1);
                pb.set_message(format!(
                    "loss {:.3e} elbo {:.3} logZ {:.3} ess {:.2}",
                    stats.loss, e.elbo, e.log_z, e.ess
                ));
            }
            IpfProgress::Row(row) => {
                pb.finish_and_clear();
                echo(&pb, format_row(row, log_z));
            }
        },
    )?);
    Ok(rows)
}
