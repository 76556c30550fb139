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

from promptopt import __version__
from promptopt.errors import UserError
from promptopt.results import ChosenConfig, ConfigSummary, Report, RunLog


def plan(mode: str = "run", *, sweep: str | Path | None = None, references: bool = True, **options: Any):
    """A RunPlan from options (promptopt.options.OPTIONS: the same names as a sweep file's keys)
    and a sweep file; an option given here wins over the file's value.

    Defaults are the options' own, for run and search alike — the embedded model, MedQA, seed 0,
    results/ for run folders, at most half of the examples failing — except where a search means
    something else by them: run scores baseline and cot zero-shot on 20 examples per split;
    search explores promptopt.options.DEFAULT_SPACE with the optimizers none and bootstrap on all
    of val, then scores its choice on test, so options for run only (splits) are refused there.
    """
    from pydantic import ValidationError

    from promptopt.options import BY_NAME, OPTIONS
    from promptopt.runplan import RunPlan
    from promptopt.sweep import Sweep, load_sweep, sentence

    if mode not in ("run", "search"):
        raise UserError(f"Unknown mode {mode!r}; valid modes are run and search.")
    unknown = sorted(set(options) - set(BY_NAME))
    if unknown:
        raise TypeError(f"plan() got an unknown option {unknown[0]!r}; options are {', '.join(BY_NAME)}.")
    try:
        given = Sweep.model_validate({k: v for k, v in options.items() if v is not None})
    except ValidationError as exc:
        raise UserError("O" + sentence(exc, "option")[1:]) from None
    file = load_sweep(Path(sweep)) if sweep else Sweep()
    values = {}
    for option in OPTIONS:
        mine = getattr(given, option.name)
        if mine is None or mine == []:  # a repeatable flag not given arrives as an empty list
            mine = getattr(file, option.name)
        if mine is not None and mode not in option.modes:
            raise UserError(
                f"{option.name} is an option of {' and '.join(option.modes)} only; drop it for {mode}"
                + (" (search chooses on val and scores its choice on test)." if option.name == "splits" else ".")
            )
        values[option.name] = option.default_for(mode) if mine is None else mine
    return RunPlan(**values, references=references, mode=mode)


def _log(result, the_plan, chosen=()) -> RunLog:
    from promptopt import reports
    from promptopt.store import safe_url

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


def search(on_event: Callable | None = None, **options: Any) -> RunLog:
    """Search each model's ceiling config on val (ε-optimal, cost-aware successive elimination),
    then score the choice and the baseline on test; `RunLog.chosen` names each choice. Options:
    see `plan` (epsilon, delta, objective, max_cost_per_example and the search's other options)."""
    from promptopt.searcher import SearchSettings
    from promptopt.searcher import search as run_search

    the_plan = plan("search", **options)
    result = run_search(the_plan, SearchSettings.of(the_plan), on_progress=on_event)
    return _log(result, the_plan, result.chosen)


def estimate(mode: str = "run", **options: Any) -> list[dict]:
    """What a run would cost, per model, task and config, before any call (a dry run); for search,
    the most it can cost (every config of its space within the caps, `demo_sets` demo sets per
    bootstrap config, on all of val, as if none were dropped)."""
    from promptopt.dryrun import dry_run

    return dry_run(plan(mode, **options))


def compile(
    model: str,
    task: str,
    strategy: str,
    out: str | Path,
    optimizer: str = "bootstrap",
    *,
    limit: int | None = None,
    runs: str | Path = "results",
    on_event: Callable | None = None,
    **options: Any,
) -> ConfigSummary | None:
    """Compile one config for one model and task, score it on val, and save it as a program folder
    at `out` (load it with promptopt.load). Returns its val summary (None if nothing was answered).
    `limit`: val examples (default all); other options as in `plan` (api_base, threads, judges, budgets)."""
    import shutil
    from dataclasses import replace

    from promptopt.engine import run as run_plan
    from promptopt.store import Store

    the_plan = plan(
        "run", models=[model], tasks=[task], strategies=[strategy], optimizers=[optimizer], splits=["val"], out=runs,
        references=False, **options,
    )  # fmt: skip
    the_plan = replace(the_plan, limit=limit)  # None: all of val
    result = run_plan(the_plan, on_progress=on_event)
    if result.stopped:
        raise UserError(result.stopped)
    ((_, _, config_id), made), *_ = result.programs.items()
    shutil.copytree(made, Path(out), dirs_exist_ok=True)
    records = Store(result.storage).records(result.run_id)
    return _summary(records[(records.config_id == config_id) & (records.split == "val")])


def evaluate(
    program: str | Path,
    split: str = "test",
    limit: int | None = None,
    *,
    model: str | None = None,
    api_base: str | None = None,
    programs_dir: str | Path | None = None,
    on_event: Callable | None = None,
    **options: Any,
) -> ConfigSummary:
    """Score a saved program on a split of its task: accuracy with its 95% CI over the answered
    items, errors apart (never counted as wrong). A judged task is graded by its judge, validated
    first; `max_calls`/`max_cost` stop it cleanly (the stop is sent to `on_event` as a Note, and
    the summary is of what was scored). Re-running resumes. Options: threads, tasks_dirs,
    max_calls, max_cost, max_error_rate, judge_models, judge_api_base, min_judge_kappa."""
    from promptopt.evaluation import evaluate_program
    from promptopt.scoring import note

    result, records = evaluate_program(
        program, split, limit, on_progress=on_event, model=model, api_base=api_base, programs_dir=programs_dir,
        **{k: v for k, v in options.items() if v is not None},
    )  # fmt: skip
    if result.stopped:
        note(on_event, result.stopped)
    summary = _summary(records[records.split == split] if len(records) else records)
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
    source: str | Path, *, run_id: str | None = None, bootstrap: int = 10_000, seed: int = 0, local_price: float = 0.0,
    equivalence_margin: float | None = None, pareto_cost: str = "inference", alpha: float = 0.05,
    local_price_per_hour: float = 0.0,
) -> Report:
    """The report of a run folder or storage URL (every run in it, each apart, or `run_id`'s);
    with `equivalence_margin` (a share, 0.02 for 2 points) head-to-head also tests equivalence;
    `pareto_cost="all"` puts judging and one-off compile cost in the Pareto frontier's cost;
    `alpha` is the level of the verdicts, detectable differences and TOST; models without a price
    cost `local_price` USD per million tokens or `local_price_per_hour` per hour of their calls."""
    from promptopt import reports

    return reports.report(str(source), run_id=run_id, b=bootstrap, seed=seed, local_usd_per_mtok=local_price,
                          local_usd_per_hour=local_price_per_hour,
                          equivalence_margin=equivalence_margin, pareto_cost=pareto_cost, alpha=alpha)  # fmt: skip


def export(source: str | Path, to: str | Path, *, run_id: str | None = None, tasks_dirs: list[Path] | None = None) -> Path:
    """A bundle of a run folder or storage URL (every run, or `run_id`'s) written to `to` (.zip):
    manifest, every record with its requests as sent, the report, its tables and figures."""
    from promptopt.bundle import export as write

    return write(source, to, run_id, tasks_dirs=tasks_dirs)


def reproduce(bundle: str | Path, *, out: str | Path | None = None, tasks_dirs: list[Path] | None = None):
    """A bundle's store rebuilt and its report derived again: a promptopt.bundle.Reproduction
    (its run folder, every difference from the bundle's report, each task's state here)."""
    from promptopt.bundle import reproduce as again

    return again(bundle, out, tasks_dirs=tasks_dirs)


def rerun(bundle: str | Path, n: int, *, out: str | Path, seed: int = 0, api_base: str | None = None,
          on_event: Callable | None = None, **options: Any) -> list:  # fmt: skip
    """N items per config of a bundle asked again: per config a promptopt.bundle.Drift (identical
    answers, paired difference now − then). `options`: max_calls, max_cost, threads, dry_run, tasks_dirs."""
    from promptopt.bundle import rerun as ask

    return ask(bundle, n, seed=seed, out=out, api_base=api_base, on_progress=on_event, **options)


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
    judge = the_task.spec.judge
    if judge is not None and judge.labels:  # the human labels a judge will be set beside
        from promptopt.judge import read_labels

        read_labels(the_task, the_task.path.parent / judge.labels)
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


def power(
    items: int | None = None,
    *,
    task: str | None = None,
    split: str = "test",
    difference: float | None = None,
    accuracy: float = 0.5,
    discordance: float | None = None,
    alpha: float = 0.05,
    power: float = 0.8,
    tasks_dirs: list[Path] | None = None,
):
    """What a paired comparison on `items` (or on `task`'s `split`) can detect, and how many items
    a `difference` needs, at `accuracy` with the configs disagreeing on a `discordance` share of
    items (default: as if their errors were independent). Shares in 0-1. promptopt.detectable says how."""
    from promptopt import detectable as pw
    from promptopt.results import PowerAnalysis

    if split not in ("train", "val", "test"):
        raise UserError(f"power: split {split!r} is not one of train, val, test.")
    for name, value, low_open in (("accuracy", accuracy, True), ("alpha", alpha, True), ("power", power, True),
                                  ("discordance", discordance, False), ("difference", difference, True)):  # fmt: skip
        if value is not None and not (0 < value < 1 if low_open else 0 <= value <= 1):
            what = {"alpha": "a probability", "power": "a probability (0.8 for 80%)"}.get(name, "a share (0.05 for 5 points)")
            raise UserError(f"power: {name} must be {what} between 0 and 1, not {value:g}.")
    if task is not None:
        if items is not None:
            raise UserError("power: give the items or a task whose split gives them, not both.")
        from promptopt.tasks import load_task

        items = len(load_task(task, tasks_dirs).examples(split))
    if items is None and difference is None:
        raise UserError("power needs items (or a task) to say what they detect, or a difference to say what it needs.")
    if items is not None and items < 1:
        raise UserError(f"power: items must be at least 1, not {items}.")
    given = discordance is not None
    disc = discordance if given else pw.independent_discordance(accuracy, accuracy)
    needed = None
    if difference is not None:
        other = min(accuracy + difference, 1.0)
        at = discordance if given else max(pw.independent_discordance(accuracy, other), difference)
        if at < difference:
            raise UserError(f"power: a difference of {difference} needs a discordance of at least {difference}, not {at}.")
        needed = pw.items_needed(difference, at, alpha, power)
        disc = at
    return PowerAnalysis(
        task=task, split=split if task else None, items=items, accuracy=accuracy, discordance=disc,
        assumed_independent=not given, alpha=alpha, power=power,
        detectable=pw.mde(disc, items, alpha, power) if items else None, difference=difference, items_needed=needed,
    )  # fmt: skip


def check_model(model: str, api_base: str | None = None):
    """Make one tiny call to a model: a ModelCheck (its reply and the seconds it took), or one
    sentence on why it failed. Prints nothing (DSPy's warning that 4 tokens cut the reply short is
    held back: the cut is the point)."""
    import logging
    import time

    import dspy

    from promptopt.models import build_lm, fatal_reason, resolve_model
    from promptopt.results import ModelCheck
    from promptopt.session import endpoint

    spec = resolve_model(model, api_base)
    quiet = logging.getLogger("dspy")
    level = quiet.level
    with endpoint(spec) as live:
        lm = build_lm(live, max_tokens=4)
        started = time.monotonic()
        quiet.setLevel(logging.ERROR)
        try:
            with dspy.context(lm=lm):
                out = lm("Say OK.")
        except Exception as exc:
            raise UserError(fatal_reason(exc, live) or f"Model {model} did not answer ({type(exc).__name__}).") from exc
        finally:
            quiet.setLevel(level)
    return ModelCheck(model=model, reply=str(out[0]), seconds=time.monotonic() - started)
