"""Prompt sensitivity: the spread of test scores across configs, and how much of it sampling noise explains."""

from __future__ import annotations

import functools
import json
import math

import numpy as np
import pandas as pd

from promptopt.estimators import MIN_PAIRED
from promptopt.records import NONE, Extras, typed
from promptopt.sections import ReportSection, register, rows_of
from promptopt.stats import answered
from promptopt.tables import RunModelTask, Section, ci, display, pct, pts, run_label, tabulate


class Sensitivity(RunModelTask):
    family: str
    n_configs: int
    min_score: float
    max_score: float
    spread: float
    std: float | None
    noise_spread: float | None
    noise_std: float | None  # the permutation null's mean std on the shared items (binomial without them)
    net_std: float | None  # measured std on the shared items minus noise_std: mean 0 for equal configs
    net_std_ci_low: float | None = None  # the permutation null's 95% range around it: holds 0 when all is noise
    net_std_ci_high: float | None = None
    shared_items: int = 0  # test items every config answered (the permutations' items)


def strategy_family(strategy: str, config_json: str | None = None, extras: Extras | None = None) -> str:
    """`reasoning` or `non-reasoning`, as the strategy declared it in the record's extras; for a
    record written before extras kept it, as the bundled strategy of its name declares it with
    the record's knobs; `other` for a strategy that declared nothing (or is not bundled)."""
    declared = (extras or NONE).reasons
    if declared is None:
        declared = _bundled_reasons(strategy, config_json)
    if declared is None:
        return "other"
    return "reasoning" if declared else "non-reasoning"


def _bundled_reasons(strategy: str, config_json: str | None) -> bool | None:
    from promptopt.errors import UserError
    from promptopt.registry import get_strategy

    try:
        traits = get_strategy(strategy)
    except UserError:
        return None
    try:
        knobs = json.loads(config_json or "{}").get("knobs", {})
    except (ValueError, AttributeError):
        knobs = {}
    return traits.reasons_with(knobs if isinstance(knobs, dict) else {})


@functools.cache
def expected_range(k: int, draws: int = 20_000) -> float:
    """Expected max − min of k independent standard normals (2 → 1.128, 8 → 2.847), by a
    seeded simulation: the spread k configs of equal accuracy show from sampling alone."""
    if k < 2:
        return 0.0
    x = np.random.default_rng(12345).standard_normal((draws, k))
    return float((x.max(axis=1) - x.min(axis=1)).mean())


PERMUTATIONS = 200  # per (run, model, task, family) in the sensitivity table: what benchmarks/validity.py validated


def sensitivity(summary: pd.DataFrame, records: pd.DataFrame, b: int = PERMUTATIONS, seed: int = 0) -> pd.DataFrame:
    """Spread of test scores across configs per (run, model, task), and how much of it is noise.

    `spread` (max − min) and `std` (over configs, population form) are what was measured.
    `noise_spread` and `noise_std` are what configs of identical accuracy would show from sampling
    alone: the mean over `b` permutations that shuffle, item by item, the configs' scores among the
    configs on the items they all answered (so items every config finds hard stay hard), or the
    binomial figures where the configs share fewer than MIN_PAIRED items. `net_std` is the std of
    the configs' true scores once that noise is taken out, centred on the permutations so that its
    mean is 0 for configs of equal accuracy (`permuted_spread`), with an interval that holds 0
    when the spread is no larger than noise.
    """
    test = summary[(summary["split"] == "test") & (summary["n"] > 0)]
    if test.empty:
        return pd.DataFrame()
    recs = typed(records)
    # each config classed by a record that declares it (a preparation or failed call may not), test first
    declares = recs["extras"].map(lambda e: e.reasons is not None).astype(bool)
    ranked = recs.assign(_declares=declares, _test=recs["split"].eq("test"))
    first = ranked.sort_values(["_declares", "_test"], ascending=False, kind="stable")
    first = first.drop_duplicates("config_id").set_index("config_id")
    family = {
        cid: strategy_family(s, first["config"].get(cid), first["extras"].get(cid))
        for cid, s in zip(test.config_id, test.strategy, strict=True)
    }
    test = test.assign(family=test["config_id"].map(family))
    scored = answered(records[records["split"] == "test"])  # failed calls are not answers, as everywhere
    rows = []
    for (run_id, model, task), g in test.groupby(["run_id", "model", "task"], sort=True):
        mine = scored[(scored["run_id"] == run_id) & (scored["model"] == model) & (scored["task"] == task)]
        by_item = mine.pivot_table(index="example_id", columns="config_id", values="score", aggfunc="first")
        for fam in ("all", "reasoning", "non-reasoning", "other"):
            part = g if fam == "all" else g[g.family == fam]
            if part.empty:
                continue
            scores, n = part["score"].to_numpy(float), part["n"].to_numpy(float)
            k = len(scores)
            noise_var = float(np.mean(scores * (1 - scores) / np.maximum(n - 1, 1)))  # of one config's score
            # on the same footing as `std` (the population form over the k configs): E[var0] = var0(true) + noise (k-1)/k
            noise_var0 = noise_var * (k - 1) / k
            row = {
                "run_id": run_id, "model": model, "task": task, "family": fam, "n_configs": len(part),
                "min_score": float(scores.min()), "max_score": float(scores.max()),
                "spread": float(scores.max() - scores.min()), "std": float(scores.std()),
                "noise_spread": expected_range(len(part)) * math.sqrt(noise_var), "noise_std": math.sqrt(noise_var0),
                "net_std": None, "net_std_ci_low": None, "net_std_ci_high": None, "shared_items": 0,
            }  # fmt: skip
            cols = [c for c in part["config_id"] if c in by_item.columns]
            shared = by_item[cols].dropna().to_numpy(float) if len(cols) == k else np.empty((0, k))
            if k > 1 and len(shared) >= MIN_PAIRED:
                row |= permuted_spread(shared, b=b, seed=seed) | {"shared_items": len(shared)}
            rows.append(row)
    return pd.DataFrame(rows)


def permuted_spread(scores: np.ndarray, b: int = PERMUTATIONS, seed: int = 0, chunk: int = 50) -> dict:
    """Configs' spread on shared items (rows: items, columns: configs) against its permutation
    null: each item's scores shuffled among the configs, `b` times. The null's mean range and
    variance are the noise (`noise_spread`, `noise_std`). The net std sqrt(max(0, measured
    variance − noise)) is biased up when the configs are equal (a floor at 0 keeps only the
    positive draws), so `net_std` subtracts the same estimate's mean under the null, and its
    interval is its value minus the null's 97.5% and 2.5% quantiles of that estimate: for equal
    configs `net_std` averages 0 and the interval holds 0; for configs far apart it is close to
    the std of their true scores."""
    rng = np.random.default_rng(seed)
    observed = scores.mean(axis=0)
    variances, ranges = [], []
    for start in range(0, b, chunk):
        size = min(chunk, b - start)
        means = rng.permuted(np.broadcast_to(scores, (size, *scores.shape)), axis=2).mean(axis=1)
        variances.append(means.var(axis=1))
        ranges.append(means.max(axis=1) - means.min(axis=1))
    null, spread = np.concatenate(variances), np.concatenate(ranges)
    noise = float(null.mean())
    net = math.sqrt(max(0.0, float(observed.var()) - noise))
    under_null = np.sqrt(np.maximum(0.0, null - noise))
    low, high = np.quantile(under_null, [0.025, 0.975])
    return {"noise_spread": float(spread.mean()), "noise_std": math.sqrt(noise),
            "net_std": net - float(under_null.mean()), "net_std_ci_low": net - float(high),
            "net_std_ci_high": net - float(low)}  # fmt: skip


def _sensitivity_sections(report) -> list[Section]:
    return tabulate(
        report.sensitivity,
        "Prompt sensitivity (test scores across configs)",
        [
            "model", "task", "strategies", "configs", "min %", "max %", "spread pts",
            "spread from noise pts", "std pts", "std net of noise pts",
        ],
        lambda r: [
            display(r.model), r.task + run_label(report, r.run_id), r.family, str(r.n_configs),
            pct(r.min_score), pct(r.max_score), pct(r.spread), pct(r.noise_spread), pct(r.std),
            pct(r.net_std) if r.net_std_ci_low is None else ci(r.net_std, r.net_std_ci_low, r.net_std_ci_high, pts),
        ],
        "Spread from noise = the max − min that configs of identical accuracy would show from sampling "
        "alone: the mean over 200 permutations of each shared test item's scores among the configs (binomial "
        "where they share too few items: configs that answer alike show little); std net of noise = the std of the "
        "configs' true scores once that noise is taken out, centred so that it averages 0 for configs of equal "
        "accuracy, with the permutations' 95% range (holding 0: no larger than noise). Reasoning or non-reasoning: "
        "as each strategy declares it (`reasons`: a reasoning step before the answer, with its knobs), kept with "
        "each record; records written before strategies declared it go by the bundled strategy of their name; "
        "other: a strategy that declared nothing.",
    )


register(ReportSection("sensitivity", Sensitivity, lambda i: rows_of(sensitivity(i.summary, i.records, seed=i.seed)),
                       _sensitivity_sections, shown=110, stored=5, required=True, doc=__doc__))
