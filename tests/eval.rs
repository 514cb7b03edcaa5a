//! Evaluation: the digit classifier behind the Fréchet distance, the distance's ability to tell
//! real digits from collapsed or noise images, and `dsb eval` / `dsb train-classifier` end to end.

mod common;

use candle_core::Device;
use common::{assert_clear_error, assert_ok, dsb};
use dsb::data::ImageDataset;
use dsb::eval::{Classifier, ClassifierConfig, FeatureStats, frechet_distance, train_classifier};
use dsb::fit::{DataSpec, Fit, FitConfig, RunOptions};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::index;

/// `n` training digits and 10% of the fixture (500 digits) held out.
fn digits(n: usize) -> DataSpec {
    common::mnist_digits(n, 0.1)
}

fn stats(net: &Classifier, images: &ImageDataset, idx: &[usize]) -> FeatureStats {
    let pixels: Vec<f32> = idx
        .iter()
        .flat_map(|&i| images.image(i).unwrap().iter().copied())
        .collect();
    let f = net.features_of(&pixels, idx.len(), &Device::Cpu).unwrap();
    FeatureStats::from_rows(&f, idx.len(), net.config().features).unwrap()
}

/// Three epochs over 1,500 digits (72 steps). Chance is 10% and a classifier that learned
/// nothing scores about that; measured 0.90 held-out accuracy. On 500 held-out digits the accuracy's sd is
/// √(0.9·0.1/500) = 0.013 (at most 0.022), so the bound 0.8 sits over 4.5 sd under the measured
/// value and 30 sd over chance. Training twice gives the same features bit for bit (seeded weights and order).
///
/// The distance must rank what a user cares about: 120 random training digits against 200
/// held-out digits (same law: only the O(dim/n) bias) must be under half the distance of 200
/// 120 training digits of one class (a collapsed generator), and that under the distance of
/// binary noise. Measured: real 32, collapsed 995, noise 2,301 (the ratios hold with wide
/// margins; each distance's spread over subsets is a few percent).
#[test]
fn classifier_learns_digits_and_the_distance_separates_real_collapsed_and_noise() {
    let dev = Device::Cpu;
    let (train, held) = digits(1500).load_images().unwrap();
    assert_eq!((train.n, held.n), (1500, 500));
    let config = ClassifierConfig {
        epochs: 3,
        ..ClassifierConfig::default()
    };
    let mut losses = Vec::new();
    let (net, report) =
        train_classifier(config.clone(), &train, &held, "mnist", &dev, |_, _, l| {
            losses.push(l)
        })
        .unwrap();
    eprintln!(
        "accuracy {:.4}, loss {:.3} → {:.3}",
        report.held_out_accuracy,
        losses[0],
        losses.last().unwrap()
    );
    assert_eq!(losses.len(), 3 * 1500usize.div_ceil(64));
    assert!(report.held_out_accuracy > 0.8, "{report:?}");

    let (again, _) = train_classifier(config, &train, &held, "mnist", &dev, |_, _, _| {}).unwrap();
    let some: Vec<usize> = (0..8).collect();
    let (a, b) = (stats(&net, &held, &some), stats(&again, &held, &some));
    assert_eq!(a.mean.as_slice(), b.mean.as_slice());

    // Random subsets: the fixture is sorted by class.
    let mut rng = StdRng::seed_from_u64(9);
    let mut pick = |n: usize, of: usize| index::sample(&mut rng, of, n).into_vec();
    let reference = stats(&net, &held, &pick(200, held.n));
    let labels = train.labels.as_ref().unwrap();
    let real = stats(&net, &train, &pick(120, train.n));
    let ones: Vec<usize> = (0..train.n).filter(|&i| labels[i] == 1).take(120).collect();
    assert_eq!(ones.len(), 120);
    let collapsed = stats(&net, &train, &ones);
    let noise_pixels: Vec<f32> = (0..120 * 784)
        .map(|i| if (i * 7919) % 13 < 6 { 1.0 } else { -1.0 })
        .collect();
    let noise = FeatureStats::from_rows(
        &net.features_of(&noise_pixels, 120, &dev).unwrap(),
        120,
        net.config().features,
    )
    .unwrap();
    let fd = |s: &FeatureStats| frechet_distance(s, &reference).unwrap();
    let (d_real, d_collapsed, d_noise) = (fd(&real), fd(&collapsed), fd(&noise));
    eprintln!("FD real {d_real:.1}, one class {d_collapsed:.1}, noise {d_noise:.1}");
    assert!(d_real < 0.5 * d_collapsed, "{d_real} vs {d_collapsed}");
    assert!(d_collapsed < d_noise, "{d_collapsed} vs {d_noise}");
}

/// A saved classifier reloads with the same features; a missing or foreign directory is a
/// clear error.
#[test]
fn classifier_saves_and_reloads() {
    let dev = Device::Cpu;
    let (train, held) = digits(200).load_images().unwrap();
    let config = ClassifierConfig {
        epochs: 1,
        ..ClassifierConfig::default()
    };
    let (net, report) =
        train_classifier(config, &train, &held, "mnist", &dev, |_, _, _| {}).unwrap();
    let dir = tempfile::tempdir().unwrap();
    net.save(dir.path(), &report).unwrap();
    let (back, saved) = Classifier::load(dir.path(), &dev).unwrap();
    assert_eq!(saved.report, report);
    let idx: Vec<usize> = (0..5).collect();
    assert_eq!(
        stats(&net, &held, &idx).mean.as_slice(),
        stats(&back, &held, &idx).mean.as_slice()
    );
    let err = Classifier::load(&dir.path().join("nowhere"), &dev).unwrap_err();
    assert!(err.to_string().contains("classifier.json"), "{err}");
}

/// A tiny UNet fitted to 64 digits, then `dsb train-classifier` and `dsb eval` on it: eval.json
/// holds the three distances (the noise ceiling above the real floor), the class histogram and
/// bits/dim. A points model reports MMD²; bad input is refused clearly.
#[test]
fn cli_trains_the_classifier_and_evaluates_image_and_point_models() {
    let dev = Device::Cpu;
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let config = FitConfig {
        steps: 4,
        horizon: 3.0,
        iters: 4,
        batch: 8,
        network: common::tiny_unet(),
        eval_samples: 8,
        ..Default::default()
    };
    let opts = RunOptions {
        dir: Some(run.clone()),
        ..Default::default()
    };
    let mut fit = Fit::new(digits(64), config, &dev).unwrap();
    assert!(fit.run(&opts, |_| {}).unwrap());

    let clf = tmp.path().join("clf");
    let fixture = common::mnist_fixture();
    assert_ok(&dsb(&[
        "train-classifier",
        "--data",
        "mnist",
        "--data-dir",
        fixture.to_str().unwrap(),
        "--epochs",
        "1",
        "--quiet",
        "--out",
        clf.to_str().unwrap(),
    ]));
    assert!(clf.join("classifier.safetensors").exists());
    let o = dsb(&[
        "eval",
        "--model",
        run.to_str().unwrap(),
        "--classifier",
        clf.to_str().unwrap(),
        "--n",
        "20",
        "--json",
    ]);
    assert_ok(&o);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("eval.json")).unwrap()).unwrap();
    assert_eq!(v["eval"], saved["eval"]);
    let e = &v["eval"];
    assert_eq!(
        (e["generated"].as_u64(), e["held_out"].as_u64()),
        (Some(20), Some(20))
    );
    let fd = |k: &str| e[k].as_f64().unwrap();
    assert!(fd("fd_generated").is_finite() && fd("fd_real") < fd("fd_noise"));
    assert_eq!(e["class_histogram"].as_array().unwrap().len(), 10);
    assert!(e["bound"]["bits_per_dim"].as_f64().is_some_and(|b| b > 0.0));
    assert!(v["classifier_held_out_accuracy"].as_f64().unwrap() > 0.5);

    // Points: a tiny two-moons fit evaluated by MMD².
    let moons = tmp.path().join("moons");
    assert_ok(&dsb(&[
        "fit",
        "--data",
        "two-moons",
        "--n-data",
        "300",
        "--steps",
        "5",
        "--iters",
        "10",
        "--batch",
        "32",
        "--width",
        "16",
        "--depth",
        "1",
        "--eval-samples",
        "50",
        "--quiet",
        "--out",
        moons.to_str().unwrap(),
    ]));
    let o = dsb(&[
        "eval",
        "--model",
        moons.to_str().unwrap(),
        "--n",
        "50",
        "--json",
    ]);
    assert_ok(&o);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["kind"], "points");
    assert!(v["mmd2"].as_f64().unwrap().is_finite());
    // The bound on the finer grid and the entropy bounds of every step, with their plot.
    let steps = v["entropy_bounds"].as_array().unwrap().len();
    assert!(steps > 0);
    assert_eq!(v["bound_fine"]["steps"], (1000 / steps) * steps);
    assert!(
        v["bound_fine"]["bound"]["nats_per_dim"]
            .as_f64()
            .unwrap()
            .is_finite()
    );
    assert!(moons.join("entropy.png").exists());
    assert_clear_error(
        &dsb(&[
            "eval",
            "--model",
            run.to_str().unwrap(),
            "--fine-steps",
            "500",
        ]),
        "--fine-steps: the bound on a finer grid is for models of points only",
    );

    let missing = tmp.path().join("missing");
    assert_clear_error(
        &dsb(&["eval", "--model", missing.to_str().unwrap()]),
        "cannot load the model",
    );
    assert_clear_error(
        &dsb(&["eval", "--model", run.to_str().unwrap(), "--n", "1"]),
        "--n must be at least 2",
    );
    assert_clear_error(
        &dsb(&[
            "train-classifier",
            "--data",
            "two-moons",
            "--out",
            tmp.path().join("x").to_str().unwrap(),
        ]),
        "holds points, not images",
    );
}
