"""Robustness probes paired with their source items, and the robust ceiling (right on every probe too)."""

from __future__ import annotations

import pandas as pd

from promptopt import stats
from promptopt.estimators import MIN_PAIRED, wilson
from promptopt.probes import PAIRED
from promptopt.records import typed
from promptopt.sections import ReportSection, no_tables, register, rows_of
from promptopt.stats import answered, paired
from promptopt.tables import CONFIG_HEADERS, Row, Section, ci, config_cells, pct, pts, tabulate


class Robustness(Row):
    """One probe of one config against its source items (promptopt.probes)."""

    run_id: str
    model: str
    task: str  # the source task (for language: the group's first language)
    strategy: str
    config_id: str
    split: str
    probe: str  # negation, partialK, nota, shuffle[...], language:CODE
    n: int  # source items paired
    source_score: float | None
    probe_score: float | None
    diff: float | None  # probe − source, paired by item
    ci_low: float | None
    ci_high: float | None
    yes_score: float | None = None  # negation: the "is the correct option the answer?" half
    no_score: float | None = None  # negation: the "is a distractor the answer?" half
    retained: float | None = None  # partial: probe score / full score
    consistency: float | None = None  # shuffle: same option text under every order; language: same letter
    consistency_ci_low: float | None = None
    consistency_ci_high: float | None = None
    orders: int | None = None  # versions compared for consistency, the original included


class RobustCeiling(Row):
    """Per model and task with probes: the ceiling config's robust score, and the robust choice."""

    run_id: str
    model: str
    task: str
    config_id: str  # chosen on val by the plain score
    ceiling_score: float | None
    robust_score: float | None  # its test items right on the item and on every probe that ran
    robust_ci_low: float | None
    robust_ci_high: float | None
    robust_n: int
    robust_config_id: str | None  # chosen on val by the robust score
    robust_choice_score: float | None
    robust_choice_ci_low: float | None
    robust_choice_ci_high: float | None


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
    part = typed(records)
    for task, g in part.groupby("task", sort=True):
        sample = next((e for e in g["extras"] if e.language), None)
        lang = sample.language if sample else None
        if lang:
            out[task] = (lang["group"], lang["code"])
    return out


def robustness(records: pd.DataFrame, b: int = 10_000, seed: int = 0) -> pd.DataFrame:
    """Per (run, model, source task, config, split) and probe: the probe's score on the items whose
    source was answered, the source items' own score there, the paired difference (probe − source,
    bootstrap over source items) and, per probe, what it adds: negation's two halves, partial's
    share of the score retained, shuffle's consistency, the language pair's answer agreement."""
    part = answered(typed(records))
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
        texts = by_source["extras"].apply(lambda es: [e.answer_text for e in es])
        orig = s.set_index("example_id")["extras"].map(lambda e: e.answer_text)
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
        return " ".join(extras.images or [])

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
    part = _per_source(typed(records))
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
    chosen = stats.select_configs(summary)
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


def _robustness_sections(report) -> list[Section]:
    def extra(r) -> str:
        if r.probe in ("negation", "organ"):
            return f"yes-half {pct(r.yes_score)}, no-half {pct(r.no_score)}; pair = both right"
        if r.probe.startswith("partial"):
            return f"{pct(r.retained)}% of the full-case score retained"
        if r.probe == "noimage":
            return f"{pct(r.retained)}% of the imaged score reached blind"
        if r.consistency is not None:
            what = "same option text under all orders" if r.probe.startswith("shuffle") else "same letter in both languages"
            return f"{ci(r.consistency, r.consistency_ci_low, r.consistency_ci_high)} {what} ({r.orders} versions)"
        return ""

    return tabulate(
        report.robustness,
        "Robustness probes (paired with their source items)",
        [*CONFIG_HEADERS, "probe", "items", "unprobed %", "probed %", "probed − unprobed [95% CI]",
         "what else"],
        lambda r: [
            *config_cells(report, r), r.probe, str(r.n),
            pct(r.source_score), pct(r.probe_score), ci(r.diff, r.ci_low, r.ci_high, pts), extra(r),
        ],
        "negation: two yes/no questions per item (is the correct option the answer? is a distractor?), the "
        "probed score counts a pair only when both are right; partialK: the stem cut to its first K% of words; "
        "nota: the correct option replaced by 'None of the other options'; shuffle: mean score under the "
        "shuffled orders, consistency with the original order included; language:C: the same cases in "
        "language C against the first language of the group; noimage: the question without its image; organ: "
        "'is this an image of the <its organ>?' and of another organ, a pair counts when both are right. Paired "
        "bootstrap over the source items.",
    )


register(ReportSection("robustness", Robustness, lambda i: rows_of(robustness(i.records, b=i.b, seed=i.seed)),
                       _robustness_sections, shown=90, stored=14, doc=__doc__))
register(ReportSection("robust", RobustCeiling, lambda i: rows_of(robust_ceilings(i.records, i.summary)), no_tables,
                       shown=32, stored=15, doc=__doc__))  # shown in the leaderboard's columns
