use super::*;
use crate::nn::ParamStore;
use crate::test_support::{assert_gradients_close, host, randomise};
use candle_core::{Device, Var};
use rand::{Rng, SeedableRng, rngs::StdRng};

fn randn(rng: &mut StdRng, n: usize, scale: f32) -> Vec<f32> {
    (0..n)
        .map(|_| rng.random_range(-1.0f32..1.0) * scale)
        .collect()
}

/// A network of one coordinate per entry of `scales`, (width, depth), output clip `clip`, with
/// every weight random (the output layers too, which start at zero).
fn random_net(
    uses_score: bool,
    (width, depth): (usize, usize),
    clip: f64,
    scales: &[f64],
    rng: &mut StdRng,
) -> (ParamStore, DriftNet) {
    let mut params = ParamStore::new();
    let d = scales.len();
    let (dev, ls) = (Device::Cpu, 0.8);
    let net = DriftNet::new(
        "n",
        uses_score,
        d,
        width,
        depth,
        clip,
        scales,
        ls,
        &mut params,
        rng,
        &dev,
    )
    .unwrap();
    randomise(&params, 6, 0.6);
    (params, net)
}

/// A random network ([`random_net`]) and a batch of 4 × 7 rows over 4 times.
fn setup(uses_score: bool, depth: usize) -> (ParamStore, DriftNet, TimeFeatures, Tensor, Tensor) {
    let dev = Device::Cpu;
    let mut rng = StdRng::seed_from_u64(5);
    let (d, width, n_times, per) = (3, 16, 4, 7);
    let (params, net) = random_net(uses_score, (width, depth), 2.0, &[1.5, 0.7, 1.0], &mut rng);
    let u: Vec<f64> = (0..n_times)
        .map(|k| (k as f64 + 0.5) / n_times as f64)
        .collect();
    let kappa: Vec<f64> = (0..n_times * d).map(|i| 0.3 + 0.1 * i as f64).collect();
    let tf = net.time_features(&u, &kappa, &dev).unwrap();
    let rows = n_times * per;
    let x = Tensor::from_vec(randn(&mut rng, rows * d, 2.0), (rows, d), &dev).unwrap();
    let g = Tensor::from_vec(randn(&mut rng, rows * d, 3.0), (rows, d), &dev).unwrap();
    (params, net, tf, x, g)
}

fn assert_close(a: &[f32], b: &[f32], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}");
    let scale = b.iter().fold(1e-3f32, |m, v| m.max(v.abs()));
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - y).abs() <= 1e-4 * scale,
            "{what}[{i}]: fast {x} vs candle {y}"
        );
    }
}

/// Where a forward pass's rows are split between the two halves changes no number
/// ([`FastDrift::split_halves_at`]) when each part has at least [`MIN_PART_ROWS`] rows:
/// the outputs agree bit for bit, at row counts that are and are not multiples of `gemm`'s
/// tiles. (With fewer rows in a part, `gemm` takes another path, and that part's rows
/// differ in the last bits: seen here at 16–48 rows.)
#[test]
fn the_split_of_a_forward_pass_changes_no_numbers() {
    let dev = Device::Cpu;
    let mut rng = StdRng::seed_from_u64(9);
    let (d, n_times, batch) = (5, 3, 200);
    let (_params, net) = random_net(true, (64, 2), 5.0, &[1.5, 0.7, 1.0, 2.0, 1.0], &mut rng);
    let u = [0.2, 0.5, 0.8];
    let kappa: Vec<f64> = (0..n_times * d).map(|i| 0.3 + 0.05 * i as f64).collect();
    let tf = net.time_features(&u, &kappa, &dev).unwrap();
    let (eh, ch) = (host(&tf.embedding), host(&tf.coefficient));
    let rows = n_times * batch;
    let (x, g) = (
        randn(&mut rng, rows * d, 2.0),
        randn(&mut rng, rows * d, 3.0),
    );
    let mut fast = FastDrift::new(&net).unwrap();
    let run = |fast: &mut FastDrift, split: usize| {
        fast.prepare(rows, n_times);
        let (mut a, mut b) = fast.split_halves_at(batch, split);
        for k in 0..n_times {
            for half in [&mut a, &mut b] {
                let r = half.rows();
                let part = (k * batch + r.start) * d..(k * batch + r.end) * d;
                half.forward(k, &x[part.clone()], &g[part], &eh, &ch);
            }
        }
        fast.output().to_vec()
    };
    let whole = run(&mut fast, batch);
    assert!(whole.iter().any(|&v| v != 0.0) && whole.iter().all(|v| v.is_finite()));
    for split in [64, 68, 100, 137] {
        assert!(run(&mut fast, split) == whole, "split at {split}");
    }
}

/// Forward outputs, every parameter's gradient (time MLP and NN₂ included) and the gradient
/// with respect to the states equal candle's to f32 rounding, with and without the score
/// input, with one and two hidden layers, with some outputs clipped; computed in one pass
/// or block by block in any order.
#[test]
fn fast_path_equals_candle_forward_and_backward() {
    for (uses_score, depth) in [(true, 2), (true, 1), (false, 2)] {
        let (params, net, tf, x, g) = setup(uses_score, depth);
        let xv = Var::from_tensor(&x).unwrap();
        let h = net.forward(xv.as_tensor(), &g, &tf).unwrap();
        let mut fast = FastDrift::new(&net).unwrap();
        let (xh, gh) = (host(&x), host(&g));
        let (eh, ch) = (host(&tf.embedding), host(&tf.coefficient));
        let hf = fast.forward(&xh, &gh, &eh, &ch, 4).to_vec();
        assert_close(&hf, &host(&h), "h");
        let clipped = hf.iter().filter(|v| v.abs() >= 2.0).count();
        assert!(
            clipped > 0 && clipped < hf.len(),
            "some outputs clipped: {clipped}"
        );
        // Loss Σ h ⊙ R for a fixed random R: ∂loss/∂h = R.
        let mut rng = StdRng::seed_from_u64(8);
        let r = randn(&mut rng, hf.len(), 1.0);
        let rt = Tensor::from_vec(r.clone(), h.dims(), &Device::Cpu).unwrap();
        let candle_grads = (h * rt).unwrap().sum_all().unwrap().backward().unwrap();
        let store = FastDrift::all_gradients(&net, &tf, &fast.backward(&r)).unwrap();
        assert_gradients_close(&params, &candle_grads, &store, 1e-4, "one pass");
        // Blocks of 7 rows (one time each), forward last to first, backward first to last,
        // with the states' gradient.
        let d = 3;
        fast.prepare(28, 4);
        for b in (0..4).rev() {
            let rows = b * 7 * d..(b + 1) * 7 * d;
            fast.forward_block(b * 7, &xh[rows.clone()], &gh[rows], &eh, &ch);
        }
        assert_close(fast.output(), &hf, "h by blocks");
        fast.begin_backward();
        let mut dx = vec![0.0f32; 28 * d];
        for b in 0..4 {
            let rows = b * 7 * d..(b + 1) * 7 * d;
            fast.backward_block(b * 7, &r[rows.clone()], Some(&mut dx[rows]));
        }
        let store = FastDrift::all_gradients(&net, &tf, &fast.finish_backward()).unwrap();
        assert_gradients_close(&params, &candle_grads, &store, 1e-4, "by blocks");
        let want_dx = host(candle_grads.get(xv.as_tensor()).unwrap());
        assert_close(&dx, &want_dx, "dx");
    }
}
