"""Optimizers: each one file in this folder (or a user's `--programs-dir`), declared with `@optimizer`.

An optimizer is a class with `estimate(knobs, work)` (the LM calls one compile makes, before it
runs), `compile(program, inputs)` (the compiled program) and optionally `check(knobs)` (one
sentence on a knob value it refuses). Its `knobs` are its settings with their defaults; one
with a `val` knob selects among candidates on a dev split carved from train (see
promptopt.compiler.dev_split). Users add one by dropping such a file in their programs folder.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from promptopt.errors import UserError
from promptopt.registry import Registry, check_knob_values


@dataclass(frozen=True)
class Work:
    """What a compile's cost depends on: LM calls per example of the strategy, train and dev
    sizes, the chance p the model answers a training example right, and tunable predictors."""

    per_example: int
    n_train: int
    n_val: int
    p: float
    predictors: int = 1


@dataclass
class CompileInputs:
    """Everything an optimizer's `compile` receives; it runs inside dspy.context(lm=..., adapter=...)."""

    task: Any
    train: list  # dspy.Examples from the train split (the demo pool)
    dev: list  # dspy.Examples of the dev split (empty unless the optimizer has a `val` knob)
    knobs: dict[str, Any]
    metric: Callable  # (example, prediction, trace) -> score; with a trace: right or not
    feedback_metric: Callable  # GEPA-style: a dspy.Prediction(score, feedback)
    threads: int = 1
    prompt_lm: Any = None  # the optimizer's own LM for proposing instructions, if it names one


@dataclass(frozen=True)
class Optimizer:
    name: str
    impl: Any  # the instance of the declared class
    knobs: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    source: str = ""

    @property
    def selects(self) -> bool:
        """Whether it chooses among candidates on a dev split (it has a `val` knob)."""
        return "val" in self.knobs

    def estimate(self, knobs: dict[str, Any], work: Work) -> int:
        return round(self.impl.estimate(knobs, work))

    def compile(self, program, inputs: CompileInputs):
        return self.impl.compile(program, inputs)


OPTIMIZERS: Registry[Optimizer] = Registry("optimizer", "optimizers", lambda: [Path(__file__).resolve().parent])


def optimizer(name: str, knobs: dict[str, Any] | None = None):
    """Class decorator that registers an optimizer under `name` with its knobs' defaults."""

    def register(cls: type) -> type:
        doc = (cls.__doc__ or "").strip().splitlines()
        source = getattr(sys.modules.get(cls.__module__), "__file__", "") or ""
        OPTIMIZERS.add(name, Optimizer(name, cls(), dict(knobs or {}), doc[0] if doc else "", source), cls.__module__)
        return cls

    return register


def get_optimizer(name: str, extra_dirs: list[Path] | None = None) -> Optimizer:
    return OPTIMIZERS.get(name, extra_dirs)


AT_LEAST_ONE = ("candidates", "rounds", "val", "metric_calls", "minibatch")
AT_LEAST_ZERO = ("bootstrapped", "labeled")


def optimizer_knobs(name: str, knobs: dict[str, Any], strat, extra_dirs: list[Path] | None = None) -> dict[str, Any]:
    """Every knob of optimizer `name` (defaults included), or one sentence on what is wrong."""
    opt = get_optimizer(name, extra_dirs)
    check_knob_values(f"Optimizer {name!r}", opt.knobs, knobs)
    full = opt.knobs | knobs
    for key in AT_LEAST_ONE:
        if isinstance(full.get(key), int | float) and full[key] < 1:
            raise UserError(f"Optimizer {name!r}: knob {key!r} must be at least 1, not {full[key]}.")
    for key in AT_LEAST_ZERO:
        if isinstance(full.get(key), int | float) and full[key] < 0:
            raise UserError(f"Optimizer {name!r}: knob {key!r} must be 0 or more, not {full[key]}.")
    if hasattr(opt.impl, "check"):
        opt.impl.check(full)
    if name != "none" and not strat.compilable:
        raise UserError(
            f"Strategy {strat.name!r} cannot be compiled (it has no DSPy predictor an optimizer can tune); "
            "use --optimizer none with it."
        )
    return full
