"""Search: one Optuna study per (model, task) over configs, with successive halving on val.

Every trial is one config: compiled once (train), then scored on a prefix of val. A config
scored on the first `rung0` val examples goes on to the next rung (three times as many, then
all of val) only while it might still be on the cost-accuracy front: it is stopped when a
config already scored on all of val, at least as cheap, is better beyond doubt on the same
items — a one-sided paired test (`stats.clearly_worse`) at level `alpha` divided among the
configs it is compared with (Bonferroni). So a config whose true val score is at least every
cheaper finished config's is stopped at a rung with probability at most `alpha`, and over its
three rungs at most 3 `alpha` (the rungs are nested prefixes, so in practice far less:
`benchmarks/validity.py` measures 0.1–3.2% for the truly best config at alpha 0.02). Testing
only against the best-scoring finished config saves a few points of calls but, that config
being the maximum of several on the same items, stops a tied-best config in up to 12%. Rungs are
prefixes of one fixed order, so promotion only scores the examples not yet scored, and the
store's records make every repeat free. Items whose LM call failed are left out of every score,
as in reports.

The study lives in Optuna's own storage — by default the run's SQL database — with two
objectives, val score (up) and cost per example (down; USD, or LM calls for free models), so
its Pareto front is the frontier. Trials a killed process of this machine left running are
failed on restart and their configs queued again; a second worker pointed at the same storage
and run shares the study (a trial left running by a dead worker on another machine stays
running until that machine restarts the search). After the search, the config chosen on val (best, ties to the cheaper) and the fixed
baseline are scored on test: test is never seen before the choice.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable
from dataclasses import dataclass, replace

from promptopt import stats
from promptopt.config import parse_config
from promptopt.engine import (
    RunPlan,
    RunResult,
    budget_for,
    check_endpoint,
    compile_once,
    give_corpus,
    open_run,
    prepare,
    save_program,
    search_space,
    serves,
    stop_noted,
    validate_plan,
)
from promptopt.errors import UserError
from promptopt.models import build_lm
from promptopt.registry import get_strategy
from promptopt.scoring import Note, Progress, evaluate, note
from promptopt.session import adapter_for, endpoint, threads_for
from promptopt.study import Heartbeat, fail_dead_trials, optuna_storage, queued_trials, tell, until_finished

# What `promptopt search` tries when no --strategy is given (multiple-choice tasks).
DEFAULT_SPACE = [
    "predict",
    "cot",
    "self_consistency:n=3",
    "self_consistency:n=5",
    "choice_shuffle:n=3",
    "choice_shuffle:n=5",
    "verify_choices:batched=true",
    "knn_fewshot:k=3",
]
DEFAULT_OPTIMIZERS = ["none", "bootstrap"]


@dataclass
class SearchSettings:
    trials: int | None = None  # configs to finish per (model, task); None: all of them
    rung0: int = 20  # val examples every config is first scored on
    growth: int = 3  # each rung scores this many times more
    alpha: float = 0.02  # chance of stopping a config that is not worse, per rung
    seed: int = 0
    demo_sets: int = 1  # each `bootstrap` without a seed is tried with seeds 0..demo_sets-1


def search(
    plan: RunPlan,
    settings: SearchSettings,
    on_progress: Callable[[Progress | Note], None] | None = None,
) -> RunResult:
    """The search's choice and test scores, per model and task; progress and messages go to
    `on_progress` (Progress and Note events), nothing is printed."""

    def say(line: str) -> None:
        note(on_progress, line)

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = search_space(plan, settings.demo_sets)
    baseline = parse_config("baseline", "none", plan.programs_dirs)
    tasks, models, _, overlap = validate_plan(plan, configs=[baseline])
    for task in tasks:
        if getattr(task.answer_type, "primary_metric", None) == "judge":
            raise UserError(
                f"Task {task.name}'s primary metric is the judge, which a search does not call yet; use "
                "`promptopt run` (it validates and calls the judge), or a task whose primary metric is computed."
            )
    by_id = {c.id: c for c in space}
    from promptopt.logprobs import check_model, check_reasoning_effort

    for cfg in space:  # what each config needs of each model, before any call
        for model in models:
            check_model(model, get_strategy(cfg.strategy, plan.programs_dirs).needs, cfg.strategy)
            if cfg.knobs.get("reasoning_effort"):
                check_reasoning_effort(model, cfg.id)
    spaces = {task.name: {cid: c for cid, c in by_id.items() if serves(c, task, plan)} for task in tasks}
    for task in tasks:
        if not spaces[task.name]:
            raise UserError(
                f"No strategy in the search space serves task {task.name!r} (answer type "
                f"{task.spec.answer.type}); add one with --strategy, e.g. --strategy cot."
            )
    run_dir, store, url = open_run(plan, overlap)
    budget = budget_for(plan)
    storage = optuna_storage(url)
    # what a search scores depends on its pruning: no per-config expectation to list as missing
    chosen_configs: list[dict] = []
    with stop_noted(store, plan.run_id, {"configs": [], "items": {}}) as stopped:
        asked = plan.threads  # resolved per model: the embedded one and a hosted one differ
        for model in models:
            plan = replace(plan, threads=threads_for(asked, model))
            with endpoint(model, log=run_dir / "server.log", parallel=plan.threads) as live:
                lm, adapter = build_lm(live), adapter_for(live)
                check_endpoint(live, list(by_id.values()), plan)
                for task in tasks:
                    space_of = with_efforts(spaces[task.name], live, plan)
                    study = optuna.create_study(
                        study_name=f"{plan.run_id}|{live.identity}|{task.name}",
                        storage=storage,
                        directions=["maximize", "minimize"],
                        load_if_exists=True,
                    )
                    common = dict(task=task, model=live, lm=lm, adapter=adapter, store=store)
                    share = functools.partial(
                        _study_loop,
                        study,
                        space_of,
                        plan,
                        settings,
                        run_dir,
                        budget,
                        on_progress,
                        say,
                        **common,
                    )
                    until_finished(study, share, say=say)
                    chosen = choose(study, space_of)
                    if chosen is None:
                        raise UserError(f"No config finished on all of val for {model.name} on {task.name}.")
                    pick = space_of[chosen]
                    say(f"Chosen on val for {model.name} on {task.name}: {pick.strategy}/{pick.optimizer} ({chosen}).")
                    # Scoring on test is shared out the same way: one trial per config in a second study.
                    tested = optuna.create_study(
                        study_name=f"{plan.run_id}|{live.identity}|{task.name}|test",
                        storage=storage,
                        direction="maximize",
                        load_if_exists=True,
                    )
                    until_finished(  # and wait for the test scoring other workers still run
                        tested,
                        functools.partial(
                            _test_loop, tested, [baseline, pick], plan, run_dir, budget, on_progress, **common
                        ),
                        say=say,
                    )
                    chosen_configs.append({"model": live.identity, "task": task.name, "config_id": chosen})
    return RunResult(
        run_id=plan.run_id, run_dir=run_dir, storage=url, stopped=stopped.get("reason"), chosen=chosen_configs
    )


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


def _ready_program(cfg, plan, run_dir, budget, on_progress, *, task, model, lm, adapter, store):
    program = get_strategy(cfg.strategy, plan.programs_dirs).build(task, **cfg.knobs)
    give_corpus(program, plan, task, run_dir)
    prepare(
        program, task=task, model=model, lm=lm, adapter=adapter, config=cfg, run_id=plan.run_id, store=store,
        threads=plan.threads, on_progress=on_progress, budget=budget,
    )  # fmt: skip
    return compile_once(
        program, run_dir, plan, task=task, model=model, lm=lm, adapter=adapter, config=cfg, store=store, budget=budget
    )


def _claim(study, trial, config_id: str) -> bool:
    """Whether this trial is the one that scores its config: two workers may queue the same config
    at once; the lowest-numbered trial of it that has not failed wins, the others are failed."""
    from optuna.trial import TrialState

    same = [
        t.number
        for t in study.get_trials(deepcopy=False)
        if t.params.get("config") == config_id and t.state != TrialState.FAIL
    ]
    if min(same, default=trial.number) < trial.number:
        trial.set_user_attr("duplicate", True)
        study.tell(trial, state=TrialState.FAIL)
        return False
    return True


def _test_loop(study, configs, plan, run_dir, budget, on_progress, *, task, model, lm, adapter, store):
    """Score each config on test in a trial of its own, so that workers share the work."""
    import optuna
    from optuna.trial import TrialState

    by_id = {c.id: c for c in configs}
    dist = optuna.distributions.CategoricalDistribution(sorted(by_id))
    common = dict(task=task, model=model, lm=lm, adapter=adapter, store=store)
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
                    study.tell(trial, state=TrialState.FAIL)
                continue
            program = _ready_program(cfg, plan, run_dir, budget, on_progress, **common)
            examples = task.examples("test", plan.limit)
            evaluate(
                program, examples, config=cfg, split="test", run_id=plan.run_id, threads=plan.threads,
                on_progress=on_progress, budget=budget, **common,
            )  # fmt: skip
            save_program(program, run_dir, plan, config=cfg, task=task, model=model, store=store)
            test = _records(store, plan.run_id, model, task, cfg.id, [e.id for e in examples], split="test")
            tell(study, trial, stats.split_score(test)["score"] or 0.0)


def _study_loop(study, by_id, plan, settings, run_dir, budget, on_progress, say, *, task, model, lm, adapter, store):
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
    val = task.examples("val", plan.limit)
    rungs = _rungs(len(val), settings)
    common = dict(task=task, model=model, lm=lm, adapter=adapter, store=store)

    def score(program, cfg, size):
        evaluate(
            program, val[:size], config=cfg, split="val", run_id=plan.run_id, threads=plan.threads,
            on_progress=on_progress, budget=budget, **common,
        )  # fmt: skip
        return _measure(store, plan.run_id, model, task, cfg, val[:size])

    with Heartbeat(study) as beat:
        # Breadth first: every queued config on the first rung, then the promising ones further,
        # best first, so a strong config finishes early and weak ones are stopped at once.
        active = []
        for trial in queued_trials(study, dist, beat):
            cfg = by_id.get(trial.params["config"])
            if cfg is None:  # queued by a worker with another space
                study.tell(trial, state=TrialState.FAIL)
                continue
            if not _claim(study, trial, cfg.id):
                continue
            program = _ready_program(cfg, plan, run_dir, budget, on_progress, **common)
            first = score(program, cfg, rungs[0])
            trial.set_user_attr("n", rungs[0])
            active.append((trial, cfg, program, first))
        active.sort(key=lambda a: (-a[3][0], a[3][1]))
        for trial, cfg, program, (value, cost, items) in active:
            size = rungs[0]
            for nxt in rungs[1:]:
                if not _promising(study, items, cost, settings.alpha, store, plan.run_id, model, task, val):
                    break
                size = nxt
                value, cost, items = score(program, cfg, size)
                trial.set_user_attr("n", size)
            label = f"{cfg.strategy}/{cfg.optimizer}"
            if size == len(val):
                tell(study, trial, [value, cost])
                say(f"trial {trial.number}: {label} val {100 * value:.1f}% on {size}, {cost:.4g} per example")
            else:
                trial.set_user_attr("score_so_far", value)
                tell(study, trial, state=TrialState.PRUNED)
                say(
                    f"trial {trial.number}: {label} stopped at {size} val examples ({100 * value:.1f}%): cannot reach the front"
                )
            save_program(program, run_dir, plan, task=task, model=model, config=cfg, store=store)


def _rungs(n: int, s: SearchSettings) -> list[int]:
    out, size = [], max(1, s.rung0)
    while size < n:
        out.append(size)
        size *= max(2, s.growth)
    return [*out, n]


def _records(store, run_id, model, task, config_id, ids, split="val", recs=None):
    """One config's records of `ids` (`recs`: the run's records, when the caller read them already)."""
    recs = store.records(run_id) if recs is None else recs
    return recs[
        (recs.model == model.identity) & (recs.task == task.name) & (recs.config_id == config_id)
        & (recs.split == split) & recs.example_id.isin(set(ids))
    ]  # fmt: skip


def _item_scores(store, run_id, model, task, config_id, ids, split="val", recs=None):
    """Scores of the answered items (errors left out), indexed by example id."""
    return stats.answered_scores(_records(store, run_id, model, task, config_id, ids, split, recs))


def _measure(store, run_id, model, task, cfg, examples) -> tuple[float, float, object]:
    """Val score over the answered items, cost per item attempted (USD, or LM calls for free
    models; failed calls were paid for too) and the item scores, for the paired stopping rule."""
    mine = _records(store, run_id, model, task, cfg.id, [e.id for e in examples])
    n = max(len(mine), 1)
    cost = mine.cost_usd.sum() / n if mine.cost_usd.sum() > 0 else mine.lm_calls.sum() / n
    items = stats.answered_scores(mine)
    score = stats.split_score(mine)["score"]
    return 0.0 if score is None else score, float(cost), items


def _promising(study, items, cost: float, alpha: float, store, run_id, model, task, val) -> bool:
    """Could this config still be on the front: is no finished config that is at least as cheap
    better than it beyond doubt on the items both answered? (alpha is shared among those compared.)"""
    from optuna.trial import TrialState

    cheaper = [
        t.params["config"]
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if t.values[1] <= cost
    ]
    ids = [e.id for e in val]
    recs = store.records(run_id) if cheaper else None  # read once for every comparison
    for config_id in cheaper:
        other = _item_scores(store, run_id, model, task, config_id, ids, recs=recs)
        if stats.clearly_worse(items, other, alpha / len(cheaper)):
            return False
    return True


def choose(study, space: dict) -> str | None:
    """The config chosen on val among `space`: best score over all of val, ties to the cheaper."""
    from optuna.trial import TrialState

    done = [
        t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.params.get("config") in space
    ]
    if not done:
        return None
    best = min(done, key=lambda t: (-t.values[0], t.values[1], t.params["config"]))
    return best.params["config"]
