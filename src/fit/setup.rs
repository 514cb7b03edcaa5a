//! Building a fit: from a data spec, from loaded data or points, or around a saved model.

use super::config::{DataSpec, FitConfig, FitData};
use super::model::{FitModel, ModelSettings};
use super::normalise::Normalisation;
use super::progress::{Pending, Progress};
use super::train::Fit;
use crate::data::Points;
use crate::error::{DsbError, Result};
use candle_core::{Device, Tensor};

impl Fit {
    /// A new fit of the data `data` (loaded with [`DataSpec::load`]).
    pub fn new(data: DataSpec, config: FitConfig, device: &Device) -> Result<Self> {
        config.validate()?;
        let loaded = data.load()?;
        Self::with_data(data, loaded, config, device)
    }

    /// A new fit of loaded data. Images (shape `[C, H, W]`, pixels in [−1, 1]) keep their
    /// coordinates ([`Normalisation::identity`]; the prior is N(0, I) on pixel values), and a
    /// UNet spec takes its image size from them ([`NetworkSpec::fitted_to`]); points are
    /// standardised per coordinate.
    ///
    /// [`NetworkSpec::fitted_to`]: super::NetworkSpec::fitted_to
    pub fn with_data(
        data: DataSpec,
        loaded: FitData,
        mut config: FitConfig,
        device: &Device,
    ) -> Result<Self> {
        let FitData {
            train,
            held_out,
            example_shape,
        } = loaded;
        config.network = config.network.fitted_to(&example_shape);
        Self::build(data, train, held_out, example_shape, config, device)
    }

    /// A new fit of given training and held-out points; `data` only names them (it is saved,
    /// and `--resume` would reload from it).
    pub fn with_points(
        data: DataSpec,
        train: Points,
        held_out: Points,
        config: FitConfig,
        device: &Device,
    ) -> Result<Self> {
        let shape = vec![train.dim];
        Self::build(data, train, held_out, shape, config, device)
    }

    fn build(
        data: DataSpec,
        train: Points,
        held_out: Points,
        example_shape: Vec<usize>,
        config: FitConfig,
        device: &Device,
    ) -> Result<Self> {
        config.validate()?;
        if held_out.dim != train.dim || held_out.len() < 2 {
            return Err(DsbError::InvalidInput(format!(
                "held-out data: need at least 2 points of dimension {}, got {} of dimension {}",
                train.dim,
                held_out.len(),
                held_out.dim
            )));
        }
        let normalisation = if example_shape.len() == 3 {
            Normalisation::identity(train.dim)
        } else {
            Normalisation::fit(&train.data, train.dim)?
        };
        let settings = ModelSettings {
            data: data.name.clone(),
            example_shape,
            network: config.network.clone(),
            reference: config.reference,
            steps: config.steps,
            horizon: config.horizon,
            schedule: config.schedule,
            first_step: config.first_step(),
            sigma: 1.0,
            normalisation,
        };
        let model = FitModel::new(settings, config.seed, device)?;
        Self::assemble(
            model,
            config,
            data,
            train,
            held_out,
            Progress::default(),
            None,
        )
    }

    /// Puts a fit together around a built model; checks the data's dimension.
    pub(crate) fn assemble(
        model: FitModel,
        config: FitConfig,
        data: DataSpec,
        train: Points,
        held_out: Points,
        progress: Progress,
        pending: Option<Pending>,
    ) -> Result<Self> {
        if train.dim != model.dim() || held_out.dim != model.dim() {
            return Err(DsbError::InvalidInput(format!(
                "wrong data dimension: the model was fitted to {}-dimensional data, but '{}' \
                 has dimension {}",
                model.dim(),
                data.name,
                train.dim
            )));
        }
        let norm = &model.settings().normalisation;
        let train = Tensor::from_vec(
            norm.apply(&train.data),
            (train.n, train.dim),
            model.device(),
        )?;
        Ok(Self {
            model,
            config,
            data,
            train,
            held_out,
            progress,
            pending,
        })
    }
}
