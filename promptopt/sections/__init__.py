"""The report's sections, one file each: its row model, its computation, its rendering.

A section module calls `register(ReportSection(...))`. `promptopt.results.Report` has a field of
the section's key holding its rows (so the JSON schema still comes from code), in the order of
`stored`; the report builder fills it from `compute`; every format renders `render`'s tables in
the order of `shown`. Sections are bundled: the modules of this package, imported once. A new
section is one file here: nothing else changes.

What several sections read is computed once, on first use: the comparator's ceilings by
`Inputs.compared`, a section's own table another reads in `Inputs.shared` (the costs).
"""

from __future__ import annotations

import importlib
import math
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property

import pandas as pd


@dataclass(frozen=True)
class Inputs:
    """What a section computes from: the records (priced, extras typed: promptopt.records.typed),
    the per-config summary (with the configs chosen on val marked), the compile costs, the
    store's tables the section declared it reads (`reads`), the report's runs and settings."""

    records: pd.DataFrame
    summary: pd.DataFrame
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    b: int = 10_000  # bootstrap resamples (report --bootstrap)
    seed: int = 0  # their seed (report --seed)
    compiles: pd.DataFrame | None = None  # compile costs per (run, model, task, config), priced
    runs: list[dict] = field(default_factory=list)  # promptopt.sections.runs.RunStatus as dicts
    settings: dict = field(default_factory=dict)  # promptopt.results.Settings as a dict

    @cached_property
    def compared(self) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        """Ceilings, head-to-head and rank flips, with one Holm correction per (run, task)."""
        from promptopt.stats import compare

        s = self.settings
        return compare(self.records, self.summary, b=self.b, seed=self.seed,
                       equivalence_margin=s.get("equivalence_margin"), alpha=s.get("alpha", 0.05))  # fmt: skip

    @cached_property
    def shared(self) -> dict:
        """What one section computes and another reads too (the costs, for the Pareto frontier)."""
        return {}

    @property
    def free(self) -> set[str]:
        """Models still at $0: unpriced, and no local price given."""
        s = self.settings
        priced = s.get("local_usd_per_mtok") or s.get("local_usd_per_hour")
        return set() if priced else set(s.get("unpriced_models", []))


@dataclass(frozen=True)
class ReportSection:
    key: str  # the JSON key of its rows
    row: type  # a promptopt.tables.Row subclass
    compute: Callable[[Inputs], list[dict]]  # pure: rows as dicts of `row`'s fields
    render: Callable[[object], list]  # Report -> list of promptopt.tables.Section
    shown: float  # where its tables stand among the formats' sections (rows 10, ..., pareto 190)
    stored: float = 1000  # where its key stands in the JSON (after the report's own fields by default)
    required: bool = False  # the schema requires the key (sections every report has had since 0.1)
    reads: tuple[str, ...] = ()  # store tables it needs (promptopt.store.Store.table)
    doc: str = ""


_REGISTERED: dict[str, ReportSection] = {}
_LOADED: list[bool] = []  # every module of the package imported (some are imported earlier, by name)


def register(section: ReportSection) -> ReportSection:
    _REGISTERED[section.key] = section
    return section


def registered() -> list[ReportSection]:
    """Every bundled section, imported on first use, in the order the JSON holds them."""
    if not _LOADED:
        for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
            importlib.import_module(f"{__name__}.{info.name}")
        _LOADED.append(True)
    return sorted(_REGISTERED.values(), key=lambda s: (s.stored, s.key))


def in_shown_order() -> list[ReportSection]:
    return sorted(registered(), key=lambda s: (s.shown, s.key))


def rows_of(frame: pd.DataFrame, columns: list[str] | None = None) -> list[dict]:
    """A frame's rows as plain dicts for a row model: numpy scalars as Python's, NaN as None."""
    if frame is None or frame.empty:
        return []
    out = []
    for row in (frame if columns is None else frame[columns]).to_dict(orient="records"):
        fixed = {}
        for k, v in row.items():
            if hasattr(v, "item"):
                v = v.item()
            if isinstance(v, float) and math.isnan(v):
                v = None
            fixed[k] = v
        out.append(fixed)
    return out


def no_tables(report) -> list:
    """The render of a section read only in the JSON (or by another section's table)."""
    return []
