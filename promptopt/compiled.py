"""Programs: a compiled config saved as a folder that apps load with two lines.

    import promptopt
    prog = promptopt.load("programs/gemma-medqa-knn")       # model and endpoint from the manifest
    prog(question="...", options={"A": "...", "B": "..."}).answer   # -> "B"

A program folder holds `manifest.json` (what it is: task spec, strategy, optimizer, knobs,
model settings without credentials, scores and compile cost, promptopt version) and
`program.json` (the DSPy module state, including any example pool and index a strategy
keeps). Loading rebuilds the strategy from the registry and restores that state after checking
it holds nothing but what the strategy saves; it never unpickles and never imports code from
the folder (see `load`).
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import Any

from promptopt import __version__
from promptopt.config import Config
from promptopt.errors import UserError
from promptopt.images import image_refs
from promptopt.manifest import adapter_name, versions
from promptopt.models import Model, build_lm, redact_url, resolve_model, with_endpoint
from promptopt.paths import bundled_dir
from promptopt.registry import get_strategy
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
        "versions": versions(),
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
            "adapter": adapter_name(model, config.knobs),
            "api_base": redact_url(model.api_base) if model.api_base and not model.is_local else None,
            "temperature": model.temperature,
            "max_tokens": model.max_tokens,
        },
        **facts,
    }
    corpus = getattr(program, "corpus", None)
    if corpus is not None:  # a retrieval program carries its passages: the folder is all an app needs
        manifest["corpus"] = {"file": "corpus.jsonl", "passages": len(corpus.passages), "digest": corpus.digest}
        if not (out / "corpus.jsonl").exists() or _corpus_digest(out) != corpus.digest:
            with open(out / "corpus.jsonl.tmp", "w", encoding="utf-8") as fh:
                for pid, text in corpus.passages:
                    fh.write(json.dumps({"id": pid, "text": text}) + "\n")
            (out / "corpus.jsonl.tmp").replace(out / "corpus.jsonl")
    tmp = out / "program.json.tmp"
    tmp.write_text(json.dumps(program.dump_state(), indent=1))
    tmp.replace(out / "program.json")
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return out


def _corpus_digest(folder: Path) -> str | None:
    try:
        return json.loads((folder / "manifest.json").read_text()).get("corpus", {}).get("digest")
    except (OSError, ValueError, AttributeError):
        return None


class LoadedProgram:
    """A compiled program bound to a model: call it with the task's input fields."""

    def __init__(self, module, task: Task, model: Model, manifest: dict):
        self.module, self.task, self.model, self.manifest = module, task, model, manifest
        self._stack = contextlib.ExitStack()
        self._live: Model | None = None
        self.lm = self.adapter = None  # set by bind()

    def bind(self) -> Model:
        """The model ready to call (the embedded server started if it is the embedded model);
        `lm` and `adapter` are then the program's LM client and adapter."""
        if self._live is None:
            live = self.model
            if live.is_local and not live.api_base:
                from promptopt.server import local_server

                live = with_endpoint(live, self._stack.enter_context(local_server()))
            from promptopt.models import lm_for
            from promptopt.session import adapter_for

            lm = lm_for(build_lm(live), self.manifest.get("knobs") or {})
            self.lm, self.adapter, self._live = lm, adapter_for(live, self.manifest.get("knobs")), live
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
        for name in self.task.image_fields:  # a path, bytes, a dspy.Image or PIL image: an image as the task holds one
            inputs[name] = image_refs(inputs[name], Path.cwd(), f"Input {name!r}", many=name.endswith("images"))
        self.bind()
        with dspy.context(lm=self.lm, adapter=self.adapter):
            return self.module(**inputs)

    def close(self) -> None:
        """Stop the embedded model server this program started, if any."""
        self._stack.close()
        self._live = None

    def __enter__(self) -> LoadedProgram:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def load(
    path: str | Path, model: str | None = None, api_base: str | None = None, programs_dir: str | Path | None = None
) -> LoadedProgram:
    """Load a program folder; `model`/`api_base` override the ones it was compiled for.

    A program folder is data, never code: its JSON is checked against the state the named
    strategy itself produces (no model, endpoint or call settings can ride along), a strategy
    from a user's folder is imported only from `programs_dir` given here, and a saved endpoint
    other than this machine's loopback is not used unless passed again as `api_base` (so a
    folder from elsewhere cannot send your provider key to its own server).
    """
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
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        got = manifest.get("format") if isinstance(manifest, dict) else None
        raise UserError(f"{folder} is not a promptopt program (format {got!r}, expected {FORMAT}).")
    try:
        from promptopt.answers import answer_types

        known = answer_types([Path(programs_dir)] if programs_dir else [])  # a user answer type too
        wanted = manifest["task"]["answer"]["type"]
        if wanted not in known:
            raise UserError(
                f"{folder} scores answers as {wanted!r}, an answer type from a user folder; pass programs_dir= "
                "(promptopt evaluate: --programs-dir) with the folder that declares it."
            )
        spec = TaskSpec.model_validate(manifest["task"], context={"answer_types": known})
        task = Task(spec=spec, path=bundled_dir("tasks"), answer_types=known)
        if manifest.get("strategy_dir") and programs_dir is None:
            raise UserError(
                f"{folder} needs strategy {manifest['strategy']!r} from a user folder ({manifest['strategy_dir']}); "
                "pass programs_dir= (promptopt evaluate: --programs-dir) with that folder if you trust its code."
            )
        dirs = [Path(programs_dir)] if programs_dir else []
        module = get_strategy(manifest["strategy"], dirs).build(task, **manifest["knobs"])
        _check_state(module, state, folder)
        module.load_state(state)
        if hasattr(module, "use_corpus"):  # its passages were saved beside it
            from promptopt.corpus import load_corpus

            module.use_corpus(load_corpus(folder / "corpus.jsonl", what=f"{folder}: corpus"), folder / "indexes")
        saved = manifest["model"]
        same = (model or saved["name"]) == saved["name"]
        settings = {"temperature": saved["temperature"], "max_tokens": saved["max_tokens"]} if same else {}
    except UserError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError(f"{folder}/manifest.json or program.json is damaged ({type(exc).__name__}: {exc}).") from None
    endpoint = api_base
    if endpoint is None and same and _is_loopback(saved.get("api_base")):
        endpoint = saved.get("api_base")
    bound = resolve_model(model or saved["name"], endpoint, **settings)
    return LoadedProgram(module, task, bound, manifest)


def _is_loopback(url: str | None) -> bool:
    from urllib.parse import urlsplit

    return bool(url) and urlsplit(url).hostname in ("127.0.0.1", "localhost", "::1")


def _check_state(module, state: dict, folder: Path) -> None:
    """Refuse state that is not what this strategy saves: per predictor only its demos,
    signature and (empty) model; nothing that could redirect calls."""
    fresh = module.dump_state()
    if not isinstance(state, dict) or set(state) != set(fresh):
        raise UserError(f"{folder}/program.json does not hold the state of strategy {type(module).__name__}.")
    predictors = {name for name, _ in module.named_predictors()}
    for name, part in state.items():
        if name not in predictors:  # the strategy's own state beyond predictors (e.g. kNN's pool)
            continue
        if not isinstance(part, dict) or set(part) - set(fresh[name]) - {"fields"} or part.get("lm") is not None:
            raise UserError(
                f"{folder}/program.json sets {name!r} beyond demos and instructions (e.g. a model or endpoint); "
                "refused."
            )


__all__ = ["Config", "LoadedProgram", "load", "save"]
