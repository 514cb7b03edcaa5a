//! Binomial diffusion end to end: `dsb fit --data heartbeat` and `dsb fit --binarize` on the
//! MNIST fixture, a stopped and resumed fit equal to the uninterrupted one, `dsb generate` and
//! `dsb eval` on the models, and bad input refused with the flag to change. (The bound against
//! known entropies is tested in the library: `binomial::tests`.)

mod common;

use common::{assert_clear_error, assert_ok, dsb, mnist_fixture};

fn json(o: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap()
}

const HEARTBEAT: [&str; 12] = [
    "fit",
    "--data",
    "heartbeat",
    "--iters",
    "600",
    "--steps",
    "20",
    "--n-data",
    "3000",
    "--eval-samples",
    "1000",
    "--json",
];

/// The heartbeat data (5 equally likely 20-bit sequences: entropy log₂ 5 = 2.32 bits per
/// sequence; the untrained model gives 20). After 600 steps on 20 diffusion steps the held-out
/// bound is between the entropy (it cannot be lower, up to 4 s.e.) and 4 bits per sequence;
/// measured 3.04, 2.85, 2.96 (s.e. 0.08) at seeds 0, 1, 2. A run stopped at step 250 and
/// resumed writes the same weights and report as the uninterrupted run.
#[test]
fn heartbeat_fit_resume_generate_and_eval() {
    let tmp = tempfile::tempdir().unwrap();
    let whole = tmp.path().join("whole");
    let w = whole.to_str().unwrap();
    let mut args = HEARTBEAT.to_vec();
    args.extend(["--out", w]);
    let o = dsb(&args);
    assert_ok(&o);
    let s = json(&o);
    let bits = s["held_out_bits_per_example"].as_f64().unwrap();
    let se = s["report"]["held_out"]["stderr"].as_f64().unwrap() * 20.0;
    let entropy = 5f64.log2();
    assert!(
        bits > entropy - 4.0 * se,
        "bound {bits} ± {se} below the entropy"
    );
    assert!(bits < 4.0, "bound {bits} bits per sequence");
    assert_eq!(s["gradient_steps"], 600);
    let csv = std::fs::read_to_string(whole.join("samples.csv")).unwrap();
    assert!(csv.starts_with("x1,x2,"));
    assert_eq!(csv.lines().count(), 1001);
    assert!(
        csv.lines()
            .skip(1)
            .flat_map(|l| l.split(','))
            .all(|v| v == "0" || v == "1")
    );
    assert!(whole.join("samples.png").exists() && whole.join("summary.json").exists());
    assert!(!whole.join("train-state.safetensors").exists());

    // Stopped at 250 (checkpoints every 100) and resumed: the same weights and report.
    let part = tmp.path().join("part");
    let p = part.to_str().unwrap();
    let mut args = HEARTBEAT.to_vec();
    args.extend([
        "--out",
        p,
        "--stop-after",
        "250",
        "--checkpoint-every",
        "100",
    ]);
    let o = dsb(&args);
    assert_ok(&o);
    assert_eq!(json(&o)["stopped"], true);
    assert!(part.join("train-state.safetensors").exists());
    let o = dsb(&["fit", "--resume", p, "--json"]);
    assert_ok(&o);
    let r = json(&o);
    assert_eq!(r["resumed_at"], 250);
    assert_eq!(without_seconds(&r["report"]), without_seconds(&s["report"]));
    assert_eq!(
        std::fs::read(whole.join("model.safetensors")).unwrap(),
        std::fs::read(part.join("model.safetensors")).unwrap()
    );
    let o = dsb(&["fit", "--resume", p, "--json"]);
    assert_ok(&o);
    assert_eq!(json(&o)["nothing_to_do"], true);

    // generate and eval.
    let out = tmp.path().join("g.csv");
    assert_ok(&dsb(&[
        "generate",
        "--model",
        w,
        "--n",
        "50",
        "--out",
        out.to_str().unwrap(),
    ]));
    assert_eq!(std::fs::read_to_string(&out).unwrap().lines().count(), 51);
    let png = tmp.path().join("g.png");
    assert_ok(&dsb(&[
        "generate",
        "--model",
        w,
        "--out",
        png.to_str().unwrap(),
    ]));
    assert!(png.exists());
    let o = dsb(&["eval", "--model", w, "--n", "300", "--seed", "5", "--json"]);
    assert_ok(&o);
    let e = json(&o);
    let eb = e["held_out_bits_per_example"].as_f64().unwrap();
    let ese = e["report"]["held_out"]["stderr"].as_f64().unwrap() * 20.0;
    // Another seed and the same held-out set: the same bound within the two s.e.
    assert!(
        (eb - bits).abs() < 4.0 * (se * se + ese * ese).sqrt(),
        "eval {eb} ± {ese} against fit {bits} ± {se}"
    );
    assert!(whole.join("eval.json").exists());

    // What binomial models refuse.
    assert_clear_error(
        &dsb(&[
            "generate",
            "--model",
            w,
            "--steps",
            "5",
            "--out",
            png.to_str().unwrap(),
        ]),
        "are for Gaussian models",
    );
    assert_clear_error(
        &dsb(&["eval", "--model", w, "--fine-steps", "100"]),
        "are for Gaussian models",
    );
    assert_clear_error(
        &dsb(&["condition", "--model", w, "--observe", "x1=1"]),
        "binomial-diffusion model",
    );
}

/// A report without its evaluation's seconds (which differ from run to run).
fn without_seconds(report: &serde_json::Value) -> serde_json::Value {
    let mut r = report.clone();
    r.as_object_mut().unwrap().remove("eval_seconds");
    r
}

/// Binarised MNIST digits (the fixture): a small model trained for 150 steps more than halves
/// the untrained model's 1 bit/dim on held-out digits (measured 0.382, 0.380, 0.385, s.e. 0.006, at seeds 0, 1, 2), and writes a grid.
#[test]
fn binarised_mnist_fixture() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("bin");
    let fixture = mnist_fixture();
    let o = dsb(&[
        "fit",
        "--data",
        "mnist",
        "--data-dir",
        fixture.to_str().unwrap(),
        "--binarize",
        "--n-data",
        "1000",
        "--steps",
        "10",
        "--width",
        "64",
        "--depth",
        "1",
        "--iters",
        "150",
        "--eval-samples",
        "200",
        "--json",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_ok(&o);
    let s = json(&o);
    assert_eq!(s["example_shape"], serde_json::json!([1, 28, 28]));
    let b = s["report"]["held_out"]["bits_per_dim"].as_f64().unwrap();
    assert!(b < 0.5, "bound {b} bits/dim");
    assert!(out.join("samples.png").exists());
}

#[test]
fn binary_bad_input_names_the_flag() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("x");
    let o = out.to_str().unwrap();
    assert_clear_error(
        &dsb(&["fit", "--data", "two-moons", "--binarize", "--out", o]),
        "not binary data",
    );
    assert_clear_error(
        &dsb(&["fit", "--data", "heartbeat", "--ipf-iters", "2", "--out", o]),
        "--ipf-iters does not apply",
    );
    assert_clear_error(
        &dsb(&["fit", "--data", "heartbeat", "--iters", "0", "--out", o]),
        "--iters and --batch must be at least 1",
    );
    assert_clear_error(
        &dsb(&["fit", "--data", "heartbeat", "--n-data", "1", "--out", o]),
        "--n-data must be at least 2",
    );
    assert_clear_error(
        &dsb(&[
            "fit",
            "--data",
            "mnist",
            "--binarize",
            "--horizon",
            "2",
            "--out",
            o,
        ]),
        "cannot be used with",
    );
    assert!(!out.exists(), "a refused run left its directory");
}
