"""Typed results: what promptopt computes from records, in one shape every consumer reads.

`Report` is the JSON report (`promptopt report --format json` is its `model_dump`), the input of
every renderer (text, markdown, HTML, the Pareto plot) and what `promptopt.report()` returns.
`RunLog` is what `promptopt.run()` and `promptopt.search()` return: the plan, how the run ended,
the configs a search chose, and the run's report. docs/report.schema.json is `Report`'s JSON
schema, exported from these models (`make schema` writes it).

Each section's row model lives in its own file (promptopt.sections); `ConfigSummary` and `Ceiling`,
what a run's log reads, are also importable from here. Fields of the rows follow docs/report-json.md; scores are shares in [0, 1], None where nothing
was answered; `n` counts answered items (errors left out), `n_items` every item attempted.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, create_model

from promptopt.sections.leaderboard import Ceiling
from promptopt.sections.rows import ConfigSummary
from promptopt.tables import Row as _Row

Split = Literal["train", "val", "test"]


class Settings(_Row):
    bootstrap_resamples: int
    seed: int
    local_usd_per_mtok: float
    unpriced_models: list[str]
    price_unknown_models: list[str]
    alpha: float
    min_paired_items: int
    correction: str
    equivalence_margin: float | None = None  # a share; head-to-head says equivalent within it, or not
    pareto_cost: Literal["inference", "all"] = "inference"  # all: judging and one-off costs in the Pareto cost too
    local_usd_per_hour: float = 0.0  # models without a price charged per hour of their calls' wall time instead


class SummaryLine(_Row):
    run_id: str
    task: str
    text: str


class _Report(_Row):
    """Every section of a report (promptopt.sections, one file each), in the order the JSON holds
    them, with the report's settings, warnings and summary sentences."""

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), indent=2) + "\n"


# The report's own fields, with where they stand among the sections' keys (ReportSection.stored).
_OWN = {
    "settings": (101, Settings, ...),
    "warnings": (102, list[str], ...),
    # per (run, task), the sentence a paper prints: flips among model pairs, how many real after
    # Holm, and what the comparisons could detect (promptopt.sections.flips.flip_sentences)
    "summary": (103, list[SummaryLine], []),
}


def _with_sections():
    from promptopt.sections import registered

    fields = {s.key: (s.stored, list[s.row], ... if s.required else []) for s in registered()} | _OWN
    ordered = sorted(fields.items(), key=lambda kv: (kv[1][0], kv[0]))
    return create_model("Report", __base__=_Report, __module__=__name__, __doc__=_Report.__doc__,
                        **{key: (kind, default) for key, (_, kind, default) in ordered})  # fmt: skip


Report = _with_sections()


class ModelCheck(_Row):
    """What one tiny call to a model returned (promptopt.check_model)."""

    model: str
    reply: str
    seconds: float


class PowerAnalysis(_Row):
    """What a paired comparison of two configs can detect, or the items a difference needs
    (promptopt.detectable; shares in 0-1, as every score of a report)."""

    task: str | None  # the task whose split gave the items, if one did
    split: str | None
    items: int | None  # items each config is scored on
    accuracy: float  # the expected accuracy of the configs compared
    discordance: float  # share of items the two configs disagree on (assumed or given)
    assumed_independent: bool  # the discordance is that of independent errors, not given
    alpha: float
    power: float
    detectable: float | None  # on `items`: the smallest difference found with `power` at `alpha`
    difference: float | None  # the difference asked about
    items_needed: int | None  # items that difference needs


class ChosenConfig(_Row):
    """The config a search chose on val for one model and task."""

    model: str
    task: str
    config_id: str


class RunLog(BaseModel):
    """What a run or search returns: where it is, how it ended, what it chose, and its report."""

    model_config = ConfigDict(arbitrary_types_allowed=True, protected_namespaces=())

    version: str
    run_id: str
    run_dir: Path
    storage: str  # the store's URL without its password (which stays in the environment)
    plan: dict[str, Any]
    status: str  # complete, or stopped (a budget); interrupted runs raise instead of returning
    stopped: str | None = None  # why it stopped early, if it did
    chosen: list[ChosenConfig] = []
    report: Report

    @property
    def summaries(self) -> list[ConfigSummary]:
        return self.report.rows

    @property
    def ceilings(self) -> list[Ceiling]:
        return self.report.ceilings

    @property
    def warnings(self) -> list[str]:
        return self.report.warnings


def schema() -> dict:
    """Report's JSON schema (draft 2020-12), as checked in at docs/report.schema.json."""
    out = Report.model_json_schema()
    out["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    out["title"] = "promptopt report"
    return out


def schema_json() -> str:
    """The schema as written to docs/report.schema.json."""
    return json.dumps(schema(), indent=2) + "\n"
