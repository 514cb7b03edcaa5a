//! `dsb targets`: the built-in targets.

use crate::target::builtin_targets;

/// Arguments of `dsb targets`.
#[derive(Debug, clap::Args)]
pub struct TargetsArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Lists the built-in targets.
pub fn run(args: TargetsArgs) -> anyhow::Result<()> {
    let list = builtin_targets();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(());
    }
    println!("{:<14} {:>5} {:>12}  description", "name", "dim", "log Z");
    for t in list {
        let dim = t.dim.map_or("any".to_string(), |d| d.to_string());
        let lz = t.log_z.map_or("unknown".to_string(), |z| format!("{z:.4}"));
        println!("{:<14} {:>5} {:>12}  {}", t.name, dim, lz, t.description);
    }
    Ok(())
}
