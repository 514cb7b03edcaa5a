//! The command-line interface: one file per subcommand, thin over the library.

mod baseline;
mod bench;
mod checks;
mod eval;
mod fit;
mod fit_report;
mod generate;
mod progress;
mod refine;
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
    Sample(Box<sample::SampleArgs>),
    /// List the built-in targets with their dimension and known log Z.
    Targets(targets::TargetsArgs),
    /// Run methods (dsb, smc, nuts) on targets over seeds and write a comparison table.
    Bench(bench::BenchArgs),
    /// Fit a generative model to data (DDPM-style, refined into a Schrödinger bridge by IPF).
    Fit(Box<fit::FitArgs>),
    /// Draw points from a model fitted by `dsb fit`.
    Generate(generate::GenerateArgs),
    /// Evaluate a fitted model: classifier-Fréchet distance and bits/dim for images, MMD and
    /// energy distance for points.
    Eval(eval::EvalArgs),
    /// Train the small digit classifier whose features `dsb eval` compares (the fixed recipe).
    TrainClassifier(eval::TrainClassifierArgs),
}

/// The device named by `--device`: `cpu`, or `cuda` (GPU 0) in a build with the `cuda` feature.
pub fn device(name: &str) -> anyhow::Result<candle_core::Device> {
    match name {
        "cpu" => Ok(candle_core::Device::Cpu),
        "cuda" if candle_core::utils::cuda_is_available() => Ok(candle_core::Device::new_cuda(0)?),
        "cuda" => anyhow::bail!(
            "--device cuda: this dsb was built without GPU support; rebuild with \
             `cargo build --release --features cuda` (needs the CUDA toolkit's nvcc)"
        ),
        other => anyhow::bail!("--device {other}: unknown device; use cpu or cuda"),
    }
}

/// The name a value has on the command line (`smc`, `log-var`, `smoke`), for messages.
pub fn kebab(v: &impl clap::ValueEnum) -> String {
    v.to_possible_value()
        .map(|p| p.get_name().to_string())
        .unwrap_or_default()
}

/// Parses the command line and runs it.
pub fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Sample(a) => sample::run(*a),
        Command::Targets(a) => targets::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Fit(a) => fit::run(*a),
        Command::Generate(a) => generate::run(a),
        Command::Eval(a) => eval::run(a),
        Command::TrainClassifier(a) => eval::run_train_classifier(a),
    }
}
