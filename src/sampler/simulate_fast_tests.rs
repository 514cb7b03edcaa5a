use super::*;
use crate::sampler::SamplerConfig;
use crate::target::{CorrelatedGaussian, Funnel};
use candle_core::Device;
use rand::{Rng, SeedableRng, rngs::StdRng};

/// A sampler of `dim` with random weights, with a random learned forward drift (as after
/// IPF) when `forward`.
fn random_sampler(dim: usize, forward: bool) -> DiffusionSampler {
    let mut sampler = crate::test_support::random_sampler(dim, 7, (1, 3));
    if forward {
        sampler.enable_forward(2).unwrap();
        let fw = sampler.forward.as_ref().unwrap();
        crate::test_support::randomise(&fw.params, 4, 0.3);
    }
    sampler
}

/// The fast path's paths, weights and loss parts equal the candle path's to f32 rounding,
/// from the same generator state, on-policy and exploring, with the reference forward
/// process and with a learned forward drift, and leave the generator in the same state.
#[test]
fn fast_simulation_equals_the_candle_path() {
    let funnel = Funnel::new(4);
    let gauss = CorrelatedGaussian::builtin(3).unwrap();
    let cases = [
        (&gauss as &dyn Target, 1.0, false),
        (&funnel, 1.4, false),
        (&funnel, 1.0, true),
        (&gauss, 1.3, true),
    ];
    for (target, explore, forward) in cases {
        let mut sampler = random_sampler(target.dim(), forward);
        let (mut r1, mut r2) = (StdRng::seed_from_u64(9), StdRng::seed_from_u64(9));
        assert!(sampler.uses_fast_path());
        let fast = sampler
            .simulate_exploring(target, 50, &mut r1, true, explore)
            .unwrap();
        sampler.set_fast_path(false);
        let slow = sampler
            .simulate_exploring(target, 50, &mut r2, true, explore)
            .unwrap();
        assert_eq!(r1.random::<u64>(), r2.random::<u64>(), "same draws");
        if forward {
            // The learned forward drift matters: without it the weights differ.
            sampler.forward = None;
            let mut r3 = StdRng::seed_from_u64(9);
            let reference = sampler
                .simulate_exploring(target, 50, &mut r3, true, explore)
                .unwrap();
            let moved = (reference.log_w.iter().zip(&slow.log_w))
                .filter(|(a, b)| (*a - *b).abs() > 0.01)
                .count();
            assert!(
                moved > 25,
                "{moved} of 50 weights moved by the forward drift"
            );
        }
        let close = |a: &[f64], b: &[f64], what: &str| {
            for (x, y) in a.iter().zip(b) {
                assert!(
                    (x - y).abs() <= 1e-4 * (1.0 + y.abs()),
                    "{} {what}: fast {x} vs candle {y}",
                    target.name()
                );
            }
        };
        close(&fast.log_w, &slow.log_w, "log_w");
        close(&fast.loss_constant, &slow.loss_constant, "loss_constant");
        close(&fast.noise_energy, &slow.noise_energy, "noise_energy");
        for (a, b) in fast.states.iter().zip(&slow.states) {
            let (a, b) = (
                a.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                b.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            );
            for (x, y) in a.iter().zip(&b) {
                assert!((x - y).abs() <= 1e-4 * (1.0 + y.abs()), "state {x} vs {y}");
            }
        }
    }
}

/// Training paths simulated with each step split over two threads equal those of the
/// sequential loop (a one-thread pool) bit for bit, with the network's kept outputs, and the
/// candle path's to f32 rounding, with and without a learned forward drift; all leave the
/// generator in the same state.
#[test]
fn training_paths_on_two_threads_equal_one_thread_and_candle() {
    for forward in [false, true] {
        training_paths_case(forward);
    }
}

/// A target that hides its inner target's host gradient: the simulations then call
/// candle's gradient once per step for the whole batch.
struct CandleOnly<T>(T);

impl<T: Target> Target for CandleOnly<T> {
    fn name(&self) -> &str {
        "candle-only"
    }
    fn dim(&self) -> usize {
        self.0.dim()
    }
    fn log_density(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.0.log_density(x)
    }
    fn grad_log_density(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.0.grad_log_density(x)
    }
}

/// The score on the host equals candle's, cleaning and clip included: at ordinary points,
/// where the clip bites (x₀ ≪ 0 makes e^{−x₀} large) and where the gradient overflows to
/// ±∞ or NaN.
#[test]
fn host_score_equals_the_candle_score() {
    let funnel = Funnel::new(4);
    assert!(funnel.has_host_gradient() && !CandleOnly(Funnel::new(4)).has_host_gradient());
    let sampler = random_sampler(4, false);
    let mut rng = StdRng::seed_from_u64(2);
    let mut x: Vec<f32> = (0..400).map(|_| rng.random_range(-4.0f32..4.0)).collect();
    x[0] = -9.0; // clipped (|x| e⁹ > 100)
    x[4] = -200.0; // e²⁰⁰ overflows: ±∞
    x[8] = -200.0;
    x[9] = 0.0; // 0 · ∞: NaN
    let before = sampler.gradient_evaluations();
    let mut host = vec![0.0f32; x.len()];
    sampler.score_rows(&funnel, &x, &mut host).unwrap();
    assert_eq!(sampler.gradient_evaluations() - before, 100, "rows counted");
    let t = Tensor::from_slice(&x, (100, 4), &Device::Cpu).unwrap();
    let want = sampler.score(&funnel, &t).unwrap();
    let want = want.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert!(
        host.iter().any(|&v| v == 100.0 || v == -100.0),
        "some clipped"
    );
    assert!(host[4..8].iter().all(|&v| v == 0.0), "non-finite cleaned");
    for (i, (a, b)) in host.iter().zip(&want).enumerate() {
        assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "{i}: {a} vs {b}");
    }
    // The trait's default (through candle) gives candle's numbers.
    let mut via_default = vec![0.0f32; x.len()];
    CandleOnly(Funnel::new(4))
        .grad_log_density_rows(&x[..40], &mut via_default[..40])
        .unwrap();
    let direct = funnel
        .grad_log_density(&t.narrow(0, 0, 10).unwrap())
        .unwrap();
    let direct = direct.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let same = |(a, b): (&f32, &f32)| a == b || (a.is_nan() && b.is_nan());
    assert!(via_default[..40].iter().zip(&direct).all(same));
    assert!(
        direct[4..12].iter().all(|v| !v.is_finite()),
        "non-finite rows"
    );
}

fn training_paths_case(forward: bool) {
    training_paths_with(&Funnel::new(4), forward);
    training_paths_with(&CandleOnly(Funnel::new(4)), forward);
}

/// Training paths on one thread and two agree bit for bit, and with the candle path to f32
/// rounding, for `funnel` (the funnel with or without its host gradient, which select the
/// two protocols of [`DiffusionSampler::run_steps`]).
fn training_paths_with(funnel: &dyn Target, forward: bool) {
    let mut sampler = random_sampler(4, forward);
    let host = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let run = |threads: usize| {
        crate::test_support::with_threads(threads, || {
            let mut fast = FastDrift::new(sampler.backward_net()).unwrap();
            let mut rng = StdRng::seed_from_u64(4);
            let p = sampler
                .simulate_for_training(funnel, 200, &mut rng, 1.3, &mut fast)
                .unwrap();
            let states: Vec<Vec<f32>> = p.states.iter().map(host).collect();
            let scores: Vec<Vec<f32>> = p.scores.iter().map(host).collect();
            let out = fast.output().to_vec();
            (states, scores, p.log_w, out, rng.random::<u64>())
        })
    };
    let (one, two) = (run(1), run(2));
    assert!(one == two, "one thread and two differ");
    sampler.set_fast_path(false);
    let mut rng = StdRng::seed_from_u64(4);
    let slow = sampler
        .simulate_exploring(funnel, 200, &mut rng, true, 1.3)
        .unwrap();
    assert_eq!(rng.random::<u64>(), two.4, "same draws");
    for (x, y) in two.2.iter().zip(&slow.log_w) {
        assert!((x - y).abs() <= 1e-4 * (1.0 + y.abs()), "log w {x} vs {y}");
    }
    for (a, b) in two.0.iter().zip(&slow.states) {
        for (x, y) in a.iter().zip(&host(b)) {
            assert!((x - y).abs() <= 1e-4 * (1.0 + y.abs()), "state {x} vs {y}");
        }
    }
}

/// A target whose gradient fails from its call number `after` on: through candle
/// (`grad_log_density`) or, with `host`, on the host (`grad_log_density_rows`).
struct FailsLater {
    calls: std::sync::atomic::AtomicUsize,
    after: usize,
    host: bool,
}

impl FailsLater {
    fn fail(&self) -> candle_core::Result<()> {
        if self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) >= self.after {
            return Err(candle_core::Error::Msg("score failed".into()));
        }
        Ok(())
    }
}

impl Target for FailsLater {
    fn name(&self) -> &str {
        "fails-later"
    }
    fn dim(&self) -> usize {
        2
    }
    fn log_density(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        x.sqr()?.sum(1)? * -0.5
    }
    fn grad_log_density(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.fail()?;
        x.neg()
    }
    fn has_host_gradient(&self) -> bool {
        self.host
    }
    fn grad_log_density_rows(&self, x: &[f32], g: &mut [f32]) -> candle_core::Result<()> {
        self.fail()?;
        for (g, v) in g.iter_mut().zip(x) {
            *g = -v;
        }
        Ok(())
    }
}

/// The error of a training simulation on two threads of `target`.
fn failed_simulation(target: &FailsLater) -> crate::error::DsbError {
    let cfg = SamplerConfig {
        steps: 7,
        width: 8,
        depth: 1,
        ..Default::default()
    };
    let sampler = DiffusionSampler::new(2, cfg, 1, &Device::Cpu).unwrap();
    crate::test_support::with_threads(2, || {
        let mut fast = FastDrift::new(sampler.backward_net()).unwrap();
        let mut rng = StdRng::seed_from_u64(1);
        sampler
            .simulate_for_training(target, 200, &mut rng, 1.0, &mut fast)
            .unwrap_err()
    })
}

/// A target that fails in the middle of a simulation on two threads (in the helper's score
/// call) ends it with that error: neither thread waits for the other forever. With a host
/// gradient, which both threads call on their own rows, whichever thread's call fails.
#[test]
fn a_target_error_on_either_thread_is_returned() {
    let cases = [
        (3, false),
        (0, true),
        (1, true),
        (3, true),
        (6, true),
        (11, true),
    ];
    for (after, host) in cases {
        let target = FailsLater {
            calls: Default::default(),
            after,
            host,
        };
        let err = failed_simulation(&target);
        assert!(err.to_string().contains("score failed"), "{err}");
    }
}
