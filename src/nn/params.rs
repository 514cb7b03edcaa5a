//! Named trainable parameters, initialised from a seeded generator and saved as safetensors.
//!
//! candle's CPU generator cannot be seeded, so every initial weight is drawn here from a
//! `rand` generator and copied into a [`candle_core::Var`].

use crate::error::{DsbError, Result};
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::Linear;
use rand::{Rng, rngs::StdRng};
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
        rng: &mut StdRng,
        device: &Device,
    ) -> Result<Linear> {
        let bound = 1.0 / (in_dim as f32).sqrt();
        let mut draw = |n: usize| -> Vec<f32> {
            match init {
                Init::Default => (0..n).map(|_| rng.random_range(-bound..bound)).collect(),
                Init::Zero => vec![0.0; n],
            }
        };
        let w = Tensor::from_vec(draw(in_dim * out_dim), (out_dim, in_dim), device)?;
        let b = Tensor::from_vec(draw(out_dim), out_dim, device)?;
        let wv = Var::from_tensor(&w)?;
        let bv = Var::from_tensor(&b)?;
        let layer = Linear::new(wv.as_tensor().clone(), Some(bv.as_tensor().clone()));
        self.vars.push((format!("{name}.weight"), wv));
        self.vars.push((format!("{name}.bias"), bv));
        Ok(layer)
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
            var.set(&t.to_dtype(DType::F32)?.to_device(var.device())?)?;
        }
        Ok(())
    }

    /// Writes all variables to a safetensors file, atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        let snap = self.snapshot()?;
        crate::io::atomic_write_with(path, |tmp| {
            candle_core::safetensors::save(&snap, tmp).map_err(DsbError::from)
        })
    }

    /// Reads variables from a safetensors file written by [`ParamStore::save`].
    pub fn load(&self, path: &Path) -> Result<()> {
        if !path.exists() {
            return Err(DsbError::bad_file(path, "no such file"));
        }
        let values = candle_core::safetensors::load(path, &Device::Cpu).map_err(|e| {
            DsbError::bad_file(path, format!("not a readable safetensors file ({e})"))
        })?;
        self.assign(&values, path)
    }
}
