"""Retrieval: the passages a strategy read, and recall@k of the gold passage."""

from __future__ import annotations

import numpy as np
import pandas as pd

from promptopt import stats
from promptopt.estimators import wilson
from promptopt.sections import ReportSection, register, rows_of
from promptopt.stats import GROUP
from promptopt.tables import CONFIG_HEADERS, ConfigSplit, Section, ci, config_cells, tabulate


class RetrievalScore(ConfigSplit):
    """What a retrieval config read: passages per item and, where gold passages are known, recall@k."""

    n: int
    k: int  # passages retrieved per item (the most any item got)
    recall_n: int  # items with a known gold passage
    recall: float | None = None  # share of those items whose gold passage was among the k
    recall_ci_low: float | None = None
    recall_ci_high: float | None = None


def retrieval(records: pd.DataFrame) -> pd.DataFrame:
    """Per config and split, for retrieval strategies: passages read per item and, where the
    task names each item's gold passage, recall@k (share of items whose gold passage was
    retrieved) with its Wilson interval."""
    part = stats.carrying(records, "retrieved")
    rows = []
    for key, g in part.groupby(GROUP, sort=True):
        k = max((len(e.retrieved or []) for e in g["extras"]), default=0)
        recalls = [e.recall for e in g["extras"] if e.recall is not None]
        row = dict(zip(GROUP, key, strict=True)) | {"n": len(g), "k": k, "recall_n": len(recalls)}
        if recalls:
            hits = float(np.sum(recalls))
            low, high = wilson(hits, len(recalls))
            row |= {"recall": hits / len(recalls), "recall_ci_low": low, "recall_ci_high": high}
        rows.append(row)
    return pd.DataFrame(rows, columns=[*GROUP, "n", "k", "recall_n", "recall", "recall_ci_low", "recall_ci_high"])


def _retrieval_sections(report) -> list[Section]:
    return tabulate(
        report.retrieval,
        "Retrieval: passages read and recall@k",
        [*CONFIG_HEADERS, "items", "k", "recall@k % [95% CI]"],
        lambda r: [
            *config_cells(report, r), str(r.n), str(r.k),
            ci(r.recall, r.recall_ci_low, r.recall_ci_high) if r.recall is not None else "no gold passages",
        ],
        "recall@k: share of items whose gold passage (named by the task's corpus) was among the k retrieved.",
    )


register(ReportSection("retrieval", RetrievalScore, lambda i: rows_of(retrieval(i.records)), _retrieval_sections,
                       shown=102, stored=18, doc=__doc__))
