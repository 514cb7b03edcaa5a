//! Named trainable parameters, initialised from a seeded generator and saved as safetensors.
//!
//! candle's CPU generator cannot be seeded, so every initial weight is drawn here from a
//! `rand` generator and copied into a [`candle_core::Var`].

use crate::error::{DsbError, Result};
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{Conv2dConfig, Linear};

use std::collections::HashMap;
use std::path::Path;

/// How a layer's weights start.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Init {
    /// Uniform on ±1/√fan_in for weights and biases (PyTorch's default for linear layers).
    Default,
    /// All zeros: the layer's output starts at exactly zero.
    Zero,
}

/// `n` initial values: uniform on ±`bound` from `rng`, or zeros.
fn draw(init: Init, bound: f32, n: usize, rng: &mut impl rand::Rng) -> Vec<f32> {
    match init {
        Init::Default => (0..n).map(|_| rng.random_range(-bound..bound)).collect(),
        Init::Zero => vec![0.0; n],
    }
}

/// An ordered collection of named variables.
#[derive(Debug, Default)]
pub struct ParamStore {
    vars: Vec<(String, Var)>,
}

impl ParamStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// A new linear layer `in_dim → out_dim` whose weight and bias are registered under
    /// `name.weight` and `name.bias`.
    pub fn linear(
        &mut self,
        name: &str,
        in_dim: usize,
        out_dim: usize,
        init: Init,
        rng: &mut impl rand::Rng,
        device: &Device,
    ) -> Result<Linear> {
        let bound = 1.0 / (in_dim as f32).sqrt();
        let w = draw(init, bound, in_dim * out_dim, rng);
        let w = self.register(&format!("{name}.weight"), w, &[out_dim, in_dim], device)?;
        let b = draw(init, bound, out_dim, rng);
        let b = self.register(&format!("{name}.bias"), b, &[out_dim], device)?;
        Ok(Linear::new(w, Some(b)))
    }

    /// A new 2-D convolution `in_channels → out_channels` with a square `kernel`, acting on
    /// `[batch, in_channels, h, w]`. Weight `[out_channels, in_channels, kernel, kernel]` and bias
    /// `[out_channels]` are registered under `name.weight` and `name.bias`; with
    /// [`Init::Default`] both are uniform on ±1/√(in_channels·kernel²) (PyTorch's default).
    #[allow(clippy::too_many_arguments)]
    pub fn conv2d(
        &mut self,
        name: &str,
        in_channels: usize,
        out_channels: usize,
        kernel: usize,
        config: Conv2dConfig,
        init: Init,
        rng: &mut impl rand::Rng,
        device: &Device,
    ) -> Result<super::Conv2d> {
        let fan_in = in_channels * kernel * kernel;
        let bound = 1.0 / (fan_in as f32).sqrt();
        let w = draw(init, bound, out_channels * fan_in, rng);
        let w = self.register(
            &format!("{name}.weight"),
            w,
            &[out_channels, in_channels, kernel, kernel],
            device,
        )?;
        let b = draw(init, bound, out_channels, rng);
        let b = self.register(&format!("{name}.bias"), b, &[out_channels], device)?;
        Ok(super::Conv2d::new(w, Some(b), config))
    }

    /// A new group normalisation over `channels` channels in `groups` groups (which must divide
    /// `channels`), acting on `[batch, channels, ...]`. Its scale starts at one and its shift at
    /// zero, registered under `name.weight` and `name.bias`. candle's `GroupNorm` is built from
    /// ordinary tensor operations, so gradients flow through it (unlike the fused `LayerNorm`).
    pub fn group_norm(
        &mut self,
        name: &str,
        groups: usize,
        channels: usize,
        device: &Device,
    ) -> Result<super::GroupNorm> {
        let w = self.register(
            &format!("{name}.weight"),
            vec![1.0; channels],
            &[channels],
            device,
        )?;
        let b = self.register(
            &format!("{name}.bias"),
            vec![0.0; channels],
            &[channels],
            device,
        )?;
        super::GroupNorm::new(w, b, groups, 1e-5)
    }

    /// A free parameter vector registered under `name` with the given initial values; returns
    /// its tensor (for per-step quantities such as learned step sizes).
    pub fn vector(&mut self, name: &str, values: Vec<f32>, device: &Device) -> Result<Tensor> {
        let n = values.len();
        self.register(name, values, &[n], device)
    }

    /// Registers a variable with the given values and shape; returns its tensor.
    fn register(
        &mut self,
        name: &str,
        values: Vec<f32>,
        shape: &[usize],
        device: &Device,
    ) -> Result<Tensor> {
        let var = Var::from_tensor(&Tensor::from_vec(values, shape, device)?)?;
        let t = var.as_tensor().clone();
        self.vars.push((name.to_string(), var));
        Ok(t)
    }

    /// All variables, for the optimiser.
    pub fn vars(&self) -> Vec<Var> {
        self.vars.iter().map(|(_, v)| v.clone()).collect()
    }

    /// Names and variables in registration order.
    pub fn named(&self) -> &[(String, Var)] {
        &self.vars
    }

    /// Total number of scalar parameters.
    pub fn count(&self) -> usize {
        self.vars.iter().map(|(_, v)| v.elem_count()).sum()
    }

    /// Current values as plain tensors keyed by name (a snapshot, not linked to the variables).
    pub fn snapshot(&self) -> Result<HashMap<String, Tensor>> {
        self.vars
            .iter()
            .map(|(n, v)| Ok((n.clone(), v.as_tensor().copy()?)))
            .collect()
    }

    /// Overwrites the variables with `values` (every name must be present with the right shape).
    pub fn assign(&self, values: &HashMap<String, Tensor>, source: &Path) -> Result<()> {
        for (name, var) in &self.vars {
            let t = values.get(name).ok_or_else(|| {
                DsbError::bad_file(
                    source,
                    format!(
                        "missing parameter '{name}'; the file was saved by a different network"
                    ),
                )
            })?;
            if t.dims() != var.dims() {
                return Err(DsbError::bad_file(
                    source,
                    format!(
                        "parameter '{name}' has shape {:?}, the network expects {:?}; \
                         the settings file does not match the weights",
                        t.dims(),
                        var.dims()
                    ),
                ));
            }
            let t = t.to_dtype(DType::F32)?;
            let finite = t
                .flatten_all()?
                .to_vec1::<f32>()?
                .iter()
                .all(|v| v.is_finite());
            if !finite {
                return Err(DsbError::bad_file(
                    source,
                    format!(
                        "parameter '{name}' holds non-finite values (NaN or infinity): the file \
                         is damaged or was saved from a diverged run; retrain it"
                    ),
                ));
            }
            var.set(&t.to_device(var.device())?)?;
        }
        Ok(())
    }

    /// Writes all variables to a safetensors file, atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        let snap = self.snapshot()?;
        crate::fsutil::atomic_write_with(path, |tmp| {
            candle_core::safetensors::save(&snap, tmp).map_err(DsbError::from)
        })
    }

    /// Reads variables from a safetensors file written by [`ParamStore::save`].
    pub fn load(&self, path: &Path) -> Result<()> {
        self.assign(&read_safetensors(path)?, path)
    }
}

/// Every tensor of a safetensors file, on the CPU, with a clear error for a missing or unreadable
/// file.
pub fn read_safetensors(path: &Path) -> Result<HashMap<String, Tensor>> {
    if !path.exists() {
        return Err(DsbError::bad_file(path, "no such file"));
    }
    candle_core::safetensors::load(path, &Device::Cpu)
        .map_err(|e| DsbError::bad_file(path, format!("not a readable safetensors file ({e})")))
}
