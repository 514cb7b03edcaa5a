//! The bad-input corpus: every row is an invocation that must fail fast (before any training)
//! with exit code 2, a message that contains the row's key words and no panic, and leave no
//! file behind. README: "bad input ends with a message that says what to change and exit code 2".

mod common;

use common::{assert_ok, dsb, stderr};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// (arguments, with `{D}` standing for the fixture directory; key words of the message).
const CORPUS: &[(&str, &[&str])] = &[
    // dsb sample: targets and settings.
    (
        "sample --target gmm41",
        &["unknown target 'gmm41'", "many-well"],
    ),
    ("sample --target funnel --dim 3", &["has dimension 10"]),
    ("sample --target logistic", &["needs --data"]),
    ("sample --target gaussian --whiten", &["--whiten applies"]),
    ("sample --target mixture --modes 0", &["--modes"]),
    (
        "sample --target mixture --spread -1",
        &["--spread must be positive"],
    ),
    (
        "sample --target gaussian --sigma -1",
        &["--sigma must be positive"],
    ),
    (
        "sample --target gaussian --sigma=-1",
        &["--sigma must be positive"],
    ),
    (
        "sample --target gaussian --sigma 1,2",
        &["give one value or 5"],
    ),
    (
        "sample --target gaussian --horizon -1",
        &["--horizon must be positive"],
    ),
    (
        "sample --target gaussian --steps 0",
        &["--steps must be at least 1"],
    ),
    ("sample --target gaussian --device tpu", &["unknown device"]),
    (
        "sample --target gaussian --n 0",
        &["--n must be at least 1"],
    ),
    (
        "sample --target gaussian --method dsb --iters 0",
        &["--iters must be at least 1"],
    ),
    (
        "sample --target gaussian --batch 1",
        &["--batch must be at least 2"],
    ),
    (
        "sample --target gaussian --lr 0",
        &["--lr and --grad-clip must be positive"],
    ),
    (
        "sample --target gaussian --lr -1",
        &["--lr and --grad-clip must be positive"],
    ),
    (
        "sample --target gaussian --grad-clip -3",
        &["--grad-clip must be positive"],
    ),
    (
        "sample --target gaussian --loss kl --replay 0.5",
        &["--replay works with"],
    ),
    (
        "sample --target gaussian --method smc --save {D}/m.safetensors",
        &["--method smc"],
    ),
    (
        "sample --target gaussian --schedule nope",
        &["invalid value 'nope'"],
    ),
    // dsb sample: output paths, checked before training.
    (
        "sample --target gaussian --out {D}/out.xyz",
        &["--out", "out.xyz", "unknown output format"],
    ),
    (
        "sample --target gaussian --out {D}/adir",
        &["--out", "adir", "is a directory"],
    ),
    (
        "sample --target gaussian --out {D}/none/x.csv",
        &["--out", "none", "does not exist"],
    ),
    (
        "sample --target gaussian --out /proc/x.csv",
        &["--out /proc/x.csv", "cannot write"],
    ),
    (
        "sample --target gaussian --out {D}/file.txt/x.csv",
        &["--out", "not a directory"],
    ),
    (
        "sample --target gaussian --plot {D}/p.jpg",
        &["--plot", ".png"],
    ),
    (
        "sample --target gaussian --save {D}/m.json",
        &["cannot end in .json"],
    ),
    (
        "sample --target gaussian --log {D}/adir",
        &["--log", "is a directory"],
    ),
    // dsb sample: sizes beyond the machine's memory, refused with the estimate.
    (
        "sample --target gaussian --dim 100000000",
        &["needs about", "memory", "--dim"],
    ),
    (
        "sample --target mixture --dim 1000000 --modes 100000",
        &["needs about", "--modes"],
    ),
    (
        "sample --target gaussian --batch 1000000000",
        &["needs about", "--batch"],
    ),
    (
        "sample --target gaussian --n 100000000000",
        &["needs about", "--n"],
    ),
    (
        "sample --target gaussian --steps 1000000000",
        &["needs about", "--steps"],
    ),
    // dsb sample: saved samplers.
    (
        "sample --target gaussian --load {D}/none.safetensors",
        &["cannot load the sampler"],
    ),
    (
        "sample --target gaussian --load {D}/g8.safetensors",
        &["8-D", "use --dim 8"],
    ),
    (
        "sample --target gmm --load {D}/g8.safetensors",
        &["use --target gaussian --dim 8"],
    ),
    (
        "sample --target gaussian --dim 8 --load {D}/edited.safetensors",
        &["disagrees", "steps"],
    ),
    (
        "sample --target gaussian --dim 8 --load {D}/garbage.safetensors",
        &["not a readable"],
    ),
    (
        "sample --target gaussian --load {D}/g8.safetensors --steps 3",
        &["cannot be used with"],
    ),
    (
        "sample --target gaussian --dim 8 --load {D}/g8.safetensors --n 100000000000",
        &["needs about", "--n"],
    ),
    // dsb fit.
    (
        "fit --data spiral --out {D}/run",
        &["unknown data set 'spiral'"],
    ),
    ("fit --out {D}/run", &["--data"]),
    ("fit --data two-moons --out {D}/run --steps 0", &["--steps"]),
    (
        "fit --data two-moons --out {D}/run --held-out 1.5",
        &["held-out fraction"],
    ),
    ("fit --data two-moons --out {D}/run --ema 1", &["--ema"]),
    ("fit --data two-moons --out {D}/run --lr -1", &["--lr"]),
    (
        "fit --data two-moons --out {D}/run --horizon 0",
        &["--horizon"],
    ),
    ("fit --data two-moons --out {D}/run --iters 0", &["--iters"]),
    (
        "fit --data two-moons --out {D}/run --eval-samples 1",
        &["--eval-samples"],
    ),
    (
        "fit --data two-moons --out {D}/run --unet-width 8",
        &["for image data"],
    ),
    (
        "fit --data two-moons --out {D}/file.txt",
        &["--out", "not a directory"],
    ),
    (
        "fit --data two-moons --out /proc/run",
        &["--out /proc/run", "cannot write"],
    ),
    (
        "fit --data two-moons --out {D}/run --n-data 1000000000000",
        &["needs about", "--n-data"],
    ),
    (
        "fit --data two-moons --out {D}/run --cache 10000000000",
        &["needs about", "--cache"],
    ),
    (
        "fit --data two-moons --out {D}/locked",
        &["in use by another dsb fit", ".lock"],
    ),
    ("fit --resume {D}/none", &["no such directory"]),
    ("fit --resume {D}/model --steps 9", &["cannot be used with"]),
    // dsb generate and dsb eval.
    (
        "generate --model {D}/none --out {D}/a.csv",
        &["no such directory"],
    ),
    (
        "generate --model {D}/model --out {D}/a.txt",
        &[".csv or .png"],
    ),
    (
        "generate --model {D}/model --out {D}/adir",
        &["--out", "is a directory"],
    ),
    (
        "generate --model {D}/model --out {D}/none/a.csv",
        &["--out", "does not exist"],
    ),
    (
        "generate --model {D}/model --n 0 --out {D}/a.csv",
        &["--n must be at least 1"],
    ),
    (
        "generate --model {D}/model --n 100000000000 --out {D}/a.csv",
        &["needs about", "--n"],
    ),
    (
        "eval --model {D}/model --classifier {D}/adir",
        &["--classifier", "model of points"],
    ),
    ("eval --model {D}/model --n 1", &["--n must be at least 2"]),
    (
        "eval --model {D}/model --steps 0",
        &["--steps must be at least 1"],
    ),
    (
        "eval --model {D}/model --out {D}/e.txt",
        &["--out", ".json"],
    ),
    ("eval --model {D}/none", &["no such directory"]),
    // Others.
    ("bench --seeds 0", &["--seeds must be at least 1"]),
    (
        "train-classifier --data two-moons --out {D}/c",
        &["holds points, not images"],
    ),
    ("targets --nope", &["unexpected argument"]),
];

/// Every file and directory under `dir`, relative to it.
fn listing(dir: &Path) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            out.insert(p.strip_prefix(dir).unwrap().to_path_buf());
            if p.is_dir() {
                todo.push(p);
            }
        }
    }
    out
}

/// The fixtures the corpus refers to: a file, a directory, a locked run directory, a tiny saved
/// 8-D Gaussian sampler (intact, with edited settings, garbage) and a tiny fitted points model.
fn fixtures(d: &Path) {
    std::fs::write(d.join("file.txt"), b"not a directory").unwrap();
    std::fs::create_dir(d.join("adir")).unwrap();
    std::fs::create_dir(d.join("locked")).unwrap();
    std::fs::write(d.join("locked/.lock"), format!("{}\n", std::process::id())).unwrap();
    let g8 = d.join("g8.safetensors");
    assert_ok(&dsb(&[
        "sample",
        "--target",
        "gaussian",
        "--dim",
        "8",
        "--iters",
        "2",
        "--steps",
        "4",
        "--width",
        "8",
        "--n",
        "10",
        "-q",
        "--save",
        g8.to_str().unwrap(),
    ]));
    let json = std::fs::read_to_string(d.join("g8.json")).unwrap();
    std::fs::copy(&g8, d.join("edited.safetensors")).unwrap();
    std::fs::write(
        d.join("edited.json"),
        json.replace("\"steps\": 4", "\"steps\": 5"),
    )
    .unwrap();
    std::fs::write(d.join("garbage.safetensors"), b"garbage").unwrap();
    std::fs::write(d.join("garbage.json"), &json).unwrap();
    let model = d.join("model");
    assert_ok(&dsb(&[
        "fit",
        "--data",
        "two-moons",
        "--out",
        model.to_str().unwrap(),
        "--n-data",
        "200",
        "--steps",
        "4",
        "--iters",
        "5",
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
    ]));
}

#[test]
fn every_bad_invocation_fails_fast_with_exit_2_and_leaves_nothing_behind() {
    assert!(CORPUS.len() >= 40, "the corpus has {} rows", CORPUS.len());
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    fixtures(d);
    let before = listing(d);
    let mut failures = Vec::new();
    for (args, needles) in CORPUS {
        let line = args.replace("{D}", d.to_str().unwrap());
        let argv: Vec<&str> = line.split_whitespace().collect();
        let start = Instant::now();
        let o = Command::new(env!("CARGO_BIN_EXE_dsb"))
            .args(&argv)
            .current_dir(d)
            .output()
            .expect("run dsb");
        let took = start.elapsed();
        let err = stderr(&o);
        let mut why = Vec::new();
        if o.status.code() != Some(2) {
            why.push(format!("exit code {:?}", o.status.code()));
        }
        if err.contains("panicked") {
            why.push("panicked".into());
        }
        for n in *needles {
            if !err.contains(n) {
                why.push(format!("message lacks '{n}'"));
            }
        }
        if took > Duration::from_secs(20) {
            why.push(format!("took {took:?}: not before training"));
        }
        let after = listing(d);
        if after != before {
            let new: Vec<_> = after.symmetric_difference(&before).collect();
            why.push(format!("files changed: {new:?}"));
            // Put the directory back as it was for the next rows.
            for p in after.difference(&before) {
                let p = d.join(p);
                let _ = std::fs::remove_dir_all(&p).or_else(|_| std::fs::remove_file(&p));
            }
        }
        if !why.is_empty() {
            failures.push(format!("dsb {args}: {}\n  stderr: {err}", why.join(", ")));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} rows failed:\n{}",
        failures.len(),
        CORPUS.len(),
        failures.join("\n")
    );
}
