"""Multiple choice against open-ended: the same model, config and test items, paired by item."""

from __future__ import annotations

import pandas as pd

from promptopt.estimators import MIN_PAIRED
from promptopt.records import typed
from promptopt.sections import ReportSection, register, rows_of
from promptopt.stats import answered, paired
from promptopt.tables import Row, Section, ci, display, pct, pts, run_label, tabulate


class OpenGap(Row):
    """A multiple-choice task beside its open-ended twin: same run, model, config and test items."""

    run_id: str
    model: str
    task: str
    open_task: str
    config_id: str
    strategy: str
    metric: str
    n: int
    multiple_choice_score: float | None
    open_score: float | None
    diff: float | None
    ci_low: float | None
    ci_high: float | None
    p: float | None


OPEN = ":open"


def open_gaps(records: pd.DataFrame, b: int = 10_000, seed: int = 0) -> pd.DataFrame:
    """Each multiple-choice task beside its open-ended twin (TASK and TASK:open), for the same
    run, model and config on the same test items: the multiple-choice accuracy, each metric of
    the open-ended answers, and their paired difference (open − multiple choice) with its 95%
    interval — the gap CUPCase reports."""
    tasks = set(records["task"])
    twins = [t for t in tasks if t.endswith(OPEN) and t.removesuffix(OPEN) in tasks]
    if not twins:
        return pd.DataFrame()
    part = answered(typed(records[records["split"] == "test"]))
    rows = []
    for twin in sorted(twins):
        base = twin.removesuffix(OPEN)
        mc = part[part["task"] == base]
        op = part[part["task"] == twin]
        for (run_id, model, config_id), g in op.groupby(["run_id", "model", "config_id"], sort=True):
            m = mc[(mc["run_id"] == run_id) & (mc["model"] == model) & (mc["config_id"] == config_id)]
            if m.empty:
                continue
            mc_scores = m.set_index("example_id")["score"].astype(float)
            per_item = pd.DataFrame([e.metrics or {} for e in g["extras"]],
                                    index=g["example_id"].to_numpy())  # fmt: skip
            for metric in per_item.columns:
                scores = per_item[metric].dropna().astype(float)
                found = paired(scores, mc_scores, b=b, seed=seed, min_n=MIN_PAIRED)
                rows.append({
                    "run_id": run_id, "model": model, "task": base, "open_task": twin, "config_id": config_id,
                    "strategy": g["strategy"].iloc[0], "metric": metric, "n": found["n"],
                    "multiple_choice_score": found["score_b"], "open_score": found["score_a"], "diff": found["diff"],
                    "ci_low": found["ci_low"] if found["n"] else None, "ci_high": found["ci_high"] if found["n"] else None,
                    "p": found["p"],
                })  # fmt: skip
    return pd.DataFrame(rows)


def _open_ended_sections(report) -> list[Section]:
    return tabulate(
        report.open_ended,
        "Multiple choice vs open-ended: the same model, config and test items",
        ["model", "task", "config", "metric", "items", "multiple choice %", "open-ended", "open − MC [95% CI]", "p"],
        lambda r: [
            display(r.model), f"{r.task} vs {r.open_task}" + run_label(report, r.run_id), r.config_id, r.metric,
            str(r.n), pct(r.multiple_choice_score), pct(r.open_score), ci(r.diff, r.ci_low, r.ci_high, pts),
            "" if r.p is None else f"{r.p:.3g}",
        ],
        "Paired by item: each open-ended metric against the multiple-choice accuracy on the items both "
        "answered; the interval is the bootstrap over those items.",
    )


register(ReportSection("open_ended", OpenGap, lambda i: rows_of(open_gaps(i.records, b=i.b, seed=i.seed)),
                       _open_ended_sections, shown=80, stored=13, doc=__doc__))
