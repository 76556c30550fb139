"""Report: read records from a store and render them — no LM call, ever.

`rows` and `ceilings` follow the JSON contract in DESIGN.md; every format is rendered from the
same two tables, so text, markdown, CSV and JSON can never disagree.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from promptopt import stats
from promptopt.errors import UserError
from promptopt.store import Store

ROW_FIELDS = [
    "model", "task", "strategy", "optimizer", "config_id", "split", "n", "score", "ci_low", "ci_high",
    "parse_failure_rate", "error_rate", "lm_calls", "prompt_tokens", "completion_tokens", "cost_usd",
    "wall_s", "selected",
]  # fmt: skip
CEILING_FIELDS = [
    "model", "task", "baseline_score", "ceiling_score", "ceiling_ci_low", "ceiling_ci_high",
    "optimistic_max_score", "uplift", "uplift_ci_low", "uplift_ci_high", "verdict",
]  # fmt: skip
FORMATS = ("text", "md", "csv", "json")


def open_source(source: str) -> tuple[Store, str | None]:
    """A run folder (its run.json names store and run) or a SQLAlchemy URL (every run in it)."""
    path = Path(source)
    if path.is_dir():
        meta = path / "run.json"
        if not meta.exists():
            raise UserError(f"{source} is not a run folder: it has no run.json (give a run folder or a storage URL).")
        info = json.loads(meta.read_text())
        storage = info["storage"]
        if storage.startswith("sqlite:///") and not Path(storage.removeprefix("sqlite:///")).exists():
            storage = f"sqlite:///{(path / 'results.sqlite').resolve()}"  # folder moved since the run
        return Store(storage), info["run_id"]
    if "://" in source:
        return Store(source), None
    raise UserError(f"{source} is neither a run folder nor a storage URL (e.g. sqlite:///results.sqlite).")


def build(records: pd.DataFrame, b: int = 10_000, seed: int = 0) -> dict:
    if records.empty:
        return {"rows": [], "ceilings": []}
    summary = stats.summarize(records, b=b, seed=seed)
    chosen = stats.select_configs(summary)
    picked = {(r.model, r.task, r.config_id) for r in chosen.itertuples()}
    summary["selected"] = [(r.model, r.task, r.config_id) in picked for r in summary.itertuples()]
    ceil = stats.ceilings(records, b=b, seed=seed)
    return {
        "rows": _clean(summary[ROW_FIELDS].to_dict(orient="records")),
        "ceilings": _clean(ceil[CEILING_FIELDS].to_dict(orient="records")) if len(ceil) else [],
    }


def _clean(rows: list[dict]) -> list[dict]:
    out = []
    for row in rows:
        fixed = {}
        for k, v in row.items():
            if hasattr(v, "item"):
                v = v.item()
            if isinstance(v, float) and math.isnan(v):
                v = None
            fixed[k] = v
        out.append(fixed)
    return out


def _pct(x) -> str:
    return "—" if x is None else f"{100 * x:.1f}"


def render_text(report: dict, markdown: bool = False) -> str:
    headers = ["model", "task", "strategy", "optimizer", "split", "n", "accuracy % [95% CI]", "parse fail %",
               "errors %", "LM calls", "tokens in/out", "wall s", "sel"]  # fmt: skip
    body = [
        [
            r["model"],
            r["task"],
            r["strategy"],
            r["optimizer"],
            r["split"],
            str(r["n"]),
            f"{_pct(r['score'])} [{_pct(r['ci_low'])}, {_pct(r['ci_high'])}]",
            _pct(r["parse_failure_rate"]),
            _pct(r["error_rate"]),
            str(r["lm_calls"]),
            f"{r['prompt_tokens']}/{r['completion_tokens']}",
            f"{r['wall_s']:.1f}",
            "*" if r["selected"] else "",
        ]  # fmt: skip
        for r in report["rows"]
    ]
    parts = [_table(headers, body, markdown)]
    if report["ceilings"]:
        c_headers = ["model", "task", "baseline %", "ceiling % [95% CI]", "optimistic max %", "uplift pts [95% CI]",
                     "verdict"]  # fmt: skip
        c_body = [
            [
                c["model"],
                c["task"],
                _pct(c["baseline_score"]),
                f"{_pct(c['ceiling_score'])} [{_pct(c['ceiling_ci_low'])}, {_pct(c['ceiling_ci_high'])}]",
                _pct(c["optimistic_max_score"]),
                f"{_pct(c['uplift'])} [{_pct(c['uplift_ci_low'])}, {_pct(c['uplift_ci_high'])}]",
                c["verdict"] or "—",
            ]  # fmt: skip
            for c in report["ceilings"]
        ]
        parts.append(_table(c_headers, c_body, markdown))
        parts.append(
            "sel (*) = config chosen on val; ceiling = its test score. Optimistic max = best test score over "
            "configs (biased upward). Uplift = ceiling − baseline, paired bootstrap over the same test items."
        )
    return "\n\n".join(parts) + "\n"


def _table(headers: list[str], body: list[list[str]], markdown: bool) -> str:
    if markdown:
        lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
        lines += ["| " + " | ".join(row) + " |" for row in body]
        return "\n".join(lines)
    widths = [max(len(h), *(len(row[i]) for row in body)) if body else len(h) for i, h in enumerate(headers)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join([fmt.format(*headers), fmt.format(*["-" * w for w in widths]), *(fmt.format(*r) for r in body)])


def render(source: str, fmt: str = "text", run_id: str | None = None) -> str:
    """The report of a run folder, or of a storage URL (every run in it, or `run_id`'s)."""
    if fmt not in FORMATS:
        raise UserError(f"Unknown report format {fmt!r}; valid formats are {', '.join(FORMATS)}.")
    store, found = open_source(source)
    run_id = run_id or found
    report = build(store.records(run_id))
    report["warnings"] = overlap_warnings(store, run_id) + stop_warnings(store, run_id)
    if fmt == "json":
        return json.dumps(report, indent=2) + "\n"
    if fmt == "csv":
        return pd.DataFrame(report["rows"], columns=ROW_FIELDS).to_csv(index=False)
    return "".join(f"WARNING: {w}\n\n" for w in report["warnings"]) + render_text(report, markdown=fmt == "md")


def overlap_warnings(store: Store, run_id: str | None) -> list[str]:
    """One sentence per task a run scored although its demo pools overlap its test set."""
    runs = store.runs()
    plans = runs[runs.run_id == run_id].plan if run_id else runs.plan
    out = []
    for plan in plans:
        for task, o in json.loads(plan).get("overlap", {}).items():
            out.append(
                f"task {task} ran with --allow-overlap: {o['test_examples']} test examples duplicate or nearly "
                f"duplicate train/val examples (e.g. {', '.join(o['examples'])}); its scores may be inflated."
            )
    return out


def stop_warnings(store: Store, run_id: str | None) -> list[str]:
    """One sentence per run whose last invocation stopped early (budget reached, too many errors)."""
    return [f"run {rid} is incomplete: {reason}" for rid, reason in sorted(store.stop_reasons(run_id).items())]
