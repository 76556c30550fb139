"""Does the search's choice keep its promise? promptopt.selection's rule on planted worlds.

Each world is a set of configs with known true accuracies (population accuracy, as in
benchmarks/validity.py: items of shared difficulty, σ = 1.5 on the logit scale, so configs
agree on easy and hard items as real ones do) and known costs per example. Per seed, fresh val
items are drawn and the search's own `promptopt.selection.Elimination` is run over the rounds
the search uses (`promptopt.searcher._rungs`: 20, 60, 180, then all of val), exactly as
`promptopt.searcher._study_loop` runs it, only on simulated scores instead of records.

Per scenario it prints: how often the choice is within ε of the truly best config (the rule's
promise, split into seeds where the rule settled and seeds where val ran out first), how often
the choice is the cheapest config within ε of the best, the true accuracy given up, and the val
calls spent against an exhaustive pass over val. With `--objective pareto` the search's answer is
its front (every survivor, each scored on test): "within ε" and "cheapest within ε" then ask
whether the front holds such a config, and the last column says how many configs it holds.

    PYTHONPATH=. .venv/bin/python benchmarks/selection.py [--seeds 1000] [--epsilon 1] [--delta 0.05] [--objective pareto]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from validity import logit_offsets  # noqa: E402

from promptopt.searcher import SearchSettings, _rungs  # noqa: E402
from promptopt.selection import Arm, Elimination, Rule  # noqa: E402

SIGMA = 1.5


def scenarios(rng: np.random.Generator) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """name -> (true accuracies, calls per example). Drawn once, fixed for every seed."""
    recipe_acc = np.array([0.45, 0.52, 0.48, 0.555, 0.56, 0.60, 0.57, 0.62, 0.55, 0.60, 0.57, 0.62, 0.49, 0.53, 0.48])
    recipe_cost = np.array([1, 1, 1, 1, 3, 5, 3, 5, 3, 5, 3, 5, 1, 1, 1], float)
    return {
        "all equal (8 configs, 1-5 calls)": (np.full(8, 0.55), np.array([1, 1, 2, 3, 3, 5, 5, 1], float)),
        "one config +8 pts (8 configs)": (np.array([0.55] * 7 + [0.63]), np.array([1, 1, 2, 3, 3, 5, 5, 5], float)),
        "cheap one within ε of a 5-call one": (np.array([0.60, 0.605, 0.50, 0.52]), np.array([1, 5, 1, 3], float)),
        "recipe-like (15 configs, 5 tied at top)": (recipe_acc, recipe_cost),
        "close, not within ε (2 pts apart)": (np.array([0.58, 0.60, 0.50]), np.array([1, 3, 1], float)),
    }


def one_seed(acc, cost, n, rule: Rule, settings: SearchSettings, rng) -> dict:
    theta = logit_offsets(acc, SIGMA)
    difficulty = rng.normal(0.0, SIGMA, n)
    p = 1 / (1 + np.exp(-(theta[:, None] + difficulty)))
    scores = (rng.random(p.shape) < p).astype(float)
    ids = [f"v{i}" for i in range(n)]
    rungs = _rungs(n, settings)
    names = [f"c{k:02d}" for k in range(len(acc))]
    elim = Elimination(rule, configs=len(names), rounds=len(rungs), survivors=list(names))
    arms: dict[str, Arm] = {}
    spent, scored = 0.0, {c: 0 for c in names}
    for size in rungs:
        for c in elim.survivors:
            k = names.index(c)
            spent += (size - scored[c]) * cost[k]
            scored[c] = size
            arms[c] = Arm(c, float(cost[k]), pd.Series(scores[k, :size], index=ids[:size]))
        elim.step({c: arms[c] for c in elim.survivors})
        if settled := elim.settled({c: arms[c] for c in elim.survivors}):
            break
    best = acc.max()
    within = acc >= best - rule.epsilon - 1e-12
    cheapest = min(np.flatnonzero(within), key=lambda k: (cost[k], -acc[k]))
    if rule.objective == "pareto":  # the search's answer is its front, each config of it scored on test
        front = [names.index(c) for c in elim.front(arms)]
        return {
            "within": bool(within[front].any()),  # the front holds a config within ε of the best
            "settled": settled,
            "cheapest": any(cost[k] <= cost[cheapest] and within[k] for k in front),
            "loss": best - acc[front].max(),
            "share": spent / (n * cost.sum()),
            "front": len(front),
        }
    chosen = names.index(elim.choice(arms))
    return {
        "within": acc[chosen] >= best - rule.epsilon - 1e-12,
        "settled": settled,
        "cheapest": cost[chosen] <= cost[cheapest],
        "loss": best - acc[chosen],
        "share": spent / (n * cost.sum()),
        "front": 1,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=1000)
    ap.add_argument("--n", type=int, default=300, help="val examples")
    ap.add_argument("--epsilon", type=float, default=1.0, help="points")
    ap.add_argument("--delta", type=float, default=0.05)
    ap.add_argument("--objective", choices=["accuracy", "pareto"], default="accuracy",
                    help="pareto: the front is the answer; 'within ε' and 'cheapest' ask whether it holds such a config")
    args = ap.parse_args()
    rule = Rule(args.epsilon / 100, args.delta, args.objective)
    settings = SearchSettings(rule=rule)
    print(f"val n = {args.n}, rounds {_rungs(args.n, settings)}, ε = {args.epsilon} pts, δ = {args.delta}, "
          f"objective {args.objective}, {args.seeds} seeds per scenario\n")  # fmt: skip
    header = ("| scenario | within ε | … settled / val ran out | cheapest within ε | true pts given up "
              "| val calls / exhaustive | configs chosen |")
    print(header + "\n|---|---:|---:|---:|---:|---:|---:|")
    for name, (acc, cost) in scenarios(np.random.default_rng(0)).items():
        rng = np.random.default_rng(1)
        rows = pd.DataFrame([one_seed(acc, cost, args.n, rule, settings, rng) for _ in range(args.seeds)])
        settled, ran_out = rows[rows.settled], rows[~rows.settled]
        split = (f"{100 * settled.within.mean():.1f}% of {len(settled)} / "
                 f"{100 * ran_out.within.mean():.1f}% of {len(ran_out)}") if len(ran_out) and len(settled) else (
                 f"{len(settled)} settled" if len(settled) else f"{len(ran_out)} ran out")  # fmt: skip
        print(f"| {name} | {100 * rows.within.mean():.1f}% | {split} | {100 * rows.cheapest.mean():.1f}% | "
              f"{100 * rows.loss.mean():.2f} | {100 * rows.share.mean():.0f}% | {rows.front.mean():.1f} |")  # fmt: skip


if __name__ == "__main__":
    main()
