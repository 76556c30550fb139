"""Coverage of the ceiling's two intervals over simulated worlds with a known truth.

The ceiling is the test score of the config chosen on val. Its default interval, over the whole
procedure (`promptopt.stats.procedure_interval`), resamples val and test items and chooses again
each time; the chosen config's own interval (Wilson, `ceiling_fixed_ci_*`) treats the choice as fixed.
Each world draws val and test answers for k configs at known accuracies (ties included), runs the
comparator, and asks whether each interval holds the chosen config's true accuracy.

    PYTHONPATH=. .venv/bin/python benchmarks/procedure_interval.py [--worlds 300]
"""

import argparse

import numpy as np

from promptopt import stats
from promptopt.simulate import SimConfig, simulate

WORLDS = {
    "2 configs, tied at 60%": [0.6, 0.6],
    "4 configs, tied at 60%": [0.6] * 4,
    "8 configs, 55-65%": list(np.linspace(0.55, 0.65, 8)),
    "16 configs, tied at 50%": [0.5] * 16,
    "4 configs, one 10 points better": [0.5, 0.5, 0.5, 0.6],
}


def coverage(accuracies: list[float], worlds: int, n: int) -> tuple[float, ...]:
    fixed = procedure = width = fixed_best = procedure_best = 0.0
    best = max(accuracies)
    configs = [SimConfig("cot", a, name=str(i)) for i, a in enumerate(accuracies)]
    truth = {c.config_id: c.accuracy for c in configs}
    for seed in range(worlds):
        recs = simulate({"m": configs}, n={"val": n, "test": n}, seed=seed)
        row = stats.ceilings(recs, b=1000, seed=seed).iloc[0]
        true = truth[row.selected_config_id]
        assert row.ceiling_interval == "procedure"  # the default interval, when chosen on val among 2+
        fixed += row.ceiling_fixed_ci_low <= true <= row.ceiling_fixed_ci_high
        procedure += row.ceiling_ci_low <= true <= row.ceiling_ci_high
        width += row.ceiling_ci_high - row.ceiling_ci_low
        fixed_best += row.ceiling_fixed_ci_low <= best <= row.ceiling_fixed_ci_high
        procedure_best += row.ceiling_ci_low <= best <= row.ceiling_ci_high
    return fixed / worlds, procedure / worlds, width / worlds, fixed_best / worlds, procedure_best / worlds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--worlds", type=int, default=300)
    parser.add_argument("--n", type=int, default=100, help="val and test items per world")
    args = parser.parse_args()
    print(f"{args.worlds} worlds each, {args.n} val + {args.n} test items; coverage of the chosen config's true accuracy")
    print("(and, after the slash, of the best config's true accuracy: the model's ceiling itself)")
    print(f"{'world':<34} {'chosen config interval':>22} {'whole procedure':>16} {'procedure width':>16}")
    for name, accuracies in WORLDS.items():
        fixed, procedure, width, fixed_best, procedure_best = coverage(accuracies, args.worlds, args.n)
        print(f"{name:<34} {100 * fixed:>10.1f}% / {100 * fixed_best:>5.1f}% {100 * procedure:>6.1f}% / "
              f"{100 * procedure_best:>5.1f}% {100 * width:>10.1f} pts")


if __name__ == "__main__":
    main()
