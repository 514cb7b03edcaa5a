//! Building a fit: from a data spec, from loaded data or points, or around a saved model.

use super::config::{DataSpec, FitConfig, FitData};
use super::model::{FitModel, ModelSettings};
use super::normalise::Normalisation;
use super::progress::{Pending, Progress};
use super::train::{FarEnd, Fit};
use crate::data::Points;
use crate::error::{DsbError, Result};
use candle_core::Device;

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

    /// A bridge between two data sets ([`crate::fit`] § bridges): IPF between the data `from`
    /// at t = 0 and the data `to` at t = T, with no prior in between. Both must have examples of
    /// one shape. Points are standardised jointly by one map ([`Normalisation::fit_pooled_isotropic`]),
    /// images keep their pixel values; `config.reference` and `config.horizon` are the
    /// reference in those coordinates (a Brownian reference of variance σ² per unit time on
    /// [0, T] in data coordinates is horizon σ²T/scale²).
    ///
    /// `sigma`, when given, is the reference's standard deviation per unit time in data
    /// coordinates: the horizon is then rescaled to (σ/scale)² T, so that the reference's
    /// variance over [0, T] is σ²T in data coordinates (without it, σ is the scale).
    pub fn bridge(
        from: DataSpec,
        to: DataSpec,
        config: FitConfig,
        sigma: Option<f64>,
        device: &Device,
    ) -> Result<Self> {
        check_bridge_settings(&config, sigma)?;
        let a = from.load()?;
        let b = to.load()?;
        Self::bridge_with_data(from, a, to, b, config, sigma, device)
    }

    /// [`Fit::bridge`] between loaded data (or points made in memory, e.g. samples of two
    /// Gaussians): `from` and `to` only name them (they are saved, and `--resume` reloads from
    /// them).
    pub fn bridge_with_data(
        from: DataSpec,
        a: FitData,
        to: DataSpec,
        b: FitData,
        mut config: FitConfig,
        sigma: Option<f64>,
        device: &Device,
    ) -> Result<Self> {
        check_bridge_settings(&config, sigma)?;
        if a.example_shape != b.example_shape {
            return Err(DsbError::InvalidInput(format!(
                "--from '{}' has examples of shape {:?} but --to '{}' has {:?}; a bridge joins \
                 data sets of one shape",
                from.name, a.example_shape, to.name, b.example_shape
            )));
        }
        check_held_out(&b.train, &b.held_out)?;
        config.network = config.network.fitted_to(&a.example_shape);
        let normalisation = if a.example_shape.len() == 3 {
            Normalisation::identity(a.train.dim)
        } else {
            Normalisation::fit_pooled_isotropic(&a.train.data, &b.train.data, a.train.dim)?
        };
        if let Some(s) = sigma {
            config.horizon *= (s / normalisation.scale[0]).powi(2);
            config.validate()?;
        }
        let near = Ends {
            spec: from,
            train: a.train,
            held_out: a.held_out,
        };
        let far = Ends {
            spec: to,
            train: b.train,
            held_out: b.held_out,
        };
        Self::build_with(
            near,
            a.example_shape,
            config,
            normalisation,
            Some(far),
            device,
        )
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
        let normalisation = if example_shape.len() == 3 {
            Normalisation::identity(train.dim)
        } else {
            Normalisation::fit(&train.data, train.dim)?
        };
        let near = Ends {
            spec: data,
            train,
            held_out,
        };
        Self::build_with(near, example_shape, config, normalisation, None, device)
    }

    fn build_with(
        near: Ends,
        example_shape: Vec<usize>,
        config: FitConfig,
        normalisation: Normalisation,
        far: Option<Ends>,
        device: &Device,
    ) -> Result<Self> {
        check_held_out(&near.train, &near.held_out)?;
        let settings = ModelSettings {
            data: near.spec.name.clone(),
            example_shape,
            network: config.network.clone(),
            reference: config.reference,
            steps: config.steps,
            horizon: config.horizon,
            schedule: config.schedule,
            first_step: config.first_step(),
            sigma: 1.0,
            normalisation,
            to: far.as_ref().map(|f| f.spec.name.clone()),
        };
        let model = FitModel::new(settings, config.seed, device)?;
        Self::assemble(model, config, near, far, Progress::default(), None)
    }

    /// Puts a fit together around a built model; checks the data's dimension.
    pub(crate) fn assemble(
        model: FitModel,
        config: FitConfig,
        near: Ends,
        far: Option<Ends>,
        progress: Progress,
        pending: Option<Pending>,
    ) -> Result<Self> {
        let Ends {
            spec: data,
            train,
            held_out,
        } = near;
        if train.dim != model.dim() || held_out.dim != model.dim() {
            return Err(DsbError::InvalidInput(format!(
                "wrong data dimension: the model was fitted to {}-dimensional data, but '{}' \
                 has dimension {}",
                model.dim(),
                data.name,
                train.dim
            )));
        }
        let train = model.standardise(&train)?;
        let far = match far {
            Some(Ends {
                spec,
                train: far_train,
                held_out: far_held,
            }) => {
                if far_train.dim != model.dim() || far_held.dim != model.dim() {
                    return Err(DsbError::InvalidInput(format!(
                        "wrong data dimension: the bridge joins {}-dimensional data, but '{}' \
                         has dimension {}",
                        model.dim(),
                        spec.name,
                        far_train.dim
                    )));
                }
                Some(FarEnd {
                    train: model.standardise(&far_train)?,
                    spec,
                    held_out: far_held,
                })
            }
            None => None,
        };
        Ok(Self {
            model,
            config,
            data,
            train,
            held_out,
            progress,
            pending,
            far,
        })
    }
}

/// One end of a fit: where its data came from, and its training and held-out points (data
/// coordinates).
#[derive(Debug)]
pub(crate) struct Ends {
    pub(crate) spec: DataSpec,
    pub(crate) train: Points,
    pub(crate) held_out: Points,
}

/// The settings of a bridge, checked before any data are loaded: the fit's, and σ (data units)
/// positive and finite when given.
fn check_bridge_settings(config: &FitConfig, sigma: Option<f64>) -> Result<()> {
    config.validate()?;
    if let Some(s) = sigma {
        crate::error::ensure_valid!(
            s > 0.0 && s.is_finite(),
            "--sigma must be positive and finite, got {s}"
        );
    }
    Ok(())
}

/// An error unless the held-out part has at least two points of the training dimension.
fn check_held_out(train: &Points, held_out: &Points) -> Result<()> {
    if held_out.dim != train.dim || held_out.len() < 2 {
        return Err(DsbError::InvalidInput(format!(
            "held-out data: need at least 2 points of dimension {}, got {} of dimension {}",
            train.dim,
            held_out.len(),
            held_out.dim
        )));
    }
    Ok(())
}
