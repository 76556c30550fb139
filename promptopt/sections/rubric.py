"""Per-item rubrics broken down by criterion tag (HealthBench's themes and axes).

A task with `judge: {criteria: COLUMN}` has each answer judged criterion by criterion, and each
record keeps every criterion's points, tags and vote (`extras.criteria`). Per (run, model, task,
config, split) and tag, an item's tag score is the points it met among the criteria carrying the
tag over the positive points among them, clipped to [0, 1], as the item's whole score is; an item
whose criteria with the tag are all negative has no points possible there and is left out. The
row gives the mean over items with its 95% interval (Wilson for 0/1 scores, else the bootstrap
over items, with the report's --bootstrap and --seed; items that share a cluster count as one
cluster, as everywhere in the report). An item whose judge call failed has no verdicts and is left out; an unanswered
item met nothing.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from promptopt.records import typed
from promptopt.sections import Inputs, ReportSection, register
from promptopt.tables import Row, Section, pct

KEY = ("run_id", "model", "task", "config_id", "split")


class RubricTag(Row):
    run_id: str
    model: str
    task: str
    config_id: str
    split: str
    tag: str
    items: int  # items with points possible among the criteria with this tag
    criteria: int  # criteria with this tag, over those items
    score: float  # mean of the items' tag scores
    ci_low: float
    ci_high: float


def tag_scores(criteria: list[dict]) -> dict[str, tuple[float, int]]:
    """One item's tag -> (its clipped points met over points possible, criteria with the tag)."""
    out: dict[str, tuple[float, int]] = {}
    for tag in sorted({t for c in criteria for t in c.get("tags") or []}):
        mine = [c for c in criteria if tag in (c.get("tags") or [])]
        possible = sum(c["points"] for c in mine if c["points"] > 0)
        if possible > 0:
            got = sum(c["points"] * (c.get("met") or 0.0) for c in mine)
            out[tag] = (min(1.0, max(0.0, got / possible)), len(mine))
    return out


def compute(inputs: Inputs) -> list[dict]:
    from promptopt.stats import cluster_labels, score_ci

    records = typed(inputs.records)
    if records.empty:
        return []
    has = records["extras"].map(lambda e: e.criteria is not None).astype(bool)
    by: dict[tuple, dict[str, list[tuple[float, int, str]]]] = {}
    for r in records[has].itertuples():
        criteria = r.extras.criteria
        if isinstance(criteria, list):
            slot = by.setdefault(tuple(getattr(r, k) for k in KEY), {})
            for tag, (score, n) in tag_scores(criteria).items():
                slot.setdefault(tag, []).append((score, n, str(r.example_id)))
    labels = cluster_labels(records[has]) if has.any() else {}
    rows = []
    for key, tags in sorted(by.items()):
        mine = labels.get((key[0], key[2]))  # items that share a cluster (the task's cluster column) resample together
        for tag, found in sorted(tags.items()):
            scores = np.array([s for s, _, _ in found], dtype=float)
            ids = pd.Series([i for _, _, i in found])
            clusters = None if mine is None else ids.map(mine).fillna(ids).to_numpy()  # no label: its own cluster
            low, high = score_ci(scores, b=inputs.b, seed=inputs.seed, clusters=clusters)
            rows.append(dict(zip(KEY, key, strict=True)) | {
                "tag": tag, "items": len(found), "criteria": sum(n for _, n, _ in found), "score": float(scores.mean()),
                "ci_low": low, "ci_high": high})  # fmt: skip
    return rows


def render(report) -> list[Section]:
    rows = report.rubric_tags
    if not rows:
        return []
    several = len({r.run_id for r in rows}) > 1
    body = [
        [r.task + (f" — {r.run_id}" if several else ""), r.model.split("#")[0].split("@")[0], r.config_id, r.split,
         r.tag, str(r.items), str(r.criteria), f"{pct(r.score)} [{pct(r.ci_low)}, {pct(r.ci_high)}]"]
        for r in rows
    ]  # fmt: skip
    return [Section(
        "Rubric scores by criterion tag",
        ["task", "model", "config", "split", "tag", "items", "criteria", "score % [95% CI]"],
        body,
        "Per tag of the items' rubrics: an item's tag score is the points it met among its criteria with that tag "
        "over their positive points, clipped to [0, 1] like its whole score; the mean over items with points possible "
        "there (Wilson interval for 0/1 scores, else the bootstrap over items).",
    )]  # fmt: skip


register(ReportSection("rubric_tags", RubricTag, compute, render, shown=73, doc=__doc__))
