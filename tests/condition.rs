//! `dsb condition` end to end: a points model conditioned on an observed coordinate, an image
//! model inpainted and denoised, and bad input refused before any work. (The particle filter's
//! statistics are tested against closed forms in the library: `condition::tests`.)

mod common;

use common::{TINY_UNET_FLAGS, assert_clear_error, assert_ok, dsb, mnist_fixture};

fn json(o: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap()
}

/// A two-moons model conditioned on x1 = 0.3 with noise sd 0.05: the weighted mean of x1 is
/// within 0.05 of 0.3 (under any model whose x1 spread is ~1 the posterior mean moves less than
/// 0.01 from the observation, and its s.e. at 500 particles is ~0.003), and the files are
/// written; bad input names its flag.
#[test]
fn points_model_conditioned_on_a_coordinate() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("moons");
    let m = model.to_str().unwrap();
    assert_ok(&dsb(&[
        "fit",
        "--data",
        "two-moons",
        "--n-data",
        "500",
        "--steps",
        "10",
        "--width",
        "16",
        "--depth",
        "1",
        "--iters",
        "50",
        "--eval-samples",
        "100",
        "--quiet",
        "--out",
        m,
    ]));
    let o = dsb(&[
        "condition",
        "--model",
        m,
        "--observe",
        "x1=0.3",
        "--noise-sd",
        "0.05",
        "--particles",
        "500",
        "--json",
    ]);
    assert_ok(&o);
    let s = json(&o);
    let x1 = s["weighted_mean"][0].as_f64().unwrap();
    assert!((x1 - 0.3).abs() < 0.05, "weighted mean of x1 {x1}");
    assert!(s["ess"].as_f64().unwrap() > 0.1, "{s}");
    let out = model.join("condition");
    let csv = std::fs::read_to_string(out.join("samples.csv")).unwrap();
    assert_eq!(csv.lines().next().unwrap(), "x1,x2,log_weight");
    assert_eq!(csv.lines().count(), 501);
    assert!(out.join("samples.png").exists() && out.join("summary.json").exists());

    let run = |extra: &[&str]| {
        let mut args = vec!["condition", "--model", m];
        args.extend(extra);
        dsb(&args)
    };
    assert_clear_error(&run(&[]), "give the observed coordinates: --observe");
    assert_clear_error(&run(&["--observe", "x3=1"]), "no coordinate 'x3'");
    assert_clear_error(&run(&["--observe", "x1"]), "write NAME=VALUE");
    assert_clear_error(
        &run(&["--observe", "x1=1", "--noise-sd", "0"]),
        "--noise-sd must be positive",
    );
    assert_clear_error(
        &run(&["--observe", "x1=1", "--mask", "left"]),
        "for image models",
    );
    assert_clear_error(
        &run(&["--observe", "x1=1", "--particles", "1"]),
        "--particles must be at least 2",
    );
}

/// A tiny MNIST model (untrained in effect) inpainted from the left half and denoised: the
/// known pixels of the weighted mean are within the observation noise of the truth, the grid
/// is written, and the image flags are checked.
#[test]
fn image_model_inpaints_and_denoises() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("digits");
    let m = model.to_str().unwrap();
    let fixture = mnist_fixture();
    let f = fixture.to_str().unwrap();
    let mut args = vec!["fit", "--data", "mnist", "--data-dir", f, "--n-data", "64"];
    args.extend(TINY_UNET_FLAGS);
    args.extend([
        "--iters",
        "4",
        "--batch",
        "8",
        "--eval-samples",
        "16",
        "--quiet",
        "--out",
        m,
    ]);
    assert_ok(&dsb(&args));
    let o = dsb(&[
        "condition",
        "--model",
        m,
        "--truth",
        "1",
        "--mask",
        "left",
        "--json",
    ]);
    assert_ok(&o);
    let s = json(&o);
    let known = s["known_rmse"].as_f64().unwrap();
    assert!(known < 3.0 * 0.05, "known pixels' RMSE {known}");
    assert_eq!(s["observed"], 28 * 14);
    assert!(model.join("condition/grid.png").exists());
    let o = dsb(&[
        "condition",
        "--model",
        m,
        "--truth",
        "1",
        "--noisy",
        "--noise-sd",
        "0.3",
        "--json",
        "--out",
        tmp.path().join("den").to_str().unwrap(),
    ]);
    assert_ok(&o);
    assert_eq!(json(&o)["observed"], 784);
    assert_clear_error(
        &dsb(&["condition", "--model", m, "--truth", "1"]),
        "give one of --mask",
    );
    assert_clear_error(
        &dsb(&[
            "condition",
            "--model",
            m,
            "--truth",
            "100000",
            "--mask",
            "left",
        ]),
        "--truth 100000: the held-out set has",
    );
    assert_clear_error(
        &dsb(&["condition", "--model", m, "--mask", "diagonal"]),
        "--mask diagonal: use left",
    );
}
