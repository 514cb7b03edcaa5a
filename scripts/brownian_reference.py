#!/usr/bin/env python3
"""Reference values for dsb's `brownian` target, by exact marginalisation and 2-D quadrature.

What it computes
----------------
The model (dsb's `brownian`, identical to inference-gym's
`BrownianMotionUnknownScalesMissingMiddleObservations`; see docs/brownian-reference.md):

    sigma_i, sigma_o ~ LogNormal(0, 2)            (i.e. log sigma ~ N(0, 2^2))
    x_0 ~ N(0, sigma_i^2),  x_t ~ N(x_{t-1}, sigma_i^2),  t = 1..29
    y_t ~ N(x_t, sigma_o^2)  observed for t = 0..9 and 20..29 (targets/brownian_observations.csv)

Given the two scales the model is linear-Gaussian, so p(y | sigma_i, sigma_o) is exact by a
Kalman filter (cross-checked against the dense multivariate-normal marginal). The remaining 2-D
integral over (log sigma_i, log sigma_o) is done by the midpoint rule on a fine grid; grid
refinement and wider boxes show the digits are converged. From the same grid it reports

  1. log Z = log p(y) (all constants included; the same number in the log-scale coordinates dsb
     samples and in inference-gym's softplus coordinates, since both include their Jacobians);
  2. posterior mean and sd of sigma_i, sigma_o (the coordinates of inference-gym's ground truth)
     and of log sigma_i, log sigma_o, and their correlation;
  3. posterior mean and sd of x_0..x_29 (a mixture over the grid of exact Gaussian conditionals);
  4. the same with the data rounded to float32 (inference-gym stores the data as float32);
  5. prior variants (none of which is the model), to show what they would do to log Z and the
     scale moments;
  6. a data check: the exact posterior of the fixed-scale model (sigma_i = 0.1, sigma_o = 0.15)
     against inference-gym's published ground truth for BrownianMotionMissingMiddleObservations,
     which was produced by the same Stan pipeline on the same data.

Published numbers quoted below (ground truths), with provenance:
  tensorflow/probability, spinoffs/inference_gym/inference_gym/targets/ground_truth/
    brownian_motion_unknown_scales_missing_middle_observations.py  (Stan, 2020-10-06, d4c22dedf)
    brownian_motion_missing_middle_observations.py                 (Stan, same pipeline)

How to run
----------
    python3 scripts/brownian_reference.py        # needs numpy and scipy; about 6 s

Output (2026-11-27, numpy 2.4.6, scipy 1.17.1)
----------------------------------------------
Kalman vs dense MVN log-likelihood, max |diff| over 3 points: 2.1e-14

quadrature of log Z and scale moments (box [lo, hi]^2 in log sigma, n x n midpoints)
    lo     hi      n     log Z   E si    sd si   E so    sd so   E lsi    sd lsi  E lso    sd lso  corr
 -12.0    6.0    300  1.187749 0.115534 0.040306 0.112656 0.037538 -2.21519 0.33596 -2.26246 0.46749 -0.4887
 -12.0    6.0    900  1.187749 0.115534 0.040306 0.112656 0.037538 -2.21519 0.33596 -2.26246 0.46749 -0.4887
 -16.0    8.0   1200  1.187749 0.115534 0.040306 0.112656 0.037538 -2.21519 0.33596 -2.26246 0.46749 -0.4887
float32-rounded data (-16, 8, 1200):
                      1.187749 0.115534 0.040306 0.112656 0.037538 -2.21519 0.33596 -2.26246 0.46749 -0.4887

posterior of the scales: exact quadrature vs inference-gym ground truth (Stan)
                 exact      gym mean   gym se      (gym-exact)/se  /post.sd   exact sd  gym sd
  sigma_innov   0.115534   0.119848   0.000622      6.94    0.107    0.040306  0.046682
  sigma_obs     0.112656   0.101053   0.000637    -18.21   -0.309    0.037538  0.044427

posterior of x_t (unknown scales): exact vs inference-gym ground truth
  (gym-exact)/se: max |z| 15.0, rms z 9.2 over 30 coordinates
  sd ratio gym/exact: min 0.921, max 1.052

data check, fixed scales (0.1, 0.15): exact Gaussian posterior vs inference-gym ground truth
  (gym-exact)/se: max |z| 2.41, rms z 1.24; sd ratio gym/exact within 0.34 %

prior variants (not the model): log Z, E si, sd si, E so, sd so, corr(log si, log so)
  LogNormal(0, 2) on both (the model)             1.1877 0.1155 0.0403 0.1127 0.0375 -0.489
  log-scale Jacobian dropped (prior x 1/sigma)    5.8019 0.1192 0.0470 0.0960 0.0460 -0.610
  Jacobian counted twice (prior x sigma)         -3.2117 0.1210 0.0403 0.1213 0.0372 -0.381
  LogNormal(0, sqrt 2)                            0.6231 0.1173 0.0389 0.1181 0.0358 -0.413
  LogNormal(0, 1)                                -1.0561 0.1246 0.0393 0.1266 0.0362 -0.283
  HalfNormal(1) on both                           0.7743 0.1188 0.0414 0.1154 0.0388 -0.452
  x_0 ~ N(0, 1) instead of N(0, sigma_i^2)       -0.2336 0.1248 0.0415 0.1042 0.0381 -0.485
"""

import os

import numpy as np
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

HERE = os.path.dirname(os.path.abspath(__file__))
CSV = os.path.join(HERE, "..", "targets", "brownian_observations.csv")

# inference-gym ground truth, unknown scales (constrained coordinates: the scales themselves).
GYM_SCALES = {
    "sigma_innov": (0.11984811188, 0.0006217427110662335, 0.0466820841863065),
    "sigma_obs": (0.10105278383338949, 0.0006371659328958896, 0.04442651650456231),
}
GYM_LOCS_MEAN = [
    0.10274263933826973, 0.06093274017236995, -0.03870019307246051, -0.04362268251956746,
    -0.19021639426160203, -0.1856622001932033, -0.268515130178559, -0.260107840175646,
    -0.33343859777099, -0.2178855355883539, -0.27354818811729353, -0.3308308449366638,
    -0.382529765475104, -0.432800441460774, -0.4940068394726218, -0.548606013398624,
    -0.6044912464207985, -0.6556945323829905, -0.7083657832264301, -0.7639149713772999,
    -0.81898230194, -0.81053462256, -0.77714729583, -0.8268097140950001, -0.7768991113899999,
    -0.737410627885, -0.7740582032650001, -0.6294382937, -0.67029499304, -0.6432216001550001]
GYM_LOCS_SE = [
    0.0009405131072736408, 0.0005486528867378474, 0.0003114476834287046, 0.0006412277892027535,
    0.0006854475715429832, 0.0003078197153769157, 0.00047118892797200804, 0.000269194245130316,
    0.0008046292228536764, 0.0009997739913309622, 0.0010489118835382062, 0.0010372266133068682,
    0.001148757627046255, 0.001182525124387168, 0.0010569582397812805, 0.0011620414255526525,
    0.0010453183327721767, 0.0010311236390033458, 0.0009012655936333598, 0.0007196583421953809,
    0.0006105308717894598, 0.00031982091533824987, 0.00031883410927158325, 0.0005715427457512273,
    0.00019000168854908683, 0.00028494674169841363, 0.00081181858008416, 0.0008676835123945669,
    0.0002345009469366628, 0.00025145183820300795]
GYM_LOCS_SD = [
    0.08623810763365827, 0.07574472701409023, 0.06866554848723205, 0.07668282341777974,
    0.07843152706038613, 0.068576508393855, 0.07294698700640422, 0.06860825141223148,
    0.08404231839409118, 0.09871978459444246, 0.1502560058940104, 0.18455832942632247,
    0.2017484447727796, 0.21099704000209868, 0.21375294687899568, 0.2155559325592436,
    0.20996137254177322, 0.19722942827398696, 0.17963794076075898, 0.14308438220112546,
    0.08745916305987847, 0.07332776115662062, 0.07028602991206948, 0.07570528683817498,
    0.0677268360754818, 0.06851742649255362, 0.08170311308862943, 0.08550250851496419,
    0.07184739116387255, 0.08213098593590987]
# inference-gym ground truth, fixed scales (0.1, 0.15): means, their standard errors, sds.
GYM_FIXED_MEAN = [
    0.05133242672914917, 0.029862782610630533, -0.031172652529096907, -0.07075318960545621,
    -0.1583844461940377, -0.19261781848210915, -0.24623025585388952, -0.264733267168325,
    -0.2989393430659151, -0.2700758515983913, -0.31773207856893737, -0.36536468182198545,
    -0.4128638065738398, -0.4604214089786905, -0.5079741932406774, -0.55524427242247,
    -0.6023584168428662, -0.64943669886585, -0.6963831136912, -0.7433059037799999,
    -0.790619132115, -0.7983796528349999, -0.7891339084000001, -0.8025824564399999,
    -0.7752648389199999, -0.7473457639850001, -0.7393372513650001, -0.6700283629049999,
    -0.667771779875, -0.653251209085]
GYM_FIXED_SE = [
    0.00014181716314387078, 0.0001719725929952751, 0.000180664379864193, 0.00018649969823781502,
    0.00019093563954681453, 0.00019301426923023186, 0.00019327148582606353, 0.00019674440104255154,
    0.00021223021719243243, 0.0002620973411063996, 0.0003880705486572078, 0.0004751036214596269,
    0.0005388635800449369, 0.0005833985293383768, 0.0006084870285888182, 0.0006060860573592229,
    0.0005838143973624952, 0.0005445030194543895, 0.00047704658253454216, 0.0003883601451455446,
    0.00026664231815590753, 0.00021302623473493158, 0.0001968879612195528, 0.00019080238997937597,
    0.0001920684026262354, 0.00019214338076227152, 0.00019376190381442665, 0.0001967889165926859,
    0.00020703553565995777, 0.0002247900573871474]
GYM_FIXED_SD = [
    0.07214992377320903, 0.08127312545037664, 0.08349001356226761, 0.08414710603965538,
    0.0843151859802296, 0.08430940724507661, 0.08460519351230679, 0.08584498371941957,
    0.08861350851375449, 0.09955259105308314, 0.13233196052115767, 0.15330375867088028,
    0.1673401123971802, 0.17632566290477852, 0.1804658991216236, 0.18041127744433721,
    0.1760917851200855, 0.16744719487597098, 0.15335398736934266, 0.13224175417578204,
    0.09973729863526973, 0.08874149660351235, 0.08547810175070569, 0.08451775349135425,
    0.0845633061867915, 0.08454810894476136, 0.08468750032343271, 0.08589817870106213,
    0.09006645463203046, 0.10377701114714358]


def load_observations():
    ys = []
    with open(CSV) as f:
        next(f)
        for line in f:
            if line.strip():
                cell = line.split(",")[1].strip()
                ys.append(float(cell) if cell else np.nan)
    y = np.array(ys)
    assert len(y) == 30 and np.isnan(y[10:20]).all() and not np.isnan(y[:10]).any()
    return y


def kalman_loglik(y, var_i, var_o, x0_var=None):
    """log p(y | scales), vectorised over arrays of variances. x_0 ~ N(0, x0_var or var_i)."""
    m = np.zeros_like(var_i)
    p = (var_i if x0_var is None else x0_var + 0 * var_i).copy()
    ll = np.zeros_like(var_i)
    for t, yt in enumerate(y):
        if t > 0:
            p = p + var_i
        if not np.isnan(yt):
            s = p + var_o
            ll += -0.5 * (np.log(2 * np.pi * s) + (yt - m) ** 2 / s)
            g = p / s
            m = m + g * (yt - m)
            p = p * (1 - g)
    return ll


def dense_loglik(y, si, so):
    idx = np.where(~np.isnan(y))[0]
    cov = si ** 2 * (np.minimum.outer(idx, idx) + 1) + so ** 2 * np.eye(len(idx))
    return multivariate_normal(np.zeros(len(idx)), cov).logpdf(y[idx])


def log_normal_prior(u, sd=2.0):
    """Density of log sigma when sigma ~ LogNormal(0, sd): N(0, sd^2)."""
    return -0.5 * (u / sd) ** 2 - 0.5 * np.log(2 * np.pi * sd ** 2)


def grid(lo, hi, n):
    h = (hi - lo) / n
    u = lo + (np.arange(n) + 0.5) * h
    uu, vv = np.meshgrid(u, u, indexing="ij")
    return uu, vv, h


def summarise(lp, uu, vv, h):
    log_z = logsumexp(lp) + 2 * np.log(h)
    w = np.exp(lp - logsumexp(lp))
    out = [log_z]
    for f in (np.exp(uu), np.exp(vv), uu, vv):
        mu = (w * f).sum()
        out += [mu, np.sqrt((w * (f - mu) ** 2).sum())]
    cov = (w * (uu - out[5]) * (vv - out[7])).sum()
    out.append(cov / (out[6] * out[8]))
    return np.array(out)


def log_post(y, uu, vv, prior=log_normal_prior):
    return kalman_loglik(y, np.exp(2 * uu), np.exp(2 * vv)) + prior(uu) + prior(vv)


def gaussian_conditional(y, si, so):
    """Mean and covariance of x | y, scales (exact), for arrays of scales."""
    obs = ~np.isnan(y)
    yo = np.where(obs, y, 0.0)
    d = np.eye(30) - np.eye(30, k=-1)
    prec = (d.T @ d)[None] / si[:, None, None] ** 2 + np.diag(obs.astype(float))[None] / so[:, None, None] ** 2
    cov = np.linalg.inv(prec)
    mean = np.einsum("kij,kj->ki", cov, yo[None] / so[:, None] ** 2)
    return mean, cov


def fmt(row):
    r = row
    return (f"{r[0]:.6f} {r[1]:.6f} {r[2]:.6f} {r[3]:.6f} {r[4]:.6f} "
            f"{r[5]:.5f} {r[6]:.5f} {r[7]:.5f} {r[8]:.5f} {r[9]:.4f}")


def main():
    y = load_observations()

    pts = [(0.1, 0.15), (0.05, 0.3), (1.3, 0.01)]
    diff = max(abs(dense_loglik(y, a, b) - kalman_loglik(y, np.array(a * a), np.array(b * b))) for a, b in pts)
    print(f"Kalman vs dense MVN log-likelihood, max |diff| over 3 points: {diff:.1e}\n")

    print("quadrature of log Z and scale moments (box [lo, hi]^2 in log sigma, n x n midpoints)")
    print("    lo     hi      n     log Z   E si    sd si   E so    sd so   E lsi    sd lsi  E lso    sd lso  corr")
    for lo, hi, n in [(-12.0, 6.0, 300), (-12.0, 6.0, 900), (-16.0, 8.0, 1200)]:
        uu, vv, h = grid(lo, hi, n)
        res = summarise(log_post(y, uu, vv), uu, vv, h)
        print(f" {lo:5.1f} {hi:6.1f} {n:6d}  {fmt(res)}")
    y32 = y.astype(np.float32).astype(np.float64)
    res32 = summarise(log_post(y32, uu, vv), uu, vv, h)
    print("float32-rounded data (-16, 8, 1200):")
    print(f"                      {fmt(res32)}\n")

    print("posterior of the scales: exact quadrature vs inference-gym ground truth (Stan)")
    print("                 exact      gym mean   gym se      (gym-exact)/se  /post.sd   exact sd  gym sd")
    for name, (mi, si) in [("sigma_innov", (1, 2)), ("sigma_obs", (3, 4))]:
        gm, gse, gsd = GYM_SCALES[name]
        ex, exsd = res[mi], res[si]
        print(f"  {name:12s}  {ex:.6f}   {gm:.6f}   {gse:.6f}   {(gm - ex) / gse:7.2f}  {(gm - ex) / exsd:7.3f}"
              f"    {exsd:.6f}  {gsd:.6f}")

    # Posterior of x: mixture of exact Gaussian conditionals over a coarser grid (weights < 1e-14
    # of the largest dropped).
    uu, vv, h = grid(-12.0, 4.0, 160)
    lp = log_post(y, uu, vv)
    w = np.exp(lp - logsumexp(lp)).ravel()
    keep = w > 1e-14 * w.max()
    ws = w[keep] / w[keep].sum()
    mean_k, cov_k = gaussian_conditional(y, np.exp(uu.ravel()[keep]), np.exp(vv.ravel()[keep]))
    mean = (ws[:, None] * mean_k).sum(0)
    var = (ws[:, None] * (np.einsum("kii->ki", cov_k) + mean_k ** 2)).sum(0) - mean ** 2
    z = (np.array(GYM_LOCS_MEAN) - mean) / np.array(GYM_LOCS_SE)
    ratio = np.array(GYM_LOCS_SD) / np.sqrt(var)
    print("\nposterior of x_t (unknown scales): exact vs inference-gym ground truth")
    print(f"  (gym-exact)/se: max |z| {np.abs(z).max():.1f}, rms z {np.sqrt((z ** 2).mean()):.1f} over 30 coordinates")
    print(f"  sd ratio gym/exact: min {ratio.min():.3f}, max {ratio.max():.3f}")

    m_fix, c_fix = gaussian_conditional(y, np.array([0.1]), np.array([0.15]))
    z = (np.array(GYM_FIXED_MEAN) - m_fix[0]) / np.array(GYM_FIXED_SE)
    rel = np.abs(np.array(GYM_FIXED_SD) / np.sqrt(np.diag(c_fix[0])) - 1).max()
    print("\ndata check, fixed scales (0.1, 0.15): exact Gaussian posterior vs inference-gym ground truth")
    print(f"  (gym-exact)/se: max |z| {np.abs(z).max():.2f}, rms z {np.sqrt((z ** 2).mean()):.2f};"
          f" sd ratio gym/exact within {100 * rel:.2f} %")

    print("\nprior variants (not the model): log Z, E si, sd si, E so, sd so, corr(log si, log so)")
    uu, vv, h = grid(-16.0, 8.0, 1000)
    ll = kalman_loglik(y, np.exp(2 * uu), np.exp(2 * vv))
    variants = [
        ("LogNormal(0, 2) on both (the model)", log_normal_prior(uu) + log_normal_prior(vv)),
        ("log-scale Jacobian dropped (prior x 1/sigma)", log_normal_prior(uu) + log_normal_prior(vv) - uu - vv),
        ("Jacobian counted twice (prior x sigma)", log_normal_prior(uu) + log_normal_prior(vv) + uu + vv),
        ("LogNormal(0, sqrt 2)", log_normal_prior(uu, np.sqrt(2)) + log_normal_prior(vv, np.sqrt(2))),
        ("LogNormal(0, 1)", log_normal_prior(uu, 1.0) + log_normal_prior(vv, 1.0)),
        ("HalfNormal(1) on both",
         2 * np.log(2) - np.log(2 * np.pi) - 0.5 * (np.exp(2 * uu) + np.exp(2 * vv)) + uu + vv),
    ]
    for name, lprior in variants:
        r = summarise(ll + lprior, uu, vv, h)
        print(f"  {name:46s} {r[0]:7.4f} {r[1]:.4f} {r[2]:.4f} {r[3]:.4f} {r[4]:.4f} {r[9]:.3f}")
    ll1 = kalman_loglik(y, np.exp(2 * uu), np.exp(2 * vv), x0_var=1.0)
    r = summarise(ll1 + log_normal_prior(uu) + log_normal_prior(vv), uu, vv, h)
    print(f"  {'x_0 ~ N(0, 1) instead of N(0, sigma_i^2)':46s} {r[0]:7.4f} {r[1]:.4f} {r[2]:.4f} {r[3]:.4f} {r[4]:.4f} {r[9]:.3f}")


if __name__ == "__main__":
    main()
