//! `dsb bridge` end to end: a Gaussian-to-Gaussian bridge from samples against the closed form,
//! two moons to eight Gaussians against Sinkhorn's entropic OT plan, resumption and bad input.

mod common;

use common::{assert_clear_error, assert_ok, dsb};
use dsb::bridge::GaussianBridge;
use dsb::data::Points;
use nalgebra::{DMatrix, DVector};
use rand::SeedableRng;
use std::path::Path;

/// Reads a CSV of numbers with a header into rows.
fn read_csv(path: &Path) -> Vec<Vec<f64>> {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .skip(1)
        .map(|l| l.split(',').map(|v| v.parse().unwrap()).collect())
        .collect()
}

fn write_csv(path: &Path, p: &Points) {
    dsb::io::write_points_csv(path, p).unwrap();
}

/// Sample mean and covariance of rows (columns `cols`).
fn moments(rows: &[Vec<f64>], cols: std::ops::Range<usize>) -> (DVector<f64>, DMatrix<f64>) {
    let d = cols.len();
    let n = rows.len() as f64;
    let m = DVector::from_fn(d, |i, _| {
        rows.iter().map(|r| r[cols.start + i]).sum::<f64>() / n
    });
    let c = DMatrix::from_fn(d, d, |i, j| {
        rows.iter()
            .map(|r| (r[cols.start + i] - m[i]) * (r[cols.start + j] - m[j]))
            .sum::<f64>()
            / (n - 1.0)
    });
    (m, c)
}

/// The seed of the runs: 0, or `DSB_TEST_SEED` (how the other seeds quoted below were checked).
fn seed() -> u64 {
    std::env::var("DSB_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// Two correlated 2-D Gaussians bridged from 6000 samples each (CSV files) with a Brownian
/// reference σ = 1 on [0, 1]: the forward coupling's cross-covariance and its far marginal
/// against the closed form ([`GaussianBridge`]), on 2400 held-out pairs.
///
/// Sampling error alone: a cross-covariance entry has s.e. ≈ √((σ_x² σ_y² + c²)/n) ≈ 0.025, a
/// mean ≈ 0.025, the variance 1.5 ≈ 1.5·√(2/n) ≈ 0.043. The rest is training error (four IPF
/// iterations of 800 steps): over seeds 0–3 the largest errors were 0.046–0.066 (cross),
/// 0.010–0.063 (mean) and 0.037–0.140 (covariance); seed 0 gives 0.056, 0.021 and 0.089. The
/// tolerances 0.15, 0.15 and 0.3 leave 3.7, 5.2 and 4.9 sampling s.e. at seed 0. The untrained
/// bridge (the reference from the first Gaussian) misses the far mean by 2.
#[test]
fn gaussian_bridge_from_samples_matches_the_closed_form() {
    let s0 = DMatrix::from_row_slice(2, 2, &[1.0, 0.5, 0.5, 1.0]);
    let s1 = DMatrix::from_row_slice(2, 2, &[1.5, -0.3, -0.3, 0.8]);
    let m1 = DVector::from_vec(vec![2.0, -1.0]);
    let g = GaussianBridge::new(DVector::zeros(2), s0, m1.clone(), s1.clone(), 1.0).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(100 + seed());
    let (a, b) = g.sample_ends(6000, &mut rng).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (pa, pb) = (dir.path().join("a.csv"), dir.path().join("b.csv"));
    write_csv(&pa, &a);
    write_csv(&pb, &b);
    let out = dir.path().join("run");
    let s = seed().to_string();
    let o = dsb(&[
        "bridge",
        "--from",
        pa.to_str().unwrap(),
        "--to",
        pb.to_str().unwrap(),
        "--sigma",
        "1",
        "--horizon",
        "1",
        "--held-out",
        "0.4",
        "--ipf-iters",
        "4",
        "--iters",
        "800",
        "--width",
        "64",
        "--depth",
        "2",
        "--eval-samples",
        "2400",
        "--sinkhorn",
        "0",
        "--seed",
        &s,
        "--quiet",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_ok(&o);
    let pairs = read_csv(&out.join("forward.csv"));
    let n = pairs.len() as f64;
    let (_, all) = moments(&pairs, 0..4);
    let cross = all.view((0, 2), (2, 2)).into_owned();
    let truth = g.cross_covariance();
    let (m_end, c_end) = moments(&pairs, 2..4);
    let e_cross = (&cross - &truth).abs().max();
    let e_mean = (&m_end - &m1).abs().max();
    let e_cov = (&c_end - &s1).abs().max();
    eprintln!("seed {s}: n {n} cross err {e_cross:.4} mean err {e_mean:.4} cov err {e_cov:.4}");
    assert!(e_cross < 0.15, "Cov(X_0, X_T) {cross:.4} vs {truth:.4}");
    assert!(e_mean < 0.15, "far mean {m_end:.4} vs {m1:.4}");
    assert!(e_cov < 0.3, "far covariance {c_end:.4} vs {s1:.4}");
}

/// The moons → eight Gaussians settings of the tests (about a minute on 2 cores).
fn moons(out: &Path, extra: &[&str]) -> std::process::Output {
    let s = seed().to_string();
    let mut args = vec![
        "bridge",
        "--from",
        "two-moons",
        "--to",
        "8gaussians",
        "--n-data",
        "4000",
        "--ipf-iters",
        "3",
        "--iters",
        "600",
        "--eval-samples",
        "600",
        "--sinkhorn",
        "400",
        "--seed",
        &s,
        "--json",
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    dsb(&args)
}

/// Two moons → eight Gaussians with the Brownian reference (σ the pooled scale, T = 0.2): the
/// learned coupling's transport cost against the entropic OT plan between 400 held-out points
/// of each set at the same ε, and both end marginals against the untrained bridge.
///
/// Cost: the tolerance is 3 s.e. of the bridge's cost plus 10 % of the Sinkhorn cost for the
/// IPF truncation (three refinements; the cost rises 1.24 → 2.4 → 2.6 over them). Over seeds
/// 0–3 the gaps were 0.08, 0.14, 0.02 and 0.18 (s.e. 0.08), against a tolerance of about 0.51
/// (seed 0: 5 s.e. of margin). The reference alone (cost 1.24) and the independent coupling
/// (≈ 6) fail it. Marginals: MMD² at the last iteration at most a quarter of the untrained
/// bridge's in both directions; measured 7–39× smaller over seeds 0–3 (seed 0: 7.3× and 11×).
#[test]
fn moons_to_eight_gaussians_matches_sinkhorn() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let o = moons(&out, &[]);
    assert_ok(&o);
    let s: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let ot = &s["ot"];
    let f = |v: &serde_json::Value| v.as_f64().unwrap();
    let (sk, bc, se) = (
        f(&ot["sinkhorn_cost"]),
        f(&ot["bridge_cost"]),
        f(&ot["bridge_cost_stderr"]),
    );
    let last = s["rows"].as_array().unwrap().last().unwrap().clone();
    let un = &s["untrained"];
    let (m_back, m_fwd) = (f(&last["mmd2"]), f(&last["bridge"]["forward_mmd2"]));
    let (u_back, u_fwd) = (f(&un["mmd2"]), f(&un["bridge"]["forward_mmd2"]));
    eprintln!(
        "seed {}: sinkhorn {sk:.4} bridge {bc:.4} ± {se:.4} (ref {:.4}); mmd back {m_back:.5} / {u_back:.5}, fwd {m_fwd:.5} / {u_fwd:.5}; cm {:.4}/{:.4}",
        seed(),
        f(&ot["reference_cost"]),
        f(&ot["conditional_mean_rmse"]),
        f(&ot["conditional_mean_spread"]),
    );
    assert!(
        (bc - sk).abs() < 3.0 * se + 0.1 * sk,
        "bridge cost {bc} ± {se} vs Sinkhorn {sk}"
    );
    assert!(
        m_back < u_back / 4.0,
        "to→from MMD² {m_back} vs untrained {u_back}"
    );
    assert!(
        m_fwd < u_fwd / 4.0,
        "from→to MMD² {m_fwd} vs untrained {u_fwd}"
    );
    for name in [
        "forward.csv",
        "backward.csv",
        "bridge.png",
        "transport.png",
        "summary.json",
    ] {
        assert!(out.join(name).is_file(), "{name} missing");
    }
}

/// A run stopped after 700 gradient steps and resumed ends where the uninterrupted run ends
/// (the same rows, bit for bit), and bad input fails before training with the flag to change.
#[test]
fn bridge_resumes_exactly_and_refuses_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let tiny = [
        "--n-data",
        "400",
        "--ipf-iters",
        "1",
        "--iters",
        "20",
        "--steps",
        "6",
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
        "--sinkhorn",
        "30",
        "--batch",
        "32",
        "--quiet",
        "--json",
    ];
    let run = |name: &str, extra: &[&str]| {
        let out = dir.path().join(name);
        let mut args = vec!["bridge", "--from", "two-moons", "--to", "circles", "--out"];
        args.push(out.to_str().unwrap());
        args.extend_from_slice(&tiny);
        args.extend_from_slice(extra);
        (dsb(&args), out)
    };
    let (whole, _) = run("whole", &[]);
    assert_ok(&whole);
    let (stopped, part) = run("part", &["--stop-after", "25"]);
    assert_ok(&stopped);
    let resumed = dsb(&[
        "bridge",
        "--resume",
        part.to_str().unwrap(),
        "--sinkhorn",
        "30",
        "--quiet",
        "--json",
    ]);
    assert_ok(&resumed);
    let rows = |o: &std::process::Output| {
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        (v["rows"].clone(), v["ot"].clone())
    };
    let (a, b) = (rows(&whole), rows(&resumed));
    assert_eq!(a.0.as_array().unwrap().len(), 2);
    for (x, y) in a.0.as_array().unwrap().iter().zip(b.0.as_array().unwrap()) {
        for key in ["mmd2", "energy", "backward_loss", "forward_loss", "bridge"] {
            assert_eq!(x[key], y[key], "{key} differs after --resume");
        }
    }
    assert_eq!(a.1, b.1, "the OT comparison differs after --resume");
    // A bridge does not generate from noise.
    let whole_dir = dir.path().join("whole");
    let png = dir.path().join("g.csv");
    let g = dsb(&[
        "generate",
        "--model",
        whole_dir.to_str().unwrap(),
        "--n",
        "5",
        "--out",
        png.to_str().unwrap(),
    ]);
    assert_clear_error(&g, "is a bridge");

    // Bad input.
    let csv = dir.path().join("line.csv");
    std::fs::write(&csv, "x\n1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n").unwrap();
    let csv = csv.to_str().unwrap();
    let bad = |args: &[&str], needle: &str| {
        let mut v = vec!["bridge", "--out"];
        let o = dir.path().join("bad");
        v.push(o.to_str().unwrap());
        v.extend_from_slice(args);
        assert_clear_error(&dsb(&v), needle);
    };
    bad(&["--from", "two-moons", "--to", csv], "one shape");
    bad(
        &[
            "--from",
            "two-moons",
            "--to",
            "circles",
            "--reference",
            "ou",
        ],
        "--reference brownian",
    );
    bad(
        &["--from", "two-moons", "--to", "circles", "--sigma", "-1"],
        "--sigma",
    );
    let ou_sigma = [
        "--from",
        "two-moons",
        "--to",
        "circles",
        "--reference",
        "ou",
        "--sigma",
        "1",
    ];
    bad(&ou_sigma, "--sigma");
    bad(
        &[
            "--from",
            "two-moons",
            "--to",
            "circles",
            "--classifier",
            "x",
        ],
        "the classifier scores image bridges",
    );
    bad(&["--from", "two-moons"], "--to");
    bad(&["--from", "no-such-set", "--to", "circles"], "no-such-set");
}

/// Images bridge through the same engine with the UNet: a tiny MNIST-fixture run (one
/// refinement) writes the 8 × 8 grid of sources above their transports, and transports of the
/// right shape, all finite.
#[test]
fn images_bridge_through_the_unet() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("img");
    let fixture = common::mnist_fixture();
    let o = dsb(&[
        "bridge",
        "--from",
        "mnist",
        "--to",
        "mnist",
        "--data-dir",
        fixture.to_str().unwrap(),
        "--n-data",
        "64",
        "--iters",
        "2",
        "--ipf-iters",
        "1",
        "--steps",
        "3",
        "--eval-samples",
        "16",
        "--cache",
        "16",
        "--refresh",
        "2",
        "--sinkhorn",
        "0",
        "--batch",
        "8",
        "--quiet",
        "--json",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_ok(&o);
    let s: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(s["dim"], 784);
    assert_eq!(s["rows"].as_array().unwrap().len(), 2);
    assert!(out.join("bridge.png").is_file());
    let rows = read_csv(&out.join("forward.csv"));
    assert_eq!(rows.len(), 16);
    assert!(
        rows.iter()
            .all(|r| r.len() == 2 * 784 && r.iter().all(|v| v.is_finite()))
    );
}
