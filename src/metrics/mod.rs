//! Sample-quality metrics and the statistical tests used against known targets. The two-sample
//! distances (MMD², energy distance) live in the leaf module [`crate::distance`] and are
//! re-exported here.

mod hypothesis;
mod modes;
mod moments;

pub use crate::distance::{
    MMD_BANDWIDTH_FACTORS, energy_distance, median_distance, mmd2, mmd2_with_bandwidths,
};
pub use hypothesis::{kolmogorov_p_value, ks_test_normal, weighted_proportion_test};
pub use modes::{ModeReport, mode_report};
pub use moments::{MomentErrors, moment_errors, sample_moment_errors, weighted_moments};
