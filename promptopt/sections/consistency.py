"""Consistency under option shuffling: the share of questions answered alike under every option order."""

from __future__ import annotations

import json

import pandas as pd

from promptopt.estimators import wilson
from promptopt.records import typed
from promptopt.sections import ReportSection, register, rows_of
from promptopt.stats import answered
from promptopt.tables import CONFIG_HEADERS, RunModelTask, Section, ci, config_cells, tabulate


class Consistency(RunModelTask):
    config_id: str
    split: str
    n: int
    orders: int
    consistency: float | None
    ci_low: float | None
    ci_high: float | None


def shuffle_votes(raw_output: str | None) -> list | None:
    """The votes a choice_shuffle record of an older store kept in its raw output, or None."""
    if not raw_output or not raw_output.startswith("{"):
        return None
    try:
        votes = json.loads(raw_output).get("votes")
    except (ValueError, AttributeError):
        return None
    return votes if isinstance(votes, list) and votes else None


def order_votes(record) -> list | None:
    """The votes a record cast under shuffled option orders: from its extras (any strategy that
    declares shuffles_options), or from an older choice_shuffle record's raw output."""
    votes = record.extras.order_votes
    if votes:
        return votes
    return shuffle_votes(record.raw_output) if record.strategy == "choice_shuffle" else None


def consistency(records: pd.DataFrame) -> pd.DataFrame:
    """Where a strategy voted under shuffled option orders (choice_shuffle, or any that declares
    shuffles_options): the share of questions answered the same under every option order.

    A question counts as consistent when every vote names the same option (an unreadable
    vote breaks consistency). Records without stored votes (older runs) are left out.
    """
    part = answered(typed(records))
    part = part[
        (part["strategy"] == "choice_shuffle") | part["extras"].map(lambda e: e.order_votes is not None)
    ]
    keys = ["run_id", "model", "task", "config_id", "split"]
    rows = []
    for key, g in part.groupby(keys, sort=True):
        votes = [v for v in map(order_votes, g.itertuples()) if v is not None]
        if not votes:
            continue
        same = sum(1 for v in votes if v[0] is not None and all(x == v[0] for x in v))
        low, high = wilson(same, len(votes))
        rows.append(
            dict(zip(keys, key, strict=True))
            | {
                "n": len(votes),
                "orders": max(len(v) for v in votes),
                "consistency": same / len(votes),
                "ci_low": low,
                "ci_high": high,
            }  # fmt: skip
        )
    return pd.DataFrame(rows)


def _consistency_sections(report) -> list[Section]:
    return tabulate(
        report.consistency,
        "Consistency under option shuffling (choice_shuffle)",
        [*CONFIG_HEADERS, "questions", "orders", "same answer % [95% CI]"],
        lambda r: [
            *config_cells(report, r), str(r.n),
            str(r.orders), ci(r.consistency, r.ci_low, r.ci_high),
        ],
        "Share of questions whose votes name the same option under every option order.",
    )


register(ReportSection("consistency", Consistency, lambda i: rows_of(consistency(i.records)), _consistency_sections,
                       shown=120, stored=6, required=True, doc=__doc__))
