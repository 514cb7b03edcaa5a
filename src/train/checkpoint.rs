//! The one checkpoint format of dsb's training runs (`dsb fit` and `dsb sample`): a directory
//! holding
//!
//! - [`MODEL_WEIGHTS`]: the weights that sample (the EMA of a network whose training is in
//!   progress, when one is kept);
//! - [`MODEL_SETTINGS`]: JSON with the settings and the progress of the run (written last);
//! - [`TRAIN_STATE`]: what continuing the training in progress needs beyond that: the raw
//!   weights of the network in training (`raw.NAME`), Adam's moments (`adam.m.NAME`,
//!   `adam.v.NAME`), the EMA (`ema.NAME`) and anything else the run keeps (e.g. replay chains).
//!
//! Each file is written atomically. Both weight files carry a marker tensor with the step the
//! settings file names, so a crash between two writes is detected on loading instead of mixing
//! steps. This module holds the pieces both runs share; `fit::checkpoint` and
//! `ipf::resumable` write their own settings.

use super::{AdamState, EmaState, OptimiserState};
use crate::error::{DsbError, Result};
use crate::nn::ParamStore;
use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

/// File name of the sampling weights.
pub const MODEL_WEIGHTS: &str = "model.safetensors";
/// File name of the settings and progress.
pub const MODEL_SETTINGS: &str = "model.json";
/// File name of the optimiser state.
pub const TRAIN_STATE: &str = "train-state.safetensors";
/// The `kind` in the settings of a binomial model (`crate::binomial`); Gaussian models' settings
/// have no `kind`.
pub const BINOMIAL_KIND: &str = "binomial";

/// Reads the settings file of the model directory `dir` as JSON, with the errors that name the
/// directory of `dsb fit`; returns its path and contents.
pub(crate) fn read_settings(dir: &Path) -> Result<(std::path::PathBuf, serde_json::Value)> {
    if !dir.is_dir() {
        return Err(DsbError::bad_file(
            dir,
            "no such directory; give the --out directory of `dsb fit`",
        ));
    }
    let sp = dir.join(MODEL_SETTINGS);
    let text = std::fs::read_to_string(&sp).map_err(|e| {
        DsbError::bad_file(
            &sp,
            format!(
                "cannot read the model settings ({e}); is this the --out directory of `dsb fit`?"
            ),
        )
    })?;
    let value = serde_json::from_str(&text)
        .map_err(|e| DsbError::bad_file(&sp, format!("not a dsb fit settings file ({e})")))?;
    Ok((sp, value))
}

/// The `kind` of a settings file's contents ([`BINOMIAL_KIND`], or none for Gaussian models).
pub(crate) fn settings_kind(settings: &serde_json::Value) -> Option<&str> {
    settings.get("kind").and_then(|k| k.as_str())
}
/// Name of the tensor holding the step in both weight files.
const MARKER: &str = "progress.global_step";

/// Tensors by name, as safetensors files hold them.
pub type TensorMap = HashMap<String, Tensor>;

/// Adds the marker of `step` to a weights map.
pub(crate) fn add_marker(map: &mut TensorMap, step: usize) -> Result<()> {
    map.insert(
        MARKER.to_string(),
        Tensor::new(&[step as f64], &Device::Cpu)?,
    );
    Ok(())
}

/// Reads a safetensors file of a checkpoint; `what` says what it holds, for the error when it
/// is missing.
pub(crate) fn read_tensors(path: &Path, what: &str) -> Result<TensorMap> {
    if !path.exists() {
        return Err(DsbError::bad_file(path, format!("missing ({what})")));
    }
    candle_core::safetensors::load(path, &Device::Cpu)
        .map_err(|e| DsbError::bad_file(path, format!("not a readable safetensors file ({e})")))
}

/// Checks that a weights file belongs to the step of the settings.
pub(crate) fn check_marker(map: &TensorMap, step: usize, path: &Path) -> Result<()> {
    let saved = map
        .get(MARKER)
        .map(|t| t.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>())
        .transpose()?;
    match saved.as_deref() {
        Some([s]) if *s == step as f64 => Ok(()),
        _ => Err(DsbError::bad_file(
            path,
            format!(
                "belongs to another step than {MODEL_SETTINGS} (step {step}); the run was \
                 interrupted while writing its checkpoint: delete the directory and start again"
            ),
        )),
    }
}

/// Writes a safetensors file atomically.
pub(crate) fn save_tensors(path: &Path, map: &TensorMap) -> Result<()> {
    crate::fsutil::atomic_write_with(path, |tmp| {
        candle_core::safetensors::save(map, tmp).map_err(DsbError::from)
    })
}

/// Puts the training state of the network `params` into `state` (raw weights, Adam's moments,
/// the EMA) and, when an EMA is kept, its averages into `weights` (what samples).
pub(crate) fn pack_optimiser(
    params: &ParamStore,
    opt: &OptimiserState,
    state: &mut TensorMap,
    weights: &mut TensorMap,
) -> Result<()> {
    for (i, (name, var)) in params.named().iter().enumerate() {
        state.insert(format!("raw.{name}"), var.as_tensor().copy()?);
        state.insert(format!("adam.m.{name}"), opt.adam.first[i].clone());
        state.insert(format!("adam.v.{name}"), opt.adam.second[i].clone());
        if let Some(e) = &opt.ema {
            state.insert(format!("ema.{name}"), e.shadow[i].clone());
            weights.insert(name.clone(), e.shadow[i].clone());
        }
    }
    Ok(())
}

/// The counters an [`OptimiserState`] holds beside its tensors (they go into the settings).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct OptimiserCounters {
    /// Adam updates made.
    pub adam_step: usize,
    /// EMA updates folded in (`None` without an EMA).
    pub ema_updates: Option<usize>,
}

impl OptimiserCounters {
    /// The counters of `state`.
    pub fn of(state: &OptimiserState) -> Self {
        Self {
            adam_step: state.adam.step,
            ema_updates: state.ema.as_ref().map(|e| e.updates),
        }
    }
}

/// Reads back what [`pack_optimiser`] wrote for the network `params`: its raw weights (by name)
/// and the optimiser state.
pub(crate) fn unpack_optimiser(
    map: &TensorMap,
    params: &ParamStore,
    counters: OptimiserCounters,
    path: &Path,
) -> Result<(TensorMap, OptimiserState)> {
    let get = |key: String| -> Result<Tensor> {
        map.get(&key)
            .cloned()
            .ok_or_else(|| DsbError::bad_file(path, format!("missing tensor '{key}'")))
    };
    let mut weights = HashMap::new();
    let (mut first, mut second, mut shadow) = (vec![], vec![], vec![]);
    for (name, _) in params.named() {
        weights.insert(name.clone(), get(format!("raw.{name}"))?);
        first.push(get(format!("adam.m.{name}"))?);
        second.push(get(format!("adam.v.{name}"))?);
        if counters.ema_updates.is_some() {
            shadow.push(get(format!("ema.{name}"))?);
        }
    }
    let state = OptimiserState {
        adam: AdamState {
            step: counters.adam_step,
            first,
            second,
        },
        ema: counters
            .ema_updates
            .map(|updates| EmaState { updates, shadow }),
    };
    Ok((weights, state))
}

/// The state of the run's random generator (rand's `StdRng` algorithm, ChaCha12), saved so that
/// a resumed run draws exactly what the uninterrupted run would have drawn.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RngState {
    /// The 32-byte key, in hex.
    pub seed: String,
    /// The stream number.
    pub stream: u64,
    /// Words consumed so far, in hex (a 128-bit counter).
    pub word_pos: String,
}

/// The generator of dsb's training runs: the algorithm of rand's `StdRng` (ChaCha12; the same
/// seed gives the same stream), with a state that [`RngState`] saves and restores.
pub type RunRng = rand_chacha::ChaCha12Rng;

impl RngState {
    /// The state of `rng`.
    pub fn of(rng: &RunRng) -> Self {
        let seed: String = rng.get_seed().iter().map(|b| format!("{b:02x}")).collect();
        Self {
            seed,
            stream: rng.get_stream(),
            word_pos: format!("{:x}", rng.get_word_pos()),
        }
    }

    /// A generator in this state; `source` names the file in errors.
    pub fn restore(&self, source: &Path) -> Result<RunRng> {
        use rand::SeedableRng;
        let bad = || DsbError::bad_file(source, "the saved random-generator state is malformed");
        if self.seed.len() != 64 {
            return Err(bad());
        }
        let mut seed = [0u8; 32];
        for (i, b) in seed.iter_mut().enumerate() {
            *b = u8::from_str_radix(&self.seed[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
        }
        let pos = u128::from_str_radix(&self.word_pos, 16).map_err(|_| bad())?;
        let mut rng = RunRng::from_seed(seed);
        rng.set_stream(self.stream);
        rng.set_word_pos(pos);
        Ok(rng)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// The run generator is `StdRng`'s algorithm: same seed, same stream (so switching the CLI
    /// to it changed no result), and a saved state continues the stream exactly.
    #[test]
    fn run_rng_is_std_rng_and_resumes_exactly() {
        let mut a = rand::rngs::StdRng::seed_from_u64(7);
        let mut b = RunRng::seed_from_u64(7);
        let xa: Vec<f64> = (0..100).map(|_| a.random()).collect();
        let xb: Vec<f64> = (0..100).map(|_| b.random()).collect();
        assert_eq!(xa, xb);
        let _: u32 = b.random();
        let state = RngState::of(&b);
        let json = serde_json::to_string(&state).unwrap();
        let back: RngState = serde_json::from_str(&json).unwrap();
        let mut c = back.restore(Path::new("x")).unwrap();
        let yb: Vec<u64> = (0..50).map(|_| b.random()).collect();
        let yc: Vec<u64> = (0..50).map(|_| c.random()).collect();
        assert_eq!(yb, yc);
        let broken = RngState {
            seed: "zz".into(),
            ..state
        };
        assert!(broken.restore(Path::new("x")).is_err());
    }
}
