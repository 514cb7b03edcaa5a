//! Benchmarks at the `dsb sample --target gmm` defaults: one training iteration (split into the
//! path simulation and the loss pass), and sampling throughput. Figures are in BENCHMARKS.md.
//!
//! Run: `cargo bench --bench sampler`.

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

criterion_group!(benches, gmm);
criterion_main!(benches);
