//! Helpers shared by the unit tests that hold the CPU fast path to the candle path.

use crate::nn::ParamStore;
use candle_core::backprop::GradStore;
use candle_core::{Device, Tensor};
use rand::{Rng, SeedableRng, rngs::StdRng};

/// A tensor's values on the host, flattened.
pub(crate) fn host(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

/// Sets every parameter (the zero-initialised output layers too) to uniform draws on ±`scale`
/// from a generator seeded by `seed`: a network whose every path matters.
pub(crate) fn randomise(params: &ParamStore, seed: u64, scale: f32) {
    let mut rng = StdRng::seed_from_u64(seed);
    for (_, v) in params.named() {
        let vals: Vec<f32> = (0..v.elem_count())
            .map(|_| rng.random_range(-scale..scale))
            .collect();
        v.set(&Tensor::from_vec(vals, v.dims(), &Device::Cpu).unwrap())
            .unwrap();
    }
}

/// Every parameter's gradient in `got` equals the one in `want` within `rel` times the largest
/// magnitude of that parameter's gradient (both absent is fine, one absent is not).
pub(crate) fn assert_gradients_close(
    params: &ParamStore,
    want: &GradStore,
    got: &GradStore,
    rel: f32,
    what: &str,
) {
    for (name, v) in params.named() {
        match (
            want.get(v.as_tensor()).map(host),
            got.get(v.as_tensor()).map(host),
        ) {
            (Some(a), Some(b)) => {
                assert_eq!(a.len(), b.len(), "{what} {name}");
                let scale = a.iter().fold(1e-3f32, |m, x| m.max(x.abs()));
                for (x, y) in a.iter().zip(&b) {
                    assert!(
                        (x - y).abs() <= rel * scale,
                        "{what} {name}: candle {x} vs fast {y}"
                    );
                }
            }
            (None, None) => {}
            (a, b) => panic!(
                "{what} {name}: candle {:?}, fast {:?}",
                a.is_some(),
                b.is_some()
            ),
        }
    }
}

/// `f`'s result when run in a thread pool of its own with `threads` threads (what the fast
/// path's "one thread or two" decision reads).
pub(crate) fn with_threads<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("a thread pool")
        .install(f)
}

/// `target`'s host gradient ([`crate::target::Target::grad_log_density_rows`]) equals its
/// candle gradient at the rows `x` within `rel` relative (|a − b| ≤ rel·(1 + |b|)), and the
/// target says it has one. Returns the largest relative difference seen.
pub(crate) fn assert_host_gradient_matches(
    target: &dyn crate::target::Target,
    x: &[f32],
    rel: f32,
) -> f32 {
    assert!(target.has_host_gradient(), "{}", target.name());
    let d = target.dim();
    let mut got = vec![0.0f32; x.len()];
    target.grad_log_density_rows(x, &mut got).unwrap();
    let t = Tensor::from_slice(x, (x.len() / d, d), &Device::Cpu).unwrap();
    let want = host(&target.grad_log_density(&t).unwrap());
    let mut worst = 0.0f32;
    for (i, (a, b)) in got.iter().zip(&want).enumerate() {
        let err = (a - b).abs() / (1.0 + b.abs());
        assert!(err <= rel, "{} row {}: {a} vs {b}", target.name(), i / d);
        worst = worst.max(err);
    }
    worst
}

/// A sampler of dimension `dim` over `steps` steps (width 16, depth 2, σ = 1.5), built from
/// `seed`, then with every weight random (uniform on ±0.3 from `weights_seed`): the small
/// network the fast-path tests hold to the candle path.
pub(crate) fn random_sampler(
    dim: usize,
    steps: usize,
    (seed, weights_seed): (u64, u64),
) -> crate::sampler::DiffusionSampler {
    let cfg = crate::sampler::SamplerConfig {
        steps,
        width: 16,
        depth: 2,
        sigma: 1.5,
        ..Default::default()
    };
    let sampler = crate::sampler::DiffusionSampler::new(dim, cfg, seed, &Device::Cpu).unwrap();
    randomise(&sampler.params, weights_seed, 0.3);
    sampler
}
