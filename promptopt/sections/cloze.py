"""Cloze scoring: acc and acc_norm of each option's text scored as the question's continuation."""

from __future__ import annotations

import pandas as pd

from promptopt import stats
from promptopt.estimators import wilson
from promptopt.sections import ReportSection, register, rows_of
from promptopt.stats import GROUP
from promptopt.tables import CONFIG_HEADERS, ConfigSplit, Section, ci, config_cells, tabulate


class ClozeScore(ConfigSplit):
    """`cloze` accuracy by summed log-probability (acc) and per character of the option (acc_norm), lm-eval's two figures."""

    n: int
    acc: float
    acc_ci_low: float
    acc_ci_high: float
    acc_norm: float
    acc_norm_ci_low: float
    acc_norm_ci_high: float


def cloze_scores(records: pd.DataFrame) -> pd.DataFrame:
    """Per config and split, for `cloze`: accuracy by summed log-probability (acc) and by
    log-probability per character of the option (acc_norm), as lm-evaluation-harness reports them, with Wilson CIs."""
    part = stats.carrying(records, "cloze")
    rows = []
    for key, g in part.groupby(GROUP, sort=True):
        n = len(g)
        acc = sum(e.cloze.get("acc") == gold for e, gold in zip(g["extras"], g["gold"], strict=True))
        norm = sum(e.cloze.get("acc_norm") == gold for e, gold in zip(g["extras"], g["gold"], strict=True))
        (al, ah), (nl, nh) = wilson(acc, n), wilson(norm, n)
        rows.append(dict(zip(GROUP, key, strict=True)) | {
            "n": n, "acc": acc / n, "acc_ci_low": al, "acc_ci_high": ah,
            "acc_norm": norm / n, "acc_norm_ci_low": nl, "acc_norm_ci_high": nh})  # fmt: skip
    cols = [*GROUP, "n", "acc", "acc_ci_low", "acc_ci_high", "acc_norm", "acc_norm_ci_low", "acc_norm_ci_high"]
    return pd.DataFrame(rows, columns=cols)


def _cloze_sections(report) -> list[Section]:
    return tabulate(
        report.cloze,
        "Cloze scoring: acc and acc_norm",
        [*CONFIG_HEADERS, "items", "acc % [95% CI]", "acc_norm % [95% CI]"],
        lambda r: [
            *config_cells(report, r), str(r.n),
            ci(r.acc, r.acc_ci_low, r.acc_ci_high), ci(r.acc_norm, r.acc_norm_ci_low, r.acc_norm_ci_high),
        ],
        "Each option's text scored as the continuation of the question: acc by summed log-probability, "
        "acc_norm by log-probability per character of the option; the config's score is the one its length_norm knob names.",
    )


register(ReportSection("cloze", ClozeScore, lambda i: rows_of(cloze_scores(i.records)), _cloze_sections, shown=101,
                       stored=17, doc=__doc__))
