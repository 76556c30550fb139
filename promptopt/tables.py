"""The two shapes every report part shares: a typed row (pydantic) and a titled table of text cells.

Kept apart from promptopt.results and promptopt.reports so that a report section in its own file
(promptopt.sections) can declare its rows and render its table without importing either.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict

from promptopt.estimators import MIN_PAIRED


class Row(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    def __getitem__(self, key: str) -> Any:
        """`row["score"]` as well as `row.score`: code written against the JSON reads either way."""
        if key not in type(self).model_fields:
            raise KeyError(key)
        return getattr(self, key)


class ModelTask(Row):
    model: str  # the model's identity: its name, and @endpoint when it has one
    task: str


class RunModelTask(Row):
    run_id: str
    model: str
    task: str


class RunTaskModel(Row):
    run_id: str
    task: str
    model: str


class ConfigRow(Row):
    """Which config on which split, and on how many answered items."""

    strategy: str
    optimizer: str
    config_id: str  # strategy-optimizer-hash of every knob
    split: str
    n: int


class ConfigSplit(Row):
    """One config of one model on one task and split (the key of per-config sections)."""

    run_id: str
    model: str
    task: str
    strategy: str
    optimizer: str
    config_id: str
    split: str


@dataclass
class Section:
    """One table of a report as text, markdown and HTML all render it."""

    title: str
    headers: list[str]
    body: list[list[str]]
    note: str = ""


def tabulate(rows: list, title: str, headers: list[str], cells: Callable[[Any], list[str]], note: str) -> list[Section]:
    """The section of a table with one line of `cells(row)` per row, or none without rows."""
    return [Section(title, headers, [cells(r) for r in rows], note)] if rows else []


# How every table writes a number (shares are shown in percent).
def pct(x) -> str:
    return "—" if x is None else f"{100 * x:.1f}"


def pts(x) -> str:
    """A difference of fractions in percentage points, signed."""
    return "—" if x is None else f"{100 * x:+.1f}"


def ci(score, low, high, fmt=pct) -> str:
    if score is not None and (low is None or high is None):
        return f"{fmt(score)} (n<{MIN_PAIRED}: no interval)"
    return f"{fmt(score)} [{fmt(low)}, {fmt(high)}]"


def num(x) -> str:
    return "—" if x is None else f"{x:.3f}"


def money(x) -> str:
    return "—" if x is None else f"{x:.6f}" if x < 0.01 else f"{x:.4f}"


def chosen_on(on: str | None) -> str:
    return "test: optimistic" if on == "test" else on or "—"


def display(model: str) -> str:
    """A model identity for tables: an endpoint without its scheme, so no page holds a URL."""
    return re.sub(r"@[a-z][a-z0-9+.-]*://", "@", model)


def short(model: str) -> str:
    return display(model).split("#", 1)[0]  # an embedded model's weights digest is identity, not a name


def run_label(report, run_id: str | None) -> str:
    """' — RUN' after a task's name when the report holds several runs."""
    return f" — {run_id}" if len(report.runs) > 1 and run_id else ""


CONFIG_HEADERS = ["model", "task", "config", "split"]


def config_cells(report, r) -> list[str]:
    """The cells that name a per-config row (CONFIG_HEADERS): model, task (and run), config, split."""
    return [display(r.model), r.task + run_label(report, r.run_id), r.config_id, r.split]


# Columns a table too wide for the terminal moves under each row: detail a reader rarely compares across rows.
DETAIL_FIRST = (
    "wall s", "tokens in/out", "tokens in/out per ex", "parse fail %", "sel", "rank baseline", "rank ceiling",
    "optimistic max %", "choice fixed", "prompt tok", "completion tok", "one-off tokens", "compile calls",
    "prep calls", "detectable pts", "A only / B only / both / neither", "chosen on", "LM calls", "primary",
)  # fmt: skip


# Columns a narrow terminal keeps first: what identifies a row and the numbers it exists for.
KEEP_FIRST = (
    "model", "model A", "model B", "score % [95% CI]", "score [95% CI]", "ceiling % [95% CI]", "baseline % [95% CI]",
    "uplift pts [95% CI] n", "A − B pts [95% CI]", "verdict (Holm)", "p (Holm)", "task", "split", "n", "metric",
    "config", "strategy", "errors % (count)", "$/ex", "LM calls/ex", "status", "time", "cost", "calls",
)  # fmt: skip  (most important first)


def run_legend(run_ids: list[str]) -> dict[str, str]:
    """Several runs' ids -> r1, r2, ... (in id order) for narrow tables; one run keeps its id."""
    ids = sorted(set(run_ids))
    return {rid: f"r{i}" for i, rid in enumerate(ids, 1)} if len(ids) > 1 else {}


def model_legend(identities: list[str]) -> dict[str, str]:
    """Long model identities (provider, endpoint, weights digest) -> short labels for narrow
    tables: the name's last part, numbered when two identities share it."""
    short = {}
    for identity in sorted(set(identities)):
        base = identity.split("#", 1)[0].split("@", 1)[0].rsplit("/", 1)[-1] or identity
        short[identity] = base
    counts: dict[str, int] = {}
    for label in short.values():
        counts[label] = counts.get(label, 0) + 1
    seen: dict[str, int] = {}
    out = {}
    for identity, label in short.items():
        if counts[label] > 1:
            seen[label] = seen.get(label, 0) + 1
            label = f"{label}-{seen[label]}"
        if label != identity:
            out[identity] = label
    return out


def shortened(section: Section, legend: dict[str, str]) -> Section:
    """The section with each model identity replaced by its label (longest first, so one that
    extends another is replaced whole)."""
    order = sorted(legend, key=len, reverse=True)

    def cell(text: str) -> str:
        for identity in order:
            if identity in text:
                text = text.replace(identity, legend[identity])
        return text

    return Section(section.title, section.headers, [[cell(c) for c in row] for row in section.body], section.note)


def table_width(headers: list[str], body: list[list[str]]) -> int:
    """Columns of a boxed table with one space of padding each side of every cell."""
    widths = [max([len(h), *(len(row[i]) for row in body)]) for i, h in enumerate(headers)]
    return sum(widths) + 3 * len(widths) + 1


def split_columns(section: Section, width: int) -> tuple[list[int], list[int]]:
    """Which columns stay in the table and which go to a detail line under each row so the table
    fits `width`: the first column always, then KEEP_FIRST's, then the others in order, each
    taken when it still fits; DETAIL_FIRST's always go under the row."""
    n, heads = len(section.headers), section.headers
    order = [0] + sorted((i for i in range(1, n) if heads[i] in KEEP_FIRST), key=lambda i: KEEP_FIRST.index(heads[i]))
    order += [i for i in range(1, n) if heads[i] not in KEEP_FIRST and heads[i] not in DETAIL_FIRST]
    kept: list[int] = []
    for i in order:
        trial = sorted([*kept, i])
        if not kept or table_width([section.headers[j] for j in trial], [[row[j] for j in trial] for row in section.body]) <= width:
            kept = trial
    return kept, [i for i in range(n) if i not in kept]
