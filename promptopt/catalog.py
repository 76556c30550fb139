"""A plan's catalog: the strategies, optimizers and answer types its folders hold, read once.

The registries (promptopt.registry, promptopt.optimizers, promptopt.answers) read the bundled
folders and the user's `--programs-dir` folders on every lookup; a plan builds its catalog once
(`RunPlan.catalog`) and every driver asks it, so one plan sees one set of programs throughout.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from promptopt.answers import ANSWER_TYPES, AnswerType
from promptopt.optimizers import OPTIMIZERS, Optimizer
from promptopt.registry import STRATEGIES, Strategy


@dataclass(frozen=True)
class Catalog:
    strategies: dict[str, Strategy]
    optimizers: dict[str, Optimizer]
    answer_types: dict[str, AnswerType]

    @classmethod
    def of(cls, extra_dirs: list[Path] | None = None) -> Catalog:
        dirs = list(extra_dirs or [])
        return cls(STRATEGIES.load(dirs), OPTIMIZERS.load(dirs), ANSWER_TYPES.load(dirs))

    def strategy(self, name: str) -> Strategy:
        return STRATEGIES.pick(self.strategies, name)

    def optimizer(self, name: str) -> Optimizer:
        return OPTIMIZERS.pick(self.optimizers, name)
