//! Checkpoints of a fit, in the format of [`crate::train::checkpoint`]: `model.safetensors` holds
//! both networks (`backward.*` and `forward.*`; the EMA of a network whose half-step is in
//! progress), `model.json` is [`SavedFit`] (network kind and sizes, reference, steps, horizon,
//! schedule, σ, standardisation, data, and the progress: IPF iteration reached, gradient steps,
//! optimiser step, per-iteration rows), and `train-state.safetensors` holds what continuing a
//! half-step needs. The global gradient step is the marker of both weight files.

use super::config::{DataSpec, FitConfig};
use super::model::{FitModel, ModelSettings};
use super::progress::{Half, Pending, Phase, Progress};
use super::setup::Ends;
use super::train::Fit;
use crate::error::{DsbError, Result};
use crate::nn::ParamStore;
use crate::train::Optimiser;
use crate::train::checkpoint::{
    BINOMIAL_KIND, MODEL_SETTINGS, MODEL_WEIGHTS, OptimiserCounters, TRAIN_STATE, TensorMap,
    add_marker, check_marker, pack_optimiser, read_settings, read_tensors, save_tensors,
    settings_kind, unpack_optimiser,
};
use candle_core::Device;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

/// Version of the checkpoint format.
const FORMAT: u32 = 1;

/// The contents of `model.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SavedFit {
    /// Format version.
    pub format: u32,
    /// What defines the model.
    pub model: ModelSettings,
    /// The IPF iteration that trained the saved backward network.
    pub backward_iteration: usize,
    /// Whether the weights include a forward network.
    pub has_forward: bool,
    /// Last finished IPF iteration (none before iteration 0 ends).
    pub ipf_iteration_reached: Option<usize>,
    /// Where the data came from (the data at t = 0 of a bridge).
    pub data: DataSpec,
    /// Where a bridge's data at t = T came from (none for a model of one data set).
    #[serde(default)]
    pub to: Option<DataSpec>,
    /// The fit's settings.
    pub config: FitConfig,
    /// How far the run got.
    pub progress: Progress,
}

impl Fit {
    /// Writes the checkpoint into `dir`; `training` is the optimiser of the half-step in
    /// progress, if any.
    pub(crate) fn save_checkpoint(
        &self,
        dir: &Path,
        training: Option<(&Optimiser, Half)>,
    ) -> Result<()> {
        let step = self.progress.global_step;
        let mut weights = self.model.weights()?;
        let mut state = HashMap::new();
        add_marker(&mut state, step)?;
        if let Some((opt, half)) = training {
            let params = match half {
                Half::Backward => self.model.backward.params(),
                Half::Forward => self
                    .model
                    .forward
                    .as_ref()
                    .expect("forward enabled")
                    .params(),
            };
            pack_optimiser(params, &opt.state(), &mut state, &mut weights)?;
        }
        add_marker(&mut weights, step)?;
        let saved = SavedFit {
            format: FORMAT,
            model: self.model.settings().clone(),
            backward_iteration: self.model.backward_iteration,
            has_forward: self.model.has_forward(),
            ipf_iteration_reached: self.progress.rows.last().map(|r| r.iteration),
            data: self.data.clone(),
            to: self.far.as_ref().map(|f| f.spec.clone()),
            config: self.config.clone(),
            progress: self.progress.clone(),
        };
        let json = serde_json::to_string_pretty(&saved).expect("settings serialise");
        save_tensors(&dir.join(TRAIN_STATE), &state)?;
        save_tensors(&dir.join(MODEL_WEIGHTS), &weights)?;
        crate::fsutil::atomic_write(&dir.join(MODEL_SETTINGS), json.as_bytes())
    }

    /// Continues the fit checkpointed in `dir`, with its saved data unless `data` names other
    /// data (which must have the same dimension; the saved standardisation is kept).
    pub fn resume(dir: &Path, data: Option<DataSpec>, device: &Device) -> Result<Self> {
        let (model, saved) = load_model(dir, device)?;
        let data = data.unwrap_or_else(|| saved.data.clone());
        let loaded = data.load()?;
        if loaded.example_shape != model.settings().example_shape {
            return Err(DsbError::InvalidInput(format!(
                "wrong data dimension: '{}' has examples of shape {:?}, but the model was fitted \
                 to shape {:?}",
                data.name,
                loaded.example_shape,
                model.settings().example_shape
            )));
        }
        let (train, held_out) = (loaded.train, loaded.held_out);
        let mut pending = None;
        let progress = saved.progress;
        if progress.phase_step > 0 {
            let path = dir.join(TRAIN_STATE);
            let map = read_tensors(&path, "the optimiser state of an interrupted half-step")?;
            check_marker(&map, progress.global_step, &path)?;
            let params = match Phase::of(progress.phase).half {
                Half::Backward => model.backward.params(),
                Half::Forward => model
                    .forward
                    .as_ref()
                    .ok_or_else(|| {
                        DsbError::bad_file(&path, "a forward half-step without a forward network")
                    })?
                    .params(),
            };
            pending = Some(read_pending(
                &map,
                params,
                &progress,
                saved.config.ema > 0.0,
                &path,
            )?);
        }
        let far = match saved.to {
            Some(spec) => {
                let b = spec.load()?;
                Some(Ends {
                    spec,
                    train: b.train,
                    held_out: b.held_out,
                })
            }
            None => None,
        };
        let near = Ends {
            spec: data,
            train,
            held_out,
        };
        Fit::assemble(model, saved.config, near, far, progress, pending)
    }
}

/// The optimiser state of the network `params` from a train-state file.
fn read_pending(
    map: &TensorMap,
    params: &ParamStore,
    progress: &Progress,
    ema: bool,
    path: &Path,
) -> Result<Pending> {
    let counters = OptimiserCounters {
        adam_step: progress.optimiser_step,
        ema_updates: ema.then_some(progress.ema_updates),
    };
    let (weights, optimiser) = unpack_optimiser(map, params, counters, path)?;
    Ok(Pending { weights, optimiser })
}

/// Loads the model saved in `dir` (by `dsb fit`) for sampling, with its settings.
pub fn load_model(dir: &Path, device: &Device) -> Result<(FitModel, SavedFit)> {
    let (sp, value) = read_settings(dir)?;
    if settings_kind(&value) == Some(BINOMIAL_KIND) {
        return Err(DsbError::bad_file(
            &sp,
            "a binomial-diffusion model of binary data (dsb fit --binarize); this needs a \
             Gaussian diffusion model (dsb generate and dsb eval accept both)",
        ));
    }
    let saved: SavedFit = serde_json::from_value(value)
        .map_err(|e| DsbError::bad_file(&sp, format!("not a dsb fit settings file ({e})")))?;
    if saved.format != FORMAT {
        return Err(DsbError::bad_file(
            &sp,
            format!("unsupported format version {}", saved.format),
        ));
    }
    saved.config.validate()?;
    let mut model = FitModel::new(saved.model.clone(), saved.config.seed, device)?;
    if saved.has_forward {
        model.enable_forward(saved.config.seed)?;
    }
    let wp = dir.join(MODEL_WEIGHTS);
    let map = read_tensors(&wp, "the model's weights")?;
    check_marker(&map, saved.progress.global_step, &wp)?;
    model.backward.params().assign(&map, &wp)?;
    if let Some(f) = &model.forward {
        f.params().assign(&map, &wp)?;
    }
    model.backward_iteration = saved.backward_iteration;
    Ok((model, saved))
}
