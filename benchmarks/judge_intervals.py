"""Do the judge table's agreement intervals cover? A simulation with item-clustered judge errors.

A judge is validated on n items, two planted pairs each (the item's own reference: should pass;
another item's: should fail). Clustered world: an item is confusing with probability 0.2, and on
a confusing item the judge errs on each of its pairs with probability 0.6, on the others with
0.05 (true agreement 0.84). Independent world: every pair erred on with probability 0.16 alone.
Per world, 5,000 validations; the share whose 95% interval holds the true agreement, for Wilson's
interval over the 2n pairs (the report's before) and for the report's interval now
(`promptopt.sections.judges._agreement_intervals`: Wilson's at the effective number of pairs, the pairs
over the design effect measured from the items' agreement, at least 1), and for a percentile
bootstrap over items (tried first, and left: it under-covers on 20 items).

    PYTHONPATH=. .venv/bin/python benchmarks/judge_intervals.py [--reps 5000] [--items 20]

Prints its figures (BENCHMARKS.md §17); asserts nothing.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from promptopt.sections.judges import _agreement_intervals
from promptopt.stats import wilson


def validation(rng, n: int, clustered: bool) -> list[list]:
    pairs = []
    for i in range(n):
        p_err = (0.6 if rng.random() < 0.2 else 0.05) if clustered else 0.16
        for want in (True, False):
            said = want if rng.random() >= p_err else not want
            pairs.append([f"q{i}", said, want])
    return pairs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5000)
    ap.add_argument("--items", type=int, default=20)
    args = ap.parse_args()
    truth = 1 - (0.2 * 0.6 + 0.8 * 0.05)
    print(f"{args.items} items x 2 pairs, {args.reps} validations per world, true agreement {truth:.2f}")
    print("| world | Wilson over pairs | Wilson at effective pairs (now) | bootstrap over items |")
    print("|---|---:|---:|---:|")
    rng = np.random.default_rng(0)
    started = time.perf_counter()
    for clustered in (True, False):
        hit_w, hit_c, hit_b = [], [], []
        for _ in range(args.reps):
            pairs = validation(rng, args.items, clustered)
            agreement = float(np.mean([s == w for _, s, w in pairs]))
            low, high = wilson(agreement * len(pairs), len(pairs))
            hit_w.append(low <= truth <= high)
            c_low, c_high, _, _ = _agreement_intervals({"pairs": pairs, "agreement": agreement, "n": len(pairs)}, b=10)
            hit_c.append(c_low <= truth <= c_high)
            items = np.array([[s == w for _, s, w in pairs[k : k + 2]] for k in range(0, len(pairs), 2)], float)
            draws = items[rng.integers(0, len(items), (1000, len(items)))].mean(axis=(1, 2))
            hit_b.append(np.quantile(draws, 0.025) <= truth <= np.quantile(draws, 0.975))
        name = "item-clustered errors" if clustered else "independent errors"
        print(f"| {name} | {100 * np.mean(hit_w):.1f}% | {100 * np.mean(hit_c):.1f}% | {100 * np.mean(hit_b):.1f}% |")
    print(f"({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
