"""Do promptopt's statistics keep their promises? A seeded simulation where the truth is known.

The world. Items vary in difficulty: item i has a logit offset d_i ~ N(0, σ²) (`--difficulty`,
σ = 1.5), shared by every model and config, so configs agree on easy and hard items as real
ones do. A config of true accuracy a answers item i right with probability sigmoid(θ + d_i),
θ set so that the mean over the item population is exactly a. **A config's truth is that
population accuracy** (its expected score on a new item of the task), everywhere below:
ceilings, verdicts and the search. Val and test are independent samples of items; each
(config, item) answer is drawn on its own given the item. Configs cost 1..5 LM calls per item
(a free model: cost is LM calls), so "ties to the cheaper" and the search's rule "only a config
at least as cheap may stop another" both matter; which config gets which accuracy is drawn per
seed, so the best one is sometimes cheap and sometimes dear.

The numbers. Records carry `promptopt.store.RECORD_COLUMNS`, and on the first `--exact` seeds
of every scenario the full pipeline runs on them — `stats.summarize`, `stats.compare`
(ceilings, head-to-head, flips, Holm verdicts), `promptopt.sections.sensitivity` — and every figure it gives
is checked against the fast path, which runs on every seed: the same rules (select_configs'
choice, compare's pairs and Holm family) applied to the score arrays, calling the same `stats`
functions on them (`wilson`, `paired_bootstrap`, `paired_p`, `holm`, `corrected_verdict`,
`verdict`, `expected_range`). The pipeline costs about 0.1 s a seed in pandas; the fast path
makes 1,000 seeds of 19 scenarios fit in minutes, and the check (printed at the end) says
whether it gives the pipeline's numbers. The search is `search._study_loop`'s successive
halving replayed on the simulated val items with `search._rungs` and today's `_promising` (a
paired `stats.clearly_worse` test against every finished config at least as cheap, alpha
shared among them), beside an alternative (the best such config only) and the rule it replaced; `clearly_worse`'s verdict on 0/1 scores is cached per (items, wins,
losses, level), and on the checked seeds it is called on every pair instead and must agree.

    PYTHONPATH=. .venv/bin/python benchmarks/validity.py [--seeds 1000 | --quick] [--alpha 0.02]
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import math
import sys
import textwrap
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np
import pandas as pd

from promptopt import stats
from promptopt.records import RECORD_COLUMNS
from promptopt.searcher import SearchSettings, _rungs
from promptopt.sections import sensitivity as sensitivity_section

CHUNK = 100  # seeds per job handed to a worker process
RUNG0, GROWTH = 20, 3  # the search's defaults (SearchSettings)
TOL = 1e-12
_X, _W = np.polynomial.hermite_e.hermegauss(101)
_W = _W / _W.sum()


@dataclass(frozen=True)
class Settings:
    sigma: float
    b: int
    alpha: float
    sweep: tuple[float, ...]  # further alphas for the search, unequal scenarios at n = 300
    exact: int  # seeds per scenario that also run the full stats pipeline


# ---------------------------------------------------------------------------------------------
# The simulated world


def expit(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def logit_offsets(accuracy: np.ndarray, sigma: float) -> np.ndarray:
    """θ per config such that E[sigmoid(θ + σZ)] = accuracy (Gauss-Hermite, then bisection)."""
    accuracy = np.asarray(accuracy, dtype=float)
    lo, hi = np.full(accuracy.shape, -40.0), np.full(accuracy.shape, 40.0)
    for _ in range(90):
        mid = (lo + hi) / 2
        below = expit(mid[..., None] + sigma * _X) @ _W < accuracy
        lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
    return (lo + hi) / 2


def draw(rng: np.random.Generator, theta: np.ndarray, n: int, sigma: float) -> np.ndarray:
    """0/1 scores of every config (any leading shape) on n fresh items of shared difficulty."""
    difficulty = rng.normal(0.0, sigma, n)
    return (rng.random((*theta.shape, n)) < expit(theta[..., None] + difficulty)).astype(float)


def disagreement(accuracy: float, sigma: float) -> float:
    """Share of items on which two configs of this accuracy answer differently."""
    p = expit(logit_offsets(np.array([accuracy]), sigma)[0] + sigma * _X)
    return float(2 * (p * (1 - p)) @ _W)


class Records:
    """Records of one shape (models × configs × splits × items); per seed only the scores change.
    Config k is `c{k:02d}`; config 0 is the `baseline` strategy, the others `probe`."""

    def __init__(self, models: int, calls: np.ndarray, n: dict[str, int]):
        configs = calls.shape[-1]
        self.splits = list(n)
        per_cfg = sum(n.values())
        split = np.concatenate([np.repeat(s, k) for s, k in n.items()])
        example = np.concatenate([[f"{s}-{i}" for i in range(k)] for s, k in n.items()])
        cfg = np.repeat(np.arange(configs), per_cfg)
        strategy = np.where(cfg == 0, "baseline", "probe")
        config = [json.dumps({"knobs": {"level": int(c)}, "optimizer": "none", "strategy": str(s)}) for c, s in
                  zip(cfg, strategy, strict=True)]  # fmt: skip
        one = pd.DataFrame(
            {
                "config_id": [f"c{c:02d}" for c in cfg], "strategy": strategy, "config": config,
                "split": np.tile(split, configs), "example_id": np.tile(example, configs),
            }
        )  # fmt: skip
        frame = pd.concat([one.assign(model=f"m{m}") for m in range(models)], ignore_index=True)
        row_calls = np.repeat(np.broadcast_to(calls, (models, configs)).reshape(-1), per_cfg)
        self.template = frame.assign(
            run_id="sim", task="sim", optimizer="none", prediction="A", gold="A", score=0.0, parse_ok=True,
            error=None, lm_calls=row_calls, prompt_tokens=200 * row_calls, completion_tokens=20 * row_calls,
            cost_usd=0.0, latency_s=0.5 * row_calls, raw_output=None, created_at=0.0, extras=None, sent=None,
        )[RECORD_COLUMNS]  # fmt: skip

    def fill(self, run_id: str, scores: dict[str, np.ndarray]) -> pd.DataFrame:
        """`scores[split]` has shape (models, configs, items)."""
        flat = np.concatenate([scores[s] for s in self.splits], axis=-1).reshape(-1)
        out = self.template.copy()
        out["run_id"] = run_id
        out["score"] = flat
        out["prediction"] = np.where(flat == 1.0, "A", "B")
        return out


def choose_on_val(val: np.ndarray, calls: np.ndarray) -> int:
    """`stats.select_configs`' rule: best val score, ties to the cheaper, then the config id."""
    return int(np.lexsort((np.arange(len(calls)), calls, -val.mean(axis=-1)))[0])


class Mismatches:
    """Where the fast path and the full stats pipeline disagree on a checked seed."""

    def __init__(self, scenario: str):
        self.scenario, self.checked, self.found = scenario, 0, []

    def check(self, seed: int, what: str, fast, real) -> None:
        self.checked += 1
        if not same(fast, real):
            self.found.append(f"{self.scenario}, seed {seed}, {what}: fast {fast!r} vs stats {real!r}")


def same(a, b) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) or isinstance(b, float):
        return a is not None and b is not None and abs(float(a) - float(b)) <= TOL
    return a == b


def collect(out: dict[str, list], fig: dict[str, float]) -> None:
    for key, value in fig.items():
        out.setdefault(key, []).append(float(value))


# ---------------------------------------------------------------------------------------------
# The search, replayed


class StoppingRule:
    """`stats.clearly_worse` on pairs of val prefixes. On 0/1 scores its verdict depends on the
    pair only through (common items, wins, losses, level), so it is cached on those; `cache=False`
    calls it on every pair (the checked seeds)."""

    def __init__(self, cache: bool = True):
        self.cache, self.memo = cache, {}

    def worse(self, series: list[pd.Series], c: int, f: int, size: int, wins: int, losses: int, alpha: float) -> bool:
        key = (size, wins, losses, alpha)
        if not self.cache or key not in self.memo:
            self.memo[key] = stats.clearly_worse(series[c].iloc[:size], series[f], alpha)
        return self.memo[key]


JUDGE = StoppingRule()  # one cache per worker process: the cached verdicts are exact, so results do not depend on it


def replay_search(val: np.ndarray, calls: np.ndarray, order: np.ndarray, alpha: float, rule: str, judge: StoppingRule):
    """Successive halving as `search._study_loop` runs it, on val scores (configs × items).

    Every config is scored on the first rung, then taken best first by that score (ties to the
    cheaper, then queue order) and promoted while promising, by one of three rules:
    - "bonferroni", today's `_promising`: no finished config at least as cheap is
      `clearly_worse`-better on the common items at alpha divided among those configs;
    - "leader", the alternative measured beside it: the best finished config at least as cheap
      (highest val score, ties to the cheaper, then the config id) is not `clearly_worse`-better
      at level alpha;
    - "wilson", the first rule: no such config's val score reaches the upper end of the z=1
      Wilson interval of the candidate's score so far.
    Returns the items scored per config and the chosen one (best on all of val, ties to cheaper).
    """
    configs, n = val.shape
    rungs = _rungs(n, SearchSettings(rung0=RUNG0, growth=GROWTH))
    index = pd.Index([f"val-{i}" for i in range(n)])
    series = [pd.Series(val[c], index=index) for c in range(configs)]
    # wins[size][c, f]: items of the first `size` that c got right and f wrong
    wins = {s: val[:, :s] @ (1 - val[:, :s]).T for s in rungs[:-1]}
    first, full = val[:, : rungs[0]].mean(axis=1), val.mean(axis=1)
    finished: list[int] = []
    sizes = np.full(configs, rungs[0])

    def promising(c: int, size: int) -> bool:
        cheaper = [f for f in finished if calls[f] <= calls[c]]
        if rule == "wilson":
            high = stats.wilson(float(val[c, :size].sum()), size, z=1.0)[1]
            return not any(full[f] >= high for f in cheaper)
        w = wins[size]
        if rule == "leader":
            cheaper = [min(cheaper, key=lambda f: (-full[f], calls[f], f))] if cheaper else []
            level = alpha
        else:
            level = alpha / max(1, len(cheaper))
        return not any(judge.worse(series, c, f, size, int(w[c, f]), int(w[f, c]), level) for f in cheaper)

    for c in sorted(order, key=lambda c: (-first[c], calls[c])):
        size = rungs[0]
        for nxt in rungs[1:]:
            if not promising(c, size):
                break
            size = nxt
        sizes[c] = size
        if size == n:
            finished.append(c)
    return sizes, min(finished, key=lambda c: (-full[c], calls[c], c))


def search_figures(sizes: np.ndarray, chosen: int, acc: np.ndarray, calls: np.ndarray, n: int) -> dict[str, float]:
    best = np.flatnonzero(acc >= acc.max() - TOL)
    return {
        "best_pruned": float(np.mean(sizes[best] < n)),
        "best_first_rung": float(np.mean(sizes[best] == RUNG0)),
        "chosen_not_best": float(acc[chosen] < acc.max() - TOL),
        "gap": float(acc.max() - acc[chosen]),
        "calls_share": float((sizes * calls).sum() / (n * calls.sum())),
    }


# ---------------------------------------------------------------------------------------------
# Ceilings and the search: one model, 8 or 16 configs


def pattern(kind: str, configs: int) -> np.ndarray:
    if kind == "equal":
        return np.full(configs, 0.60)
    if kind == "spread":
        return np.linspace(0.45, 0.75, configs)
    return np.array([0.63] + [0.60] * (configs - 1))  # "ahead": the best 3 points ahead of the others


def ceiling_chunk(tag: int, kind: str, configs: int, n: int, flat: bool, seeds: list[int], s: Settings):
    """Every config scored on all of val and test (as `promptopt run` does): the ceiling and the
    optimistic max; then the search replayed on the same val items."""
    calls = np.ones(configs, dtype=int) if flat else 1 + np.arange(configs) % 5
    acc0 = pattern(kind, configs)
    theta0 = logit_offsets(acc0, s.sigma)
    recs = Records(1, calls, {"val": n, "test": n})
    rules = [("leader", s.alpha), ("bonferroni", s.alpha), ("wilson", s.alpha)]
    if kind != "equal" and n == 300 and not flat:
        rules += [("bonferroni", a) for a in s.sweep]
    out = {}
    bad = Mismatches(f"{configs} configs {kind} n={n}")
    for seed in seeds:
        rng = np.random.default_rng([tag, seed])
        perm = rng.permutation(configs)  # config k gets the perm[k]-th accuracy of the pattern
        acc, theta = acc0[perm], theta0[perm]
        val, test = draw(rng, theta, n, s.sigma), draw(rng, theta, n, s.sigma)
        order = rng.permutation(configs)  # the search's queue order (its seeded shuffle)

        chosen = choose_on_val(val, calls)
        opt = int(np.argmax(test.mean(axis=1)))  # best test score, ties to the first config id
        low, high = stats.wilson(float(test[chosen].sum()), n)
        fast = (f"c{chosen:02d}", float(test[chosen].mean()), low, high, f"c{opt:02d}", float(test[opt].mean()))
        if seed < s.exact:
            frame = recs.fill(f"seed-{seed}", {"val": val[None], "test": test[None]})
            row = stats.compare(frame, stats.summarize(frame, b=s.b, seed=seed), b=s.b, seed=seed)[0].iloc[0]
            real = (row.selected_config_id, row.ceiling_score, row.ceiling_ci_low, row.ceiling_ci_high,
                    row.optimistic_config_id, row.optimistic_max_score)  # fmt: skip
            bad.check(seed, "ceiling (chosen, score, ci_low, ci_high, optimistic config, optimistic max)", fast, real)
        _, score, low, high, _, opt_score = fast
        fig = {
            "chosen_acc": acc[chosen],
            "chosen_is_best": float(acc[chosen] >= acc.max() - TOL),
            "err": score - acc[chosen],
            "covered": float(low <= acc[chosen] <= high),
            "opt_err_own": opt_score - acc[opt],
            "opt_err_best": opt_score - acc.max(),
        }
        for rule, alpha in rules:
            name = "wilson" if rule == "wilson" else f"{rule}@{alpha:g}"
            sizes, pick = replay_search(val, calls, order, alpha, rule, JUDGE)
            if seed < s.exact and rule != "wilson" and alpha == s.alpha:
                check = replay_search(val, calls, order, alpha, rule, StoppingRule(cache=False))
                bad.check(seed, f"search {name} (items per config, chosen)", (list(sizes), pick),
                          (list(check[0]), check[1]))  # fmt: skip
            fig |= {f"{name}:{k}": v for k, v in search_figures(sizes, pick, acc, calls, n).items()}
        collect(out, fig)
    return out, bad


# ---------------------------------------------------------------------------------------------
# Verdicts: six models on one task

VERDICT_ACC = {
    # 6 models × (baseline, 3 configs): true accuracies
    "equal": np.full((6, 4), 0.60),
    # m0 is 10 points better everywhere; m1's three configs are 10 points above its baseline
    "power": np.array([[0.70] * 4, [0.60, 0.70, 0.70, 0.70], *([[0.60] * 4] * 4)]),
}
VERDICT_CALLS = np.array([1, 2, 3, 5])


def fast_verdicts(val: np.ndarray, test: np.ndarray, b: int, seed: int):
    """What `stats.compare` gives on these scores, from the functions it calls: uplift rows
    (model, chosen, diff, ci_low, ci_high, p_holm, verdict), head-to-head rows (model_a, model_b,
    setting, config_a, config_b, diff, ci_low, ci_high, p_holm, outcome) and flips (model_a,
    model_b, status)."""
    models = val.shape[0]
    chosen = [choose_on_val(val[m], VERDICT_CALLS) for m in range(models)]

    def paired(a: np.ndarray, c: np.ndarray) -> tuple[float, float, float, float]:
        return (*stats.paired_bootstrap(a, c, b=b, seed=seed), stats.paired_p(a, c, b=b, seed=seed))

    up = [(f"m{m}", f"c{chosen[m]:02d}", *paired(test[m, chosen[m]], test[m, 0])) for m in range(models)]
    h2h = []
    for ma, mb in itertools.combinations(range(models), 2):
        for setting, (ca, cb) in (("baseline", (0, 0)), ("ceiling", (chosen[ma], chosen[mb]))):
            h2h.append((f"m{ma}", f"m{mb}", setting, f"c{ca:02d}", f"c{cb:02d}", *paired(test[ma, ca], test[mb, cb])))
    # compare's Holm family: every uplift of a ceiling that is not the baseline itself, and every
    # distinct pair of (model, config)s — both models at their baseline twice count once. All
    # pairs share the n >= MIN_PAIRED test items, so none is left out for want of items.
    n = test.shape[-1]
    tests = {("uplift", r[0]): r[-1] for r, c in zip(up, chosen, strict=True) if c != 0}
    for r in h2h:
        tests.setdefault(("pair", *r[:2], *r[3:5]), r[-1])
    adjusted = dict(zip(tests, stats.holm(list(tests.values())), strict=True))
    outcome = {"better": "win", "worse": "loss", "tie": "tie", None: None}
    up = [(*r[:-1], p, stats.corrected_verdict(r[2], p, n)) for r in up for p in [adjusted.get(("uplift", r[0]), 1.0)]]
    h2h = [
        (*r[:-1], p, outcome[stats.corrected_verdict(r[5], p, n)])
        for r in h2h
        for p in [adjusted[("pair", *r[:2], *r[3:5])]]
    ]
    flips = []
    for base, ceil in zip(h2h[::2], h2h[1::2], strict=True):
        if base[5] * ceil[5] >= 0:
            continue
        lead, other = (base[0], base[1]) if ceil[5] > 0 else (base[1], base[0])
        real = base[-1] in ("win", "loss") and ceil[-1] in ("win", "loss")
        flips.append((lead, other, "real" if real else "within noise"))
    return up, h2h, flips, len(tests)


def real_verdicts(ceil: pd.DataFrame, h2h: pd.DataFrame, flips: pd.DataFrame):
    """The same rows, read from `stats.compare`'s output."""
    up = [(r.model, r.selected_config_id, r.uplift, r.uplift_ci_low, r.uplift_ci_high, r.uplift_p_holm, r.verdict)
          for r in ceil.sort_values("model").itertuples()]  # fmt: skip
    pairs = [(r.model_a, r.model_b, r.setting, r.config_a, r.config_b, r.diff, r.ci_low, r.ci_high, r.p_holm,
              r.outcome) for r in h2h.itertuples()]  # fmt: skip
    fl = [(r.model_a, r.model_b, r.status) for r in flips.itertuples()] if len(flips) else []
    return up, pairs, fl, int(ceil.comparisons.iloc[0])


def verdict_tallies(up, h2h, flips, family: int, acc: np.ndarray) -> dict[str, float]:
    """Decided verdicts where the truth has none (or the other direction), and power, corrected
    (Holm, as compare gives them) and uncorrected (stats.verdict on the same 95% intervals)."""

    def true(model: str, config_id: str) -> float:
        return acc[int(model[1:]), int(config_id[1:])]

    rows = []  # (kind, true difference, corrected verdict, uncorrected verdict)
    for model, cid, _diff, low, high, _p, v in up:
        rows.append(("uplift", true(model, cid) - true(model, "c00"), v, stats.verdict(low, high)))
    sign = {"win": "better", "loss": "worse", "tie": "tie", None: None}
    raw_decided = {}
    for ma, mb, setting, ca, cb, _diff, low, high, _p, o in h2h:
        rows.append((f"h2h {setting}", true(ma, ca) - true(mb, cb), sign[o], stats.verdict(low, high)))
        raw_decided[(ma, mb, setting)] = stats.verdict(low, high) != "tie"
    configs = {(r[0], r[1], r[2]): (r[3], r[4]) for r in h2h}
    t = {f"{label}:{k}": 0.0 for label in ("holm", "raw") for k in ("family_fp", "flip_false", "null_n", "null_fp")}
    t |= {f"{label}:{what}:{k}": 0.0 for label in ("holm", "raw") for what in ("uplift", "h2h baseline", "h2h ceiling")
          for k in ("alt_n", "alt_right", "alt_wrong")}  # fmt: skip
    for lead, other, status in flips:
        a, c = min(lead, other), max(lead, other)
        (ba, bb), (ca, cb) = configs[(a, c, "baseline")], configs[(a, c, "ceiling")]
        truly = (true(a, ba) - true(c, bb)) * (true(a, ca) - true(c, cb)) < 0
        for label, real in (("holm", status == "real"), ("raw", raw_decided[(a, c, "baseline")]
                                                         and raw_decided[(a, c, "ceiling")])):  # fmt: skip
            if real and not truly:
                t[f"{label}:flip_false"] += 1
                t[f"{label}:family_fp"] = 1.0
    for what, d, holm_v, raw_v in rows:
        for label, v in (("holm", holm_v), ("raw", raw_v)):
            decided = v in ("better", "worse")
            right = (v == "better" and d > TOL) or (v == "worse" and d < -TOL)
            if abs(d) <= TOL:
                t[f"{label}:null_n"] += 1
                t[f"{label}:null_fp"] += decided
            else:
                for k, inc in (("alt_n", 1), ("alt_right", right), ("alt_wrong", decided and not right)):
                    t[f"{label}:{what}:{k}"] += inc
            if decided and not right:
                t[f"{label}:family_fp"] = 1.0
    t["comparisons"] = float(len(rows))
    t["family"] = float(family)
    return t


def verdict_chunk(tag: int, kind: str, n: int, seeds: list[int], s: Settings):
    acc = VERDICT_ACC[kind]
    theta = logit_offsets(acc, s.sigma)
    recs = Records(6, VERDICT_CALLS, {"val": n, "test": n})
    out, bad = {}, Mismatches(f"verdicts {kind} n={n}")
    for seed in seeds:
        rng = np.random.default_rng([tag, seed])
        val, test = draw(rng, theta, n, s.sigma), draw(rng, theta, n, s.sigma)
        fast = fast_verdicts(val, test, s.b, seed)
        if seed < s.exact:
            frame = recs.fill(f"seed-{seed}", {"val": val, "test": test})
            real = real_verdicts(*stats.compare(frame, stats.summarize(frame, b=s.b, seed=seed), b=s.b, seed=seed))
            for what, f, r in zip(("uplifts", "head-to-head", "flips", "Holm family size"), fast, real, strict=True):
                bad.check(seed, what, f, r)
        collect(out, verdict_tallies(*fast, acc))
    return out, bad


# ---------------------------------------------------------------------------------------------
# Sensitivity: eight configs of one accuracy


PERMUTATIONS = sensitivity_section.PERMUTATIONS  # per seed in the sensitivity scenarios, as the report uses


def sensitivity_chunk(tag: int, sigma: float, n: int, seeds: list[int], s: Settings):
    """Spread of 8 equal configs' test scores vs `promptopt.sections.sensitivity`'s noise figures."""
    configs = 8
    calls = 1 + np.arange(configs) % 5
    theta = logit_offsets(np.full(configs, 0.60), sigma)
    recs = Records(1, calls, {"test": n})
    keys = ("spread", "noise_spread", "std", "noise_std", "net_std", "net_std_ci_low", "net_std_ci_high")
    out, bad = {}, Mismatches(f"sensitivity σ={sigma} n={n}")
    for seed in seeds:
        rng = np.random.default_rng([tag, seed])
        test = draw(rng, theta, n, sigma)
        scores = test.mean(axis=1)
        rows = np.argsort([f"test-{i}" for i in range(n)], kind="stable")  # items in the store's order, as the report has them
        null = sensitivity_section.permuted_spread(test.T[rows], b=PERMUTATIONS, seed=seed)  # items × configs
        fast = (float(scores.max() - scores.min()), null["noise_spread"], float(scores.std()), null["noise_std"],
                null["net_std"], null["net_std_ci_low"], null["net_std_ci_high"])  # fmt: skip
        if seed < s.exact:
            frame = recs.fill(f"seed-{seed}", {"test": test[None]})
            sens = sensitivity_section.sensitivity(stats.summarize(frame, b=s.b, seed=seed), frame, b=PERMUTATIONS, seed=seed)
            row = sens[sens.family == "all"].iloc[0]
            bad.check(seed, "sensitivity " + ", ".join(keys), fast, tuple(float(row[k]) for k in keys))
        collect(out, dict(zip(keys, fast, strict=True)))
    return out, bad


def run_job(job: tuple):
    name, args = job
    fn = {"ceiling": ceiling_chunk, "verdict": verdict_chunk, "sensitivity": sensitivity_chunk}[name]
    return job, *fn(*args)


# ---------------------------------------------------------------------------------------------
# Printing


def table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)])


@functools.cache
def wilson_coverage(p: float, n: int) -> float:
    """The probability that stats.wilson's 95% interval of Binomial(n, p) holds p."""
    return sum(
        math.comb(n, k) * p**k * (1 - p) ** (n - k)
        for k in range(n + 1)
        if stats.wilson(k, n)[0] <= p <= stats.wilson(k, n)[1]
    )


def note(text: str) -> None:
    print(textwrap.fill(text, width=118))


def pct(x: float, digits: int = 1) -> str:
    return f"{100 * x:.{digits}f}%"


def pts(x: float) -> str:
    return f"{100 * x:.2f}"


def share_se(x: np.ndarray) -> str:
    """A share with its Monte Carlo standard error over seeds."""
    p = float(np.mean(x))
    return f"{100 * p:.1f} ± {100 * math.sqrt(p * (1 - p) / len(x)):.1f}%"


def mean_se(x: np.ndarray) -> str:
    return f"{100 * x.mean():+.2f} ± {100 * x.std(ddof=1) / math.sqrt(len(x)):.2f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=1000, help="simulated runs per scenario (default 1000)")
    ap.add_argument("--quick", action="store_true", help="100 seeds per scenario, 20 of them checked")
    ap.add_argument("--alpha", type=float, default=0.02, help="the search's stopping level (as `search --alpha`)")
    ap.add_argument("--difficulty", type=float, default=1.5, help="σ of the per-item logit offset (0: independent)")
    ap.add_argument("--b", type=int, default=1000, help="bootstrap resamples (paired intervals)")
    ap.add_argument("--exact", type=int, default=100, help="seeds per scenario also run through the full pipeline")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    seeds = 100 if args.quick else args.seeds
    exact = min(seeds, 20 if args.quick else args.exact)
    sweep = tuple(a for a in (0.005, 0.01, 0.05, 0.1) if not math.isclose(a, args.alpha))
    s = Settings(sigma=args.difficulty, b=args.b, alpha=args.alpha, sweep=sweep, exact=exact)
    started = time.perf_counter()

    ceiling_scen = [(kind, c, n) for n in (300, 100) for c in (8, 16) for kind in ("equal", "spread", "ahead")]
    flat_scen = [(kind, 16, 300) for kind in ("equal", "spread", "ahead")]  # the search with every config at 1 call
    verdict_scen = [("equal", 300), ("equal", 100), ("power", 300)]
    sens_scen = [(args.difficulty, 20), (args.difficulty, 100), (args.difficulty, 773), (0.0, 20), (0.0, 100), (0.0, 773)]
    chunks = [list(range(i, min(seeds, i + CHUNK))) for i in range(0, seeds, CHUNK)]
    jobs = [("ceiling", (100 + i, k, c, n, False, ch, s)) for i, (k, c, n) in enumerate(ceiling_scen) for ch in chunks]
    jobs += [("ceiling", (150 + i, k, c, n, True, ch, s)) for i, (k, c, n) in enumerate(flat_scen) for ch in chunks]
    jobs += [("verdict", (200 + i, kind, n, ch, s)) for i, (kind, n) in enumerate(verdict_scen) for ch in chunks]
    jobs += [("sensitivity", (300 + i, sg, n, ch, s)) for i, (sg, n) in enumerate(sens_scen) for ch in chunks]
    jobs.sort(key=lambda j: j[1][-2][0])  # the slow jobs (holding the checked seeds) first
    res: dict[tuple, dict[str, list]] = {}
    checked, mismatches = 0, []
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        for (name, job_args), figs, bad in pool.map(run_job, jobs, chunksize=1):
            for k, v in figs.items():
                res.setdefault((name, job_args[0]), {}).setdefault(k, []).extend(v)
            checked, mismatches = checked + bad.checked, mismatches + bad.found
    res = {key: {k: np.array(v) for k, v in figs.items()} for key, figs in res.items()}

    print("promptopt statistics validity: a seeded simulation with known true accuracies")
    print(
        f"seeds per scenario: {seeds}; item difficulty σ = {args.difficulty} (logit): two configs of true accuracy "
        f"60% disagree on {pct(disagreement(0.6, args.difficulty))} of items ({pct(disagreement(0.6, 0.0))} if "
        f"items were alike); bootstrap b = {args.b}; search alpha = {args.alpha}"
    )
    print("truth = a config's population accuracy (expected score on a new item); 'pts' = percentage points;")
    print(
        "configs cost 1..5 LM calls per item (config k: 1 + k mod 5); which config gets which accuracy is drawn per seed"
    )
    label = {"equal": "all 60%", "spread": "45%..75% evenly", "ahead": "best 63%, others 60%"}

    targets: dict[str, list[tuple[str, bool]]] = {}
    print("\n1. Ceiling: the test score of the config chosen on val, every config scored on all of val and test")
    rows = []
    for i, (kind, c, n) in enumerate(ceiling_scen):
        r = res[("ceiling", 100 + i)]
        cover = float(r["covered"].mean())
        targets.setdefault("ceiling 95% CI coverage within 94-96%", []).append(
            (f"{c}/{kind}/n={n}", 0.94 <= cover <= 0.96)
        )
        rows.append([
            f"{c} configs, {label[kind]}", str(n), pct(r["chosen_acc"].mean()), pct(r["chosen_is_best"].mean(), 0),
            mean_se(r["err"]), f"{100 * np.abs(r['err']).mean():.2f}", share_se(r["covered"]),
            pct(np.mean([wilson_coverage(a, n) for a in r["chosen_acc"]])),
            "met" if 0.94 <= cover <= 0.96 else "MISSED", mean_se(r["opt_err_own"]), mean_se(r["opt_err_best"]),
        ])  # fmt: skip
    print(table(["scenario", "n val=test", "chosen: true acc.", "is best", "ceiling bias pts", "mean |err| pts",
                 "95% CI coverage", "(exact)", "94-96%", "optimistic max bias pts", "vs best true acc."],
                rows))  # fmt: skip
    pooled = np.concatenate([res[("ceiling", 100 + i)]["covered"] for i in range(len(ceiling_scen))])
    print(f"coverage pooled over the {len(ceiling_scen)} scenarios ({len(pooled)} ceilings): {share_se(pooled)}")
    note(
        "bias and |err|: ceiling score minus the chosen config's true accuracy (± Monte Carlo standard error); "
        "coverage: share of seeds whose [ceiling_ci_low, ceiling_ci_high] holds that accuracy; (exact): the coverage "
        "the Wilson interval has at those accuracies and n, from the binomial distribution (what the measured share "
        "estimates, free of Monte Carlo noise); optimistic max: "
        "the best test score over configs minus the true accuracy of the config that scored it, and minus the best "
        "true accuracy"
    )

    print(
        "\n2. Verdicts: 6 models × (baseline + 3 configs) on one task — uplifts, head-to-head (baseline and ceiling), flips"
    )
    rows = []
    for i, (kind, n) in enumerate(verdict_scen):
        r = res[("verdict", 200 + i)]
        holm = float(r["holm:family_fp"].mean())
        targets.setdefault("family-wise false verdicts after Holm ≤ 5%", []).append((f"{kind}/n={n}", holm <= 0.05))
        rows.append([
            "all equal (60%)" if kind == "equal" else "m0 +10 pts; m1 uplift +10 pts", str(n),
            f"{r['comparisons'].mean():.0f}", f"{r['family'].mean():.1f}", share_se(r["raw:family_fp"]), share_se(r["holm:family_fp"]),
            "met" if holm <= 0.05 else "MISSED", pct(r["raw:null_fp"].sum() / r["raw:null_n"].sum(), 2),
            pct(r["holm:null_fp"].sum() / r["holm:null_n"].sum(), 2),
            f"{r['raw:flip_false'].mean():.3f} / {r['holm:flip_false'].mean():.3f}",
        ])  # fmt: skip
    print(table(["scenario", "n val=test", "rows", "Holm family", "family-wise FP uncorrected", "after Holm", "≤ 5%",
                 "per-comparison FP uncorr.", "Holm", "false 'real' flips/seed unc. / Holm"], rows))  # fmt: skip
    note(
        "rows: uplift and head-to-head rows; Holm family: the distinct comparisons compare corrects over (an uplift "
        "whose ceiling is the baseline itself is none, and a pair compared twice with the same configs counts once). "
        "family-wise FP: share of seeds with at least one decided verdict the truth does not have — better/worse or "
        "win/loss between configs of equal true accuracy or in the wrong direction, or a 'real' flip whose true order "
        "does not flip. Uncorrected: stats.verdict(ci_low, ci_high) on the same rows (the 95% bootstrap interval "
        "excludes 0; a flip when both of its intervals do); after Holm: the verdict / outcome / status compare gives"
    )
    r = res[("verdict", 202)]
    rows = []
    for what in ("uplift", "h2h baseline", "h2h ceiling"):
        n_alt = r[f"holm:{what}:alt_n"].sum()
        rows.append([
            what, f"{n_alt / seeds:.1f}", pct(r[f"raw:{what}:alt_right"].sum() / n_alt),
            pct(r[f"holm:{what}:alt_right"].sum() / n_alt), pct(r[f"holm:{what}:alt_wrong"].sum() / n_alt, 2),
        ])  # fmt: skip
    print("\nPower in 'm0 +10 pts; m1 uplift +10 pts', n = 300: comparisons whose true difference is 10 points")
    print(table(["comparison", "per seed", "right verdict uncorrected", "after Holm", "wrong direction (Holm)"], rows))

    rules = [(f"bonferroni@{args.alpha:g}", "paired vs all, a/k (now)"),
             (f"leader@{args.alpha:g}", "paired vs leader"), ("wilson", "Wilson z=1 (first)")]  # fmt: skip
    print(f"\n3. Search: successive halving replayed on the same val items (rung0 20, growth 3, alpha {args.alpha})")
    rows = []
    for i, (kind, c, n) in enumerate(ceiling_scen):
        r = res[("ceiling", 100 + i)]
        for name, rule in rules:
            pruned, share = float(r[f"{name}:best_pruned"].mean()), float(r[f"{name}:calls_share"].mean())
            if name.startswith("bonferroni"):
                where = f"{c}/{kind}/n={n}"
                targets.setdefault("search (today's rule): best pruned ≤ 5%", []).append((where, pruned <= 0.05))
                targets.setdefault("search (today's rule): val calls ≤ 40% of all", []).append((where, share <= 0.40))
            rows.append([
                f"{c} configs, {label[kind]}", str(n), rule, share_se(r[f"{name}:best_pruned"]),
                pct(r[f"{name}:best_first_rung"].mean()), pct(r[f"{name}:chosen_not_best"].mean()),
                pct(1 - r["chosen_is_best"].mean()), f"{100 * r[f'{name}:gap'].mean():.2f}", pct(share),
                f"{'met' if pruned <= 0.05 else 'MISSED'} / {'met' if share <= 0.40 else 'MISSED'}",
            ])  # fmt: skip
    print(table(["scenario", "n val", "stopping rule", "best pruned", "at rung 1", "chosen ≠ best", "(all of val)",
                 "gap pts", "val calls vs all", "pruned ≤5% / calls ≤40%"], rows))  # fmt: skip
    note(
        "best pruned: share of searches in which the truly best config stops before all of val (when several tie "
        "for best, the share of them that stop); at rung 1: stopped after the first 20 items; (all of val): "
        "'chosen ≠ best' when every config is scored on all of val instead; gap: best true accuracy minus the "
        "chosen config's; val calls: items scored × calls per item over all configs, as a share of scoring every "
        "config on all of val. When every config is equal, nothing is worse, so no valid rule saves calls there."
    )
    rows = []
    for i, (kind, c, n) in enumerate(flat_scen):
        r = res[("ceiling", 150 + i)]
        for name, rule in rules:
            rows.append([
                f"{c} configs, {label[kind]}", str(n), rule, share_se(r[f"{name}:best_pruned"]),
                pct(r[f"{name}:best_first_rung"].mean()), pct(r[f"{name}:chosen_not_best"].mean()),
                pct(1 - r["chosen_is_best"].mean()), f"{100 * r[f'{name}:gap'].mean():.2f}",
                pct(r[f"{name}:calls_share"].mean()),
            ])  # fmt: skip
    print("\nThe same with every config at 1 LM call per item (any finished config may then stop any other):")
    print(table(["scenario", "n val", "stopping rule", "best pruned", "at rung 1", "chosen ≠ best", "(all of val)",
                 "gap pts", "val calls vs all"], rows))  # fmt: skip

    rows = []
    for i, (kind, c, n) in enumerate(ceiling_scen):
        if kind == "equal" or n != 300:
            continue
        r = res[("ceiling", 100 + i)]
        for alpha in sorted((args.alpha, *sweep)):
            name = f"bonferroni@{alpha:g}"
            pruned, share = float(r[f"{name}:best_pruned"].mean()), float(r[f"{name}:calls_share"].mean())
            rows.append([
                f"{c} configs, {label[kind]}", str(n), f"{alpha:g}", share_se(r[f"{name}:best_pruned"]),
                pct(r[f"{name}:chosen_not_best"].mean()), f"{100 * r[f'{name}:gap'].mean():.2f}", pct(share),
                f"{'met' if pruned <= 0.05 else 'missed'} / {'met' if share <= 0.40 else 'missed'}",
            ])  # fmt: skip
    print(
        "\nToday's rule (paired test against every cheaper finished config, alpha shared) at other alphas, same seeds:"
    )
    print(table(["scenario", "n val", "alpha", "best pruned", "chosen ≠ best", "gap pts", "val calls vs all",
                 "pruned ≤5% / calls ≤40%"], rows))  # fmt: skip

    print("\n4. Sensitivity: 8 configs of identical true accuracy (60%), test split only (stats.sensitivity, 'all')")
    rows = []
    for i, (sigma, n) in enumerate(sens_scen):
        r = res[("sensitivity", 300 + i)]
        rows.append([
            "shared difficulty" if sigma else "independent items", str(n), pts(r["spread"].mean()),
            pts(r["noise_spread"].mean()), pts(r["std"].mean()),
            pts(r["noise_std"].mean()), f"{pts(r['net_std'].mean())} ± {pts(r['net_std'].std() / math.sqrt(len(r['net_std'])))}",
            pct(np.mean((r["net_std_ci_low"] <= 0) & (r["net_std_ci_high"] >= 0)), 1),
            "met" if abs(100 * r["net_std"].mean()) <= 0.3 else "MISSED",
        ])  # fmt: skip
    print(table(["items", "n test", "spread (obs.)", "noise_spread", "std (obs.)", "noise_std",
                 "net_std", "interval holds 0", "|mean| ≤ 0.3"], rows))  # fmt: skip
    note(
        "means over seeds, in points. The true spread is 0, so net_std should average 0: it is the floored net std minus "
        f"its mean over {PERMUTATIONS} permutations of each item's scores among the configs (as the report); "
        "its interval is the permutations' 95% range"
    )

    print(
        f"\nCheck: {checked} comparisons on the first {exact} seeds of every scenario computed both by the full pipeline"
    )
    print(
        "(stats.summarize + stats.compare / stats.sensitivity on the records; the search with clearly_worse on every pair)"
    )
    print(f"and by the fast path used for all seeds: {len(mismatches)} disagree" + (":" if mismatches else "."))
    for line in mismatches[:20]:
        print("  " + line)
    print("\nTargets (scenario = configs/accuracies/n):")
    for what, marks in targets.items():
        met = [w for w, ok in marks if ok]
        missed = [w for w, ok in marks if not ok]
        note(f"- {what}: met in {len(met)} of {len(marks)}" + (f"; MISSED in {', '.join(missed)}" if missed else ""))
    print(f"\nelapsed: {time.perf_counter() - started:.1f} s ({args.workers} worker processes)")


if __name__ == "__main__":
    sys.exit(main())
