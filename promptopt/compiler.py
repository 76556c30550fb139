"""Compile: what the registered optimizers (promptopt.optimizers) share, and the one entry point.

Demos come only from the task's train split; optimizers that select among candidates (they
have a `val` knob: `bootstrap_rs`, `mipro`, `gepa`) score them on a dev split carved from the
end of train (`dev_split`: `val` examples, at most a quarter of train), never on val: val
chooses among configs, and a config whose optimizer had already chosen on those items would
win that choice by its selection bias alone. Test is never passed here.

Each optimizer's call estimate lives beside it, in its own file; they share `expected_tries`,
the expected number of training examples DSPy tries until k are right (the negative-binomial
mean, capped at the train size, computed exactly).
"""

from __future__ import annotations

import math
from typing import Any

DEV_SHARE = 4  # the dev split is at most 1/DEV_SHARE of train


def dev_split(train: list, knobs: dict[str, Any]) -> tuple[list, list]:
    """(demo pool, dev split) for an optimizer with knobs `knobs`: optimizers that select among
    candidates (they have a `val` knob) get the last `val` train examples, at most a quarter of
    train, as their dev split; the others get all of train and no dev split."""
    want = knobs.get("val")
    if not want or len(train) < 2:
        return list(train), []
    size = max(1, min(int(want), len(train) // DEV_SHARE))
    return list(train[:-size]), list(train[-size:])


# ------------------------------------------------------------------------------ estimates


def expected_tries(k: int, p: float, n: int) -> float:
    """Expected training examples DSPy tries to find k right ones when each is right with p (max n)."""
    if k <= 0:
        return 0.0
    p = min(max(p, 1e-6), 1.0)
    # E[min(T_k, n)] = sum_{t=0}^{n-1} P(T_k > t) = sum_t P(fewer than k successes in t tries)
    total = 0.0
    for t in range(n):
        below = sum(math.comb(t, j) * p**j * (1 - p) ** (t - j) for j in range(min(k, t + 1)))
        total += below
    return total


def estimate_compile_calls(
    optimizer: str, knobs: dict[str, Any], per_example: int, n_train: int, n_val: int, p: float, predictors: int = 1,
    extra_dirs: list | None = None,
) -> int:  # fmt: skip
    """LM calls one compile makes, by the optimizer's own rule (see its file)."""
    from promptopt.optimizers import Work, get_optimizer

    return get_optimizer(optimizer, extra_dirs).estimate(knobs, Work(per_example, n_train, n_val, p, predictors))


# ------------------------------------------------------------------------------ compiling


def to_dspy(task, examples) -> list:
    """Our examples as dspy.Examples: inputs as the model sees them, plus the answer a right
    reply writes (for labeled demos) and the gold (for the metric)."""
    import dspy

    from promptopt.signatures import as_text

    render = task.answer_type.render
    out = []
    for ex in examples:
        answer = render(ex.gold) if render else ex.gold
        item = dspy.Example(**as_text(ex.inputs), answer=answer, gold=ex.gold, example_id=ex.id)
        out.append(item.with_inputs(*task.input_fields))
    return out


def metric_for(task):
    def metric(example, prediction, trace=None):
        score = task.answer_type.score(getattr(prediction, "answer", None), example.gold)
        return score >= 1.0 if trace is not None else score  # bootstrapping keeps only right traces

    return metric


def feedback_metric_for(task):
    """GEPA's metric: the score plus a sentence on what was wrong, for its reflection model."""
    import dspy

    def metric(gold, pred, trace=None, pred_name=None, pred_trace=None):
        answer = getattr(pred, "answer", None)
        score = task.answer_type.score(answer, gold.gold)
        right = gold.answer
        if answer is None:
            feedback = f"The reply could not be read as {task.answer_type.describe(dict(gold.inputs()))}; the right answer is {right}."
        elif score >= 1.0:
            feedback = f"Right: the answer is {right}."
        else:
            feedback = f"Wrong: the reply answered {answer}, but the right answer is {right}."
        return dspy.Prediction(score=score, feedback=feedback)

    return metric


def compile_program(program, config, task, trainset, valset, *, threads=1, prompt_lm=None, extra_dirs=None):
    """Compile `program` with the config's optimizer; call inside dspy.context(lm=..., adapter=...)."""
    from promptopt.optimizers import CompileInputs, get_optimizer

    knobs = config.optimizer_knobs
    inputs = CompileInputs(
        task=task, train=to_dspy(task, trainset), dev=to_dspy(task, valset[: knobs.get("val", len(valset))]),
        knobs=knobs, metric=metric_for(task), feedback_metric=feedback_metric_for(task), threads=threads,
        prompt_lm=prompt_lm,
    )  # fmt: skip
    return get_optimizer(config.optimizer, extra_dirs).compile(program, inputs)
