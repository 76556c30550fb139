"""LLM judges: each judge's validation before it is trusted and its cost, beside human labels, agreement
between judges, and juries.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from promptopt import stats
from promptopt.estimators import kappa, wilson
from promptopt.sections import ReportSection, register, rows_of
from promptopt.stats import effective_jury, judge_vs_humans, krippendorff_alpha
from promptopt.tables import Row, Section, ci, display, money, pct, pts, run_label, tabulate


class JudgeValidation(Row):
    """How a judge did on the planted verdicts of a task before it graded, and what grading cost."""

    run_id: str
    task: str
    judge: str
    checks: int
    agreement: float
    agreement_ci_low: float
    agreement_ci_high: float
    kappa: float
    min_kappa: float
    trusted: bool
    kappa_ci_low: float | None = None  # items resampled with both their pairs (None for a check stored before)
    kappa_ci_high: float | None = None
    unreadable: int
    passed_own: int
    own: int
    failed_other: int
    other: int
    near_misses: int = 0  # plausible wrong answers graded (a distractor of the same question, a negated reference)
    failed_near: int = 0  # of those, failed as they should be
    near_kappa: float | None = None  # kappa on own references and near misses; None without near misses
    near_kinds: dict[str, int] = {}  # near misses by kind: distractor, same_label, number_swapped, negated
    # with human labels (judge.labels): promptopt.stats.judge_vs_humans; None without
    labelled: int | None = None  # answers with a human majority (ties left out)
    labels_agreement: float | None = None
    labels_kappa: float | None = None
    labels_macro_f1: float | None = None
    prevalence_bias: float | None = None  # the judge's pass rate minus the humans' majority's
    prevalence_ci_low: float | None = None
    prevalence_ci_high: float | None = None
    annotators: int | None = None
    human_human: float | None = None  # mean agreement between two annotators on the answers both labelled
    judge_human: float | None = None  # the judge's mean agreement with each annotator
    humans_at_or_below: float | None = None  # share of annotators agreeing with the others no more than the judge does
    below_humans: bool | None = None
    validation_calls: int
    validation_usd: float
    validation_tokens: int = 0
    graded: int
    cached: int
    grading_calls: int
    grading_tokens: int
    grading_usd: float


class JudgeAgreement(Row):
    run_id: str
    task: str
    judge_a: str
    judge_b: str
    n: int
    agreement: float
    kappa: float


class Jury(Row):
    """Two or more judges grading one task: how they were combined and how independent they are."""

    run_id: str
    task: str
    judges: int
    aggregate: str  # first, majority, mean or all (promptopt.tasks.JudgeSpec.aggregate)
    answers: int  # answers (with per-item rubrics: criteria of answers) graded by two or more of them
    krippendorff_alpha: float | None
    error_correlation: float | None  # mean pairwise correlation of their errors on the planted pairs
    effective_size: float | None  # judges / (1 + (judges - 1) * error_correlation)


def _or(value, default):
    """A judge check's field, or `default` where a check written before it existed has none (NaN in a frame)."""
    return default if value is None or (isinstance(value, float) and math.isnan(value)) else value


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
    part = stats.measured(records)
    graded: dict[tuple, dict] = {}
    for r in part.itertuples():
        for v in r.extras.judges or []:
            slot = graded.setdefault((r.run_id, r.task, v.get("judge")), {"graded": 0, "cached": 0} | dict.fromkeys(stats.USAGE, 0))
            slot["graded"] += 1
            slot["cached"] += bool(v.get("cached"))
            for k in stats.USAGE:
                slot[k] += v.get(k) or 0
    rows = []
    for c in (checks.to_dict(orient="records") if checks is not None and len(checks) else []):
        g = graded.get((c["run_id"], c["task"], c["judge"]), {"graded": 0, "cached": 0} | dict.fromkeys(stats.USAGE, 0))
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
    part = stats.measured(records)
    pairs: dict[tuple, list[tuple[bool, bool]]] = {}
    for r in part.itertuples():
        verdicts = [v for v in r.extras.judges or [] if v.get("judge")]
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


def juries(records: pd.DataFrame, checks: pd.DataFrame | None) -> pd.DataFrame:
    """Per (run, task) graded by two or more judges: how they were combined, Krippendorff's alpha
    over the answers they graded, the mean correlation of their errors on the planted validation
    pairs and the effective jury size it implies (Inspect's users found 6 judges acting as ~1.9)."""
    part = stats.measured(records)
    units: dict[tuple, list[list[bool]]] = {}
    for r in part.itertuples():
        by_criterion: dict = {}  # one unit per answer, or per criterion of its rubric
        for v in r.extras.judges or []:
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


def _kinds(kinds: dict[str, int]) -> str:
    """Near misses by kind, when there are several kinds: ' (12 same_label, 8 negated)'."""
    return f" ({', '.join(f'{n} {k}' for k, n in kinds.items())})" if len(kinds) > 1 else ""


def _judges_sections(report) -> list[Section]:
    out = tabulate(
        report.judges,
        "LLM judges: validation before trust, and their cost",
        ["task", "judge", "planted verdicts", "agreement % [95% CI]", "kappa [95% CI]", "near-miss kappa", "trusted",
         "own passed", "wrong failed", "near misses failed", "no verdict (validation)", "answers graded (cached)",
         "judge calls", "judge tokens", "judge $"],
        lambda r: [
            r.task + run_label(report, r.run_id), display(r.judge), str(r.checks),
            ci(r.agreement, r.agreement_ci_low, r.agreement_ci_high),
            f"{r.kappa:.2f}" + ("" if r.kappa_ci_low is None else f" [{r.kappa_ci_low:.2f}, {r.kappa_ci_high:.2f}]"),
            "—" if r.near_kappa is None else f"{r.near_kappa:.2f}",
            ("yes" if r.trusted else f"NO (a kappa < {r.min_kappa:g}): scores withheld"),
            f"{r.passed_own}/{r.own}", f"{r.failed_other}/{r.other}",
            "—" if not r.near_misses else f"{r.failed_near}/{r.near_misses}" + _kinds(r.near_kinds), str(r.unreadable),
            f"{r.graded} ({r.cached})", str(r.validation_calls + r.grading_calls),
            str(r.validation_tokens + r.grading_tokens),
            money(r.validation_usd + r.grading_usd),
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
    return out + tabulate(
        [r for r in report.judges if r.labelled],
        "Judges beside human labels",
        ["task", "judge", "answers", "agreement %", "kappa", "macro-F1", "prevalence bias pts [95% CI]", "annotators",
         "human–human %", "judge–human %", "humans at or below", "below humans"],
        lambda r: [
            r.task + run_label(report, r.run_id), display(r.judge), str(r.labelled), pct(r.labels_agreement),
            f"{r.labels_kappa:.2f}", f"{r.labels_macro_f1:.2f}", ci(r.prevalence_bias, r.prevalence_ci_low,
                                                                      r.prevalence_ci_high, pts),
            str(r.annotators or "—"), pct(r.human_human), pct(r.judge_human),
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


def _agreement_sections(report) -> list[Section]:
    return tabulate(
        report.judge_agreement,
        "Agreement between judges",
        ["task", "judge A", "judge B", "answers", "agreement %", "kappa"],
        lambda r: [r.task + run_label(report, r.run_id), display(r.judge_a), display(r.judge_b), str(r.n),
                   pct(r.agreement), f"{r.kappa:.2f}"],  # fmt: skip
        "Pass/fail of two judges on the same answers.",
    )


def _jury_sections(report) -> list[Section]:
    return tabulate(
        report.juries,
        "Judge juries",
        ["task", "judges", "aggregate", "answers", "Krippendorff's alpha", "error correlation", "effective size"],
        lambda r: [r.task + run_label(report, r.run_id), str(r.judges), r.aggregate, str(r.answers),
                   "—" if r.krippendorff_alpha is None else f"{r.krippendorff_alpha:.2f}",
                   "—" if r.error_correlation is None else f"{r.error_correlation:.2f}",
                   "—" if r.effective_size is None else f"{r.effective_size:.1f}"],  # fmt: skip
        "The judges that graded each answer, combined by the task's judge.aggregate (first: the first trusted "
        "judge's verdict; majority: more than half pass; mean of their scores; all must pass). Alpha: "
        "Krippendorff's, nominal, over the answers two or more graded. Error correlation: the mean pairwise "
        "correlation of the judges' errors on the planted validation pairs; effective size = judges / (1 + "
        "(judges − 1) × correlation): correlated judges add less than their number.",
    )


register(ReportSection("judges", JudgeValidation, lambda i: rows_of(judges(i.records, i.tables.get("judge_checks"))),
                       _judges_sections, shown=70, stored=10, reads=("judge_checks",), doc=__doc__))
register(ReportSection("judge_agreement", JudgeAgreement, lambda i: rows_of(judge_agreement(i.records)),
                       _agreement_sections, shown=71, stored=11, doc=__doc__))
register(ReportSection("juries", Jury, lambda i: rows_of(juries(i.records, i.tables.get("judge_checks"))), _jury_sections,
                       shown=72, stored=12, reads=("judge_checks",), doc=__doc__))
