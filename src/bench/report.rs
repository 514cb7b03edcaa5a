//! Summaries over seeds and the Markdown table of `dsb bench`.

use super::run::RunRecord;
use crate::baseline::Method;
use serde::Serialize;

/// One (target, method) cell of the table: means and spreads over seeds.
#[derive(Debug, Clone, Serialize)]
pub struct BenchRow {
    /// Target name.
    pub target: String,
    /// Target dimension.
    pub dim: usize,
    /// Method.
    pub method: Method,
    /// Whether the method ran on the Laplace-whitened target.
    pub laplace: bool,
    /// Seeds run.
    pub seeds: usize,
    /// Mean log Ẑ over seeds.
    pub log_z_mean: Option<f64>,
    /// Standard deviation of log Ẑ over seeds (the estimator's spread).
    pub log_z_sd: Option<f64>,
    /// Reference log Z.
    pub reference_log_z: Option<f64>,
    /// Mean |log Ẑ − log Z| over seeds.
    pub abs_error_mean: Option<f64>,
    /// Standard deviation of |log Ẑ − log Z| over seeds.
    pub abs_error_sd: Option<f64>,
    /// Mean normalised ESS.
    pub ess_mean: f64,
    /// Mean of the largest |mean error| (reference sds).
    pub mean_error_sd: Option<f64>,
    /// Mean of the largest relative sd error.
    pub sd_error: Option<f64>,
    /// Mean wall seconds per run.
    pub wall_seconds: f64,
    /// Mean gradient evaluations per run.
    pub gradient_evaluations: f64,
}

fn mean_sd(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n;
    let sd = if v.len() > 1 {
        (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
    } else {
        f64::NAN
    };
    (m, sd)
}

/// Groups records by (target, method), in the order they first appear.
pub fn aggregate(records: &[RunRecord]) -> Vec<BenchRow> {
    let mut keys: Vec<(String, Method, bool)> = Vec::new();
    for r in records {
        let k = (r.target.clone(), r.method, r.laplace);
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    keys.into_iter()
        .map(|(target, method, laplace)| {
            let rs: Vec<&RunRecord> = records
                .iter()
                .filter(|r| r.target == target && r.method == method && r.laplace == laplace)
                .collect();
            let opt = |f: &dyn Fn(&RunRecord) -> Option<f64>| -> Option<(f64, f64)> {
                let v: Vec<f64> = rs.iter().filter_map(|r| f(r)).collect();
                (!v.is_empty()).then(|| mean_sd(&v))
            };
            let z = opt(&|r| r.log_z);
            let err = opt(&|r| r.abs_error);
            BenchRow {
                dim: rs[0].dim,
                seeds: rs.len(),
                log_z_mean: z.map(|p| p.0),
                log_z_sd: z.map(|p| p.1),
                reference_log_z: rs[0].reference_log_z,
                abs_error_mean: err.map(|p| p.0),
                abs_error_sd: err.map(|p| p.1),
                ess_mean: mean_sd(&rs.iter().map(|r| r.ess).collect::<Vec<_>>()).0,
                mean_error_sd: opt(&|r| r.mean_error_sd).map(|p| p.0),
                sd_error: opt(&|r| r.sd_error).map(|p| p.0),
                wall_seconds: mean_sd(&rs.iter().map(|r| r.wall_seconds).collect::<Vec<_>>()).0,
                gradient_evaluations: mean_sd(
                    &rs.iter()
                        .map(|r| r.gradient_evaluations as f64)
                        .collect::<Vec<_>>(),
                )
                .0,
                target,
                method,
                laplace,
            }
        })
        .collect()
}

/// The best published |log Ẑ − log Z| for a target (docs/design.md § Published figures: flow
/// annealed importance sampling with a replay buffer, and DDS at 64–512 steps), as text for the
/// table.
pub fn published_figure(target: &str) -> Option<&'static str> {
    Some(match target {
        "funnel" => "0.002 (best); DDS ≈ 0.2",
        "many-well" => "0.03",
        "lgcp" | "lgcp-whitened" => "0.19 (best); DDS several units",
        "ionosphere" => "DDS ≈ 0.03–0.1",
        "sonar" => "DDS ≈ 0.5–1.0",
        _ => return None,
    })
}

fn fmt_pm(m: Option<f64>, sd: Option<f64>, digits: usize) -> String {
    match (m, sd) {
        (Some(m), Some(sd)) if sd.is_finite() => format!("{m:.digits$} ± {sd:.digits$}"),
        (Some(m), _) => format!("{m:.digits$}"),
        _ => "–".into(),
    }
}

fn fmt_opt(v: Option<f64>, digits: usize) -> String {
    v.map(|x| format!("{x:.digits$}"))
        .unwrap_or_else(|| "–".into())
}

/// The Markdown table: one line per (target, method).
pub fn markdown_table(rows: &[BenchRow]) -> String {
    let mut s = String::from(
        "| target | dim | method | seeds | log Ẑ (mean ± sd) | reference | abs error (mean ± sd) | ESS | max mean err (sd) | max sd err | s/run | grad evals/run | published abs error |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let method = format!(
            "{}{}",
            format!("{:?}", r.method).to_lowercase(),
            if r.laplace { "+laplace" } else { "" }
        );
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {:.3} | {} | {} | {:.1} | {:.2e} | {} |\n",
            r.target,
            r.dim,
            method,
            r.seeds,
            fmt_pm(r.log_z_mean, r.log_z_sd, 3),
            fmt_opt(r.reference_log_z, 3),
            fmt_pm(r.abs_error_mean, r.abs_error_sd, 3),
            r.ess_mean,
            fmt_opt(r.mean_error_sd, 3),
            r.sd_error
                .map(|v| format!("{:.0}%", 100.0 * v))
                .unwrap_or_else(|| "–".into()),
            r.wall_seconds,
            r.gradient_evaluations,
            published_figure(&r.target).unwrap_or("–"),
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(seed: u64, z: f64) -> RunRecord {
        RunRecord {
            target: "t".into(),
            dim: 2,
            method: Method::Smc,
            laplace: false,
            seed,
            log_z: Some(z),
            reference_log_z: Some(0.0),
            abs_error: Some(z.abs()),
            ess: 0.5,
            mean_error_sd: None,
            sd_error: None,
            wall_seconds: 1.0,
            gradient_evaluations: 10,
            samples: 100,
        }
    }

    #[test]
    fn aggregation_averages_over_seeds() {
        let rows = aggregate(&[rec(0, 0.1), rec(1, -0.3)]);
        assert_eq!(rows.len(), 1);
        let r = &rows[0];
        assert_eq!(r.seeds, 2);
        assert!((r.log_z_mean.unwrap() + 0.1).abs() < 1e-12);
        assert!((r.abs_error_mean.unwrap() - 0.2).abs() < 1e-12);
        assert!((r.log_z_sd.unwrap() - (0.08f64).sqrt()).abs() < 1e-12);
        let t = markdown_table(&rows);
        assert!(t.contains("| t | 2 | smc | 2 | -0.100 ± 0.283 |"), "{t}");
    }
}
