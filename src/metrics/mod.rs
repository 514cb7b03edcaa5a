//! Sample-quality metrics and the statistical tests used against known targets.

mod energy;
mod hypothesis;
mod mmd;
mod modes;
mod moments;

pub use energy::energy_distance;
pub use hypothesis::{kolmogorov_p_value, ks_test_normal, weighted_proportion_test};
pub use mmd::{MMD_BANDWIDTH_FACTORS, median_distance, mmd2, mmd2_with_bandwidths};
pub use modes::{ModeReport, mode_report};
pub use moments::{MomentErrors, moment_errors, sample_moment_errors, weighted_moments};
