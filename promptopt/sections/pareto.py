"""The Pareto frontier of score against cost per example, with the configs a search chose marked."""

from __future__ import annotations

import math
from typing import Literal

import pandas as pd

from promptopt.sections import Inputs, ReportSection, register, rows_of
from promptopt.sections import costs as cost_section
from promptopt.tables import ConfigRow, RunTaskModel, Section, ci, display, money, run_label, tabulate


class ParetoPoint(ConfigRow, RunTaskModel):
    score: float
    ci_low: float | None
    ci_high: float | None
    usd_per_example: float
    tokens_per_example: float
    cost_axis: Literal["usd", "tokens", "tokens (mixed)"]
    cost: float
    frontier: bool
    judge_usd_per_example: float = 0.0  # the judge's grading, in the cost with --pareto-cost all
    one_off_usd_per_example: float = 0.0  # compile and preparation over the examples scored (--pareto-cost all)
    search_chose: bool = False  # a search chose this config on val (--objective pareto: each of its front)


PARETO_COSTS = ("inference", "all")


def pareto(summary: pd.DataFrame, unpriced: set[str] | None = None, costs: pd.DataFrame | None = None,
           include: str = "inference") -> pd.DataFrame:
    """Every (model, config) per (run, task) as a point of score vs cost per example, frontier
    marked: the task model's inference cost, or with `include="all"` also the judge's grading per
    example and the one-off cost (compile and preparation) spread over the examples scored, from
    `costs` (promptopt.sections.costs); each point keeps those two parts apart.

    Points are test scores (val for a task with no test records). Cost is dollars per example
    when every model of the task has a price; tokens per example when none has (local models
    at the default price), and also when priced and `unpriced` models are mixed — a $0 model
    would otherwise sit on the frontier for free (`cost_axis` says "tokens (mixed)" then).
    A point is on the frontier when no other point scores at least as well for no more cost,
    and strictly better on one of them.
    """
    unpriced = unpriced or set()
    rows = []
    for _key, g in summary.groupby(["run_id", "task"], sort=True):
        split = "test" if (g["split"] == "test").any() else "val"
        g = g[(g["split"] == split) & (g["n"] > 0)]
        if g.empty:
            continue
        usd = g["cost_usd"] / g["n_items"]
        tokens = (g["prompt_tokens"] + g["completion_tokens"]) / g["n_items"]
        parts = _cost_parts(g, costs)
        if include == "all":
            usd = usd + parts["judge_usd_per_example"] + parts["one_off_usd_per_example"]
            tokens = tokens + parts["judge_tokens_per_example"] + parts["one_off_tokens_per_example"]
        free = set(g["model"]) & unpriced
        mixed = bool(free) and bool(set(g["model"]) - free)
        axis = "tokens (mixed)" if mixed else "usd" if (usd > 0).any() else "tokens"
        pts = g.assign(
            usd_per_example=usd, tokens_per_example=tokens, cost=usd if axis == "usd" else tokens, cost_axis=axis,
            judge_usd_per_example=parts["judge_usd_per_example"], one_off_usd_per_example=parts["one_off_usd_per_example"],
        )
        pts = pts.sort_values(["cost", "score", "model", "config_id"], ascending=[True, False, True, True])
        best, last, on = -math.inf, None, []
        for cost, score in zip(pts["cost"], pts["score"], strict=True):
            if score > best or (cost, score) == last:
                on.append(True)
                best, last = score, (cost, score)
            else:
                on.append(False)
        pts["frontier"] = on
        pts["split"] = split
        rows.append(pts)
    cols = ["run_id", "task", "model", "strategy", "optimizer", "config_id", "split", "n", "score", "ci_low",
            "ci_high", "usd_per_example", "tokens_per_example", "cost_axis", "cost", "frontier",
            "judge_usd_per_example", "one_off_usd_per_example"]  # fmt: skip
    return pd.concat(rows)[cols].reset_index(drop=True) if rows else pd.DataFrame(columns=cols)


def _cost_parts(points: pd.DataFrame, costs: pd.DataFrame | None) -> pd.DataFrame:
    """Per point (run, model, task, config), the judge's dollars and tokens per example and the
    one-off dollars and tokens (compile and preparation) over the examples its cost counts; 0
    without a costs table."""
    names = ["judge_usd_per_example", "judge_tokens_per_example", "one_off_usd_per_example", "one_off_tokens_per_example"]
    out = pd.DataFrame(0.0, index=points.index, columns=names)
    if costs is None or costs.empty:
        return out
    by = {(r.run_id, r.model, r.task, r.config_id): r for r in costs.itertuples()}
    for idx, p in points.iterrows():
        c = by.get((p["run_id"], p["model"], p["task"], p["config_id"]))
        if c is not None and c.n:
            out.loc[idx] = [c.judge_usd_per_example, c.judge_tokens_per_example, c.one_off_usd / c.n,
                            (c.compile_tokens + c.prep_tokens) / c.n]  # fmt: skip
    return out


def _mark_chosen(pareto: pd.DataFrame, choices: pd.DataFrame | None) -> pd.DataFrame:
    """Pareto points a search chose (with --objective pareto, every config of its front)."""
    if pareto.empty:
        return pareto
    picked = set() if choices is None else set(zip(choices.run_id, choices.model, choices.task, choices.config_id, strict=True))
    keys = zip(pareto.run_id, pareto.model, pareto.task, pareto.config_id, strict=True)
    return pareto.assign(search_chose=[k in picked for k in keys])


def _pareto_sections(report) -> list[Section]:
    return tabulate(
        report.pareto,
        "Pareto frontier: score vs " + ("inference cost" if report.settings.pareto_cost == "inference" else
                                         "cost (inference, judging, one-off compile)") + " per example",
        [
            "task", "model", "strategy", "optimizer", "config", "split", "score % [95% CI]", "$/ex",
            "tokens/ex", "frontier",
        ],
        lambda r: [
            r.task + run_label(report, r.run_id), display(r.model), r.strategy, r.optimizer,
            r.config_id, r.split, ci(r.score, r.ci_low, r.ci_high), money(r.usd_per_example),
            f"{r.tokens_per_example:.0f}", ("★" if r.frontier else "") + (" chosen" if r.search_chose else ""),
        ],
        "★ = no other (model, config) scores at least as well for no more cost"
        + ("; chosen = what a search chose on val" if any(r.search_chose for r in report.pareto) else "")
        + ". Cost axis: dollars, or "
        "tokens per example where every point of a task costs $0 or priced and unpriced models are mixed "
        "(a $0 model would otherwise be on the frontier for free)."
        + (" The cost is the task model's calls alone; --pareto-cost all adds judging and compiles."
           if report.settings.pareto_cost == "inference" else
           " The cost adds to the task model's calls the judge's grading per example and the one-off compile and "
           "preparation cost over the examples scored (both apart in the JSON)."),
    )


def compute(inputs: Inputs) -> list[dict]:
    points = pareto(inputs.summary, inputs.free, cost_section.of(inputs), include=inputs.settings.get("pareto_cost", "inference"))
    return rows_of(_mark_chosen(points, inputs.tables.get("choices")))


register(ReportSection("pareto", ParetoPoint, compute, _pareto_sections, shown=140, stored=8, required=True,
                       reads=("choices",), doc=__doc__))
