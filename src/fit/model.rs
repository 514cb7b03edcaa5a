//! A fitted generative model: the backward network (and, after IPF, the forward network) with
//! the kernels and standardisation they were trained with; sampling and path simulation.

use super::net::{NetworkSpec, TimeNet};
use super::normalise::Normalisation;
use crate::data::Points;
use crate::error::{DsbError, Result};
use crate::process::{Kernels, Parametrisation, StepKernel};
use crate::process::{ReferenceKind, Schedule, TimeGrid};
use crate::sampler::normal_tensor;
use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// What defines a model apart from its weights (saved in `model.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelSettings {
    /// The data set it was fitted to, as named to [`crate::data::load`].
    pub data: String,
    /// Shape of one example: `[d]` for points.
    pub example_shape: Vec<usize>,
    /// The network of both processes.
    pub network: NetworkSpec,
    /// The reference process of IPF iteration 0.
    pub reference: ReferenceKind,
    /// Time steps N.
    pub steps: usize,
    /// Horizon T.
    pub horizon: f64,
    /// Spread of the steps over [0, T].
    pub schedule: Schedule,
    /// t_1 of the geometric schedule, γ_min of the symmetric one (unused by the others).
    pub first_step: f64,
    /// Prior scale σ in standardised coordinates: always 1 (the prior is N(0, I) there, and
    /// N(mean, diag(scale²)) in data coordinates).
    pub sigma: f64,
    /// The standardisation of the data.
    pub normalisation: Normalisation,
    /// For a bridge between two data sets ([`crate::fit::Fit::bridge`]): the data set at
    /// t = T, where the backward process starts, as named to [`crate::data::load`]. `None`: the
    /// backward process starts at the prior N(0, I).
    #[serde(default)]
    pub to: Option<String>,
}

impl ModelSettings {
    /// Numbers per example.
    pub fn dim(&self) -> usize {
        self.example_shape.iter().product()
    }

    /// Checks that the settings describe a model (a hand-edited `model.json` may not).
    pub fn validate(&self) -> Result<()> {
        let positive = |v: f64| v > 0.0 && v.is_finite();
        let norm = &self.normalisation;
        if self.steps == 0 || !positive(self.horizon) || !positive(self.first_step) {
            return Err(DsbError::InvalidInput(format!(
                "model settings: steps ({}), horizon ({}) and first step ({}) must be positive",
                self.steps, self.horizon, self.first_step
            )));
        }
        if self.dim() == 0
            || norm.mean.len() != self.dim()
            || norm.scale.len() != self.dim()
            || !norm.scale.iter().all(|s| positive(*s))
        {
            return Err(DsbError::InvalidInput(format!(
                "model settings: the standardisation must have one mean and one positive scale \
                 per coordinate of examples of shape {:?}",
                self.example_shape
            )));
        }
        self.network.validate()
    }

    /// Whether the examples are images (shape `[C, H, W]`).
    pub fn is_image(&self) -> bool {
        self.example_shape.len() == 3
    }

    /// The quantisation bin of the data for the likelihood bound: Δ = 2/255 for images (8-bit
    /// pixels b scaled to b/127.5 − 1), none for points.
    pub fn dequantise_bin(&self) -> Option<f64> {
        self.is_image().then_some(2.0 / 255.0)
    }

    /// The time grid.
    pub fn grid(&self) -> TimeGrid {
        TimeGrid::new(self.steps, self.horizon, self.schedule, self.first_step)
    }
}

/// How [`FitModel::generate`] samples.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GenerateOptions {
    /// Steps of the sampler (default: the model's N). Fewer steps subsample the grid
    /// ([`Kernels::backward_steps`]); only for a model whose backward network was fitted against
    /// the reference (IPF iteration 0).
    pub steps: Option<usize>,
    /// Add the last kernel's noise to x_0 (default: return its mean, the usual DDPM/DSB output;
    /// with few steps the last kernel's noise would blur the samples by s_0).
    pub final_noise: bool,
}

/// A generative model from data: backward process Q from N(0, I) to the (standardised) data.
#[derive(Debug)]
pub struct FitModel {
    settings: ModelSettings,
    kernels: Kernels,
    pub(crate) backward: Box<dyn TimeNet>,
    pub(crate) forward: Option<Box<dyn TimeNet>>,
    /// The IPF iteration whose backward half-step trained the backward network.
    pub(crate) backward_iteration: usize,
    device: Device,
}

/// Rows per network call for examples of `dim` numbers: 4096 for points, fewer for images (a
/// UNet keeps every activation of a call alive), at least 1.
pub(crate) fn chunk_rows(dim: usize) -> usize {
    ((1usize << 17) / dim.max(1)).clamp(1, 4096)
}

impl FitModel {
    /// An untrained model (it samples the prior), with the backward network's weights drawn from
    /// a generator seeded by `seed`.
    pub fn new(settings: ModelSettings, seed: u64, device: &Device) -> Result<Self> {
        settings.validate()?;
        let shape = settings.example_shape.clone();
        let backward = settings
            .network
            .build("backward", &shape, seed ^ 0xb4c_4a2d, device)?;
        Ok(Self {
            kernels: Kernels::new(
                settings.reference,
                settings.grid(),
                Parametrisation::Tweedie,
            ),
            settings,
            backward,
            forward: None,
            backward_iteration: 0,
            device: device.clone(),
        })
    }

    /// Adds the forward network (if absent), zero at the start so that the forward process is
    /// still the reference, with weights from a generator seeded by `seed`.
    pub fn enable_forward(&mut self, seed: u64) -> Result<()> {
        if self.forward.is_none() {
            let shape = self.settings.example_shape.clone();
            self.forward = Some(self.settings.network.build(
                "forward",
                &shape,
                seed ^ 0xf0e_7a3d,
                &self.device,
            )?);
        }
        Ok(())
    }

    /// The settings.
    pub fn settings(&self) -> &ModelSettings {
        &self.settings
    }
    /// The kernels.
    pub fn kernels(&self) -> &Kernels {
        &self.kernels
    }
    /// Numbers per example.
    pub fn dim(&self) -> usize {
        self.settings.dim()
    }
    /// The device of the networks.
    pub fn device(&self) -> &Device {
        &self.device
    }
    /// The IPF iteration that trained the backward network (0: fitted against the reference).
    pub fn backward_iteration(&self) -> usize {
        self.backward_iteration
    }
    /// Whether the forward process is learned.
    pub fn has_forward(&self) -> bool {
        self.forward.is_some()
    }
    /// Trainable parameters of both networks.
    pub fn parameter_count(&self) -> usize {
        self.backward.params().count() + self.forward.as_ref().map_or(0, |f| f.params().count())
    }

    /// Current weights of both networks by name (`backward.*`, `forward.*`).
    pub fn weights(&self) -> Result<HashMap<String, Tensor>> {
        let mut w = self.backward.params().snapshot()?;
        if let Some(f) = &self.forward {
            w.extend(f.params().snapshot()?);
        }
        Ok(w)
    }

    /// A tensor holding the time `u` for `rows` states.
    pub(crate) fn times(&self, u: f64, rows: usize) -> Result<Tensor> {
        Ok(Tensor::full(u as f32, rows, &self.device)?)
    }

    /// The mean of the backward kernel `step` at states `x` (`[B, d]`).
    pub fn backward_mean(&self, x: &Tensor, step: &StepKernel) -> Result<Tensor> {
        self.backward_mean_on(&self.kernels, x, step)
    }

    /// The mean of the backward kernel `step` of `kernels` (the model's own, or those of a
    /// finer grid of the same process) at states `x`.
    pub(crate) fn backward_mean_on(
        &self,
        kernels: &Kernels,
        x: &Tensor,
        step: &StepKernel,
    ) -> Result<Tensor> {
        let t = self.times(kernels.normalised_time(step.from), x.dim(0)?)?;
        let g = self.backward.forward(x, &t)?;
        Ok(((x * step.state)? + (g * step.net)?)?)
    }

    /// The mean of the forward kernel of step k at states `x`.
    pub fn forward_mean(&self, x: &Tensor, k: usize) -> Result<Tensor> {
        let ax = (x * self.kernels.decay(k))?;
        match &self.forward {
            Some(f) => {
                let t = self.times(self.kernels.normalised_time(k), x.dim(0)?)?;
                Ok((ax + (f.forward(x, &t)? * self.kernels.forward(k).net)?)?)
            }
            None => Ok(ax),
        }
    }

    /// `rows` standard normal rows (seeded).
    pub(crate) fn noise(&self, rows: usize, rng: &mut impl rand::Rng) -> Result<Tensor> {
        normal_tensor(rng, rows, self.dim(), &self.device)
    }

    /// Paths of the backward process from the prior, x_0..x_N (each `[rows, d]`, detached).
    pub fn simulate_backward(&self, rows: usize, rng: &mut impl rand::Rng) -> Result<Vec<Tensor>> {
        let x_n = self.noise(rows, rng)?;
        self.simulate_backward_from(&x_n, rng)
    }

    /// Paths of the backward process from the states `x_n` at t = T (`[rows, d]`,
    /// standardised), x_0..x_N (detached): a bridge's paths from its far data set.
    pub fn simulate_backward_from(
        &self,
        x_n: &Tensor,
        rng: &mut impl rand::Rng,
    ) -> Result<Vec<Tensor>> {
        let n = self.kernels.steps();
        let rows = x_n.dim(0)?;
        let mut x = x_n.detach();
        let mut states = vec![x.clone()];
        for k in (0..n).rev() {
            let step = self.kernels.backward(k);
            let eps = self.noise(rows, rng)?;
            x = (self.backward_mean(&x, &step)? + (eps * step.sd)?)?.detach();
            states.push(x.clone());
        }
        states.reverse();
        Ok(states)
    }

    /// Paths of the forward process from `x0` (`[rows, d]`, standardised), x_0..x_N (detached).
    pub fn simulate_forward(&self, x0: &Tensor, rng: &mut impl rand::Rng) -> Result<Vec<Tensor>> {
        let mut x = x0.detach();
        let mut states = vec![x.clone()];
        for k in 0..self.kernels.steps() {
            let eps = self.noise(x.dim(0)?, rng)?;
            x = (self.forward_mean(&x, k)? + (eps * self.kernels.sd(k))?)?.detach();
            states.push(x.clone());
        }
        Ok(states)
    }

    /// `n` samples in standardised coordinates, `[n, d]`.
    pub fn generate_standardised(
        &self,
        n: usize,
        opts: &GenerateOptions,
        rng: &mut impl rand::Rng,
    ) -> Result<Tensor> {
        if let Some(to) = &self.settings.to {
            return Err(DsbError::InvalidInput(format!(
                "this model is a bridge from '{}' to '{to}': its backward process starts at \
                 points of '{to}', not at N(0, I), so it does not generate from noise. Its \
                 transports are in the `dsb bridge` output (backward.csv, forward.csv); in the \
                 library, FitModel::transport_backward",
                self.settings.data
            )));
        }
        let own = self.kernels.steps();
        let steps = opts.steps.unwrap_or(own);
        if steps != own && self.backward_iteration > 0 {
            return Err(DsbError::InvalidInput(format!(
                "--steps {steps}: this model was refined by IPF (iteration {}), and its \
                 backward kernels are tied to its own {own}-step grid; generate with {own} steps \
                 (only a model of IPF iteration 0 can use fewer)",
                self.backward_iteration
            )));
        }
        let plan = self.kernels.backward_steps(steps)?;
        let mut out = Vec::new();
        let mut done = 0;
        while done < n {
            let rows = chunk_rows(self.dim()).min(n - done);
            let x = self.noise(rows, rng)?;
            out.push(self.run_backward(x, &plan, opts.final_noise, rng)?);
            done += rows;
        }
        if out.is_empty() {
            return Ok(Tensor::zeros((0, self.dim()), DType::F32, &self.device)?);
        }
        Ok(Tensor::cat(&out, 0)?)
    }

    /// The backward kernels `plan` from the states `x`; the last kernel adds its noise only
    /// with `final_noise`.
    fn run_backward(
        &self,
        mut x: Tensor,
        plan: &[StepKernel],
        final_noise: bool,
        rng: &mut impl rand::Rng,
    ) -> Result<Tensor> {
        let rows = x.dim(0)?;
        for (i, step) in plan.iter().enumerate() {
            let mean = self.backward_mean(&x, step)?;
            let last = i + 1 == plan.len();
            x = if last && !final_noise {
                mean
            } else {
                (mean + (self.noise(rows, rng)? * step.sd)?)?
            }
            .detach();
        }
        Ok(x)
    }

    /// A bridge's transport from its far end: the backward process from the rows `x_n`
    /// (standardised, `[rows, d]`) to t = 0, returning x_0 (the last kernel's mean unless
    /// `final_noise`), in chunks.
    pub fn transport_backward(
        &self,
        x_n: &Tensor,
        final_noise: bool,
        rng: &mut impl rand::Rng,
    ) -> Result<Tensor> {
        let plan = self.kernels.backward_steps(self.kernels.steps())?;
        let mut out = Vec::new();
        for x in chunks(x_n, chunk_rows(self.dim()))? {
            out.push(self.run_backward(x, &plan, final_noise, rng)?);
        }
        Ok(Tensor::cat(&out, 0)?)
    }

    /// The forward process from the rows `x0` (standardised) to t = T, returning x_N with every
    /// kernel's noise: one draw of the bridge's coupling (x_0, x_N) per row, in chunks.
    pub fn transport_forward(&self, x0: &Tensor, rng: &mut impl rand::Rng) -> Result<Tensor> {
        let mut out = Vec::new();
        for x in chunks(x0, chunk_rows(self.dim()))? {
            let path = self.simulate_forward(&x, rng)?;
            out.push(path.last().expect("N ≥ 1 states").clone());
        }
        Ok(Tensor::cat(&out, 0)?)
    }

    /// `n` samples in data coordinates.
    pub fn generate(
        &self,
        n: usize,
        opts: &GenerateOptions,
        rng: &mut impl rand::Rng,
    ) -> Result<Points> {
        self.to_data(&self.generate_standardised(n, opts, rng)?)
    }

    /// Points (data coordinates) as a standardised tensor `[n, d]` on the model's device.
    pub(crate) fn standardise(&self, p: &Points) -> Result<Tensor> {
        Ok(Tensor::from_vec(
            self.settings.normalisation.apply(&p.data),
            (p.len(), p.dim),
            &self.device,
        )?)
    }

    /// A standardised tensor `[n, d]` as points in data coordinates.
    pub(crate) fn to_data(&self, x: &Tensor) -> Result<Points> {
        let (n, d) = x.dims2()?;
        let v = x.flatten_all()?.to_device(&Device::Cpu)?.to_vec1::<f32>()?;
        Ok(Points::new(self.settings.normalisation.invert(&v), n, d)?)
    }
}

/// The rows of `x` in consecutive chunks of at most `size` rows (at least one chunk).
fn chunks(x: &Tensor, size: usize) -> Result<Vec<Tensor>> {
    let n = x.dim(0)?;
    if n == 0 {
        return Ok(vec![x.clone()]);
    }
    let size = size.max(1);
    (0..n)
        .step_by(size)
        .map(|s| Ok(x.narrow(0, s, size.min(n - s))?))
        .collect()
}
