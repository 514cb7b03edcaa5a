//! Saving and loading a trained sampler: safetensors weights plus a JSON settings file.

use super::{DiffusionSampler, SamplerConfig};
use crate::error::{DsbError, Result};
use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
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
        let mut snap = self.weights()?;
        // The settings again, inside the weights file, so that an edited or mismatched JSON
        // (e.g. another `steps`, which no weight's shape shows) is caught on loading.
        let bytes = json.as_bytes().to_vec();
        let n = bytes.len();
        snap.insert(
            SETTINGS_TENSOR.into(),
            Tensor::from_vec(bytes, n, &Device::Cpu)?,
        );
        crate::fsutil::atomic_write_with(path, |tmp| {
            candle_core::safetensors::save(&snap, tmp).map_err(DsbError::from)
        })?;
        crate::fsutil::atomic_write(&settings_path(path), json.as_bytes())
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
        let values = crate::nn::read_safetensors(path)?;
        if let Some(t) = values.get(SETTINGS_TENSOR) {
            check_settings_agree(&settings, t, &sp, path)?;
        }
        let mut sampler = Self::new(settings.dim, settings.config.clone(), 0, device)?;
        sampler.assign_weights(&values, settings.learned_forward, path)?;
        sampler.refinements = settings.ipf_iterations;
        Ok((sampler, settings))
    }

    /// Copies of the weights of both networks (`backward.*`, and `forward.*` once IPF has added
    /// a learned forward drift).
    pub(crate) fn weights(&self) -> Result<HashMap<String, Tensor>> {
        let mut snap = self.params.snapshot()?;
        if let Some(f) = &self.forward {
            snap.extend(f.params.snapshot()?);
        }
        Ok(snap)
    }

    /// Sets the weights from `values` (read from `source`); with `forward`, adds the learned
    /// forward drift first and sets its weights too.
    pub(crate) fn assign_weights(
        &mut self,
        values: &HashMap<String, Tensor>,
        forward: bool,
        source: &Path,
    ) -> Result<()> {
        self.params.assign(values, source)?;
        if forward {
            self.enable_forward(0)?;
            if let Some(f) = &self.forward {
                f.params.assign(values, source)?;
            }
        }
        Ok(())
    }
}

/// Name of the tensor (the settings' JSON as bytes) that [`DiffusionSampler::save`] adds to the
/// weights file. Files saved before it existed load without the check.
const SETTINGS_TENSOR: &str = "dsb.settings";

/// Compares the settings file with the copy saved in the weights file; any difference is an
/// error naming the fields that differ.
fn check_settings_agree(
    settings: &SavedSettings,
    stored: &Tensor,
    settings_file: &Path,
    weights: &Path,
) -> Result<()> {
    let bytes = stored.to_dtype(candle_core::DType::U8)?.to_vec1::<u8>()?;
    let saved: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
        DsbError::bad_file(weights, format!("its saved settings are unreadable ({e})"))
    })?;
    let given = serde_json::to_value(settings).expect("settings serialise");
    let differ = crate::fsutil::json_differences(&given, &saved, "here", "in the weights");
    if differ.is_empty() {
        return Ok(());
    }
    Err(DsbError::bad_file(
        settings_file,
        format!(
            "disagrees with the settings the weights {} were trained with ({}); the file was \
             edited or belongs to other weights: restore it or retrain",
            weights.display(),
            differ.join("; ")
        ),
    ))
}

/// The settings file that belongs to a weights file: same path, extension `.json`.
pub fn settings_path(weights: &Path) -> std::path::PathBuf {
    weights.with_extension("json")
}
