//! Never a silent wrong answer (issue 14): divergence, damaged or mismatched saved samplers,
//! degenerate sample sets, the ESS floor, the lock of `dsb fit`, and messages that name the fix.
//! Every run here is tiny (seconds).

mod common;

use common::{assert_ok, dsb, stderr};
use std::collections::HashMap;
use std::path::Path;
use std::process::Output;

/// A failure with exit code 2, no panic, and every one of `needles` in the message.
fn assert_exit2(o: &Output, needles: &[&str]) {
    let err = stderr(o);
    assert_eq!(
        o.status.code(),
        Some(2),
        "expected exit code 2; stderr: {err}"
    );
    assert!(!err.contains("panicked"), "panicked: {err}");
    for n in needles {
        assert!(err.contains(n), "stderr lacks '{n}': {err}");
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A tiny 8-D Gaussian sampler saved as `dir/g8.safetensors` (+ `g8.json`).
fn save_g8(dir: &Path) -> std::path::PathBuf {
    let p = dir.join("g8.safetensors");
    let o = dsb(&[
        "sample",
        "--method",
        "dsb",
        "--target",
        "gaussian",
        "--dim",
        "8",
        "--iters",
        "3",
        "--steps",
        "4",
        "--width",
        "8",
        "--n",
        "20",
        "-q",
        "--save",
        p.to_str().unwrap(),
    ]);
    assert_ok(&o);
    p
}

/// Tiny settings of `dsb fit` on two-moons.
const TINY_FIT: &[&str] = &[
    "--n-data",
    "200",
    "--steps",
    "4",
    "--horizon",
    "1",
    "--iters",
    "10",
    "--batch",
    "16",
    "--width",
    "8",
    "--depth",
    "1",
    "--cache",
    "16",
    "--eval-samples",
    "20",
    "--quiet",
];

fn fit(data: &str, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["fit", "--data", data, "--out", out.to_str().unwrap()];
    args.extend_from_slice(TINY_FIT);
    args.extend_from_slice(extra);
    dsb(&args)
}

#[test]
fn exploding_sample_training_stops_with_advice_naming_its_flags() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("s.csv");
    let o = dsb(&[
        "sample",
        "--method",
        "dsb",
        "--target",
        "gaussian",
        "--lr",
        "1e9",
        "--iters",
        "60",
        "-q",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_exit2(&o, &["training diverged", "--lr", "--grad-clip", "--iters"]);
    assert!(!stdout(&o).contains("log Z-hat"), "no estimate is printed");
    assert!(!out.exists(), "no output from a diverged run");
}

#[test]
fn fit_divergence_advice_names_only_fit_flags() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let o = fit("two-moons", &out, &["--lr", "1e9", "--first-iters", "60"]);
    assert_exit2(&o, &["training diverged", "--lr", "--grad-clip"]);
    assert!(!stderr(&o).contains("--sigma"), "fit has no --sigma");
    assert!(
        !out.exists(),
        "the lock, and the directory created for the run, are removed on error"
    );
}

#[test]
fn a_sample_set_without_a_finite_weight_is_an_error_not_minus_infinity() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("s.csv");
    let o = dsb(&[
        "sample",
        "--method",
        "dsb",
        "--target",
        "gaussian",
        "--sigma",
        "1e200",
        "--iters",
        "2",
        "--steps",
        "2",
        "--batch",
        "4",
        "--n",
        "10",
        "-q",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_exit2(&o, &["non-finite log weight", "no estimate"]);
    assert!(!stdout(&o).contains("-inf"));
    assert!(!out.exists());
}

#[test]
fn iters_zero_is_refused() {
    let o = dsb(&[
        "sample", "--method", "dsb", "--target", "gaussian", "--iters", "0",
    ]);
    assert_exit2(&o, &["--iters must be at least 1"]);
}

#[test]
fn saved_samplers_with_nan_weights_or_edited_settings_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = save_g8(dir.path());
    let json = std::fs::read_to_string(p.with_extension("json")).unwrap();

    // A NaN weight: named with its file.
    let mut values: HashMap<String, candle_core::Tensor> =
        candle_core::safetensors::load(&p, &candle_core::Device::Cpu).unwrap();
    let name = values
        .iter()
        .find(|(_, t)| t.dtype() == candle_core::DType::F32)
        .map(|(n, _)| n.clone())
        .unwrap();
    let t = &values[&name];
    let nan = (t.ones_like().unwrap() * f64::NAN).unwrap();
    values.insert(name.clone(), nan);
    let bad = dir.path().join("nan.safetensors");
    candle_core::safetensors::save(&values, &bad).unwrap();
    std::fs::write(bad.with_extension("json"), &json).unwrap();
    let o = dsb(&[
        "sample",
        "--target",
        "gaussian",
        "--dim",
        "8",
        "--load",
        bad.to_str().unwrap(),
    ]);
    assert_exit2(&o, &["nan.safetensors", "non-finite values", &name]);

    // An edited `steps`: no weight's shape shows it, the copy inside the weights does.
    let edited = dir.path().join("edited.safetensors");
    std::fs::copy(&p, &edited).unwrap();
    std::fs::write(
        edited.with_extension("json"),
        json.replace("\"steps\": 4", "\"steps\": 16"),
    )
    .unwrap();
    let o = dsb(&[
        "sample",
        "--target",
        "gaussian",
        "--dim",
        "8",
        "--load",
        edited.to_str().unwrap(),
    ]);
    assert_exit2(
        &o,
        &[
            "edited.json",
            "disagrees",
            "steps: 16 here, 4 in the weights",
        ],
    );

    // The intact one loads.
    let o = dsb(&[
        "sample",
        "--target",
        "gaussian",
        "--dim",
        "8",
        "--load",
        p.to_str().unwrap(),
        "--n",
        "20",
        "-q",
    ]);
    assert_ok(&o);
}

#[test]
fn loading_with_the_wrong_dim_says_which_dim() {
    let dir = tempfile::tempdir().unwrap();
    let p = save_g8(dir.path());
    let o = dsb(&[
        "sample",
        "--target",
        "gaussian",
        "--dim",
        "5",
        "--load",
        p.to_str().unwrap(),
    ]);
    assert_exit2(&o, &["8-D", "use --dim 8"]);
    assert!(!stderr(&o).contains("--target"), "{}", stderr(&o));
    let o = dsb(&["sample", "--target", "gmm", "--load", p.to_str().unwrap()]);
    assert_exit2(&o, &["use --target gaussian --dim 8"]);
}

#[test]
fn ess_below_the_floor_is_flagged_in_text_and_json() {
    let args = [
        "sample", "--method", "dsb", "--target", "gaussian", "--iters", "3", "--steps", "4",
        "--width", "8", "--n", "50", "-q",
    ];
    let o = dsb(&args);
    assert_ok(&o);
    let text = stdout(&o);
    assert!(text.contains("not trustworthy"), "{text}");
    let mut json_args = args.to_vec();
    json_args.push("--json");
    let o = dsb(&json_args);
    assert_ok(&o);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["ess_below_floor"], true);
    assert!(
        v["warning"]
            .as_str()
            .unwrap()
            .contains("below the floor of 100")
    );
    assert!(stderr(&o).contains("warning"), "also on stderr with --json");
}

#[test]
fn summaries_print_kebab_case_names() {
    let o = dsb(&[
        "sample", "--method", "dsb", "--target", "gaussian", "--iters", "3", "--steps", "4",
        "--width", "8", "--n", "50", "-q",
    ]);
    assert_ok(&o);
    let text = stdout(&o);
    assert!(text.contains("loss log-var"), "{text}");
    assert!(text.contains("geometric schedule") || text.contains("cosine schedule"));
    assert!(
        !text.contains("LogVariance") && !text.contains("Geometric"),
        "{text}"
    );
    let o = dsb(&[
        "sample",
        "--target",
        "gaussian",
        "--method",
        "smc",
        "--particles",
        "64",
        "--moves",
        "2",
        "--n",
        "64",
        "-q",
    ]);
    assert_ok(&o);
    let text = stdout(&o);
    assert!(
        text.contains("method       smc, 64 particles, hmc x 2"),
        "{text}"
    );
    assert!(!text.contains("Smc") && !text.contains("Hmc"), "{text}");
}

#[test]
fn negative_numbers_reach_our_own_validation() {
    let o = dsb(&["sample", "--target", "gaussian", "--sigma", "-1"]);
    assert_exit2(&o, &["--sigma must be positive"]);
    let o = dsb(&["sample", "--target", "gaussian", "--lr", "-1"]);
    assert_exit2(&o, &["--lr and --grad-clip must be positive"]);
    let o = dsb(&["fit", "--data", "two-moons", "--horizon", "-2"]);
    assert_exit2(&o, &["--horizon must be positive"]);
}

#[test]
fn a_second_fit_into_a_locked_directory_refuses_and_a_stale_lock_is_taken_over() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    std::fs::create_dir_all(&out).unwrap();
    let lock = out.join(".lock");
    // Held by a live process: this test's.
    std::fs::write(&lock, format!("{}\n", std::process::id())).unwrap();
    let o = fit("two-moons", &out, &[]);
    assert_exit2(&o, &["in use by another dsb fit", ".lock"]);
    assert!(lock.exists(), "another process's lock is left alone");
    assert!(!out.join("model.safetensors").exists());
    // Left by a process that is gone.
    std::fs::write(&lock, format!("{}\n", u32::MAX)).unwrap();
    assert_ok(&fit("two-moons", &out, &[]));
    assert!(out.join("model.safetensors").exists());
    assert!(!lock.exists(), "the lock is removed when the run ends");
}

#[test]
fn resuming_a_finished_run_says_there_is_nothing_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    assert_ok(&fit("two-moons", &out, &[]));
    let before = std::fs::metadata(out.join("summary.json"))
        .unwrap()
        .modified()
        .unwrap();
    let o = dsb(&["fit", "--resume", out.to_str().unwrap(), "--quiet"]);
    assert_ok(&o);
    assert!(stdout(&o).contains("nothing to do"), "{}", stdout(&o));
    let after = std::fs::metadata(out.join("summary.json"))
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(before, after, "the outputs are left as they are");
}

#[test]
fn a_one_dimensional_fit_does_not_claim_a_plot_and_eval_refuses_a_classifier() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("line.csv");
    let rows: String = (0..200)
        .map(|i| format!("{}\n", (i as f64 * 0.37).sin()))
        .collect();
    std::fs::write(&csv, rows).unwrap();
    let out = dir.path().join("run");
    let mut args = vec![
        "fit",
        "--data",
        csv.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(&TINY_FIT[2..]);
    let o = dsb(&args);
    assert_ok(&o);
    let text = stdout(&o);
    assert!(text.contains("samples.csv"), "{text}");
    assert!(!text.contains("samples.png"), "{text}");
    assert!(!out.join("samples.png").exists());

    let o = dsb(&[
        "eval",
        "--model",
        out.to_str().unwrap(),
        "--classifier",
        dir.path().to_str().unwrap(),
        "--no-bound",
    ]);
    assert_exit2(&o, &["--classifier", "model of points"]);
    assert!(!out.join("eval.json").exists());
}

/// PNG height from the IHDR chunk: 600 for the 1-D histogram, 800 for the 2-D scatter.
fn png_height(p: &Path) -> u32 {
    let bytes = std::fs::read(p).unwrap();
    assert_eq!(&bytes[1..4], b"PNG");
    u32::from_be_bytes(bytes[20..24].try_into().unwrap())
}

#[test]
fn a_one_dimensional_plot_is_a_histogram_not_a_scatter_with_a_fake_axis() {
    let dir = tempfile::tempdir().unwrap();
    for (dim, height) in [("1", 600), ("2", 800)] {
        let png = dir.path().join(format!("g{dim}.png"));
        let o = dsb(&[
            "sample",
            "--method",
            "dsb",
            "--target",
            "gaussian",
            "--dim",
            dim,
            "--iters",
            "3",
            "--steps",
            "4",
            "--width",
            "8",
            "--n",
            "200",
            "-q",
            "--plot",
            png.to_str().unwrap(),
        ]);
        assert_ok(&o);
        assert_eq!(png_height(&png), height, "--dim {dim}");
    }
}

#[test]
fn progress_prints_lines_with_the_elapsed_time_when_stderr_is_not_a_terminal() {
    // The test's pipes are not terminals.
    let o = dsb(&[
        "sample", "--method", "dsb", "--target", "gaussian", "--iters", "3", "--steps", "4",
        "--width", "8", "--n", "50",
    ]);
    assert_ok(&o);
    let err = stderr(&o);
    for stage in ["train [", "sample ["] {
        let line = err
            .lines()
            .find(|l| l.contains(stage))
            .unwrap_or_else(|| panic!("no '{stage}' line: {err}"));
        // indicatif's "(elapsed < eta)", e.g. "(0s < 0s)".
        let elapsed = line.rsplit_once('(').map(|(_, t)| t).unwrap_or("");
        assert!(
            elapsed
                .split_once("s <")
                .is_some_and(|(n, _)| n.parse::<u64>().is_ok()),
            "elapsed time in {line}"
        );
    }
    assert!(!err.contains('\r'), "plain lines, no redraws: {err:?}");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let mut args = vec!["fit", "--data", "two-moons", "--out", out.to_str().unwrap()];
    args.extend(TINY_FIT.iter().filter(|a| **a != "--quiet"));
    let o = dsb(&args);
    assert_ok(&o);
    let err = stderr(&o);
    assert!(err.contains("ipf0 bwd ["), "{err}");
    assert!(err.contains("ipf0: evaluating"), "{err}");
    let o = dsb(&[
        "generate",
        "--model",
        out.to_str().unwrap(),
        "--n",
        "10",
        "--out",
        dir.path().join("g.csv").to_str().unwrap(),
    ]);
    assert_ok(&o);
    assert!(
        stderr(&o).contains("generating 10 examples"),
        "{}",
        stderr(&o)
    );
}
