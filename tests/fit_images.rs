//! The data fit on images: a tiny UNet on real MNIST digits (the 5,000-image fixture), the
//! bits/dim of the likelihood bound, and end-to-end runs of `dsb fit` / `dsb generate`.

mod common;

use candle_core::Device;
use common::{assert_clear_error, assert_ok, dsb};
use dsb::fit::{
    DataSpec, ElboOptions, Fit, FitConfig, FitEvent, GenerateOptions, NetworkSpec, RunOptions,
    elbo, load_model,
};
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::time::Instant;

/// `n` training digits and 2% of the fixture (100 digits) held out.
fn digits(n: usize) -> DataSpec {
    common::mnist_digits(n, 0.02)
}

fn tiny_config(iters: usize) -> FitConfig {
    FitConfig {
        steps: 4,
        horizon: 3.0,
        iters,
        batch: 16,
        network: common::tiny_unet(),
        eval_samples: 16,
        ema: 0.0,
        lr: 5e-3,
        ..Default::default()
    }
}

/// 30 gradient steps (lr 5e-3) on 64 digits: the mean loss of the last 6 steps is below 0.95 ×
/// that of the first 6. Measured: 0.482 → 0.432 (ratio 0.90). Much of the loss is the
/// irreducible spread of the regression target, so the relative drop is small; the step losses
/// scatter by about 0.015, so a 6-step mean by about 0.006, and the threshold (a drop of ≥ 0.024)
/// is about 4 such sd, the measured drop about 8. The saved model reloads and samples like the model in
/// memory, `[n, 1, 28, 28]` images of finite values in a sane range, and the row reports
/// bits/dim.
#[test]
fn tiny_unet_learns_digits_saves_reloads_and_generates_images() {
    let start = Instant::now();
    let dev = Device::Cpu;
    let dir = tempfile::tempdir().unwrap();
    let mut fit = Fit::new(digits(64), tiny_config(30), &dev).unwrap();
    assert_eq!(fit.train_len(), 64);
    assert_eq!(fit.held_out().len(), 100);
    assert_eq!(fit.model.settings().example_shape, vec![1, 28, 28]);
    assert_eq!(fit.model.settings().normalisation.scale, vec![1.0; 784]);
    let mut losses = Vec::new();
    let opts = RunOptions {
        dir: Some(dir.path().to_path_buf()),
        ..Default::default()
    };
    let done = fit
        .run(&opts, |e| {
            if let FitEvent::Step { loss, .. } = e {
                losses.push(loss);
            }
        })
        .unwrap();
    assert!(done);
    assert_eq!(losses.len(), 30);
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (first, last) = (mean(&losses[..6]), mean(&losses[24..]));
    eprintln!("losses {losses:?}\nfirst {first:.4} last {last:.4}");
    assert!(last < 0.95 * first, "loss {first} → {last}");
    let row = &fit.progress().rows[0];
    let bits = row.elbo.bits_per_dim.expect("images report bits/dim");
    assert!(bits.is_finite() && bits > 0.0, "{bits}");

    let (model, saved) = load_model(dir.path(), &dev).unwrap();
    assert!(matches!(saved.model.network, NetworkSpec::Unet(ref c) if c.height == 28));
    let sample = |m: &dsb::fit::FitModel| {
        let mut rng = StdRng::seed_from_u64(5);
        m.generate(6, &GenerateOptions::default(), &mut rng)
            .unwrap()
    };
    let (a, b) = (sample(&fit.model), sample(&model));
    assert_eq!(a.data, b.data);
    assert_eq!((b.n, b.dim), (6, 784));
    let t = candle_core::Tensor::from_vec(b.data.clone(), (6, 1, 28, 28), &dev).unwrap();
    assert_eq!(t.dims(), &[6, 1, 28, 28]);
    assert!(b.data.iter().all(|v| v.is_finite() && v.abs() < 6.0));
    eprintln!("took {:.1} s", start.elapsed().as_secs_f64());
}

/// The untrained model (zero UNet output) is the exact reversal of the OU reference from
/// N(0, I), so its bound on each dequantised image y = x + u is log N(y; 0, I) exactly, and the
/// only randomness is u ~ U[0, Δ)^d. Averaged over u, E log N(x + u; 0, I) =
/// Σ_i −½(x_i² + x_i Δ + Δ²/3) − (d/2) log 2π, so bits/dim must equal
/// −(that/(n d) + log Δ)/log 2 up to the u-noise: per pixel Var ½(x + u)² ≈ x²Δ²/12 ≤ 5e-5
/// (sd 0.007 nats), over 50 × 784 pixels sd ≈ 4e-5 nats/dim ≈ 5e-5 bits/dim; the tolerance is
/// 5e-4 bits/dim (10 sd).
#[test]
fn bits_per_dim_of_the_untrained_unet_is_the_prior_on_dequantised_pixels() {
    let dev = Device::Cpu;
    let fit = Fit::new(digits(64), tiny_config(1), &dev).unwrap();
    let d = 784;
    let n = 50;
    let held = &fit.held_out().data[..n * d];
    let delta = 2.0 / 255.0;
    let log_2pi = (2.0 * std::f64::consts::PI).ln();
    let exact_nats: f64 = held
        .iter()
        .map(|&x| {
            let x = f64::from(x);
            -0.5 * (x * x + x * delta + delta * delta / 3.0) - 0.5 * log_2pi
        })
        .sum::<f64>()
        / (n * d) as f64;
    let exact_bits = -(exact_nats + f64::ln(delta)) / std::f64::consts::LN_2;
    let opts = ElboOptions {
        dequantise_bin: fit.model.settings().dequantise_bin(),
    };
    assert_eq!(opts.dequantise_bin, Some(delta));
    let b = elbo(&fit.model, held, &opts, &mut StdRng::seed_from_u64(2)).unwrap();
    let bits = b.bits_per_dim.unwrap();
    eprintln!("bits/dim {bits:.6}, analytic {exact_bits:.6}");
    assert!((bits - exact_bits).abs() < 5e-4, "{bits} vs {exact_bits}");
    assert!((b.nats_per_dim - exact_nats).abs() < 5e-4);
}

/// `dsb fit --data mnist --data-dir <fixture>` with a tiny UNet writes the model, a 64-image
/// grid (8 × 8 images of 28 + 2 pixels, plus 2: 242 × 242) and bits/dim in summary.json;
/// `dsb generate` writes a grid of the asked size and a CSV of flattened pixels.
#[test]
fn cli_fits_mnist_with_the_unet_and_generates_a_grid() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let fixture = common::mnist_fixture();
    let mut args = vec![
        "fit",
        "--data",
        "mnist",
        "--data-dir",
        fixture.to_str().unwrap(),
        "--n-data",
        "64",
    ];
    args.extend(common::TINY_UNET_FLAGS);
    args.extend([
        "--iters",
        "6",
        "--batch",
        "8",
        "--eval-samples",
        "64",
        "--quiet",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_ok(&dsb(&args));
    let png_size = |p: &std::path::Path| {
        let bytes = std::fs::read(p).unwrap();
        assert_eq!(&bytes[1..4], b"PNG");
        let be = |i: usize| u32::from_be_bytes(bytes[i..i + 4].try_into().unwrap());
        (be(16), be(20))
    };
    assert_eq!(png_size(&out.join("samples.png")), (242, 242));
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert!(summary["bits_per_dim"].as_f64().is_some_and(|b| b > 0.0));
    assert_eq!(summary["n_train"], 64);
    assert_eq!(summary["model"]["network"]["kind"], "unet");

    let grid = tmp.path().join("grid.png");
    let model = out.to_str().unwrap();
    let g = ["generate", "--model", model, "--n", "10", "--out"];
    assert_ok(&dsb(&[&g[..], &[grid.to_str().unwrap()]].concat()));
    // 10 images: 4 columns, 3 rows.
    assert_eq!(png_size(&grid), (4 * 30 + 2, 3 * 30 + 2));
    let csv = tmp.path().join("px.csv");
    assert_ok(&dsb(&[&g[..], &[csv.to_str().unwrap()]].concat()));
    let text = std::fs::read_to_string(&csv).unwrap();
    assert_eq!(text.lines().count(), 11);
    assert_eq!(text.lines().nth(1).unwrap().split(',').count(), 784);
}

/// UNet flags on points, and image sizes the UNet's levels cannot halve, are clear errors.
#[test]
fn cli_refuses_unet_flags_on_points_and_bad_levels_for_the_image_size() {
    let o = dsb(&["fit", "--data", "two-moons", "--unet-width", "8", "--quiet"]);
    assert_clear_error(&o, "for image data");
    let fixture = common::mnist_fixture();
    let o = dsb(&[
        "fit",
        "--data",
        "mnist",
        "--data-dir",
        fixture.to_str().unwrap(),
        "--unet-levels",
        "4",
        "--quiet",
    ]);
    assert_clear_error(&o, "divisible by 2^3");
    assert_clear_error(&o, "28×28 images allow at most 3 level(s)");
    let o = dsb(&[
        "fit",
        "--data",
        "mnist",
        "--data-dir",
        fixture.to_str().unwrap(),
        "--mlp",
        "--unet-width",
        "8",
    ]);
    assert_clear_error(&o, "cannot be used with");
}

/// `dsb fit --mlp` fits digits of a class subset with the MLP on the flattened pixels and
/// writes an image grid.
#[test]
fn cli_fits_a_class_subset_with_the_mlp() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("ones");
    let fixture = common::mnist_fixture();
    let o = dsb(&[
        "fit",
        "--data",
        "mnist:1",
        "--data-dir",
        fixture.to_str().unwrap(),
        "--mlp",
        "--width",
        "32",
        "--depth",
        "1",
        "--steps",
        "5",
        "--iters",
        "20",
        "--eval-samples",
        "16",
        "--json",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_ok(&o);
    let s: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(s["model"]["network"]["kind"], "mlp");
    assert_eq!(s["model"]["example_shape"], serde_json::json!([1, 28, 28]));
    // The fixture's ones, 10 % held out.
    let n = s["n_train"].as_u64().unwrap() + s["n_held_out"].as_u64().unwrap();
    assert!((400..700).contains(&n), "{n} ones");
    assert!(out.join("samples.png").exists());
}

/// IPF on images: iteration 0 and one refinement (a forward UNet, then the backward one, on
/// cached paths) of the tiny UNet, run whole and run stopped after 5 of its 9 gradient steps
/// then resumed. The resumed run ends with the same model file, byte for byte (every draw is a
/// function of the seed and the step), both rows report finite bits/dim, and the saved model
/// holds the forward network.
#[test]
fn ipf_refinement_on_images_resumes_exactly() {
    let dev = Device::Cpu;
    let tmp = tempfile::tempdir().unwrap();
    let config = FitConfig {
        ipf_iters: 1,
        cache: 16,
        refresh: 2,
        ..tiny_config(3)
    };
    let run = |dir: &std::path::Path, stop_after: Option<usize>| {
        let mut fit = Fit::new(digits(32), config.clone(), &dev).unwrap();
        let opts = RunOptions {
            dir: Some(dir.to_path_buf()),
            stop_after,
            ..Default::default()
        };
        fit.run(&opts, |_| {}).unwrap()
    };
    let (whole, part) = (tmp.path().join("whole"), tmp.path().join("part"));
    assert!(run(&whole, None));
    assert!(!run(&part, Some(5)));
    let mut resumed = Fit::resume(&part, None, &dev).unwrap();
    assert_eq!(resumed.progress().global_step, 5);
    assert!(
        resumed
            .run(
                &RunOptions {
                    dir: Some(part.clone()),
                    ..Default::default()
                },
                |_| {}
            )
            .unwrap()
    );
    let rows = &resumed.progress().rows;
    assert_eq!(rows.len(), 2);
    assert!(
        rows.iter()
            .all(|r| r.elbo.bits_per_dim.is_some_and(f64::is_finite))
    );
    assert!(rows[1].forward_loss.is_some_and(f64::is_finite));
    let read = |d: &std::path::Path| std::fs::read(d.join("model.safetensors")).unwrap();
    assert!(read(&whole) == read(&part), "resumed weights differ");
    let (model, saved) = load_model(&part, &dev).unwrap();
    assert!(saved.has_forward && model.has_forward());
    assert_eq!(saved.backward_iteration, 1);
}
