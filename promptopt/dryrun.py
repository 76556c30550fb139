"""Dry runs and prices: what a plan will spend (LM calls, tokens, dollars) per model, task and config,
before any call."""

from __future__ import annotations

from dataclasses import replace

from promptopt.compiler import dev_split
from promptopt.config import config_label, parse_config
from promptopt.models import Model
from promptopt.runplan import RunPlan, search_space, serves, validate_plan


def estimate_config(plan: RunPlan, task, config, model: Model | None = None) -> dict:
    """LM calls, tokens and cost one config will spend on one (model, task), before any call.

    Calls follow each strategy's declaration and each optimizer's budget rule
    (promptopt.compiler), doubled for reasoning strategies on base (text-style) models, whose
    reasoning step is followed by a short answer cue. Tokens are rough: about four characters per token for the inputs,
    plus each demo, plus the instructions and field markers; completions at half the model's
    max_tokens for reasoning strategies and at the answer's size otherwise.
    """
    from promptopt.compiler import estimate_compile_calls

    strat = plan.catalog.strategy(config.strategy)
    sample = task.examples("val", 20) or task.examples("test", 20)
    n_options = max((len(e.inputs.get("options") or {}) for e in sample), default=4) or 4
    per_example = strat.calls(config.knobs, n_options)
    reasons = strat.reasons_with(config.knobs) is not False  # undeclared: priced as reasoning, to be safe
    if model is not None and model.call_style == "text" and reasons:
        per_example *= 2  # a base model's reasoning step usually needs the short answer cue (adapters.py)
    n_eval = sum(len(task.examples(s, plan.limit)) for s in plan.splits)
    n_train, n_val = (len(part) for part in dev_split(task.examples("train"), config.optimizer_knobs))
    predictors = len(strat.build(task, **config.knobs).predictors())
    compile_calls = estimate_compile_calls(
        config.optimizer,
        config.optimizer_knobs,
        per_example,
        n_train,
        n_val,
        plan.expect_accuracy,
        max(1, predictors),
        plan.programs_dirs,
    )
    prep_calls = strat.prep_calls(strat.knobs | config.knobs, n_train) if strat.prep_calls else 0
    eval_calls = per_example * n_eval
    chars = sum(len(str(v)) for e in sample for v in e.inputs.values()) / max(len(sample), 1)
    demos = (
        (config.knobs.get(strat.demos_knob, 0) if strat.demos_knob else 0)
        + config.optimizer_knobs.get("bootstrapped", 0)
        + config.optimizer_knobs.get("labeled", 0)
    )
    prompt_per_call = chars / 4 * (1 + demos) + 150
    answer = task.answer_type.max_answer_tokens
    completion_per_call = (model.max_tokens / 2 if model else 128) if reasons else answer
    calls = compile_calls + prep_calls + eval_calls
    prompt_tokens, completion_tokens = round(calls * prompt_per_call), round(calls * completion_per_call)
    cost = None
    if model:  # with --batch a run's scoring goes by batch (a search's val rounds stay synchronous)
        batched = eval_calls if plan.batch and plan.mode != "search" else 0
        cost = _cost(model, (calls - batched) * prompt_per_call, (calls - batched) * completion_per_call)
        cost = _plus(cost, price(model, round(batched * prompt_per_call), round(batched * completion_per_call), batch=True))
    return {
        "config": config_label(config, plan.programs_dirs),
        "config_id": config.id,
        "compile_calls": compile_calls + prep_calls,
        "eval_calls": eval_calls,
        "calls": calls,
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "cost_usd": cost,
        "seconds": seconds(model, prompt_tokens, completion_tokens) if model else None,
    }


def _cost(model: Model, prompt_tokens: float, completion_tokens: float) -> float | None:
    return price(model, round(prompt_tokens), round(completion_tokens))


def _plus(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a + b


def seconds(model: Model, prompt_tokens: float, completion_tokens: float) -> float | None:
    """Wall time for the tokens at the model's declared speed, one request at a time (batching at
    the embedded server gains 1.3x at 4 requests, BENCHMARKS.md section 5); None when the model
    declares no speed (hosted models: their time depends on the provider's load)."""
    if not model.prompt_tok_s or not model.gen_tok_s:
        return None
    return prompt_tokens / model.prompt_tok_s + completion_tokens / model.gen_tok_s


def per_example(plan: RunPlan, task, config, model: Model) -> dict:
    """What one example costs under `config` once compiled: LM calls, tokens and USD (None when
    the model has no price)."""
    one = estimate_config(replace(plan, splits=("val",), limit=1), task, config, model)
    calls = one["eval_calls"]
    share = calls / max(one["calls"], 1)
    prompt, completion = one["prompt_tokens"] * share, one["completion_tokens"] * share
    usd = price(model, prompt, completion)
    return {"calls": calls, "prompt_tokens": prompt, "completion_tokens": completion, "cost_usd": usd}


def price(model: Model, prompt_tokens: float, completion_tokens: float, batch: bool = False) -> float | None:
    """USD for the tokens at the model's price (its own, else LiteLLM's table; `batch`: the
    table's batch price where it has one); None if unknown."""
    if model.price_in is not None and model.price_out is not None:
        return (prompt_tokens * model.price_in + completion_tokens * model.price_out) / 1e6
    if batch:
        from promptopt.models import batch_rates

        rates = batch_rates(model)
        if rates is not None:
            return prompt_tokens * rates[0] + completion_tokens * rates[1]
    import litellm

    try:
        cost_in, cost_out = litellm.cost_per_token(
            model=model.litellm_model, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens
        )
    except Exception:
        return None
    return cost_in + cost_out


def dry_run(plan: RunPlan) -> list[dict]:
    """The plan's configs with their estimated calls, tokens and cost; no model is called. For a
    search, its worst case: every config of its space within the caps (`demo_sets` demo sets per
    bootstrap config) on all of val, as if none were dropped, and on test the baseline with the
    dearest config (with the `pareto` objective, every config): the most it can cost."""
    if plan.mode == "search":
        configs = [parse_config("baseline", "none", plan.programs_dirs), *search_space(plan, plan.demo_sets)]
        tasks, models, _, _ = validate_plan(plan, configs=configs[:1], credentials=False)
    else:
        tasks, models, configs, _ = validate_plan(plan, credentials=False)
    rows = []
    for model in models:
        for task in tasks:
            served = [c for c in configs if serves(c, task, plan)]
            if plan.mode != "search":
                rows += [{"model": model.name, "task": task.name, **estimate_config(plan, task, c, model)} for c in served]
                continue
            rows += _search_worst_case(plan, task, model, served)
    return rows


def _search_worst_case(plan: RunPlan, task, model: Model, configs: list) -> list[dict]:
    baseline, space = configs[0], [c for c in configs[1:] if within_cap(plan, task, c, model)]
    on_val = replace(plan, splits=("val",))
    rows = [{"model": model.name, "task": task.name, "phase": "val", **estimate_config(on_val, task, c, model)}
            for c in space]  # fmt: skip
    if not space:
        return rows
    dearest = max(space, key=lambda c: per_example(plan, task, c, model)["calls"])
    tested = [baseline, *(space if plan.objective == "pareto" else [dearest])]
    on_test = replace(plan, splits=("test",))
    for cfg in tested:
        row = estimate_config(on_test, task, cfg, model)
        share = row["eval_calls"] / max(row["calls"], 1)  # compiled during the val phase: only scoring
        tokens = {k: round(row[k] * share) for k in ("prompt_tokens", "completion_tokens")}
        row |= {"compile_calls": 0, "calls": row["eval_calls"], **tokens,
                "cost_usd": price(model, tokens["prompt_tokens"], tokens["completion_tokens"], batch=plan.batch),
                "seconds": seconds(model, tokens["prompt_tokens"], tokens["completion_tokens"])}  # fmt: skip
        rows.append({"model": model.name, "task": task.name, "phase": "test", **row})
    return rows


def within_cap(plan: RunPlan, task, config, model: Model) -> bool:
    """Whether a config's estimated cost per example is within the search's caps."""
    if plan.max_cost_per_example is None and plan.max_calls_per_example is None:
        return True
    est = per_example(plan, task, config, model)
    if plan.max_calls_per_example is not None and est["calls"] > plan.max_calls_per_example:
        return False
    usd = est["cost_usd"]  # unknown price: the USD cap cannot apply (the search says so)
    return plan.max_cost_per_example is None or usd is None or usd <= plan.max_cost_per_example
