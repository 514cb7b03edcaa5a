//! Error type of the library: every failure a user can cause says what was wrong and how to fix it.

use thiserror::Error;

/// Errors raised by dsb. Tensor-level failures from candle are wrapped in [`DsbError::Tensor`].
///
/// The library returns only this type (through [`Result`]); the command line wraps it in
/// `anyhow` and exits with status 2. New variants may be added, so matches need a `_` arm.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum DsbError {
    /// A tensor operation failed (shape mismatch, device problem, ...).
    #[error("tensor operation failed: {0}")]
    Tensor(candle_core::Error),
    /// A target name that no built-in target has.
    #[error("unknown target '{name}'; run `dsb targets` to list them (known: {known})")]
    UnknownTarget {
        /// The name that was asked for.
        name: String,
        /// Comma-separated list of known names.
        known: String,
    },
    /// A setting or input that cannot be used, with an explanation.
    #[error("{0}")]
    InvalidInput(String),
    /// The target's log density was non-finite for too many particles for too long.
    #[error(
        "target '{target}' returned a non-finite log density for {fraction:.0}% of the particles \
         in each of the last {iterations} iterations; check the density for overflow or regions \
         where it is undefined, or start from a narrower prior (--sigma)"
    )]
    PersistentNonFinite {
        /// The target's name.
        target: String,
        /// Percentage of the batch that was non-finite in the last iteration.
        fraction: f64,
        /// How many consecutive iterations failed.
        iterations: usize,
    },
    /// Training produced a non-finite or exploding loss or gradient.
    #[error("training diverged at iteration {iteration} ({why}); {advice}")]
    Diverged {
        /// Iteration at which the run was stopped.
        iteration: usize,
        /// The offending loss value.
        loss: f64,
        /// What was seen: a non-finite loss, or how far the loss grew.
        why: String,
        /// What to change, naming the flags of the command that trained
        /// ([`SAMPLE_DIVERGENCE_ADVICE`], [`FIT_DIVERGENCE_ADVICE`], ...).
        advice: &'static str,
    },
    /// Reading or writing a file failed.
    #[error("{path}: {error}")]
    Io {
        /// The file involved.
        path: String,
        /// The underlying error (part of the message, so not repeated as a source).
        error: std::io::Error,
    },
    /// A checkpoint or settings file could not be understood.
    #[error("{path}: {message}")]
    BadFile {
        /// The file involved.
        path: String,
        /// What was wrong with it.
        message: String,
    },
}

/// What to change when `dsb sample`'s training diverges.
pub const SAMPLE_DIVERGENCE_ADVICE: &str = "lower the learning rate (--lr) or the gradient clip \
     (--grad-clip), or start from a narrower prior (--sigma); a lower --lr may need more --iters";

/// What to change when `dsb fit`'s training (either half-step) diverges.
pub const FIT_DIVERGENCE_ADVICE: &str = "lower the learning rate (--lr) or the gradient clip \
     (--grad-clip); a lower --lr may need more --iters";

/// What to change when the digit classifier's fixed recipe diverges.
pub const CLASSIFIER_DIVERGENCE_ADVICE: &str =
    "check the training images and labels (--data, --data-dir), or change --seed";

/// Result alias used across the library.
pub type Result<T> = std::result::Result<T, DsbError>;

// Written by hand rather than with `#[from]`: the message already contains candle's, and a
// `source` would make error chains print it twice.
impl From<candle_core::Error> for DsbError {
    fn from(e: candle_core::Error) -> Self {
        DsbError::Tensor(e)
    }
}

impl DsbError {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl AsRef<std::path::Path>, error: std::io::Error) -> Self {
        DsbError::Io {
            path: path.as_ref().display().to_string(),
            error,
        }
    }

    /// An error from another library (an optimiser, nuts-rs), as [`DsbError::InvalidInput`]
    /// with its whole chain of causes in the message (`outer: inner: …`).
    pub(crate) fn foreign(error: &(dyn std::error::Error + 'static)) -> Self {
        let mut message = error.to_string();
        let mut source = error.source();
        while let Some(s) = source {
            message.push_str(&format!(": {s}"));
            source = s.source();
        }
        DsbError::InvalidInput(message)
    }

    /// A malformed file.
    pub fn bad_file(path: impl AsRef<std::path::Path>, message: impl Into<String>) -> Self {
        DsbError::BadFile {
            path: path.as_ref().display().to_string(),
            message: message.into(),
        }
    }
}

/// `DsbError::InvalidInput(format!(…))`: the library's error for a setting, an input or a run
/// that cannot be used, with the message written as for `format!`.
macro_rules! invalid {
    ($($message:tt)+) => {
        $crate::error::DsbError::InvalidInput(format!($($message)+))
    };
}

/// Returns [`invalid!`]`(…)` from the enclosing function unless the condition holds (the
/// library's counterpart of `anyhow::ensure!`, with the same message).
macro_rules! ensure_valid {
    ($condition:expr, $($message:tt)+) => {
        if !$condition {
            return Err($crate::error::invalid!($($message)+));
        }
    };
}

pub(crate) use {ensure_valid, invalid};
