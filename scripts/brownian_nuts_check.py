#!/usr/bin/env python3
"""An independent NUTS run on the `brownian` model, with Stan's default settings.

What it computes
----------------
inference-gym's ground truth for the scales of `BrownianMotionUnknownScalesMissingMiddleObservations`
came from Stan's NUTS (10 chains; see docs/brownian-reference.md). This script runs a different
NUTS implementation (NumPyro) on the same model, parametrised as Stan does it (each positive scale
on the log scale with its Jacobian, the 30 states unconstrained), with Stan's defaults: target
acceptance 0.8, maximum tree depth 10, float64. It prints per-chain and pooled posterior means and
sds of the two scales, the divergences, the split R-hat and the Monte Carlo standard error (pooled
ESS), next to the exact values of scripts/brownian_reference.py and inference-gym's numbers.

How to run
----------
    pip install numpyro jax                     # not a project dependency
    python3 scripts/brownian_nuts_check.py [warmup draws chains seed]   # default 1000 20000 10 100

Output (2026-11-27, numpyro 0.22.0, jax 0.10.2 on CPU, 2 shared cores; about 2 min)
------------------------------------------------------------------------------------
chain 0:   26 s, 0 divergences, E si 0.1163 (sd 0.0404), E so 0.1126 (sd 0.0378)
chain 1:   11 s, 21 divergences, E si 0.1167 (sd 0.0419), E so 0.1097 (sd 0.0399)
chain 2:   11 s, 0 divergences, E si 0.1154 (sd 0.0400), E so 0.1124 (sd 0.0375)
chain 3:   11 s, 1 divergences, E si 0.1154 (sd 0.0401), E so 0.1133 (sd 0.0369)
chain 4:   14 s, 0 divergences, E si 0.1148 (sd 0.0393), E so 0.1139 (sd 0.0363)
chain 5:   11 s, 0 divergences, E si 0.1153 (sd 0.0397), E so 0.1134 (sd 0.0370)
chain 6:   12 s, 12 divergences, E si 0.1186 (sd 0.0420), E so 0.1097 (sd 0.0394)
chain 7:   11 s, 1 divergences, E si 0.1149 (sd 0.0399), E so 0.1136 (sd 0.0360)
chain 8:    9 s, 0 divergences, E si 0.1153 (sd 0.0408), E so 0.1127 (sd 0.0377)
chain 9:   12 s, 0 divergences, E si 0.1170 (sd 0.0411), E so 0.1112 (sd 0.0380)

10 chains x 20000 draws after 1000 warm-up
        pooled mean   MCSE     sd       ESS    R-hat | exact mean  sd      | gym mean (se)       sd
  si    0.11596   0.00043  0.04055     9072  1.0013 | 0.11553  0.04031 | 0.11985 (0.00062)  0.04668
  so    0.11224   0.00046  0.03770     6796  1.0018 | 0.11266  0.03754 | 0.10105 (0.00064)  0.04443
"""

import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.diagnostics import effective_sample_size, split_gelman_rubin
from numpyro.infer import MCMC, NUTS

jax.config.update("jax_enable_x64", True)

# targets/brownian_observations.csv (NaN where missing: t = 10..19).
Y = np.array([0.21592641, 0.118771404, -0.07945447, 0.037677474, -0.27885845, -0.1484156,
              -0.3250906, -0.22957903, -0.44110894, -0.09830782] + [np.nan] * 10 +
             [-0.8786016, -0.83736074, -0.7384849, -0.8939254, -0.7774566, -0.70238715,
              -0.87771565, -0.51853573, -0.6948214, -0.6202789])
OBS = np.where(~np.isnan(Y))[0]

EXACT = {"si": (0.115534, 0.040306), "so": (0.112656, 0.037538)}
GYM = {"si": (0.119848, 0.000622, 0.046682), "so": (0.101053, 0.000637, 0.044427)}


def model():
    si = numpyro.sample("si", dist.LogNormal(0.0, 2.0))
    so = numpyro.sample("so", dist.LogNormal(0.0, 2.0))
    x = numpyro.sample("x", dist.ImproperUniform(dist.constraints.real, (), event_shape=(30,)))
    prev = jnp.concatenate([jnp.zeros(1), x[:-1]])
    numpyro.factor("walk", dist.Normal(prev, si).log_prob(x).sum())
    numpyro.sample("y", dist.Normal(x[OBS], so), obs=Y[OBS])


def main():
    warmup, draws, chains, seed = ([int(a) for a in sys.argv[1:5]] + [1000, 20000, 10, 100][len(sys.argv) - 1:])[:4]
    per_chain = {"si": [], "so": []}
    for c in range(chains):
        t0 = time.time()
        mcmc = MCMC(NUTS(model, target_accept_prob=0.8, max_tree_depth=10),
                    num_warmup=warmup, num_samples=draws, progress_bar=False)
        mcmc.run(jax.random.PRNGKey(seed + c), extra_fields=("diverging",))
        s = mcmc.get_samples()
        div = int(mcmc.get_extra_fields()["diverging"].sum())
        for k in per_chain:
            per_chain[k].append(np.asarray(s[k]))
        print(f"chain {c}: {time.time() - t0:4.0f} s, {div} divergences, "
              f"E si {per_chain['si'][-1].mean():.4f} (sd {per_chain['si'][-1].std():.4f}), "
              f"E so {per_chain['so'][-1].mean():.4f} (sd {per_chain['so'][-1].std():.4f})", flush=True)
    print(f"\n{chains} chains x {draws} draws after {warmup} warm-up")
    print("        pooled mean   MCSE     sd       ESS    R-hat | exact mean  sd      | gym mean (se)       sd")
    for k in ("si", "so"):
        a = np.stack(per_chain[k])
        ess = float(effective_sample_size(a))
        mean, sd = a.mean(), a.std()
        print(f"  {k}    {mean:.5f}   {sd / np.sqrt(ess):.5f}  {sd:.5f}  {ess:7.0f}  {float(split_gelman_rubin(a)):.4f}"
              f" | {EXACT[k][0]:.5f}  {EXACT[k][1]:.5f} | {GYM[k][0]:.5f} ({GYM[k][1]:.5f})  {GYM[k][2]:.5f}")


if __name__ == "__main__":
    main()
