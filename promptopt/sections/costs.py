"""Cost per config: inference per example, and the one-off cost of compiling and preparing."""

from __future__ import annotations

import pandas as pd

from promptopt import stats
from promptopt.records import typed
from promptopt.sections import Inputs, ReportSection, register, rows_of
from promptopt.tables import ConfigRow, RunModelTask, Section, display, money, run_label, tabulate


class Cost(ConfigRow, RunModelTask):
    calls_per_example: float
    prompt_tokens_per_example: float
    completion_tokens_per_example: float
    usd_per_example: float
    compile_calls: int
    compile_tokens: int
    compile_usd: float
    prep_calls: int
    prep_tokens: int
    prep_usd: float
    one_off_usd: float
    judge_calls_per_example: float = 0.0  # an LLM judge's, apart from the task model's
    judge_usd_per_example: float = 0.0
    judge_tokens_per_example: float = 0.0


def costs(records: pd.DataFrame, compiles: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per (run, model, task, config): inference cost per example and the one-off optimization cost.

    Inference is read from test records (val when a config has none), errors included (they
    were paid for). The one-off cost adds the optimizer's compile calls and the preparation
    records (split `train`, e.g. kNN's self-generated explanations).
    """
    cols = ["lm_calls", "prompt_tokens", "completion_tokens", "cost_usd"]
    scored = records[records["split"].isin(["val", "test"])]
    keys = ["run_id", "model", "task", "strategy", "optimizer", "config_id"]
    ident_keys = ["run_id", "model", "task", "config_id"]
    scored = scored.join(judge_usage(scored))
    prep = records[records["split"] == "train"].groupby(ident_keys)[cols].sum()
    comp = (
        compiles.groupby(ident_keys)[cols].sum()
        if compiles is not None and len(compiles)
        else pd.DataFrame(columns=cols)
    )
    rows = []
    for key, g in scored.groupby(keys, sort=True):
        split = "test" if (g["split"] == "test").any() else "val"
        g = g[g["split"] == split]
        n = len(g)
        sums = g[cols].sum()
        ident = (key[0], key[1], key[2], key[5])
        p = prep.loc[ident] if ident in prep.index else pd.Series(0, index=cols)
        c = comp.loc[ident] if ident in comp.index else pd.Series(0, index=cols)
        rows.append(
            dict(zip(keys, key, strict=True))
            | {
                "split": split, "n": n,
                "calls_per_example": float(sums.lm_calls / n),
                "prompt_tokens_per_example": float(sums.prompt_tokens / n),
                "completion_tokens_per_example": float(sums.completion_tokens / n),
                "usd_per_example": float(sums.cost_usd / n),
                "compile_calls": int(c.lm_calls), "compile_tokens": int(c.prompt_tokens + c.completion_tokens),
                "compile_usd": float(c.cost_usd),
                "prep_calls": int(p.lm_calls), "prep_tokens": int(p.prompt_tokens + p.completion_tokens),
                "prep_usd": float(p.cost_usd),
                "one_off_usd": float(c.cost_usd + p.cost_usd),
                "judge_calls_per_example": float(g["judge_lm_calls"].sum() / n),
                "judge_usd_per_example": float(g["judge_cost_usd"].sum() / n),
                "judge_tokens_per_example": float((g["judge_prompt_tokens"] + g["judge_completion_tokens"]).sum() / n),
            }
        )  # fmt: skip
    return pd.DataFrame(rows)


def judge_usage(records: pd.DataFrame) -> pd.DataFrame:
    """Per record: the judge calls, tokens and cost its verdicts cost (0 for cached verdicts and
    records without a judge), apart from the task model's columns."""
    frame = typed(records)
    out = pd.DataFrame(0.0, index=frame.index, columns=[f"judge_{k}" for k in stats.USAGE])
    has = frame["extras"].map(lambda e: bool(e.judges)).astype(bool)
    for idx, extras in frame.loc[has, "extras"].items():
        for given in extras.judges:
            for k in stats.USAGE:
                out.at[idx, f"judge_{k}"] += float(given.get(k) or 0)
    return out


def _costs_sections(report) -> list[Section]:
    settings = report.settings
    return tabulate(
        report.costs,
        "Cost per config",
        [
            "model", "task", "strategy", "optimizer", "config", "LM calls/ex", "tokens in/out per ex",
            "$/ex", "compile calls", "prep calls", "one-off tokens", "one-off $",
        ],
        lambda r: [
            display(r.model), r.task + run_label(report, r.run_id), r.strategy, r.optimizer,
            r.config_id, f"{r.calls_per_example:.2f}",
            f"{r.prompt_tokens_per_example:.0f}/{r.completion_tokens_per_example:.0f}",
            money(r.usd_per_example), str(r.compile_calls), str(r.prep_calls),
            str(r.compile_tokens + r.prep_tokens), money(r.one_off_usd),
        ],
        "Inference per example on test (val if not scored on test). One-off = compiling (optimizer calls) "
        "+ preparation (split train, e.g. kNN explanations). Dollars from LiteLLM's price table; models "
        + (f"without a price are charged ${settings.local_usd_per_hour:g} per hour of the wall time their calls ran "
           "(overlapping calls counted once)" if settings.local_usd_per_hour else
           f"without a price are charged ${settings.local_usd_per_mtok:g} per million tokens")
        + (f" ({', '.join(map(display, settings.unpriced_models))})." if settings.unpriced_models else "."),
    )


def of(inputs: Inputs) -> pd.DataFrame:
    """The costs table of a report, computed once for the sections that read it."""
    if "costs" not in inputs.shared:
        inputs.shared["costs"] = costs(inputs.records, inputs.compiles)
    return inputs.shared["costs"]


register(ReportSection("costs", Cost, lambda i: rows_of(of(i)), _costs_sections, shown=130, stored=7, required=True,
                       doc=__doc__))
