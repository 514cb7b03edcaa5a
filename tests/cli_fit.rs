//! End-to-end runs of `dsb fit` and `dsb generate` with tiny settings: the files they write,
//! `--resume`, and clear errors for bad input.

mod common;

use common::{assert_clear_error, assert_ok, dsb, stderr};
use std::path::Path;
use std::process::Output;

/// Tiny settings: 6 steps, 20 gradient steps per half-step, a 300-point data set.
const TINY: &[&str] = &[
    "--n-data",
    "300",
    "--steps",
    "6",
    "--horizon",
    "1",
    "--iters",
    "20",
    "--batch",
    "32",
    "--width",
    "8",
    "--depth",
    "1",
    "--cache",
    "64",
    "--refresh",
    "7",
    "--eval-samples",
    "60",
    "--quiet",
];

fn fit(dir: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["fit", "--data", "two-moons", "--out", dir.to_str().unwrap()];
    args.extend_from_slice(TINY);
    args.extend_from_slice(extra);
    dsb(&args)
}

fn summary(dir: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.join("summary.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn fit_writes_model_samples_plot_and_summary_and_generate_reads_them() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    assert_ok(&fit(&dir, &["--ipf-iters", "1"]));
    for f in [
        "model.safetensors",
        "model.json",
        "samples.csv",
        "samples.png",
        "summary.json",
    ] {
        assert!(dir.join(f).is_file(), "{f} missing");
    }
    let s = summary(&dir);
    assert_eq!(s["ipf_iteration_reached"], 1);
    assert_eq!(s["gradient_steps"], 60);
    assert_eq!(s["rows"].as_array().unwrap().len(), 2);
    for key in ["mmd2", "energy"] {
        assert!(
            s["generated"][key].is_f64() && s["prior"][key].is_f64(),
            "{key}"
        );
    }
    assert!(s["elbo"]["nats_per_dim"].as_f64().unwrap().is_finite());
    assert!(s["steps_per_second"].as_f64().unwrap() > 0.0);
    let csv = std::fs::read_to_string(dir.join("samples.csv")).unwrap();
    assert_eq!(csv.lines().count(), 61, "header + 60 points");

    let model = dir.to_str().unwrap();
    let out = tmp.path().join("g.csv");
    assert_ok(&dsb(&[
        "generate",
        "--model",
        model,
        "--n",
        "64",
        "--out",
        out.to_str().unwrap(),
    ]));
    let text = std::fs::read_to_string(&out).unwrap();
    assert_eq!(text.lines().count(), 65);
    assert!(text.lines().skip(1).all(|l| l.split(',').count() == 2));
    let png = tmp.path().join("g.png");
    assert_ok(&dsb(&[
        "generate",
        "--model",
        model,
        "--out",
        png.to_str().unwrap(),
    ]));
    assert!(png.is_file());
    // An IPF-refined model refuses a coarser grid.
    let o = dsb(&[
        "generate",
        "--model",
        model,
        "--steps",
        "3",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_clear_error(&o, "refined by IPF");
}

#[test]
fn ddpm_model_generates_on_a_coarser_grid() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    assert_ok(&fit(&dir, &[]));
    let out = tmp.path().join("g.csv");
    let o = dsb(&[
        "generate",
        "--model",
        dir.to_str().unwrap(),
        "--steps",
        "3",
        "--n",
        "10",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_ok(&o);
    assert_eq!(std::fs::read_to_string(&out).unwrap().lines().count(), 11);
    let o = dsb(&[
        "generate",
        "--model",
        dir.to_str().unwrap(),
        "--steps",
        "7",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_clear_error(&o, "1 to 6 steps");
}

/// The `--loss-log` CSV: `(global_step, ipf, half, step, loss)` per row after the header,
/// each step's seconds checked positive.
fn loss_log(path: &Path) -> Vec<(usize, usize, String, usize, String)> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("global_step,ipf,half,step,loss,seconds"));
    lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            assert_eq!(f.len(), 6, "{l}");
            assert!(f[4].parse::<f64>().unwrap().is_finite(), "{l}");
            assert!(f[5].parse::<f64>().unwrap() > 0.0, "{l}");
            (
                f[0].parse().unwrap(),
                f[1].parse().unwrap(),
                f[2].to_string(),
                f[3].parse().unwrap(),
                f[4].to_string(),
            )
        })
        .collect()
}

/// A run stopped after 27 of its 60 gradient steps and resumed ends with the same model file,
/// byte for byte, as the uninterrupted run, and reports where it resumed. Its `--loss-log`,
/// appended to on resume, has the uninterrupted run's rows and losses.
#[test]
fn resume_continues_an_interrupted_run_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let (whole, part) = (tmp.path().join("whole"), tmp.path().join("part"));
    let (whole_log, part_log) = (tmp.path().join("whole.csv"), tmp.path().join("part.csv"));
    assert_ok(&fit(
        &whole,
        &[
            "--ipf-iters",
            "1",
            "--loss-log",
            whole_log.to_str().unwrap(),
        ],
    ));
    let o = fit(
        &part,
        &[
            "--ipf-iters",
            "1",
            "--stop-after",
            "27",
            "--checkpoint-every",
            "5",
            "--loss-log",
            part_log.to_str().unwrap(),
        ],
    );
    assert_ok(&o);
    assert!(String::from_utf8_lossy(&o.stdout).contains("--resume"));
    assert!(!part.join("summary.json").exists());
    assert_eq!(loss_log(&part_log).len(), 27);
    let o = dsb(&[
        "fit",
        "--resume",
        part.to_str().unwrap(),
        "--quiet",
        "--loss-log",
        part_log.to_str().unwrap(),
    ]);
    assert_ok(&o);
    let log = loss_log(&whole_log);
    assert_eq!(log.len(), 60);
    for (i, (global, ipf, half, step, _)) in log.iter().enumerate() {
        let expected = match i / 20 {
            0 => (0, "backward"),
            1 => (1, "forward"),
            _ => (1, "backward"),
        };
        assert_eq!(
            (*global, *ipf, half.as_str(), *step),
            (i, expected.0, expected.1, i % 20)
        );
    }
    assert_eq!(loss_log(&part_log), log, "resumed losses differ");
    let s = summary(&part);
    assert_eq!(s["resumed_at_step"], 27);
    assert_eq!(s["gradient_steps"], 60);
    let read = |d: &Path| std::fs::read(d.join("model.safetensors")).unwrap();
    assert!(read(&whole) == read(&part), "resumed weights differ");
    // The rows agree except for their timings.
    let rows = |v: &serde_json::Value| -> Vec<serde_json::Value> {
        let keys = [
            "iteration",
            "mmd2",
            "energy",
            "elbo",
            "backward_loss",
            "forward_loss",
        ];
        let rows = v["rows"].as_array().unwrap();
        rows.iter()
            .map(|r| keys.iter().map(|k| r[*k].clone()).collect())
            .collect()
    };
    assert_eq!(rows(&summary(&whole)), rows(&s));

    // A finished run continues with more IPF iterations.
    let o = dsb(&[
        "fit",
        "--resume",
        part.to_str().unwrap(),
        "--ipf-iters",
        "2",
        "--quiet",
    ]);
    assert_ok(&o);
    assert_eq!(summary(&part)["ipf_iteration_reached"], 2);

    // Other data of another dimension is refused.
    let csv = tmp.path().join("three.csv");
    let rows: String = (0..30)
        .map(|i| format!("{i},{},{}\n", i * i, (3 * i) % 7))
        .collect();
    std::fs::write(&csv, rows).unwrap();
    let o = dsb(&[
        "fit",
        "--resume",
        part.to_str().unwrap(),
        "--data",
        csv.to_str().unwrap(),
        "--quiet",
    ]);
    assert_clear_error(&o, "wrong data dimension");
    // Settings of the run cannot be changed on resume.
    let o = dsb(&["fit", "--resume", part.to_str().unwrap(), "--steps", "9"]);
    assert_clear_error(&o, "cannot be used with");
}

#[test]
fn bad_input_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("x");
    let d = dir.to_str().unwrap();
    let o = dsb(&["fit", "--data", "spiral", "--out", d]);
    assert_clear_error(&o, "unknown data set 'spiral'");
    assert!(stderr(&o).contains("swiss-roll"), "lists the valid names");
    for (flag, needle) in [
        ("--steps=0", "--steps"),
        ("--held-out=1.5", "held-out fraction"),
        ("--ema=1", "--ema"),
        ("--lr=-1", "--lr"),
        ("--eval-samples=1", "--eval-samples"),
        ("--horizon=0", "--horizon"),
    ] {
        let o = dsb(&["fit", "--data", "two-moons", "--out", d, flag]);
        assert_clear_error(&o, needle);
    }
    let o = dsb(&["fit", "--out", d]);
    assert_clear_error(&o, "--data");
    let missing = tmp.path().join("none");
    let o = dsb(&[
        "generate",
        "--model",
        missing.to_str().unwrap(),
        "--out",
        "a.csv",
    ]);
    assert_clear_error(&o, "no such directory");
    let o = dsb(&["fit", "--resume", missing.to_str().unwrap()]);
    assert_clear_error(&o, "no such directory");
    let o = dsb(&["generate", "--model", d, "--out", "a.txt"]);
    assert_clear_error(&o, ".csv or .png");

    // An image data set whose 3×3 images the default CPU UNet (2 levels) cannot halve.
    let images = tmp.path().join("images");
    std::fs::create_dir_all(&images).unwrap();
    let idx = dsb::data::encode_idx_images(20, 3, 3, &[0; 180]).unwrap();
    std::fs::write(images.join("train-images-idx3-ubyte"), idx).unwrap();
    let o = dsb(&["fit", "--data", images.to_str().unwrap(), "--out", d]);
    assert_clear_error(&o, "must be divisible by 2^1");
}
