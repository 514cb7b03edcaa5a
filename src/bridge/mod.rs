//! Schrödinger bridges with closed forms, used to check the IPF machinery.

mod gaussian;

pub use gaussian::{BridgeMoments, GaussianBridge, bridge_moments};
