//! Schrödinger bridges: the closed form between two Gaussians (used to check the IPF
//! machinery), the entropic optimal transport plan between two point clouds by Sinkhorn
//! iterations (the static coupling a bridge with a Brownian reference must reproduce), and the
//! comparison of a learned data-to-data bridge ([`crate::fit::Fit::bridge`]) with that plan.

mod compare;
mod gaussian;
mod sinkhorn;

pub use compare::{OtComparison, compare_with_sinkhorn};
pub use gaussian::{BridgeMoments, GaussianBridge, bridge_moments};
pub use sinkhorn::{EntropicPlan, SinkhornConfig, bridge_epsilon, sinkhorn};
