//! Benchmarks at the `dsb sample --target gmm` defaults: one training iteration (split into the
//! path simulation and the loss pass), and sampling throughput; and the training iteration of
//! the DDS speed yardstick (10-D funnel, 128 steps, width 64 × 2, no replay; the configuration of
//! `../shared/peers/dds/`) for both losses at batch 512 and 2000, on the CPU fast path and, at
//! batch 512, through candle's autograd; and the `gemm` crate's rate on the fast path's matrix
//! shapes (`-- gemm-shapes`). Figures are in BENCHMARKS.md.
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

/// The `gemm` crate (which the fast path calls, single-threaded) on the matrix products of one
/// DDS step's half batch (256 or 1000 rows; width 64, dimension 10, 20 inputs), as FLOP per
/// second: forward (rows × k · k × n), the gradient with respect to the input, and the weight
/// gradient (Aᵀ read with strides, k = rows). Compare with one core's peak
/// (`../shared/peers/dds/gemm_rate.py`, about 170 GFLOP/s on the machine of BENCHMARKS.md).
fn gemm_shapes(c: &mut Criterion) {
    let mut g = c.benchmark_group("gemm-shapes");
    g.sample_size(20);
    // (name, m, k, n, A transposed)
    for rows in [256, 1000] {
        let shapes = [
            ("hidden", rows, 64, 64, false),
            ("first", rows, 20, 64, false),
            ("output", rows, 64, 10, false),
            ("output-input-grad", rows, 10, 64, false),
            ("hidden-weight-grad", 64, rows, 64, true),
            ("first-weight-grad", 64, rows, 20, true),
            // The same product transposed, as the fast path computes it.
            ("first-weight-grad-transposed", 20, rows, 64, true),
            ("output-weight-grad", 10, rows, 64, true),
        ];
        for (name, m, k, n, transposed) in shapes {
            let a: Vec<f32> = (0..m * k)
                .map(|i| ((i * 7) % 13) as f32 * 0.1 - 0.6)
                .collect();
            let b: Vec<f32> = (0..k * n)
                .map(|i| ((i * 5) % 11) as f32 * 0.1 - 0.5)
                .collect();
            let mut dst = vec![0.0f32; m * n];
            let (a_rs, a_cs) = if transposed { (1, m) } else { (k, 1) };
            g.throughput(criterion::Throughput::Elements(2 * (m * k * n) as u64));
            g.bench_function(format!("{name}-{m}x{k}x{n}"), |bench| {
                bench.iter(|| {
                    // SAFETY: dst is m × n, a is read at i·a_rs + p·a_cs < m·k, b is k × n
                    // row-major; no operand aliases dst.
                    unsafe {
                        gemm::gemm(
                            m,
                            n,
                            k,
                            dst.as_mut_ptr(),
                            1,
                            n as isize,
                            false,
                            a.as_ptr(),
                            a_cs as isize,
                            a_rs as isize,
                            b.as_ptr(),
                            1,
                            n as isize,
                            1.0,
                            1.0,
                            false,
                            false,
                            false,
                            gemm::Parallelism::None,
                        )
                    };
                    black_box(&dst);
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, gmm, dds_funnel, gemm_shapes);
criterion_main!(benches);
