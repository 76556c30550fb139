"""The cost ledger: every LM call of a run by role and phase, with what came from a cache.

Roles: `task` (the task model answering items, and as an optimizer's teacher inside a compile),
`teacher` (the task model explaining the training pool a few-shot program prepares from),
`proposer` and `reflection` (an optimizer's own prompt model: MIPROv2's instruction proposer,
GEPA's reflection model), `embedding` (a hosted embedding model: kNN's `litellm:` embedder, over
its pool when preparing and per item when answering), `judge`. Phases: `compile`, `prepare`, `val`, `test` (probe items
included), `judge-validation`, `grading`. Per (run, model, task, config, role, phase) — a judge's
validation has no config — calls, tokens and dollars at
the price in force when each call was made (batch calls at the batch price, `batch_calls` of
them), and `cached_calls` / `would_cost_usd`: verdicts the judge cache served for free, and what
a reader reproducing the run without that cache would pay for everything in the row. A record
written once is never charged again when a run resumes, so the store holds no other cache hits.
"""

from __future__ import annotations

import pandas as pd

from promptopt.records import typed
from promptopt.sections import Inputs, ReportSection, register
from promptopt.tables import Row, Section

USAGE = ("lm_calls", "prompt_tokens", "completion_tokens", "cost_usd")
PHASES = ("compile", "prepare", "val", "test", "judge-validation", "grading")


class LedgerRow(Row):
    run_id: str
    model: str  # the task model the calls served (a judge's validation: the judge, which serves no one model)
    task: str
    config_id: str | None  # None: a judge's validation, which comes before any config
    role: str
    phase: str
    lm_calls: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    batch_calls: int  # of lm_calls, answered through a provider batch at its price
    cached_calls: int  # calls a cache served instead (free now; counted in would_cost_usd)
    would_cost_usd: float  # cost_usd plus what the cached calls cost when first made


def _record_rows(recs: pd.DataFrame) -> list[dict]:
    """The task model's (and teacher's) calls summed per config and split, at once; the few
    records whose extras name embedding calls or verdicts read one by one."""
    if not len(recs):
        return []
    keys = ["run_id", "model", "task", "config_id", "split"]
    recs = typed(recs)
    extras = recs["extras"]
    batch = extras.map(lambda e: e.batch_calls or 0)
    sums = recs.assign(batch_calls=batch).groupby(keys, as_index=False, sort=False)[[*USAGE, "batch_calls"]].sum()
    out = [{**{k: r[k] for k in keys[:4]}, "role": "teacher" if r["split"] == "train" else "task",
            "phase": "prepare" if r["split"] == "train" else r["split"], **{k: r[k] for k in (*USAGE, "batch_calls")}}
           for r in sums.to_dict(orient="records")]  # fmt: skip
    more = extras.map(lambda e: bool(e.judges or e.embedding)).astype(bool)
    for r in recs[more].itertuples():
        found = r.extras
        key = {"run_id": r.run_id, "model": r.model, "task": r.task, "config_id": r.config_id}
        phase = "prepare" if r.split == "train" else r.split
        if found.embedding:
            out.append({**key, "role": "embedding", "phase": phase, **{k: found.embedding.get(k) or 0 for k in USAGE}})
        for verdict in found.judges or []:
            out.append({**key, "role": "judge", "phase": "grading",
                        **{k: verdict.get(k) or 0 for k in USAGE}, "batch_calls": int(verdict.get("batch_calls") or 0),
                        "cached_calls": int(verdict.get("would_lm_calls") or 0) if verdict.get("cached") else 0,
                        "would_extra": float(verdict.get("would_cost_usd") or 0.0) if verdict.get("cached") else 0.0})  # fmt: skip
    return out


def _rows(inputs: Inputs) -> list[dict]:
    out = _record_rows(inputs.records)
    roles = inputs.tables.get("compile_roles")
    compiles = inputs.tables.get("compiles")
    split = set()
    for r in roles.itertuples() if roles is not None and len(roles) else ():
        if r.role != "embedding":  # a preparation's embedding is not a compile
            split.add((r.run_id, r.model, r.task, r.config_id))
        out.append({"run_id": r.run_id, "model": r.model, "task": r.task, "config_id": r.config_id, "role": r.role,
                    "phase": "prepare" if r.role == "embedding" else "compile", **{k: getattr(r, k) for k in USAGE}})  # fmt: skip
    for r in compiles.itertuples() if compiles is not None and len(compiles) else ():
        if (r.run_id, r.model, r.task, r.config_id) not in split:  # a store from before roles were kept
            out.append({"run_id": r.run_id, "model": r.model, "task": r.task, "config_id": r.config_id, "role": "task",
                        "phase": "compile", **{k: getattr(r, k) for k in USAGE}})  # fmt: skip
    checks = inputs.tables.get("judge_checks")
    for r in checks.to_dict(orient="records") if checks is not None and len(checks) else ():
        out.append({"run_id": r["run_id"], "model": r.get("judge"), "task": r.get("task"), "config_id": None,
                    "role": "judge", "phase": "judge-validation",
                    **{k: r.get(k) or 0 for k in USAGE}})  # fmt: skip
    return out


KEY = ["run_id", "model", "task", "config_id", "role", "phase"]


def compute(inputs: Inputs) -> list[dict]:
    rows = _rows(inputs)
    if not rows:
        return []
    numbers = [*USAGE, "batch_calls", "cached_calls", "would_extra"]
    frame = pd.DataFrame(rows).reindex(columns=KEY + numbers)
    frame[numbers] = frame[numbers].fillna(0)
    frame["config_id"] = frame["config_id"].fillna("")  # grouped with the others, None again below
    sums = frame.groupby(KEY, as_index=False, sort=False).sum(numeric_only=True)
    sums["would_cost_usd"] = sums["cost_usd"] + sums.pop("would_extra")
    order = {p: i for i, p in enumerate(PHASES)}
    sums = sums.assign(_o=sums.phase.map(order)).sort_values(["run_id", "_o", "role", "model", "task", "config_id"])
    ints = ["lm_calls", "prompt_tokens", "completion_tokens", "batch_calls", "cached_calls"]
    return [{**r, "config_id": r["config_id"] or None, **{k: int(r[k]) for k in ints}}
            for r in sums.drop(columns="_o").to_dict(orient="records") if r["lm_calls"] or r["cached_calls"]]  # fmt: skip


def totals(rows) -> list[dict]:
    """The ledger's rows summed per (run, role, phase), in phase order: what the table shows."""
    out: dict[tuple, dict] = {}
    for r in rows:
        slot = out.setdefault((r.run_id, r.role, r.phase), dict.fromkeys(
            ("lm_calls", "prompt_tokens", "completion_tokens", "cost_usd", "batch_calls", "cached_calls", "would_cost_usd"), 0))
        for k in slot:
            slot[k] += getattr(r, k)
    order = {p: i for i, p in enumerate(PHASES)}
    return [{"run_id": k[0], "role": k[1], "phase": k[2], **v}
            for k, v in sorted(out.items(), key=lambda kv: (kv[0][0], order.get(kv[0][2], 99), kv[0][1]))]  # fmt: skip


def render(report) -> list[Section]:
    if not report.ledger:
        return []
    rows = totals(report.ledger)
    several = len({r["run_id"] for r in rows}) > 1
    body = [
        ([r["run_id"]] if several else []) + [r["role"], r["phase"], f"{r['lm_calls']:,}",
         f"{r['prompt_tokens']:,}/{r['completion_tokens']:,}", f"${r['cost_usd']:.4f}", f"{r['batch_calls']:,}",
         f"{r['cached_calls']:,}", f"${r['would_cost_usd']:.4f}"]
        for r in rows
    ]  # fmt: skip
    return [Section(
        "Cost by role and phase",
        (["run"] if several else []) + ["role", "phase", "calls", "tokens in/out", "cost", "batch calls",
                                        "cached", "without cache"],
        body,
        "Every LM call of the run (per model, task and config in JSON): the task model answering items (task), explaining the training pool a program "
        "prepares from (teacher), an optimizer's prompt model (proposer, reflection), a hosted embedding model "
        "(embedding) and judges; dollars at the "
        "price in force (batch calls at the batch price). Cached = judge verdicts served from the cache for free; "
        "without cache = what reproducing the row without it would cost.",
    )]  # fmt: skip


register(ReportSection("ledger", LedgerRow, compute, render, shown=135,
                       reads=("compiles", "compile_roles", "judge_checks"), doc=__doc__))  # fmt: skip
