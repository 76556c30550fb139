"""Rank flips: pairs of models whose order under the baseline reverses at their ceilings, real or within noise."""

from __future__ import annotations

from typing import Literal

from promptopt.sections import ReportSection, register, rows_of
from promptopt.tables import Row, Section, chosen_on, ci, display, pts, run_label


class Flip(Row):
    """A pair of models whose order reverses from the baseline to their ceilings."""

    run_id: str
    task: str
    model_a: str
    model_b: str
    baseline_diff: float
    baseline_ci_low: float | None
    baseline_ci_high: float | None
    ceiling_diff: float
    ceiling_ci_low: float | None
    ceiling_ci_high: float | None
    baseline_n: int
    ceiling_n: int
    baseline_p_holm: float | None
    ceiling_p_holm: float | None
    comparisons: int | None
    selected_on: str | None
    status: Literal["real", "within noise"]


def _flips_sections(report) -> list[Section]:
    if not (report.head_to_head or report.flips):
        return []
    return [
        Section(
            "Rank flips (baseline → ceiling)",
            [
                "task", "ahead at ceiling", "behind at ceiling", "baseline diff pts [95% CI] n",
                "ceiling diff pts [95% CI] n", "ceiling chosen on", "status",
            ],
            [
                [
                    r.task + run_label(report, r.run_id), display(r.model_a), display(r.model_b),
                    ci(r.baseline_diff, r.baseline_ci_low, r.baseline_ci_high, pts) + f" n={r.baseline_n}",
                    ci(r.ceiling_diff, r.ceiling_ci_low, r.ceiling_ci_high, pts) + f" n={r.ceiling_n}",
                    chosen_on(r.selected_on), r.status,
                ]
                for r in report.flips
            ],
            "A flip is real only when both paired differences are decided after the Holm correction; "
            "otherwise it is within noise." + ("" if report.flips else " No pair of models changed order.")
            + "".join(f" {line}" for line in flip_summary(report)),
        )
    ]


def flip_summary(report) -> list[str]:
    """Per (run, task), the sentence a paper would print (flip_sentences)."""
    return [line for _, _, line in flip_sentences(report)]


def flip_sentences(report) -> list[tuple[str, str, str]]:
    """Per (run, task), the sentence a paper would print: how many model pairs changed order, how
    many of those flips are real after Holm, and the smallest difference the ceiling comparisons
    could have detected (the median over pairs; a flip below it was never going to show)."""
    lines = []
    keys = sorted({(h.run_id, h.task) for h in report.head_to_head if h.setting == "ceiling"})
    for run_id, task in keys:
        pairs = [h for h in report.head_to_head if (h.run_id, h.task, h.setting) == (run_id, task, "ceiling")]
        flips = [f for f in report.flips if (f.run_id, f.task) == (run_id, task)]
        real = sum(f.status == "real" for f in flips)
        detectable = sorted(h.mde for h in pairs if h.mde is not None)
        at = (f"; at their ceilings the comparisons detect differences of {100 * detectable[len(detectable) // 2]:.1f} "
              f"points or more (median over pairs, 80% power, alpha {report.settings.alpha:g})") if detectable else ""  # fmt: skip
        lines.append((run_id, task, f"{task}{run_label(report, run_id)}: {len(flips)} of {len(pairs)} model pairs "
                                    f"changed order, {real} of them a real flip after Holm{at}."))  # fmt: skip
    return lines


register(ReportSection("flips", Flip, lambda i: rows_of(i.compared[2]), _flips_sections, shown=50, stored=4, required=True,
                       doc=__doc__))
