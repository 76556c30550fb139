"""Ceilings and the leaderboard: per (run, model, task) the baseline, the ceiling chosen on val with an
interval that includes the choice, the optimistic max, the uplift and its Holm-corrected verdict, ranks
(promptopt.stats.compare computes them, once per report: Inputs.compared).
"""

from __future__ import annotations

import math
from typing import Literal

from promptopt.estimators import MIN_PAIRED
from promptopt.sections import ReportSection, no_tables, register, rows_of
from promptopt.tables import Row, Section, chosen_on, ci, display, pct, pts, run_label


class Ceiling(Row):
    """Per (run, model, task): the baseline, the ceiling (the config chosen on val, scored on
    test), the optimistic max, and the paired uplift with its Holm-corrected verdict."""

    model: str
    task: str
    baseline_score: float | None
    ceiling_score: float | None
    ceiling_ci_low: float | None
    ceiling_ci_high: float | None
    optimistic_max_score: float | None
    uplift: float | None
    uplift_ci_low: float | None
    uplift_ci_high: float | None
    verdict: str | None
    run_id: str
    selected_on: str | None
    uplift_n: int | None
    baseline_n: int | None
    ceiling_n: int | None
    uplift_baseline_score: float | None
    uplift_ceiling_score: float | None
    uplift_p: float | None
    uplift_mde: float | None = None  # smallest uplift this comparison detects at 80% power (promptopt.detectable)
    uplift_p_holm: float | None
    comparisons: int | None
    selected_config_id: str | None
    baseline_config_id: str | None
    # which interval ceiling_ci_* holds: "procedure" = over the whole procedure (val and test items
    # resampled, the choice made again each time: promptopt.stats.procedure_interval), used when the
    # config was chosen on val among 2+; "fixed" = the chosen config's own, as if the choice were fixed
    ceiling_interval: Literal["procedure", "fixed"] = "fixed"
    # the chosen config's own 95% interval (Wilson on its test items; clusters counted), always
    ceiling_fixed_ci_low: float | None = None
    ceiling_fixed_ci_high: float | None = None


class LeaderboardRow(Row):
    run_id: str
    task: str
    model: str
    baseline_config_id: str | None
    baseline_score: float | None
    baseline_ci_low: float | None
    baseline_ci_high: float | None
    baseline_n: int | None
    selected_config_id: str | None
    selected_on: str | None
    candidates: int | None
    not_candidates: list[str] | None
    ceiling_score: float | None
    ceiling_ci_low: float | None
    ceiling_ci_high: float | None
    ceiling_n: int | None
    optimistic_max_score: float | None
    optimistic_config_id: str | None
    uplift: float | None
    uplift_ci_low: float | None
    uplift_ci_high: float | None
    uplift_n: int | None
    uplift_baseline_score: float | None
    uplift_ceiling_score: float | None
    uplift_p: float | None
    uplift_p_holm: float | None
    comparisons: int | None
    verdict: str | None
    rank_baseline: int | None
    rank_ceiling: int | None
    uplift_mde: float | None = None  # smallest uplift this comparison detects at 80% power (promptopt.detectable)
    # which interval ceiling_ci_* holds: "procedure" = over the whole procedure (val and test items
    # resampled, the choice made again each time: promptopt.stats.procedure_interval), used when the
    # config was chosen on val among 2+; "fixed" = the chosen config's own, as if the choice were fixed
    ceiling_interval: Literal["procedure", "fixed"] = "fixed"
    # the chosen config's own 95% interval (Wilson on its test items; clusters counted), always
    ceiling_fixed_ci_low: float | None = None
    ceiling_fixed_ci_high: float | None = None


CEILING_FIELDS = list(Ceiling.model_fields)


LEADERBOARD_FIELDS = list(LeaderboardRow.model_fields)


def _verdict(v: str | None, n: int | None, has_baseline: bool = True) -> str:
    if v:
        return v
    return f"none (n={n or 0} < {MIN_PAIRED})" if has_baseline else "none (no baseline scored)"


def _uplift(r: LeaderboardRow) -> str:
    """Uplift with its items; the paired scores are shown when the common items are not the
    split's items (they differ from the ceiling and baseline scores beside them)."""
    text = ci(r.uplift, r.uplift_ci_low, r.uplift_ci_high, pts) + f" n={r.uplift_n}"
    if r.uplift_n and not (
        math.isclose(r.uplift_ceiling_score, r.ceiling_score)
        and math.isclose(r.uplift_baseline_score, r.baseline_score)
    ):
        text += f" (on common items: {pct(r.uplift_ceiling_score)} vs {pct(r.uplift_baseline_score)})"
    return text


def _leaderboards_sections(report) -> list[Section]:
    out: list[Section] = []
    boards = sorted({(r.run_id, r.task) for r in report.leaderboard})
    for run_id, task in boards:
        board = sorted(
            (r for r in report.leaderboard if r.task == task and r.run_id == run_id),
            key=lambda r: (r.rank_ceiling or 1e9, r.model),
        )
        comparisons = max((r.comparisons or 0 for r in board), default=0)
        robust = {r.model: r for r in report.robust if r.task == task and r.run_id == run_id}
        out.append(
            Section(
                f"Leaderboard — {task}{run_label(report, run_id)}",
                [
                    "model", "baseline % [95% CI]", "ceiling % [95% CI]", "choice fixed", "ceiling config (chosen on)",
                    "optimistic max %", "uplift pts [95% CI] n", "verdict (Holm)", "rank baseline", "rank ceiling",
                ] + (["robust ceiling % [95% CI] n", "robust choice % (config)"] if robust else []),
                [
                    [
                        display(r.model), ci(r.baseline_score, r.baseline_ci_low, r.baseline_ci_high),
                        ci(r.ceiling_score, r.ceiling_ci_low, r.ceiling_ci_high),
                        "—" if r.ceiling_interval == "fixed" or r.ceiling_fixed_ci_low is None else
                        f"[{pct(r.ceiling_fixed_ci_low)}, {pct(r.ceiling_fixed_ci_high)}]",
                        f"{r.selected_config_id} ({chosen_on(r.selected_on)})", pct(r.optimistic_max_score),
                        _uplift(r), _verdict(r.verdict, r.uplift_n, r.baseline_score is not None),
                        str(r.rank_baseline or "—"), str(r.rank_ceiling or "—"),
                    ] + (_robust_cells(robust.get(r.model)) if robust else [])
                    for r in board
                ],
                ("Robust ceiling = the ceiling config's test items counted only when also right on every probe "
                 "that ran (partial and noimage aside); robust choice = the config the robust score picks on val, and its "
                 "robust test score. " if robust else "") + "Ceiling = test score of the config chosen on val among the configs scored on all of val (on test "
                "only when no val was scored: then it is optimistic too). Its interval includes the selection: val and "
                "test items (clusters, where items share one) resampled and the choice made again each time; "
                "choice fixed = the chosen config's own interval, as if the choice had been made in advance "
                "(the only one when there was no choice). Optimistic max = best test score over "
                "all configs, biased upward. Scores leave out items whose LM call failed. Uplift = ceiling − "
                "baseline on the test items both answered (n), paired bootstrap interval; verdicts are corrected "
                f"with Holm's method over the {comparisons} comparisons of this task (uplifts and head-to-head) at "
                f"{report.settings.alpha:g}; no verdict on fewer than {MIN_PAIRED} common items.",
            )
        )
    return out


def _robust_cells(r) -> list[str]:
    if r is None:
        return ["—", "—"]
    return [f"{ci(r.robust_score, r.robust_ci_low, r.robust_ci_high)} n={r.robust_n}",
            f"{pct(r.robust_choice_score)} ({r.robust_config_id or '—'})"]  # fmt: skip


register(ReportSection("ceilings", Ceiling, lambda i: rows_of(i.compared[0], CEILING_FIELDS), no_tables, shown=31, stored=1,
                       required=True, doc=__doc__))
register(ReportSection("leaderboard", LeaderboardRow, lambda i: rows_of(i.compared[0], LEADERBOARD_FIELDS),
                       _leaderboards_sections, shown=30, stored=2, required=True, doc=__doc__))
