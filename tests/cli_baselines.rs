//! End-to-end runs of the baselines and of `dsb bench`: short runs that finish, and clear errors.

mod common;

use common::{assert_clear_error, assert_ok, dsb};

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn smc_and_nuts_run_from_the_command_line() {
    let o = dsb(&[
        "sample",
        "--target",
        "gaussian",
        "--dim",
        "3",
        "--method",
        "smc",
        "--particles",
        "256",
        "--moves",
        "3",
        "--json",
        "--quiet",
    ]);
    assert_ok(&o);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert!(v["log_z"].as_f64().unwrap().is_finite());
    assert!(v["abs_error"].as_f64().unwrap() < 0.5, "{v}");
    assert!(v["moments"]["mean_max"].as_f64().is_some());

    let o = dsb(&[
        "sample", "--target", "gaussian", "--dim", "3", "--method", "nuts", "--chains", "2",
        "--tune", "100", "--draws", "100", "--quiet",
    ]);
    assert_ok(&o);
    assert!(stdout(&o).contains("split-R-hat"), "{}", stdout(&o));
}

#[test]
fn the_sequential_sampler_runs_from_the_command_line() {
    let o = dsb(&[
        "sample",
        "--target",
        "gaussian",
        "--dim",
        "3",
        "--method",
        "sequential",
        "--particles",
        "512",
        "--steps",
        "16",
        "--iters",
        "4",
        "--json",
        "--quiet",
    ]);
    assert_ok(&o);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["method"], "sequential", "{v}");
    assert!(v["abs_error"].as_f64().unwrap() < 0.5, "{v}");
    assert!(v["log_z_stderr"].as_f64().unwrap() > 0.0, "{v}");
    assert!(v["resamplings"].as_u64().is_some() && v["mcmc_moves"].as_u64().is_some());
    assert_eq!(v["sequential"]["steps"], 16);
    assert_eq!(v["sequential"]["iterations"], 4);
    // The text summary names the method, the ± and the particle system's counts.
    let o = dsb(&[
        "sample",
        "--target",
        "gaussian",
        "--dim",
        "2",
        "--method",
        "sequential",
        "--particles",
        "256",
        "--steps",
        "8",
        "--iters",
        "0",
        "--quiet",
    ]);
    assert_ok(&o);
    let text = stdout(&o);
    for key in [
        "sequential diffusion sampler",
        "+-",
        "resamplings",
        "HMC moves",
    ] {
        assert!(text.contains(key), "{key} missing from:\n{text}");
    }
}

#[test]
fn laplace_preconditioning_writes_samples_in_the_original_coordinates() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("s.csv");
    let o = dsb(&[
        "sample",
        "--target",
        "german-credit",
        "--precondition",
        "laplace",
        "--iters",
        "5",
        "--steps",
        "8",
        "--n",
        "500",
        "--out",
        out.to_str().unwrap(),
        "--quiet",
    ]);
    assert_ok(&o);
    let text = std::fs::read_to_string(&out).unwrap();
    // The bias weight (last column before log_weight) is ≈ −1.2 a posteriori; z would be ≈ 0.
    let last: Vec<f64> = text
        .lines()
        .skip(1)
        .map(|l| l.split(',').rev().nth(1).unwrap().parse().unwrap())
        .collect();
    let mean = last.iter().sum::<f64>() / last.len() as f64;
    assert!((mean + 1.2).abs() < 0.3, "bias weight mean {mean}");
}

#[test]
fn baseline_misuse_and_impossible_preconditioning_are_clear_errors() {
    let o = dsb(&[
        "sample",
        "--target",
        "gaussian",
        "--method",
        "smc",
        "--save",
        "x.safetensors",
    ]);
    assert_clear_error(&o, "belong to the diffusion sampler");
    let o = dsb(&[
        "sample",
        "--target",
        "gaussian",
        "--method",
        "smc",
        "--particles",
        "1",
    ]);
    assert_clear_error(&o, "at least 2 particles");
    let o = dsb(&[
        "sample", "--target", "gaussian", "--method", "nuts", "--draws", "0",
    ]);
    assert_clear_error(&o, "--draws");
    // Brownian's density is unbounded as σ_innov → 0: there is no mode to expand around.
    let o = dsb(&[
        "sample",
        "--target",
        "brownian",
        "--precondition",
        "laplace",
    ]);
    assert_clear_error(&o, "--precondition laplace");
    let o = dsb(&["bench", "--targets", "nope"]);
    assert_clear_error(&o, "unknown target 'nope'");
    let o = dsb(&["bench", "--targets", "gaussian", "--precondition", "pca"]);
    assert_clear_error(&o, "--precondition pca");
}

#[test]
fn bench_writes_a_table_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let o = dsb(&[
        "bench",
        "--budget",
        "smoke",
        "--seeds",
        "2",
        "--targets",
        "gaussian",
        "--precondition",
        "none,laplace",
        "--out",
        dir.path().to_str().unwrap(),
        "--quiet",
    ]);
    assert_ok(&o);
    let md = std::fs::read_to_string(dir.path().join("bench.md")).unwrap();
    assert!(md.starts_with("Budget `smoke`"), "kebab-case budget: {md}");
    for m in [
        "| dsb |",
        "| smc |",
        "| nuts |",
        "| sequential |",
        "| dsb+laplace |",
        "| smc+laplace |",
    ] {
        assert!(md.contains(m), "missing row {m}: {md}");
    }
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("bench.json")).unwrap())
            .unwrap();
    assert_eq!(v["runs"].as_array().unwrap().len(), 16);
    assert_eq!(v["rows"].as_array().unwrap().len(), 8);
}
