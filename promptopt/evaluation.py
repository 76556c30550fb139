"""`promptopt evaluate`: a saved program scored on a split of its task, through the one pipeline.

So it is judged, budgeted and resumable like every run: a judged task's judge is validated and
grades every answer, --max-calls and --max-cost stop it cleanly, and the records go to the
program folder's own store (`evaluations.sqlite`) under a run id keyed by the model, split,
limit and the program's state, so the same command again resumes without repeating LM calls.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd

from promptopt.compiled import load
from promptopt.config import Config
from promptopt.errors import UserError
from promptopt.pipeline import RunContext
from promptopt.runplan import RunPlan, RunResult
from promptopt.store import sqlite_url
from promptopt.tasks import check_gold, load_task


def evaluate_program(
    folder: str | Path, split: str, limit: int | None, *, on_progress=None, model: str | None = None,
    api_base: str | None = None, programs_dir: str | Path | None = None, **options,
) -> tuple[RunResult, pd.DataFrame]:  # fmt: skip
    """Score a program folder on one split of its task. `options` are RunPlan fields (threads,
    tasks_dirs, max_calls, max_cost, max_error_rate, judge_models, judge_api_base,
    min_judge_kappa, batch). Returns the result (with `stopped` when a budget ended it) and the records."""
    if split not in ("val", "test"):
        raise UserError(f"Cannot evaluate on split {split!r}; valid splits are val and test.")
    folder = Path(folder)
    prog = load(folder, model=model, api_base=api_base, programs_dir=programs_dir)
    man = prog.manifest
    dirs = [Path(programs_dir)] if programs_dir else []
    task = load_task(man["task"]["name"], options.get("tasks_dirs"), dirs)
    if task.spec.model_dump(mode="json") != man["task"]:
        raise UserError(
            f"Task {task.name!r} differs from the one {folder} was compiled for; evaluate with the same task spec."
        )
    check_gold(task)  # a program compiled before the check existed must not score bad gold silently
    config = Config(man["strategy"], man["optimizer"], man["knobs"], man.get("optimizer_knobs") or {})
    plan = RunPlan(models=[prog.model.name], tasks=[task.name], limit=limit, splits=(split,), out=folder.parent,
                   programs_dirs=dirs, references=False, **options)  # fmt: skip
    from promptopt.models import check_credentials
    from promptopt.runplan import check_batch, judge_models

    for judge in judge_models(plan, task):
        check_credentials(judge)
    if plan.batch:
        check_batch(plan, [prog.model])
    state = hashlib.sha1((folder / "program.json").read_bytes()).hexdigest()
    key = json.dumps([prog.model.identity, split, limit, man["config_id"], state]).encode()
    run_id = "eval-" + hashlib.sha1(key).hexdigest()[:10]
    ctx = RunContext.open(
        plan, on_progress, run_dir=folder, run_id=run_id, manifest=False,
        url=sqlite_url(folder / "evaluations.sqlite"),
        described={"program": str(folder), "split": split, "limit": limit},
    )  # fmt: skip
    with ctx.noted() as stopped, ctx.models([prog.model], [task], [config]) as each:
        for benches in each:
            benches[task.name].score(prog.module, config, split)
    result = RunResult(run_id, folder, ctx.url, stopped=stopped.get("reason"))
    return result, ctx.store.records(run_id)
