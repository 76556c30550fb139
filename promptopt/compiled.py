"""Programs: a compiled config saved as a folder that apps load with two lines.

    import promptopt
    prog = promptopt.load("programs/gemma-medqa-knn")       # model and endpoint from the manifest
    prog(question="...", options={"A": "...", "B": "..."}).answer   # -> "B"

A program folder holds `manifest.json` (what it is: task spec, strategy, optimizer, knobs,
model settings without credentials, scores and compile cost, promptopt version) and
`program.json` (the DSPy module state, including any example pool and index a strategy
keeps). Loading rebuilds the strategy from the registry and restores that state; it never
unpickles anything.
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import Any

from promptopt import __version__
from promptopt.errors import UserError
from promptopt.models import Model, build_lm, redact_url, resolve_model, with_endpoint
from promptopt.paths import bundled_dir
from promptopt.registry import Config, get_strategy
from promptopt.tasks import Task, TaskSpec

FORMAT = "promptopt-program/1"


def save(
    program, out: Path, *, task: Task, model: Model, config: Config, strategy_dir: Path | None = None, **facts: Any
) -> Path:
    """Write `program` and its manifest into folder `out`; returns the folder."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    manifest = {
        "format": FORMAT,
        "promptopt_version": __version__,
        "created_at": time.time(),
        "task": task.spec.model_dump(mode="json"),
        "strategy": config.strategy,
        "optimizer": config.optimizer,
        "knobs": config.knobs,
        "optimizer_knobs": config.optimizer_knobs,
        "config_id": config.id,
        "strategy_dir": str(strategy_dir.resolve()) if strategy_dir else None,
        "model": {
            "name": model.name,
            "api_base": redact_url(model.api_base) if model.api_base and not model.is_local else None,
            "temperature": model.temperature,
            "max_tokens": model.max_tokens,
        },
        **facts,
    }
    tmp = out / "program.json.tmp"
    tmp.write_text(json.dumps(program.dump_state(), indent=1))
    tmp.replace(out / "program.json")
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return out


class LoadedProgram:
    """A compiled program bound to a model: call it with the task's input fields."""

    def __init__(self, module, task: Task, model: Model, manifest: dict):
        self.module, self.task, self.model, self.manifest = module, task, model, manifest
        self._stack = contextlib.ExitStack()
        self._live: Model | None = None

    def _ready(self) -> Model:
        if self._live is None:
            live = self.model
            if live.is_local and not live.api_base:
                from promptopt.server import local_server

                live = with_endpoint(live, self._stack.enter_context(local_server()))
            from promptopt.run import adapter_for

            self._lm, self._adapter, self._live = build_lm(live), adapter_for(live), live
        return self._live

    def __call__(self, **inputs: Any):
        import dspy

        missing = [f for f in self.task.input_fields if f not in inputs]
        if missing:
            raise UserError(
                f"Program for task {self.task.name!r} needs input {missing[0]!r}; its inputs are "
                f"{', '.join(self.task.input_fields)}."
            )
        if isinstance(inputs.get("options"), list | tuple):
            inputs["options"] = {chr(ord("A") + i): str(o) for i, o in enumerate(inputs["options"])}
        self._ready()
        with dspy.context(lm=self._lm, adapter=self._adapter):
            return self.module(**inputs)

    def close(self) -> None:
        """Stop the embedded model server this program started, if any."""
        self._stack.close()
        self._live = None

    def __enter__(self) -> LoadedProgram:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def load(path: str | Path, model: str | None = None, api_base: str | None = None) -> LoadedProgram:
    """Load a program folder; `model`/`api_base` override the ones it was compiled for."""
    folder = Path(path)
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
        state = json.loads((folder / "program.json").read_text())
    except FileNotFoundError:
        raise UserError(f"{folder} is not a program folder: it needs manifest.json and program.json.") from None
    except (ValueError, UnicodeDecodeError):
        raise UserError(
            f"{folder} holds a program file that is not JSON; promptopt loads programs only from JSON and never "
            "unpickles, so nothing in it was run."
        ) from None
    if manifest.get("format") != FORMAT:
        raise UserError(f"{folder} is not a promptopt program (format {manifest.get('format')!r}, expected {FORMAT}).")
    task = Task(spec=TaskSpec.model_validate(manifest["task"]), path=bundled_dir("tasks"))
    dirs = [Path(manifest["strategy_dir"])] if manifest.get("strategy_dir") else []
    module = get_strategy(manifest["strategy"], dirs).build(task, **manifest["knobs"])
    module.load_state(state)
    saved = manifest["model"]
    chosen = model or saved["name"]
    endpoint = api_base if api_base is not None else (saved.get("api_base") if chosen == saved["name"] else None)
    settings = (
        {"temperature": saved["temperature"], "max_tokens": saved["max_tokens"]} if chosen == saved["name"] else {}
    )
    bound = resolve_model(chosen, endpoint, **settings)
    return LoadedProgram(module, task, bound, manifest)


def evaluate_program(
    folder: str | Path,
    split: str = "test",
    limit: int | None = None,
    model: str | None = None,
    api_base: str | None = None,
    threads: int = 1,
    on_progress=None,
    tasks_dirs: list[Path] | None = None,
):
    """Score a program folder on one split of its task; records go to the folder's own store.

    Returns the records (a DataFrame). Re-running with the same arguments resumes.
    """
    import hashlib

    from promptopt.evaluate import evaluate
    from promptopt.registry import Config
    from promptopt.store import Store
    from promptopt.tasks import load_task

    if split not in ("val", "test"):
        raise UserError(f"Cannot evaluate on split {split!r}; valid splits are val and test.")
    prog = load(folder, model=model, api_base=api_base)
    man = prog.manifest
    task = load_task(man["task"]["name"], tasks_dirs)
    if task.spec.model_dump(mode="json") != man["task"]:
        raise UserError(
            f"Task {task.name!r} differs from the one {folder} was compiled for; evaluate with the same task spec."
        )
    config = Config(man["strategy"], man["optimizer"], man["knobs"], man.get("optimizer_knobs") or {})
    with prog:
        live = prog._ready()
        key = json.dumps([live.identity, split, limit, man["config_id"]]).encode()
        run_id = "eval-" + hashlib.sha1(key).hexdigest()[:10]
        store = Store(f"sqlite:///{(Path(folder) / 'evaluations.sqlite').resolve()}")
        store.start_run(run_id, {"program": str(folder), "split": split, "limit": limit}, __version__)
        evaluate(
            prog.module, task.examples(split, limit), task=task, model=live, lm=prog._lm, adapter=prog._adapter,
            config=config, split=split, run_id=run_id, store=store, threads=threads, on_progress=on_progress,
        )  # fmt: skip
        return store.records(run_id)


__all__ = ["Config", "LoadedProgram", "evaluate_program", "load", "save"]
