"""Statistics: pure functions over pandas DataFrames of records. No I/O, no LM.

Columns used: run_id, model, task, strategy, optimizer, config_id, split, example_id, score,
parse_ok, error, lm_calls, prompt_tokens, completion_tokens, cost_usd, latency_s (and config,
raw_output for sensitivity and consistency). Intervals are 95%; bootstraps are over items,
seeded, B resamples.

Rules every number here follows, so that a report never claims more than the records hold:
- Every statistic is computed within one run: records of two runs are never pooled.
- A record whose LM call failed after retries (`error` set) is not an answer: it is left out
  of score, n and interval, and counted in `errors` / `error_rate` (its calls and cost count).
- A paired statistic uses only the items answered under both configs and states that number;
  on fewer than `MIN_PAIRED` common items it gives no verdict.
- Verdicts (uplift, head-to-head, flips) are corrected for multiple comparisons with Holm's
  method over every comparison of a (run, task); the intervals shown stay per-comparison 95%.
"""

from __future__ import annotations

import functools
import itertools
import json
import math

import numpy as np
import pandas as pd

from promptopt.detectable import mde
from promptopt.estimators import (  # noqa: F401  (the pure estimators, also read as stats.*)
    Z95,
    _cluster_sums,
    _paired_score_z,
    bootstrap_ci,
    bootstrap_means,
    busy_seconds,
    cluster_se,
    cluster_t,
    clustered,
    design_effect,
    holm,
    kappa,
    macro_f1,
    mid_p,
    paired_bootstrap,
    paired_p,
    score_ci,
    sign_test_p,
    tost_p,
    verdict,
    wilson,
)
from promptopt.probes import PAIRED

ALPHA = 0.05
MIN_PAIRED = 10  # fewest common items a paired verdict is given on
GROUP = ["run_id", "model", "task", "strategy", "optimizer", "config_id", "split"]


def answered(records: pd.DataFrame) -> pd.DataFrame:
    """Records whose LM calls succeeded (a parse failure is an answer, scored 0; an error is not)."""
    return records[records["error"].isna()]


def corrected_verdict(diff: float, p_adjusted: float | None, n: int, alpha: float = ALPHA) -> str | None:
    """better / worse / tie after the family-wise correction; None on too few common items."""
    if n < MIN_PAIRED or p_adjusted is None:
        return None
    if p_adjusted >= alpha:
        return "tie"
    return "better" if diff > 0 else "worse"


def answered_scores(records: pd.DataFrame) -> pd.Series:
    """The scores of the answered items (errors left out), indexed by example id: what every
    score promptopt reports, compares or prunes on is the mean of."""
    return answered(records).set_index("example_id")["score"].astype(float)


def split_score(records: pd.DataFrame) -> dict:
    """One config's records on one split: items attempted, answered (n), errors, and the score
    over the answered items (None when none was answered). The one place a score is computed."""
    items = answered_scores(records)
    return {"n_items": len(records), "n": len(items), "errors": len(records) - len(items),
            "score": float(items.mean()) if len(items) else None}  # fmt: skip


def summarize(records: pd.DataFrame, b: int = 10_000, seed: int = 0) -> pd.DataFrame:
    """One row per (run, model, task, config, split): score with 95% CI over the answered items,
    failure rates, errors, cost.

    `n` counts answered items (errors left out), `n_items` every item attempted; parse failures
    are a share of the answered items, errors a share of all items. Calls, tokens and cost
    count every record, errors included: they were paid for.
    """
    rows = []
    labels = cluster_labels(records)
    for key, g in records.groupby(GROUP, sort=True):
        ok = g["error"].isna()
        scored = split_score(g)
        n, errors = scored["n"], scored["errors"]
        values = g.loc[ok, "score"].to_numpy(dtype=float)
        mine = labels.get((g["run_id"].iloc[0], g["task"].iloc[0]))
        groups = None if mine is None else mine.reindex(g.loc[ok, "example_id"].astype(str)).to_numpy()
        low, high = score_ci(values, b=b, seed=seed, clusters=groups)
        rows.append(
            dict(zip(GROUP, key, strict=True))
            | {
                "n": n,
                "score": scored["score"],
                "ci_low": low if n else None,
                "ci_high": high if n else None,
                "parse_failure_rate": float((~g.loc[ok, "parse_ok"].astype(bool)).mean()) if n else None,
                "error_rate": errors / len(g),
                "lm_calls": int(g["lm_calls"].sum()),
                "prompt_tokens": int(g["prompt_tokens"].sum()),
                "completion_tokens": int(g["completion_tokens"].sum()),
                "cost_usd": float(g["cost_usd"].sum()),
                "wall_s": float(g["latency_s"].sum()),
                "n_items": len(g),
                "errors": errors,
                "clusters": len(pd.unique(groups)) if clustered(groups) else None,
                "design_effect": design_effect(values, groups) if clustered(groups) else None,
            }
        )
    cols = [*GROUP, "n", "score", "ci_low", "ci_high", "parse_failure_rate", "error_rate", "lm_calls",
            "prompt_tokens", "completion_tokens", "cost_usd", "wall_s", "n_items", "errors", "clusters",
            "design_effect"]  # fmt: skip
    return pd.DataFrame(rows, columns=cols)


def select_configs(summary: pd.DataFrame, choices: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per (run, model, task): the config chosen on val — best score, ties to the cheaper one, or
    what a search recorded in `choices` (rank 0; its rule may prefer a cheaper config within ε).

    Candidates are the configs scored on every val item the run scored (a search stops weak
    configs early, an interrupted run leaves some short): `candidates` counts them and
    `not_candidates` names the others. When no config was scored on val, selection falls back
    to test and the ceiling is then the optimistic one: `selected_on` says so.
    """
    out = []
    for (run_id, model, task), g in summary.groupby(["run_id", "model", "task"], sort=True):
        val = g[(g["split"] == "val") & (g["n"] > 0)]
        pool, on = (val, "val") if len(val) else (g[(g["split"] == "test") & (g["n"] > 0)], "test")
        if pool.empty:
            continue
        full = pool[pool["n_items"] == pool["n_items"].max()]
        short = sorted(set(pool["config_id"]) - set(full["config_id"]))
        best = _by_cost(full).sort_values("score", ascending=False, kind="stable")
        pick = best.iloc[0]["config_id"]
        if choices is not None and len(choices):
            mine = choices[(choices.run_id == run_id) & (choices.model == model) & (choices.task == task)]
            recorded = mine.sort_values("rank").config_id.tolist()
            pick = recorded[0] if recorded and recorded[0] in set(full["config_id"]) and on == "val" else pick
        out.append(
            {
                "run_id": run_id, "model": model, "task": task, "config_id": pick,
                "selected_on": on, "candidates": len(full), "not_candidates": short,
            }
        )  # fmt: skip
    return pd.DataFrame(out, columns=["run_id", "model", "task", "config_id", "selected_on", "candidates",
                                      "not_candidates"])  # fmt: skip


def _by_cost(full: pd.DataFrame) -> pd.DataFrame:
    """Candidate configs cheapest first (dollars, then calls per item, then id): the order ties on
    val are broken in."""
    cost = full["cost_usd"] / full["n_items"].clip(lower=1)
    calls = full["lm_calls"] / full["n_items"].clip(lower=1)
    return full.assign(_cost=cost, _calls=calls).sort_values(["_cost", "_calls", "config_id"])


def procedure_interval(val: list[pd.Series], test: list[pd.Series], b: int = 10_000, seed: int = 0,
                       clusters: pd.Series | None = None) -> tuple[float, float] | None:  # fmt: skip
    """95% interval of the ceiling as the whole procedure makes it: resample the val items and the
    test items (apart: they are different items), choose again on the resampled val (ties to the
    earlier config of the list, the cheaper), and take how far that config's mean on the
    resampled test items falls from its own observed test mean; the interval is the chosen
    config's test score minus those errors' 97.5% and 2.5% quantiles (a basic bootstrap of the
    procedure's error). `val` and `test` hold each candidate's item scores, cheapest first. The
    choice's own binomial interval treats the choice as fixed; this one resamples it too, and
    mixing the configs' own test distributions instead (each centred on its own observed mean)
    over-covered at 98-100% (BENCHMARKS.md §12). `clusters` (example id -> cluster): whole clusters
    are resampled, each item weighing as often as its cluster is drawn. The interval is clipped to
    [0, 1] for 0/1 scores. None when a config has no val or test item."""
    ids_v = sorted(set().union(*(v.index for v in val)))
    ids_t = sorted(set().union(*(t.index for t in test)))
    if not ids_v or not ids_t or any(v.empty for v in val) or any(t.empty for t in test):
        return None
    rng = np.random.default_rng(seed)

    def means(series: list[pd.Series], ids: list) -> np.ndarray:
        grid = np.array([s.reindex(ids).to_numpy(dtype=float) for s in series])  # configs x items, NaN unanswered
        codes = _cluster_codes(ids, clusters)
        n = int(codes.max()) + 1  # each resample's draw counts per cluster (a multinomial, from uniform draws: fast)
        draws = rng.integers(0, n, size=(b, n), dtype=np.int32) + (np.arange(b, dtype=np.int64) * n)[:, None]
        counts = np.bincount(draws.ravel(), minlength=b * n).reshape(b, n).T.astype(float)[codes]  # items x resamples
        seen = ~np.isnan(grid)
        return (np.nan_to_num(grid) @ counts) / np.maximum(seen.astype(float) @ counts, 1)

    on_val, on_test = means(val, ids_v), means(test, ids_t)
    order = np.arange(len(val)) * 1e-12  # the cheaper config wins an exact tie
    observed_val = np.array([v.mean() for v in val])
    observed_test = np.array([t.mean() for t in test])
    chosen = np.argmax(on_val - order[:, None], axis=0)
    error = on_test[chosen, np.arange(b)] - observed_test[chosen]
    ceiling = float(observed_test[int(np.argmax(observed_val - order))])
    low, high = ceiling - float(np.quantile(error, 0.975)), ceiling - float(np.quantile(error, 0.025))
    if all(np.isin(t.to_numpy(dtype=float), (0.0, 1.0)).all() for t in test):  # a basic bootstrap can leave [0, 1]
        low, high = max(low, 0.0), min(high, 1.0)
    return low, high


def _cluster_codes(ids: list, clusters: pd.Series | None) -> np.ndarray:
    """Each item's cluster as a code 0..k-1 (an item with no label is its own cluster)."""
    if clusters is None:
        return np.arange(len(ids))
    keys = pd.Index([str(i) for i in ids])
    labels = clusters.reindex(keys).fillna(pd.Series(keys, index=keys))
    return pd.factorize(labels.to_numpy())[0]


def item_scores(records: pd.DataFrame, split: str = "test") -> dict[tuple[str, str, str, str], pd.Series]:
    """(run, model, task, config_id) -> scores of the answered items, indexed by example id."""
    part = answered(records[records["split"] == split])
    return {
        key: g.set_index("example_id")["score"].astype(float)
        for key, g in part.groupby(["run_id", "model", "task", "config_id"], sort=False)
    }


FLIP_KEYS = ("only_a", "only_b", "both", "neither", "only_a_items", "only_b_items")


def paired(sa: pd.Series, sb: pd.Series, b: int = 10_000, seed: int = 0, min_n: int = 1,
           margin: float | None = None, clusters: pd.Series | None = None, alpha: float = ALPHA) -> dict:  # fmt: skip
    """a − b on the items both answered: n, the two scores there, the difference, its 95%
    bootstrap interval and the two-sided p-value; on fewer than `min_n` common items no interval
    and no p (a bootstrap over 3 items reads as a claim it cannot carry). Also the detectable
    difference, for 0/1 scores who got which items right, and with a `margin` (a share) TOST's
    p for equivalence within it. `clusters` (example id -> cluster): the interval and the p count
    clusters, not items (McNemar's test assumes independent items), and the detectable difference
    and TOST the effective number of items."""
    common = sa.index.intersection(sb.index)
    a, c = sa.loc[common].to_numpy(), sb.loc[common].to_numpy()
    if not len(common):
        return {"n": 0, "score_a": None, "score_b": None, "diff": None, "ci_low": None, "ci_high": None, "p": None,
                "mde": None, "equivalence_p": None, **dict.fromkeys(FLIP_KEYS)}  # fmt: skip
    groups = None if clusters is None else clusters.reindex(common).fillna(pd.Series(common, index=common)).to_numpy()
    if clustered(groups):
        return _paired_clusters(common, a.astype(float), c.astype(float), groups, min_n, margin, alpha)
    diff, low, high = paired_bootstrap(a, c, b=b, seed=seed)
    few = len(common) < min_n
    a, c = a.astype(float), c.astype(float)
    return {
        "n": len(common), "score_a": float(a.mean()), "score_b": float(c.mean()), "diff": diff,
        "ci_low": None if few else low, "ci_high": None if few else high,
        "p": None if few else paired_p(a, c, b=b, seed=seed),
        "mde": mde(float(np.mean((a - c) ** 2)), len(common), alpha),
        "equivalence_p": None if margin is None else tost_p(a - c, margin),
        **_flips(common, a, c),  # which items each config gets right that the other does not
    }  # fmt: skip


def _flips(common: pd.Index, a: np.ndarray, c: np.ndarray) -> dict:
    """For 0/1 scores, who got which items right (else every flip field None)."""
    if not (np.isin(a, (0.0, 1.0)).all() and np.isin(c, (0.0, 1.0)).all()):
        return dict.fromkeys(FLIP_KEYS)
    ids = np.asarray(common.astype(str))
    return {"only_a": int(((a == 1) & (c == 0)).sum()), "only_b": int(((a == 0) & (c == 1)).sum()),
            "both": int(((a == 1) & (c == 1)).sum()), "neither": int(((a == 0) & (c == 0)).sum()),
            "only_a_items": sorted(ids[(a == 1) & (c == 0)].tolist()),
            "only_b_items": sorted(ids[(a == 0) & (c == 1)].tolist())}  # fmt: skip


def _paired_clusters(common, a, c, groups, min_n: int, margin: float | None, alpha: float) -> dict:
    """`paired` on clustered items: Student's t over the clusters for the interval and the p
    (`cluster_t`), the design effect of the differences for the detectable difference and TOST."""
    diff = a - c
    low, high, p = cluster_t(diff, groups, bounds=(-1.0, 1.0))
    observed = float(diff.mean())
    few = len(common) < min_n
    effective = len(diff) / max(1.0, design_effect(diff, groups))
    tost = None
    if margin is not None and len(diff) >= 2:
        tost = tost_p(diff, margin, n=effective)
    return {
        "n": len(common), "score_a": float(a.mean()), "score_b": float(c.mean()), "diff": observed,
        "ci_low": None if few else low, "ci_high": None if few else high, "p": None if few else p,
        "mde": mde(float(np.mean(diff**2)), int(effective), alpha), "equivalence_p": tost,
        **_flips(common, a, c),
    }  # fmt: skip


def cluster_labels(records: pd.DataFrame) -> dict[tuple[str, str], pd.Series]:
    """(run, task) -> example id -> cluster, for the tasks whose items come in clusters: the
    cluster a record keeps (the task's cluster column, a probe item's source item), else for a
    probe task (TASK~probe) the source id before `~` (stores written before clusters were kept)."""
    from promptopt.probes import SEP

    frame = with_extras(records)
    marked = frame["extras"].map(lambda e: isinstance(e, str) and '"cluster"' in e).astype(bool)
    out = {}
    for (run_id, task), g in frame.groupby(["run_id", "task"], sort=True):
        if SEP not in task and not marked.loc[g.index].any():  # every item stands alone: nothing to read
            continue
        ids = g["example_id"].astype(str)
        kept = g["extras"].map(lambda e: extras_of(e).get("cluster") if isinstance(e, str) and '"cluster"' in e else None)
        kept = kept.groupby(ids.to_numpy()).first()  # an item's cluster, from any config's record (an error keeps none)
        unique = ids.drop_duplicates()
        fallback = pd.Series((unique.str.split(SEP, n=1).str[0] if SEP in task else unique).to_numpy(), index=unique.to_numpy())
        labels = kept.reindex(fallback.index).fillna(fallback)
        if clustered(labels.to_numpy()):
            out[(run_id, task)] = labels
    return out


def _first(frame: pd.DataFrame, col: str):
    return frame.iloc[0][col] if len(frame) else None


def _raw_ceilings(records: pd.DataFrame, summary: pd.DataFrame, b: int, seed: int, alpha: float = ALPHA) -> pd.DataFrame:
    chosen = select_configs(summary)
    items, val_items = item_scores(records, "test"), item_scores(records, "val")
    labels = cluster_labels(records)
    rows = []
    for pick in chosen.itertuples():
        mine = (summary.run_id == pick.run_id) & (summary.model == pick.model) & (summary.task == pick.task)
        test = summary[mine & (summary.split == "test") & (summary.n > 0)]
        if test.empty:
            continue
        sel = test[test.config_id == pick.config_id]
        base = test[test.strategy == "baseline"].sort_values(["n", "config_id"], ascending=[False, True])
        best = test.sort_values(["score", "config_id"], ascending=[False, True]).iloc[0]
        row = {
            "run_id": pick.run_id,
            "model": pick.model,
            "task": pick.task,
            "selected_config_id": pick.config_id,
            "selected_on": pick.selected_on,
            "candidates": pick.candidates,
            "not_candidates": pick.not_candidates,
            "baseline_config_id": _first(base, "config_id"),
            "baseline_score": _first(base, "score"),
            "baseline_ci_low": _first(base, "ci_low"),
            "baseline_ci_high": _first(base, "ci_high"),
            "baseline_n": _first(base, "n"),
            "ceiling_score": _first(sel, "score"),
            "ceiling_ci_low": _first(sel, "ci_low"),  # replaced by the whole procedure's when chosen on val
            "ceiling_ci_high": _first(sel, "ci_high"),
            "ceiling_fixed_ci_low": _first(sel, "ci_low"),
            "ceiling_fixed_ci_high": _first(sel, "ci_high"),
            "ceiling_n": _first(sel, "n") or 0,
            "optimistic_max_score": float(best.score),
            "optimistic_config_id": best.config_id,
            "uplift": None,
            "uplift_ci_low": None,
            "uplift_ci_high": None,
            "uplift_n": 0,
            "uplift_ceiling_score": None,
            "uplift_baseline_score": None,
            "uplift_p": None,
            "uplift_mde": None,
            **_ceiling_interval(summary, pick, val_items, items, b, seed, labels.get((pick.run_id, pick.task))),
        }
        if len(sel) and len(base):
            a = items[(pick.run_id, pick.model, pick.task, pick.config_id)]
            c = items[(pick.run_id, pick.model, pick.task, base.iloc[0].config_id)]
            pr = paired(a, c, b, seed, min_n=MIN_PAIRED,  # no interval a bootstrap over 3 items cannot carry
                        clusters=labels.get((pick.run_id, pick.task)), alpha=alpha)  # fmt: skip
            row |= {
                "uplift": pr["diff"], "uplift_ci_low": pr["ci_low"], "uplift_ci_high": pr["ci_high"],
                "uplift_n": pr["n"], "uplift_ceiling_score": pr["score_a"], "uplift_baseline_score": pr["score_b"],
                "uplift_p": pr["p"], "uplift_mde": pr["mde"],
            }  # fmt: skip
        rows.append(row)
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    for col, score in (("rank_baseline", "baseline_score"), ("rank_ceiling", "ceiling_score")):
        ranks = out.groupby(["run_id", "task"])[score].rank(ascending=False, method="min")
        out[col] = [None if pd.isna(r) else int(r) for r in ranks]
    return out


def _ceiling_interval(summary: pd.DataFrame, pick, val_items: dict, test_items: dict, b: int, seed: int,
                      clusters: pd.Series | None) -> dict:  # fmt: skip
    """The ceiling's default interval: over the whole procedure (promptopt.stats.procedure_interval)
    when the config was chosen on val among two or more candidates, else the chosen config's own
    (`ceiling_fixed_ci_*`, already in the row as `fixed`). `val_items`, `test_items`: item_scores
    of the split; `clusters`: the task's cluster labels, resampled whole."""
    fixed = {"ceiling_interval": "fixed"}
    if pick.selected_on != "val" or pick.candidates < 2:
        return fixed
    mine = summary[(summary.run_id == pick.run_id) & (summary.model == pick.model) & (summary.task == pick.task)]
    val = mine[(mine.split == "val") & (mine.n > 0)]
    full = _by_cost(val[val["n_items"] == val["n_items"].max()])
    keys = [(pick.run_id, pick.model, pick.task, c) for c in full.config_id]
    if not all(k in val_items and k in test_items for k in keys):
        return fixed
    # 2,000 resamples place a 95% interval's ends well enough, at a fifth of 10,000's time
    found = procedure_interval([val_items[k] for k in keys], [test_items[k] for k in keys], b=min(b, 2_000),
                               seed=seed, clusters=clusters)  # fmt: skip
    if found is None:
        return fixed
    return {"ceiling_interval": "procedure", "ceiling_ci_low": found[0], "ceiling_ci_high": found[1]}


def _raw_head_to_head(records: pd.DataFrame, ceil: pd.DataFrame, b: int, seed: int,
                      margin: float | None = None, alpha: float = ALPHA) -> pd.DataFrame:  # fmt: skip
    items = item_scores(records, "test")
    labels = cluster_labels(records)
    rows = []
    if ceil.empty:
        return pd.DataFrame(rows)
    for (run_id, task), g in ceil.groupby(["run_id", "task"], sort=True):
        by_model = {r.model: r for r in g.itertuples()}
        for model_a, model_b in itertools.combinations(sorted(by_model), 2):
            ra, rb = by_model[model_a], by_model[model_b]
            for setting, col in (("baseline", "baseline_config_id"), ("ceiling", "selected_config_id")):
                ca, cb = getattr(ra, col), getattr(rb, col)
                sa, sb = items.get((run_id, model_a, task, ca)), items.get((run_id, model_b, task, cb))
                if sa is None or sb is None:
                    continue
                pr = paired(sa, sb, b, seed, min_n=MIN_PAIRED, margin=margin, clusters=labels.get((run_id, task)),
                            alpha=alpha)  # fmt: skip
                if pr["n"] == 0:
                    continue
                on = None
                if setting == "ceiling":
                    on = "test" if "test" in (ra.selected_on, rb.selected_on) else "val"
                rows.append(
                    {
                        "run_id": run_id, "task": task, "model_a": model_a, "model_b": model_b, "setting": setting,
                        "config_a": ca, "config_b": cb, "n": pr["n"], "score_a": pr["score_a"],
                        "score_b": pr["score_b"], "diff": pr["diff"], "ci_low": pr["ci_low"],
                        "ci_high": pr["ci_high"], "p": pr["p"], "selected_on": on, "mde": pr["mde"],
                        **{k: pr[k] for k in FLIP_KEYS},
                        "equivalence_p": pr["equivalence_p"],
                    }
                )  # fmt: skip
    return pd.DataFrame(rows)


def _equivalence(outcome: str | None, p: float | None, n: int, alpha: float = ALPHA) -> str | None:
    """`different` when the corrected paired test decided, `equivalent` when TOST says the
    difference is within the margin, else `undecided`; nothing on too few items or no margin."""
    if p is None or n < MIN_PAIRED:
        return None
    if outcome in ("win", "loss"):
        return "different"
    return "equivalent" if p < alpha else "undecided"


def _correct(ceil: pd.DataFrame, h2h: pd.DataFrame, alpha: float = ALPHA) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Holm over every comparison of a (run, task) — each model's uplift and each pair of models
    under the baseline and at the ceiling — then the verdicts from the adjusted p-values."""
    ceil, h2h = ceil.copy(), h2h.copy()
    if not ceil.empty:
        ceil["uplift_p_holm"], ceil["comparisons"] = None, 0
    if not h2h.empty:
        h2h["p_holm"], h2h["comparisons"] = None, 0
    for run_id, task in ceil[["run_id", "task"]].drop_duplicates().itertuples(index=False) if len(ceil) else ():
        here = (ceil.run_id == run_id) & (ceil.task == task)
        # a ceiling that is the baseline itself is no comparison (its uplift is 0 by construction)
        cmask = here & (ceil.uplift_n >= MIN_PAIRED) & (ceil.selected_config_id != ceil.baseline_config_id)
        ceil.loc[here & (ceil.selected_config_id == ceil.baseline_config_id) & (ceil.uplift_n > 0), "uplift_p_holm"] = (
            1.0
        )
        tests = {("uplift", i): float(p) for i, p in ceil.loc[cmask, "uplift_p"].items()}
        if len(h2h):
            hhere = (h2h.run_id == run_id) & (h2h.task == task)
            # the same two configs compared twice (both models at their baseline) count once
            for _, r in h2h[hhere & (h2h.n >= MIN_PAIRED)].iterrows():
                tests.setdefault(("pair", r.model_a, r.model_b, r.config_a, r.config_b), float(r.p))
        adjusted = dict(zip(tests, holm(list(tests.values())), strict=True))
        for key, p in adjusted.items():
            if key[0] == "uplift":
                ceil.loc[key[1], "uplift_p_holm"] = p
        ceil.loc[here, "comparisons"] = len(tests)
        if len(h2h):
            for i, r in h2h[hhere & (h2h.n >= MIN_PAIRED)].iterrows():
                h2h.loc[i, "p_holm"] = adjusted[("pair", r.model_a, r.model_b, r.config_a, r.config_b)]
            h2h.loc[hhere, "comparisons"] = len(tests)
    if not ceil.empty:
        ceil["verdict"] = [
            corrected_verdict(d, p, n, alpha) for d, p, n in zip(ceil.uplift, ceil.uplift_p_holm, ceil.uplift_n, strict=True)
        ]
    if not h2h.empty:
        outcome = {"better": "win", "worse": "loss", "tie": "tie", None: None}
        h2h["outcome"] = [
            outcome[corrected_verdict(d, p, n, alpha)] for d, p, n in zip(h2h["diff"], h2h.p_holm, h2h.n, strict=True)
        ]
        if "equivalence_p" in h2h:
            h2h["equivalence"] = [_equivalence(o, p, n, alpha) for o, p, n in
                                  zip(h2h.outcome, h2h.equivalence_p, h2h.n, strict=True)]  # fmt: skip
    return ceil, h2h


def compare(
    records: pd.DataFrame, summary: pd.DataFrame | None = None, b: int = 10_000, seed: int = 0,
    equivalence_margin: float | None = None, alpha: float = ALPHA,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Ceilings, head-to-head and rank flips, with one family-wise correction per (run, task) at
    `alpha` (the verdicts, the detectable differences and TOST); with an equivalence margin (a
    share), each pair also says equivalent, different or undecided."""
    summary = summarize(records, b=b, seed=seed) if summary is None else summary
    ceil = _raw_ceilings(records, summary, b, seed, alpha)
    ceil, h2h = _correct(ceil, _raw_head_to_head(records, ceil, b, seed, equivalence_margin, alpha), alpha)
    return ceil, h2h, rank_flips(ceil, h2h)


def ceilings(
    records: pd.DataFrame, b: int = 10_000, seed: int = 0, summary: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Per (run, model, task): baseline, val-selected ceiling on test with CI, optimistic max,
    uplift on the common test items (`uplift_n`), its Holm-corrected verdict, ranks.

    The ceiling is the test score of the config chosen on val; the optimistic max is the best
    test score over all configs, which is biased upward (a maximum over noisy estimates).
    Ranks are per (run, task), 1 = best, ties share the better rank.
    """
    return compare(records, summary, b, seed)[0]


def head_to_head(records: pd.DataFrame, ceil: pd.DataFrame, b: int = 10_000, seed: int = 0) -> pd.DataFrame:
    """Each pair of models on a task, on the test items both answered: under the baseline, and
    each at its ceiling. `diff` is model_a minus model_b; `outcome` is model_a's win, tie or
    loss after the Holm correction (None on fewer than MIN_PAIRED common items)."""
    raw = ceil.drop(columns=[c for c in ("uplift_p_holm", "comparisons", "verdict") if c in ceil.columns])
    return _correct(raw, _raw_head_to_head(records, raw, b, seed))[1]


def rank_flips(ceil: pd.DataFrame, h2h: pd.DataFrame) -> pd.DataFrame:
    """Pairs of models whose order under the baseline reverses at their ceilings.

    A flip is `real` only when both corrected paired verdicts (baseline and ceiling) are
    decided; otherwise it is `within noise`. `model_a` is the one ahead at the ceiling.
    """
    rows = []
    if ceil.empty or h2h.empty:
        return pd.DataFrame(rows)
    pairs = {(r.run_id, r.task, r.model_a, r.model_b, r.setting): r for r in h2h.itertuples()}
    for (run_id, task, ma, mb, setting), r in pairs.items():
        if setting != "baseline" or (run_id, task, ma, mb, "ceiling") not in pairs:
            continue
        c = pairs[(run_id, task, ma, mb, "ceiling")]
        if r.diff * c.diff >= 0:  # same order, or a tie on one side: no flip
            continue
        sign = 1 if c.diff > 0 else -1  # orient so that model_a leads at the ceiling
        real = r.outcome in ("win", "loss") and c.outcome in ("win", "loss")
        rows.append(
            {
                "run_id": run_id, "task": task, "model_a": ma if sign > 0 else mb, "model_b": mb if sign > 0 else ma,
                "baseline_diff": sign * r.diff,
                "baseline_ci_low": sign * (r.ci_low if sign > 0 else r.ci_high),
                "baseline_ci_high": sign * (r.ci_high if sign > 0 else r.ci_low),
                "ceiling_diff": sign * c.diff,
                "ceiling_ci_low": sign * (c.ci_low if sign > 0 else c.ci_high),
                "ceiling_ci_high": sign * (c.ci_high if sign > 0 else c.ci_low),
                "baseline_n": r.n, "ceiling_n": c.n, "baseline_p_holm": r.p_holm, "ceiling_p_holm": c.p_holm,
                "comparisons": c.comparisons, "selected_on": c.selected_on,
                "status": "real" if real else "within noise",
            }
        )  # fmt: skip
    return pd.DataFrame(rows)


# How records written before strategies declared `reasons` (in each record's extras) are classed.
REASONING = {"cot", "self_consistency", "verify_choices", "knn_fewshot"}
NON_REASONING = {"baseline", "predict"}


def strategy_family(strategy: str, config_json: str | None = None, extras: str | None = None) -> str:
    """`reasoning` or `non-reasoning`, as the strategy declared it in the record's extras; for
    older records by the bundled names, and `other` for a user strategy that declared nothing."""
    declared = extras_of(extras).get("reasons")
    if declared is not None:
        return "reasoning" if declared else "non-reasoning"
    if strategy == "choice_shuffle":
        try:
            knobs = json.loads(config_json or "{}").get("knobs", {})
        except ValueError:
            knobs = {}
        return "reasoning" if knobs.get("reasoning", True) else "non-reasoning"
    if strategy in REASONING:
        return "reasoning"
    return "non-reasoning" if strategy in NON_REASONING else "other"


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
    first = with_extras(records).drop_duplicates("config_id").set_index("config_id")
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


def with_extras(records: pd.DataFrame) -> pd.DataFrame:
    """Records with an `extras` column (None where a frame or store has none)."""
    return records if "extras" in records.columns else records.assign(extras=None)


def extras_of(extras: str | None) -> dict:
    """A record's extras (promptopt.results.Extras as JSON), {} where none were stored."""
    if not isinstance(extras, str) or not extras:
        return {}
    try:
        found = json.loads(extras)
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


def shuffle_votes(raw_output: str | None) -> list | None:
    """The votes a choice_shuffle record of an older store kept in its raw output, or None."""
    if not raw_output or not raw_output.startswith("{"):
        return None
    try:
        votes = json.loads(raw_output).get("votes")
    except (ValueError, AttributeError):
        return None
    return votes if isinstance(votes, list) and votes else None


def order_votes(record) -> list | None:
    """The votes a record cast under shuffled option orders: from its extras (any strategy that
    declares shuffles_options), or from an older choice_shuffle record's raw output."""
    votes = extras_of(record.extras).get("order_votes")
    if votes:
        return votes
    return shuffle_votes(record.raw_output) if record.strategy == "choice_shuffle" else None


def consistency(records: pd.DataFrame) -> pd.DataFrame:
    """Where a strategy voted under shuffled option orders (choice_shuffle, or any that declares
    shuffles_options): the share of questions answered the same under every option order.

    A question counts as consistent when every vote names the same option (an unreadable
    vote breaks consistency). Records without stored votes (older runs) are left out.
    """
    part = answered(with_extras(records))
    # only records that can hold such votes are parsed (a report of 100k records stays fast)
    part = part[
        (part["strategy"] == "choice_shuffle") | part["extras"].map(lambda e: isinstance(e, str) and "order_votes" in e)
    ]
    keys = ["run_id", "model", "task", "config_id", "split"]
    rows = []
    for key, g in part.groupby(keys, sort=True):
        votes = [v for v in map(order_votes, g.itertuples()) if v is not None]
        if not votes:
            continue
        same = sum(1 for v in votes if v[0] is not None and all(x == v[0] for x in v))
        low, high = wilson(same, len(votes))
        rows.append(
            dict(zip(keys, key, strict=True))
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


# LiteLLM providers that serve a model on the user's own machine: $0 there is no missing price.
SELF_HOSTED = ("local", "ollama", "ollama_chat", "lm_studio", "llamafile", "hosted_vllm", "vllm", "xinference")


def price_unknown(models: set[str]) -> set[str]:
    """Of the unpriced models, the hosted ones (no endpoint of their own, not a self-hosted
    provider): their provider charges for them, but LiteLLM's price table does not know them,
    so $0 is untrue."""
    return {m for m in models if "@" not in m and m.split("/", 1)[0] not in SELF_HOSTED}


def price_unpriced(frame: pd.DataFrame, models: set[str], usd_per_mtok: float) -> pd.DataFrame:
    """Charge the given models `usd_per_mtok` dollars per million tokens (in and out alike)."""
    if not usd_per_mtok or frame.empty or not models:
        return frame
    mask = frame["model"].isin(models)
    tokens = frame["prompt_tokens"] + frame["completion_tokens"]
    out = frame.copy()
    out.loc[mask, "cost_usd"] = tokens[mask] * usd_per_mtok / 1e6
    return out


def price_by_time(records: pd.DataFrame, compiles: pd.DataFrame | None, models: set[str],
                  usd_per_hour: float) -> tuple[pd.DataFrame, pd.DataFrame | None]:  # fmt: skip
    """Charge the given models (local: no price of their own) `usd_per_hour` for their wall time,
    as a rented machine bills: per (run, model), the seconds its records' calls were running
    (each record spans its latency up to when it was written; overlaps count once), shared among
    the records by their latency; a compile is charged its own seconds."""
    if not usd_per_hour or records.empty or not models:
        return records, compiles
    out = records.copy()
    mine = out[out["model"].isin(models)]
    for _, g in mine.groupby(["run_id", "model"], sort=False):
        latency = g["latency_s"].astype(float).clip(lower=0)
        busy = busy_seconds((g["created_at"] - latency).to_numpy(), g["created_at"].to_numpy(dtype=float))
        share = latency / latency.sum() if latency.sum() > 0 else pd.Series(1.0 / len(g), index=g.index)
        out.loc[g.index, "cost_usd"] = share * busy * usd_per_hour / 3600
    if compiles is not None and len(compiles) and "seconds" in compiles:
        compiles = compiles.copy()
        mask = compiles["model"].isin(models)
        compiles.loc[mask, "cost_usd"] = compiles.loc[mask, "seconds"].astype(float) * usd_per_hour / 3600
    return out, compiles


def error_disparities(summary: pd.DataFrame, min_gap: float = 0.05) -> list[dict]:
    """Configs of one (run, model, task, split) whose error rates differ materially: the highest
    and lowest differ by more than `min_gap` and beyond what chance explains — a two-proportion
    z-test at 5% shared among the k (k − 1) / 2 pairs of configs (Bonferroni), so configs of one
    true error rate rarely raise it however many there are.

    Errors are left out of scores, so a config that fails more often is scored on fewer,
    possibly easier, items; the report says so where this happens.
    """
    from statistics import NormalDist

    out = []
    for key, g in summary.groupby(["run_id", "model", "task", "split"], sort=True):
        if len(g) < 2 or g["errors"].sum() == 0:
            continue
        hi, lo = g.loc[g["error_rate"].idxmax()], g.loc[g["error_rate"].idxmin()]
        gap = hi.error_rate - lo.error_rate
        pooled = (hi.errors + lo.errors) / (hi.n_items + lo.n_items)
        se = math.sqrt(pooled * (1 - pooled) * (1 / hi.n_items + 1 / lo.n_items)) if 0 < pooled < 1 else 0.0
        pairs = len(g) * (len(g) - 1) / 2
        z = NormalDist().inv_cdf(1 - ALPHA / (2 * pairs))
        if gap > min_gap and se > 0 and gap / se > z:
            out.append(
                dict(zip(["run_id", "model", "task", "split"], key, strict=True))
                | {
                    "config_high": hi.config_id,
                    "error_rate_high": float(hi.error_rate),
                    "config_low": lo.config_id,
                    "error_rate_low": float(lo.error_rate),
                }  # fmt: skip
            )
    return out


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


PARETO_COSTS = ("inference", "all")


def pareto(summary: pd.DataFrame, unpriced: set[str] | None = None, costs: pd.DataFrame | None = None,
           include: str = "inference") -> pd.DataFrame:
    """Every (model, config) per (run, task) as a point of score vs cost per example, frontier
    marked: the task model's inference cost, or with `include="all"` also the judge's grading per
    example and the one-off cost (compile and preparation) spread over the examples scored, from
    `costs` (promptopt.stats.costs); each point keeps those two parts apart.

    Points are test scores (val for a task with no test records). Cost is dollars per example
    when every model of the task has a price; tokens per example when none has (local models
    at the default price), and also when priced and `unpriced` models are mixed — a $0 model
    would otherwise sit on the frontier for free (`cost_axis` says "tokens (mixed)" then).
    A point is on the frontier when no other point scores at least as well for no more cost,
    and strictly better on one of them.
    """
    unpriced = unpriced or set()
    rows = []
    for _key, g in summary.groupby(["run_id", "task"], sort=True):
        split = "test" if (g["split"] == "test").any() else "val"
        g = g[(g["split"] == split) & (g["n"] > 0)]
        if g.empty:
            continue
        usd = g["cost_usd"] / g["n_items"]
        tokens = (g["prompt_tokens"] + g["completion_tokens"]) / g["n_items"]
        parts = _cost_parts(g, costs)
        if include == "all":
            usd = usd + parts["judge_usd_per_example"] + parts["one_off_usd_per_example"]
            tokens = tokens + parts["judge_tokens_per_example"] + parts["one_off_tokens_per_example"]
        free = set(g["model"]) & unpriced
        mixed = bool(free) and bool(set(g["model"]) - free)
        axis = "tokens (mixed)" if mixed else "usd" if (usd > 0).any() else "tokens"
        pts = g.assign(
            usd_per_example=usd, tokens_per_example=tokens, cost=usd if axis == "usd" else tokens, cost_axis=axis,
            judge_usd_per_example=parts["judge_usd_per_example"], one_off_usd_per_example=parts["one_off_usd_per_example"],
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
    cols = ["run_id", "task", "model", "strategy", "optimizer", "config_id", "split", "n", "score", "ci_low",
            "ci_high", "usd_per_example", "tokens_per_example", "cost_axis", "cost", "frontier",
            "judge_usd_per_example", "one_off_usd_per_example"]  # fmt: skip
    return pd.concat(rows)[cols].reset_index(drop=True) if rows else pd.DataFrame(columns=cols)


def _cost_parts(points: pd.DataFrame, costs: pd.DataFrame | None) -> pd.DataFrame:
    """Per point (run, model, task, config), the judge's dollars and tokens per example and the
    one-off dollars and tokens (compile and preparation) over the examples its cost counts; 0
    without a costs table."""
    names = ["judge_usd_per_example", "judge_tokens_per_example", "one_off_usd_per_example", "one_off_tokens_per_example"]
    out = pd.DataFrame(0.0, index=points.index, columns=names)
    if costs is None or costs.empty:
        return out
    by = {(r.run_id, r.model, r.task, r.config_id): r for r in costs.itertuples()}
    for idx, p in points.iterrows():
        c = by.get((p["run_id"], p["model"], p["task"], p["config_id"]))
        if c is not None and c.n:
            out.loc[idx] = [c.judge_usd_per_example, c.judge_tokens_per_example, c.one_off_usd / c.n,
                            (c.compile_tokens + c.prep_tokens) / c.n]  # fmt: skip
    return out


def clearly_worse(candidate: pd.Series, other: pd.Series, alpha: float) -> bool:
    """Successive halving's stopping rule: is `candidate` worse than `other` beyond doubt, on the
    items both answered (scores indexed by example id)?

    A one-sided paired test at level `alpha`: exact (sign test on the items where they differ)
    for 0/1 scores, a normal approximation on the paired differences otherwise. Pairing uses
    what configs share — the same questions, hard or easy for both — so a clearly weaker config
    is stopped early, while a config whose true score is at least the other's is stopped with
    probability at most `alpha` per comparison.
    """
    common = candidate.index.intersection(other.index)
    if len(common) < MIN_PAIRED:
        return False
    a, b = candidate.loc[common].to_numpy(float), other.loc[common].to_numpy(float)
    if np.isin(a, (0.0, 1.0)).all() and np.isin(b, (0.0, 1.0)).all():
        wins, losses = int(((a == 1) & (b == 0)).sum()), int(((a == 0) & (b == 1)).sum())
        return wins < losses and sign_test_p(wins, losses, one_sided=True) < alpha
    diff = a - b
    se = diff.std(ddof=1) / math.sqrt(len(diff))
    if se == 0:
        return bool(diff.mean() < 0)
    z = -diff.mean() / se
    return bool(0.5 * math.erfc(z / math.sqrt(2)) < alpha)


# ------------------------------------------------------------------ free text: metrics and judges


def _measured(records: pd.DataFrame) -> pd.DataFrame:
    """Answered records that carry metrics (free-text and MEDEC tasks), with their extras parsed."""
    part = answered(with_extras(records))
    part = part[part["extras"].map(lambda e: isinstance(e, str) and '"metrics"' in e).astype(bool)]
    return part.assign(parsed=part["extras"].map(extras_of))


def metric_scores(records: pd.DataFrame, b: int = 10_000, seed: int = 0) -> pd.DataFrame:
    """Per (run, model, task, config, split) and metric: the mean over the answered items the
    metric was measured on, with its 95% interval (Wilson for 0/1 scores, else the bootstrap over
    items; counting clusters where the items come in clusters, as `summarize` does); `primary`
    marks the metric that is the record's score."""
    part = _measured(records)
    labels = cluster_labels(records)
    rows = []
    for key, g in part.groupby(GROUP, sort=True):
        per_item = pd.DataFrame([e.get("metrics") or {} for e in g["parsed"]], index=g["example_id"].astype(str).to_numpy())
        primary = {e.get("primary") for e in g["parsed"]} - {None}
        mine = labels.get((g["run_id"].iloc[0], g["task"].iloc[0]))
        for metric in per_item.columns:
            measured_on = per_item[metric].dropna()
            values = measured_on.to_numpy(dtype=float)
            if not len(values):
                rows.append(dict(zip(GROUP, key, strict=True)) | {"metric": metric, "n": 0, "score": None,
                            "ci_low": None, "ci_high": None, "primary": metric in primary})  # fmt: skip
                continue
            groups = None if mine is None else mine.reindex(measured_on.index).to_numpy()
            low, high = score_ci(values, b=b, seed=seed, clusters=groups)
            rows.append(
                dict(zip(GROUP, key, strict=True))
                | {"metric": metric, "n": len(values), "score": float(values.mean()), "ci_low": low,
                   "ci_high": high, "primary": metric in primary}  # fmt: skip
            )
    cols = [*GROUP, "metric", "n", "score", "ci_low", "ci_high", "primary"]
    return pd.DataFrame(rows, columns=cols)


USAGE = ("lm_calls", "prompt_tokens", "completion_tokens", "cost_usd")


def judge_usage(records: pd.DataFrame) -> pd.DataFrame:
    """Per record: the judge calls, tokens and cost its verdicts cost (0 for cached verdicts and
    records without a judge), apart from the task model's columns."""
    frame = with_extras(records)
    out = pd.DataFrame(0.0, index=frame.index, columns=[f"judge_{k}" for k in USAGE])
    has = frame["extras"].map(lambda e: isinstance(e, str) and '"judges"' in e).astype(bool)
    for idx, extras in frame.loc[has, "extras"].items():
        for given in extras_of(extras).get("judges") or []:
            for k in USAGE:
                out.at[idx, f"judge_{k}"] += float(given.get(k) or 0)
    return out


def _or(value, default):
    """A judge check's field, or `default` where a check written before it existed has none (NaN in a frame)."""
    return default if value is None or (isinstance(value, float) and math.isnan(value)) else value


LABEL_FIELDS = ("labelled", "labels_agreement", "labels_kappa", "labels_macro_f1", "prevalence_bias",
                "prevalence_ci_low", "prevalence_ci_high", "annotators", "human_human", "judge_human",
                "humans_at_or_below", "below_humans")  # fmt: skip


def judge_vs_humans(labelled: list[dict], b: int = 10_000, seed: int = 0) -> dict:
    """A judge beside human verdicts on the same answers (each {id, judge, humans: {annotator:
    verdict}}): against the humans' majority (ties left out) its agreement, Cohen's kappa,
    macro-F1 and prevalence bias (its pass rate minus the humans', paired bootstrap interval); with
    two or more annotators the human–human agreement (mean over pairs of annotators, on the
    answers both labelled), the judge's mean agreement with each annotator, the share of annotators
    whose agreement with the other annotators is at or below the judge's, and "below humans"."""
    out: dict = dict.fromkeys(LABEL_FIELDS)
    decided = [(r["judge"], sum(r["humans"].values()) * 2 > len(r["humans"])) for r in labelled
               if sum(r["humans"].values()) * 2 != len(r["humans"])]  # fmt: skip
    annotators = sorted({a for r in labelled for a in r["humans"]})
    out["annotators"] = len(annotators) or None
    if decided:
        said, truth = [d[0] for d in decided], [d[1] for d in decided]
        diff, low, high = paired_bootstrap(np.array(said, float), np.array(truth, float), b=b, seed=seed)
        out |= {"labelled": len(decided), "labels_agreement": float(np.mean([a == t for a, t in decided])),
                "labels_kappa": kappa(said, truth), "labels_macro_f1": macro_f1(said, truth),
                "prevalence_bias": diff, "prevalence_ci_low": low, "prevalence_ci_high": high}  # fmt: skip
    if len(annotators) >= 2:

        def agreement(a: str, b_: str | None) -> float | None:
            both = [(r["humans"][a], r["judge"] if b_ is None else r["humans"][b_]) for r in labelled
                    if a in r["humans"] and (b_ is None or b_ in r["humans"])]  # fmt: skip
            return float(np.mean([x == y for x, y in both])) if both else None

        pairs = [agreement(a, c) for i, a in enumerate(annotators) for c in annotators[i + 1 :]]
        pairs = [x for x in pairs if x is not None]
        judge = [x for x in (agreement(a, None) for a in annotators) if x is not None]
        others = [np.mean([x for c in annotators if c != a and (x := agreement(a, c)) is not None] or [np.nan])
                  for a in annotators]  # fmt: skip
        if pairs and judge:
            out["human_human"], out["judge_human"] = float(np.mean(pairs)), float(np.mean(judge))
            known = [x for x in others if not np.isnan(x)]
            out["humans_at_or_below"] = float(np.mean([x <= out["judge_human"] for x in known])) if known else None
            out["below_humans"] = out["judge_human"] < out["human_human"]
    return out


def _agreement_intervals(check: dict, b: int = 2_000, seed: int = 0) -> tuple:
    """95% intervals of a judge's agreement and kappa on its planted pairs, counting each item as
    one unit (its pairs share the judge's errors): the agreement's is Wilson's at the effective
    number of pairs (pairs over the design effect, which is at least 1), the kappa's a percentile
    bootstrap over items. A check stored before its pairs were kept gets Wilson's interval over
    its pairs and none on kappa."""
    graded = check.get("pairs")
    if not isinstance(graded, list) or not graded:
        return (*wilson(check["agreement"] * check["n"], check["n"]), None, None)
    by_item: dict[str, list[tuple[bool, bool]]] = {}
    for item, said, want in graded:
        by_item.setdefault(str(item), []).append((bool(said), bool(want)))
    items = list(by_item.values())
    n = len(graded)
    share = float(np.mean([s == w for s, w in (pair for item in items for pair in item)]))
    means = np.array([np.mean([s == w for s, w in item]) for item in items])
    iid = share * (1 - share) / n
    clustered = float(means.var(ddof=1)) / len(items) if len(items) > 1 else iid
    effective = n / max(1.0, clustered / iid) if iid > 0 else n
    low, high = wilson(share * effective, effective)
    rng = np.random.default_rng(seed)
    kappas = []
    for _ in range(b):
        drawn = [pair for i in rng.integers(0, len(items), len(items)) for pair in items[i]]
        kappas.append(kappa([s for s, _ in drawn], [w for _, w in drawn]))
    return low, high, float(np.quantile(kappas, 0.025)), float(np.quantile(kappas, 0.975))


def judges(records: pd.DataFrame, checks: pd.DataFrame | None) -> pd.DataFrame:
    """Per (run, task, judge): its validation (agreement and kappa on planted verdicts, trusted or
    not) and what grading the answers cost, calls and dollars apart from the task model's."""
    part = _measured(records)
    graded: dict[tuple, dict] = {}
    for r in part.itertuples():
        for v in r.parsed.get("judges") or []:
            slot = graded.setdefault((r.run_id, r.task, v.get("judge")), {"graded": 0, "cached": 0} | dict.fromkeys(USAGE, 0))
            slot["graded"] += 1
            slot["cached"] += bool(v.get("cached"))
            for k in USAGE:
                slot[k] += v.get(k) or 0
    rows = []
    for c in (checks.to_dict(orient="records") if checks is not None and len(checks) else []):
        g = graded.get((c["run_id"], c["task"], c["judge"]), {"graded": 0, "cached": 0} | dict.fromkeys(USAGE, 0))
        low, high, k_low, k_high = _agreement_intervals(c)
        rows.append({
            "run_id": c["run_id"], "task": c["task"], "judge": c["judge"], "checks": c["n"],
            "agreement": c["agreement"], "agreement_ci_low": low, "agreement_ci_high": high, "kappa": c["kappa"],
            "kappa_ci_low": k_low, "kappa_ci_high": k_high,
            "min_kappa": c["min_kappa"], "trusted": bool(c["trusted"]), "unreadable": c["unreadable"],
            "passed_own": c["passed_own"], "own": c["own"], "failed_other": c["failed_other"], "other": c["other"],
            "near_misses": int(_or(c.get("near"), 0)), "failed_near": int(_or(c.get("failed_near"), 0)),
            "near_kappa": None if _or(c.get("near_kappa"), None) is None else float(c["near_kappa"]),
            "near_kinds": c["near_kinds"] if isinstance(c.get("near_kinds"), dict) else {},
            "validation_calls": int(c.get("lm_calls", 0)), "validation_usd": float(c.get("cost_usd", 0.0)),
            "validation_tokens": int(c.get("prompt_tokens", 0) + c.get("completion_tokens", 0)),
            "graded": g["graded"], "cached": g["cached"], "grading_calls": int(g["lm_calls"]),
            "grading_tokens": int(g["prompt_tokens"] + g["completion_tokens"]), "grading_usd": float(g["cost_usd"]),
            **judge_vs_humans(c["labels"] if isinstance(c.get("labels"), list) else []),
        })  # fmt: skip
    return pd.DataFrame(rows)


def judge_agreement(records: pd.DataFrame) -> pd.DataFrame:
    """Per (run, task) and pair of judges that graded the same answers: how often their pass/fail
    agrees and Cohen's kappa between them."""
    part = _measured(records)
    pairs: dict[tuple, list[tuple[bool, bool]]] = {}
    for r in part.itertuples():
        verdicts = [v for v in r.parsed.get("judges") or [] if v.get("judge")]
        for i, a in enumerate(verdicts):
            for b_ in [v for v in verdicts[i + 1 :] if v.get("criterion") == a.get("criterion")]:
                said = (a.get("score") is not None and a["score"] >= 0.5, b_.get("score") is not None and b_["score"] >= 0.5)
                pairs.setdefault((r.run_id, r.task, a["judge"], b_["judge"]), []).append(said)
    rows = []
    for (run_id, task, ja, jb), said in sorted(pairs.items()):
        a, b_ = [s[0] for s in said], [s[1] for s in said]
        rows.append({"run_id": run_id, "task": task, "judge_a": ja, "judge_b": jb, "n": len(said),
                     "agreement": sum(x == y for x, y in said) / len(said), "kappa": kappa(a, b_)})  # fmt: skip
    return pd.DataFrame(rows)


def krippendorff_alpha(units: list[list[bool]]) -> float | None:
    """Krippendorff's alpha for nominal pass/fail verdicts: each unit (answer) holds the verdicts
    of the judges that graded it; units with fewer than two verdicts are left out. 1 - D_o / D_e
    from the coincidence counts; None without two verdicts on any unit."""
    rated = [u for u in units if len(u) >= 2]
    if not rated:
        return None
    observed = sum(2 * sum(u) * (len(u) - sum(u)) / (len(u) - 1) for u in rated)  # o_01 + o_10
    passes, total = sum(sum(u) for u in rated), sum(len(u) for u in rated)
    expected = 2 * passes * (total - passes) / (total - 1)
    return 1.0 if expected == 0 else 1 - observed / expected


def effective_jury(errors: list[np.ndarray]) -> tuple[float | None, float | None]:
    """(mean pairwise correlation of the judges' errors on the same planted pairs, the jury's
    effective size k / (1 + (k - 1) r)): k judges whose errors are perfectly correlated act as
    one, independent ones as k. None when fewer than two judges erred on some pair."""
    corr = []
    for i, a in enumerate(errors):
        for b_ in errors[i + 1 :]:
            n = min(len(a), len(b_))
            if n > 1 and a[:n].std() > 0 and b_[:n].std() > 0:
                corr.append(float(np.corrcoef(a[:n], b_[:n])[0, 1]))
    if not corr:
        return None, None
    r, k = float(np.mean(corr)), len(errors)
    return r, k / (1 + (k - 1) * max(0.0, r))  # errors that avoid each other count as independent, no more


def juries(records: pd.DataFrame, checks: pd.DataFrame | None) -> pd.DataFrame:
    """Per (run, task) graded by two or more judges: how they were combined, Krippendorff's alpha
    over the answers they graded, the mean correlation of their errors on the planted validation
    pairs and the effective jury size it implies (Inspect's users found 6 judges acting as ~1.9)."""
    part = _measured(records)
    units: dict[tuple, list[list[bool]]] = {}
    for r in part.itertuples():
        by_criterion: dict = {}  # one unit per answer, or per criterion of its rubric
        for v in r.parsed.get("judges") or []:
            if v.get("judge"):
                by_criterion.setdefault(v.get("criterion"), []).append(v.get("score") is not None and v["score"] >= 0.5)
        for said in by_criterion.values():
            if len(said) >= 2:
                units.setdefault((r.run_id, r.task), []).append(said)
    rows = []
    for (run_id, task), graded in sorted(units.items()):
        mine = [] if checks is None or checks.empty else [
            c for c in checks.to_dict(orient="records") if c["run_id"] == run_id and c["task"] == task and c.get("trusted")]  # fmt: skip
        errors = [np.array([s != w for _, s, w in c["pairs"]], float) for c in mine if isinstance(c.get("pairs"), list)]
        r, size = effective_jury(errors)
        aggregate = next((c.get("aggregate") for c in mine if isinstance(c.get("aggregate"), str)), "first")
        rows.append({"run_id": run_id, "task": task, "judges": max(len(u) for u in graded), "aggregate": aggregate,
                     "answers": len(graded), "krippendorff_alpha": krippendorff_alpha(graded),
                     "error_correlation": r, "effective_size": size})  # fmt: skip
    return pd.DataFrame(rows)


OPEN = ":open"


def open_gaps(records: pd.DataFrame, b: int = 10_000, seed: int = 0) -> pd.DataFrame:
    """Each multiple-choice task beside its open-ended twin (TASK and TASK:open), for the same
    run, model and config on the same test items: the multiple-choice accuracy, each metric of
    the open-ended answers, and their paired difference (open − multiple choice) with its 95%
    interval — the gap CUPCase reports."""
    tasks = set(records["task"])
    twins = [t for t in tasks if t.endswith(OPEN) and t.removesuffix(OPEN) in tasks]
    if not twins:
        return pd.DataFrame()
    part = answered(with_extras(records[records["split"] == "test"]))
    rows = []
    for twin in sorted(twins):
        base = twin.removesuffix(OPEN)
        mc = part[part["task"] == base]
        op = part[part["task"] == twin]
        for (run_id, model, config_id), g in op.groupby(["run_id", "model", "config_id"], sort=True):
            m = mc[(mc["run_id"] == run_id) & (mc["model"] == model) & (mc["config_id"] == config_id)]
            if m.empty:
                continue
            mc_scores = m.set_index("example_id")["score"].astype(float)
            per_item = pd.DataFrame([extras_of(e).get("metrics") or {} for e in g["extras"]],
                                    index=g["example_id"].to_numpy())  # fmt: skip
            for metric in per_item.columns:
                scores = per_item[metric].dropna().astype(float)
                found = paired(scores, mc_scores, b=b, seed=seed, min_n=MIN_PAIRED)
                rows.append({
                    "run_id": run_id, "model": model, "task": base, "open_task": twin, "config_id": config_id,
                    "strategy": g["strategy"].iloc[0], "metric": metric, "n": found["n"],
                    "multiple_choice_score": found["score_b"], "open_score": found["score_a"], "diff": found["diff"],
                    "ci_low": found["ci_low"] if found["n"] else None, "ci_high": found["ci_high"] if found["n"] else None,
                    "p": found["p"],
                })  # fmt: skip
    return pd.DataFrame(rows)


# ------------------------------------------------------------------ robustness probes


def _probe_parts(task: str) -> tuple[str, str | None]:
    """(source task, probe suffix) of a task name: medqa~negation -> (medqa, negation)."""
    base, sep, suffix = task.rpartition("~")
    return (base, suffix) if sep else (task, None)


def _per_source(frame: pd.DataFrame) -> pd.DataFrame:
    """Answered probe records with their source item's id."""
    from promptopt.probes import source_id

    return frame.assign(source=frame["example_id"].map(source_id))


def _language_groups(records: pd.DataFrame) -> dict[str, tuple[str, str]]:
    """task -> (group, language code) for records whose extras name a language (tasks that declare one)."""
    out = {}
    part = with_extras(records)
    for task, g in part.groupby("task", sort=True):
        sample = next((e for e in g["extras"] if isinstance(e, str) and '"language"' in e), None)
        lang = extras_of(sample).get("language") if sample else None
        if lang:
            out[task] = (lang["group"], lang["code"])
    return out


def robustness(records: pd.DataFrame, b: int = 10_000, seed: int = 0) -> pd.DataFrame:
    """Per (run, model, source task, config, split) and probe: the probe's score on the items whose
    source was answered, the source items' own score there, the paired difference (probe − source,
    bootstrap over source items) and, per probe, what it adds: negation's two halves, partial's
    share of the score retained, shuffle's consistency, the language pair's answer agreement."""
    part = answered(with_extras(records))
    if part.empty:
        return pd.DataFrame()
    part = _per_source(part)
    keys = ["run_id", "model", "config_id", "split"]
    rows = []
    tasks = set(part["task"])
    for task in sorted(tasks):
        base, suffix = _probe_parts(task)
        if suffix is None or base not in tasks:
            continue
        probe = part[part["task"] == task]
        source = part[part["task"] == base]
        for key, g in probe.groupby(keys, sort=True):
            s = source[(source[keys] == pd.Series(key, index=keys)).all(axis=1)]
            if s.empty:
                continue
            src = s.set_index("example_id")["score"].astype(float)
            row = _probe_row(suffix, g, s, src, b, seed)
            if row:
                rows.append(dict(zip(keys, key, strict=True)) | {"task": base, "strategy": g["strategy"].iloc[0]} | row)
    rows += _language_rows(part, b, seed)
    cols = ["run_id", "model", "task", "strategy", "config_id", "split", "probe", "n", "source_score", "probe_score",
            "diff", "ci_low", "ci_high", "yes_score", "no_score", "retained", "consistency", "consistency_ci_low",
            "consistency_ci_high", "orders"]  # fmt: skip
    return pd.DataFrame(rows, columns=cols)


def _probe_row(suffix: str, g: pd.DataFrame, s: pd.DataFrame, src: pd.Series, b: int, seed: int) -> dict | None:
    by_source = g.groupby("source")
    if suffix in PAIRED:  # negation, organ: a pair counts when both halves are right
        halves = g.assign(half=g["example_id"].str.rsplit("~", n=1).str[-1])
        pair = halves.groupby("source").filter(lambda x: len(x) == 2).groupby("source")["score"].min()
        common = pair.index.intersection(src.index)
        yes = halves[(halves["half"] == "yes") & halves["source"].isin(common)]["score"].mean()
        no = halves[(halves["half"] == "no") & halves["source"].isin(common)]["score"].mean()
        found = paired(pair.loc[common].astype(float), src, b=b, seed=seed, min_n=MIN_PAIRED)
        extra = {"yes_score": float(yes) if len(common) else None, "no_score": float(no) if len(common) else None}
    elif suffix.startswith("shuffle"):
        every = by_source["score"].min()  # right under every shuffled order
        common = every.index.intersection(src.index)
        found = paired(by_source["score"].mean().loc[common].astype(float), src, b=b, seed=seed, min_n=MIN_PAIRED)
        texts = by_source["extras"].apply(lambda es: [extras_of(e).get("answer_text") for e in es])
        orig = s.set_index("example_id")["extras"].map(lambda e: extras_of(e).get("answer_text"))
        same = [t[0] is not None and all(x == t[0] for x in t) for t in ([orig.get(i), *texts.loc[i]] for i in common)]
        low, high = wilson(sum(same), len(same))
        orders = 1 + int(by_source.size().max()) if len(g) else None
        extra = {"consistency": sum(same) / len(same) if same else None, "consistency_ci_low": low,
                 "consistency_ci_high": high, "orders": orders}  # fmt: skip
    else:  # partialK, nota: one probe item per source item
        one = by_source["score"].mean()
        common = one.index.intersection(src.index)
        found = paired(one.loc[common].astype(float), src, b=b, seed=seed, min_n=MIN_PAIRED)
        extra = {}
        if (suffix.startswith("partial") or suffix == "noimage") and found["n"]:
            extra["retained"] = found["score_a"] / found["score_b"] if found["score_b"] else None
    if not found["n"]:
        return None
    return {"probe": suffix, "n": found["n"], "source_score": found["score_b"], "probe_score": found["score_a"],
            "diff": found["diff"], "ci_low": found["ci_low"], "ci_high": found["ci_high"], **extra}  # fmt: skip


def _language_rows(part: pd.DataFrame, b: int, seed: int) -> list[dict]:
    """Each language task against the first-named language of its group (by code order: en first),
    same model, config and items: the other language's score, the gap and how often the same letter was given."""
    groups = _language_groups(part)
    rows = []
    by_group: dict[str, list[tuple[str, str]]] = {}
    for task, (group, code) in groups.items():
        by_group.setdefault(group, []).append((code, task))
    for members in by_group.values():
        members.sort(key=lambda m: (m[0] != "en", m[0]))
        (_, ref_task), others = members[0], members[1:]
        ref = part[part["task"] == ref_task]
        for code, task in others:
            other = part[part["task"] == task]
            for (run_id, model, config_id, split), g in other.groupby(["run_id", "model", "config_id", "split"], sort=True):
                r = ref[(ref.run_id == run_id) & (ref.model == model) & (ref.config_id == config_id) & (ref.split == split)]
                if r.empty:
                    continue
                a, c = g.set_index("example_id"), r.set_index("example_id")
                found = paired(a["score"].astype(float), c["score"].astype(float), b=b, seed=seed, min_n=MIN_PAIRED)
                common = a.index.intersection(c.index)
                same = [a.at[i, "prediction"] is not None and a.at[i, "prediction"] == c.at[i, "prediction"] for i in common]
                low, high = wilson(sum(same), len(same))
                rows.append({"run_id": run_id, "model": model, "task": ref_task, "strategy": g["strategy"].iloc[0],
                             "config_id": config_id, "split": split, "probe": f"language:{code}", "n": found["n"],
                             "source_score": found["score_b"], "probe_score": found["score_a"], "diff": found["diff"],
                             "ci_low": found["ci_low"], "ci_high": found["ci_high"],
                             "consistency": sum(same) / len(same) if same else None, "consistency_ci_low": low,
                             "consistency_ci_high": high, "orders": 2})  # fmt: skip
    return rows


def _items_per_source(task: str) -> int:
    """How many probe items each source item has in this (probe or language) task."""
    from promptopt.probes import probe_of_suffix

    suffix = _probe_parts(task)[1]
    if suffix is None:
        return 1
    probe = probe_of_suffix(suffix)
    return 2 if probe.name in ("negation", "organ_pair") else probe.m if probe.name == "shuffle" else 1


def _image_holders(probe: pd.DataFrame, items: pd.DataFrame) -> pd.Series:
    """An organ pair's records under each item that shows the same image (by the digests in the
    extras): a pair is asked once per image, held by one item, and speaks for every item showing it."""

    def image(extras) -> str:
        return " ".join(extras_of(extras).get("images") or [])

    holder = dict(zip(probe["extras"].map(image), probe["source"], strict=True))
    shown = items.assign(image=items["extras"].map(image))
    by_holder: dict[str, list[str]] = {}
    for item, img in zip(shown["example_id"], shown["image"], strict=True):
        if img in holder:
            by_holder.setdefault(holder[img], []).append(item)
    # each pair record repeated under every item of its image (the holder among them)
    return probe["source"].map(lambda s: by_holder.get(s, [s]))


def robust_items(records: pd.DataFrame) -> dict[tuple, pd.Series]:
    """(run, model, source task, config_id, split) -> per source item, 1.0 when the model is right on
    the item and on each of its probes that ran (partial and noimage aside), else 0.0; items with a probe
    record missing or failed are left out."""
    part = _per_source(with_extras(records))
    groups = _language_groups(part)
    tasks = set(part["task"])
    out: dict[tuple, pd.Series] = {}
    keys = ["run_id", "model", "config_id", "split"]
    for base in sorted(t for t in tasks if "~" not in t):
        linked = [t for t in tasks if t != base and _probe_parts(t)[0] == base
                  and not str(_probe_parts(t)[1]).startswith(("partial", "noimage"))]  # fmt: skip
        lang = groups.get(base)
        siblings = [t for t, gc in groups.items() if lang and gc[0] == lang[0] and t != base]
        if not linked and not siblings:
            continue
        src = part[part["task"] == base]
        for key, g in src.groupby(keys, sort=True):
            ok = g.set_index("example_id")
            right = ok["score"].where(ok["error"].isna())
            for t in [*linked, *siblings]:
                p = part[(part["task"] == t) & (part[keys] == pd.Series(key, index=keys)).all(axis=1)]
                if p.empty:
                    right = right.where(pd.Series(False, index=right.index))
                    continue
                if _probe_parts(t)[1] == "organ":  # one pair per image: every item showing it is checked by it
                    p = p.assign(source=_image_holders(p, g)).explode("source")
                failed = set(p.loc[p["error"].notna(), "source"])
                # every probe item of a source must be there: one missing (a stopped run) is not a pass
                short = p.groupby("source").size() < _items_per_source(t)
                failed |= set(short[short].index)
                worst = p.groupby("source")["score"].min()
                worst = worst.reindex(right.index)
                worst[worst.index.isin(failed)] = float("nan")
                right = pd.concat([right, worst], axis=1).min(axis=1, skipna=False)
            right = right.dropna()
            out[(key[0], key[1], base, key[2], key[3])] = (right >= 1.0).astype(float)
    return out


def robust_ceilings(records: pd.DataFrame, summary: pd.DataFrame) -> pd.DataFrame:
    """Per (run, model, task) with probes: the chosen config's robust test score beside its plain
    ceiling, and the config that the robust score chooses on val with its robust test score."""
    robust = robust_items(records)
    if not robust:
        return pd.DataFrame()
    chosen = select_configs(summary)
    rows = []
    for c in chosen.itertuples():
        mine = {k: v for k, v in robust.items() if k[:3] == (c.run_id, c.model, c.task)}
        if not mine:
            continue
        test = mine.get((c.run_id, c.model, c.task, c.config_id, "test"))
        plain = summary[(summary.run_id == c.run_id) & (summary.model == c.model) & (summary.task == c.task)
                        & (summary.config_id == c.config_id) & (summary.split == "test")]  # fmt: skip
        val = {k[3]: v for k, v in mine.items() if k[4] == "val" and len(v)}
        scored = summary[(summary.run_id == c.run_id) & (summary.model == c.model) & (summary.task == c.task)
                         & (summary.split == "val")]  # fmt: skip
        full = set(scored.loc[scored["n_items"] == scored["n_items"].max(), "config_id"]) if len(scored) else set()
        val = {cid: v for cid, v in val.items() if cid in full}  # as select_configs: configs scored on all of val
        pick = max(sorted(val), key=lambda cid: val[cid].mean()) if val else None  # ties: the first config id
        pick_test = mine.get((c.run_id, c.model, c.task, pick, "test")) if pick else None
        low, high = wilson(float(test.sum()), len(test)) if test is not None and len(test) else (None, None)
        plow, phigh = wilson(float(pick_test.sum()), len(pick_test)) if pick_test is not None and len(pick_test) else (None, None)
        rows.append({
            "run_id": c.run_id, "model": c.model, "task": c.task, "config_id": c.config_id,
            "ceiling_score": float(plain["score"].iloc[0]) if len(plain) and plain["score"].iloc[0] is not None else None,
            "robust_score": float(test.mean()) if test is not None and len(test) else None,
            "robust_ci_low": low, "robust_ci_high": high, "robust_n": len(test) if test is not None else 0,
            "robust_config_id": pick,
            "robust_choice_score": float(pick_test.mean()) if pick_test is not None and len(pick_test) else None,
            "robust_choice_ci_low": plow, "robust_choice_ci_high": phigh,
        })  # fmt: skip
    return pd.DataFrame(rows)


# ------------------------------------------------------------------ scoring by probability, retrieval


def _carrying(records: pd.DataFrame, key: str) -> pd.DataFrame:
    """Answered or not, the records (without errors) whose extras carry `key`, extras parsed."""
    frame = with_extras(records)
    frame = frame[frame["error"].isna()] if "error" in frame else frame
    part = frame[frame["extras"].map(lambda e: isinstance(e, str) and f'"{key}"' in e).astype(bool)]
    return part.assign(parsed=part["extras"].map(extras_of))


def brier_ece(probs: list[dict[str, float]], gold: list[str], bins: int = 10) -> tuple[float, float, float, float]:
    """Multi-class Brier score (sum over letters of (p - y)^2, mean over items), expected
    calibration error over `bins` equal-width confidence bins (weighted |accuracy - confidence|),
    mean confidence and accuracy of the most probable letter."""
    brier, conf, right = [], [], []
    for p, g in zip(probs, gold, strict=True):
        brier.append(sum((q - (letter == g)) ** 2 for letter, q in p.items()) + (0.0 if g in p else 1.0))
        top = max(p, key=lambda k: (p[k], -list(p).index(k)))
        conf.append(p[top])
        right.append(float(top == g))
    conf_a, right_a = np.array(conf), np.array(right)
    which = np.minimum((conf_a * bins).astype(int), bins - 1)
    ece = sum(abs(right_a[which == i].mean() - conf_a[which == i].mean()) * (which == i).sum()
              for i in range(bins) if (which == i).any()) / len(conf_a)  # fmt: skip
    return float(np.mean(brier)), float(ece), float(conf_a.mean()), float(right_a.mean())


def calibration(records: pd.DataFrame) -> pd.DataFrame:
    """Per config and split, for strategies that store a distribution over option letters
    (letter_logprob): Brier score, ECE (10 bins), mean confidence and accuracy, over the items
    with a distribution (`unread`: items whose top tokens held no letter)."""
    part = _carrying(records, "letter_mass")
    rows = []
    for key, g in part.groupby(GROUP, sort=True):
        has = [(e.get("letter_probs"), gold) for e, gold in zip(g["parsed"], g["gold"], strict=True)]
        probs = [(p, gold) for p, gold in has if p]
        row = dict(zip(GROUP, key, strict=True)) | {"n": len(probs), "unread": len(has) - len(probs)}
        if probs:
            brier, ece, confidence, accuracy = brier_ece([p for p, _ in probs], [gold for _, gold in probs])
            mass = float(np.mean([e.get("letter_mass") or 0.0 for e in g["parsed"]]))
            row |= {"brier": brier, "ece": ece, "mean_confidence": confidence, "accuracy": accuracy,
                    "letter_mass": mass}  # fmt: skip
        rows.append(row)
    cols = [*GROUP, "n", "unread", "accuracy", "mean_confidence", "brier", "ece", "letter_mass"]
    return pd.DataFrame(rows, columns=cols)


def cloze_scores(records: pd.DataFrame) -> pd.DataFrame:
    """Per config and split, for `cloze`: accuracy by summed log-probability (acc) and by
    log-probability per character of the option (acc_norm), as lm-evaluation-harness reports them, with Wilson CIs."""
    part = _carrying(records, "cloze")
    rows = []
    for key, g in part.groupby(GROUP, sort=True):
        n = len(g)
        acc = sum(e["cloze"].get("acc") == gold for e, gold in zip(g["parsed"], g["gold"], strict=True))
        norm = sum(e["cloze"].get("acc_norm") == gold for e, gold in zip(g["parsed"], g["gold"], strict=True))
        (al, ah), (nl, nh) = wilson(acc, n), wilson(norm, n)
        rows.append(dict(zip(GROUP, key, strict=True)) | {
            "n": n, "acc": acc / n, "acc_ci_low": al, "acc_ci_high": ah,
            "acc_norm": norm / n, "acc_norm_ci_low": nl, "acc_norm_ci_high": nh})  # fmt: skip
    cols = [*GROUP, "n", "acc", "acc_ci_low", "acc_ci_high", "acc_norm", "acc_norm_ci_low", "acc_norm_ci_high"]
    return pd.DataFrame(rows, columns=cols)


def retrieval(records: pd.DataFrame) -> pd.DataFrame:
    """Per config and split, for retrieval strategies: passages read per item and, where the
    task names each item's gold passage, recall@k (share of items whose gold passage was
    retrieved) with its Wilson interval."""
    part = _carrying(records, "retrieved")
    rows = []
    for key, g in part.groupby(GROUP, sort=True):
        k = max((len(e.get("retrieved") or []) for e in g["parsed"]), default=0)
        recalls = [e["recall"] for e in g["parsed"] if e.get("recall") is not None]
        row = dict(zip(GROUP, key, strict=True)) | {"n": len(g), "k": k, "recall_n": len(recalls)}
        if recalls:
            hits = float(np.sum(recalls))
            low, high = wilson(hits, len(recalls))
            row |= {"recall": hits / len(recalls), "recall_ci_low": low, "recall_ci_high": high}
        rows.append(row)
    return pd.DataFrame(rows, columns=[*GROUP, "n", "k", "recall_n", "recall", "recall_ci_low", "recall_ci_high"])
