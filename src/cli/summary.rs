//! The end-of-run summary, as text or JSON.

use crate::estimate::Estimates;
use crate::ipf::{IpfConfig, IpfRow};
use crate::metrics::{ModeReport, MomentErrors};
use crate::sampler::SamplerConfig;
use crate::train::{TrainConfig, TrainReport};
use serde::Serialize;

/// Everything `dsb sample` reports.
#[derive(Debug, Serialize)]
pub struct Summary {
    /// Target name.
    pub target: String,
    /// Target dimension.
    pub dim: usize,
    /// The checkpoint loaded instead of training, if any.
    pub loaded: Option<String>,
    /// Sampler settings used.
    pub sampler: SamplerConfig,
    /// Training settings used (absent when loaded).
    pub training: Option<TrainConfig>,
    /// Training outcome.
    pub train_report: Option<TrainReport>,
    /// IPF settings, when refinements ran.
    pub ipf: Option<IpfConfig>,
    /// One row per IPF iteration (the starting point first), when refinements ran.
    pub ipf_rows: Vec<IpfRow>,
    /// IPF refinements the sampler has been through in total (including a loaded one's).
    pub ipf_iterations: usize,
    /// log Ẑ, ELBO and ESS of the output samples.
    pub estimates: Estimates,
    /// Whether the effective number of output samples is below [`crate::estimate::ESS_FLOOR`]
    /// (the ± of log Ẑ is then not trustworthy).
    pub ess_below_floor: bool,
    /// The warning printed when it is.
    pub warning: Option<String>,
    /// The warning printed when the ELBO is dominated by a few outlying log weights
    /// (`estimates.elbo_outliers`).
    pub elbo_warning: Option<String>,
    /// Known log Z.
    pub true_log_z: Option<f64>,
    /// |log Ẑ − log Z|.
    pub abs_error: Option<f64>,
    /// Mode coverage, for targets with known modes.
    pub modes: Option<ModeReport>,
    /// Posterior moment errors of the weighted samples, for targets with reference moments.
    pub moments: Option<MomentErrors>,
    /// Output samples drawn.
    pub n_samples: usize,
    /// The seed.
    pub seed: u64,
    /// Target gradient evaluations, training and sampling together.
    pub gradient_evaluations: u64,
    /// Seconds spent training.
    pub train_seconds: f64,
    /// Seconds spent drawing the output samples.
    pub sample_seconds: f64,
    /// Seconds for the whole command.
    pub wall_seconds: f64,
}

/// Prints the summary as aligned text.
pub fn print_summary(s: &Summary) {
    let e = &s.estimates;
    println!("target       {} ({}-D)", s.target, s.dim);
    println!(
        "sampler      {} steps, T = {}, sigma = {}, {} schedule, width {} x {}",
        s.sampler.steps,
        s.sampler.horizon,
        match &s.sampler.prior_scales {
            Some(v) => format!("{v:?}"),
            None => format!("{:.3}", s.sampler.sigma),
        },
        super::kebab(&s.sampler.schedule),
        s.sampler.width,
        s.sampler.depth
    );
    match (&s.training, &s.loaded) {
        (Some(t), _) => println!(
            "training     {} iterations x {} paths, loss {}, lr {}",
            t.iterations,
            t.batch,
            super::kebab(&t.loss),
            t.lr
        ),
        (None, Some(p)) => println!("training     none (loaded {p})"),
        _ => {}
    }
    if let Some(why) = s
        .train_report
        .as_ref()
        .and_then(|r| r.stopped_early.as_ref())
    {
        println!("early stop   training {why}");
    }
    if !s.ipf_rows.is_empty() {
        println!(
            "IPF          {} refinements (bridge refined {} times in total):",
            s.ipf_rows.len() - 1,
            s.ipf_iterations
        );
        println!("  {}", super::refine::ROW_HEADER);
        for r in &s.ipf_rows {
            println!("  {}", super::refine::format_row(r, s.true_log_z));
        }
    }
    println!("log Z-hat    {:.4} +- {:.4}", e.log_z, e.log_z_stderr);
    if let Some(w) = &s.warning {
        println!("warning      {w}");
    }
    if let (Some(z), Some(err)) = (s.true_log_z, s.abs_error) {
        println!("true log Z   {z:.4}   |error| {err:.4}");
    }
    println!("ELBO         {:.4}", e.elbo);
    if let Some(w) = &s.elbo_warning {
        println!("warning      {w}");
    }
    println!(
        "ESS          {:.3} ({:.0} of {})",
        e.ess,
        e.ess * e.n as f64,
        e.n
    );
    if e.n_nonfinite > 0 {
        println!(
            "non-finite   {} particles had a non-finite target density (weight 0)",
            e.n_nonfinite
        );
    }
    if let Some(m) = &s.modes {
        println!(
            "modes        {}/{} found; nearest-mode entropy / log K = {:.3} (weighted {:.3})",
            m.modes_found, m.modes, m.entropy_ratio, m.weighted_entropy_ratio
        );
    }
    if let Some(m) = &s.moments {
        print_moments(m);
    }
    println!("grad evals   {}", s.gradient_evaluations);
    println!(
        "wall time    {:.1} s (training {:.1} s, sampling {:.1} s)",
        s.wall_seconds, s.train_seconds, s.sample_seconds
    );
}

/// Prints the posterior-moment errors line shared by every method's summary.
pub fn print_moments(m: &MomentErrors) {
    println!(
        "moments      |mean error| max {:.3} sd, rms {:.3} sd; |sd error| max {:.1}%, rms {:.1}%",
        m.mean_max,
        m.mean_rms,
        100.0 * m.sd_max,
        100.0 * m.sd_rms
    );
}
