//! The command-line interface: one file per subcommand, thin over the library.

mod progress;
mod sample;
mod summary;
mod targets;

use clap::{Parser, Subcommand};

/// dsb: learn diffusion samplers for unnormalised densities and estimate their normalising constant.
#[derive(Debug, Parser)]
#[command(name = "dsb", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Train a diffusion sampler on a target, draw weighted samples, and report log Z, ELBO, ESS.
    Sample(sample::SampleArgs),
    /// List the built-in targets with their dimension and known log Z.
    Targets(targets::TargetsArgs),
}

/// Parses the command line and runs it.
pub fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Sample(a) => sample::run(a),
        Command::Targets(a) => targets::run(a),
    }
}
