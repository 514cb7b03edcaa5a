//! Settings of the UNet, saved as JSON beside its weights.

use crate::error::{DsbError, Result};
use serde::{Deserialize, Serialize};

/// The shape of a [`super::UNet`]: image size, widths, depth and conditioning.
///
/// Level `i` (0 is full resolution) works at `height / 2^i × width / 2^i` with
/// `base_width · channel_mults[i]` feature channels, so `channel_mults = [1, 2, 2]` on 28×28
/// images gives levels at 28×28, 14×14 and 7×7.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UNetConfig {
    /// Channels of the input and of the output image (1 for greyscale such as MNIST, 3 for RGB).
    pub channels: usize,
    /// Image height in pixels; must be divisible by 2^(levels − 1).
    pub height: usize,
    /// Image width in pixels; must be divisible by 2^(levels − 1).
    pub width: usize,
    /// Feature channels at full resolution (before the multiplier of level 0).
    pub base_width: usize,
    /// One width multiplier per resolution level; its length is the number of levels.
    pub channel_mults: Vec<usize>,
    /// Residual blocks per level on the way down (the way up has one more, as in DDPM).
    pub res_blocks_per_level: usize,
    /// Whether the middle of the network (lowest resolution) has a self-attention block.
    pub attention: bool,
    /// GroupNorm groups. A layer with fewer channels than this uses one group per channel;
    /// otherwise the number must divide the layer's channels (checked by [`UNetConfig::validate`]).
    pub groups: usize,
    /// Width of the time embedding (the output of the time MLP).
    pub time_embed_dim: usize,
}

impl Default for UNetConfig {
    /// [`UNetConfig::mnist`].
    fn default() -> Self {
        Self::mnist()
    }
}

impl UNetConfig {
    /// A small DDPM-style network for 28×28 greyscale images: base width 32, multipliers
    /// [1, 2, 2] (28 → 14 → 7), two residual blocks per level, attention at 7×7, 8 groups and a
    /// 128-wide time embedding.
    pub fn mnist() -> Self {
        Self {
            channels: 1,
            height: 28,
            width: 28,
            base_width: 32,
            channel_mults: vec![1, 2, 2],
            res_blocks_per_level: 2,
            attention: true,
            groups: 8,
            time_embed_dim: 128,
        }
    }

    /// Number of resolution levels (the length of `channel_mults`).
    pub fn levels(&self) -> usize {
        self.channel_mults.len()
    }

    /// Feature channels at `level`.
    pub fn level_width(&self, level: usize) -> usize {
        self.base_width * self.channel_mults[level]
    }

    /// GroupNorm groups used for a layer with `channels` channels: `groups`, or one group per
    /// channel when there are fewer channels than that.
    pub fn groups_for(&self, channels: usize) -> usize {
        self.groups.min(channels)
    }

    /// Input channels of the residual blocks on the way up, one list per level from the lowest
    /// resolution to the highest: each block sees the previous features concatenated with the
    /// matching skip from the way down (the last skip first).
    pub(super) fn up_block_inputs(&self) -> Vec<Vec<usize>> {
        let levels = self.levels();
        let mut skips = vec![self.base_width];
        for level in 0..levels {
            skips.extend(std::iter::repeat_n(
                self.level_width(level),
                self.res_blocks_per_level,
            ));
            if level + 1 < levels {
                skips.push(self.level_width(level));
            }
        }
        let mut width = self.level_width(levels - 1);
        let mut out = Vec::with_capacity(levels);
        for level in (0..levels).rev() {
            let mut inputs = Vec::with_capacity(self.res_blocks_per_level + 1);
            for _ in 0..=self.res_blocks_per_level {
                inputs.push(width + skips.pop().expect("one skip per up block"));
                width = self.level_width(level);
            }
            out.push(inputs);
        }
        out
    }

    /// Checks that the settings describe a network that can be built, with a message that says
    /// what to change when they do not.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(DsbError::InvalidInput(format!("UNet settings: {m}")));
        let positive = [
            (
                "channels",
                self.channels,
                "1 for greyscale images, 3 for RGB",
            ),
            ("height", self.height, "the image height in pixels"),
            ("width", self.width, "the image width in pixels"),
            ("base_width", self.base_width, "e.g. 32"),
            ("res_blocks_per_level", self.res_blocks_per_level, "1 or 2"),
            ("groups", self.groups, "e.g. 8"),
            ("time_embed_dim", self.time_embed_dim, "e.g. 4 × base_width"),
        ];
        for (name, value, hint) in positive {
            if value == 0 {
                return bad(format!("{name} must be at least 1 ({hint})"));
            }
        }
        if self.channel_mults.is_empty() {
            return bad("channel_mults must list at least one level, e.g. [1, 2, 2]".into());
        }
        if let Some(i) = self.channel_mults.iter().position(|&m| m == 0) {
            return bad(format!(
                "channel_mults[{i}] is 0; every level needs a positive width multiplier"
            ));
        }
        let halvings = self.levels() - 1;
        let factor = 1usize.checked_shl(halvings as u32).unwrap_or(0);
        if factor == 0 || !self.height.is_multiple_of(factor) || !self.width.is_multiple_of(factor)
        {
            return bad(format!(
                "a {}×{} image cannot be halved {halvings} times: with {} levels \
                 (channel_mults {:?}) height and width must be divisible by 2^{halvings}; \
                 use fewer levels or pad the images",
                self.height,
                self.width,
                self.levels(),
                self.channel_mults
            ));
        }
        // Every GroupNorm sees one of these channel counts: the input of a block on the way
        // down (base or level width), the output of any block, or the input of a block on the
        // way up (its input concatenated with a skip).
        let mut widths = vec![("base_width".to_string(), self.base_width)];
        for i in 0..self.levels() {
            let what = format!("level {i} (base_width × channel_mults[{i}])");
            widths.push((what, self.level_width(i)));
        }
        for (j, inputs) in self.up_block_inputs().iter().enumerate() {
            let level = self.levels() - 1 - j;
            for (i, &w) in inputs.iter().enumerate() {
                let what =
                    format!("the input of up{level}.res{i} (features and skip concatenated)");
                widths.push((what, w));
            }
        }
        for (what, w) in widths {
            let g = self.groups_for(w);
            if !w.is_multiple_of(g) {
                return bad(format!(
                    "GroupNorm groups ({}) must divide the channels of every normalised layer, \
                     but {what} has {w} channels; choose a base_width that is a multiple of {} \
                     or a number of groups that divides every width",
                    self.groups, self.groups
                ));
            }
        }
        Ok(())
    }
}
