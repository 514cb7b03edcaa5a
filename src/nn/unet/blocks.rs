//! The building blocks of the UNet: time-conditioned residual blocks, self-attention,
//! downsampling and upsampling.

use super::UNetConfig;
use crate::error::Result;
use crate::nn::params::{Init, ParamStore};
use crate::nn::{Conv2d, GroupNorm};
use candle_core::{D, Device, Tensor};
use candle_nn::{Conv2dConfig, Linear, Module};

/// Padding 1, stride 1: a 3×3 convolution that keeps the spatial size.
pub(super) const SAME: Conv2dConfig = Conv2dConfig {
    padding: 1,
    stride: 1,
    dilation: 1,
    groups: 1,
    cudnn_fwd_algo: None,
};

/// No padding: for 1×1 convolutions.
const POINTWISE: Conv2dConfig = Conv2dConfig {
    padding: 0,
    stride: 1,
    dilation: 1,
    groups: 1,
    cudnn_fwd_algo: None,
};

/// Everything a block constructor needs besides its own sizes.
pub(super) struct Builder<'a, R: rand::Rng> {
    pub cfg: &'a UNetConfig,
    pub params: &'a mut ParamStore,
    pub rng: &'a mut R,
    pub device: &'a Device,
}

impl<R: rand::Rng> Builder<'_, R> {
    /// A 3×3 convolution that keeps the spatial size.
    pub fn conv3(&mut self, name: &str, cin: usize, cout: usize, init: Init) -> Result<Conv2d> {
        self.params
            .conv2d(name, cin, cout, 3, SAME, init, self.rng, self.device)
    }

    /// A 1×1 convolution.
    pub fn conv1(&mut self, name: &str, cin: usize, cout: usize) -> Result<Conv2d> {
        self.params.conv2d(
            name,
            cin,
            cout,
            1,
            POINTWISE,
            Init::Default,
            self.rng,
            self.device,
        )
    }

    /// A GroupNorm over `channels` with the configured number of groups.
    pub fn norm(&mut self, name: &str, channels: usize) -> Result<GroupNorm> {
        self.params
            .group_norm(name, self.cfg.groups_for(channels), channels, self.device)
    }
}

/// Residual block `[B, cin, H, W] → [B, cout, H, W]` conditioned on the time embedding:
/// GroupNorm → SiLU → Conv3×3 → + Linear(SiLU(embedding)) per channel → GroupNorm → SiLU →
/// Conv3×3, added to the input (through a 1×1 convolution when `cin ≠ cout`).
#[derive(Debug)]
pub(super) struct ResBlock {
    norm1: GroupNorm,
    conv1: Conv2d,
    time: Linear,
    norm2: GroupNorm,
    conv2: Conv2d,
    skip: Option<Conv2d>,
}

impl ResBlock {
    /// A block with parameters under `name`.
    pub fn new<R: rand::Rng>(
        b: &mut Builder<R>,
        name: &str,
        cin: usize,
        cout: usize,
    ) -> Result<Self> {
        let norm1 = b.norm(&format!("{name}.norm1"), cin)?;
        let conv1 = b.conv3(&format!("{name}.conv1"), cin, cout, Init::Default)?;
        let time = b.params.linear(
            &format!("{name}.time"),
            b.cfg.time_embed_dim,
            cout,
            Init::Default,
            b.rng,
            b.device,
        )?;
        let norm2 = b.norm(&format!("{name}.norm2"), cout)?;
        let conv2 = b.conv3(&format!("{name}.conv2"), cout, cout, Init::Default)?;
        let skip = if cin != cout {
            Some(b.conv1(&format!("{name}.skip"), cin, cout)?)
        } else {
            None
        };
        Ok(Self {
            norm1,
            conv1,
            time,
            norm2,
            conv2,
            skip,
        })
    }

    /// `x` is `[B, cin, H, W]`; `temb` is the activated time embedding `[B, time_embed_dim]`.
    pub fn forward(&self, x: &Tensor, temb: &Tensor) -> Result<Tensor> {
        let h = self.conv1.forward(&self.norm1.forward_silu(x)?)?;
        let t = self.time.forward(temb)?.unsqueeze(2)?.unsqueeze(3)?;
        let h = h.broadcast_add(&t)?;
        let h = self.conv2.forward(&self.norm2.forward_silu(&h)?)?;
        let skip = match &self.skip {
            Some(conv) => conv.forward(x)?,
            None => x.clone(),
        };
        Ok((skip + h)?)
    }
}

/// Single-head self-attention over the pixels, `[B, C, H, W] → [B, C, H, W]`: GroupNorm, a 1×1
/// convolution to queries, keys and values, softmax(qᵀk/√C) over the keys, a 1×1 output
/// projection, and a residual connection.
#[derive(Debug)]
pub(super) struct Attention {
    norm: GroupNorm,
    qkv: Conv2d,
    proj: Conv2d,
}

impl Attention {
    /// A block over `channels` channels with parameters under `name`.
    pub fn new<R: rand::Rng>(b: &mut Builder<R>, name: &str, channels: usize) -> Result<Self> {
        Ok(Self {
            norm: b.norm(&format!("{name}.norm"), channels)?,
            qkv: b.conv1(&format!("{name}.qkv"), channels, 3 * channels)?,
            proj: b.conv1(&format!("{name}.proj"), channels, channels)?,
        })
    }

    /// Attends every pixel of `x` to every other.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, c, h, w) = x.dims4()?;
        let n = h * w;
        let qkv = self
            .qkv
            .forward(&self.norm.forward(x)?)?
            .reshape((b, 3, c, n))?;
        let part = |i: usize| qkv.narrow(1, i, 1)?.squeeze(1)?.contiguous();
        let (q, k, v) = (part(0)?, part(1)?, part(2)?);
        // scores[b, i, j] = q_i · k_j / √C.
        let scores = (q.transpose(1, 2)?.contiguous()?.matmul(&k)? / (c as f64).sqrt())?;
        // Not softmax_last_dim: its fused kernel records no backward step.
        let attn = candle_nn::ops::softmax(&scores, D::Minus1)?;
        // out[b, :, i] = Σ_j attn[b, i, j] v[b, :, j].
        let out = v.matmul(&attn.transpose(1, 2)?.contiguous()?)?;
        let out = self.proj.forward(&out.reshape((b, c, h, w))?)?;
        Ok((x + out)?)
    }
}

/// Halves the resolution with a stride-2 3×3 convolution (padding 1), keeping the channels.
#[derive(Debug)]
pub(super) struct Downsample {
    conv: Conv2d,
}

impl Downsample {
    /// A downsampler over `channels` channels with parameters under `name`.
    pub fn new<R: rand::Rng>(b: &mut Builder<R>, name: &str, channels: usize) -> Result<Self> {
        let config = Conv2dConfig { stride: 2, ..SAME };
        let conv = b.params.conv2d(
            name,
            channels,
            channels,
            3,
            config,
            Init::Default,
            b.rng,
            b.device,
        )?;
        Ok(Self { conv })
    }

    /// `[B, C, H, W] → [B, C, H/2, W/2]` (H and W even).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.conv.forward(x)?)
    }
}

/// Doubles the resolution: nearest-neighbour ×2, then a 3×3 convolution keeping the channels.
#[derive(Debug)]
pub(super) struct Upsample {
    conv: Conv2d,
}

impl Upsample {
    /// An upsampler over `channels` channels with parameters under `name`.
    pub fn new<R: rand::Rng>(b: &mut Builder<R>, name: &str, channels: usize) -> Result<Self> {
        Ok(Self {
            conv: b.conv3(name, channels, channels, Init::Default)?,
        })
    }

    /// `[B, C, H, W] → [B, C, 2H, 2W]`.
    ///
    /// candle's backward of `upsample_nearest2d` overwrites the gradient of its input instead
    /// of adding to it, so `x` must have no other consumer (true in the UNet: it is the output
    /// of a residual block used only here).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (_, _, h, w) = x.dims4()?;
        Ok(self.conv.forward(&x.upsample_nearest2d(2 * h, 2 * w)?)?)
    }
}
