"""Report sections that live in one file each: its row model, its computation, its rendering.

A section module calls `register(ReportSection(...))`; `promptopt.results.Report` gains a field
of the section's key holding its rows (so the JSON schema still comes from code), the report
builder fills it from `compute`, and every format renders `render`'s tables after the section
named by `after`. Sections are bundled: the modules of this package, imported once. (The
report's older sections still live in promptopt.reports and promptopt.stats.)
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd


@dataclass(frozen=True)
class Inputs:
    """What a section computes from: the records, the per-config summary, and the store's
    tables the section declared it reads (`reads`), each a DataFrame of the reported runs."""

    records: pd.DataFrame
    summary: pd.DataFrame
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    b: int = 10_000  # bootstrap resamples (report --bootstrap)
    seed: int = 0  # their seed (report --seed)


@dataclass(frozen=True)
class ReportSection:
    key: str  # the JSON key of its rows
    row: type  # a promptopt.tables.Row subclass
    compute: Callable[[Inputs], list[dict]]  # pure: rows as dicts of `row`'s fields
    render: Callable[[object], list]  # Report -> list of promptopt.tables.Section
    after: str  # the key of the section it is rendered after
    reads: tuple[str, ...] = ()  # store tables it needs (promptopt.store.Store.table)
    doc: str = ""


_REGISTERED: dict[str, ReportSection] = {}


def register(section: ReportSection) -> ReportSection:
    _REGISTERED[section.key] = section
    return section


def registered() -> list[ReportSection]:
    """Every bundled section, imported on first use, in the order of their keys."""
    if not _REGISTERED:
        for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
            importlib.import_module(f"{__name__}.{info.name}")
    return [_REGISTERED[k] for k in sorted(_REGISTERED)]
