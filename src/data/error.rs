//! Errors of the data layer: each says what was wrong with which file or name, and how to fix it.

use crate::error::DsbError;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Errors raised while generating, reading or locating data sets.
#[derive(Debug, Error)]
pub enum DataError {
    /// A toy data set name that no generator has.
    #[error("unknown toy data set '{name}'; the toy data sets are: {known}")]
    UnknownToy {
        /// The name that was asked for.
        name: String,
        /// Comma-separated list of the valid names.
        known: String,
    },
    /// A data set name that is neither a toy set, an image set nor a file.
    #[error(
        "unknown data set '{name}'; use a toy data set ({toys}), an image data set ({images}), \
         a path to a .csv file of points, or a directory holding MNIST-style IDX files"
    )]
    UnknownDataset {
        /// The name that was asked for.
        name: String,
        /// Comma-separated list of the toy data set names.
        toys: String,
        /// Comma-separated list of the image data set names.
        images: String,
    },
    /// An image data set whose files are in none of the places searched.
    #[error(
        "data set '{name}' not found: no {wanted} in any of\n{places}\n{hint}",
        places = list_places(looked)
    )]
    NotFound {
        /// The data set's name.
        name: String,
        /// The file that was looked for (with or without `.gz`).
        wanted: String,
        /// Every directory that was searched, in order.
        looked: Vec<PathBuf>,
        /// How to get the files.
        hint: String,
    },
    /// Reading a file failed.
    #[error("{path}: {error}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying error (part of the message, so not repeated as a source).
        error: std::io::Error,
    },
    /// A file that could be read but not understood.
    #[error("{path}: {message}")]
    BadFile {
        /// The file involved.
        path: PathBuf,
        /// What was wrong with it, with line numbers or byte counts where they help.
        message: String,
    },
    /// An argument that cannot be used, with an explanation.
    #[error("{0}")]
    InvalidInput(String),
    /// A tensor could not be built.
    #[error("tensor operation failed: {0}")]
    Tensor(candle_core::Error),
}

/// Result alias of the data layer.
pub type Result<T> = std::result::Result<T, DataError>;

fn list_places(looked: &[PathBuf]) -> String {
    looked
        .iter()
        .map(|p| format!("  {}", p.display()))
        .collect::<Vec<_>>()
        .join("\n")
}

impl DataError {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl AsRef<Path>, error: std::io::Error) -> Self {
        DataError::Io {
            path: path.as_ref().to_path_buf(),
            error,
        }
    }

    /// A malformed file.
    pub fn bad_file(path: impl AsRef<Path>, message: impl Into<String>) -> Self {
        DataError::BadFile {
            path: path.as_ref().to_path_buf(),
            message: message.into(),
        }
    }
}

// By hand rather than with `#[from]`: the message already contains candle's.
impl From<candle_core::Error> for DataError {
    fn from(e: candle_core::Error) -> Self {
        DataError::Tensor(e)
    }
}

/// Data errors become the library's error without losing their message: I/O, file and tensor
/// failures keep their kind, the rest become [`DsbError::InvalidInput`].
impl From<DataError> for DsbError {
    fn from(e: DataError) -> Self {
        match e {
            DataError::Io { path, error } => DsbError::io(path, error),
            DataError::BadFile { path, message } => DsbError::bad_file(path, message),
            DataError::Tensor(e) => DsbError::Tensor(e),
            other => DsbError::InvalidInput(other.to_string()),
        }
    }
}
