//! Unit tests of the data fit: the bound, checkpoints and exact resumption.

use super::*;
use crate::data::Points;
use candle_core::Device;
use rand::SeedableRng;
use rand::rngs::StdRng;

fn spec(name: &str) -> DataSpec {
    DataSpec {
        name: name.into(),
        n: 400,
        seed: 3,
        held_out: 0.25,
        data_dir: None,
    }
}

fn tiny(ipf_iters: usize) -> FitConfig {
    FitConfig {
        steps: 6,
        horizon: 1.0,
        iters: 12,
        batch: 32,
        ipf_iters,
        network: NetworkSpec::Mlp { width: 8, depth: 1 },
        cache: 64,
        refresh: 5,
        eval_samples: 50,
        ..Default::default()
    }
}

/// A two-moons fit with `ipf_iters` IPF iterations run to its end, checkpointing into a
/// temporary directory (returned with it).
fn uninterrupted(ipf_iters: usize, dev: &Device) -> (tempfile::TempDir, Fit) {
    let dir = tempfile::tempdir().unwrap();
    let mut fit = Fit::new(spec("two-moons"), tiny(ipf_iters), dev).unwrap();
    let opts = RunOptions {
        dir: Some(dir.path().to_path_buf()),
        ..Default::default()
    };
    assert!(fit.run(&opts, |_| {}).unwrap());
    (dir, fit)
}

/// A fit's weights by name, flattened, for exact comparisons.
fn weights(f: &Fit) -> Vec<(String, Vec<f32>)> {
    let mut v: Vec<(String, Vec<f32>)> = f
        .model
        .weights()
        .unwrap()
        .into_iter()
        .map(|(k, t)| (k, t.flatten_all().unwrap().to_vec1::<f32>().unwrap()))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// An untrained model is the exact reversal of the OU reference started at its stationary law
/// N(mean, diag(scale²)), so each path's bound equals log q(x_0) of that Gaussian exactly: the
/// estimate has no path noise and must match the closed form (this checks every term, the
/// cancelling kernel normalisers and the standardisation's Jacobian).
#[test]
fn bound_of_the_untrained_model_is_the_prior_density() {
    let data = Points::new(vec![1.0, 10.0, 3.0, 30.0, 5.0, 20.0, 2.0, 25.0], 4, 2).unwrap();
    let fit =
        Fit::with_points(spec("x"), data.clone(), data.clone(), tiny(0), &Device::Cpu).unwrap();
    let norm = &fit.model.settings().normalisation;
    let exact: Vec<f64> = (0..4)
        .map(|i| {
            (0..2)
                .map(|j| {
                    let z = (f64::from(data.data[2 * i + j]) - norm.mean[j]) / norm.scale[j];
                    -0.5 * z * z - 0.5 * (2.0 * std::f64::consts::PI).ln() - norm.scale[j].ln()
                })
                .sum::<f64>()
        })
        .collect();
    let mean = exact.iter().sum::<f64>() / 4.0;
    let mut rng = StdRng::seed_from_u64(1);
    let b = elbo(&fit.model, &data.data, &ElboOptions::default(), &mut rng).unwrap();
    assert!((b.nats - mean).abs() < 1e-4, "{} vs {mean}", b.nats);
    assert!((b.nats_per_dim - mean / 2.0).abs() < 1e-4);
    // The same continuous-time model on a grid of 7 × 6 steps is the exact reversal too, so its
    // bound is the same: the finer kernels, decays and times are consistent.
    let f = elbo_subdivided(&fit.model, 7, &data.data, &ElboOptions::default(), &mut rng).unwrap();
    assert!((f.nats - mean).abs() < 1e-4, "{} vs {mean}", f.nats);
    let q = elbo(
        &fit.model,
        &data.data,
        &ElboOptions {
            dequantise_bin: Some(0.01),
        },
        &mut rng,
    )
    .unwrap();
    assert!(q.bits_per_dim.is_some_and(|v| v.is_finite()));
}

/// A run stopped after 17 gradient steps (inside the forward half-step of IPF iteration 1, with
/// its cache mid-refresh) and resumed from its checkpoint ends with the same weights, to the
/// bit, as the uninterrupted run; so do its rows. A fresh `load_model` of the finished run
/// samples exactly like the model in memory.
#[test]
fn resumed_run_matches_the_uninterrupted_one_and_checkpoints_round_trip() {
    let dev = Device::Cpu;
    let (whole_dir, whole) = uninterrupted(1, &dev);

    let dir = tempfile::tempdir().unwrap();
    let mut part = Fit::new(spec("two-moons"), tiny(1), &dev).unwrap();
    let stop = RunOptions {
        dir: Some(dir.path().to_path_buf()),
        checkpoint_every: 4,
        stop_after: Some(17),
    };
    assert!(!part.run(&stop, |_| {}).unwrap());
    assert_eq!(part.progress().global_step, 17);
    drop(part);
    let mut resumed = Fit::resume(dir.path(), None, &dev).unwrap();
    assert_eq!(resumed.progress().global_step, 17);
    let rest = RunOptions {
        stop_after: None,
        ..stop
    };
    assert!(resumed.run(&rest, |_| {}).unwrap());
    assert_eq!(resumed.progress().global_step, 36);

    assert_eq!(weights(&whole), weights(&resumed));
    assert_eq!(whole.progress().rows.len(), 2);
    for (a, b) in whole.progress().rows.iter().zip(&resumed.progress().rows) {
        assert_eq!((a.mmd2, a.elbo.nats), (b.mmd2, b.elbo.nats));
    }

    let (loaded, saved) = load_model(whole_dir.path(), &dev).unwrap();
    assert_eq!(saved.ipf_iteration_reached, Some(1));
    assert_eq!(saved.progress.global_step, 36);
    assert_eq!(loaded.backward_iteration(), 1);
    let g = |m: &FitModel| {
        let mut rng = StdRng::seed_from_u64(9);
        m.generate(20, &GenerateOptions::default(), &mut rng)
            .unwrap()
            .data
    };
    assert_eq!(g(&whole.model), g(&loaded));
    // A refined model refuses a coarser grid; a DDPM-style one would take it.
    let coarse = GenerateOptions {
        steps: Some(3),
        ..Default::default()
    };
    let e = loaded
        .generate(5, &coarse, &mut StdRng::seed_from_u64(0))
        .unwrap_err();
    assert!(e.to_string().contains("refined by IPF"), "{e}");
}

#[test]
fn resume_with_data_of_another_dimension_is_a_clear_error() {
    let dev = Device::Cpu;
    let dir = tempfile::tempdir().unwrap();
    let mut fit = Fit::new(spec("two-moons"), tiny(0), &dev).unwrap();
    let opts = RunOptions {
        dir: Some(dir.path().to_path_buf()),
        stop_after: Some(3),
        ..Default::default()
    };
    fit.run(&opts, |_| {}).unwrap();
    let csv = dir.path().join("three.csv");
    let rows: String = (0..20)
        .map(|i| format!("{},{},{}\n", i, i * i, 3 * i % 7))
        .collect();
    std::fs::write(&csv, rows).unwrap();
    let other = DataSpec {
        name: csv.display().to_string(),
        ..spec("")
    };
    let e = Fit::resume(dir.path(), Some(other), &dev).unwrap_err();
    assert!(e.to_string().contains("wrong data dimension"), "{e}");
}

/// The weights are checkpointed when training ends, before the evaluation: a run interrupted
/// during its evaluation resumes with no gradient step left, only evaluates, and ends as the
/// uninterrupted run.
#[test]
fn a_run_interrupted_during_its_evaluation_resumes_without_retraining() {
    let dev = Device::Cpu;
    let (_whole_dir, whole) = uninterrupted(0, &dev);

    let dir = tempfile::tempdir().unwrap();
    let opts = RunOptions {
        dir: Some(dir.path().to_path_buf()),
        ..Default::default()
    };
    let mut part = Fit::new(spec("two-moons"), tiny(0), &dev).unwrap();
    let interrupted = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        part.run(&opts, |e| {
            if matches!(e, FitEvent::Evaluating { .. }) {
                panic!("interrupted during the evaluation");
            }
        })
    }));
    assert!(interrupted.is_err());
    drop(part);
    let mut resumed = Fit::resume(dir.path(), None, &dev).unwrap();
    assert_eq!(
        resumed.progress().global_step,
        12,
        "training was checkpointed"
    );
    let mut steps = 0;
    assert!(
        resumed
            .run(&opts, |e| {
                if matches!(e, FitEvent::Step { .. }) {
                    steps += 1;
                }
            })
            .unwrap()
    );
    assert_eq!(steps, 0, "nothing is retrained");
    assert_eq!(weights(&whole), weights(&resumed));
    let (a, b) = (&whole.progress().rows[0], &resumed.progress().rows[0]);
    assert_eq!((a.mmd2, a.elbo.nats), (b.mmd2, b.elbo.nats));
}
