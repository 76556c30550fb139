"""Report: read records from a store and render them — no LM call, ever.

`rows` and `ceilings` follow the JSON contract (docs/report-json.md documents every field); the other sections (leaderboard,
head-to-head, rank flips, sensitivity, consistency, costs, Pareto frontier) are added beside
them. Every format is rendered from the one dict `build` returns, so text, markdown, HTML, CSV
and JSON can never disagree.
"""

from __future__ import annotations

import html
import io
import json
import math
import re
from pathlib import Path

import pandas as pd

from promptopt import stats
from promptopt.errors import UserError
from promptopt.manifest import mismatches
from promptopt.results import Ceiling, ConfigSummary, LeaderboardRow, Report, SummaryLine
from promptopt.stats import MIN_PAIRED
from promptopt.store import Store, run_folder_url
from promptopt.tables import Section

ROW_FIELDS = list(ConfigSummary.model_fields)  # the CSV's columns and every JSON row's keys, in order
CEILING_FIELDS = list(Ceiling.model_fields)
FORMATS = ("text", "md", "html", "csv", "json", "latex", "examples")
EXAMPLE_FIELDS = [
    "run_id", "model", "task", "strategy", "optimizer", "config_id", "split", "example_id", "gold", "prediction",
    "score", "parse_ok", "error", "lm_calls", "prompt_tokens", "completion_tokens", "cost_usd", "latency_s",
    "raw_output",
]  # fmt: skip


def open_source(source: str) -> tuple[Store, str | None]:
    """A run folder (its run.json names store and run) or a SQLAlchemy URL (every run in it)."""
    path = Path(source)
    if path.is_dir():
        meta = path / "run.json"
        if not meta.exists():
            inside = sorted(p.parent.name for p in path.glob("*/run.json"))
            if inside:
                shown = ", ".join(inside[:5]) + (f" and {len(inside) - 5} more" if len(inside) > 5 else "")
                raise UserError(f"{source} is a folder of run folders, not one: give one of them ({shown}), "
                                f"e.g. {path / inside[-1]}.")  # fmt: skip
            raise UserError(f"{source} is not a run folder: it has no run.json (give a run folder or a storage URL).")
        info = json.loads(meta.read_text())
        return Store(run_folder_url(info["storage"], path), create=False), info["run_id"]
    if "://" in source:
        return Store(source, create=False), None
    raise UserError(f"{source} is neither a run folder nor a storage URL (e.g. sqlite:///results.sqlite).")


def build(
    records: pd.DataFrame,
    compiles: pd.DataFrame | None = None,
    b: int = 10_000,
    seed: int = 0,
    local_usd_per_mtok: float = 0.0,
    runs: list[dict] | None = None,
    local_usd_per_hour: float = 0.0,
    equivalence_margin: float | None = None,
    judge_checks: pd.DataFrame | None = None,
    tables: dict[str, pd.DataFrame] | None = None,
    pareto_cost: str = "inference",
    alpha: float = stats.ALPHA,
) -> Report:
    """Every section of the report from records (and compile costs, and the runs' statuses):
    pure, no I/O. Every statistic is per run; several runs are shown apart, never pooled.

    Models whose calls carry no price (embedded or self-hosted: $0 in total) are charged
    `local_usd_per_mtok` dollars per million tokens, or `local_usd_per_hour` dollars per hour of
    the wall time their calls ran (stats.price_by_time); tokens are always shown beside dollars.
    `warnings` holds one sentence per thing a reader must know before trusting a number.
    `tables`: the store's other tables by name (a search's `choices`, which the report's choice
    follows, and what sections of their own files read, e.g. `anytime`). `pareto_cost`: the
    Pareto cost per example is the task model's inference (`inference`) or also the judge's
    grading and the one-off compile and preparation cost spread over the examples (`all`).
    """
    from promptopt.sections import Inputs, registered

    tables = tables or {}
    unpriced = sorted(stats.unpriced_models(records)) if len(records) else []
    unknown = sorted(stats.price_unknown(set(unpriced)))
    if local_usd_per_mtok and local_usd_per_hour:
        raise UserError("A local model is priced per million tokens or per hour, not both; give --local-price or "
                        "--local-price-per-hour.")  # fmt: skip
    if local_usd_per_mtok < 0 or local_usd_per_hour < 0:
        raise UserError(f"A price cannot be negative (got {min(local_usd_per_mtok, local_usd_per_hour):g}); give "
                        "USD per million tokens or per hour, 0 or more.")  # fmt: skip
    settings = {"bootstrap_resamples": b, "seed": seed, "local_usd_per_mtok": local_usd_per_mtok,
                "local_usd_per_hour": local_usd_per_hour,
                "unpriced_models": unpriced, "price_unknown_models": unknown, "alpha": alpha,
                "min_paired_items": stats.MIN_PAIRED, "correction": "holm",
                "equivalence_margin": equivalence_margin, "pareto_cost": pareto_cost}  # fmt: skip
    empty = {key: [] for key in SECTIONS}
    runs = run_rows(records, runs)
    if records.empty:
        return Report.model_validate({"rows": [], "ceilings": [], **empty, "runs": runs, "settings": settings,
                                      "warnings": run_warnings(runs)})  # fmt: skip
    records = stats.price_unpriced(records, set(unpriced), local_usd_per_mtok)
    if compiles is not None and len(compiles):
        compiles = stats.price_unpriced(compiles, set(unpriced), local_usd_per_mtok)
    records, compiles = stats.price_by_time(records, compiles, set(unpriced), local_usd_per_hour)
    summary = stats.summarize(records, b=b, seed=seed)
    chosen = stats.select_configs(summary, tables.get("choices"))
    picked = {(r.run_id, r.model, r.task, r.config_id) for r in chosen.itertuples()}
    summary["selected"] = [(r.run_id, r.model, r.task, r.config_id) in picked for r in summary.itertuples()]
    chosen_on = {(r.run_id, r.model, r.task): r.selected_on for r in chosen.itertuples()}
    summary["selected_on"] = [chosen_on.get((r.run_id, r.model, r.task)) for r in summary.itertuples()]
    ceil, h2h, flips = stats.compare(records, summary, b=b, seed=seed, equivalence_margin=equivalence_margin, alpha=alpha)
    still_free = set() if local_usd_per_mtok or local_usd_per_hour else set(unpriced)
    own = Inputs(records, summary, tables, b=b, seed=seed)
    tables = {
        "leaderboard": ceil[LEADERBOARD_FIELDS] if len(ceil) else ceil,
        "head_to_head": h2h,
        "flips": flips,
        "sensitivity": stats.sensitivity(summary, records, seed=seed),
        "consistency": stats.consistency(records),
        "costs": (costs := stats.costs(records, compiles)),
        "pareto": stats.pareto(summary, still_free, costs, include=pareto_cost),
        "metrics": stats.metric_scores(records, b=b, seed=seed),
        "judges": stats.judges(records, judge_checks),
        "judge_agreement": stats.judge_agreement(records),
        "juries": stats.juries(records, judge_checks),
        "open_ended": stats.open_gaps(records, b=b, seed=seed),
        "robustness": stats.robustness(records, b=b, seed=seed),
        "robust": stats.robust_ceilings(records, summary),
        "calibration": stats.calibration(records),
        "cloze": stats.cloze_scores(records),
        "retrieval": stats.retrieval(records),
    }
    tables["pareto"] = _mark_chosen(tables["pareto"], own.tables.get("choices"))
    report = {
        "rows": _clean(summary[ROW_FIELDS].to_dict(orient="records")),
        "ceilings": _clean(ceil[CEILING_FIELDS].to_dict(orient="records")) if len(ceil) else [],
        **{key: _clean(t.to_dict(orient="records")) for key, t in tables.items()},
        **{plugin.key: plugin.compute(own) for plugin in registered()},
        "runs": runs,
        "settings": settings,
    }
    report["warnings"] = run_warnings(runs) + measurement_warnings(report, summary, unknown, still_free)
    built = Report.model_validate(report)
    built.summary = [SummaryLine(run_id=r, task=t, text=line) for r, t, line in flip_sentences(built)]
    return built


def _mark_chosen(pareto: pd.DataFrame, choices: pd.DataFrame | None) -> pd.DataFrame:
    """Pareto points a search chose (with --objective pareto, every config of its front)."""
    if pareto.empty:
        return pareto
    picked = set() if choices is None else set(zip(choices.run_id, choices.model, choices.task, choices.config_id, strict=True))
    keys = zip(pareto.run_id, pareto.model, pareto.task, pareto.config_id, strict=True)
    return pareto.assign(search_chose=[k in picked for k in keys])


SECTIONS = ("leaderboard", "head_to_head", "flips", "sensitivity", "consistency", "costs", "pareto")
LEADERBOARD_FIELDS = list(LeaderboardRow.model_fields)


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
        short: list[str] = []
        if status not in (None, "complete") and len(mine):
            counts = mine.groupby(["model", "task", "split", "config_id"]).size()
            models = sorted(set(mine["model"]))
            who = (lambda m: f"{_short(m)}: ") if len(models) > 1 else (lambda m: "")
            if expected is not None:
                for model in models:
                    for task, splits in expected["items"].items():
                        for split, want in splits.items():
                            for cid in expected["configs"]:
                                have = int(counts.get((model, task, split, cid), 0))
                                if have < want:
                                    short.append(f"{who(model)}{cid} ({split} {have}/{want})")
            else:
                for (model, _task, split), g in counts.groupby(level=[0, 1, 2]):
                    top = g.max()
                    short += [f"{who(model)}{k[3]} ({split} {v}/{top})" for k, v in g.items() if v < top]
        out.append(
            {
                "run_id": rid,
                "status": status or "unknown",
                "records": len(mine),
                "created_at": known.get(rid, {}).get("created_at"),
                "incomplete_configs": sorted(set(short)),
            }  # fmt: skip
        )
    return out


def run_warnings(runs: list[dict]) -> list[str]:
    out = []
    for r in runs:
        if r["status"] in ("in_progress", "interrupted"):
            what = "is still running or was interrupted" if r["status"] == "in_progress" else "was interrupted"
            short = r["incomplete_configs"]
            detail = f"; configs with fewer records than others: {', '.join(short)}" if short else ""
            out.append(
                f"run {r['run_id']} {what} (status {r['status']}): its figures are partial{detail}; run the same "
                "command again to finish it."
            )
    if len(runs) > 1:
        out.append(
            f"this store holds {len(runs)} runs ({', '.join(r['run_id'] for r in runs)}); each is reported apart, "
            "never pooled; pass --run ID for one."
        )
    return out


def measurement_warnings(report: dict, summary: pd.DataFrame, unknown: list[str], free: set[str]) -> list[str]:
    """Sentences for what would otherwise mislead: ceilings chosen on test, configs whose error
    rates differ, hosted models with no known price, a Pareto plot in tokens for mixed prices."""
    out = []
    for c in report["ceilings"]:
        if c["selected_on"] == "test":
            out.append(
                f"the ceiling of {_display(c['model'])} on {c['task']} was chosen on test (no val scores): it is "
                "optimistic, biased upward like the optimistic max."
            )
    for d in stats.error_disparities(summary):
        out.append(
            f"on {d['task']} ({d['split']}), {_display(d['model'])}'s config {d['config_high']} failed on "
            f"{100 * d['error_rate_high']:.0f}% of items against {100 * d['error_rate_low']:.0f}% for "
            f"{d['config_low']}: errors are left out of scores, so these configs are scored on different items."
        )
    if unknown:
        out.append(
            f"no price is known for {', '.join(map(_display, unknown))} (not in LiteLLM's price table): their dollar "
            "figures read $0 but are not free; pass --local-price USD (per million tokens) to price them."
        )
    mixed = sorted({p["task"] for p in report["pareto"] if p["cost_axis"] == "tokens (mixed)"})
    if mixed:
        out.append(
            f"the Pareto frontier of {', '.join(mixed)} is in tokens, not dollars: it mixes priced models with "
            f"unpriced ones ({', '.join(map(_display, sorted(free)))}); pass --local-price USD to compare in dollars."
        )
    return out


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


def _pts(x) -> str:
    """A difference of fractions in percentage points, signed."""
    return "—" if x is None else f"{100 * x:+.1f}"


def _ci(score, low, high, fmt=_pct) -> str:
    if score is not None and (low is None or high is None):
        return f"{fmt(score)} (n<{MIN_PAIRED}: no interval)"
    return f"{fmt(score)} [{fmt(low)}, {fmt(high)}]"


def _num(x) -> str:
    return "—" if x is None else f"{x:.3f}"


def _money(x) -> str:
    return "—" if x is None else f"{x:.6f}" if x < 0.01 else f"{x:.4f}"




def _chosen_on(on: str | None) -> str:
    return "test: optimistic" if on == "test" else on or "—"


def _verdict(v: str | None, n: int | None, has_baseline: bool = True) -> str:
    if v:
        return v
    return f"none (n={n or 0} < {MIN_PAIRED})" if has_baseline else "none (no baseline scored)"


def _uplift(r: LeaderboardRow) -> str:
    """Uplift with its items; the paired scores are shown when the common items are not the
    split's items (they differ from the ceiling and baseline scores beside them)."""
    text = _ci(r.uplift, r.uplift_ci_low, r.uplift_ci_high, _pts) + f" n={r.uplift_n}"
    if r.uplift_n and not (
        math.isclose(r.uplift_ceiling_score, r.ceiling_score)
        and math.isclose(r.uplift_baseline_score, r.baseline_score)
    ):
        text += f" (on common items: {_pct(r.uplift_ceiling_score)} vs {_pct(r.uplift_baseline_score)})"
    return text


def _kinds(kinds: dict[str, int]) -> str:
    """Near misses by kind, when there are several kinds: ' (12 same_label, 8 negated)'."""
    return f" ({', '.join(f'{n} {k}' for k, n in kinds.items())})" if len(kinds) > 1 else ""


def _run_label(report: Report, run_id: str | None) -> str:
    return f" — {run_id}" if len(report.runs) > 1 and run_id else ""


def _tabulate(rows: list, title: str, headers: list[str], cells, note: str) -> list[Section]:
    """The section of a table with one line of `cells(row)` per row, or none without rows."""
    return [Section(title, headers, [cells(r) for r in rows], note)] if rows else []


# Each table's headers and cells are kept as compact as the table reads.
# fmt: off
def _runs_sections(report: Report) -> list[Section]:
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


def _leaderboards_sections(report: Report) -> list[Section]:
    out: list[Section] = []
    boards = sorted({(r.run_id, r.task) for r in report.leaderboard})
    for run_id, task in boards:
        board = sorted(
            (r for r in report.leaderboard if r.task == task and r.run_id == run_id),
            key=lambda r: (r.rank_ceiling or 1e9, r.model),
        )
        comparisons = max((r.comparisons or 0 for r in board), default=0)
        robust = {r.model: r for r in report.robust if r.task == task and r.run_id == run_id}
        out.append(
            Section(
                f"Leaderboard — {task}{_run_label(report, run_id)}",
                [
                    "model", "baseline % [95% CI]", "ceiling % [95% CI]", "choice fixed", "ceiling config (chosen on)",
                    "optimistic max %", "uplift pts [95% CI] n", "verdict (Holm)", "rank baseline", "rank ceiling",
                ] + (["robust ceiling % [95% CI] n", "robust choice % (config)"] if robust else []),
                [
                    [
                        _display(r.model), _ci(r.baseline_score, r.baseline_ci_low, r.baseline_ci_high),
                        _ci(r.ceiling_score, r.ceiling_ci_low, r.ceiling_ci_high),
                        "—" if r.ceiling_interval == "fixed" or r.ceiling_fixed_ci_low is None else
                        f"[{_pct(r.ceiling_fixed_ci_low)}, {_pct(r.ceiling_fixed_ci_high)}]",
                        f"{r.selected_config_id} ({_chosen_on(r.selected_on)})", _pct(r.optimistic_max_score),
                        _uplift(r), _verdict(r.verdict, r.uplift_n, r.baseline_score is not None),
                        str(r.rank_baseline or "—"), str(r.rank_ceiling or "—"),
                    ] + (_robust_cells(robust.get(r.model)) if robust else [])
                    for r in board
                ],
                ("Robust ceiling = the ceiling config's test items counted only when also right on every probe "
                 "that ran (partial and noimage aside); robust choice = the config the robust score picks on val, and its "
                 "robust test score. " if robust else "") + "Ceiling = test score of the config chosen on val among the configs scored on all of val (on test "
                "only when no val was scored: then it is optimistic too). Its interval includes the selection: val and "
                "test items (clusters, where items share one) resampled and the choice made again each time; "
                "choice fixed = the chosen config's own interval, as if the choice had been made in advance "
                "(the only one when there was no choice). Optimistic max = best test score over "
                "all configs, biased upward. Scores leave out items whose LM call failed. Uplift = ceiling − "
                "baseline on the test items both answered (n), paired bootstrap interval; verdicts are corrected "
                f"with Holm's method over the {comparisons} comparisons of this task (uplifts and head-to-head) at "
                f"{report.settings.alpha:g}; no verdict on fewer than {MIN_PAIRED} common items.",
            )
        )
    return out


def _robust_cells(r) -> list[str]:
    if r is None:
        return ["—", "—"]
    return [f"{_ci(r.robust_score, r.robust_ci_low, r.robust_ci_high)} n={r.robust_n}",
            f"{_pct(r.robust_choice_score)} ({r.robust_config_id or '—'})"]  # fmt: skip


def _head_to_head_sections(report: Report) -> list[Section]:
    margin = report.settings.equivalence_margin
    equivalence = ("" if margin is None else f" Within ±{100 * margin:g} pts: equivalent when both one-sided "
                   f"tests (TOST) put the difference inside the margin at alpha {report.settings.alpha:g}, different when "
                   "the corrected outcome is a win or loss, else undecided.")  # fmt: skip
    return _tabulate(
        report.head_to_head,
        "Head-to-head (paired, same test items)",
        [
            "task", "model A", "model B", "under", "chosen on", "n", "A − B pts [95% CI]", "p (Holm)",
            "A's outcome", "detectable pts", "A only / B only / both / neither",
            *([f"within ±{100 * margin:g} pts"] if margin is not None else []),
        ],
        lambda r: [
            r.task + _run_label(report, r.run_id), _display(r.model_a), _display(r.model_b), r.setting,
            _chosen_on(r.selected_on) if r.setting == "ceiling" else "—", str(r.n),
            _ci(r.diff, r.ci_low, r.ci_high, _pts), "—" if r.p_holm is None else f"{r.p_holm:.3g}",
            r.outcome or f"none (n < {MIN_PAIRED})", "—" if r.mde is None else f"±{100 * r.mde:.1f}",
            "—" if r.only_a is None else f"{r.only_a} / {r.only_b} / {r.both} / {r.neither}",
            *([r.equivalence or "—"] if margin is not None else []),
        ],
        "Under baseline: both models with the fixed baseline prompt; under ceiling: each model with its "
        "own chosen config. n = test items both answered. Outcomes are Holm-corrected over every "
        "comparison of the task; the interval is per comparison. Detectable: the smallest difference "
        f"this comparison finds 80% of the time at alpha {report.settings.alpha:g}, from its items' discordance (a tie with a "
        "large detectable difference says little); the last column splits the items by who got them right."
        + equivalence,
    )


def _flips_sections(report: Report) -> list[Section]:
    if not (report.head_to_head or report.flips):
        return []
    return [
        Section(
            "Rank flips (baseline → ceiling)",
            [
                "task", "ahead at ceiling", "behind at ceiling", "baseline diff pts [95% CI] n",
                "ceiling diff pts [95% CI] n", "ceiling chosen on", "status",
            ],
            [
                [
                    r.task + _run_label(report, r.run_id), _display(r.model_a), _display(r.model_b),
                    _ci(r.baseline_diff, r.baseline_ci_low, r.baseline_ci_high, _pts) + f" n={r.baseline_n}",
                    _ci(r.ceiling_diff, r.ceiling_ci_low, r.ceiling_ci_high, _pts) + f" n={r.ceiling_n}",
                    _chosen_on(r.selected_on), r.status,
                ]
                for r in report.flips
            ],
            "A flip is real only when both paired differences are decided after the Holm correction; "
            "otherwise it is within noise." + ("" if report.flips else " No pair of models changed order.")
            + "".join(f" {line}" for line in flip_summary(report)),
        )
    ]


def flip_summary(report: Report) -> list[str]:
    """Per (run, task), the sentence a paper would print (flip_sentences)."""
    return [line for _, _, line in flip_sentences(report)]


def flip_sentences(report: Report) -> list[tuple[str, str, str]]:
    """Per (run, task), the sentence a paper would print: how many model pairs changed order, how
    many of those flips are real after Holm, and the smallest difference the ceiling comparisons
    could have detected (the median over pairs; a flip below it was never going to show)."""
    lines = []
    keys = sorted({(h.run_id, h.task) for h in report.head_to_head if h.setting == "ceiling"})
    for run_id, task in keys:
        pairs = [h for h in report.head_to_head if (h.run_id, h.task, h.setting) == (run_id, task, "ceiling")]
        flips = [f for f in report.flips if (f.run_id, f.task) == (run_id, task)]
        real = sum(f.status == "real" for f in flips)
        detectable = sorted(h.mde for h in pairs if h.mde is not None)
        at = (f"; at their ceilings the comparisons detect differences of {100 * detectable[len(detectable) // 2]:.1f} "
              f"points or more (median over pairs, 80% power, alpha {report.settings.alpha:g})") if detectable else ""  # fmt: skip
        lines.append((run_id, task, f"{task}{_run_label(report, run_id)}: {len(flips)} of {len(pairs)} model pairs "
                                    f"changed order, {real} of them a real flip after Holm{at}."))  # fmt: skip
    return lines


def _sensitivity_sections(report: Report) -> list[Section]:
    return _tabulate(
        report.sensitivity,
        "Prompt sensitivity (test scores across configs)",
        [
            "model", "task", "strategies", "configs", "min %", "max %", "spread pts",
            "spread from noise pts", "std pts", "std net of noise pts",
        ],
        lambda r: [
            _display(r.model), r.task + _run_label(report, r.run_id), r.family, str(r.n_configs),
            _pct(r.min_score), _pct(r.max_score), _pct(r.spread), _pct(r.noise_spread), _pct(r.std),
            _pct(r.net_std) if r.net_std_ci_low is None else _ci(r.net_std, r.net_std_ci_low, r.net_std_ci_high, _pts),
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


def _consistency_sections(report: Report) -> list[Section]:
    return _tabulate(
        report.consistency,
        "Consistency under option shuffling (choice_shuffle)",
        ["model", "task", "config", "split", "questions", "orders", "same answer % [95% CI]"],
        lambda r: [
            _display(r.model), r.task + _run_label(report, r.run_id), r.config_id, r.split, str(r.n),
            str(r.orders), _ci(r.consistency, r.ci_low, r.ci_high),
        ],
        "Share of questions whose votes name the same option under every option order.",
    )


def _costs_sections(report: Report) -> list[Section]:
    settings = report.settings
    return _tabulate(
        report.costs,
        "Cost per config",
        [
            "model", "task", "strategy", "optimizer", "config", "LM calls/ex", "tokens in/out per ex",
            "$/ex", "compile calls", "prep calls", "one-off tokens", "one-off $",
        ],
        lambda r: [
            _display(r.model), r.task + _run_label(report, r.run_id), r.strategy, r.optimizer,
            r.config_id, f"{r.calls_per_example:.2f}",
            f"{r.prompt_tokens_per_example:.0f}/{r.completion_tokens_per_example:.0f}",
            _money(r.usd_per_example), str(r.compile_calls), str(r.prep_calls),
            str(r.compile_tokens + r.prep_tokens), _money(r.one_off_usd),
        ],
        "Inference per example on test (val if not scored on test). One-off = compiling (optimizer calls) "
        "+ preparation (split train, e.g. kNN explanations). Dollars from LiteLLM's price table; models "
        + (f"without a price are charged ${settings.local_usd_per_hour:g} per hour of the wall time their calls ran "
           "(overlapping calls counted once)" if settings.local_usd_per_hour else
           f"without a price are charged ${settings.local_usd_per_mtok:g} per million tokens")
        + (f" ({', '.join(map(_display, settings.unpriced_models))})." if settings.unpriced_models else "."),
    )


def _pareto_sections(report: Report) -> list[Section]:
    return _tabulate(
        report.pareto,
        "Pareto frontier: score vs " + ("inference cost" if report.settings.pareto_cost == "inference" else
                                         "cost (inference, judging, one-off compile)") + " per example",
        [
            "task", "model", "strategy", "optimizer", "config", "split", "score % [95% CI]", "$/ex",
            "tokens/ex", "frontier",
        ],
        lambda r: [
            r.task + _run_label(report, r.run_id), _display(r.model), r.strategy, r.optimizer,
            r.config_id, r.split, _ci(r.score, r.ci_low, r.ci_high), _money(r.usd_per_example),
            f"{r.tokens_per_example:.0f}", ("★" if r.frontier else "") + (" chosen" if r.search_chose else ""),
        ],
        "★ = no other (model, config) scores at least as well for no more cost"
        + ("; chosen = what a search chose on val" if any(r.search_chose for r in report.pareto) else "")
        + ". Cost axis: dollars, or "
        "tokens per example where every point of a task costs $0 or priced and unpriced models are mixed "
        "(a $0 model would otherwise be on the frontier for free)."
        + (" The cost is the task model's calls alone; --pareto-cost all adds judging and compiles."
           if report.settings.pareto_cost == "inference" else
           " The cost adds to the task model's calls the judge's grading per example and the one-off compile and "
           "preparation cost over the examples scored (both apart in the JSON)."),
    )


def _metrics_sections(report: Report) -> list[Section]:
    return _tabulate(
        report.metrics,
        "Metrics of free-text answers",
        ["model", "task", "config", "split", "metric", "items", "score [95% CI]", "primary"],
        lambda r: [
            _display(r.model), r.task + _run_label(report, r.run_id), r.config_id, r.split, r.metric, str(r.n),
            _ci(r.score, r.ci_low, r.ci_high), "★" if r.primary else "",
        ],
        "Each metric is a mean over the answered items it was measured on (0-100): exact and token_f1 on "
        "normalized words, rouge1/rouge2/rougeL F-measure (rouge-score, stemmed), chrf and bleu (sacrebleu, "
        "per sentence), judge = the first trusted judge's verdict. ★ = the primary metric, the score every "
        "other table shows. Intervals: Wilson for 0/1 scores, else the bootstrap over items.",
    )


def _judges_sections(report: Report) -> list[Section]:
    out = _tabulate(
        report.judges,
        "LLM judges: validation before trust, and their cost",
        ["task", "judge", "planted verdicts", "agreement % [95% CI]", "kappa [95% CI]", "near-miss kappa", "trusted",
         "own passed", "wrong failed", "near misses failed", "no verdict (validation)", "answers graded (cached)",
         "judge calls", "judge tokens", "judge $"],
        lambda r: [
            r.task + _run_label(report, r.run_id), _display(r.judge), str(r.checks),
            _ci(r.agreement, r.agreement_ci_low, r.agreement_ci_high),
            f"{r.kappa:.2f}" + ("" if r.kappa_ci_low is None else f" [{r.kappa_ci_low:.2f}, {r.kappa_ci_high:.2f}]"),
            "—" if r.near_kappa is None else f"{r.near_kappa:.2f}",
            ("yes" if r.trusted else f"NO (a kappa < {r.min_kappa:g}): scores withheld"),
            f"{r.passed_own}/{r.own}", f"{r.failed_other}/{r.other}",
            "—" if not r.near_misses else f"{r.failed_near}/{r.near_misses}" + _kinds(r.near_kinds), str(r.unreadable),
            f"{r.graded} ({r.cached})", str(r.validation_calls + r.grading_calls),
            str(r.validation_tokens + r.grading_tokens),
            _money(r.validation_usd + r.grading_usd),
        ],
        "Before grading, each judge graded val items' own references (should pass), another item's "
        "reference (should fail) and a near miss (should fail: one of the question's own distractors for an "
        "open-ended twin; else, drawn by seed, another item's reference sharing a judge.near_by label, the "
        "reference with a number swapped, or the reference negated); agreement and Cohen's kappa are against the first two, "
        "the near-miss kappa against own references and near misses, and a judge is trusted only when both "
        "kappas clear the bar (a judge that passes any answer on the right topic fails the near misses). Judge "
        "calls, tokens and dollars (validation + grading) are the judge's, apart from the task model's. Intervals "
        "resample items, each with both its planted pairs (a judge's errors cluster by item).",
    )
    out += _tabulate(
        [r for r in report.judges if r.labelled],
        "Judges beside human labels",
        ["task", "judge", "answers", "agreement %", "kappa", "macro-F1", "prevalence bias pts [95% CI]", "annotators",
         "human–human %", "judge–human %", "humans at or below", "below humans"],
        lambda r: [
            r.task + _run_label(report, r.run_id), _display(r.judge), str(r.labelled), _pct(r.labels_agreement),
            f"{r.labels_kappa:.2f}", f"{r.labels_macro_f1:.2f}", _ci(r.prevalence_bias, r.prevalence_ci_low,
                                                                      r.prevalence_ci_high, _pts),
            str(r.annotators or "—"), _pct(r.human_human), _pct(r.judge_human),
            "—" if r.humans_at_or_below is None else f"{100 * r.humans_at_or_below:.0f}%",
            "—" if r.below_humans is None else ("yes" if r.below_humans else "no"),
        ],  # fmt: skip
        "The judge graded the answers of the task's judge.labels file. Against the humans' majority verdict "
        "(ties left out): agreement, Cohen's kappa, macro-F1 (pass and fail classes), and prevalence bias = the "
        "judge's pass rate minus the humans' (paired bootstrap interval; positive: more lenient). With two or more "
        "annotators: human–human = mean agreement between two annotators, judge–human = the judge's mean agreement "
        "with each annotator, humans at or below = the share of annotators who agree with the others no more than "
        "the judge agrees with them; below humans when judge–human < human–human.",
    )
    return out + _tabulate(
        report.judge_agreement,
        "Agreement between judges",
        ["task", "judge A", "judge B", "answers", "agreement %", "kappa"],
        lambda r: [r.task + _run_label(report, r.run_id), _display(r.judge_a), _display(r.judge_b), str(r.n),
                   _pct(r.agreement), f"{r.kappa:.2f}"],  # fmt: skip
        "Pass/fail of two judges on the same answers.",
    ) + _tabulate(
        report.juries,
        "Judge juries",
        ["task", "judges", "aggregate", "answers", "Krippendorff's alpha", "error correlation", "effective size"],
        lambda r: [r.task + _run_label(report, r.run_id), str(r.judges), r.aggregate, str(r.answers),
                   "—" if r.krippendorff_alpha is None else f"{r.krippendorff_alpha:.2f}",
                   "—" if r.error_correlation is None else f"{r.error_correlation:.2f}",
                   "—" if r.effective_size is None else f"{r.effective_size:.1f}"],  # fmt: skip
        "The judges that graded each answer, combined by the task's judge.aggregate (first: the first trusted "
        "judge's verdict; majority: more than half pass; mean of their scores; all must pass). Alpha: "
        "Krippendorff's, nominal, over the answers two or more graded. Error correlation: the mean pairwise "
        "correlation of the judges' errors on the planted validation pairs; effective size = judges / (1 + "
        "(judges − 1) × correlation): correlated judges add less than their number.",
    )


def _open_ended_sections(report: Report) -> list[Section]:
    return _tabulate(
        report.open_ended,
        "Multiple choice vs open-ended: the same model, config and test items",
        ["model", "task", "config", "metric", "items", "multiple choice %", "open-ended", "open − MC [95% CI]", "p"],
        lambda r: [
            _display(r.model), f"{r.task} vs {r.open_task}" + _run_label(report, r.run_id), r.config_id, r.metric,
            str(r.n), _pct(r.multiple_choice_score), _pct(r.open_score), _ci(r.diff, r.ci_low, r.ci_high, _pts),
            "" if r.p is None else f"{r.p:.3g}",
        ],
        "Paired by item: each open-ended metric against the multiple-choice accuracy on the items both "
        "answered; the interval is the bootstrap over those items.",
    )


def _robustness_sections(report: Report) -> list[Section]:
    def extra(r) -> str:
        if r.probe in ("negation", "organ"):
            return f"yes-half {_pct(r.yes_score)}, no-half {_pct(r.no_score)}; pair = both right"
        if r.probe.startswith("partial"):
            return f"{_pct(r.retained)}% of the full-case score retained"
        if r.probe == "noimage":
            return f"{_pct(r.retained)}% of the imaged score reached blind"
        if r.consistency is not None:
            what = "same option text under all orders" if r.probe.startswith("shuffle") else "same letter in both languages"
            return f"{_ci(r.consistency, r.consistency_ci_low, r.consistency_ci_high)} {what} ({r.orders} versions)"
        return ""

    return _tabulate(
        report.robustness,
        "Robustness probes (paired with their source items)",
        ["model", "task", "config", "split", "probe", "items", "unprobed %", "probed %", "probed − unprobed [95% CI]",
         "what else"],
        lambda r: [
            _display(r.model), r.task + _run_label(report, r.run_id), r.config_id, r.split, r.probe, str(r.n),
            _pct(r.source_score), _pct(r.probe_score), _ci(r.diff, r.ci_low, r.ci_high, _pts), extra(r),
        ],
        "negation: two yes/no questions per item (is the correct option the answer? is a distractor?), the "
        "probed score counts a pair only when both are right; partialK: the stem cut to its first K% of words; "
        "nota: the correct option replaced by 'None of the other options'; shuffle: mean score under the "
        "shuffled orders, consistency with the original order included; language:C: the same cases in "
        "language C against the first language of the group; noimage: the question without its image; organ: "
        "'is this an image of the <its organ>?' and of another organ, a pair counts when both are right. Paired "
        "bootstrap over the source items.",
    )


def _probability_sections(report: Report) -> list[Section]:
    calibration = _tabulate(
        report.calibration,
        "Calibration of option-letter probabilities (letter_logprob)",
        ["model", "task", "config", "split", "items", "accuracy %", "mean confidence %", "Brier", "ECE",
         "letter mass %", "no letter"],
        lambda r: [
            _display(r.model), r.task + _run_label(report, r.run_id), r.config_id, r.split, str(r.n),
            _pct(r.accuracy), _pct(r.mean_confidence), _num(r.brier), _num(r.ece), _pct(r.letter_mass),
            str(r.unread),
        ],
        "Brier: mean over items of the sum over letters of (probability - 1 if gold else 0)^2 (0 is perfect, "
        "a uniform guess over 4 letters scores 0.75); ECE: 10 equal-width confidence bins, the item-weighted "
        "gap between accuracy and mean confidence; letter mass: how much of the next token's probability the "
        "letters had before being normalized over them.",
    )
    cloze = _tabulate(
        report.cloze,
        "Cloze scoring: acc and acc_norm",
        ["model", "task", "config", "split", "items", "acc % [95% CI]", "acc_norm % [95% CI]"],
        lambda r: [
            _display(r.model), r.task + _run_label(report, r.run_id), r.config_id, r.split, str(r.n),
            _ci(r.acc, r.acc_ci_low, r.acc_ci_high), _ci(r.acc_norm, r.acc_norm_ci_low, r.acc_norm_ci_high),
        ],
        "Each option's text scored as the continuation of the question: acc by summed log-probability, "
        "acc_norm by log-probability per character of the option; the config's score is the one its length_norm knob names.",
    )
    retrieved = _tabulate(
        report.retrieval,
        "Retrieval: passages read and recall@k",
        ["model", "task", "config", "split", "items", "k", "recall@k % [95% CI]"],
        lambda r: [
            _display(r.model), r.task + _run_label(report, r.run_id), r.config_id, r.split, str(r.n), str(r.k),
            _ci(r.recall, r.recall_ci_low, r.recall_ci_high) if r.recall is not None else "no gold passages",
        ],
        "recall@k: share of items whose gold passage (named by the task's corpus) was among the k retrieved.",
    )
    return calibration + cloze + retrieved


# fmt: on


def _rows_sections(report: Report) -> list[Section]:
    return [rows_section(report)]


# The report's sections in the one order every format renders them (the plot follows Pareto).
SECTION_BUILDERS = (
    _rows_sections, _runs_sections, _leaderboards_sections, _head_to_head_sections, _flips_sections,
    _metrics_sections, _judges_sections, _open_ended_sections, _robustness_sections, _probability_sections,
    _sensitivity_sections,
    _consistency_sections,
    _costs_sections, _pareto_sections,
)  # fmt: skip


# The key of each builder's section, where a section of its own file (promptopt.sections) may follow.
_KEYS = {_leaderboards_sections: "leaderboard", _head_to_head_sections: "head_to_head", _flips_sections: "flips",
         _metrics_sections: "metrics", _judges_sections: "judges", _open_ended_sections: "open_ended",
         _robustness_sections: "robustness", _probability_sections: "calibration",
         _sensitivity_sections: "sensitivity", _consistency_sections: "consistency", _costs_sections: "costs",
         _pareto_sections: "pareto", _rows_sections: "rows", _runs_sections: "runs"}  # fmt: skip


def sections(report: Report) -> list[Section]:
    """The report as titled tables of text cells: what text, markdown and HTML all render, in one order."""
    from promptopt.sections import registered

    after: dict[str, list] = {}
    for plugin in registered():
        after.setdefault(plugin.after, []).append(plugin.render)
    out = []
    for build in SECTION_BUILDERS:
        out += build(report)
        for render in after.get(_KEYS[build], []):
            out += render(report)
    return out


def rows_section(report: Report) -> Section:
    """Every (model, task, config, split) row; with several runs, each row names its run."""
    several = len(report.runs) > 1
    grouped = any(r.design_effect is not None for r in report.rows)  # some task's items come in clusters
    return Section(
        "All results (model, task, config, split)",
        ["run"] * several
        + [
            "model",
            "task",
            "strategy",
            "optimizer",
            "split",
            "n",
        ]
        + ["clusters (design effect)"] * grouped
        + [
            "score % [95% CI]",
            "parse fail %",
            "errors % (count)",
            "LM calls",
            "tokens in/out",
            "wall s",
            "sel",
        ],  # fmt: skip
        [
            [r.run_id] * several
            + [
                _display(r.model),
                r.task,
                r.strategy,
                r.optimizer,
                r.split,
                str(r.n),
            ]
            + ([f"{r.clusters} ({r.design_effect:.2f})" if r.design_effect is not None else "—"] if grouped else [])
            + [
                _ci(r.score, r.ci_low, r.ci_high),
                _pct(r.parse_failure_rate),
                f"{_pct(r.error_rate)} ({r.errors})",
                str(r.lm_calls),
                f"{r.prompt_tokens}/{r.completion_tokens}",
                f"{r.wall_s:.1f}",
                "*" if r.selected else "",
            ]  # fmt: skip
            for r in report.rows
        ],
        "score = accuracy, or a free-text task's primary metric (see Metrics). n = items answered; items whose "
        "LM call failed after retries are errors, left out of the score (not counted as wrong). sel (*) = config "
        "chosen on val; its test score is the ceiling."
        + (" Clusters: items that are not independent (a probe's items of one source item, a task's cluster "
           "column) share one; the design effect is the score's variance counting clusters over its variance as "
           "if items were independent, and intervals and paired tests of those items resample clusters."
           if grouped else ""),
    )


def render_text(report: Report, markdown: bool = False, figure: str | None = None) -> str:
    parts = []
    for section in sections(report):
        parts.append(text_table(section, markdown))
        if markdown and figure and section.title.startswith("Pareto"):
            parts.append(f"![Pareto frontier]({figure})")
    return "\n\n".join(parts) + "\n"


def text_table(section: Section, markdown: bool = False) -> str:
    headers, body = section.headers, section.body
    if markdown:
        lines = [f"## {section.title}", "", "| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in body]
        return "\n".join(lines + ([f"\n{section.note}"] if section.note else []))
    widths = [max(len(h), *(len(row[i]) for row in body)) if body else len(h) for i, h in enumerate(headers)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    lines = [section.title, fmt.format(*headers), fmt.format(*["-" * w for w in widths])]
    lines += [fmt.format(*r) for r in body]
    return "\n".join(lines + ([section.note] if section.note else []))


def pareto_figure(report: Report, fmt: str = "svg", paper: bool = False) -> bytes | None:
    """The Pareto plot (one panel per task), frontier marked and every point labelled; None if no
    points. `paper`: sized for one column of a two-column paper, per panel."""
    points = pd.DataFrame([p.model_dump() for p in report.pareto])
    if points.empty:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = sorted(set(zip(points["run_id"], points["task"], strict=True)))
    several = len({run for run, _ in panels}) > 1
    models = sorted(points["model"].unique())
    colours = {m: plt.get_cmap("tab10")(i % 10) for i, m in enumerate(models)}
    with plt.rc_context(_style(paper)):
        fig, axes = plt.subplots(1, len(panels), figsize=(3.4 * len(panels), 2.6) if paper else
                                 (6.4 * len(panels), 4.8), squeeze=False)  # fmt: skip
        for ax, (run_id, task) in zip(axes[0], panels, strict=True):
            pts = points[(points["task"] == task) & (points["run_id"] == run_id)].sort_values("cost")
            for model, g in pts.groupby("model"):
                ax.scatter(g["cost"], 100 * g["score"], color=colours[model], label=_short(model), s=28, zorder=3)
                has = g["ci_low"].notna() & g["ci_high"].notna()  # every point with its 95% interval
                if has.any():
                    h = g[has]
                    below = (100 * (h["score"] - h["ci_low"])).clip(lower=0)  # rounding must not make a bar negative
                    above = (100 * (h["ci_high"] - h["score"])).clip(lower=0)
                    ax.errorbar(h["cost"], 100 * h["score"], yerr=[below, above], fmt="none", ecolor=colours[model],
                                alpha=0.55, lw=1, capsize=2, zorder=2)  # fmt: skip
            front = pts[pts["frontier"]]
            ax.step(front["cost"], 100 * front["score"], where="post", color="black", lw=1, zorder=2, label="frontier")
            ax.scatter(front["cost"], 100 * front["score"], s=110, facecolors="none", edgecolors="black", zorder=4)
            labels = [ax.annotate(_point_label(r), (r.cost, 100 * r.score), textcoords="offset points", xytext=(5, 4),
                                  fontsize=7) for r in pts.itertuples()]  # fmt: skip
            axis = pts["cost_axis"].iloc[0]
            whole = report.settings.pareto_cost == "all"
            ax.set_xlabel(
                ("$ per example (inference, judging, one-off)" if whole else "inference $ per example")
                if axis == "usd"
                else "tokens per example (priced and unpriced models mixed)"
                if axis == "tokens (mixed)"
                else "tokens per example (all models $0)"
            )
            ax.set_ylabel(f"{pts['split'].iloc[0]} score %")
            ax.set_title(f"{task} ({run_id})" if several else task)
            ax.grid(alpha=0.3)
            ax.margins(x=0.35, y=0.12)  # room for the point labels, which are written to the right
            low, high = ax.get_xlim()
            ax.set_xlim(max(low, -0.03 * high), high)  # no negative costs on the axis
            # beside the panel, never over a point or an interval
            ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
            _separate(fig, labels)
        return _drawn(fig, fmt, tight=True)  # the legend beside the panel is kept in the picture


def _separate(fig, labels: list, step: float = 8.0, rounds: int = 40) -> None:
    """Move point labels up, a few points at a time, until none overlaps another (labels of
    points at the same cost and score would otherwise print on top of each other)."""
    renderer = fig.canvas.get_renderer()
    for _ in range(rounds):
        boxes = [label.get_window_extent(renderer) for label in labels]
        moved = False
        for i, label in enumerate(labels):
            if any(boxes[i].overlaps(boxes[j]) for j in range(i)):
                x, y = label.xyann
                label.xyann = (x, y + step)
                boxes[i] = label.get_window_extent(renderer)
                moved = True
        if not moved:
            return


def forest_figure(report: Report, fmt: str = "svg", paper: bool = False) -> bytes | None:
    """The leaderboard as a forest plot: per task, each model's baseline and ceiling test score
    with its 95% interval on one axis; None without a leaderboard."""
    rows = [r for r in report.leaderboard if r.ceiling_score is not None or r.baseline_score is not None]
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = sorted({(r.run_id, r.task) for r in rows})
    several = len({run for run, _ in panels}) > 1
    height = max(2.2, 0.9 + 0.55 * max(sum((r.run_id, r.task) == p for r in rows) for p in panels))
    with plt.rc_context(_style(paper)):
        fig, axes = plt.subplots(1, len(panels), figsize=(3.4 * len(panels), 0.8 * height) if paper else
                                 (5.6 * len(panels), height), squeeze=False)  # fmt: skip
        for ax, (run_id, task) in zip(axes[0], panels, strict=True):
            mine = [r for r in rows if (r.run_id, r.task) == (run_id, task)]
            for y, r in enumerate(mine):
                for score, low, high, dy, colour, label in (
                    (r.baseline_score, r.baseline_ci_low, r.baseline_ci_high, 0.15, "#888888", "baseline"),
                    (r.ceiling_score, r.ceiling_ci_low, r.ceiling_ci_high, -0.15, "#1f5fa8", "ceiling"),
                ):
                    if score is None:
                        continue
                    ax.plot([100 * (low if low is not None else score), 100 * (high if high is not None else score)],
                            [y + dy, y + dy], color=colour, lw=1.6)  # fmt: skip
                    ax.scatter([100 * score], [y + dy], color=colour, s=26, zorder=3, label=label if y == 0 else None)
            ax.set_yticks(range(len(mine)), [_short(r.model) for r in mine])
            ax.set_ylim(-0.6, len(mine) - 0.4)
            ax.invert_yaxis()
            ax.set_xlim(0, 100)
            ax.set_xlabel("test score % (95% interval)")
            ax.set_title(f"{task} ({run_id})" if several else task)
            ax.grid(axis="x", alpha=0.3)
            ax.legend(fontsize=7, loc="lower right")
        return _drawn(fig, fmt)


def anytime_figure(report: Report, fmt: str = "svg", paper: bool = False) -> bytes | None:
    """A search's anytime curve: per (model, task) panel, the val score of the config it would
    have chosen against the LM calls spent so far, one line per optimizer (* = the whole search)."""
    rows = report.anytime
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = sorted({(r.run_id, r.model, r.task) for r in rows})
    with plt.rc_context(_style(paper)):
        fig, axes = plt.subplots(1, len(panels), figsize=(3.4 * len(panels), 2.4) if paper else
                                 (5.6 * len(panels), 3.6), squeeze=False)  # fmt: skip
        for ax, (run_id, model, task) in zip(axes[0], panels, strict=True):
            mine = [r for r in rows if (r.run_id, r.model, r.task) == (run_id, model, task) and r.val_score is not None]
            for optimizer in sorted({r.optimizer for r in mine}):
                line = sorted((r for r in mine if r.optimizer == optimizer), key=lambda r: r.step)
                ax.step([r.lm_calls for r in line], [100 * r.val_score for r in line], where="post",
                        label="whole search" if optimizer == "*" else optimizer, lw=1.4)  # fmt: skip
            ax.set_xlabel("LM calls spent so far")
            ax.set_ylabel("val score % of the choice")
            ax.set_title(f"{task} · {_short(model)}")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7, loc="lower right")
        return _drawn(fig, fmt)


FIGURES = {"forest": forest_figure, "pareto": pareto_figure, "anytime": anytime_figure}


def _drawn(fig, fmt: str, tight: bool = False) -> bytes:
    """A finished figure as bytes of `fmt`, with no creation time; the figure is closed."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=110, metadata=_no_date(fmt), bbox_inches="tight" if tight else None)
    plt.close(fig)
    return buf.getvalue()


def _style(paper: bool) -> dict:
    """Text kept as text in SVG and PDF (searchable, editable), stable ids; a paper's small type."""
    return {"svg.fonttype": "none", "svg.hashsalt": "promptopt", "pdf.fonttype": 42, "font.size": 7 if paper else 8}


def _no_date(fmt: str) -> dict | None:
    """Figures hold no creation time: the same report draws the same bytes."""
    return {"Date": None} if fmt == "svg" else {"CreationDate": None} if fmt == "pdf" else None


def _display(model: str) -> str:
    """A model identity for tables: an endpoint without its scheme, so no page holds a URL."""
    return re.sub(r"@[a-z][a-z0-9+.-]*://", "@", model)


def _short(model: str) -> str:
    return _display(model).split("#", 1)[0]  # an embedded model's weights digest is identity, not a name


def _point_label(r) -> str:
    opt = "" if r.optimizer == "none" else f"+{r.optimizer}"
    return f"{_short(r.model)}: {r.strategy}{opt}"


def inline_svg(svg: bytes) -> str:
    """matplotlib's SVG as an element to place in HTML: no XML prolog, DTD, metadata or namespace URLs."""
    text = svg.decode()
    text = text[text.index("<svg") :]
    text = re.sub(r"<metadata>.*?</metadata>", "", text, flags=re.S)
    return re.sub(r'\s+xmlns(:\w+)?="[^"]*"', "", text)


_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:24px;color:#1b1b1b}p,.note{max-width:1100px}
h1{font-size:22px}h2{font-size:17px;margin-top:28px}
table{border-collapse:collapse;margin:8px 0;font-size:13px}
th,td{border:1px solid #ccc;padding:3px 8px;text-align:left;white-space:nowrap}
th{background:#eef1f5;cursor:pointer;user-select:none}th:hover{background:#dde3ea}
th.asc::after{content:" ▲"}th.desc::after{content:" ▼"}
tr:nth-child(even) td{background:#fafafa}.note{color:#555;max-width:1100px}
.warn{background:#fff3cd;border:1px solid #e0c36a;padding:6px 10px}
.better,.win,.real{color:#0a7a2f;font-weight:600}.worse,.loss{color:#b00020;font-weight:600}
figure{margin:8px 0}svg{max-width:100%;height:auto}.scroll{overflow-x:auto;max-width:100%}
"""

# Click a header to sort its table by that column; numbers (the leading figure of a cell) sort
# numerically, other text alphabetically; a second click reverses.
_JS = """
document.querySelectorAll("table.sortable th").forEach(function(th, col){
  th.addEventListener("click", function(){
    var table = th.closest("table"), body = table.tBodies[0];
    var asc = !th.classList.contains("asc");
    table.querySelectorAll("th").forEach(function(h){ h.classList.remove("asc", "desc"); });
    th.classList.add(asc ? "asc" : "desc");
    var key = function(tr){ var t = tr.cells[th.cellIndex].textContent.trim();
      var n = parseFloat(t.replace("\u2212", "-")); return isNaN(n) ? t.toLowerCase() : n; };
    Array.from(body.rows).sort(function(a, b){
      var x = key(a), y = key(b);
      var c = (typeof x === typeof y) ? (x < y ? -1 : x > y ? 1 : 0) : (typeof x === "number" ? -1 : 1);
      return asc ? c : -c;
    }).forEach(function(tr){ body.appendChild(tr); });
  });
});
"""


def render_html(report: Report, title: str = "promptopt report") -> str:
    """One self-contained page: inline styles, inline SVG plot, inline sorting script, no URL at all."""
    esc = html.escape
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{esc(title)}</title>"
             f"<style>{_CSS}</style></head><body><h1>{esc(title)}</h1>"]  # fmt: skip
    for w in report.warnings:
        parts.append(f"<p class='warn'>WARNING: {esc(w)}</p>")
    settings = report.settings
    parts.append(
        f"<p class='note'>95% intervals: Wilson for accuracy, paired bootstrap over items for differences "
        f"({settings.bootstrap_resamples} resamples, seed {settings.seed}). Built from the "
        "results store alone; per-example drill-down: <code>promptopt report RUN --format examples</code>.</p>"
    )
    figure, forest = pareto_figure(report, "svg"), forest_figure(report, "svg")
    shown_forest = False
    for section in sections(report):
        parts.append(_html_table(section))
        if figure and section.title.startswith("Pareto"):
            parts.append(f"<figure>{inline_svg(figure)}</figure>")
        if forest and section.title.startswith("Leaderboard") and not shown_forest:
            parts.append(f"<figure>{inline_svg(forest)}</figure>")  # every task's panel, after the first table
            shown_forest = True
    parts.append(f"<script>{_JS}</script></body></html>\n")
    return "\n".join(parts)


def _html_table(section: Section) -> str:
    esc = html.escape
    head = "".join(f"<th>{esc(h)}</th>" for h in section.headers)
    rows = []
    for row in section.body:
        cells = "".join(
            f"<td class='{esc(c.replace(' ', '-'))}'>{esc(c)}</td>"
            if c in ("better", "worse", "win", "loss", "real")
            else f"<td>{esc(c)}</td>"
            for c in row
        )
        rows.append(f"<tr>{cells}</tr>")
    note = f"<p class='note'>{esc(section.note)}</p>" if section.note else ""
    return (
        f"<h2>{esc(section.title)}</h2><div class='scroll'><table class='sortable'><thead><tr>{head}</tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table></div>{note}"
    )


def load(source: str, run_id: str | None = None) -> tuple[pd.DataFrame, pd.DataFrame, list[str], list[dict]]:
    """Records, compile costs, warnings (overlap, early stop) and runs (id, status, created) of a
    run folder or storage URL (every run in it, or `run_id`'s)."""
    store, found = open_source(source)
    known = store.runs()
    if run_id and run_id not in set(known.run_id):
        listed = ", ".join(known.run_id) or "none"
        raise UserError(f"The store at {source} has no run {run_id!r}; its runs are: {listed}.")
    run_id = run_id or found
    statuses = store.statuses()
    runs = [
        {"run_id": r.run_id, "created_at": r.created_at, **statuses.get(r.run_id, {})}
        for r in known.itertuples()
        if run_id is None or r.run_id == run_id
    ]
    records = store.records(run_id)
    from promptopt import __version__

    newer = store.newer_version(__version__)
    warnings = [f"this store was written by promptopt {newer}, newer than this {__version__}: what that version added "
                "is not shown"] if newer else []  # fmt: skip
    warnings += overlap_warnings(store, run_id) + stop_warnings(store, run_id) + context_warnings(records)
    warnings += mismatches(store.manifests(run_id))
    return records, store.compile_costs(run_id), warnings, runs


def report(
    source: str, *, b: int = 10_000, seed: int = 0, local_usd_per_mtok: float = 0.0, local_usd_per_hour: float = 0.0,
    run_id: str | None = None,
    equivalence_margin: float | None = None, pareto_cost: str = "inference", alpha: float = stats.ALPHA,
) -> Report:
    """The typed report of a run folder or storage URL (every run in it, or `run_id`'s), with the
    store's own warnings (overlap, early stops) first."""
    records, compiles, warnings, runs = load(source, run_id)
    store, found = open_source(source)
    from promptopt.sections import registered

    checks = store.judge_checks(run_id or found)
    names = {"choices", *(name for plugin in registered() for name in plugin.reads)}
    tables = {name: store.table(name, run_id or found) for name in sorted(names)}
    if equivalence_margin is not None and not 0 < equivalence_margin < 1:
        raise UserError(f"The equivalence margin is a share between 0 and 1 (0.02 for 2 points), not {equivalence_margin}.")
    if not 0 < alpha < 0.5:
        raise UserError(f"The test level alpha is a probability between 0 and 0.5 (0.05 for 5%), not {alpha:g}.")
    if pareto_cost not in stats.PARETO_COSTS:
        raise UserError(f"Unknown Pareto cost (--pareto-cost) {pareto_cost!r}; valid: inference (the task model's calls) or all "
                        "(also judging, compiles and preparation).")  # fmt: skip
    built = build(records, compiles, b=b, seed=seed, local_usd_per_mtok=local_usd_per_mtok,
                  local_usd_per_hour=local_usd_per_hour, runs=runs,
                  judge_checks=checks, tables=tables, equivalence_margin=equivalence_margin, pareto_cost=pareto_cost,
                  alpha=alpha)  # fmt: skip
    built.warnings = warnings + built.warnings
    return built


def check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise UserError(f"Unknown report format {fmt!r}; valid formats are {', '.join(FORMATS)}.")


def examples_csv(source: str, run_id: str | None = None) -> str:
    """One CSV line per scored example: the drill-down behind every figure."""
    records, *_ = load(source, run_id)
    return records.reindex(columns=EXAMPLE_FIELDS).to_csv(index=False)


def save(built: Report, fmt: str, output: Path, figures: str | None = None) -> list[Path]:
    """Write a built report to `output` (md and html: the Pareto plot beside it; `figures` pdf or
    svg: the forest, Pareto and anytime figures too, styled for a paper); every path written."""
    output.parent.mkdir(parents=True, exist_ok=True)  # a new folder for the report is made, as for run folders
    written = []
    figure_name = None
    if fmt in ("md", "html") and built.pareto:
        for ext in ("png", "svg"):
            path = output.with_name(f"{output.stem}.pareto.{ext}")
            path.write_bytes(pareto_figure(built, ext))
            written.append(path)
        figure_name = written[-1].name
    output.write_text(render_report(built, fmt, figure_name=figure_name))
    for name, draw in FIGURES.items() if figures else ():  # vector figures for a paper, beside the report
        drawn = draw(built, figures, paper=True)
        if drawn is not None:
            path = output.with_name(f"{output.stem}.{name}.{figures}")
            path.write_bytes(drawn)
            written.append(path)
    return [output, *written]


def render_report(report: Report, fmt: str, figure_name: str | None = None) -> str:
    if fmt == "json":
        return report.to_json()
    if fmt == "csv":
        return pd.DataFrame([r.model_dump() for r in report.rows], columns=ROW_FIELDS).to_csv(index=False)
    if fmt == "html":
        return render_html(report)
    if fmt == "latex":
        from promptopt.latex import render_latex

        return render_latex(report)
    warn = "".join(f"WARNING: {w}\n\n" for w in report.warnings)
    return warn + render_text(report, markdown=fmt == "md", figure=figure_name)


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


def context_warnings(records: pd.DataFrame) -> list[str]:
    """One sentence per config whose prompts were too long for the model on some items (recorded
    as errors of their own kind: left out of scores, never asked again)."""
    from promptopt.errors import CONTEXT_ERROR

    if records.empty or "error" not in records:
        return []
    long = records[records["error"].fillna("").str.startswith(CONTEXT_ERROR)]
    return [
        f"{_display(model)} · {task} · {config}: {len(g)} prompts were longer than the model's context window (not "
        "scored, not asked again); fewer or shorter demos, or a model with a longer window, would answer them"
        for (model, task, config), g in long.groupby(["model", "task", "config_id"], sort=True)
    ]


def stop_warnings(store: Store, run_id: str | None) -> list[str]:
    """One sentence per run whose last invocation stopped early (budget reached, too many errors)."""
    return [f"run {rid} is incomplete: {reason}" for rid, reason in sorted(store.stop_reasons(run_id).items())]
