"""The anytime curve of a search: what it had found after each round, against what it had spent.

Per (run, model, task) and per optimizer (`*`: every config of the search), one row per round:
the LM calls and dollars spent so far (preparation, compiles and val scoring), the val examples
each surviving config had been scored on, and the config the search would have chosen then
with its val score. Read from the store's `anytime` table, which the search writes as it goes.
"""

from __future__ import annotations

import pandas as pd

from promptopt.sections import Inputs, ReportSection, register
from promptopt.tables import Row, Section, pct


class AnytimePoint(Row):
    run_id: str
    model: str
    task: str
    optimizer: str  # "*": the whole search; else only the configs compiled with this optimizer
    step: int
    n: int  # val examples each surviving config had been scored on
    lm_calls: int  # spent so far, compiles and preparation included
    cost_usd: float
    config_id: str  # the config the search would have chosen at this point
    val_score: float | None


def compute(inputs: Inputs) -> list[dict]:
    points = inputs.tables.get("anytime")
    if points is None or points.empty:
        return []
    cols = list(AnytimePoint.model_fields)
    out = points.reindex(columns=cols).sort_values(["run_id", "model", "task", "optimizer", "step"])
    out = out.astype(object).where(pd.notna(out), None)
    return out.to_dict(orient="records")


def render(report) -> list[Section]:
    rows = report.anytime
    if not rows:
        return []
    several = len({r.run_id for r in rows}) > 1
    body = [
        [r.task + (f" — {r.run_id}" if several else ""), r.model.split("#")[0].split("@")[0], r.optimizer,
         str(r.step), str(r.n), f"{r.lm_calls:,}", f"{r.cost_usd:.4f}", r.config_id, pct(r.val_score)]
        for r in rows
    ]  # fmt: skip
    return [Section(
        "Anytime curve: the search's best config so far against what it had spent",
        ["task", "model", "optimizer", "round", "val n", "LM calls", "$", "best so far", "val %"],
        body,
        "Per round of the search: calls and dollars spent so far on that model and task (compiles and "
        "preparation included; optimizer * is the whole search, the others count only their own configs) and "
        "the config it would have chosen then, with its val score on the examples scored so far.",
    )]  # fmt: skip


register(ReportSection("anytime", AnytimePoint, compute, render, shown=145, reads=("anytime",), doc=__doc__))
