"""Runs: each run's status and records, and the configs an unfinished run left short (shown with several runs, or one unfinished)."""

from __future__ import annotations

import pandas as pd

from promptopt.sections import ReportSection, register
from promptopt.tables import Row, Section, short


class RunStatus(Row):
    run_id: str
    status: str  # complete, in_progress, interrupted, stopped, or unknown (written before statuses)
    records: int
    created_at: float | None
    incomplete_configs: list[str]


def run_rows(records: pd.DataFrame, runs: list[dict] | None) -> list[dict]:
    """One entry per run in the report: status, records, and what an unfinished run left short:
    each config and split with fewer records than the pass was to score (what it recorded as
    `expected`), or else than the fullest config of its model, task and split."""
    known = {r["run_id"]: r for r in runs or []}
    ids = sorted(set(known) | (set(records["run_id"]) if len(records) else set()))
    out = []
    for rid in ids:
        mine = records[records["run_id"] == rid] if len(records) else records
        status, expected = known.get(rid, {}).get("status"), known.get(rid, {}).get("expected")
        missing: list[str] = []
        if status not in (None, "complete") and len(mine):
            counts = mine.groupby(["model", "task", "split", "config_id"]).size()
            models = sorted(set(mine["model"]))
            who = (lambda m: f"{short(m)}: ") if len(models) > 1 else (lambda m: "")
            if expected is not None:
                for model in models:
                    for task, splits in expected["items"].items():
                        for split, want in splits.items():
                            for cid in expected["configs"]:
                                have = int(counts.get((model, task, split, cid), 0))
                                if have < want:
                                    missing.append(f"{who(model)}{cid} ({split} {have}/{want})")
            else:
                for (model, _task, split), g in counts.groupby(level=[0, 1, 2]):
                    top = g.max()
                    missing += [f"{who(model)}{k[3]} ({split} {v}/{top})" for k, v in g.items() if v < top]
        out.append(
            {
                "run_id": rid,
                "status": status or "unknown",
                "records": len(mine),
                "created_at": known.get(rid, {}).get("created_at"),
                "incomplete_configs": sorted(set(missing)),
            }  # fmt: skip
        )
    return out


def _runs_sections(report) -> list[Section]:
    if not (len(report.runs) > 1 or any(r.status not in ("complete", "unknown") for r in report.runs)):
        return []
    return [
        Section(
            "Runs",
            ["run", "status", "records", "incomplete configs"],
            [[r.run_id, r.status, str(r.records), ", ".join(r.incomplete_configs) or "—"] for r in report.runs],
            "Every figure below belongs to one run; runs are never pooled. Status unknown: a run written "
            "before statuses were recorded.",
        )
    ]


register(ReportSection("runs", RunStatus, lambda i: i.runs, _runs_sections, shown=20, stored=100, required=True,
                       doc=__doc__))
