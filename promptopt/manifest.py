"""What a number was made with: package versions, each model's adapter and settings (never a
secret), each task's file and data digests and split ids.

A run folder's `run.json`, the store's `manifests` table (one row per distinct environment a run
ran with), every compiled program's manifest and every export bundle carry it. A report of runs
whose manifests differ in DSPy version, adapter or data warns that they are not comparable
(DSPy 3.5 changed its default adapter and asked users to re-evaluate optimized programs).
"""

from __future__ import annotations

import contextlib
import hashlib
import platform
from pathlib import Path

from promptopt import __version__

PACKAGES = ("dspy", "litellm", "optuna")


def versions() -> dict[str, str]:
    """The packages a score depends on, as installed now, and the embedded model's server."""
    from importlib.metadata import PackageNotFoundError, version

    from promptopt.server import SOURCE

    found = {"promptopt": __version__, "python": platform.python_version()}
    for name in PACKAGES:
        with contextlib.suppress(PackageNotFoundError):
            found[name] = version(name)
    return found | {"llama-server": SOURCE}


def adapter_name(model, knobs: dict | None = None) -> str:
    """The DSPy adapter promptopt formats this model's prompts with under a config's knobs
    (promptopt.session.adapter_for); programs compiled under one adapter are not comparable
    with another's, so the manifest names it beside the DSPy version."""
    kind = (knobs or {}).get("adapter") or "chat"
    if kind != "chat":
        return {"json": "LenientJSONAdapter", "xml": "LenientXMLAdapter"}[kind]
    return "LenientChatAdapter(prefill)" if model.call_style == "text" else "LenientChatAdapter"


def endpoint_kind(model) -> str:
    if model.is_local:
        return "embedded"
    return "api_base" if model.api_base else "provider"


def model_entry(model) -> dict:
    """A model as a reader needs it: its identity (endpoint without credentials), how it is reached,
    its adapter and sampling settings."""
    return {
        "identity": model.identity,
        "name": model.name,
        "endpoint": endpoint_kind(model),
        "adapter": adapter_name(model),
        "temperature": model.temperature,
        "max_tokens": model.max_tokens,
    }


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def task_files(task) -> dict[str, str]:
    """Every file a task is read from (its YAML, data files, test-id list), name -> sha256; its
    images are in the content digest instead (one per item)."""
    from promptopt.tasks import _data_root, _expand, _resolve

    base = task.derived_from or task
    files = {base.path.name: sha256_file(base.path)} if base.path.is_file() else {}
    src = base.spec.source
    named = src.files if isinstance(src.files, dict) else {"": src.files} if src.files else {}
    with contextlib.suppress(Exception):  # a hub-only task reads no local file
        root = _data_root(base)
        for files_of in named.values():
            for path in _expand(base, files_of):
                files[_relative(path, root)] = sha256_file(path)
    test_ids = getattr(base.spec.split, "test_ids", None)
    if test_ids:
        path = _resolve(base, test_ids, "split.test_ids")
        files[_relative(path, base.path.parent)] = sha256_file(path)
    return dict(sorted(files.items()))


def _relative(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path.name


def task_digest(task) -> str:
    """What the program was compiled and scored on: every split's ids and gold answers, and the
    content digests of the items' images (so a changed image changes it)."""
    from promptopt.images import digests

    h = hashlib.sha1()
    for split in ("train", "val", "test"):
        for ex in task.examples(split):
            shown = "".join(f"\t{d}" for d in digests(ex.inputs))
            h.update(f"{split}\t{ex.id}\t{ex.gold}{shown}\n".encode())
    return h.hexdigest()


def task_entry(task) -> dict:
    """A task in a bundle: its YAML, its files' digests, its content digest and each split's ids."""
    base = task.derived_from or task
    return {
        "yaml": base.path.read_text(encoding="utf-8") if base.path.is_file() else None,
        "derived_from": task.derived_from.name if task.derived_from is not None else None,
        "files": task_files(task),
        "digest": task_digest(task),
        "splits": {split: [ex.id for ex in task.examples(split)] for split in ("train", "val", "test")},
    }


def environment(models, tasks) -> dict:
    """What one invocation of a run ran with: kept per run in the store and in run.json."""
    return {
        "versions": versions(),
        "models": {m.identity: model_entry(m) for m in models},
        "tasks": {t.name: task_digest(t) for t in tasks},
    }


def mismatches(manifests: list[dict]) -> list[str]:
    """One sentence per thing that differs between the environments of the reported runs: DSPy
    (or LiteLLM) version, a model's adapter, a task's data. Several environments inside one run
    (resumed after an upgrade) count as well."""
    out = []
    for package in ("dspy", "litellm"):
        seen = _by(manifests, lambda m, p=package: {"": m.get("versions", {}).get(p)})
        if len(seen.get("", {})) > 1:
            out.append(_sentence(f"{'DSPy' if package == 'dspy' else 'LiteLLM'} version", seen[""]))
    adapters = _by(manifests, lambda m: {i: e.get("adapter") for i, e in m.get("models", {}).items()})
    for identity, seen in sorted(adapters.items()):
        if len(seen) > 1:
            out.append(_sentence(f"adapter of {identity}", seen))
    data = _by(manifests, lambda m: dict(m.get("tasks", {})))
    for task, seen in sorted(data.items()):
        if len(seen) > 1:
            out.append(_sentence(f"data of task {task}", {v[:10]: runs for v, runs in seen.items()}))
    return out


def _by(manifests: list[dict], pick) -> dict[str, dict[str, list[str]]]:
    """key -> value -> the runs whose manifest has that value for that key."""
    out: dict[str, dict[str, list[str]]] = {}
    for m in manifests:
        for key, value in pick(m).items():
            if value is not None:
                runs = out.setdefault(key, {}).setdefault(str(value), [])
                if m["run_id"] not in runs:
                    runs.append(m["run_id"])
    return out


def _sentence(what: str, seen: dict[str, list[str]]) -> str:
    parts = "; ".join(f"{value} in {', '.join(runs)}" for value, runs in sorted(seen.items()))
    return (f"the {what} differs between the reported runs ({parts}): their scores are not comparable; "
            "re-run one of them under the other's setting before comparing them")  # fmt: skip
