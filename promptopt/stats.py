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

import itertools
import math

import numpy as np
import pandas as pd

from promptopt.detectable import mde
from promptopt.estimators import (  # noqa: F401  (the pure estimators, also read as stats.*)
    MIN_PAIRED,
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
from promptopt.records import typed

ALPHA = 0.05
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

    frame = typed(records)
    marked = frame["extras"].map(lambda e: e.cluster is not None).astype(bool)
    out = {}
    for (run_id, task), g in frame.groupby(["run_id", "task"], sort=True):
        if SEP not in task and not marked.loc[g.index].any():  # every item stands alone: nothing to read
            continue
        ids = g["example_id"].astype(str)
        kept = g["extras"].map(lambda e: e.cluster)
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


# ------------------------------------------------------------------ robustness probes


# ------------------------------------------------------------------ scoring by probability, retrieval


def measured(records: pd.DataFrame) -> pd.DataFrame:
    """Answered records that carry metrics (free-text and MEDEC tasks), extras typed."""
    part = answered(typed(records))
    return part[part["extras"].map(lambda e: e.metrics is not None).astype(bool)]


USAGE = ("lm_calls", "prompt_tokens", "completion_tokens", "cost_usd")  # what each call costs, in every table


def carrying(records: pd.DataFrame, key: str) -> pd.DataFrame:
    """Answered or not, the records (without errors) whose extras carry `key`, extras typed."""
    frame = typed(records)
    frame = frame[frame["error"].isna()] if "error" in frame else frame
    return frame[frame["extras"].map(lambda e: getattr(e, key) is not None).astype(bool)]


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


