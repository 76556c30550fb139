"""Calibration of option-letter probabilities (letter_logprob): Brier, ECE and the letters' mass."""

from __future__ import annotations

import numpy as np
import pandas as pd

from promptopt import stats
from promptopt.sections import ReportSection, register, rows_of
from promptopt.stats import GROUP, brier_ece
from promptopt.tables import CONFIG_HEADERS, ConfigSplit, Section, config_cells, num, pct, tabulate


class Calibration(ConfigSplit):
    """How well a config's option-letter probabilities (letter_logprob) are calibrated on one split."""

    n: int  # items with a distribution over the letters
    unread: int  # items whose top tokens held no option letter (no answer)
    accuracy: float | None = None  # of the most probable letter, on those n items
    mean_confidence: float | None = None  # mean probability of the most probable letter
    brier: float | None = None  # mean over items of the sum over letters of (p - [letter is gold])^2; 0 is perfect
    ece: float | None = None  # expected calibration error, 10 equal-width confidence bins
    letter_mass: float | None = None  # mean probability the letters had among the top tokens, before normalizing


def calibration(records: pd.DataFrame) -> pd.DataFrame:
    """Per config and split, for strategies that store a distribution over option letters
    (letter_logprob): Brier score, ECE (10 bins), mean confidence and accuracy, over the items
    with a distribution (`unread`: items whose top tokens held no letter)."""
    part = stats.carrying(records, "letter_mass")
    rows = []
    for key, g in part.groupby(GROUP, sort=True):
        has = [(e.letter_probs, gold) for e, gold in zip(g["extras"], g["gold"], strict=True)]
        probs = [(p, gold) for p, gold in has if p]
        row = dict(zip(GROUP, key, strict=True)) | {"n": len(probs), "unread": len(has) - len(probs)}
        if probs:
            brier, ece, confidence, accuracy = brier_ece([p for p, _ in probs], [gold for _, gold in probs])
            mass = float(np.mean([e.letter_mass or 0.0 for e in g["extras"]]))
            row |= {"brier": brier, "ece": ece, "mean_confidence": confidence, "accuracy": accuracy,
                    "letter_mass": mass}  # fmt: skip
        rows.append(row)
    cols = [*GROUP, "n", "unread", "accuracy", "mean_confidence", "brier", "ece", "letter_mass"]
    return pd.DataFrame(rows, columns=cols)


def _calibration_sections(report) -> list[Section]:
    return tabulate(
        report.calibration,
        "Calibration of option-letter probabilities (letter_logprob)",
        [*CONFIG_HEADERS, "items", "accuracy %", "mean confidence %", "Brier", "ECE",
         "letter mass %", "no letter"],
        lambda r: [
            *config_cells(report, r), str(r.n),
            pct(r.accuracy), pct(r.mean_confidence), num(r.brier), num(r.ece), pct(r.letter_mass),
            str(r.unread),
        ],
        "Brier: mean over items of the sum over letters of (probability - 1 if gold else 0)^2 (0 is perfect, "
        "a uniform guess over 4 letters scores 0.75); ECE: 10 equal-width confidence bins, the item-weighted "
        "gap between accuracy and mean confidence; letter mass: how much of the next token's probability the "
        "letters had before being normalized over them.",
    )


register(ReportSection("calibration", Calibration, lambda i: rows_of(calibration(i.records)), _calibration_sections,
                       shown=100, stored=16, doc=__doc__))
