"""Head-to-head: each pair of models on the same test items, under the baseline and at their ceilings, Holm-corrected."""

from __future__ import annotations

from typing import Literal

from promptopt.estimators import MIN_PAIRED
from promptopt.sections import ReportSection, register, rows_of
from promptopt.tables import Row, Section, chosen_on, ci, display, pts, run_label, tabulate


class Comparison(Row):
    """Two models on the same test items, under the baseline or at their ceilings."""

    run_id: str
    task: str
    model_a: str
    model_b: str
    setting: Literal["baseline", "ceiling"]
    config_a: str
    config_b: str
    n: int
    score_a: float | None
    score_b: float | None
    diff: float | None
    ci_low: float | None
    ci_high: float | None
    p: float | None
    selected_on: str | None
    p_holm: float | None
    comparisons: int | None
    outcome: str | None
    mde: float | None = None  # smallest difference this comparison detects at 80% power (promptopt.detectable)
    # 0/1 scores: items right under A only, under B only, under both, under neither
    only_a: int | None = None
    only_b: int | None = None
    both: int | None = None
    neither: int | None = None
    only_a_items: list[str] | None = None  # the ids of the items right under A only
    only_b_items: list[str] | None = None
    # with --equivalence-margin: TOST's p for "within ±margin", and equivalent / different / undecided
    equivalence_p: float | None = None
    equivalence: Literal["equivalent", "different", "undecided"] | None = None


def _head_to_head_sections(report) -> list[Section]:
    margin = report.settings.equivalence_margin
    equivalence = ("" if margin is None else f" Within ±{100 * margin:g} pts: equivalent when both one-sided "
                   f"tests (TOST) put the difference inside the margin at alpha {report.settings.alpha:g}, different when "
                   "the corrected outcome is a win or loss, else undecided.")  # fmt: skip
    return tabulate(
        report.head_to_head,
        "Head-to-head (paired, same test items)",
        [
            "task", "model A", "model B", "under", "chosen on", "n", "A − B pts [95% CI]", "p (Holm)",
            "A's outcome", "detectable pts", "A only / B only / both / neither",
            *([f"within ±{100 * margin:g} pts"] if margin is not None else []),
        ],
        lambda r: [
            r.task + run_label(report, r.run_id), display(r.model_a), display(r.model_b), r.setting,
            chosen_on(r.selected_on) if r.setting == "ceiling" else "—", str(r.n),
            ci(r.diff, r.ci_low, r.ci_high, pts), "—" if r.p_holm is None else f"{r.p_holm:.3g}",
            r.outcome or f"none (n < {MIN_PAIRED})", "—" if r.mde is None else f"±{100 * r.mde:.1f}",
            "—" if r.only_a is None else f"{r.only_a} / {r.only_b} / {r.both} / {r.neither}",
            *([r.equivalence or "—"] if margin is not None else []),
        ],
        "Under baseline: both models with the fixed baseline prompt; under ceiling: each model with its "
        "own chosen config. n = test items both answered. Outcomes are Holm-corrected over every "
        "comparison of the task; the interval is per comparison. Detectable: the smallest difference "
        f"this comparison finds 80% of the time at alpha {report.settings.alpha:g}, from its items' discordance (a tie with a "
        "large detectable difference says little); the last column splits the items by who got them right."
        + equivalence,
    )


register(ReportSection("head_to_head", Comparison, lambda i: rows_of(i.compared[1]), _head_to_head_sections, shown=40,
                       stored=3, required=True, doc=__doc__))
