//! `dsb bench`: run methods × targets × seeds and write the comparison table.

use super::progress::bar;
use crate::baseline::Method;
use crate::bench::{Budget, RunRecord, aggregate, markdown_table, run_one};
use crate::target::{Target, TargetOptions, builtin_target};
use anyhow::Context;
use std::path::PathBuf;
use std::sync::Arc;

/// The targets of the published comparison (docs/design.md § Reference values), in table order.
const DEFAULT_TARGETS: &str =
    "funnel,gmm,many-well,ionosphere,sonar,german-credit,lgcp-whitened,seeds,brownian";

/// Arguments of `dsb bench`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Writes OUT/bench.md (the table) and OUT/bench.json (every run and the summary rows).\n\nExamples:\n  dsb bench --budget smoke --seeds 1\n  dsb bench --targets ionosphere,sonar --methods smc,nuts --seeds 5\n  dsb bench --budget full --out results/full"
)]
pub struct BenchArgs {
    /// Comma-separated built-in targets.
    #[arg(long, value_delimiter = ',', default_value = DEFAULT_TARGETS)]
    pub targets: Vec<String>,
    /// Comma-separated methods: dsb, smc, nuts, sequential.
    #[arg(long, value_delimiter = ',', value_enum, default_values_t = [Method::Dsb, Method::Smc, Method::Nuts, Method::Sequential])]
    pub methods: Vec<Method>,
    /// Run every method as it is (`none`), on the Laplace-whitened target (`laplace`), or both
    /// (`none,laplace`; rows labelled `+laplace`).
    #[arg(long, value_delimiter = ',', default_value = "none")]
    pub precondition: Vec<String>,
    /// Seeds per (target, method): 0, 1, …
    #[arg(long, default_value_t = 3)]
    pub seeds: u64,
    /// Work per run: smoke (seconds), quick (minutes for the table), full (recommended settings).
    #[arg(long, value_enum, default_value_t = Budget::Quick)]
    pub budget: Budget,
    /// Output directory.
    #[arg(long, default_value = "bench-results")]
    pub out: PathBuf,
    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,
}

/// Runs `dsb bench`.
pub fn run(a: BenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(a.seeds >= 1, "--seeds must be at least 1");
    anyhow::ensure!(!a.methods.is_empty(), "--methods: give at least one method");
    // Build every target first, so that a typo fails before hours of runs.
    let targets = a
        .targets
        .iter()
        .map(|name| {
            builtin_target(name.trim(), &TargetOptions::default()).map(Arc::<dyn Target>::from)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let variants = a
        .precondition
        .iter()
        .map(|p| match p.trim() {
            "none" => Ok(false),
            "laplace" => Ok(true),
            other => anyhow::bail!("--precondition {other}: use none, laplace or none,laplace"),
        })
        .collect::<anyhow::Result<Vec<bool>>>()?;
    std::fs::create_dir_all(&a.out)
        .with_context(|| format!("cannot create the output directory {}", a.out.display()))?;
    let total = targets.len() as u64 * a.methods.len() as u64 * variants.len() as u64 * a.seeds;
    let pb = bar(total, "bench", a.quiet);
    let mut records: Vec<RunRecord> = Vec::new();
    let mut failures = Vec::new();
    for t in &targets {
        for &laplace in &variants {
            for &m in &a.methods {
                for seed in 0..a.seeds {
                    let label = format!(
                        "{} {m:?}{} seed {seed}",
                        t.name(),
                        if laplace { "+laplace" } else { "" }
                    );
                    pb.set_message(label.clone());
                    match run_one(t.clone(), m, a.budget, seed, laplace) {
                        Ok(r) => records.push(r),
                        Err(e) => failures.push(format!("{label}: {e:#}")),
                    }
                    pb.inc(1);
                    write_results(&a, &records, &failures)?;
                }
            }
        }
    }
    pb.finish_and_clear();
    let table = write_results(&a, &records, &failures)?;
    println!("{table}");
    for f in &failures {
        eprintln!("failed: {f}");
    }
    println!(
        "wrote {} and {}",
        a.out.join("bench.md").display(),
        a.out.join("bench.json").display()
    );
    anyhow::ensure!(
        failures.is_empty(),
        "{} runs failed (listed above)",
        failures.len()
    );
    Ok(())
}

/// Writes the table and the JSON (atomically, after every run, so an interrupted bench keeps
/// what it finished); returns the table.
fn write_results(
    a: &BenchArgs,
    records: &[RunRecord],
    failures: &[String],
) -> anyhow::Result<String> {
    let rows = aggregate(records);
    let table = markdown_table(&rows);
    let md = format!(
        "Budget `{}`, {} seed(s) per cell; errors are |log Ẑ − reference|, moment errors in \
         reference posterior sds.\n\n{table}",
        super::kebab(&a.budget),
        a.seeds
    );
    crate::io::atomic_write(&a.out.join("bench.md"), md.as_bytes())?;
    let json = serde_json::json!({
        "budget": a.budget,
        "seeds": a.seeds,
        "rows": rows,
        "runs": records,
        "failures": failures,
    });
    crate::io::atomic_write(
        &a.out.join("bench.json"),
        serde_json::to_string_pretty(&json)?.as_bytes(),
    )?;
    Ok(table)
}
