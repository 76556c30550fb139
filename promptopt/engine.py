"""`promptopt run`: every config of the plan scored on every split, per model and task.

A driver over promptopt.pipeline. With a shared store (`--storage`), the configs are shared out
through an Optuna study in that database, so several `run` processes pointed at it make each LM
call once (promptopt.study).
"""

from __future__ import annotations

from collections.abc import Callable

from promptopt.pipeline import RunContext
from promptopt.runplan import RunPlan, RunResult, expected_work, validate_plan
from promptopt.scoring import Progress


def run(plan: RunPlan, on_progress: Callable[[Progress], None] | None = None) -> RunResult:
    tasks, models, configs, overlap = validate_plan(plan)
    ctx = RunContext.open(plan, on_progress, overlap)
    storage = None
    if plan.storage:
        from promptopt.study import optuna_storage

        storage = optuna_storage(ctx.store.url)
    programs: dict = {}
    with ctx.noted(expected_work(plan, tasks, configs)) as stopped, ctx.models(models, tasks, configs) as each:
        for benches in each:
            for bench in benches.values():
                if storage is None:
                    bench.run_configs(configs)
                else:
                    _shared(ctx, bench, configs, storage)
                programs |= {(bench.model.identity, bench.task.name, cid): p for cid, p in bench.saved.items()}
    return RunResult(plan.run_id, ctx.run_dir, ctx.url, stopped=stopped.get("reason"), programs=programs)


def _shared(ctx: RunContext, bench, configs, storage) -> None:
    """The configs shared out among the workers on one study: each config is scored by one of them."""
    import optuna

    from promptopt.study import share_out

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    shared = optuna.create_study(
        study_name=f"{ctx.run_id}|{bench.model.identity}|{bench.task.name}|run", storage=storage,
        direction="maximize", load_if_exists=True,
    )  # fmt: skip
    share_out(shared, {c.id: c for c in configs}, bench.run_config, say=ctx.say)
