"""Do the paired tests keep their level, and does the minimum detectable effect mean what it says?

Worlds of n items shared by two configs, each item's difficulty a logit offset d_i ~ N(0, 1.5²)
as in benchmarks/validity.py, each config's answer drawn on its own given the item:

- **McNemar under the null**: both configs of accuracy 0.6; the share of 1,000 replications in
  which `stats.paired_p` (McNemar's mid-p, what every verdict uses for 0/1 scores since
  2026-12-03) is below α = 0.05, and the exact binomial test (`stats.sign_test_p`) beside it;
- **TOST at the margin**: the true difference exactly the margin (2 and 5 points); the share in
  which `stats.tost_p` < 0.05 claims equivalence (at most α for a level-α test), and with no
  true difference the share that it claims it (its power);
- **the MDE**: per n, `detectable.mde` from the world's discordance, then 1,000 replications with
  that true difference: the share `stats.paired_p` finds at α = 0.05 (the MDE promises 80%).

Prints its figures (BENCHMARKS.md §16); asserts nothing.

    PYTHONPATH=. .venv/bin/python benchmarks/paired_tests.py [--reps 1000]
"""

from __future__ import annotations

import argparse

import numpy as np

from promptopt.detectable import mde
from promptopt.stats import paired_p, sign_test_p, tost_p

SIGMA = 1.5


def offsets(n: int, rng) -> np.ndarray:
    return rng.normal(0.0, SIGMA, n)


def theta_for(accuracy: float, d: np.ndarray) -> float:
    """The shift that gives `accuracy` on average over these items (bisection on the mean)."""
    low, high = -10.0, 10.0
    for _ in range(60):
        mid = (low + high) / 2
        low, high = (mid, high) if np.mean(1 / (1 + np.exp(-(mid + d)))) < accuracy else (low, mid)
    return (low + high) / 2


def pair(rng, n: int, acc_a: float, acc_b: float) -> tuple[np.ndarray, np.ndarray]:
    d = offsets(n, rng)
    pa, pb = 1 / (1 + np.exp(-(theta_for(acc_a, d) + d))), 1 / (1 + np.exp(-(theta_for(acc_b, d) + d)))
    return (rng.random(n) < pa).astype(float), (rng.random(n) < pb).astype(float)


def exact_p(a: np.ndarray, b: np.ndarray) -> float:
    return sign_test_p(int(((a == 1) & (b == 0)).sum()), int(((a == 0) & (b == 1)).sum()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=1000)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    reps = args.reps
    print(f"McNemar under the null (accuracy 0.6 both, {reps} replications, alpha 0.05)")
    print("| n | mean discordance | exact binomial | mid-p (used) |")
    print("|---:|---:|---:|---:|")
    for n in (20, 100, 773):
        exact, mid, disc = [], [], []
        for _ in range(reps):
            a, b = pair(rng, n, 0.6, 0.6)
            exact.append(exact_p(a, b) < 0.05)
            mid.append(paired_p(a, b) < 0.05)
            disc.append(np.mean(a != b))
        print(f"| {n} | {np.mean(disc):.2f} | {100 * np.mean(exact):.1f}% | {100 * np.mean(mid):.1f}% |")
    print(f"\nTOST with the true difference at the margin ({reps} replications, alpha 0.05)")
    print("| n | margin | claimed at the margin (≤ α) | claimed with no difference (power) |")
    print("|---:|---:|---:|---:|")
    for n, margin in ((100, 0.05), (300, 0.05), (773, 0.02), (773, 0.05)):
        claimed, power = [], []
        for _ in range(reps):
            a, b = pair(rng, n, 0.6 + margin, 0.6)
            p = tost_p(a - b, margin)
            claimed.append(p is not None and p < 0.05)
            a, b = pair(rng, n, 0.6, 0.6)
            p = tost_p(a - b, margin)
            power.append(p is not None and p < 0.05)
        print(f"| {n} | {100 * margin:g} pts | {100 * np.mean(claimed):.1f}% | {100 * np.mean(power):.1f}% |")
    print(f"\nThe minimum detectable effect against simulated power ({reps} replications each)")
    print("| n | discordance | MDE pts | found at the MDE (mid-p, alpha 0.05) |")
    print("|---:|---:|---:|---:|")
    for n in (100, 300, 773):
        disc = np.mean([np.mean(np.not_equal(*pair(rng, n, 0.6, 0.6))) for _ in range(200)])
        delta = mde(disc, n)
        found = []
        for _ in range(reps):
            a, b = pair(rng, n, 0.6 + delta / 2, 0.6 - delta / 2)
            found.append(paired_p(a, b) < 0.05 and a.mean() > b.mean())
        print(f"| {n} | {disc:.2f} | {100 * delta:.1f} | {100 * np.mean(found):.1f}% |")


if __name__ == "__main__":
    main()
