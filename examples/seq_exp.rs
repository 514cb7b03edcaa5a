//! Experiments with the sequential diffusion sampler on a built-in target.
//!
//! `cargo run --release --example seq_exp -- TARGET SEED [key=value ...]` with keys of
//! `SequentialConfig` (steps, particles, moves, iterations, batch, lr, langevin_step, ...).
//! Prints one line: target, seed, log Ẑ ± s.e., error, ESS, resamplings, gradient evaluations,
//! seconds.

use dsb::baseline::DiagGaussian;
use dsb::recommend::recommended_settings;
use dsb::sequential::{SequentialConfig, SequentialSampler};
use dsb::target::{TargetOptions, builtin_target};
use rand::SeedableRng;
use rand::rngs::StdRng;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let name = args.get(1).map(String::as_str).unwrap_or("gmm");
    let seed: u64 = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(0);
    let mut cfg = SequentialConfig::default();
    for kv in &args[3.min(args.len())..] {
        let (k, v) = kv.split_once('=').expect("key=value");
        match k {
            "steps" => cfg.steps = v.parse()?,
            "particles" => cfg.particles = v.parse()?,
            "moves" => cfg.moves = v.parse()?,
            "step_moves" => cfg.step_moves = v.parse()?,
            "leapfrog" => cfg.leapfrog_steps = v.parse()?,
            "iterations" => cfg.iterations = v.parse()?,
            "batch" => cfg.batch = v.parse()?,
            "lr" => cfg.lr = v.parse()?,
            "langevin_step" => cfg.langevin_step = v.parse()?,
            "resample" => cfg.resample_threshold = v.parse()?,
            "pilot" => cfg.pilot_particles = v.parse()?,
            "inflate" => cfg.pilot_inflate = v.parse()?,
            "refresh" => cfg.refresh = v.parse()?,
            "width" => cfg.width = v.parse()?,
            "cess" => cfg.schedule_cess = v.parse()?,
            "full" => cfg.full_covariance_max_dim = v.parse()?,
            _ => anyhow::bail!("unknown key {k}"),
        }
    }
    let target = builtin_target(name, &TargetOptions::default())?;
    let (scfg, _) = recommended_settings(target.as_ref());
    let guess = DiagGaussian::sampler_prior(&scfg, target.dim());
    let t0 = std::time::Instant::now();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut s = SequentialSampler::with_pilot(
        target.as_ref(),
        &guess,
        cfg,
        seed,
        &mut rng,
        &candle_core::Device::Cpu,
    )?;
    let pilot = s.gradient_evaluations();
    let mut last = String::new();
    s.train(target.as_ref(), &mut rng, |it| {
        if it.iteration % 50 == 0 {
            eprintln!(
                "  it {} loss {:.4} logZ {:.4} resamplings {}",
                it.iteration, it.loss, it.log_z, it.resamplings
            );
        }
        last = format!("{:.3}", it.loss);
    })?;
    let run = s.sample(target.as_ref(), &mut rng)?;
    let truth = target.log_z();
    println!(
        "{name} seed {seed}: logZ {:.4} ± {:.4}  err {}  ESS {:.3}  resamplings {}  eves {}  grads {:.3e} (pilot {:.2e})  {:.1}s  last loss {last}  deltas {:?}",
        run.log_z,
        run.log_z_stderr,
        truth.map_or("-".into(), |z| format!("{:.4}", (run.log_z - z).abs())),
        run.samples.estimates.ess,
        run.resamplings,
        run.eves,
        s.gradient_evaluations() as f64,
        pilot as f64,
        t0.elapsed().as_secs_f64(),
        s.langevin_steps()?
            .iter()
            .step_by(8)
            .map(|v| format!("{v:.3}"))
            .collect::<Vec<_>>()
    );
    Ok(())
}
