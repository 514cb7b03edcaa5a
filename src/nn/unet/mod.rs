//! A small UNet for images, as used by DDPM-style score and drift models.
//!
//! ```text
//! x [B, C, H, W] ─ conv3×3 ─► level 0 ─► ↓ ─► level 1 ─► ↓ ─► … level L−1 ─► middle ┐
//!                               │ skips          │ skips            │ skips          │
//! out ◄─ GN·SiLU·conv3×3 ◄─ level 0 ◄─ ↑ ◄─ level 1 ◄─ ↑ ◄─ … level L−1 ◄───────────┘
//! ```
//!
//! The time t (normalised to [0, 1], like [`super::DriftNet`]) goes through the sinusoidal
//! features shared with the drift MLP, then Linear → SiLU → Linear, and every residual block adds
//! its own linear projection of SiLU(embedding) to its features. On the way down each level runs
//! `res_blocks_per_level` residual blocks and then (except the last) a stride-2 convolution; the
//! input of the first level and the output of every block are kept as skips. The middle is
//! residual block → self-attention (optional) → residual block. On the way up each level runs
//! `res_blocks_per_level + 1` residual blocks, each on its input concatenated along channels with
//! the matching skip, then (except level 0) nearest-neighbour ×2 upsampling and a 3×3 convolution.
//! The output convolution starts at zero, so an untrained network returns exactly 0.
//!
//! Only gradient-recording operations are used: `GroupNorm` rather than the fused `LayerNorm`
//! and `ops::softmax` rather than `softmax_last_dim` (see docs/design.md § Candle facts).

mod blocks;
mod config;
#[cfg(test)]
mod tests;

pub use config::UNetConfig;

use super::drift::{TIME_FEATURES, sinusoidal_embedding};
use super::params::{Init, ParamStore};
use crate::error::{DsbError, Result};
use crate::nn::{Conv2d, GroupNorm};
use blocks::{Attention, Builder, Downsample, ResBlock, Upsample};
use candle_core::{Device, Tensor};
use candle_nn::{Linear, Module};

/// One resolution level of the way down.
#[derive(Debug)]
struct DownLevel {
    blocks: Vec<ResBlock>,
    down: Option<Downsample>,
}

/// One resolution level of the way up.
#[derive(Debug)]
struct UpLevel {
    blocks: Vec<ResBlock>,
    up: Option<Upsample>,
}

/// A time-conditioned UNet mapping images `[B, C, H, W]` and times `[B]` to `[B, C, H, W]`;
/// see the [module documentation](self) for the architecture.
#[derive(Debug)]
pub struct UNet {
    cfg: UNetConfig,
    time_in: Linear,
    time_out: Linear,
    conv_in: Conv2d,
    down: Vec<DownLevel>,
    mid_in: ResBlock,
    mid_attn: Option<Attention>,
    mid_out: ResBlock,
    /// From the lowest resolution to the highest.
    up: Vec<UpLevel>,
    norm_out: GroupNorm,
    conv_out: Conv2d,
    param_count: usize,
}

impl UNet {
    /// A network shaped by `cfg` (validated first), its parameters registered in `params` under
    /// `prefix` (e.g. `prefix.conv_in.weight`, `prefix.down0.res1.norm1.bias`,
    /// `prefix.mid.attn.qkv.weight`) and drawn from `rng`; the same generator state gives the
    /// same weights. The output convolution is zero, so the network starts at h = 0.
    pub fn new(
        cfg: &UNetConfig,
        prefix: &str,
        params: &mut ParamStore,
        rng: &mut impl rand::Rng,
        device: &Device,
    ) -> Result<Self> {
        cfg.validate()?;
        let before = params.count();
        let p = |s: &str| format!("{prefix}.{s}");
        let temb = cfg.time_embed_dim;
        let time_in = params.linear(
            &p("time_in"),
            TIME_FEATURES,
            temb,
            Init::Default,
            rng,
            device,
        )?;
        let time_out = params.linear(&p("time_out"), temb, temb, Init::Default, rng, device)?;
        let mut b = Builder {
            cfg,
            params,
            rng,
            device,
        };
        let conv_in = b.conv3(&p("conv_in"), cfg.channels, cfg.base_width, Init::Default)?;

        let levels = cfg.levels();
        let mut width = cfg.base_width;
        let mut down = Vec::with_capacity(levels);
        for level in 0..levels {
            let out = cfg.level_width(level);
            let mut blocks = Vec::with_capacity(cfg.res_blocks_per_level);
            for i in 0..cfg.res_blocks_per_level {
                blocks.push(ResBlock::new(
                    &mut b,
                    &p(&format!("down{level}.res{i}")),
                    width,
                    out,
                )?);
                width = out;
            }
            let down_op = if level + 1 < levels {
                Some(Downsample::new(
                    &mut b,
                    &p(&format!("down{level}.downsample")),
                    width,
                )?)
            } else {
                None
            };
            down.push(DownLevel {
                blocks,
                down: down_op,
            });
        }

        let mid_in = ResBlock::new(&mut b, &p("mid.res0"), width, width)?;
        let mid_attn = if cfg.attention {
            Some(Attention::new(&mut b, &p("mid.attn"), width)?)
        } else {
            None
        };
        let mid_out = ResBlock::new(&mut b, &p("mid.res1"), width, width)?;

        // The skips' widths are worked out by the config, which validates the GroupNorms of the
        // concatenated inputs.
        let mut up = Vec::with_capacity(levels);
        for (level, inputs) in (0..levels).rev().zip(cfg.up_block_inputs()) {
            let out = cfg.level_width(level);
            let mut blocks = Vec::with_capacity(inputs.len());
            for (i, cin) in inputs.into_iter().enumerate() {
                blocks.push(ResBlock::new(
                    &mut b,
                    &p(&format!("up{level}.res{i}")),
                    cin,
                    out,
                )?);
            }
            width = out;
            let up_op = if level > 0 {
                Some(Upsample::new(
                    &mut b,
                    &p(&format!("up{level}.upsample")),
                    width,
                )?)
            } else {
                None
            };
            up.push(UpLevel { blocks, up: up_op });
        }

        let norm_out = b.norm(&p("norm_out"), width)?;
        let conv_out = b.conv3(&p("conv_out"), width, cfg.channels, Init::Zero)?;
        let param_count = b.params.count() - before;
        Ok(Self {
            cfg: cfg.clone(),
            time_in,
            time_out,
            conv_in,
            down,
            mid_in,
            mid_attn,
            mid_out,
            up,
            norm_out,
            conv_out,
            param_count,
        })
    }

    /// The settings the network was built from.
    pub fn config(&self) -> &UNetConfig {
        &self.cfg
    }

    /// Number of scalar parameters of this network (not of the whole store it lives in).
    pub fn parameter_count(&self) -> usize {
        self.param_count
    }

    /// The time embedding SiLU(MLP(features(t))) that the residual blocks project, `[B, E]`.
    fn time_embedding(&self, t: &Tensor) -> Result<Tensor> {
        let f = sinusoidal_embedding(t)?;
        let e = self.time_out.forward(&self.time_in.forward(&f)?.silu()?)?;
        Ok(e.silu()?)
    }

    /// The network's output `[B, C, H, W]` for images `x` `[B, C, H, W]` (f32, the configured
    /// channels and size) at normalised times `t ∈ [0, 1]`, either `[B]` (one per image) or `[1]`
    /// (shared by the batch).
    pub fn forward(&self, x: &Tensor, t: &Tensor) -> Result<Tensor> {
        let cfg = &self.cfg;
        let (batch, channels, h, w) = x.dims4().map_err(|_| {
            DsbError::InvalidInput(format!(
                "UNet input must be [batch, channels, height, width], got shape {:?}",
                x.dims()
            ))
        })?;
        if (channels, h, w) != (cfg.channels, cfg.height, cfg.width) {
            return Err(DsbError::InvalidInput(format!(
                "UNet was built for {}-channel {}×{} images, got {channels}-channel {h}×{w}",
                cfg.channels, cfg.height, cfg.width
            )));
        }
        let t = match t.dims() {
            [n] if *n == batch => t.clone(),
            [1] => t.broadcast_as(batch)?.contiguous()?,
            d => {
                return Err(DsbError::InvalidInput(format!(
                    "UNet times must be [batch] = [{batch}] or [1], got shape {d:?}"
                )));
            }
        };
        let temb = self.time_embedding(&t)?;

        let mut h = self.conv_in.forward(x)?;
        let mut skips = vec![h.clone()];
        for level in &self.down {
            for block in &level.blocks {
                h = block.forward(&h, &temb)?;
                skips.push(h.clone());
            }
            if let Some(down) = &level.down {
                h = down.forward(&h)?;
                skips.push(h.clone());
            }
        }
        h = self.mid_in.forward(&h, &temb)?;
        if let Some(attn) = &self.mid_attn {
            h = attn.forward(&h)?;
        }
        h = self.mid_out.forward(&h, &temb)?;
        for level in &self.up {
            for block in &level.blocks {
                let skip = skips.pop().expect("one skip per up block");
                h = block.forward(&Tensor::cat(&[&h, &skip], 1)?, &temb)?;
            }
            if let Some(up) = &level.up {
                h = up.forward(&h)?;
            }
        }
        let h = self.norm_out.forward_silu(&h)?;
        Ok(self.conv_out.forward(&h)?)
    }
}
