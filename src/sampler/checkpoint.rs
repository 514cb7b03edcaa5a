//! Saving and loading a trained sampler: safetensors weights plus a JSON settings file.

use super::{DiffusionSampler, SamplerConfig};
use crate::error::{DsbError, Result};
use candle_core::Device;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// What is saved next to the weights: enough to rebuild the sampler and check it fits the target.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SavedSettings {
    /// File format version.
    pub format: u32,
    /// Name of the target it was trained on.
    pub target: String,
    /// Dimension of that target.
    pub dim: usize,
    /// The sampler's settings.
    pub config: SamplerConfig,
    /// Whether the file also holds a learned forward drift (an IPF-refined sampler), whose
    /// kernels its importance weights need.
    #[serde(default)]
    pub learned_forward: bool,
    /// IPF refinements it went through (0 for the plain diffusion sampler).
    #[serde(default)]
    pub ipf_iterations: usize,
}

impl DiffusionSampler {
    /// Saves the weights to `path` (safetensors; the learned forward drift too, if any) and the
    /// settings to `path` with extension `.json`, both written atomically.
    pub fn save(&self, path: &Path, target_name: &str) -> Result<()> {
        let settings = SavedSettings {
            format: 1,
            target: target_name.into(),
            dim: self.dim,
            config: self.config.clone(),
            learned_forward: self.forward.is_some(),
            ipf_iterations: self.refinements,
        };
        let json = serde_json::to_string_pretty(&settings).expect("settings serialise");
        let mut snap = self.params.snapshot()?;
        if let Some(f) = &self.forward {
            snap.extend(f.params.snapshot()?);
        }
        crate::io::atomic_write_with(path, |tmp| {
            candle_core::safetensors::save(&snap, tmp).map_err(DsbError::from)
        })?;
        crate::io::atomic_write(&settings_path(path), json.as_bytes())
    }

    /// Loads a sampler saved by [`DiffusionSampler::save`]. Returns it with the settings file's
    /// contents (so the caller can check the target name).
    pub fn load(path: &Path, device: &Device) -> Result<(Self, SavedSettings)> {
        let sp = settings_path(path);
        let text = std::fs::read_to_string(&sp).map_err(|e| {
            DsbError::bad_file(&sp, format!("cannot read the settings saved beside the weights ({e}); `--save FILE` writes FILE and FILE's .json"))
        })?;
        let settings: SavedSettings = serde_json::from_str(&text).map_err(|e| {
            DsbError::bad_file(&sp, format!("not a dsb sampler settings file ({e})"))
        })?;
        if settings.format != 1 {
            return Err(DsbError::bad_file(
                &sp,
                format!("unsupported format version {}", settings.format),
            ));
        }
        let mut sampler = Self::new(settings.dim, settings.config.clone(), 0, device)?;
        sampler.params.load(path)?;
        sampler.refinements = settings.ipf_iterations;
        if settings.learned_forward {
            sampler.enable_forward(0)?;
            if let Some(f) = &sampler.forward {
                f.params.load(path)?;
            }
        }
        Ok((sampler, settings))
    }
}

/// The settings file that belongs to a weights file: same path, extension `.json`.
pub fn settings_path(weights: &Path) -> std::path::PathBuf {
    weights.with_extension("json")
}
