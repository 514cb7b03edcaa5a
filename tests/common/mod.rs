//! Shared helpers of the statistical tests: training with fixed seeds and weighted moments.

#![allow(dead_code)]

use candle_core::Device;
use dsb::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::process::{Command, Output};

// Same allocator as the `dsb` binary: glibc maps and unmaps candle's large temporaries.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Trains a sampler on `target` with a fixed seed and returns it with the generator, ready to
/// draw the test's samples.
pub fn trained(
    target: &dyn Target,
    scfg: SamplerConfig,
    tcfg: TrainConfig,
    seed: u64,
) -> (DiffusionSampler, StdRng) {
    let mut sampler = DiffusionSampler::new(target.dim(), scfg, seed, &Device::Cpu).unwrap();
    let mut rng = StdRng::seed_from_u64(seed);
    train(&mut sampler, target, &tcfg, &mut rng, |_| {}).unwrap();
    (sampler, rng)
}

/// Self-normalised importance-weighted mean and covariance of a sample set.
pub fn weighted_moments(set: &SampleSet) -> (Vec<f64>, Vec<Vec<f64>>) {
    let w = dsb::estimate::normalised_weights(&set.log_w);
    let d = set.dim;
    let mut mean = vec![0.0; d];
    for (i, wi) in w.iter().enumerate() {
        for (j, m) in mean.iter_mut().enumerate() {
            *m += wi * set.row(i)[j] as f64;
        }
    }
    let mut cov = vec![vec![0.0; d]; d];
    for (i, wi) in w.iter().enumerate() {
        let r = set.row(i);
        for a in 0..d {
            for b in 0..d {
                cov[a][b] += wi * (r[a] as f64 - mean[a]) * (r[b] as f64 - mean[b]);
            }
        }
    }
    (mean, cov)
}

/// Effective number of samples n·ESS of a weighted set.
pub fn effective_n(set: &SampleSet) -> f64 {
    set.estimates.ess * set.len() as f64
}

/// Runs the built `dsb` binary with `args`.
pub fn dsb(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dsb"))
        .args(args)
        .output()
        .expect("run dsb")
}

/// The standard error of a run, as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A successful run (its standard error shown otherwise).
pub fn assert_ok(o: &Output) {
    assert!(o.status.success(), "dsb failed: {}", stderr(o));
}

/// A failed run: non-zero exit, no panic, and a message that contains `needle`.
pub fn assert_clear_error(o: &Output, needle: &str) {
    let err = stderr(o);
    assert!(
        !o.status.success(),
        "expected failure, got success; stderr: {err}"
    );
    assert!(!err.contains("panicked"), "panicked: {err}");
    assert!(err.contains(needle), "stderr lacks '{needle}': {err}");
}

/// The real-MNIST fixture directory (5,000 digits sorted by class, with labels).
pub fn mnist_fixture() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mnist-5k")
}

/// The flags of a tiny UNet on 28×28 digits for `dsb fit` (as [`tiny_unet`], with 4 steps on
/// [0, 3]), for end-to-end runs that must take seconds.
pub const TINY_UNET_FLAGS: [&str; 13] = [
    "--unet-width",
    "8",
    "--unet-levels",
    "2",
    "--unet-blocks",
    "1",
    "--unet-groups",
    "4",
    "--no-attention",
    "--steps",
    "4",
    "--horizon",
    "3",
];

/// `n` training digits of the fixture (a seeded random subset: the file is sorted by class) and
/// the fraction `held_out` of the fixture held out, split with seed 1.
pub fn mnist_digits(n: usize, held_out: f64) -> dsb::fit::DataSpec {
    dsb::fit::DataSpec {
        name: "mnist".into(),
        n,
        seed: 1,
        held_out,
        data_dir: Some(mnist_fixture()),
    }
}

/// A tiny UNet for 28×28 digits: base width 8, two levels (28 → 14), one block per level, 4
/// groups, no attention.
pub fn tiny_unet() -> dsb::fit::NetworkSpec {
    dsb::fit::NetworkSpec::Unet(dsb::nn::UNetConfig {
        base_width: 8,
        channel_mults: vec![1, 2],
        res_blocks_per_level: 1,
        attention: false,
        groups: 4,
        time_embed_dim: 32,
        ..dsb::nn::UNetConfig::mnist()
    })
}
