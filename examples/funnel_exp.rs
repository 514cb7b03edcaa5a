//! Experiment harness for the funnel: trains and samples exactly as `tests/funnel.rs` does and
//! prints log Z-hat, ESS, the KS test of x0 and x0 quantiles on one line. Settings come from
//! environment variables (S0, SI, STEPS, WIDTH, DEPTH, HORIZON, LS, CLIP, SCHED, KL, ITERS, BATCH,
//! LR, EXPLORE, GCLIP, REPLAY, MOVES, RW, SEED); `docs/funnel-experiments.md` lists the runs.
//! `cargo run --release --example funnel_exp`.
use candle_core::Device;
use dsb::metrics::{kolmogorov_p_value, ks_test_normal};
use dsb::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn env<T: std::str::FromStr>(k: &str, d: T) -> T {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

fn main() {
    let target = Funnel::new(10);
    let s0: f64 = env("S0", 3.0);
    let si: f64 = env("SI", 1.0);
    let mut scales = vec![si; 10];
    scales[0] = s0;
    let schedule = match std::env::var("SCHED").as_deref() {
        Ok("cosine") => Schedule::Cosine,
        Ok("uniform") => Schedule::Uniform,
        Ok("symmetric") => Schedule::Symmetric,
        _ => Schedule::Geometric,
    };
    let scfg = SamplerConfig {
        sigma: 1.0,
        prior_scales: Some(scales),
        steps: env("STEPS", 64),
        width: env("WIDTH", 64),
        depth: env("DEPTH", 2),
        horizon: env("HORIZON", 5.0),
        length_scale: env("LS", 1.0),
        score_clip: env("CLIP", 100.0),
        schedule,
        ..Default::default()
    };
    let loss = if env("KL", 0) == 1 {
        Loss::ReverseKl
    } else {
        Loss::LogVariance
    };
    let tcfg = TrainConfig {
        iterations: env("ITERS", 600),
        batch: env("BATCH", 256),
        lr: env("LR", 2e-3),
        explore: env("EXPLORE", 1.0),
        grad_clip: env("GCLIP", 10.0),
        loss,
        replay: env("REPLAY", 0.0),
        replay_moves: env("MOVES", 5),
        replay_weight: env("RW", 1.0),
        ..Default::default()
    };
    let seed: u64 = env("SEED", 2);
    let every: usize = env("EVERY", 100);
    let t0 = std::time::Instant::now();
    let mut sampler = DiffusionSampler::new(10, scfg, seed, &Device::Cpu).unwrap();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut acc = vec![];
    train(&mut sampler, &target, &tcfg, &mut rng, |it| {
        acc.push(it.estimates.elbo);
        if (it.iteration + 1) % every == 0 {
            let m = acc.iter().sum::<f64>() / acc.len() as f64;
            eprintln!(
                "it {} loss {:.3} elbo(avg) {:.3} logz {:.3} ess {:.3} t {:.0}s",
                it.iteration + 1,
                it.loss,
                m,
                it.estimates.log_z,
                it.estimates.ess,
                t0.elapsed().as_secs_f64()
            );
            acc.clear();
        }
    })
    .unwrap();
    let train_s = t0.elapsed().as_secs_f64();
    let set = sampler.sample(&target, 20_000, 5_000, &mut rng).unwrap();
    let e = set.estimates;
    let m = set.len();
    let resampled = set.resampled(m, &mut rng);
    let x0: Vec<f64> = (0..m).map(|i| resampled.row(i)[0] as f64).collect();
    // D against N(0, 3²); its p-value is recomputed below for the effective sample size.
    let (d, _) = ks_test_normal(&x0, 0.0, 3.0);
    let n_eff = e.ess * m as f64;
    let size = 1.0 / (1.0 / m as f64 + 1.0 / n_eff);
    let p = kolmogorov_p_value(d, size.floor() as usize);
    // raw x0 quantiles
    let mut raw: Vec<f64> = (0..m).map(|i| set.row(i)[0] as f64).collect();
    raw.sort_by(f64::total_cmp);
    let q = |v: &Vec<f64>, p: f64| v[((v.len() - 1) as f64 * p) as usize];
    println!(
        "RESULT logz {:.4} ± {:.4} ess {:.4} elbo {:.3} KS D {:.4} size {:.0} p {:.4} raw-x0 q01 {:.2} q50 {:.2} q99 {:.2} res-x0 q01 {:.2} q99 {:.2} train {:.0}s total {:.0}s",
        e.log_z,
        e.log_z_stderr,
        e.ess,
        e.elbo,
        d,
        size,
        p,
        q(&raw, 0.01),
        q(&raw, 0.5),
        q(&raw, 0.99),
        q(&x0, 0.01),
        q(&x0, 0.99),
        train_s,
        t0.elapsed().as_secs_f64()
    );
}
