"""Statistics: pure functions over pandas DataFrames of records. No I/O, no LM.

Columns used: model, task, strategy, optimizer, config_id, split, example_id, score, parse_ok,
error, lm_calls, prompt_tokens, completion_tokens, cost_usd, latency_s (and config, raw_output for
sensitivity and consistency). Intervals are 95%; bootstraps are over items, seeded, B resamples.
"""

from __future__ import annotations

import itertools
import json
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


def bootstrap_means(values: np.ndarray, b: int = 10_000, seed: int = 0) -> np.ndarray:
    """b means of samples drawn with replacement from `values` (the bootstrap over items).

    Scores take few distinct values (0/1, or -1/0/1 for a paired difference), so a resample's
    mean only depends on how many items of each value it drew: one multinomial draw per
    resample gives the same distribution as resampling items, at a cost independent of n.
    """
    values = np.asarray(values, dtype=float)
    n = len(values)
    rng = np.random.default_rng(seed)
    levels, counts = np.unique(values, return_counts=True)
    if len(levels) <= 64:
        draws = rng.multinomial(n, counts / n, size=b)
        return draws @ levels / n
    out = np.empty(b)
    step = max(1, 2_000_000 // n)  # bound memory: resample in chunks of ~2M items
    for start in range(0, b, step):
        stop = min(b, start + step)
        out[start:stop] = values[rng.integers(0, n, size=(stop - start, n))].mean(axis=1)
    return out


def bootstrap_ci(scores: np.ndarray, b: int = 10_000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap over items, for scores that are not plain 0/1."""
    if len(scores) == 0:
        return (0.0, 1.0)
    means = bootstrap_means(scores, b=b, seed=seed)
    return (float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975)))


def score_ci(scores: np.ndarray, b: int = 10_000, seed: int = 0) -> tuple[float, float]:
    """Wilson for binary scores, bootstrap otherwise."""
    if np.isin(scores, (0.0, 1.0)).all():
        return wilson(float(scores.sum()), len(scores))
    return bootstrap_ci(scores, b=b, seed=seed)


def paired_bootstrap(a: np.ndarray, b_: np.ndarray, b: int = 10_000, seed: int = 0) -> tuple[float, float, float]:
    """Mean difference a - b over the same items, with a 95% percentile bootstrap interval."""
    diff = np.asarray(a, dtype=float) - np.asarray(b_, dtype=float)
    if len(diff) == 0:
        return (0.0, 0.0, 0.0)
    means = bootstrap_means(diff, b=b, seed=seed)
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


def item_scores(records: pd.DataFrame, split: str = "test") -> dict[tuple[str, str, str], pd.Series]:
    """(model, task, config_id) -> scores indexed by example id, for pairing on the same items."""
    part = records[records["split"] == split]
    return {
        key: g.set_index("example_id")["score"].astype(float)
        for key, g in part.groupby(["model", "task", "config_id"], sort=False)
    }


def _paired(sa: pd.Series, sb: pd.Series, b: int, seed: int) -> tuple[int, float, float, float]:
    common = sa.index.intersection(sb.index)
    diff, low, high = paired_bootstrap(sa.loc[common].to_numpy(), sb.loc[common].to_numpy(), b=b, seed=seed)
    return len(common), diff, low, high


def ceilings(
    records: pd.DataFrame, b: int = 10_000, seed: int = 0, summary: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Per (model, task): baseline, val-selected ceiling on test with CI, optimistic max, uplift, ranks.

    The ceiling is the test score of the config chosen on val; the optimistic max is the best
    test score over all configs, which is biased upward (a maximum over noisy estimates).
    Ranks are per task, 1 = best, ties share the better rank.
    """
    summary = summarize(records, b=b, seed=seed) if summary is None else summary
    chosen = select_configs(summary)
    items = item_scores(records, "test")
    rows = []
    for pick in chosen.itertuples():
        test = summary[(summary.model == pick.model) & (summary.task == pick.task) & (summary.split == "test")]
        if test.empty:
            continue
        sel = test[test.config_id == pick.config_id]
        base = test[test.strategy == "baseline"].sort_values(["n", "config_id"], ascending=[False, True])
        best = test.sort_values(["score", "config_id"], ascending=[False, True]).iloc[0]
        row = {
            "model": pick.model,
            "task": pick.task,
            "selected_config_id": pick.config_id,
            "selected_on": pick.selected_on,
            "baseline_config_id": base.iloc[0].config_id if len(base) else None,
            "baseline_score": float(base.iloc[0].score) if len(base) else None,
            "baseline_ci_low": float(base.iloc[0].ci_low) if len(base) else None,
            "baseline_ci_high": float(base.iloc[0].ci_high) if len(base) else None,
            "ceiling_score": float(sel.iloc[0].score) if len(sel) else None,
            "ceiling_ci_low": float(sel.iloc[0].ci_low) if len(sel) else None,
            "ceiling_ci_high": float(sel.iloc[0].ci_high) if len(sel) else None,
            "ceiling_n": int(sel.iloc[0].n) if len(sel) else 0,
            "optimistic_max_score": float(best.score),
            "optimistic_config_id": best.config_id,
            "uplift": None,
            "uplift_ci_low": None,
            "uplift_ci_high": None,
            "verdict": None,
        }
        if len(sel) and len(base):
            a = items[(pick.model, pick.task, pick.config_id)]
            c = items[(pick.model, pick.task, base.iloc[0].config_id)]
            _, diff, low, high = _paired(a, c, b, seed)
            row |= {"uplift": diff, "uplift_ci_low": low, "uplift_ci_high": high, "verdict": verdict(low, high)}
        rows.append(row)
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    for col, score in (("rank_baseline", "baseline_score"), ("rank_ceiling", "ceiling_score")):
        ranks = out.groupby("task")[score].rank(ascending=False, method="min")
        out[col] = [None if pd.isna(r) else int(r) for r in ranks]
    return out


def head_to_head(records: pd.DataFrame, ceil: pd.DataFrame, b: int = 10_000, seed: int = 0) -> pd.DataFrame:
    """Each pair of models on a task, on the same test items: under the baseline, and each at its ceiling.

    `diff` is model_a minus model_b; `outcome` is model_a's win, tie or loss at 95%.
    """
    items = item_scores(records, "test")
    rows = []
    if ceil.empty:
        return pd.DataFrame(rows)
    for task, g in ceil.groupby("task", sort=True):
        by_model = {r.model: r for r in g.itertuples()}
        for model_a, model_b in itertools.combinations(sorted(by_model), 2):
            ra, rb = by_model[model_a], by_model[model_b]
            for setting, col in (("baseline", "baseline_config_id"), ("ceiling", "selected_config_id")):
                ca, cb = getattr(ra, col), getattr(rb, col)
                sa, sb = items.get((model_a, task, ca)), items.get((model_b, task, cb))
                if sa is None or sb is None:
                    continue
                n, diff, low, high = _paired(sa, sb, b, seed)
                if n == 0:
                    continue
                rows.append(
                    {
                        "task": task, "model_a": model_a, "model_b": model_b, "setting": setting,
                        "config_a": ca, "config_b": cb, "n": n, "diff": diff, "ci_low": low, "ci_high": high,
                        "outcome": {"better": "win", "worse": "loss"}.get(verdict(low, high), "tie"),
                    }
                )  # fmt: skip
    return pd.DataFrame(rows)


def rank_flips(ceil: pd.DataFrame, h2h: pd.DataFrame) -> pd.DataFrame:
    """Pairs of models whose order under the baseline reverses at their ceilings.

    A flip is `real` only when both paired differences (baseline and ceiling) exclude zero;
    otherwise it is `within noise`. `model_a` is the one ahead at the ceiling.
    """
    rows = []
    if ceil.empty or h2h.empty:
        return pd.DataFrame(rows)
    pairs = {(r.task, r.model_a, r.model_b, r.setting): r for r in h2h.itertuples()}
    for (task, ma, mb, setting), r in pairs.items():
        if setting != "baseline" or (task, ma, mb, "ceiling") not in pairs:
            continue
        c = pairs[(task, ma, mb, "ceiling")]
        if r.diff * c.diff >= 0:  # same order, or a tie on one side: no flip
            continue
        sign = 1 if c.diff > 0 else -1  # orient so that model_a leads at the ceiling
        real = r.outcome != "tie" and c.outcome != "tie"
        rows.append(
            {
                "task": task, "model_a": ma if sign > 0 else mb, "model_b": mb if sign > 0 else ma,
                "baseline_diff": sign * r.diff,
                "baseline_ci_low": sign * (r.ci_low if sign > 0 else r.ci_high),
                "baseline_ci_high": sign * (r.ci_high if sign > 0 else r.ci_low),
                "ceiling_diff": sign * c.diff,
                "ceiling_ci_low": sign * (c.ci_low if sign > 0 else c.ci_high),
                "ceiling_ci_high": sign * (c.ci_high if sign > 0 else c.ci_low),
                "status": "real" if real else "within noise",
            }
        )  # fmt: skip
    return pd.DataFrame(rows)


REASONING = {"cot", "self_consistency", "verify_choices", "knn_fewshot"}
NON_REASONING = {"baseline", "predict"}


def strategy_family(strategy: str, config_json: str | None = None) -> str:
    """`reasoning`, `non-reasoning`, or `other` (a user strategy we cannot classify)."""
    if strategy == "choice_shuffle":
        try:
            knobs = json.loads(config_json or "{}").get("knobs", {})
        except ValueError:
            knobs = {}
        return "reasoning" if knobs.get("reasoning", True) else "non-reasoning"
    if strategy in REASONING:
        return "reasoning"
    return "non-reasoning" if strategy in NON_REASONING else "other"


def sensitivity(summary: pd.DataFrame, records: pd.DataFrame) -> pd.DataFrame:
    """Spread of test scores across configs per (model, task): max − min and standard deviation.

    Shown for all configs and for reasoning and non-reasoning strategies separately; the
    standard deviation is over configs (population form, 0 for a single config).
    """
    test = summary[summary["split"] == "test"]
    if test.empty:
        return pd.DataFrame()
    configs = records.drop_duplicates("config_id").set_index("config_id")["config"]
    family = {cid: strategy_family(s, configs.get(cid)) for cid, s in zip(test.config_id, test.strategy, strict=True)}
    test = test.assign(family=test["config_id"].map(family))
    rows = []
    for (model, task), g in test.groupby(["model", "task"], sort=True):
        for fam in ("all", "reasoning", "non-reasoning", "other"):
            part = g if fam == "all" else g[g.family == fam]
            if part.empty:
                continue
            scores = part["score"].to_numpy(float)
            rows.append(
                {
                    "model": model, "task": task, "family": fam, "n_configs": len(part),
                    "min_score": float(scores.min()), "max_score": float(scores.max()),
                    "spread": float(scores.max() - scores.min()), "std": float(scores.std()),
                }
            )  # fmt: skip
    return pd.DataFrame(rows)


def shuffle_votes(raw_output: str | None) -> list | None:
    """The votes a choice_shuffle record stored in its raw output, or None if it holds none."""
    if not raw_output or not raw_output.startswith("{"):
        return None
    try:
        votes = json.loads(raw_output).get("votes")
    except (ValueError, AttributeError):
        return None
    return votes if isinstance(votes, list) and votes else None


def consistency(records: pd.DataFrame) -> pd.DataFrame:
    """Where choice_shuffle ran: the share of questions answered the same under every option order.

    A question counts as consistent when every vote names the same option (an unreadable
    vote breaks consistency). Records without stored votes (older runs) are left out.
    """
    part = records[(records["strategy"] == "choice_shuffle") & records["error"].isna()]
    rows = []
    for key, g in part.groupby(["model", "task", "config_id", "split"], sort=True):
        votes = [v for v in map(shuffle_votes, g["raw_output"]) if v is not None]
        if not votes:
            continue
        same = sum(1 for v in votes if v[0] is not None and all(x == v[0] for x in v))
        low, high = wilson(same, len(votes))
        rows.append(
            dict(zip(["model", "task", "config_id", "split"], key, strict=True))
            | {
                "n": len(votes),
                "orders": max(len(v) for v in votes),
                "consistency": same / len(votes),
                "ci_low": low,
                "ci_high": high,
            }  # fmt: skip
        )
    return pd.DataFrame(rows)


def unpriced_models(records: pd.DataFrame) -> set[str]:
    """Models whose calls carry no price (embedded and self-hosted ones): tokens but $0 in total."""
    totals = records.groupby("model")[["cost_usd", "prompt_tokens", "completion_tokens"]].sum()
    return set(totals.index[totals["cost_usd"] == 0])


def price_unpriced(frame: pd.DataFrame, models: set[str], usd_per_mtok: float) -> pd.DataFrame:
    """Charge the given models `usd_per_mtok` dollars per million tokens (in and out alike)."""
    if not usd_per_mtok or frame.empty or not models:
        return frame
    mask = frame["model"].isin(models)
    tokens = frame["prompt_tokens"] + frame["completion_tokens"]
    out = frame.copy()
    out.loc[mask, "cost_usd"] = tokens[mask] * usd_per_mtok / 1e6
    return out


def costs(records: pd.DataFrame, compiles: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per (model, task, config): inference cost per example and the one-off optimization cost.

    Inference is read from test records (val when a config has none). The one-off cost adds
    the optimizer's compile calls and the preparation records (split `train`, e.g. kNN's
    self-generated explanations).
    """
    cols = ["lm_calls", "prompt_tokens", "completion_tokens", "cost_usd"]
    scored = records[records["split"].isin(["val", "test"])]
    keys = ["model", "task", "strategy", "optimizer", "config_id"]
    prep = records[records["split"] == "train"].groupby(["model", "task", "config_id"])[cols].sum()
    comp = (
        compiles.groupby(["model", "task", "config_id"])[cols].sum()
        if compiles is not None and len(compiles)
        else pd.DataFrame(columns=cols)
    )
    rows = []
    for key, g in scored.groupby(keys, sort=True):
        split = "test" if (g["split"] == "test").any() else "val"
        g = g[g["split"] == split]
        n = len(g)
        sums = g[cols].sum()
        ident = (key[0], key[1], key[4])
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
            }
        )  # fmt: skip
    return pd.DataFrame(rows)


def pareto(summary: pd.DataFrame) -> pd.DataFrame:
    """Every (model, config) per task as a point of score vs inference cost per example, frontier marked.

    Points are test scores (val for a task with no test records). Cost is dollars per example;
    when every point of a task costs $0 (local models at the default price), tokens per
    example instead, so the frontier still says something. A point is on the frontier when no
    other point scores at least as well for no more cost, and strictly better on one of them.
    """
    rows = []
    for _task, g in summary.groupby("task", sort=True):
        split = "test" if (g["split"] == "test").any() else "val"
        g = g[(g["split"] == split) & (g["n"] > 0)]
        usd = g["cost_usd"] / g["n"]
        tokens = (g["prompt_tokens"] + g["completion_tokens"]) / g["n"]
        axis = "usd" if (usd > 0).any() else "tokens"
        pts = g.assign(
            usd_per_example=usd, tokens_per_example=tokens, cost=usd if axis == "usd" else tokens, cost_axis=axis
        )
        pts = pts.sort_values(["cost", "score", "model", "config_id"], ascending=[True, False, True, True])
        best, last, on = -math.inf, None, []
        for cost, score in zip(pts["cost"], pts["score"], strict=True):
            if score > best or (cost, score) == last:
                on.append(True)
                best, last = score, (cost, score)
            else:
                on.append(False)
        pts["frontier"] = on
        pts["split"] = split
        rows.append(pts)
    cols = ["task", "model", "strategy", "optimizer", "config_id", "split", "n", "score", "ci_low", "ci_high",
            "usd_per_example", "tokens_per_example", "cost_axis", "cost", "frontier"]  # fmt: skip
    return pd.concat(rows)[cols].reset_index(drop=True) if rows else pd.DataFrame(columns=cols)
