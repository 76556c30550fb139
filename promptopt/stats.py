"""Statistics: pure functions over pandas DataFrames of records. No I/O, no LM.

Columns used: model, task, strategy, optimizer, config_id, split, example_id, score, parse_ok,
error, lm_calls, prompt_tokens, completion_tokens, cost_usd, latency_s.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

Z95 = 1.959963984540054
GROUP = ["model", "task", "strategy", "optimizer", "config_id", "split"]


def wilson(successes: float, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a proportion; sensible at 0, n and small n."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def bootstrap_ci(scores: np.ndarray, b: int = 10_000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap over items, for scores that are not plain 0/1."""
    if len(scores) == 0:
        return (0.0, 1.0)
    rng = np.random.default_rng(seed)
    means = scores[rng.integers(0, len(scores), size=(b, len(scores)))].mean(axis=1)
    return (float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975)))


def score_ci(scores: np.ndarray, b: int = 10_000, seed: int = 0) -> tuple[float, float]:
    """Wilson for binary scores, bootstrap otherwise."""
    if np.isin(scores, (0.0, 1.0)).all():
        return wilson(float(scores.sum()), len(scores))
    return bootstrap_ci(scores, b=b, seed=seed)


def paired_bootstrap(a: np.ndarray, b_: np.ndarray, b: int = 10_000, seed: int = 0) -> tuple[float, float, float]:
    """Mean difference a - b over the same items, with a 95% percentile bootstrap interval."""
    diff = a - b_
    if len(diff) == 0:
        return (0.0, 0.0, 0.0)
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), size=(b, len(diff)))].mean(axis=1)
    return (float(diff.mean()), float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975)))


def verdict(low: float, high: float) -> str:
    return "better" if low > 0 else "worse" if high < 0 else "tie"


def summarize(records: pd.DataFrame, b: int = 10_000, seed: int = 0) -> pd.DataFrame:
    """One row per (model, task, config, split): score with 95% CI, failure rates, cost."""
    rows = []
    for key, g in records.groupby(GROUP, sort=True):
        scores = g["score"].to_numpy(dtype=float)
        low, high = score_ci(scores, b=b, seed=seed)
        n = len(g)
        rows.append(
            dict(zip(GROUP, key, strict=True))
            | {
                "n": n,
                "score": float(scores.mean()) if n else 0.0,
                "ci_low": low,
                "ci_high": high,
                "parse_failure_rate": float((~g["parse_ok"].astype(bool) & g["error"].isna()).mean()),
                "error_rate": float(g["error"].notna().mean()),
                "lm_calls": int(g["lm_calls"].sum()),
                "prompt_tokens": int(g["prompt_tokens"].sum()),
                "completion_tokens": int(g["completion_tokens"].sum()),
                "cost_usd": float(g["cost_usd"].sum()),
                "wall_s": float(g["latency_s"].sum()),
            }
        )
    cols = [*GROUP, "n", "score", "ci_low", "ci_high", "parse_failure_rate", "error_rate", "lm_calls",
            "prompt_tokens", "completion_tokens", "cost_usd", "wall_s"]  # fmt: skip
    return pd.DataFrame(rows, columns=cols)


def select_configs(summary: pd.DataFrame) -> pd.DataFrame:
    """Per (model, task): the config chosen on val — best score, ties to the cheaper one.

    When no config was scored on val, selection falls back to test and the ceiling is then the
    optimistic one; `ceilings` says so through `selected_on`.
    """
    out = []
    for (model, task), g in summary.groupby(["model", "task"], sort=True):
        val = g[g["split"] == "val"]
        val = val[val["n"] == val["n"].max()]  # a search stops weak configs early: choose among full ones
        pool, on = (val, "val") if len(val) else (g[g["split"] == "test"], "test")
        if pool.empty:
            continue
        cost = pool["cost_usd"] / pool["n"].clip(lower=1)
        calls = pool["lm_calls"] / pool["n"].clip(lower=1)
        best = pool.assign(_cost=cost, _calls=calls).sort_values(
            ["score", "_cost", "_calls", "config_id"], ascending=[False, True, True, True]
        )
        out.append({"model": model, "task": task, "config_id": best.iloc[0]["config_id"], "selected_on": on})
    return pd.DataFrame(out, columns=["model", "task", "config_id", "selected_on"])


def ceilings(records: pd.DataFrame, b: int = 10_000, seed: int = 0) -> pd.DataFrame:
    """Per (model, task): baseline, val-selected ceiling on test with CI, optimistic max, uplift."""
    summary = summarize(records, b=b, seed=seed)
    chosen = select_configs(summary)
    rows = []
    for _, pick in chosen.iterrows():
        test = summary[(summary.model == pick.model) & (summary.task == pick.task) & (summary.split == "test")]
        if test.empty:
            continue
        sel = test[test.config_id == pick.config_id]
        base = test[test.strategy == "baseline"]
        recs = records[(records.model == pick.model) & (records.task == pick.task) & (records.split == "test")]
        row = {
            "model": pick.model,
            "task": pick.task,
            "selected_config_id": pick.config_id,
            "selected_on": pick.selected_on,
            "baseline_score": float(base.iloc[0].score) if len(base) else None,
            "ceiling_score": float(sel.iloc[0].score) if len(sel) else None,
            "ceiling_ci_low": float(sel.iloc[0].ci_low) if len(sel) else None,
            "ceiling_ci_high": float(sel.iloc[0].ci_high) if len(sel) else None,
            "optimistic_max_score": float(test.score.max()),
            "uplift": None,
            "uplift_ci_low": None,
            "uplift_ci_high": None,
            "verdict": None,
        }
        if len(sel) and len(base):
            a = recs[recs.config_id == pick.config_id].set_index("example_id")["score"]
            c = recs[recs.config_id == base.iloc[0].config_id].set_index("example_id")["score"]
            common = a.index.intersection(c.index)
            diff, low, high = paired_bootstrap(
                a.loc[common].to_numpy(float), c.loc[common].to_numpy(float), b=b, seed=seed
            )
            row |= {"uplift": diff, "uplift_ci_low": low, "uplift_ci_high": high, "verdict": verdict(low, high)}
        rows.append(row)
    return pd.DataFrame(rows)
