//! `dsb sample --method smc|nuts`: the baselines, run on the same targets as the diffusion
//! sampler and reported the same way.

use super::progress::bar;
use crate::baseline::{
    DiagGaussian, Method, MoveKernel, NutsConfig, NutsResult, SmcConfig, SmcResult, run_nuts,
    run_smc,
};
use crate::metrics::{MomentErrors, sample_moment_errors};
use crate::sampler::{SampleSet, SamplerConfig};
use crate::sequential::{SequentialConfig, SequentialSampler};
use crate::target::Target;
use serde::Serialize;

/// Flags of the baselines (ignored by `--method dsb`).
#[derive(Debug, Clone, clap::Args)]
pub struct BaselineArgs {
    /// Sampler: `sequential` (the default: the learned diffusion inside a particle system,
    /// with resampling and HMC moves along the annealing path; log Z ± s.e.; takes --steps,
    /// --iters, --batch, --lr, --width, --depth, --particles, --moves, --step-moves,
    /// --leapfrog), `dsb` (the diffusion sampler alone, with --save/--load, --ipf-iters and
    /// GPU training; the default when one of its own flags is given), `smc` (adaptive
    /// tempering) or `nuts` (No-U-Turn, moments only).
    #[arg(long, value_enum)]
    pub method: Option<Method>,
    /// SMC and sequential: number of particles.
    #[arg(long, default_value_t = SmcConfig::default().particles, help_heading = "SMC")]
    pub particles: usize,
    /// SMC: MCMC kernel moving the particles.
    #[arg(long, value_enum, default_value_t = SmcConfig::default().kernel, help_heading = "SMC")]
    pub kernel: MoveKernel,
    /// SMC: MCMC moves per temperature (default 10); sequential: HMC moves after each
    /// resampling (default 2).
    #[arg(long, help_heading = "SMC")]
    pub moves: Option<usize>,
    /// Sequential: HMC moves after every step that does not resample (default 0): more
    /// gradient evaluations for less weight degeneracy.
    #[arg(long, help_heading = "SMC")]
    pub step_moves: Option<usize>,
    /// SMC and sequential: leapfrog steps per HMC move.
    #[arg(long, default_value_t = SmcConfig::default().leapfrog_steps, help_heading = "SMC")]
    pub leapfrog: usize,
    /// SMC: conditional ESS kept from one temperature to the next (closer to 1: more, smaller
    /// temperature steps).
    #[arg(
        long,
        allow_negative_numbers = true,
        default_value_t = SmcConfig::default().cess_target,
        help_heading = "SMC"
    )]
    pub cess: f64,
    /// SMC: precondition the moves with the full particle covariance up to this dimension and
    /// with its diagonal above it (default 0: always diagonal, which measured better on the
    /// logistic regressions; brownian did better with the full covariance).
    #[arg(long, default_value_t = SmcConfig::default().full_covariance_max_dim, help_heading = "SMC")]
    pub full_cov_max_dim: usize,
    /// NUTS: chains, run one after another.
    #[arg(long, default_value_t = NutsConfig::default().chains, help_heading = "NUTS")]
    pub chains: usize,
    /// NUTS: warm-up draws per chain (discarded).
    #[arg(long, default_value_t = NutsConfig::default().tune, help_heading = "NUTS")]
    pub tune: u64,
    /// NUTS: draws kept per chain.
    #[arg(long, default_value_t = NutsConfig::default().draws, help_heading = "NUTS")]
    pub draws: u64,
    /// NUTS: maximum tree depth.
    #[arg(long, default_value_t = NutsConfig::default().max_depth, help_heading = "NUTS")]
    pub max_depth: u64,
}

impl BaselineArgs {
    /// The method: `--method`, or the sequential sampler when it is not given (`dsb sample`
    /// resolves it first, see `sample::resolve_method`).
    pub fn method(&self) -> Method {
        self.method.unwrap_or(Method::Sequential)
    }

    /// The SMC settings these flags give.
    pub fn smc(&self) -> SmcConfig {
        SmcConfig {
            particles: self.particles,
            kernel: self.kernel,
            moves: self.moves.unwrap_or(SmcConfig::default().moves),
            leapfrog_steps: self.leapfrog,
            cess_target: self.cess,
            full_covariance_max_dim: self.full_cov_max_dim,
            ..SmcConfig::default()
        }
    }
    /// The NUTS settings these flags give.
    pub fn nuts(&self) -> NutsConfig {
        NutsConfig {
            chains: self.chains,
            tune: self.tune,
            draws: self.draws,
            max_depth: self.max_depth,
        }
    }
}

/// What a baseline run reports.
#[derive(Debug, Serialize)]
pub struct BaselineSummary {
    /// Target name.
    pub target: String,
    /// Target dimension.
    pub dim: usize,
    /// The method.
    pub method: Method,
    /// SMC settings, for `--method smc`.
    pub smc: Option<SmcConfig>,
    /// NUTS settings, for `--method nuts`.
    pub nuts: Option<NutsConfig>,
    /// Sequential-sampler settings, for `--method sequential`.
    pub sequential: Option<SequentialConfig>,
    /// log Ẑ (SMC, sequential).
    pub log_z: Option<f64>,
    /// Standard error of log Ẑ (sequential: Lee–Whiteley, from the Eve indices).
    pub log_z_stderr: Option<f64>,
    /// Resampling events of the final run (sequential).
    pub resamplings: Option<usize>,
    /// HMC moves per particle in the final run (sequential).
    pub mcmc_moves: Option<usize>,
    /// Distinct time-0 ancestors among the final particles (sequential).
    pub eve_count: Option<usize>,
    /// Known log Z.
    pub true_log_z: Option<f64>,
    /// |log Ẑ − log Z|.
    pub abs_error: Option<f64>,
    /// Normalised ESS of the final weighted particles (SMC).
    pub ess: Option<f64>,
    /// Whether the final particles' effective number is below [`crate::estimate::ESS_FLOOR`]
    /// (SMC; the log Ẑ is then not trustworthy).
    pub ess_below_floor: bool,
    /// The warning printed when it is.
    pub warning: Option<String>,
    /// Temperatures used (SMC).
    pub temperatures: Option<usize>,
    /// Mean acceptance probability over all moves (SMC).
    pub acceptance: Option<f64>,
    /// Divergent transitions after warm-up (NUTS).
    pub divergences: Option<u64>,
    /// Largest split-R̂ over coordinates (NUTS, ≥ 2 chains).
    pub max_rhat: Option<f64>,
    /// Posterior moment errors against the target's reference, where it has one.
    pub moments: Option<MomentErrors>,
    /// Mode coverage, for targets with known modes.
    pub modes: Option<crate::metrics::ModeReport>,
    /// Samples returned.
    pub n_samples: usize,
    /// The seed.
    pub seed: u64,
    /// Target gradient evaluations (per point).
    pub gradient_evaluations: u64,
    /// Seconds for the run.
    pub wall_seconds: f64,
}

/// Runs the baseline `args.method` on `target`; returns its samples and summary.
pub fn run_baseline(
    target: &dyn Target,
    args: &BaselineArgs,
    scfg: &SamplerConfig,
    seq: &SequentialConfig,
    seed: u64,
    quiet: bool,
    rng: &mut impl rand::Rng,
) -> anyhow::Result<(SampleSet, BaselineSummary)> {
    let start = std::time::Instant::now();
    let init = DiagGaussian::sampler_prior(scfg, target.dim());
    let mut s = BaselineSummary {
        target: target.name().to_string(),
        dim: target.dim(),
        method: args.method(),
        smc: None,
        nuts: None,
        sequential: None,
        log_z: None,
        log_z_stderr: None,
        resamplings: None,
        mcmc_moves: None,
        eve_count: None,
        true_log_z: target.log_z(),
        abs_error: None,
        ess: None,
        ess_below_floor: false,
        warning: None,
        temperatures: None,
        acceptance: None,
        divergences: None,
        max_rhat: None,
        moments: None,
        modes: None,
        n_samples: 0,
        seed,
        gradient_evaluations: 0,
        wall_seconds: 0.0,
    };
    let set = match args.method() {
        Method::Dsb => anyhow::bail!("run_baseline is for --method smc or nuts"),
        Method::Smc => {
            let cfg = args.smc();
            let pb = bar(1000, "smc β", quiet);
            let out: SmcResult = run_smc(target, &init, &cfg, rng, |st| {
                pb.set_position((st.beta * 1000.0) as u64);
                pb.set_message(format!(
                    "β {:.2e} logZ {:.3} acc {:.2} step {:.3}",
                    st.beta, st.log_z, st.acceptance, st.step_size
                ));
            })?;
            pb.finish_and_clear();
            let e = out.samples.estimates;
            s.log_z = Some(e.log_z);
            s.abs_error = target.log_z().map(|z| (e.log_z - z).abs());
            s.ess = Some(e.ess);
            s.warning = e.ess_warning();
            s.ess_below_floor = s.warning.is_some();
            s.temperatures = Some(out.steps.len());
            s.acceptance =
                Some(out.steps.iter().map(|r| r.acceptance).sum::<f64>() / out.steps.len() as f64);
            s.gradient_evaluations = out.gradient_evaluations;
            s.smc = Some(cfg);
            out.samples
        }
        Method::Sequential => {
            let device = candle_core::Device::Cpu;
            let sp = super::progress::spinner("pilot SMC runs (start and schedule)", quiet);
            let mut sampler =
                SequentialSampler::with_pilot(target, &init, seq.clone(), seed, rng, &device)?;
            sp.finish_and_clear();
            let pb = bar(seq.iterations as u64, "train", quiet);
            sampler.train(target, rng, |it| {
                pb.set_position(it.iteration as u64 + 1);
                pb.set_message(format!(
                    "loss {:.3} logZ {:.3} resamplings {}",
                    it.loss, it.log_z, it.resamplings
                ));
            })?;
            pb.finish_and_clear();
            let sp = super::progress::spinner("final particle run", quiet);
            let out = sampler.sample(target, rng)?;
            sp.finish_and_clear();
            s.log_z = Some(out.log_z);
            s.log_z_stderr = Some(out.log_z_stderr);
            s.abs_error = target.log_z().map(|z| (out.log_z - z).abs());
            s.ess = Some(out.samples.estimates.ess);
            s.resamplings = Some(out.resamplings);
            s.mcmc_moves = Some(out.moves);
            s.eve_count = Some(out.eves);
            s.warning = out.samples.estimates.ess_warning().or_else(|| {
                (out.eves * 10 < out.samples.len()).then(|| {
                    format!(
                        "only {} of {} particles' time-0 ancestors survive: the ± comes from few \
                         lineages and may understate the error (seen on multimodal targets); \
                         use more --particles or compare runs with other --seed values",
                        out.eves,
                        out.samples.len()
                    )
                })
            });
            s.ess_below_floor = out.samples.estimates.ess_warning().is_some();
            s.acceptance = out.acceptance.is_finite().then_some(out.acceptance);
            s.gradient_evaluations = sampler.gradient_evaluations();
            s.sequential = Some(sampler.config().clone());
            out.samples
        }
        Method::Nuts => {
            let cfg = args.nuts();
            let per_chain = cfg.tune + cfg.draws;
            let pb = bar(per_chain * cfg.chains as u64, "nuts", quiet);
            let out: NutsResult = run_nuts(target, &init, &cfg, rng, |chain, i| {
                pb.set_position(chain as u64 * per_chain + i + 1);
                if i == 0 {
                    pb.set_message(format!("chain {} of {}", chain + 1, cfg.chains));
                }
            })?;
            pb.finish_and_clear();
            s.divergences = Some(out.divergences);
            s.max_rhat = out.max_rhat.is_finite().then_some(out.max_rhat);
            s.gradient_evaluations = out.gradient_evaluations;
            s.nuts = Some(cfg);
            out.samples
        }
    };
    s.moments = sample_moment_errors(&set, target);
    s.modes = target.modes().map(|(centres, _)| {
        crate::metrics::mode_report(&set.samples, set.dim, &centres, &set.log_w)
    });
    s.n_samples = set.len();
    s.wall_seconds = start.elapsed().as_secs_f64();
    Ok((set, s))
}

/// Prints a baseline summary as aligned text.
pub fn print_baseline_summary(s: &BaselineSummary) {
    println!("target       {} ({}-D)", s.target, s.dim);
    match (&s.smc, &s.nuts) {
        (Some(c), _) => println!(
            "method       smc, {} particles, {} x {} moves per temperature{}, CESS {}",
            c.particles,
            super::kebab(&c.kernel),
            c.moves,
            if c.kernel == MoveKernel::Hmc {
                format!(" ({} leapfrog steps)", c.leapfrog_steps)
            } else {
                String::new()
            },
            c.cess_target
        ),
        (_, Some(c)) => println!(
            "method       nuts, {} chains x ({} warm-up + {} draws), max depth {}",
            c.chains, c.tune, c.draws, c.max_depth
        ),
        _ => {}
    }
    if let Some(c) = &s.sequential {
        println!(
            "method       sequential diffusion sampler, {} particles, {} steps, {} training \
             iterations x {} particles, {} HMC moves per resampling ({} leapfrog steps)",
            c.particles, c.steps, c.iterations, c.batch, c.moves, c.leapfrog_steps
        );
    }
    match (s.log_z, s.log_z_stderr) {
        (Some(z), Some(se)) => println!("log Z-hat    {z:.4} +- {se:.4}"),
        (Some(z), None) => println!("log Z-hat    {z:.4}"),
        _ => {}
    }
    if let (Some(r), Some(m), Some(e)) = (s.resamplings, s.mcmc_moves, s.eve_count) {
        println!(
            "particles    {r} resamplings, {m} HMC moves per particle{}, {e} distinct ancestors, \
             final ESS {:.3}",
            s.acceptance
                .map(|a| format!(" (mean acceptance {a:.2})"))
                .unwrap_or_default(),
            s.ess.unwrap_or(f64::NAN)
        );
    }
    if let Some(w) = &s.warning {
        println!("warning      {w}");
    }
    if let (Some(z), Some(err)) = (s.true_log_z, s.abs_error) {
        println!("true log Z   {z:.4}   |error| {err:.4}");
    }
    if let (Some(t), Some(acc), Some(ess)) = (s.temperatures, s.acceptance, s.ess) {
        println!("tempering    {t} temperatures, mean acceptance {acc:.2}, final ESS {ess:.3}");
    }
    if let Some(d) = s.divergences {
        println!(
            "NUTS         {d} divergent draws{}",
            s.max_rhat
                .map(|r| format!(", max split-R-hat {r:.3}"))
                .unwrap_or_default()
        );
    }
    if let Some(m) = &s.modes {
        println!(
            "modes        {}/{} found; nearest-mode entropy / log K = {:.3} (weighted {:.3})",
            m.modes_found, m.modes, m.entropy_ratio, m.weighted_entropy_ratio
        );
    }
    if let Some(m) = &s.moments {
        super::summary::print_moments(m);
    }
    println!("samples      {}", s.n_samples);
    println!("grad evals   {}", s.gradient_evaluations);
    println!("wall time    {:.1} s", s.wall_seconds);
}
