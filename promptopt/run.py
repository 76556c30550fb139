"""Run: the library API behind `promptopt run` — every (model, task, config, split) evaluated.

A run's id is a hash of what was asked (models with endpoints, tasks, configs, limit, seed), so
running the same command again lands in the same run folder and store, and `evaluate` skips every
example already recorded there: an interrupted run resumes without repeating LM calls.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from promptopt import __version__
from promptopt.adapters import LenientChatAdapter
from promptopt.errors import UserError
from promptopt.evaluate import Progress, evaluate
from promptopt.models import Model, build_lm, redact_url, resolve_model, with_endpoint
from promptopt.paths import bundled_dir
from promptopt.registry import get_strategy, parse_config
from promptopt.store import Store, default_url
from promptopt.tasks import load_task

DEFAULT_MODEL = "local/gemma-3-270m"
DEFAULT_TASK = "medqa"
DEFAULT_STRATEGIES = ("baseline", "cot")
DEFAULT_LIMIT = 20


@dataclass
class RunPlan:
    models: list[str] = field(default_factory=lambda: [DEFAULT_MODEL])
    tasks: list[str] = field(default_factory=lambda: [DEFAULT_TASK])
    strategies: list[str] = field(default_factory=lambda: list(DEFAULT_STRATEGIES))
    optimizers: list[str] = field(default_factory=lambda: ["none"])
    api_base: str | None = None
    limit: int | None = DEFAULT_LIMIT
    splits: tuple[str, ...] = ("val", "test")
    seed: int = 0
    threads: int = 1
    out: Path = Path("results")
    storage: str | None = None
    tasks_dirs: list[Path] = field(default_factory=list)
    programs_dirs: list[Path] = field(default_factory=list)
    allow_overlap: bool = False  # run even when demo pools overlap the test set (the report warns)
    overlap: dict = field(default_factory=dict)  # task -> overlap summary, filled by `run`

    def describe(self) -> dict:
        """What identifies the run; endpoints without credentials."""
        extra = {"overlap": self.overlap} if self.overlap else {}
        return extra | {
            "models": self.models,
            "api_base": redact_url(self.api_base) if self.api_base else None,
            "tasks": self.tasks,
            "strategies": self.strategies,
            "optimizers": self.optimizers,
            "limit": self.limit,
            "splits": list(self.splits),
            "seed": self.seed,
        }

    @property
    def run_id(self) -> str:
        return "run-" + hashlib.sha1(json.dumps(self.describe(), sort_keys=True).encode()).hexdigest()[:10]


@dataclass
class RunResult:
    run_id: str
    run_dir: Path
    storage: str


def check_endpoint(model: Model) -> None:
    """Fail fast, in one sentence, when an OpenAI-compatible endpoint cannot be reached."""
    if not model.api_base:
        return
    try:
        urllib.request.urlopen(f"{model.api_base.rstrip('/')}/models", timeout=10).close()
    except urllib.error.HTTPError:
        return  # it answered; auth or routing problems surface on the first call
    except Exception as exc:
        reason = getattr(exc, "reason", exc)
        raise UserError(
            f"Could not reach --api-base {redact_url(model.api_base)} for model {model.name} ({reason}); "
            "check that the server is running and the URL ends in its API root, e.g. http://127.0.0.1:8000/v1."
        ) from None


@contextlib.contextmanager
def endpoint(model: Model, log: Path | None = None) -> Iterator[Model]:
    """The model ready to call: embedded models get a running local server for the duration."""
    if model.is_local and not model.api_base:
        from promptopt.server import local_server

        with local_server(log=log) as url:
            yield with_endpoint(model, url)
        return
    check_endpoint(model)
    yield model


def adapter_for(model: Model) -> LenientChatAdapter:
    return LenientChatAdapter(prefill=model.call_style == "text")


def run(plan: RunPlan, on_progress: Callable[[Progress], None] | None = None) -> RunResult:
    # Validate everything before starting a server or spending a call.
    for split in plan.splits:
        if split not in ("val", "test"):
            raise UserError(f"Cannot score split {split!r}; valid splits are val and test (train feeds optimizers).")
    tasks = [load_task(t, plan.tasks_dirs) for t in plan.tasks]
    models = [resolve_model(m, plan.api_base) for m in plan.models]
    configs = [parse_config(s, o) for s in plan.strategies for o in plan.optimizers]
    for cfg in configs:
        if cfg.optimizer != "none":
            raise UserError(f"Unknown optimizer {cfg.optimizer!r}; valid optimizers are: none.")
        strat = get_strategy(cfg.strategy, plan.programs_dirs)
        for task in tasks:
            strat.build(task, **cfg.knobs)  # refuses unknown knobs and answer types it cannot serve
    for task in tasks:
        for split in plan.splits:
            task.examples(split, plan.limit)  # load and split now: bad data fails before any call
    from promptopt.hygiene import enforce

    plan.overlap = {t.name: found for t in tasks if (found := enforce(t, plan.allow_overlap))}

    run_dir = plan.out / plan.run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    url = plan.storage or default_url(run_dir)
    store = Store(url)
    store.start_run(plan.run_id, plan.describe(), __version__)
    (run_dir / "run.json").write_text(
        json.dumps({"run_id": plan.run_id, "storage": _safe_url(url), "plan": plan.describe()}, indent=2)
    )

    for model in models:
        with endpoint(model, log=run_dir / "server.log") as live:
            lm = build_lm(live)
            adapter = adapter_for(live)
            for task in tasks:
                for cfg in configs:
                    program = get_strategy(cfg.strategy, plan.programs_dirs).build(task, **cfg.knobs)
                    prepare(
                        program, task=task, model=live, lm=lm, adapter=adapter, config=cfg, run_id=plan.run_id,
                        store=store, threads=plan.threads, on_progress=on_progress,
                    )  # fmt: skip
                    for split in plan.splits:
                        evaluate(
                            program,
                            task.examples(split, plan.limit),
                            task=task,
                            model=live,
                            lm=lm,
                            adapter=adapter,
                            config=cfg,
                            split=split,
                            run_id=plan.run_id,
                            store=store,
                            threads=plan.threads,
                            on_progress=on_progress,
                        )
                    save_program(program, run_dir, plan, task=task, model=live, config=cfg, store=store)
    return RunResult(run_id=plan.run_id, run_dir=run_dir, storage=url)


def program_dir(run_dir: Path, model: Model, task, config) -> Path:
    slug = "".join(c if c.isalnum() or c in "-_." else "_" for c in model.name)
    return run_dir / "programs" / f"{slug}--{task.name}--{config.id}"


def save_program(program, run_dir: Path, plan: RunPlan, *, task, model, config, store) -> Path:
    """Save what was evaluated as a loadable program, with its scores and preparation cost."""
    from promptopt import compiled

    recs = store.records(plan.run_id)
    mine = recs[(recs.model == model.identity) & (recs.task == task.name) & (recs.config_id == config.id)]
    scores = {split: {"n": len(g), "score": float(g.score.mean())} for split, g in mine.groupby("split")}
    prep = mine[mine.split == "train"]
    source = Path(get_strategy(config.strategy, plan.programs_dirs).source).resolve().parent
    strategy_dir = None if source == bundled_dir("programs").resolve() else source
    return compiled.save(
        program, program_dir(run_dir, model, task, config), task=task, model=model, config=config,
        strategy_dir=strategy_dir, run_id=plan.run_id, scores=scores,
        preparation={"lm_calls": int(prep.lm_calls.sum()), "cost_usd": float(prep.cost_usd.sum())},
    )  # fmt: skip


def prepare(program, *, task, model, lm, adapter, config, run_id, store, threads=1, on_progress=None) -> None:
    """Give a program that learns from training examples (it has `fit_pool`) its pool.

    When the program needs the model's own explanations (`teacher()` is not None), the teacher
    answers the training pool like any evaluation, split `train`: the records say what
    preparation cost and an interrupted preparation resumes without repeating calls. The pool
    keeps the examples the model explained correctly.
    """
    if not hasattr(program, "fit_pool"):
        return
    train = task.examples("train", program.pool_size)
    teacher = program.teacher()
    explanations = None
    if teacher is not None:
        evaluate(
            teacher, train, task=task, model=model, lm=lm, adapter=adapter, config=config, split="train",
            run_id=run_id, store=store, threads=threads, on_progress=on_progress,
        )  # fmt: skip
        explanations = store.explanations(run_id, model.identity, task.name, config.id)
    program.fit_pool(train, explanations)


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
