"""All results: one row per (run, model, task, config, split) with its score, interval, failures and cost."""

from __future__ import annotations

from promptopt.sections import ReportSection, register, rows_of
from promptopt.tables import ConfigRow, ModelTask, Section, ci, display, pct


class ConfigSummary(ConfigRow, ModelTask):
    """One (run, model, task, config, split): its score with a 95% CI, failures and cost."""

    score: float | None
    ci_low: float | None
    ci_high: float | None
    parse_failure_rate: float | None
    error_rate: float
    lm_calls: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    wall_s: float
    selected: bool
    run_id: str
    n_items: int
    errors: int
    selected_on: str | None
    clusters: int | None = None  # clusters among the answered items, when items share one (probes, a cluster column)
    design_effect: float | None = None  # the score's variance counting clusters over it as if items were independent


ROW_FIELDS = list(ConfigSummary.model_fields)  # the CSV's columns and every JSON row's keys, in order


def _rows_sections(report) -> list[Section]:
    return [rows_section(report)]


def rows_section(report) -> Section:
    """Every (model, task, config, split) row; with several runs, each row names its run."""
    several = len(report.runs) > 1
    grouped = any(r.design_effect is not None for r in report.rows)  # some task's items come in clusters
    return Section(
        "All results (model, task, config, split)",
        ["run"] * several
        + [
            "model",
            "task",
            "strategy",
            "optimizer",
            "split",
            "n",
        ]
        + ["clusters (design effect)"] * grouped
        + [
            "score % [95% CI]",
            "parse fail %",
            "errors % (count)",
            "LM calls",
            "tokens in/out",
            "wall s",
            "sel",
        ],  # fmt: skip
        [
            [r.run_id] * several
            + [
                display(r.model),
                r.task,
                r.strategy,
                r.optimizer,
                r.split,
                str(r.n),
            ]
            + ([f"{r.clusters} ({r.design_effect:.2f})" if r.design_effect is not None else "—"] if grouped else [])
            + [
                ci(r.score, r.ci_low, r.ci_high),
                pct(r.parse_failure_rate),
                f"{pct(r.error_rate)} ({r.errors})",
                str(r.lm_calls),
                f"{r.prompt_tokens}/{r.completion_tokens}",
                f"{r.wall_s:.1f}",
                "*" if r.selected else "",
            ]  # fmt: skip
            for r in report.rows
        ],
        "score = accuracy, or a free-text task's primary metric (see Metrics). n = items answered; items whose "
        "LM call failed after retries are errors, left out of the score (not counted as wrong). sel (*) = config "
        "chosen on val; its test score is the ceiling."
        + (" Clusters: items that are not independent (a probe's items of one source item, a task's cluster "
           "column) share one; the design effect is the score's variance counting clusters over its variance as "
           "if items were independent, and intervals and paired tests of those items resample clusters."
           if grouped else ""),
    )


register(ReportSection("rows", ConfigSummary, lambda i: rows_of(i.summary, ROW_FIELDS), _rows_sections, shown=10, stored=0,
                       required=True, doc=__doc__))
