"""Tasks: a declarative YAML spec, validated on load, read with the `datasets` library.

A task says where its rows come from, how rows map to the program's input fields, what the
answer type is, how rows are split into train / val / test, and the fixed baseline wording.
Splits are made over *question groups* (normalized stems), so the same question can never sit
in two splits; `check_disjoint` re-checks that for any split a spec produces.
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from promptopt import _env  # noqa: F401  (offline settings before `datasets` is imported)
from promptopt.answers import ANSWER_TYPES, AnswerType
from promptopt.errors import UserError
from promptopt.paths import bundled_dir

SPLITS = ("train", "val", "test")


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SourceSpec(_Spec):
    format: Literal["json", "csv", "parquet"]
    files: str | list[str] | None = None
    hub: str | None = None
    revision: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> SourceSpec:
        if (self.files is None) == (self.hub is None):
            raise ValueError("give exactly one of 'files' (local data files) or 'hub' (dataset id)")
        if self.hub is not None and self.revision is None:
            raise ValueError("a hub dataset needs a pinned 'revision'")
        return self


class AnswerSpec(_Spec):
    type: str
    gold: str

    @model_validator(mode="after")
    def _known_type(self) -> AnswerSpec:
        if self.type not in ANSWER_TYPES:
            raise ValueError(f"unknown answer type {self.type!r}; valid: {', '.join(ANSWER_TYPES)}")
        return self


class SplitSpec(_Spec):
    seed: int = 0
    train: int
    val: int
    # test is every remaining question group


class BaselineSpec(_Spec):
    instructions: str


class TaskSpec(_Spec):
    name: str
    description: str
    citation: str
    license: str
    source: SourceSpec
    id: str | None = None
    inputs: dict[str, str]
    answer: AnswerSpec
    split: SplitSpec
    baseline: BaselineSpec


@dataclass(frozen=True)
class Example:
    id: str
    inputs: dict[str, Any]
    gold: str


@dataclass
class Task:
    spec: TaskSpec
    path: Path
    _rows: list[Example] | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def answer_type(self) -> AnswerType:
        return ANSWER_TYPES[self.spec.answer.type]

    @property
    def input_fields(self) -> list[str]:
        return list(self.spec.inputs)

    def rows(self) -> list[Example]:
        if self._rows is None:
            self._rows = _load_rows(self.spec, self.path)
        return self._rows

    @cached_property
    def splits(self) -> dict[str, list[Example]]:
        return split_examples(self.rows(), self.spec.split)

    def examples(self, split: str, limit: int | None = None) -> list[Example]:
        if split not in SPLITS:
            raise UserError(f"Unknown split {split!r}; valid splits are {', '.join(SPLITS)}.")
        chosen = self.splits[split]
        return chosen if limit is None else chosen[:limit]


def stem_key(inputs: dict[str, Any]) -> str:
    """Identity of a question for leakage checks: the normalized question text."""
    text = str(inputs.get("question", "")) or repr(sorted(inputs.items()))
    return hashlib.sha1(re.sub(r"\s+", " ", text.lower()).strip().encode()).hexdigest()


def split_examples(rows: list[Example], rule: SplitSpec) -> dict[str, list[Example]]:
    """Seeded split over question groups: train and val take their sizes, test the rest."""
    groups: dict[str, list[Example]] = {}
    for ex in rows:
        groups.setdefault(stem_key(ex.inputs), []).append(ex)
    keys = list(groups)
    random.Random(rule.seed).shuffle(keys)
    out: dict[str, list[Example]] = {s: [] for s in SPLITS}
    for key in keys:
        target = "train" if len(out["train"]) < rule.train else "val" if len(out["val"]) < rule.val else "test"
        out[target].extend(groups[key])
    check_disjoint(out)
    return out


def check_disjoint(splits: dict[str, list[Example]]) -> None:
    """Refuse splits that share a question: demos from test would inflate the ceiling."""
    seen: dict[str, str] = {}
    shared: dict[tuple[str, str], int] = {}
    for split, examples in splits.items():
        for key in {stem_key(ex.inputs) for ex in examples}:
            if key in seen and seen[key] != split:
                pair = (seen[key], split)
                shared[pair] = shared.get(pair, 0) + 1
            seen.setdefault(key, split)
    if shared:
        detail = "; ".join(f"{a} and {b} share {n} questions" for (a, b), n in shared.items())
        raise UserError(f"Splits leak questions between each other ({detail}).")


def _load_rows(spec: TaskSpec, path: Path) -> list[Example]:
    import datasets

    datasets.disable_progress_bars()
    where = f"task file {path}"
    try:
        if spec.source.hub is not None:
            ds = datasets.load_dataset(spec.source.hub, revision=spec.source.revision, split="train")
        else:
            files = [spec.source.files] if isinstance(spec.source.files, str) else spec.source.files
            resolved = [str((path.parent / f).resolve()) for f in files]
            missing = [f for f in resolved if not Path(f).exists()]
            if missing:
                raise UserError(f"{where}: field source.files names {missing[0]}, which does not exist.")
            ds = datasets.load_dataset(spec.source.format, data_files=resolved, split="train")
    except UserError:
        raise
    except Exception as exc:  # datasets raises many types; the user needs one sentence
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{where}: could not load the data source ({first}).") from exc
    columns = set(ds.column_names)
    wanted = {**spec.inputs, "answer.gold": spec.answer.gold}
    if spec.id:
        wanted["id"] = spec.id
    for fld, col in wanted.items():
        if col not in columns:
            raise UserError(
                f"{where}: field {fld} names column {col!r}, which the data does not have "
                f"(columns: {', '.join(sorted(columns))})."
            )
    out = []
    for i, row in enumerate(ds):
        inputs = {name: row[col] for name, col in spec.inputs.items()}
        if isinstance(inputs.get("options"), dict):
            inputs["options"] = {k: v for k, v in inputs["options"].items() if v is not None}
        ex_id = str(row[spec.id]) if spec.id else str(i)
        out.append(Example(id=ex_id, inputs=inputs, gold=str(row[spec.answer.gold])))
    return out


def load_task_file(path: Path) -> Task:
    """Read and validate one task YAML; errors name the file and the field."""
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise UserError(f"Task file {path} does not exist.") from None
    except yaml.YAMLError as exc:
        raise UserError(f"Task file {path} is not valid YAML ({exc.__class__.__name__}).") from None
    if not isinstance(raw, dict):
        raise UserError(f"Task file {path} must hold a mapping of fields, not {type(raw).__name__}.")
    try:
        spec = TaskSpec.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        raise UserError(f"Task file {path}: field {loc}: {msg}.") from None
    return Task(spec=spec, path=path)


def task_dirs(extra: list[Path] | None = None) -> list[Path]:
    return [*(extra or []), bundled_dir("tasks")]


def available_tasks(extra: list[Path] | None = None) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for folder in reversed(task_dirs(extra)):  # user folders override bundled tasks
        for file in sorted(Path(folder).glob("*.yaml")):
            found[file.stem] = file
    return found


def load_task(name: str, extra: list[Path] | None = None) -> Task:
    """A task by name (bundled or from a user folder) or by path to its YAML file."""
    if name.endswith((".yaml", ".yml")):
        return load_task_file(Path(name))
    known = available_tasks(extra)
    if name not in known:
        raise UserError(f"Unknown task {name!r}; valid tasks are {', '.join(sorted(known))}.")
    return load_task_file(known[name])
