"""`promptopt search`: one Optuna study per (model, task) over configs, an ε-optimal, cost-aware
choice on val, then the choice and the baseline on test.

Every trial is one config, readied once (prepared, compiled on train). The configs are scored
round by round on a growing prefix of val (`rung0` examples, then `growth` times as many, up to
all of val), and after each round promptopt.selection's successive elimination drops those
that cannot be chosen: worse than another beyond doubt, or unable to beat a cheaper config by
more than ε. The search stops when one is left or all are within ε of each other; with
probability at least 1 − δ (as far as the normal bounds hold; benchmarks/selection.py
measures it) the choice is within ε of the best config, and the cheapest among those within ε.
Rounds are prefixes of one fixed order, so a round only scores the examples not yet scored,
and the store's records make every repeat free. Items whose LM call failed are left out of
every score, as in reports. Each round adds a point to the anytime curve (store table
`anytime`): the calls and dollars spent so far, compiles included, and the config the search
would choose then, overall and per optimizer.

The study lives in Optuna's own storage — by default the run's SQL database — with two
objectives, val score (up) and cost per example (down; USD, or LM calls for free models).
Trials a killed process of this machine left running are failed on restart and their configs
queued again; a second worker pointed at the same storage and run shares the study, each worker
eliminating among the configs it holds (a trial left running by a dead worker on another
machine stays running until that machine restarts the search). After the search, the chosen
config (with `--objective pareto`, every config of the front) and the fixed baseline are scored
on test: test is never seen before the choice.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from promptopt.config import parse_config
from promptopt.errors import UserError
from promptopt.options import DEFAULT_OPTIMIZERS, DEFAULT_SPACE  # noqa: F401  (benchmarks read them here)
from promptopt.pipeline import Bench, RunContext
from promptopt.runplan import RunPlan, RunResult, search_space, serves, validate_plan
from promptopt.scoring import Note, Progress
from promptopt.selection import Arm, Elimination, Rule
from promptopt.study import (
    Heartbeat,
    fail_dead_trials,
    optuna_storage,
    queued_trials,
    set_attr,
    taken_by_another,
    tell,
    until_finished,
)


@dataclass
class SearchSettings:
    trials: int | None = None  # configs to finish per (model, task); None: all of them
    rung0: int = 20  # val examples every config is first scored on
    growth: int = 3  # each round scores this many times more
    seed: int = 0
    demo_sets: int = 1  # each `bootstrap` without a seed is tried with seeds 0..demo_sets-1
    rule: Rule = field(default_factory=Rule)  # ε, δ and the objective (promptopt.selection)
    max_cost_per_example: float | None = None  # USD: configs estimated above it are never called
    max_calls_per_example: float | None = None  # LM calls: the same cap, for free models

    @classmethod
    def of(cls, plan: RunPlan) -> SearchSettings:
        """The settings a plan's search options give (ε in points there, a fraction here)."""
        return cls(
            trials=plan.trials, rung0=plan.rung0, growth=plan.growth, seed=plan.seed, demo_sets=plan.demo_sets,
            rule=Rule(plan.epsilon / 100, plan.delta, plan.objective), max_cost_per_example=plan.max_cost_per_example,
            max_calls_per_example=plan.max_calls_per_example,
        )  # fmt: skip


def search(
    plan: RunPlan,
    settings: SearchSettings,
    on_progress: Callable[[Progress | Note], None] | None = None,
) -> RunResult:
    """The search's choice and test scores, per model and task; progress and messages go to
    `on_progress` (Progress and Note events), nothing is printed. A judged task is judged as in a
    run; a probe task is not searched on its own: the configs its source task scores on test (the
    choice and the baseline) are scored on the probe's test items too, so its robust ceiling reads."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = search_space(plan, settings.demo_sets)
    baseline = parse_config("baseline", "none", plan.programs_dirs)
    if any(p.partition(":")[0] == "language" for p in plan.probes):
        raise UserError(
            "A search chooses each task's config on its own, so the language probe (one config on two languages) "
            "cannot pair them; use `promptopt run` with --probe language, or drop it."
        )
    tasks, models, _, overlap = validate_plan(plan, configs=[baseline])
    by_id = {c.id: c for c in space}
    from promptopt.logprobs import check_model, check_reasoning_effort

    for cfg in space:  # what each config needs of each model, before any call
        for model in models:
            check_model(model, plan.catalog.strategy(cfg.strategy).needs, cfg.strategy)
            if cfg.knobs.get("reasoning_effort"):
                check_reasoning_effort(model, cfg.id)
    searched = [t for t in tasks if "~" not in t.name]
    spaces = {task.name: {cid: c for cid, c in by_id.items() if serves(c, task, plan)} for task in searched}
    for task in searched:
        if not spaces[task.name]:
            raise UserError(
                f"No strategy in the space serves task {task.name!r} (answer type "
                f"{task.spec.answer.type}); add one with --strategy, e.g. --strategy cot."
            )
    ctx = RunContext.open(plan, on_progress, overlap)
    storage = optuna_storage(ctx.url)
    # what a search scores depends on its pruning: no per-config expectation to list as missing
    chosen_configs: list[dict] = []
    programs: dict = {}
    with ctx.noted({"configs": [], "items": {}}) as stopped, ctx.models(models, tasks, by_id.values()) as each:
        for benches in each:
            for task in searched:
                bench = benches[task.name]
                space_of = with_efforts(spaces[task.name], bench.model, plan)
                tested = _search_one(ctx, bench, space_of, settings, storage)
                for probed in (b for name, b in benches.items() if name.partition("~")[0] == task.name):
                    _test(ctx, probed, [c for c in tested if serves(c, probed.task, plan)], storage)
                chosen_configs.append({"model": bench.model.identity, "task": task.name, "config_id": tested[1].id})
            programs |= {(b.model.identity, b.task.name, cid): p for b in benches.values() for cid, p in b.saved.items()}
    return RunResult(plan.run_id, ctx.run_dir, ctx.url, stopped=stopped.get("reason"), chosen=chosen_configs,
                     programs=programs)  # fmt: skip


def _search_one(ctx: RunContext, bench: Bench, space_of: dict, settings: SearchSettings, storage) -> list:
    """One (model, task): the study over `space_of` on val, its choice (with the `pareto` objective,
    its front), then those configs and the baseline on test; returns the configs chosen."""
    import optuna

    space_of = _within_cap(ctx, bench, space_of, settings)
    study = optuna.create_study(
        study_name=f"{ctx.run_id}|{bench.model.identity}|{bench.task.name}", storage=storage,
        directions=["maximize", "minimize"], load_if_exists=True,
    )  # fmt: skip
    until_finished(study, functools.partial(_study_loop, study, space_of, settings, bench), say=ctx.say)
    chosen = choose(study, space_of)
    if chosen is None:
        raise UserError(f"No config was left on val for {bench.model.name} on {bench.task.name}.")
    picks = [chosen, *(c for c in front(study, space_of) if c != chosen)] if settings.rule.objective == "pareto" else [chosen]
    rule = settings.rule
    ctx.store.set_choice(ctx.run_id, bench.model.identity, bench.task.name, picks,
                         {"epsilon": rule.epsilon, "delta": rule.delta, "objective": rule.objective})  # fmt: skip
    pick = space_of[chosen]
    ctx.say(f"Chosen on val for {bench.model.name} on {bench.task.name}: {pick.strategy}/{pick.optimizer} ({chosen})"
            + (f"; its front: {', '.join(picks)}." if len(picks) > 1 else "."))  # fmt: skip
    baseline = parse_config("baseline", "none", ctx.plan.programs_dirs)
    tested = [baseline, *(space_of[c] for c in picks)]
    _test(ctx, bench, tested, storage)
    return tested


def _within_cap(ctx: RunContext, bench: Bench, space_of: dict, settings: SearchSettings) -> dict:
    """The configs whose estimated cost per example is within --max-cost-per-example (USD) and
    --max-calls-per-example: the others are said and never called."""
    if settings.max_cost_per_example is None and settings.max_calls_per_example is None:
        return space_of
    from promptopt.dryrun import per_example

    kept = {}
    if settings.max_cost_per_example is not None and _unpriced(ctx, bench, space_of):
        ctx.say(f"{bench.model.name} has no known price, so --max-cost-per-example cannot apply to it; "
                "--max-calls-per-example caps calls instead.")  # fmt: skip
    for cid, cfg in space_of.items():
        est = per_example(ctx.plan, bench.task, cfg, bench.model)
        usd, calls = est["cost_usd"], est["calls"]
        over = []
        if settings.max_calls_per_example is not None and calls > settings.max_calls_per_example:
            over.append(f"{calls:g} LM calls per example, above --max-calls-per-example {settings.max_calls_per_example:g}")
        if settings.max_cost_per_example is not None and usd is not None and usd > settings.max_cost_per_example:
            over.append(f"about ${usd:.6f} per example, above --max-cost-per-example {settings.max_cost_per_example:g}")
        if over:
            ctx.say(f"Not searched on {bench.task.name}: {cfg.strategy}/{cfg.optimizer} ({cid}): {'; '.join(over)}.")
        else:
            kept[cid] = cfg
    if not kept:
        raise UserError(
            f"Every config of the space costs more per example than the cap allows for {bench.model.name} on "
            f"{bench.task.name}; raise --max-cost-per-example / --max-calls-per-example, or add a cheaper strategy."
        )
    return kept


def _unpriced(ctx: RunContext, bench: Bench, space_of: dict) -> bool:
    from promptopt.dryrun import per_example

    first = next(iter(space_of.values()))
    return per_example(ctx.plan, bench.task, first, bench.model)["cost_usd"] is None


def _test(ctx: RunContext, bench: Bench, configs: list, storage) -> None:
    """Scoring on test, shared out the same way: one trial per config in a study of its own, and
    waiting for the test scoring other workers still run."""
    import optuna

    tested = optuna.create_study(
        study_name=f"{ctx.run_id}|{bench.model.identity}|{bench.task.name}|test", storage=storage,
        direction="maximize", load_if_exists=True,
    )  # fmt: skip
    until_finished(tested, functools.partial(_test_loop, tested, configs, bench), say=ctx.say)


def with_efforts(space: dict, model, plan: RunPlan) -> dict:
    """For a reasoning model, each config also at every reasoning effort (low, medium, high),
    unless the configs already name efforts; other models search the space as it is."""
    from promptopt.logprobs import supports_reasoning
    from promptopt.registry import REASONING_EFFORTS

    if not supports_reasoning(model) or any("reasoning_effort" in c.knobs for c in space.values()):
        return space
    out = dict(space)
    for cfg in space.values():
        for effort in REASONING_EFFORTS:
            variant = replace(cfg, knobs=cfg.knobs | {"reasoning_effort": effort})
            out[variant.id] = variant
    return out


def _claim(study, trial, config_id: str) -> bool:
    """Whether this trial is the one that scores its config: two workers may queue the same config
    at once; the lowest-numbered trial of it that has not failed wins, the others are failed."""
    from optuna.trial import TrialState

    if taken_by_another(study, trial):
        return False  # the worker handed it too scores it and finishes it
    same = [
        t.number
        for t in study.get_trials(deepcopy=False)
        if t.params.get("config") == config_id and t.state != TrialState.FAIL
    ]
    if min(same, default=trial.number) < trial.number:
        set_attr(trial, "duplicate", True)
        tell(study, trial, state=TrialState.FAIL)
        return False
    return True


def _test_loop(study, configs, bench: Bench):
    """Score each config on test in a trial of its own, so that workers share the work."""
    import optuna
    from optuna.trial import TrialState

    by_id = {c.id: c for c in configs}
    dist = optuna.distributions.CategoricalDistribution(sorted(by_id))
    fail_dead_trials(study)
    trials = study.get_trials(deepcopy=False)
    started = {t.params.get("config") for t in trials if t.state != TrialState.FAIL}
    for cid in by_id:
        if cid not in started:
            study.enqueue_trial({"config": cid}, skip_if_exists=True)
    with Heartbeat(study) as beat:
        for trial in queued_trials(study, dist, beat):
            cfg = by_id.get(trial.params["config"])
            if cfg is None or not _claim(study, trial, cfg.id):
                if cfg is None:
                    tell(study, trial, state=TrialState.FAIL)
                continue
            program = bench.ready(cfg)
            test = bench.score(program, cfg, "test")
            bench.save(program, cfg)
            tell(study, trial, test.score or 0.0)


def _study_loop(study, by_id, settings: SearchSettings, bench: Bench):
    """This worker's configs of the study: every one readied, then scored round by round on a
    growing prefix of val while promptopt.selection's elimination drops the ones that cannot be
    chosen; each round ends with a point of the anytime curve."""
    import optuna
    from optuna.trial import TrialState

    fail_dead_trials(study)
    trials = study.get_trials(deepcopy=False)
    taken = {t.params.get("config") for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)}
    queued = {t.params.get("config") for t in trials if t.state in (TrialState.WAITING, TrialState.RUNNING)}
    order = sorted(by_id)
    random.Random(settings.seed).shuffle(order)
    limit = settings.trials if settings.trials is not None else len(order)
    todo = [c for c in order if c not in taken and c not in queued][: max(0, limit - len(taken) - len(queued))]
    for cid in todo:
        study.enqueue_trial({"config": cid}, skip_if_exists=True)  # a second worker may queue the same
    dist = optuna.distributions.CategoricalDistribution(sorted(by_id))
    val = bench.task.examples("val", bench.ctx.plan.limit)
    rungs = _rungs(len(val), settings)
    with Heartbeat(study) as beat:
        active = {}
        for trial in queued_trials(study, dist, beat):
            cfg = by_id.get(trial.params["config"])
            if cfg is None:  # queued by a worker with another space
                tell(study, trial, state=TrialState.FAIL)
                continue
            if _claim(study, trial, cfg.id):
                active[cfg.id] = (trial, cfg, bench.ready(cfg))
        if not active:
            return
        elim = Elimination(settings.rule, configs=len(active), rounds=len(rungs), survivors=sorted(active))
        arms: dict[str, Arm] = {}
        for step, size in enumerate(rungs):
            scored = {}
            for cid in elim.survivors:
                trial, cfg, program = active[cid]
                scored[cid] = bench.score(program, cfg, "val", val[:size], adaptive=True)  # the next rung depends on it
                set_attr(trial, "n", size)
            in_usd = any(s.usd > 0 for s in scored.values())  # one unit for every config compared
            for cid, s in scored.items():
                arms[cid] = Arm(cid, s.usd if in_usd else s.calls, s.items)
            before = set(elim.survivors)
            elim.step({c: arms[c] for c in elim.survivors})
            for cid in sorted(before - set(elim.survivors)):
                _stopped(study, bench, active[cid], arms[cid], size, elim.dropped[cid])
            _checkpoint(bench, step, size, elim, {c: arms[c] for c in elim.survivors}, by_id)
            if elim.settled({c: arms[c] for c in elim.survivors}):
                break
        chosen = elim.front(arms) if settings.rule.objective == "pareto" else [elim.choice(arms)]
        for cid in elim.survivors:
            trial, cfg, program = active[cid]
            set_attr(trial, "chosen", cid in chosen)
            value = float(arms[cid].items.mean()) if len(arms[cid].items) else 0.0
            tell(study, trial, [value, arms[cid].cost])
            bench.ctx.say(f"trial {trial.number}: {cfg.strategy}/{cfg.optimizer} val {100 * value:.1f}% on "
                          f"{len(arms[cid].items)}, {arms[cid].cost:.4g} per example"
                          + (" (chosen)" if cid in chosen else ""))  # fmt: skip
            bench.save(program, cfg)


def _stopped(study, bench: Bench, held, arm: Arm, size: int, why: str) -> None:
    from optuna.trial import TrialState

    trial, cfg, program = held
    value = float(arm.items.mean()) if len(arm.items) else 0.0
    set_attr(trial, "score_so_far", value)
    set_attr(trial, "why", why)
    tell(study, trial, state=TrialState.PRUNED)
    bench.ctx.say(f"trial {trial.number}: {cfg.strategy}/{cfg.optimizer} stopped at {size} val examples "
                  f"({100 * value:.1f}%): {why}")  # fmt: skip
    bench.save(program, cfg)


def _checkpoint(bench: Bench, step: int, size: int, elim: Elimination, arms: dict[str, Arm], space: dict) -> None:
    """One point of the anytime curve, after a round's eliminations: what the search has spent on
    this (model, task) so far (preparation, compiles and val of every config of its space, those
    a resumed or another worker's search scored too) and the config it would choose now — the
    search's own choice overall, the best of each optimizer's survivors per optimizer; stored, and
    said. (With several workers each writes the points of the configs it holds; a round's last
    writer keeps it.)"""
    ctx = bench.ctx
    recs = bench.records_all()
    comp = ctx.store.compile_costs(ctx.run_id)
    comp = comp[(comp.model == bench.model.identity) & (comp.task == bench.task.name)]
    optimizer = {cid: cfg.optimizer for cid, cfg in space.items()}
    points = []
    for group in ["*", *sorted({optimizer[c] for c in arms})]:
        mine = {c: a for c, a in arms.items() if group in ("*", optimizer[c])}
        if not mine:
            continue
        ids = set(space) if group == "*" else {c for c, o in optimizer.items() if o == group}
        spent = recs[recs.config_id.isin(ids) & recs.split.isin(["train", "val"])]
        paid = comp[comp.config_id.isin(ids)]
        best = elim.choice(arms) if group == "*" else Elimination(
            elim.rule, elim.configs, elim.rounds, survivors=sorted(mine)).choice(mine)  # fmt: skip
        points.append({
            "model": bench.model.identity, "task": bench.task.name, "optimizer": group, "step": step, "n": size,
            "lm_calls": int(spent.lm_calls.sum() + paid.lm_calls.sum()),
            "cost_usd": float(spent.cost_usd.sum() + paid.cost_usd.sum()),
            "config_id": best, "val_score": float(mine[best].items.mean()) if len(mine[best].items) else None,
        })  # fmt: skip
    if not points:
        return
    ctx.store.add_anytime(ctx.run_id, points)
    top = points[0]
    ctx.say(f"After {top['lm_calls']} LM calls (${top['cost_usd']:.4f}) on {size} val examples, {len(arms)} configs "
            f"left: best so far {top['config_id']} at {100 * (top['val_score'] or 0):.1f}%.")  # fmt: skip


def _rungs(n: int, s: SearchSettings) -> list[int]:
    out, size = [], max(1, s.rung0)
    while size < n:
        out.append(size)
        size *= max(2, s.growth)
    return [*out, n]


def choose(study, space: dict) -> str | None:
    """The config chosen on val among `space`: each worker's choice among the configs it held
    (promptopt.selection), and among those, the best on val, ties to the cheaper."""
    from optuna.trial import TrialState

    done = [
        t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.params.get("config") in space
    ]
    picked = [t for t in done if t.user_attrs.get("chosen", True)] or done
    if not picked:
        return None
    best = min(picked, key=lambda t: (-t.values[0], t.values[1], t.params["config"]))
    return best.params["config"]


def front(study, space: dict) -> list[str]:
    """The `pareto` objective's configs: every survivor a worker marked chosen."""
    from optuna.trial import TrialState

    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    picked = [t for t in done if t.params.get("config") in space and t.user_attrs.get("chosen")]
    return [t.params["config"] for t in sorted(picked, key=lambda t: (t.values[1], t.params["config"]))]
