"""Intervals over items that come in clusters: coverage with and without counting clusters.

Planted worlds: C clusters of 3 to 5 items (one clinical case's questions, one source question's
probe items) whose items share a cluster effect on the logit scale (σ), so a cluster's items tend
to be right or wrong together. The truth is the population accuracy E[expit(θ + u)], and the
difference of two configs that share those effects while the better one also has a cluster
effect of its own (some cases suit it more), so the differences cluster too. Per replication the real
`promptopt.stats` functions give a config's 95% interval (`score_ci`, Wilson; with clusters
Wilson at the effective number of items) and a paired difference's (`paired`, bootstrap over
items; with clusters Student's t on the clusters' standard error); the figure is how often each
covers the truth.

    PYTHONPATH=. .venv/bin/python benchmarks/clustered_intervals.py [--reps 1000]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
from scipy.special import expit, logit

from promptopt import stats

NODES, WEIGHTS = np.polynomial.hermite_e.hermegauss(80)
WEIGHTS = WEIGHTS / WEIGHTS.sum()


def truth(theta: float, sigma: float) -> float:
    """E[expit(theta + u)], u ~ N(0, sigma²), by Gauss–Hermite quadrature."""
    return float(expit(theta + sigma * NODES) @ WEIGHTS)


TAU = 1.0  # σ of a cluster's own effect on the better config alone (some cases suit it more)


def world(rng: np.random.Generator, clusters: int, sigma: float, better: float, base: float):
    """Cluster labels and the 0/1 scores of the better config and the base one on the same items."""
    sizes = rng.integers(3, 6, clusters)
    shared = np.repeat(rng.normal(0.0, sigma, clusters), sizes)
    own = np.repeat(rng.normal(0.0, TAU, clusters), sizes)
    groups = np.repeat(np.arange(clusters), sizes).astype(str)
    a = (rng.random(len(shared)) < expit(better + shared + own)).astype(float)
    c = (rng.random(len(shared)) < expit(base + shared)).astype(float)
    return groups, a, c


def covers(low, high, value) -> bool:
    return low is not None and high is not None and low <= value <= high


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=1000)
    ap.add_argument("--b", type=int, default=1000, help="bootstrap resamples of the paired intervals")
    args = ap.parse_args()
    started = time.perf_counter()
    base, better = logit(0.6), logit(0.6) + 0.4
    rows = []
    for clusters in (30, 100):
        for sigma in (1.0, 2.0):
            p, d = truth(base, sigma), truth(better, float(np.hypot(sigma, TAU))) - truth(base, sigma)
            hits = {"score, items": 0, "score, clusters": 0, "paired, items": 0, "paired, clusters": 0}
            deff, n_items = [], []
            for rep in range(args.reps):
                rng = np.random.default_rng([clusters, int(10 * sigma), rep])
                groups, a, c = world(rng, clusters, sigma, better, base)
                ids = pd.Index([f"i{j}" for j in range(len(a))])
                n_items.append(len(a))
                deff.append(stats.design_effect(c, groups))
                hits["score, items"] += covers(*stats.score_ci(c), p)
                hits["score, clusters"] += covers(*stats.score_ci(c, clusters=groups), p)
                sa, sc = pd.Series(a, index=ids), pd.Series(c, index=ids)
                alone = stats.paired(sa, sc, b=args.b, seed=rep)
                together = stats.paired(sa, sc, b=args.b, seed=rep, clusters=pd.Series(groups, index=ids))
                hits["paired, items"] += covers(alone["ci_low"], alone["ci_high"], d)
                hits["paired, clusters"] += covers(together["ci_low"], together["ci_high"], d)
            row = {"clusters": clusters, "σ": sigma, "items (mean)": f"{np.mean(n_items):.0f}",
                   "design effect": f"{np.mean(deff):.2f}"}  # fmt: skip
            for name, k in hits.items():
                share = k / args.reps
                se = np.sqrt(share * (1 - share) / args.reps)
                row[name] = f"{100 * share:.1f} ± {100 * se:.1f}%"
            rows.append(row)
    table = pd.DataFrame(rows)
    print(f"Coverage of 95% intervals, {args.reps} replications per world (clusters of 3-5 items sharing a logit effect)")
    print(table.to_string(index=False))
    print(f"\nelapsed: {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
