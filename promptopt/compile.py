"""Compile: DSPy's optimizers under our names, and what each costs in LM calls before it runs.

Demos come only from the task's train split; optimizers that select among candidates
(`bootstrap_rs`, `mipro`, `gepa`) score them on a dev split carved from the end of train
(`dev_split`: `val` examples, at most a quarter of train), never on val: val chooses among
configs, and a config whose optimizer had already chosen on those items would win that choice
by its selection bias alone. Test is never passed here.

Call estimates (per compile, `c` = LM calls per example of the strategy, `p` = the chance the
model answers a training example right, `E[k]` = expected training examples tried until k are
right, capped at the train size — the negative-binomial mean, computed exactly):
- `none`, `labeled`: 0.
- `bootstrap`: E[b] * c, with b = bootstrapped demos (DSPy tries training examples in order
  until it has b right ones; `seed` other than 0 shuffles that order first, so each seed is
  another demo set at the same cost).
- `bootstrap_rs` with C candidates on V val examples: DSPy's candidate seeds are zero-shot,
  labeled-only, the unshuffled bootstrap and C shuffled bootstraps of 1..b demos (uniform);
  every one is scored on V: (C + 3) * V * c + (E[b] + C * mean_j E[j]) * c.
- `mipro` (auto=light, DSPy's own rule): T trials = max(2 * 2m * log2(6), 9) for m predictors.
  On V <= 50 val examples every trial scores all of val: V * (T + 1) * c. Above 50, minibatches
  of 35 with a full evaluation every 5 trials and at the end: (V + 35 T + V (T // 5 + [T % 5 > 0])) * c.
  Plus the bootstrap of its demo sets (zero-shot, labeled, unshuffled with b, then 3 shuffled
  with 1..b) and the instruction proposer's calls on the prompt model (10 + 3m + m + 1).
- `gepa` with a budget of B metric calls, V val examples and minibatches of size m: GEPA runs
  the program once per metric call and stops at the first check past B, so up to one
  minibatch over: (max(B, V) + m) * c; plus one reflection call per iteration (an iteration
  scores a minibatch on the parent and on the child): (B - V) // 2m + 1. Its reflection model
  is `reflection_model`, or the task model itself. Its metric returns the score and a sentence
  of feedback (right; wrong, and what the right answer was; unreadable, and the format asked).
"""

from __future__ import annotations

import math
import random
from typing import Any

from promptopt.errors import UserError

# Optimizer knobs and their defaults (3 bootstrapped + 3 labeled demos, as DSPy+HELM used).
OPTIMIZERS: dict[str, dict[str, Any]] = {
    "none": {},
    "labeled": {"labeled": 3},
    "bootstrap": {"bootstrapped": 3, "labeled": 3, "rounds": 1, "seed": 0},
    "bootstrap_rs": {"bootstrapped": 3, "labeled": 3, "candidates": 8, "val": 100},
    "mipro": {"bootstrapped": 3, "labeled": 3, "auto": "light", "val": 100, "prompt_model": None},
    "gepa": {"metric_calls": 150, "val": 30, "minibatch": 3, "reflection_model": None, "seed": 0},
}
MIPRO_MINIBATCH = 35
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


MIPRO_FULL_EVAL_EVERY = 5
MIPRO_MIN_MINIBATCH_VAL = 50


def optimizer_knobs(name: str, knobs: dict[str, Any], strat) -> dict[str, Any]:
    """Every knob of optimizer `name` (defaults included), or one sentence on what is wrong."""
    from promptopt.registry import check_knob_values

    if name not in OPTIMIZERS:
        raise UserError(f"Unknown optimizer {name!r}; valid optimizers are {', '.join(OPTIMIZERS)}.")
    check_knob_values(f"Optimizer {name!r}", OPTIMIZERS[name], knobs)
    full = OPTIMIZERS[name] | knobs
    for key in ("candidates", "rounds", "val", "metric_calls", "minibatch"):
        if key in full and full[key] < 1:
            raise UserError(f"Optimizer {name!r}: knob {key!r} must be at least 1, not {full[key]}.")
    for key in ("bootstrapped", "labeled"):
        if key in full and full[key] < 0:
            raise UserError(f"Optimizer {name!r}: knob {key!r} must be 0 or more, not {full[key]}.")
    if name in ("bootstrap_rs", "mipro") and full["bootstrapped"] < 1:
        raise UserError(
            f"Optimizer {name!r} needs bootstrapped of at least 1 (its candidates draw 1..bootstrapped demos)."
        )
    if name != "none" and not getattr(strat.module, "compilable", True):
        raise UserError(
            f"Strategy {strat.name!r} cannot be compiled (it has no DSPy predictor an optimizer can tune); "
            "use --optimizer none with it."
        )
    if name == "mipro" and knobs.get("auto", "light") not in ("light", "medium", "heavy"):
        raise UserError(f"Optimizer mipro's auto must be light, medium or heavy, not {knobs['auto']!r}.")
    return full


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
    optimizer: str, knobs: dict[str, Any], per_example: int, n_train: int, n_val: int, p: float, predictors: int = 1
) -> int:
    """LM calls one compile makes (see the module docstring for each rule)."""
    b = knobs.get("bootstrapped", 0)
    if optimizer in ("none", "labeled"):
        return 0
    if optimizer == "bootstrap":
        # with r rounds an example is retried (at temperature 1) until right, up to r times
        r = knobs.get("rounds", 1)
        p_any = 1 - (1 - p) ** r
        return round(expected_tries(b, p_any, n_train) * (p_any / max(p, 1e-6)) * per_example)
    v = min(n_val, knobs.get("val", n_val))
    if optimizer == "bootstrap_rs":
        c = knobs["candidates"]
        sizes = [expected_tries(j, p, n_train) for j in range(1, b + 1)] or [0.0]
        boot = expected_tries(b, p, n_train) + c * sum(sizes) / len(sizes)
        return round(((c + 3) * v + boot) * per_example)
    if optimizer == "mipro":
        n = {"light": 6, "medium": 12, "heavy": 18}[knobs["auto"]]
        v = min(v, {"light": 100, "medium": 300, "heavy": 1000}[knobs["auto"]])  # DSPy caps val per level
        trials = int(max(2 * 2 * predictors * math.log2(n), 1.5 * n))
        if v > MIPRO_MIN_MINIBATCH_VAL:  # DSPy minibatches only above 50 val examples
            evals = v + MIPRO_MINIBATCH * trials + v * (trials // MIPRO_FULL_EVAL_EVERY)
            if trials % MIPRO_FULL_EVAL_EVERY:
                evals += v
        else:
            evals = v * (trials + 1)  # the default program, then every trial on all of val
        sizes = [expected_tries(j, p, n_train) for j in range(1, b + 1)] or [0.0]
        boot = expected_tries(b, p, n_train) + (n - 3) * sum(sizes) / len(sizes)
        proposer = 10 + (n // 2) * predictors + predictors + 1
        return round((evals + boot) * per_example + proposer)
    if optimizer == "gepa":
        # GEPA stops once its metric calls reach the budget, checked between iterations: the last
        # iteration (a minibatch on parent and child, then val if the child improved) runs over.
        # One reflection call per iteration; an iteration spends about two minibatches.
        m = knobs["minibatch"]
        evals = max(knobs["metric_calls"], v) + m
        reflections = max(1, (knobs["metric_calls"] - v) // (2 * m) + 1)
        return round(evals * per_example + reflections)
    raise UserError(f"Unknown optimizer {optimizer!r}; valid optimizers are {', '.join(OPTIMIZERS)}.")


# ------------------------------------------------------------------------------ compiling


def to_dspy(task, examples) -> list:
    """Our examples as dspy.Examples: inputs as the model sees them, plus the answer a right
    reply writes (for labeled demos) and the gold (for the metric)."""
    import dspy

    from promptopt.signatures import as_text

    render = getattr(task.answer_type, "render", None)
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


def compile_program(program, config, task, trainset, valset, *, threads: int = 1, prompt_lm=None):
    """Compile `program` with the config's optimizer; call inside dspy.context(lm=..., adapter=...)."""
    import dspy

    name, k = config.optimizer, config.optimizer_knobs
    if name == "none":
        return program
    train, val = to_dspy(task, trainset), to_dspy(task, valset[: k.get("val", len(valset))])
    metric = metric_for(task)
    if name == "labeled":
        return dspy.LabeledFewShot(k=k["labeled"]).compile(program, trainset=train)
    if name == "bootstrap":
        opt = dspy.BootstrapFewShot(
            metric=metric, max_bootstrapped_demos=k["bootstrapped"], max_labeled_demos=k["labeled"],
            max_rounds=k["rounds"],
        )  # fmt: skip
        if k["seed"]:  # another demo set: the train examples in another order (seed 0: file order)
            random.Random(k["seed"]).shuffle(train)
        return opt.compile(program, trainset=train)
    if name == "bootstrap_rs":
        opt = dspy.BootstrapFewShotWithRandomSearch(
            metric=metric, max_bootstrapped_demos=k["bootstrapped"], max_labeled_demos=k["labeled"],
            num_candidate_programs=k["candidates"], num_threads=threads,
        )  # fmt: skip
        return opt.compile(program, trainset=train, valset=val)
    if name == "mipro":
        opt = dspy.MIPROv2(
            metric=metric, auto=k["auto"], prompt_model=prompt_lm, max_bootstrapped_demos=k["bootstrapped"],
            max_labeled_demos=k["labeled"], num_threads=threads, verbose=False,
        )  # fmt: skip
        return opt.compile(program, trainset=train, valset=val)
    if name == "gepa":
        opt = dspy.GEPA(
            metric=feedback_metric_for(task), max_metric_calls=k["metric_calls"],
            reflection_lm=prompt_lm or dspy.settings.lm, reflection_minibatch_size=k["minibatch"],
            num_threads=threads, seed=k["seed"],
        )  # fmt: skip
        return opt.compile(program, trainset=train, valset=val)
    raise UserError(f"Unknown optimizer {name!r}; valid optimizers are {', '.join(OPTIMIZERS)}.")
