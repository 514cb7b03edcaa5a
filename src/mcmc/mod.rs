//! Host-side Markov chain Monte Carlo on a [`crate::target::Target`]: the diagonal Gaussian the
//! particle methods start from, the preconditioner of their moves, and the one implementation of
//! the Metropolis-adjusted moves (MALA, HMC) that SMC, the sequential sampler and the replay
//! chains of training share. Positions and densities are f64 rows; the target is evaluated in
//! batches through [`crate::target::evaluate()`].

mod gaussian;
mod moves;
mod precondition;

pub use gaussian::DiagGaussian;
pub(crate) use moves::{Population, TemperedMove, tempered};
pub use precondition::Preconditioner;
