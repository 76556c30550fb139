"""The library API: everything the `promptopt` command does, as functions returning typed results.

    import promptopt
    log = promptopt.run(models=["local/gemma-3-270m"], tasks=["medqa"], strategies=["baseline", "cot"])
    log.ceilings[0].ceiling_score
    promptopt.report("results/run-…").leaderboard

`run` and `search` take the same options where they mean the same thing (a sweep file, limits,
budgets, folders, threads, storage) with the same defaults; progress and messages go to
`on_event` (promptopt.scoring.Progress and Note events); nothing here prints.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from promptopt import __version__, engine
from promptopt.errors import UserError
from promptopt.results import ChosenConfig, ConfigSummary, Report, RunLog

# Examples per split when none is given: run takes a first look (engine.DEFAULT_LIMIT, 20); search
# needs all of val for its pruning to have rungs, and compile scores its program on all of val.
DEFAULT_LIMIT = {"run": engine.DEFAULT_LIMIT, "search": None}


def plan(
    mode: str = "run",
    *,
    sweep: str | Path | None = None,
    models: list[str] | None = None,
    tasks: list[str] | None = None,
    strategies: list[str] | None = None,
    optimizers: list[str] | None = None,
    api_base: str | None = None,
    limit: int | None = None,
    splits: list[str] | tuple[str, ...] | None = None,
    seed: int | None = None,
    threads: int | None = None,
    out: str | Path | None = None,
    storage: str | None = None,
    tasks_dirs: list[Path] | None = None,
    programs_dirs: list[Path] | None = None,
    max_calls: int | None = None,
    max_cost: float | None = None,
    max_error_rate: float | None = None,
    rpm: float | None = None,
    expect_accuracy: float = 0.5,
    allow_overlap: bool = False,
    references: bool = True,
    judge_models: list[str] | None = None,
    judge_api_base: str | None = None,
    min_judge_kappa: float | None = None,
    probes: list[str] | None = None,
    corpus: str | Path | None = None,
):
    """A RunPlan from options and a sweep file (an option given here wins over the file's value).

    Defaults, for run and search alike: the embedded model, MedQA, seed 0, results/ for run
    folders, at most half of the examples failing. What differs is what the two mean by them:
    run scores baseline and cot zero-shot on 20 examples per split; search explores
    promptopt.searcher.DEFAULT_SPACE with the optimizers none and bootstrap on all of val (its
    rungs need them), then scores its choice on test, so `splits` is refused there.
    """
    from promptopt.engine import DEFAULT_STRATEGIES, RunPlan
    from promptopt.judge import DEFAULT_MIN_KAPPA
    from promptopt.sweep import Sweep, load_sweep

    if mode not in ("run", "search"):
        raise UserError(f"Unknown mode {mode!r}; valid modes are run and search.")
    file = load_sweep(Path(sweep)) if sweep else Sweep()
    if mode == "search" and (splits or file.splits):
        raise UserError("search chooses on val and scores its choice on test; drop splits (it is for run).")

    def pick(given, from_file, default):
        return given if given is not None else from_file if from_file is not None else default

    if mode == "search":
        from promptopt.searcher import DEFAULT_OPTIMIZERS, DEFAULT_SPACE

        space, opts = list(DEFAULT_SPACE), list(DEFAULT_OPTIMIZERS)
    else:
        space, opts = list(DEFAULT_STRATEGIES), ["none"]
    return RunPlan(
        models=list(models or file.models or [engine.DEFAULT_MODEL]),
        tasks=list(tasks or file.tasks or [engine.DEFAULT_TASK]),
        strategies=list(strategies or file.strategies or space),
        optimizers=list(optimizers or file.optimizers or opts),
        api_base=pick(api_base, file.api_base, None),
        limit=pick(limit, file.limit, DEFAULT_LIMIT[mode]),
        splits=tuple(splits or file.splits or ("val", "test")),
        seed=pick(seed, file.seed, 0),
        threads=pick(threads, file.threads, None),
        out=Path(pick(out, file.out, Path("results"))),
        storage=pick(storage, file.storage, None),
        tasks_dirs=[Path(d) for d in (tasks_dirs or file.tasks_dirs)],
        programs_dirs=[Path(d) for d in (programs_dirs or file.programs_dirs)],
        max_calls=pick(max_calls, file.max_calls, None),
        max_cost=pick(max_cost, file.max_cost, None),
        max_error_rate=pick(max_error_rate, file.max_error_rate, 0.5),
        rpm=pick(rpm, file.rpm, None),
        expect_accuracy=expect_accuracy,
        allow_overlap=allow_overlap,
        references=references,
        mode=mode,
        judge_models=list(judge_models or file.judge_models or []),
        judge_api_base=pick(judge_api_base, file.judge_api_base, None),
        min_judge_kappa=pick(min_judge_kappa, file.min_judge_kappa, DEFAULT_MIN_KAPPA),
        probes=list(probes or file.probes or []),
        corpus=Path(corpus) if corpus is not None else file.corpus,
    )


def _log(result, the_plan, chosen=()) -> RunLog:
    from promptopt import reports
    from promptopt.engine import safe_url

    return RunLog(
        version=__version__,
        run_id=result.run_id,
        run_dir=result.run_dir,
        storage=safe_url(result.storage),
        plan=the_plan.describe(),
        status="stopped" if result.stopped else "complete",
        stopped=result.stopped,
        chosen=[ChosenConfig(**c) for c in chosen],
        report=reports.report(result.storage, run_id=result.run_id),
    )


def run(on_event: Callable | None = None, **options: Any) -> RunLog:
    """Score every config (strategies × optimizers, plus the references) of every model on every
    task, on val and test; the same call again resumes without repeating LM calls. Options: see `plan`."""
    from promptopt.engine import run as run_plan

    the_plan = plan("run", **options)
    return _log(run_plan(the_plan, on_progress=on_event), the_plan)


def search(
    on_event: Callable | None = None,
    *,
    trials: int | None = None,
    rung0: int = 20,
    prune_alpha: float = 0.02,
    demo_sets: int = 1,
    **options: Any,
) -> RunLog:
    """Search each model's ceiling config on val (paired successive halving), then score the
    choice and the baseline on test; `RunLog.chosen` names each choice. Options: see `plan`."""
    from promptopt.searcher import SearchSettings
    from promptopt.searcher import search as run_search

    the_plan = plan("search", **options)
    settings = SearchSettings(trials=trials, rung0=rung0, seed=the_plan.seed, demo_sets=demo_sets, alpha=prune_alpha)
    result = run_search(the_plan, settings, on_progress=on_event)
    return _log(result, the_plan, result.chosen)


def estimate(mode: str = "run", *, demo_sets: int = 1, **options: Any) -> list[dict]:
    """What a run would cost, per model, task and config, before any call (a dry run); for search,
    the most it can cost (every config of its space, `demo_sets` demo sets per bootstrap config,
    on all of val, as if none were pruned)."""
    from promptopt.engine import dry_run

    return dry_run(plan(mode, **options), demo_sets)


def compile(
    model: str,
    task: str,
    strategy: str,
    out: str | Path,
    optimizer: str = "bootstrap",
    *,
    api_base: str | None = None,
    limit: int | None = None,
    runs: str | Path = "results",
    threads: int | None = None,
    tasks_dirs: list[Path] | None = None,
    programs_dirs: list[Path] | None = None,
    on_event: Callable | None = None,
) -> ConfigSummary | None:
    """Compile one config for one model and task, score it on val, and save it as a program folder
    at `out` (load it with promptopt.load). Returns its val summary (None if nothing was answered)."""
    import shutil
    from dataclasses import replace

    from promptopt.config import parse_config
    from promptopt.engine import program_dir
    from promptopt.engine import run as run_plan
    from promptopt.models import resolve_model
    from promptopt.store import Store
    from promptopt.tasks import load_task

    the_plan = plan(
        "run", models=[model], tasks=[task], strategies=[strategy], optimizers=[optimizer], api_base=api_base,
        limit=limit, splits=["val"], out=runs, threads=threads, tasks_dirs=tasks_dirs, programs_dirs=programs_dirs,
        references=False,
    )  # fmt: skip
    the_plan = replace(the_plan, limit=limit)  # None: all of val
    result = run_plan(the_plan, on_progress=on_event)
    if result.stopped:
        raise UserError(result.stopped)
    cfg = parse_config(strategy, optimizer, the_plan.programs_dirs)
    the_task = load_task(task, the_plan.tasks_dirs, the_plan.programs_dirs)
    made = program_dir(result.run_dir, resolve_model(model, api_base), the_task, cfg)
    shutil.copytree(made, Path(out), dirs_exist_ok=True)
    records = Store(result.storage).records(result.run_id)
    return _summary(records[(records.config_id == cfg.id) & (records.split == "val")])


def evaluate(
    program: str | Path,
    split: str = "test",
    limit: int | None = None,
    *,
    model: str | None = None,
    api_base: str | None = None,
    threads: int | None = None,
    tasks_dirs: list[Path] | None = None,
    programs_dir: str | Path | None = None,
    on_event: Callable | None = None,
) -> ConfigSummary:
    """Score a saved program on a split of its task: accuracy with its 95% CI over the answered
    items, errors apart (never counted as wrong). Re-running resumes."""
    from promptopt.compiled import evaluate_program

    records = evaluate_program(
        program, split, limit, on_progress=on_event, model=model, api_base=api_base, threads=threads,
        tasks_dirs=tasks_dirs, programs_dir=programs_dir,
    )  # fmt: skip
    summary = _summary(records)
    if summary is None:
        raise UserError(f"{program} on {split}: no example was answered ({len(records)} failed after retries).")
    return summary


def _summary(records) -> ConfigSummary | None:
    """One config's records on one split as its typed summary; None when none was answered."""
    from promptopt import stats

    if not len(records):
        return None
    row = ConfigSummary(**{**stats.summarize(records).iloc[0].to_dict(), "selected": False, "selected_on": None})
    return row if row.n else None


def report(
    source: str | Path, *, run_id: str | None = None, bootstrap: int = 10_000, seed: int = 0, local_price: float = 0.0
) -> Report:
    """The report of a run folder or storage URL (every run in it, each apart, or `run_id`'s)."""
    from promptopt import reports

    return reports.report(str(source), run_id=run_id, b=bootstrap, seed=seed, local_usd_per_mtok=local_price)


def load(path, model: str | None = None, api_base: str | None = None, programs_dir=None):
    """A saved program folder as a callable: `promptopt.load(dir)(question=..., options=...)`."""
    from promptopt.compiled import load as load_program

    return load_program(path, model=model, api_base=api_base, programs_dir=programs_dir)


def task(name: str, tasks_dirs: list[Path] | None = None, programs_dirs: list[Path] | None = None):
    """A bundled or user task by name (or a path to its YAML), loaded and validated."""
    from promptopt.tasks import load_task

    return load_task(name, tasks_dirs, programs_dirs)


def available_tasks(tasks_dirs: list[Path] | None = None) -> dict[str, Path]:
    """Every task name this call can see, with its YAML file."""
    from promptopt.tasks import available_tasks as known

    return known(tasks_dirs)


def validate_task(path: str | Path, programs_dirs: list[Path] | None = None):
    """Load a task file and its data, check its gold answers, ids and leakage; the task, or one
    clear error (promptopt.errors.UserError) naming what is wrong."""
    from promptopt.hygiene import check
    from promptopt.tasks import check_gold, load_task_file

    the_task = load_task_file(Path(path), programs_dirs)
    the_task.splits  # noqa: B018  (loads and splits the data now)
    check_gold(the_task)
    found = check(the_task)
    if found.duplicate_ids:
        split, ids = next(iter(found.duplicate_ids.items()))
        raise UserError(
            f"Task file {path}: field id gives {len(ids)} examples in {split} an id another has ({ids[0]!r})."
        )
    if found.overlaps:
        raise UserError(found.overlap_sentence())
    return the_task


def available_strategies(programs_dirs: list[Path] | None = None) -> dict:
    """Every strategy this call can see (bundled, then the user's folders)."""
    from promptopt.registry import strategies as known

    return known(programs_dirs)


def available_optimizers(programs_dirs: list[Path] | None = None) -> dict:
    """Every optimizer this call can see (bundled, then the user's folders)."""
    from promptopt.optimizers import OPTIMIZERS

    return OPTIMIZERS.load(programs_dirs)


def available_answer_types(programs_dirs: list[Path] | None = None) -> dict:
    """Every answer type this call can see (bundled, then the user's folders)."""
    from promptopt.answers import answer_types as known

    return known(programs_dirs)


def check_model(model: str, api_base: str | None = None) -> tuple[str, float]:
    """Make one tiny call to a model: (its reply, seconds), or one sentence on why it failed."""
    import time

    import dspy

    from promptopt.models import build_lm, fatal_reason, resolve_model
    from promptopt.session import endpoint

    spec = resolve_model(model, api_base)
    with endpoint(spec) as live:
        lm = build_lm(live, max_tokens=4)
        started = time.monotonic()
        try:
            with dspy.context(lm=lm):
                out = lm("Say OK.")
        except Exception as exc:
            raise UserError(fatal_reason(exc, live) or f"Model {model} did not answer ({type(exc).__name__}).") from exc
    return out[0], time.monotonic() - started
