//! Two-dimensional toy data sets from the diffusion and normalising-flow literature.
//!
//! The definitions follow the toy sets of FFJORD (Grathwohl et al., 2019, `lib/toy_data.py`),
//! which build on scikit-learn's generators; the DSB code (De Bortoli et al., 2021) uses the same
//! shapes at a larger scale. Every set lies inside the box [−4.5, 4.5]² (up to rare Gaussian
//! noise) with coordinate standard deviations between about 0.5 and 2.5, so a prior N(0, σ²I)
//! with σ of 1 to 3 covers it. Where scikit-learn places points on an even grid of angles and
//! then shuffles, these generators draw the angle uniformly at random: the same distribution,
//! and the first k points of a draw of n are the draw of k.
//!
//! A draw is a pure function of `(n, seed)`: [`ToyDataset::sample`] seeds
//! `rand::rngs::StdRng::seed_from_u64(seed)` and draws each point in turn (for a given version
//! of `rand`, whose `StdRng` algorithm may change between major versions).

use super::error::{DataError, Result};
use super::points::Points;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::StandardNormal;
use std::f64::consts::PI;
use std::fmt;
use std::str::FromStr;

/// A two-dimensional toy data set. Parse one from its name with [`str::parse`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ToyDataset {
    /// `swiss-roll`: scikit-learn's `make_swiss_roll(noise = 1)` projected to its (x, z) plane
    /// and divided by 5 (FFJORD's "swissroll"). With u ~ U(0, 1), t = 1.5π(1 + 2u) and
    /// ε ~ N(0, I₂): the point is (t cos t + ε₁, t sin t + ε₂) / 5. The noise-free spiral lies in
    /// [−2.83, 2.83]² (|t| ≤ 4.5π); the noise has standard deviation 0.2.
    SwissRoll,
    /// `two-moons`: scikit-learn's `make_moons(noise = 0.1)`, then x ↦ 2x + (−1, −0.2)
    /// (FFJORD's "moons"). With θ ~ U(0, π), a fair coin picks the upper moon (cos θ, sin θ) or
    /// the lower moon (1 − cos θ, 0.5 − sin θ); Gaussian noise of standard deviation 0.1 is added
    /// before the map. Noise-free, the points lie in [−3, 3] × [−1.2, 1.8].
    TwoMoons,
    /// `circles`: scikit-learn's `make_circles(factor = 0.5, noise = 0.08)` times 3 (FFJORD's
    /// "circles"). With θ ~ U(0, 2π), a fair coin picks radius 1 or 0.5; the point is
    /// 3 (r cos θ, r sin θ) + 3 · 0.08 ε, ε ~ N(0, I₂): circles of radius 3 and 1.5 with noise of
    /// standard deviation 0.24.
    Circles,
    /// `8gaussians`: an equal-weight mixture of eight Gaussians (FFJORD's "8gaussians"). Centre
    /// k ~ U{0..7} is 4 (cos(kπ/4), sin(kπ/4)); the point is (centre + 0.5 ε) / 1.414,
    /// ε ~ N(0, I₂): centres on the circle of radius 2.83, each of standard deviation 0.354.
    EightGaussians,
    /// `checkerboard`: uniform on 8 of the 16 squares of side 2 that tile [−4, 4]² (FFJORD's
    /// "checkerboard"). With x₁ ~ U(−2, 2), u ~ U(0, 1) and a fair bit b, x₂ = u − 2b +
    /// (⌊x₁⌋ mod 2); the point is 2 (x₁, x₂), so the square with lower-left corner (2i, 2j),
    /// i, j ∈ {−2, …, 1}, is filled when i + j is even.
    Checkerboard,
    /// `s-curve`: scikit-learn's `make_s_curve(noise = 0.1)` projected to its (x, z) plane, at
    /// its own scale. With t = 3π(u − 0.5), u ~ U(0, 1), and ε ~ N(0, I₂): the point is
    /// (sin t, sign(t)(cos t − 1)) + 0.1 ε. Noise-free, it lies in [−1, 1] × [−2, 2].
    SCurve,
}

const ALL: [ToyDataset; 6] = [
    ToyDataset::SwissRoll,
    ToyDataset::TwoMoons,
    ToyDataset::Circles,
    ToyDataset::EightGaussians,
    ToyDataset::Checkerboard,
    ToyDataset::SCurve,
];

impl ToyDataset {
    /// Every toy data set, in a fixed order.
    pub fn all() -> &'static [ToyDataset] {
        &ALL
    }

    /// The canonical names of all toy data sets, comma-separated (for help texts and errors).
    pub fn names() -> String {
        ALL.iter().map(|t| t.name()).collect::<Vec<_>>().join(", ")
    }

    /// The canonical name: `swiss-roll`, `two-moons`, `circles`, `8gaussians`, `checkerboard`
    /// or `s-curve`.
    pub fn name(self) -> &'static str {
        match self {
            ToyDataset::SwissRoll => "swiss-roll",
            ToyDataset::TwoMoons => "two-moons",
            ToyDataset::Circles => "circles",
            ToyDataset::EightGaussians => "8gaussians",
            ToyDataset::Checkerboard => "checkerboard",
            ToyDataset::SCurve => "s-curve",
        }
    }

    /// `n` points `[n, 2]`, a pure function of `(n, seed)`; see each variant for its definition.
    pub fn sample(self, n: usize, seed: u64) -> Points {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut data = Vec::with_capacity(2 * n);
        for _ in 0..n {
            let [x, y] = self.point(&mut rng);
            data.push(x as f32);
            data.push(y as f32);
        }
        Points::new(data, n, 2).expect("2 values per point")
    }

    fn point(self, rng: &mut impl rand::Rng) -> [f64; 2] {
        fn normal(rng: &mut impl rand::Rng) -> f64 {
            rng.sample(StandardNormal)
        }
        match self {
            ToyDataset::SwissRoll => {
                let (e1, e2) = (normal(rng), normal(rng));
                let t = 1.5 * PI * (1.0 + 2.0 * rng.random::<f64>());
                [(t * t.cos() + e1) / 5.0, (t * t.sin() + e2) / 5.0]
            }
            ToyDataset::TwoMoons => {
                let (e1, e2) = (normal(rng), normal(rng));
                let theta = PI * rng.random::<f64>();
                let (x, y) = if rng.random_bool(0.5) {
                    (theta.cos(), theta.sin())
                } else {
                    (1.0 - theta.cos(), 0.5 - theta.sin())
                };
                [2.0 * (x + 0.1 * e1) - 1.0, 2.0 * (y + 0.1 * e2) - 0.2]
            }
            ToyDataset::Circles => {
                let (e1, e2) = (normal(rng), normal(rng));
                let theta = 2.0 * PI * rng.random::<f64>();
                let r = if rng.random_bool(0.5) { 1.0 } else { 0.5 };
                [
                    3.0 * (r * theta.cos() + 0.08 * e1),
                    3.0 * (r * theta.sin() + 0.08 * e2),
                ]
            }
            ToyDataset::EightGaussians => {
                let (e1, e2) = (normal(rng), normal(rng));
                let a = f64::from(rng.random_range(0..8u32)) * PI / 4.0;
                [
                    (4.0 * a.cos() + 0.5 * e1) / 1.414,
                    (4.0 * a.sin() + 0.5 * e2) / 1.414,
                ]
            }
            ToyDataset::Checkerboard => {
                let x1 = 4.0 * rng.random::<f64>() - 2.0;
                let u = rng.random::<f64>();
                let b = if rng.random_bool(0.5) { 2.0 } else { 0.0 };
                let x2 = u - b + x1.floor().rem_euclid(2.0);
                [2.0 * x1, 2.0 * x2]
            }
            ToyDataset::SCurve => {
                let (e1, e2) = (normal(rng), normal(rng));
                let t = 3.0 * PI * (rng.random::<f64>() - 0.5);
                let z = t.signum() * (t.cos() - 1.0);
                [t.sin() + 0.1 * e1, z + 0.1 * e2]
            }
        }
    }
}

impl fmt::Display for ToyDataset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ToyDataset {
    type Err = DataError;

    /// Parses a canonical name, ignoring case and treating `_` as `-`; also accepts the FFJORD
    /// and DSB spellings `swissroll`, `swiss`, `moons`, `moon`, `two_moons`, `circle`,
    /// `eight-gaussians`, `8-gaussians`, `checker`, `scurve`.
    fn from_str(s: &str) -> Result<Self> {
        let key = s.trim().to_ascii_lowercase().replace('_', "-");
        let toy = match key.as_str() {
            "swiss-roll" | "swissroll" | "swiss" => ToyDataset::SwissRoll,
            "two-moons" | "moons" | "moon" => ToyDataset::TwoMoons,
            "circles" | "circle" => ToyDataset::Circles,
            "8gaussians" | "8-gaussians" | "eight-gaussians" => ToyDataset::EightGaussians,
            "checkerboard" | "checker" => ToyDataset::Checkerboard,
            "s-curve" | "scurve" => ToyDataset::SCurve,
            _ => {
                return Err(DataError::UnknownToy {
                    name: s.to_string(),
                    known: Self::names(),
                });
            }
        };
        Ok(toy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(p: &Points) -> ([f32; 2], [f32; 2], [f64; 2]) {
        let (mut lo, mut hi, mut sum, mut sq) = ([f32::MAX; 2], [f32::MIN; 2], [0.0; 2], [0.0; 2]);
        for i in 0..p.n {
            for j in 0..2 {
                let v = p.data[2 * i + j];
                lo[j] = lo[j].min(v);
                hi[j] = hi[j].max(v);
                sum[j] += f64::from(v);
                sq[j] += f64::from(v).powi(2);
            }
        }
        let n = p.n as f64;
        let sd = [0, 1].map(|j| (sq[j] / n - (sum[j] / n).powi(2)).sqrt());
        (lo, hi, sd)
    }

    #[test]
    fn generators_have_the_right_shape_and_are_deterministic() {
        for &toy in ToyDataset::all() {
            let a = toy.sample(500, 7);
            assert_eq!((a.n, a.dim, a.data.len()), (500, 2, 1000), "{toy}");
            assert!(a.data.iter().all(|v| v.is_finite()), "{toy}");
            assert_eq!(a, toy.sample(500, 7), "{toy}: same seed, different points");
            assert_ne!(
                a.data,
                toy.sample(500, 8).data,
                "{toy}: seeds 7 and 8 agree"
            );
            assert_eq!(
                &toy.sample(100, 7).data[..],
                &a.data[..200],
                "{toy}: not prefix-stable"
            );
            assert_eq!(toy.sample(0, 7).n, 0);
        }
    }

    #[test]
    fn generators_have_the_documented_scale() {
        // (half-width of a box holding all 20,000 points, bounds on each coordinate's sd):
        // the documented noise-free extents plus five noise standard deviations.
        let expect = [
            (ToyDataset::SwissRoll, 4.5, 1.2, 1.6),
            (ToyDataset::TwoMoons, 4.5, 0.9, 1.9),
            (ToyDataset::Circles, 4.5, 1.5, 1.9),
            (ToyDataset::EightGaussians, 4.5, 1.9, 2.2),
            (ToyDataset::Checkerboard, 4.0, 2.2, 2.4),
            (ToyDataset::SCurve, 2.6, 0.6, 1.5),
        ];
        for (toy, half, sd_lo, sd_hi) in expect {
            let (lo, hi, sd) = stats(&toy.sample(20_000, 1));
            for j in 0..2 {
                assert!(
                    lo[j] >= -half && hi[j] <= half,
                    "{toy}: range {lo:?}..{hi:?}"
                );
                assert!(sd[j] > sd_lo && sd[j] < sd_hi, "{toy}: sd {sd:?}");
            }
        }
    }

    #[test]
    fn checkerboard_fills_only_even_squares() {
        let p = ToyDataset::Checkerboard.sample(5_000, 3);
        for i in 0..p.n {
            let (x, y) = (p.data[2 * i], p.data[2 * i + 1]);
            let (ci, cj) = ((x / 2.0).floor() as i32, (y / 2.0).floor() as i32);
            assert_eq!(
                (ci + cj).rem_euclid(2),
                0,
                "({x}, {y}) is in an empty square"
            );
        }
    }

    #[test]
    fn names_parse_and_unknown_names_list_the_valid_ones() {
        for &toy in ToyDataset::all() {
            assert_eq!(toy.name().parse::<ToyDataset>().unwrap(), toy);
        }
        assert_eq!(
            "Swiss_Roll".parse::<ToyDataset>().unwrap(),
            ToyDataset::SwissRoll
        );
        assert_eq!("moons".parse::<ToyDataset>().unwrap(), ToyDataset::TwoMoons);
        let e = "spiral".parse::<ToyDataset>().unwrap_err().to_string();
        assert!(e.contains("'spiral'"), "{e}");
        for &toy in ToyDataset::all() {
            assert!(e.contains(toy.name()), "{e} lacks {toy}");
        }
    }
}
