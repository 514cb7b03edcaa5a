//! Benchmarks at the `dsb sample --target gmm` defaults: one training iteration (split into the
//! path simulation and the loss pass), and sampling throughput; and the training iteration of
//! the DDS speed yardstick (10-D funnel, 128 steps, width 64 × 2, no replay; the configuration of
//! `../shared/peers/dds/`) for both losses at batch 512 and 2000, on the CPU fast path and, at
//! batch 512, through candle's autograd. Figures are in BENCHMARKS.md.
//!
//! Run: `cargo bench --bench sampler` (or `-- dds` for the yardstick's iterations only).

use candle_core::Device;
use criterion::{Criterion, criterion_group, criterion_main};
use dsb::prelude::*;
use dsb::recommend::recommended_settings;
use dsb::train::log_variance_loss;
use rand::SeedableRng;
use std::hint::black_box;

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn gmm(c: &mut Criterion) {
    let target = GaussianMixture::gmm40();
    let (scfg, tcfg) = recommended_settings(&target);
    let mut sampler = DiffusionSampler::new(2, scfg, 0, &Device::Cpu).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let mut g = c.benchmark_group("gmm-defaults");
    g.sample_size(10);
    g.bench_function("simulate-training-batch", |b| {
        b.iter(|| {
            black_box(
                sampler
                    .simulate(&target, tcfg.batch, &mut rng, true)
                    .unwrap(),
            )
        })
    });
    let paths = sampler
        .simulate(&target, tcfg.batch, &mut rng, true)
        .unwrap();
    g.bench_function("loss-forward-backward", |b| {
        b.iter(|| {
            let (loss, _) = log_variance_loss(&sampler, &paths).unwrap();
            black_box(loss.unwrap().backward().unwrap())
        })
    });
    let one = TrainConfig {
        iterations: 1,
        ..tcfg.clone()
    };
    g.bench_function("train-iteration", |b| {
        b.iter(|| train(&mut sampler, &target, &one, &mut rng, |_| {}).unwrap())
    });
    g.throughput(criterion::Throughput::Elements(10_000));
    g.bench_function("sample-10000", |b| {
        b.iter(|| black_box(sampler.sample(&target, 10_000, 2048, &mut rng).unwrap()))
    });
    g.finish();
}

/// One training iteration of the DDS yardstick's configuration, on a trainer that persists
/// across iterations (as in a run).
fn dds_funnel(c: &mut Criterion) {
    let target = dsb::target::Funnel::new(10);
    let (mut scfg, mut tcfg) = recommended_settings(&target);
    scfg.steps = 128;
    scfg.width = 64;
    scfg.depth = 2;
    tcfg.replay = 0.0;
    tcfg.iterations = 1_000_000;
    let mut g = c.benchmark_group("dds-funnel");
    g.sample_size(10);
    for (loss, name) in [(Loss::ReverseKl, "kl"), (Loss::LogVariance, "log-var")] {
        for (batch, fast) in [(512, true), (2000, true), (512, false)] {
            let mut sampler = DiffusionSampler::new(10, scfg.clone(), 0, &Device::Cpu).unwrap();
            sampler.set_fast_path(fast);
            let cfg = TrainConfig {
                loss,
                batch,
                fast_path: fast,
                ..tcfg.clone()
            };
            let mut trainer = Trainer::new(&sampler, &cfg).unwrap();
            let mut rng = rand::rngs::StdRng::seed_from_u64(0);
            let path = if fast { "fast" } else { "candle" };
            g.bench_function(format!("{name}-{batch}-{path}"), |b| {
                b.iter(|| {
                    trainer
                        .step(&mut sampler, &target, &mut rng, |_| {})
                        .unwrap()
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, gmm, dds_funnel);
criterion_main!(benches);
