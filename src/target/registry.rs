//! Built-in targets by name, as the CLI selects them.

use super::{
    BrownianMotion, CorrelatedGaussian, Funnel, GaussianMixture, Lgcp, LogisticRegression,
    ManyWell, Seeds, Target,
};
use crate::error::{DsbError, Result};

/// What the registry knows of a built-in target before building it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TargetInfo {
    /// CLI name.
    pub name: &'static str,
    /// Dimension with default options (`None` when the caller chooses it).
    pub dim: Option<usize>,
    /// Known log Z with default options.
    pub log_z: Option<f64>,
    /// One-line description.
    pub description: &'static str,
}

/// Options that shape the configurable built-in targets.
#[derive(Debug, Clone)]
pub struct TargetOptions {
    /// Dimension for `gaussian` (default 5) and `mixture` (default 2).
    pub dim: Option<usize>,
    /// Number of modes for `mixture`.
    pub modes: usize,
    /// Half-width of the box holding the `mixture` means.
    pub spread: f64,
    /// Data file of `logistic` (CSV, last column the 0/1 label).
    pub data: Option<std::path::PathBuf>,
    /// Prior scale s of the `logistic` weights, w ~ N(0, s²I).
    pub prior_scale: f64,
    /// `lgcp` in whitened coordinates z (x = μ + Lz), the same as `lgcp-whitened`.
    pub whiten: bool,
}

impl Default for TargetOptions {
    fn default() -> Self {
        Self {
            dim: None,
            modes: 8,
            spread: 10.0,
            data: None,
            prior_scale: 1.0,
            whiten: false,
        }
    }
}

/// All built-in targets with their facts under default options.
pub fn builtin_targets() -> Vec<TargetInfo> {
    vec![
        TargetInfo {
            name: "gaussian",
            dim: Some(5),
            log_z: CorrelatedGaussian::builtin(5).ok().and_then(|g| g.log_z()),
            description: "correlated anisotropic Gaussian, any dimension (--dim)",
        },
        TargetInfo {
            name: "gmm",
            dim: Some(2),
            log_z: Some(0.0),
            description: "GMM40: 40 equal-weight unit Gaussians, means uniform on [-40, 40]^2",
        },
        TargetInfo {
            name: "mixture",
            dim: Some(2),
            log_z: Some(0.0),
            description: "configurable mixture of unit Gaussians (--modes, --dim, --spread)",
        },
        TargetInfo {
            name: "funnel",
            dim: Some(10),
            log_z: Some(0.0),
            description: "Neal's funnel: x0 ~ N(0, 9), x1..9 ~ N(0, exp(x0))",
        },
        TargetInfo {
            name: "many-well",
            dim: Some(32),
            log_z: Some(164.6957),
            description: "16 independent double wells, 2^16 modes",
        },
        TargetInfo {
            name: "ionosphere",
            dim: Some(35),
            log_z: Some(-111.6112),
            description: "Bayesian logistic regression, UCI ionosphere (351 x 34, intercept first)",
        },
        TargetInfo {
            name: "sonar",
            dim: Some(61),
            log_z: Some(-108.3816),
            description: "Bayesian logistic regression, UCI sonar (208 x 60, intercept first)",
        },
        TargetInfo {
            name: "german-credit",
            dim: Some(25),
            log_z: Some(-529.1765),
            description: "Bayesian logistic regression, UCI german credit (1000 x 24, intercept last)",
        },
        TargetInfo {
            name: "seeds",
            dim: Some(26),
            log_z: Some(super::seeds::LOG_Z_REFERENCE),
            description: "random-effects binomial regression, Crowder's seeds (21 plates; log tau first)",
        },
        TargetInfo {
            name: "brownian",
            dim: Some(32),
            log_z: Some(super::brownian::LOG_Z),
            description: "Brownian motion, 30 steps, middle 10 unobserved (log scales first)",
        },
        TargetInfo {
            name: "lgcp",
            dim: Some(1600),
            log_z: Some(super::lgcp::LOG_Z),
            description: "log-Gaussian Cox process, Finnish pines on a 40x40 grid (--whiten for x = mu + Lz)",
        },
        TargetInfo {
            name: "lgcp-whitened",
            dim: Some(1600),
            log_z: Some(super::lgcp::LOG_Z),
            description: "lgcp in whitened coordinates z ~ N(0, I) a priori, x = mu + Lz",
        },
        TargetInfo {
            name: "logistic",
            dim: None,
            log_z: None,
            description: "Bayesian logistic regression on your CSV (--data FILE, last column 0/1; --prior-scale)",
        },
    ]
}

/// Builds the built-in target called `name`. The dimension of `gaussian` and `mixture` comes from
/// `opts.dim`; asking for a dimension that a fixed-dimension target does not have is an error.
pub fn builtin_target(name: &str, opts: &TargetOptions) -> Result<Box<dyn Target>> {
    let fixed = |d: usize| -> Result<()> {
        match opts.dim {
            Some(asked) if asked != d => Err(DsbError::InvalidInput(format!(
                "target '{name}' has dimension {d}, but --dim {asked} was given; drop --dim \
                 or choose a target whose dimension can be set (gaussian, mixture)"
            ))),
            _ => Ok(()),
        }
    };
    if opts.whiten && name != "lgcp" {
        return Err(DsbError::InvalidInput(format!(
            "--whiten applies to target 'lgcp' only, not '{name}'"
        )));
    }
    Ok(match name {
        "gaussian" => Box::new(CorrelatedGaussian::builtin(opts.dim.unwrap_or(5))?),
        "gmm" | "gmm40" => {
            fixed(2)?;
            Box::new(GaussianMixture::gmm40())
        }
        "mixture" => {
            if opts.modes == 0 || opts.dim == Some(0) {
                return Err(DsbError::InvalidInput(
                    "mixture: --modes and --dim must be at least 1".into(),
                ));
            }
            Box::new(GaussianMixture::random(
                opts.modes,
                opts.dim.unwrap_or(2),
                opts.spread,
                0,
            )?)
        }
        "funnel" => {
            fixed(10)?;
            Box::new(Funnel::new(10))
        }
        "many-well" | "manywell" => {
            fixed(32)?;
            Box::new(ManyWell::new(32))
        }
        "ionosphere" => {
            fixed(35)?;
            Box::new(LogisticRegression::ionosphere()?)
        }
        "sonar" => {
            fixed(61)?;
            Box::new(LogisticRegression::sonar()?)
        }
        "german-credit" | "german_credit" => {
            fixed(25)?;
            Box::new(LogisticRegression::german_credit()?)
        }
        "seeds" => {
            fixed(26)?;
            Box::new(Seeds::new())
        }
        "brownian" => {
            fixed(32)?;
            Box::new(BrownianMotion::new())
        }
        "lgcp" | "lgcp-whitened" => {
            fixed(1600)?;
            Box::new(Lgcp::new(opts.whiten || name == "lgcp-whitened"))
        }
        "logistic" => {
            let path = opts.data.as_ref().ok_or_else(|| {
                DsbError::InvalidInput(
                    "target 'logistic' needs --data FILE.csv (features, then a 0/1 label in the last column)"
                        .into(),
                )
            })?;
            let t = LogisticRegression::from_csv(path, opts.prior_scale)?;
            fixed(t.dim())?;
            Box::new(t)
        }
        _ => {
            let known: Vec<&str> = builtin_targets().iter().map(|t| t.name).collect();
            return Err(DsbError::UnknownTarget {
                name: name.into(),
                known: known.join(", "),
            });
        }
    })
}
