"""Metrics of free-text answers: each metric's mean over the items it was measured on, the primary one marked."""

from __future__ import annotations

import pandas as pd

from promptopt import stats
from promptopt.sections import ReportSection, register, rows_of
from promptopt.stats import GROUP, cluster_labels, score_ci
from promptopt.tables import (
    CONFIG_HEADERS,
    ConfigRow,
    RunModelTask,
    Section,
    ci,
    config_cells,
    tabulate,
)


class MetricScore(ConfigRow, RunModelTask):
    """One metric of a free-text (or MEDEC) config on one split."""

    metric: str
    score: float | None
    ci_low: float | None
    ci_high: float | None
    primary: bool  # the metric that is the records' score (ceilings and searches use it)


def metric_scores(records: pd.DataFrame, b: int = 10_000, seed: int = 0) -> pd.DataFrame:
    """Per (run, model, task, config, split) and metric: the mean over the answered items the
    metric was measured on, with its 95% interval (Wilson for 0/1 scores, else the bootstrap over
    items; counting clusters where the items come in clusters, as `summarize` does); `primary`
    marks the metric that is the record's score."""
    part = stats.measured(records)
    labels = cluster_labels(records)
    rows = []
    for key, g in part.groupby(GROUP, sort=True):
        per_item = pd.DataFrame([e.metrics or {} for e in g["extras"]], index=g["example_id"].astype(str).to_numpy())
        primary = {e.primary for e in g["extras"]} - {None}
        mine = labels.get((g["run_id"].iloc[0], g["task"].iloc[0]))
        for metric in per_item.columns:
            measured_on = per_item[metric].dropna()
            values = measured_on.to_numpy(dtype=float)
            if not len(values):
                rows.append(dict(zip(GROUP, key, strict=True)) | {"metric": metric, "n": 0, "score": None,
                            "ci_low": None, "ci_high": None, "primary": metric in primary})  # fmt: skip
                continue
            groups = None if mine is None else mine.reindex(measured_on.index).to_numpy()
            low, high = score_ci(values, b=b, seed=seed, clusters=groups)
            rows.append(
                dict(zip(GROUP, key, strict=True))
                | {"metric": metric, "n": len(values), "score": float(values.mean()), "ci_low": low,
                   "ci_high": high, "primary": metric in primary}  # fmt: skip
            )
    cols = [*GROUP, "metric", "n", "score", "ci_low", "ci_high", "primary"]
    return pd.DataFrame(rows, columns=cols)


def _metrics_sections(report) -> list[Section]:
    return tabulate(
        report.metrics,
        "Metrics of free-text answers",
        [*CONFIG_HEADERS, "metric", "items", "score [95% CI]", "primary"],
        lambda r: [
            *config_cells(report, r), r.metric, str(r.n),
            ci(r.score, r.ci_low, r.ci_high), "★" if r.primary else "",
        ],
        "Each metric is a mean over the answered items it was measured on (0-100): exact and token_f1 on "
        "normalized words, rouge1/rouge2/rougeL F-measure (rouge-score, stemmed), chrf and bleu (sacrebleu, "
        "per sentence), judge = the first trusted judge's verdict. ★ = the primary metric, the score every "
        "other table shows. Intervals: Wilson for 0/1 scores, else the bootstrap over items.",
    )


register(ReportSection("metrics", MetricScore, lambda i: rows_of(metric_scores(i.records, b=i.b, seed=i.seed)),
                       _metrics_sections, shown=60, stored=9, doc=__doc__))
