"""The search's choice among configs: ε-optimal and cost-aware, by successive elimination.

The rule is successive elimination with an indifference zone (Even-Dar, Mannor & Mansour, 2002)
on *paired* confidence bounds. Every surviving config is scored on the same growing prefix of
val; after each round, with each one-sided bound at level δ / ((K − 1) · R) (K configs, R rounds:
Bonferroni over the comparisons that involve the truly best config), a config is dropped when

1. another survivor is better than it beyond doubt (lower bound of their paired difference > 0;
   with the `pareto` objective only a survivor at most as costly counts), or
2. a survivor that costs less per example is one it cannot beat by more than ε (upper bound of
   their difference < ε): it would never be chosen over that cheaper one. That cheaper one is
   then *kept* from this second rule, and the dropped config's promise stays with it: whatever
   is chosen must be that carrier (or the config that beat it beyond doubt, which takes the
   promise over) or be within ε of the dropped config itself, so that "within ε" never chains
   into 2ε.

The search stops once one config is left, or one survivor is within ε of every other and of
every promise (then the cheapest such survivor is chosen), or val is exhausted (then the best on
val, ties to the cheaper). When the bounds hold — with probability at least 1 − δ — the best
config is never dropped by rule 1, and rule 2 drops it only with its promise kept, so a settled
choice is within ε of the best. The bounds are normal approximations (Agresti–Min's adjustment for paired
proportions: half a discordant pair added each way, so a prefix with no disagreement yet is
not taken for certainty); `benchmarks/selection.py` measures how often the promise holds.

Pure: numpy and pandas, no I/O, no LM, no store.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from statistics import NormalDist

import numpy as np
import pandas as pd

from promptopt.errors import UserError

OBJECTIVES = ("accuracy", "pareto")


@dataclass(frozen=True)
class Rule:
    """ε (indifference zone, a fraction: 0.01 is one point), δ (error rate), the objective."""

    epsilon: float = 0.01
    delta: float = 0.05
    objective: str = "accuracy"

    def __post_init__(self) -> None:
        if not (isinstance(self.epsilon, int | float) and 0 <= self.epsilon < 1):
            raise UserError(f"--epsilon {self.epsilon!r} is not a score difference; give points from 0 up to (not including) 100.")
        if not (isinstance(self.delta, int | float) and 0 < self.delta < 1):
            raise UserError(f"--delta {self.delta!r} is not an error rate; give a number above 0 and below 1, e.g. 0.05.")
        if self.objective not in OBJECTIVES:
            raise UserError(f"--objective {self.objective!r} is unknown; valid objectives are {', '.join(OBJECTIVES)}.")

    def level(self, configs: int, rounds: int) -> float:
        """Each one-sided bound's error rate."""
        return self.delta / (max(1, configs - 1) * max(1, rounds))


def paired_bounds(a: np.ndarray, b: np.ndarray, level: float) -> tuple[float, float]:
    """One-sided lower and upper bounds (each at `level`) of the mean of a − b over paired items.

    With 0/1 scores this is Agresti and Min's adjusted interval for matched proportions: half an
    item is added to each cell of the 2×2 table (two pseudo-items in all, half a discordant pair
    each way: differences summing to 0, squares to 1), so that twenty items without a
    disagreement do not make a difference certain."""
    d = np.asarray(a, float) - np.asarray(b, float)
    n = len(d) + 2
    if len(d) == 0:
        return -1.0, 1.0
    mean = d.sum() / n
    var = max((np.square(d).sum() + 1.0) / n - mean * mean, 0.0)
    half = NormalDist().inv_cdf(1 - level) * math.sqrt(var / n)
    return mean - half, mean + half


@dataclass
class Arm:
    """One config as the rule sees it: its cost per example and its item scores so far (indexed
    by example id; items whose call failed left out)."""

    config_id: str
    cost: float
    items: pd.Series


@dataclass
class Elimination:
    """The state of one search's elimination: who survives, who is kept from rule 2, and why
    each dropped config was dropped."""

    rule: Rule
    configs: int
    rounds: int
    survivors: list[str] = field(default_factory=list)
    kept: set[str] = field(default_factory=set)
    dropped: dict[str, str] = field(default_factory=dict)
    # rule 2's promises: a dropped config's scores when it was dropped, and who carries its promise
    owed: dict[str, tuple[Arm, str]] = field(default_factory=dict)

    def step(self, arms: dict[str, Arm]) -> None:
        """One round's eliminations, given every survivor's scores on the prefix scored so far."""
        level = self.rule.level(self.configs, self.rounds)
        alive = [c for c in self.survivors if c in arms]
        bounds = {(i, j): self._bounds(arms[i], arms[j], level) for i in alive for j in alive if i != j}
        pareto = self.rule.objective == "pareto"
        for i in alive:  # rule 1: worse beyond doubt
            for j in alive:
                if i == j or (pareto and arms[j].cost > arms[i].cost):
                    continue
                if -bounds[(i, j)][1] > 0:  # lower bound of (j − i) above zero
                    self._drop(i, f"worse than {j} beyond doubt")
                    if i in self.kept:
                        self.kept.add(j)  # the better one carries what i stood for
                        self._carry(i, j)
                    break
        alive = [c for c in alive if c not in self.dropped]
        order = sorted(alive, key=lambda c: (-arms[c].cost, c))
        for i in order:  # rule 2, the dearest first: cannot beat a cheaper survivor by more than ε
            if i in self.kept:
                continue
            cheaper = [j for j in alive if j not in self.dropped and _key(arms[j]) < _key(arms[i])]
            for j in sorted(cheaper, key=lambda c: _key(arms[c])):
                if bounds[(i, j)][1] < self.rule.epsilon:
                    self._drop(i, f"cannot beat {j}, which costs less, by more than ε")
                    self.kept.add(j)
                    self.owed[i] = (arms[i], j)
                    self._carry(i, j)
                    break
        self.survivors = [c for c in self.survivors if c not in self.dropped]

    def settled(self, arms: dict[str, Arm]) -> bool:
        """Whether the search can stop: one survivor, or one that can be chosen with the promise kept."""
        alive = [c for c in self.survivors if c in arms]
        return len(alive) <= 1 or self._settled_choice(arms) is not None

    def _settled_choice(self, arms: dict[str, Arm]) -> str | None:
        """The cheapest survivor that every other survivor cannot beat by more than ε and that keeps
        every promise of rule 2 (it carries it, or the dropped config cannot beat it by more than ε)."""
        alive = [c for c in self.survivors if c in arms]
        level = self.rule.level(self.configs, self.rounds)
        eps = self.rule.epsilon
        for c in sorted(alive, key=lambda c: _key(arms[c])):
            if all(self._bounds(arms[i], arms[c], level)[1] < eps for i in alive if i != c) and all(
                who == c or self._bounds(arm, arms[c], level)[1] < eps for arm, who in self.owed.values()
            ):
                return c
        return None

    def choice(self, arms: dict[str, Arm]) -> str | None:
        """The config chosen among the survivors: when the search settled, the cheapest survivor
        that keeps the promise; otherwise (val ran out first) the best on the items all of them
        answered, ties to the cheaper (preferring a cheaper config on point estimates within ε gave
        up more accuracy than it saved in benchmarks/selection.py); a config with no answered item
        comes last."""
        alive = [c for c in self.survivors if c in arms]
        if not alive:
            return None
        if len(alive) == 1:
            return alive[0]
        if (settled := self._settled_choice(arms)) is not None:
            return settled
        common = _common([arms[c].items for c in alive])

        def mean(c: str) -> float:
            m = arms[c].items.reindex(common).mean() if len(common) else arms[c].items.mean()
            return float(m) if pd.notna(m) else -math.inf

        return min(alive, key=lambda c: (-mean(c), *_key(arms[c])))

    def front(self, arms: dict[str, Arm]) -> list[str]:
        """The `pareto` objective's answer: the survivors, cheapest first (none beats another by
        more than ε for no more cost, within the bounds)."""
        return sorted((c for c in self.survivors if c in arms), key=lambda c: _key(arms[c]))

    def _drop(self, config_id: str, why: str) -> None:
        self.dropped[config_id] = why

    def _carry(self, old: str, new: str) -> None:
        """The promises `old` carried pass to `new`."""
        self.owed = {o: (arm, new if who == old else who) for o, (arm, who) in self.owed.items()}

    @staticmethod
    def _bounds(a: Arm, b: Arm, level: float) -> tuple[float, float]:
        common = a.items.index.intersection(b.items.index)
        return paired_bounds(a.items.loc[common].to_numpy(float), b.items.loc[common].to_numpy(float), level)


def _key(arm: Arm) -> tuple[float, str]:
    return (arm.cost, arm.config_id)


def _common(series: list[pd.Series]) -> pd.Index:
    out = series[0].index
    for s in series[1:]:
        out = out.intersection(s.index)
    return out
