//! End-to-end runs of the `dsb` binary: outputs, checkpoints, and clear errors for bad input.

mod common;

use common::{assert_clear_error, dsb, stderr};
use std::path::Path;

#[test]
fn unknown_target_is_a_clear_error() {
    let o = dsb(&["sample", "--target", "gmm41"]);
    assert_clear_error(&o, "unknown target 'gmm41'");
    assert!(
        stderr(&o).contains("many-well"),
        "the error lists the known targets"
    );
}

#[test]
fn wrong_dimension_is_a_clear_error() {
    let o = dsb(&["sample", "--target", "funnel", "--dim", "3"]);
    assert_clear_error(&o, "has dimension 10");
}

#[test]
fn missing_or_unreadable_checkpoint_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("none.safetensors");
    let o = dsb(&[
        "sample",
        "--target",
        "gaussian",
        "--load",
        missing.to_str().unwrap(),
    ]);
    assert_clear_error(&o, "cannot load the sampler");

    // Settings present but the weights file is garbage.
    let bad = dir.path().join("bad.safetensors");
    std::fs::write(&bad, b"this is not a safetensors file").unwrap();
    std::fs::write(
        dir.path().join("bad.json"),
        r#"{"format":1,"target":"gaussian","dim":5,"config":{"sigma":1.0,"steps":4,"horizon":5.0,"schedule":"cosine","width":8,"depth":1,"score_clip":1000.0,"output_clip":10000.0}}"#,
    )
    .unwrap();
    let o = dsb(&[
        "sample",
        "--target",
        "gaussian",
        "--load",
        bad.to_str().unwrap(),
    ]);
    assert_clear_error(&o, "not a readable safetensors file");

    // Garbage settings.
    std::fs::write(dir.path().join("bad.json"), b"{ nope").unwrap();
    let o = dsb(&[
        "sample",
        "--target",
        "gaussian",
        "--load",
        bad.to_str().unwrap(),
    ]);
    assert_clear_error(&o, "not a dsb sampler settings file");
}

#[test]
fn bad_output_extension_and_bad_numbers_are_clear_errors() {
    let o = dsb(&[
        "sample", "--target", "gaussian", "--iters", "1", "--steps", "2", "--n", "10", "--out",
        "x.txt",
    ]);
    assert_clear_error(&o, "use a .csv or .npy extension");
    let o = dsb(&["sample", "--target", "gaussian", "--sigma=-1"]);
    assert_clear_error(&o, "--sigma must be positive");
    let o = dsb(&["sample", "--target", "gaussian", "--steps", "0"]);
    assert_clear_error(&o, "--steps must be at least 1");
    let o = dsb(&["sample", "--target", "gaussian", "--device", "tpu"]);
    assert_clear_error(&o, "unknown device");
    let o = dsb(&["sample", "--target", "gaussian", "--sigma", "1,2"]);
    assert_clear_error(&o, "give one value or 5");
}

#[test]
fn targets_lists_every_builtin_as_json() {
    let o = dsb(&["targets", "--json"]);
    assert!(o.status.success());
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let names: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "gaussian",
            "gmm",
            "mixture",
            "funnel",
            "many-well",
            "ionosphere",
            "sonar",
            "german-credit",
            "seeds",
            "brownian",
            "lgcp",
            "lgcp-whitened",
            "logistic"
        ]
    );
}

#[test]
fn sample_writes_outputs_and_a_reloadable_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_str().unwrap().to_string();
    let common = [
        "--target", "gaussian", "--dim", "2", "--n", "300", "--seed", "3", "--json", "-q",
    ];
    let mut args = vec!["sample", "--iters", "5", "--steps", "8", "--width", "16"];
    args.extend(common);
    let (csv, png, model, log) = (p("s.csv"), p("s.png"), p("m.safetensors"), p("curve.csv"));
    args.extend([
        "--out", &csv, "--plot", &png, "--save", &model, "--log", &log,
    ]);
    let o = dsb(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let summary: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(summary["dim"], 2);
    assert!(summary["estimates"]["log_z"].as_f64().unwrap().is_finite());
    let text = std::fs::read_to_string(&csv).unwrap();
    assert_eq!(text.lines().count(), 301);
    assert_eq!(text.lines().next().unwrap(), "x1,x2,log_weight");
    assert_eq!(std::fs::read_to_string(&log).unwrap().lines().count(), 6);
    let png_bytes = std::fs::read(&png).unwrap();
    assert_eq!(&png_bytes[1..4], b"PNG");
    assert!(Path::new(&model).exists() && dir.path().join("m.json").exists());

    // Reload: no training, same settings, same seed gives the same estimates twice.
    let npy = p("s.npy");
    let mut again = vec!["sample", "--load", &model, "--out", &npy];
    again.extend(common);
    let r1 = dsb(&again);
    assert!(r1.status.success(), "{}", stderr(&r1));
    let r2 = dsb(&again);
    let s1: serde_json::Value = serde_json::from_slice(&r1.stdout).unwrap();
    let s2: serde_json::Value = serde_json::from_slice(&r2.stdout).unwrap();
    assert_eq!(s1["estimates"], s2["estimates"], "same seed, same numbers");
    assert_eq!(s1["sampler"]["steps"], 8);
    assert!(s1["training"].is_null());
    assert_eq!(
        std::fs::metadata(&npy).unwrap().len() as usize,
        128 + 300 * 2 * 4
    );

    // Loading for the wrong target is refused.
    let o = dsb(&["sample", "--target", "funnel", "--load", &model]);
    assert_clear_error(&o, "was trained on target 'gaussian'");
}

#[test]
fn ipf_refinement_prints_rows_and_saves_a_reloadable_bridge() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("b.safetensors");
    let model = model.to_str().unwrap();
    let common = [
        "--target", "gaussian", "--dim", "2", "--n", "200", "--seed", "1", "-q",
    ];
    let mut args = vec![
        "sample",
        "--iters",
        "6",
        "--steps",
        "6",
        "--horizon",
        "0.5",
        "--width",
        "16",
        "--ipf-iters",
        "2",
        "--forward-iters",
        "4",
        "--cache",
        "64",
        "--ipf-eval",
        "128",
        "--save",
        model,
        "--json",
    ];
    args.extend(common);
    let o = dsb(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let s: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let rows = s["ipf_rows"].as_array().unwrap();
    assert_eq!(rows.len(), 3, "iteration 0 and two refinements");
    assert_eq!(rows[2]["iteration"], 2);
    assert!(rows[0]["forward_loss"].is_null());
    assert!(rows[1]["forward_loss"].as_f64().unwrap().is_finite());
    assert_eq!(s["ipf_iterations"], 2);
    let settings = std::fs::read_to_string(dir.path().join("b.json")).unwrap();
    assert!(settings.contains("\"learned_forward\": true"), "{settings}");

    // The reloaded bridge uses its learned forward kernels: one more refinement is numbered 3,
    // and the text summary shows the IPF table.
    let mut again = vec![
        "sample",
        "--load",
        model,
        "--ipf-iters",
        "1",
        "--forward-iters",
        "3",
    ];
    again.extend([
        "--ipf-backward-iters",
        "3",
        "--cache",
        "64",
        "--ipf-eval",
        "128",
    ]);
    again.extend(common);
    let o = dsb(&again);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("IPF          1 refinements (bridge refined 3 times in total)"),
        "{text}"
    );

    // Bad settings are clear errors.
    for (flag, value, needle) in [
        ("--ema", "1.5", "--ema must be in [0, 1)"),
        ("--cache", "0", "--cache"),
    ] {
        let o = dsb(&[
            "sample",
            "--target",
            "gaussian",
            "--dim",
            "2",
            "--iters",
            "2",
            "--ipf-iters",
            "1",
            flag,
            value,
            "-q",
        ]);
        assert_clear_error(&o, needle);
    }
}

/// `--checkpoint` writes the checkpoint format of `dsb fit`; `--resume` with the same command
/// line continues it and gives the uninterrupted run's numbers (the library test
/// `ipf::resumable` interrupts runs at every checkpoint); a changed setting, an occupied or an
/// empty directory are clear errors.
#[test]
fn sample_checkpoints_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("run");
    let ck = ck.to_str().unwrap();
    let run = |extra: &[&str]| {
        let mut args = vec![
            "sample",
            "--target",
            "gaussian",
            "--dim",
            "2",
            "--method",
            "dsb",
            "--iters",
            "8",
            "--steps",
            "6",
            "--width",
            "16",
            "--ipf-iters",
            "1",
            "--forward-iters",
            "3",
            "--ipf-backward-iters",
            "3",
            "--cache",
            "64",
            "--ipf-eval",
            "64",
            "--n",
            "300",
            "--checkpoint-every",
            "3",
            "--seed",
            "4",
            "--json",
            "-q",
        ];
        args.extend(extra);
        dsb(&args)
    };
    let full = run(&["--checkpoint", ck]);
    assert!(full.status.success(), "{}", stderr(&full));
    for f in ["model.json", "model.safetensors", "train-state.safetensors"] {
        assert!(Path::new(ck).join(f).exists(), "{f} written");
    }
    let settings = std::fs::read_to_string(Path::new(ck).join("model.json")).unwrap();
    assert!(settings.contains("\"kind\": \"dsb sample\""), "{settings}");
    let resumed = run(&["--resume", ck]);
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    let value = |o: &std::process::Output| -> serde_json::Value {
        serde_json::from_slice(&o.stdout).unwrap()
    };
    let (a, b) = (value(&full), value(&resumed));
    assert_eq!(a["estimates"], b["estimates"]);
    assert_eq!(a["ipf_rows"], b["ipf_rows"]);
    assert_eq!(a["train_report"], b["train_report"]);
    // Stopped inside the training (step 5) and inside the forward half-step (step 10, which
    // stops at the start of the next half-step), then continued: the same numbers.
    for stop in ["5", "10"] {
        let part = dir.path().join(format!("stop{stop}"));
        let part = part.to_str().unwrap();
        let stopped = run(&["--checkpoint", part, "--stop-after", stop]);
        assert!(stopped.status.success(), "{}", stderr(&stopped));
        assert_eq!(value(&stopped)["stopped"], true);
        let continued = run(&["--resume", part]);
        assert!(continued.status.success(), "{}", stderr(&continued));
        let mut c = value(&continued);
        assert_eq!(a["estimates"], c["estimates"], "stopped at {stop}");
        let mut rows = a["ipf_rows"].clone();
        for r in rows
            .as_array_mut()
            .unwrap()
            .iter_mut()
            .chain(c["ipf_rows"].as_array_mut().unwrap())
        {
            r["seconds"] = serde_json::Value::Null; // wall time differs
        }
        assert_eq!(rows, c["ipf_rows"], "stopped at {stop}");
    }
    assert_clear_error(
        &run(&["--stop-after", "5"]),
        "--stop-after stops with a checkpoint",
    );

    assert_clear_error(
        &run(&["--resume", ck, "--lr", "0.01"]),
        "train.lr: 0.01 here, 0.001 in the checkpoint",
    );
    assert_clear_error(
        &run(&["--checkpoint", ck]),
        "the directory holds a checkpoint already",
    );
    let empty = dir.path().join("empty");
    assert_clear_error(
        &run(&["--resume", empty.to_str().unwrap()]),
        "no checkpoint there",
    );
    // A `dsb fit` directory is told apart.
    let fit_like = dir.path().join("fit");
    std::fs::create_dir_all(&fit_like).unwrap();
    std::fs::write(
        fit_like.join("model.json"),
        "{\"format\": 1, \"model\": {}}",
    )
    .unwrap();
    assert_clear_error(
        &run(&["--resume", fit_like.to_str().unwrap()]),
        "not a `dsb sample` checkpoint",
    );
}

#[test]
fn logistic_data_files_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| -> String {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_string()
    };
    let cases = [
        (
            "ragged.csv",
            "a,b,y\n1,2,0\n3,1\n",
            "line 3: 2 cells, but the header has 3",
        ),
        (
            "text.csv",
            "a,b,y\n1,2,0\n3,x,1\n",
            "line 3, column 2: 'x' is not a finite number",
        ),
        (
            "label.csv",
            "a,b,y\n1,2,0\n3,4,2\n",
            "labels must be 0 or 1",
        ),
        (
            "const.csv",
            "a,b,y\n1,2,0\n1,4,1\n1,5,0\n",
            "feature column 1 ('a') is constant",
        ),
    ];
    for (name, text, needle) in cases {
        let path = write(name, text);
        let o = dsb(&["sample", "--target", "logistic", "--data", &path, "-q"]);
        assert_clear_error(&o, needle);
    }
    let o = dsb(&["sample", "--target", "logistic", "-q"]);
    assert_clear_error(&o, "needs --data");
    let o = dsb(&[
        "sample",
        "--target",
        "logistic",
        "--data",
        "/nonexistent/d.csv",
        "-q",
    ]);
    assert_clear_error(&o, "/nonexistent/d.csv");

    // A good file trains and reports; the dimension is the features plus the intercept.
    let good = write(
        "good.csv",
        "x1,x2,y\n0.5,1,1\n-1,2,0\n2,0.5,1\n0,-1,0\n1,1,1\n-2,0,0\n",
    );
    let o = dsb(&[
        "sample", "--target", "logistic", "--data", &good, "--iters", "3", "--steps", "4",
        "--width", "8", "--n", "50", "--json", "-q",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let s: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(s["dim"], 3);
}

#[test]
fn seeds_and_brownian_run_end_to_end() {
    for (target, dim) in [("seeds", 26), ("brownian", 32)] {
        let o = dsb(&[
            "sample", "--target", target, "--method", "dsb", "--iters", "3", "--steps", "4",
            "--width", "8", "--n", "64", "--json", "-q",
        ]);
        assert!(o.status.success(), "{target}: {}", stderr(&o));
        let s: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(s["dim"], dim);
        assert!(
            s["estimates"]["elbo"].as_f64().unwrap().is_finite(),
            "{target}"
        );
    }
}

#[test]
fn lgcp_whitened_runs_end_to_end() {
    let o = dsb(&[
        "sample", "--target", "lgcp", "--whiten", "--method", "dsb", "--iters", "2", "--steps",
        "4", "--width", "8", "--batch", "8", "--n", "32", "--json", "-q",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let s: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(s["dim"], 1600);
    assert_eq!(s["target"], "lgcp-whitened");
    assert!(s["estimates"]["log_z"].as_f64().unwrap().is_finite());
    let o = dsb(&["sample", "--target", "funnel", "--whiten"]);
    assert_clear_error(&o, "--whiten applies to target 'lgcp' only");
}
