//! The networks of the data fit, behind one trait so that a UNet for images can replace the MLP.
//!
//! A [`TimeNet`] maps a batch of states and their normalised times t/T ∈ [0, 1] to an output of
//! the states' shape. The backward and the forward process each own one; how an output becomes
//! a kernel mean is fixed by [`super::Kernels`], not by the network. [`NetworkSpec`] names the
//! network and its sizes in the saved settings, and builds it with seeded initial weights (the
//! last layer at zero, so that an untrained network leaves the reference process unchanged).

use crate::error::{DsbError, Result};
use crate::nn::{DriftNet, ParamStore, UNet, UNetConfig};
use candle_core::{DType, Device, Tensor};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

/// A network of the data fit: f(x, t) with the shape of x.
///
/// `x` is `[B, d]`: points, or images flattened row-major from `[C, H, W]` (the UNet adapter
/// [`UNetNet`] reshapes around its call); `t` is `[B]` (f32) and holds each state's time divided by the horizon T, so it lies in [0, 1]. Implementations must
/// start with an output of exactly zero (a zero last layer) and register every trainable
/// variable in the [`ParamStore`] they return from [`TimeNet::params`], under names that start
/// with the prefix they were built with.
pub trait TimeNet: std::fmt::Debug {
    /// The output for states `x` at normalised times `t`.
    fn forward(&self, x: &Tensor, t: &Tensor) -> Result<Tensor>;
    /// The trainable parameters.
    fn params(&self) -> &ParamStore;
}

/// Which network, with its sizes (saved in the model's settings).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum NetworkSpec {
    /// The MLP of [`crate::nn::DriftNet`] without score input: `depth` hidden layers of `width`
    /// SiLU units, a sinusoidal time embedding added after the first layer. For points `[B, d]`.
    Mlp {
        /// Hidden units per layer.
        width: usize,
        /// Hidden layers.
        depth: usize,
    },
    /// The UNet of [`crate::nn::UNet`] for images `[C, H, W]` (flattened to `[B, C·H·W]` around
    /// it by [`UNetNet`]). The image size in the config must match the data's;
    /// [`NetworkSpec::fitted_to`] sets it from the data.
    Unet(UNetConfig),
}

impl NetworkSpec {
    /// Checks the sizes.
    pub fn validate(&self) -> Result<()> {
        match self {
            NetworkSpec::Mlp { width, depth } if *width == 0 || *depth == 0 => Err(
                DsbError::InvalidInput("--width and --depth must be at least 1".into()),
            ),
            NetworkSpec::Mlp { .. } => Ok(()),
            NetworkSpec::Unet(cfg) => cfg.validate().map_err(|e| {
                let levels = max_levels(cfg.height, cfg.width);
                if cfg.levels() > levels {
                    DsbError::InvalidInput(format!(
                        "{e}. {}×{} images allow at most {levels} level(s) (--unet-levels 1 to \
                         {levels}, or that many --unet-mults)",
                        cfg.height, cfg.width
                    ))
                } else {
                    e
                }
            }),
        }
    }

    /// A short description for logs: `mlp 128x3`.
    pub fn describe(&self) -> String {
        match self {
            NetworkSpec::Mlp { width, depth } => format!("mlp {width}x{depth}"),
            NetworkSpec::Unet(c) => format!(
                "unet width {} mults {:?} blocks {}{}",
                c.base_width,
                c.channel_mults,
                c.res_blocks_per_level,
                if c.attention { " attention" } else { "" }
            ),
        }
    }

    /// The spec for examples of shape `shape`: a UNet's channels, height and width set from an
    /// image shape `[C, H, W]` (other shapes, and the MLP, are left as they are, for
    /// [`NetworkSpec::build`] to judge).
    pub fn fitted_to(&self, shape: &[usize]) -> Self {
        match (self, shape) {
            (NetworkSpec::Unet(cfg), &[channels, height, width]) => NetworkSpec::Unet(UNetConfig {
                channels,
                height,
                width,
                ..cfg.clone()
            }),
            _ => self.clone(),
        }
    }

    /// Builds the network for examples of shape `shape` (`[d]` for points), its parameters named
    /// `prefix.*` and drawn from a generator seeded with `seed`.
    pub fn build(
        &self,
        prefix: &str,
        shape: &[usize],
        seed: u64,
        device: &Device,
    ) -> Result<Box<dyn TimeNet>> {
        self.validate()?;
        match (self, shape) {
            // Images go through the MLP flattened (they are stored flat).
            (NetworkSpec::Mlp { width, depth }, _) if shape.iter().product::<usize>() > 0 => {
                let dim = shape.iter().product();
                Ok(Box::new(MlpNet::new(
                    prefix, dim, *width, *depth, seed, device,
                )?))
            }
            (NetworkSpec::Mlp { .. }, _) => Err(DsbError::InvalidInput(format!(
                "the MLP needs examples with at least one value, got shape {shape:?}"
            ))),
            (NetworkSpec::Unet(cfg), &[c, h, w])
                if (c, h, w) == (cfg.channels, cfg.height, cfg.width) =>
            {
                Ok(Box::new(UNetNet::new(prefix, cfg, seed, device)?))
            }
            (NetworkSpec::Unet(cfg), &[_, _, _]) => Err(DsbError::InvalidInput(format!(
                "the UNet was configured for {}-channel {}×{} images, but the examples have \
                 shape {shape:?}",
                cfg.channels, cfg.height, cfg.width
            ))),
            (NetworkSpec::Unet(_), _) => Err(DsbError::InvalidInput(format!(
                "the UNet takes images [channels, height, width], not examples of shape \
                 {shape:?}; points need the MLP (--width/--depth, without the --unet-* flags)"
            ))),
        }
    }
}

/// The most UNet levels for `height × width` images: one more than the number of times both
/// halve exactly.
fn max_levels(height: usize, width: usize) -> usize {
    let (mut h, mut w, mut levels) = (height, width, 1);
    while h > 0 && w > 0 && h.is_multiple_of(2) && w.is_multiple_of(2) && levels < 16 {
        (h, w, levels) = (h / 2, w / 2, levels + 1);
    }
    levels
}

/// The MLP network: [`DriftNet`] built without score input, with unit scales.
#[derive(Debug)]
pub struct MlpNet {
    params: ParamStore,
    net: DriftNet,
    dim: usize,
}

impl MlpNet {
    /// An MLP for points of dimension `dim`.
    pub fn new(
        prefix: &str,
        dim: usize,
        width: usize,
        depth: usize,
        seed: u64,
        device: &Device,
    ) -> Result<Self> {
        let (params, net) = DriftNet::new_in_own_store(
            prefix,
            false,
            dim,
            (width, depth),
            f64::INFINITY,
            seed,
            device,
        )?;
        Ok(Self { params, net, dim })
    }
}

impl TimeNet for MlpNet {
    fn forward(&self, x: &Tensor, t: &Tensor) -> Result<Tensor> {
        let (rows, dim) = x.dims2()?;
        if dim != self.dim || t.dims() != [rows] {
            return Err(DsbError::InvalidInput(format!(
                "the MLP expects states [B, {}] and times [B], got {:?} and {:?}",
                self.dim,
                x.dims(),
                t.dims()
            )));
        }
        let u: Vec<f64> = t
            .to_dtype(DType::F64)?
            .to_device(&Device::Cpu)?
            .to_vec1::<f64>()?;
        let tf = self
            .net
            .time_features(&u, &vec![0.0; rows * dim], x.device())?;
        // Without score input the second argument is unused.
        self.net.forward(x, x, &tf)
    }

    fn params(&self) -> &ParamStore {
        &self.params
    }
}

/// The UNet network: [`UNet`] behind flat states, reshaping `[B, C·H·W]` to `[B, C, H, W]`
/// around each call and back.
#[derive(Debug)]
pub struct UNetNet {
    params: ParamStore,
    net: UNet,
    shape: [usize; 3],
}

impl UNetNet {
    /// A UNet shaped by `cfg` (validated), its parameters named `prefix.*` and drawn from a
    /// generator seeded with `seed`.
    pub fn new(prefix: &str, cfg: &UNetConfig, seed: u64, device: &Device) -> Result<Self> {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut params = ParamStore::new();
        let net = UNet::new(cfg, prefix, &mut params, &mut rng, device)?;
        Ok(Self {
            params,
            net,
            shape: [cfg.channels, cfg.height, cfg.width],
        })
    }
}

impl TimeNet for UNetNet {
    fn forward(&self, x: &Tensor, t: &Tensor) -> Result<Tensor> {
        let [c, h, w] = self.shape;
        let (rows, dim) = x.dims2()?;
        if dim != c * h * w {
            return Err(DsbError::InvalidInput(format!(
                "the UNet expects flattened {c}×{h}×{w} images (states [B, {}]), got {:?}",
                c * h * w,
                x.dims()
            )));
        }
        let y = self.net.forward(&x.reshape((rows, c, h, w))?, t)?;
        Ok(y.reshape((rows, dim))?)
    }

    fn params(&self) -> &ParamStore {
        &self.params
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mlp_starts_at_zero_and_takes_images_flattened() {
        let spec = NetworkSpec::Mlp { width: 8, depth: 2 };
        let net = spec.build("backward", &[3], 0, &Device::Cpu).unwrap();
        let x = Tensor::ones((4, 3), DType::F32, &Device::Cpu).unwrap();
        let t = Tensor::new(&[0.0f32, 0.3, 0.6, 1.0], &Device::Cpu).unwrap();
        let y = net.forward(&x, &t).unwrap();
        assert_eq!(y.dims(), &[4, 3]);
        assert!(
            y.abs()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
                == 0.0
        );
        assert!(net.params().named()[0].0.starts_with("backward."));
        // Images go in flattened.
        let img = spec.build("backward", &[1, 4, 4], 0, &Device::Cpu).unwrap();
        let x = Tensor::ones((2, 16), DType::F32, &Device::Cpu).unwrap();
        let t = Tensor::new(&[0.0f32, 1.0], &Device::Cpu).unwrap();
        assert_eq!(img.forward(&x, &t).unwrap().dims(), &[2, 16]);
        let e = spec
            .build("backward", &[1, 0, 4], 0, &Device::Cpu)
            .unwrap_err();
        assert!(e.to_string().contains("at least one value"), "{e}");
    }

    #[test]
    fn unet_reshapes_flat_states_and_refuses_points_and_bad_sizes() {
        let cfg = UNetConfig {
            base_width: 8,
            channel_mults: vec![1, 2],
            res_blocks_per_level: 1,
            attention: false,
            groups: 4,
            time_embed_dim: 16,
            ..UNetConfig::mnist()
        };
        let spec = NetworkSpec::Unet(cfg).fitted_to(&[1, 8, 8]);
        let net = spec.build("backward", &[1, 8, 8], 0, &Device::Cpu).unwrap();
        let x = Tensor::ones((3, 64), DType::F32, &Device::Cpu).unwrap();
        let t = Tensor::new(&[0.0f32, 0.5, 1.0], &Device::Cpu).unwrap();
        let y = net.forward(&x, &t).unwrap();
        assert_eq!(y.dims(), &[3, 64]);
        assert_eq!(
            y.abs()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap(),
            0.0
        );
        let e = spec.build("backward", &[64], 0, &Device::Cpu).unwrap_err();
        assert!(e.to_string().contains("MLP"), "{e}");
        let odd = spec.fitted_to(&[1, 7, 7]);
        let e = odd
            .build("backward", &[1, 7, 7], 0, &Device::Cpu)
            .unwrap_err();
        assert!(e.to_string().contains("divisible by 2^1"), "{e}");
        assert!(e.to_string().contains("at most 1 level"), "{e}");
        assert_eq!(
            (max_levels(28, 28), max_levels(32, 32), max_levels(7, 8)),
            (3, 6, 1)
        );
        let json = serde_json::to_string(&spec).unwrap();
        assert_eq!(serde_json::from_str::<NetworkSpec>(&json).unwrap(), spec);
    }
}
