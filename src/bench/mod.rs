//! `dsb bench`: every method on every target over several seeds, with the same settings for all
//! runs of a method, summarised as a Markdown table and JSON.
//!
//! Per run: log Ẑ and |log Ẑ − log Z| where a reference exists, the normalised ESS of the
//! returned samples, posterior-moment errors in reference standard deviations where the target
//! has reference moments, wall time and target gradient evaluations (per point). Per target and
//! method: the mean and standard deviation over seeds.

mod report;
mod run;

pub use report::{BenchRow, aggregate, markdown_table, published_figure};
pub use run::{Budget, RunRecord, run_one};
