//! The command-line interface: one file per subcommand, thin over the library.

mod baseline;
mod bench;
mod binary;
mod bridge;
mod bridge_images;
mod checks;
mod condition;
mod eval;
mod fit;
mod fit_report;
mod generate;
mod progress;
mod refine;
mod run_control;
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
    /// Bridge two data sets by IPF (a Schrödinger bridge: entropic optimal transport), checked
    /// against Sinkhorn.
    Bridge(Box<bridge::BridgeArgs>),
    /// Draw points from a model fitted by `dsb fit`.
    Generate(generate::GenerateArgs),
    /// Evaluate a fitted model: classifier-Fréchet distance and bits/dim for images, MMD and
    /// energy distance for points.
    Eval(eval::EvalArgs),
    /// Sample a fitted model conditioned on an observation: inpainting, denoising, observed
    /// coordinates (sequential Monte Carlo over its backward process).
    Condition(condition::ConditionArgs),
    /// Train the small digit classifier whose features `dsb eval` compares (the fixed recipe).
    TrainClassifier(eval::TrainClassifierArgs),
}

/// `--device`: where the networks run. Parsed when the command line is read, so a bad name
/// fails before any work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceArg {
    /// The CPU.
    Cpu,
    /// GPU 0, in a build with the `cuda` feature.
    Cuda,
}

impl std::str::FromStr for DeviceArg {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "cpu" => Ok(Self::Cpu),
            "cuda" => Ok(Self::Cuda),
            _ => Err("unknown device; use cpu or cuda".into()),
        }
    }
}

impl std::fmt::Display for DeviceArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Cpu => "cpu",
            Self::Cuda => "cuda",
        })
    }
}

/// The candle device for `--device`: the CPU, or GPU 0 where this build has the `cuda` feature.
pub fn device(d: DeviceArg) -> anyhow::Result<candle_core::Device> {
    match d {
        DeviceArg::Cpu => Ok(candle_core::Device::Cpu),
        DeviceArg::Cuda if candle_core::utils::cuda_is_available() => {
            Ok(candle_core::Device::new_cuda(0)?)
        }
        DeviceArg::Cuda => anyhow::bail!(
            "--device cuda: this dsb was built without GPU support; rebuild with \
             `cargo build --release --features cuda` (needs the CUDA toolkit's nvcc)"
        ),
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
        Command::Bridge(a) => bridge::run(*a),
        Command::Generate(a) => generate::run(a),
        Command::Eval(a) => eval::run(a),
        Command::Condition(a) => condition::run(a),
        Command::TrainClassifier(a) => eval::run_train_classifier(a),
    }
}
