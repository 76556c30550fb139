"""Tasks: a declarative YAML spec, validated on load, read with the `datasets` library.

A task says where its rows come from, how rows map to the program's input fields, what the
answer type is, how rows are split into train / val / test, and the fixed baseline wording.
Raw rows that a plain column mapping cannot express are reshaped by a small, declarative
vocabulary (options from several columns or from a list of objects, gold as an index or an
option key, rows found inside a JSON document, row filters) — never by code in the YAML.

Splits either follow the source's own files (`source.files: {train: ..., test: ...}`), take
the test ids the source publishes (`split.test_ids`), or are carved by a fixed seed over
*question groups* (normalized stems), so the same question never sits in two carved splits.
Leakage between the pools demos come from and the test set is checked by `promptopt.hygiene`.
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import json
import os
import random
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, ValidationInfo, model_validator

from promptopt import _env  # noqa: F401  (offline settings before `datasets` is imported)
from promptopt.answers import AnswerType, answer_options, answer_types, offers_options, parse_options, with_options
from promptopt.errors import UserError, shown
from promptopt.images import digests, image_refs, is_image_field
from promptopt.limits import ID_CHARS, check_lines, check_stream, check_yaml, check_zip, confined
from promptopt.paths import bundled_dir

SPLITS = ("train", "val", "test")
TASKS_DIR_ENV = "PROMPTOPT_TASKS_DIR"
SplitName = Literal["train", "val", "test"]
Files = str | list[str]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FieldError(ValueError):
    """A check across fields that blames one of them, so the error can name it."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


class SourceSpec(_Spec):
    """Where rows come from: local files (paths relative to the YAML file, or to the folder in
    environment variable `env` for data promptopt does not bundle), or a hub dataset."""

    format: Literal["json", "jsonl", "csv", "parquet"]
    files: Files | dict[SplitName, Files] | None = None  # one pool, or the source's own splits
    hub: str | None = None
    revision: str | None = None
    hub_splits: dict[SplitName, str] | None = None  # hub split names; default: all of "train" as one pool
    env: str | None = None  # folder holding `files`, for data the user downloads themselves
    download: str | None = None  # where that data can be downloaded, for the error message
    header: bool = True  # csv: False for files without a header row (then give `columns`)
    columns: list[str] | None = None
    records: str | None = None  # json: path to the rows inside one document, e.g. "exams.*.data"
    encoding: str = "utf-8"  # csv, json, jsonl: the files' text encoding, e.g. latin-1 or cp1252
    images: str | None = None  # image inputs: the folder their file names are relative to (default: the data's)

    @model_validator(mode="after")
    def _one_source(self) -> SourceSpec:
        if (self.files is None) == (self.hub is None):
            raise FieldError("files", "give exactly one of 'files' (local data files) or 'hub' (dataset id)")
        if self.hub is not None and self.revision is None:
            raise FieldError("revision", "a hub dataset needs a pinned 'revision'")
        if not self.header and not self.columns:
            raise FieldError("columns", "a csv without a header row needs 'columns' (one name per column)")
        if self.records is not None and self.format not in ("json", "jsonl"):
            raise FieldError("records", "'records' applies to json files only")
        import codecs

        try:
            codecs.lookup(self.encoding)
        except LookupError:
            raise FieldError("encoding", f"{self.encoding!r} is not a text encoding Python knows; e.g. utf-8, latin-1, cp1252") from None
        return self


class OptionList(_Spec):
    """Options held as a list of objects in one column, e.g. HEAD-QA's [{aid, atext}, ...]."""

    column: str
    text: str
    key: str | None = None  # the field the gold refers to (with answer.gold_is: option_key)


class AnswerSpec(_Spec):
    type: str
    gold: str | dict[str, str]  # a column, or parts -> columns (the gold is then their JSON)
    gold_is: Literal["letter", "index0", "index1", "option_key", "option_text"] | None = None
    gold_after: str | None = None  # keep the text after the last occurrence (GSM8K's "#### ")
    options: dict[str, Any] = {}  # the answer type's options, e.g. a number's tolerance

    @model_validator(mode="after")
    def _known_type(self, info: ValidationInfo) -> AnswerSpec:
        known = (info.context or {}).get("answer_types") or answer_types()
        if self.type not in known:
            raise FieldError("type", f"unknown answer type {self.type!r}; valid: {', '.join(sorted(known))}")
        unknown = set(self.options) - answer_options(known[self.type])
        if unknown:
            valid = ", ".join(sorted(answer_options(known[self.type]))) or "none"
            raise FieldError("options", f"answer type {self.type} has no option {sorted(unknown)[0]!r}; valid: {valid}")
        try:
            with_options(known[self.type], self.options)
        except (ValueError, TypeError) as exc:
            raise FieldError("options", str(exc)) from None
        return self


class RowsSpec(_Spec):
    """Clean-ups applied to every source file before splitting."""

    drop_empty: list[str] = []  # drop rows where any of these columns is empty
    drop_nonempty: list[str] = []  # drop rows where any of these columns has a value
    keep: dict[str, str | list[str]] = {}  # keep only rows whose column has (one of) these values
    dedupe: bool = False  # keep the first of rows whose inputs are identical


class SplitSpec(_Spec):
    """How rows become train / val / test.

    One pool of files: `train` and `val` rows are taken by seed and test is the rest; or, with
    `test_ids`, test is those ids, `val` rows are taken by seed and train is the rest.
    Files per split: each split takes its files; a missing val takes `val` rows from train.
    """

    seed: int = 0
    train: int | None = None
    val: int | None = None
    test_ids: str | None = None  # a file of test ids: JSON list, JSON object keys, or one per line
    drop_pool_overlap: bool = False  # drop train/val rows that duplicate a test row (see SOURCE.md)
    # image tasks: train (the demo pool) keeps no row whose image a test item shows, so no demo
    # shows a test item's own image (VQA-RAD asks several questions of one image, across splits)
    demos_without_test_images: bool = False


class BaselineSpec(_Spec):
    instructions: str


class JudgeSpec(_Spec):
    """How an LLM judge grades this task's free-text answers (when `judge` is one of its metrics)."""

    rubric: str | None = None  # a prompt with {question}, {reference} and {answer}; default: promptopt.judge's
    scale: Literal["yes_no", "1-5"] = "yes_no"
    models: list[str] = []  # the task's judges when the run names none (--judge-model)
    checks: int = 20  # val items the judge is validated on (each with its own and another reference)
    # human verdicts on answers (JSONL or CSV, one row per verdict: id, answer, verdict, annotator),
    # relative to the task file: the judge grades those answers and the report sets it beside the humans
    labels: str | None = None
    # with several judges, how their verdicts make the `judge` metric: the first trusted judge's,
    # the majority's (more than half pass), the mean of their scores, or pass only when all pass
    aggregate: Literal["first", "majority", "mean", "all"] = "first"
    # per-item rubrics (HealthBench-style): the column holding each item's criteria, a list of
    # {criterion, points, tags}; each criterion is judged on its own and the item scores points met
    # over points possible (promptopt.judge.rubric_score)
    criteria: str | None = None
    # labels (the task's `labels:`) whose value a near miss may share: another item's reference
    # with the same value, tried in this order (MedQuAD: focus, then question type)
    near_by: list[str] = []

    @model_validator(mode="after")
    def _rubric_reads(self) -> JudgeSpec:
        from promptopt.judge import rubric_for

        try:
            rubric_for(self)
        except ValueError as exc:
            raise FieldError("rubric", str(exc)) from None
        if self.checks < 2:
            raise FieldError("checks", "must be at least 2 (each item is graded against its own and another reference)")
        return self


class LanguageSpec(_Spec):
    """This task is one language of a group of tasks holding the same items (same ids and gold)."""

    group: str
    code: str


class CorpusSpec(_Spec):
    """`corpus:` in a task YAML (paths relative to the YAML file)."""

    path: str
    records: str | None = None  # a JSON document: where its rows are ("*" walks an object, keys -> _key)
    id: str = "id"
    text: str | list[str] = "text"
    title: str | None = None
    gold: Literal["item_id"] | None = None  # an item's gold passage has the item's id (recall@k)
    leak: str | None = None  # an item column no passage may contain for a test item


class TaskSpec(_Spec):
    name: str
    description: str
    citation: str
    license: str
    source: SourceSpec
    id: str | list[str] | None = None
    inputs: dict[str, str | list[str] | OptionList]
    answer: AnswerSpec
    rows: RowsSpec = RowsSpec()
    split: SplitSpec
    baseline: BaselineSpec
    judge: JudgeSpec | None = None
    language: LanguageSpec | None = None
    probes: list[str] = []  # robustness probes every run of this task also scores (promptopt.probes)
    labels: dict[str, str] = {}  # name -> column kept with each item, never shown (organ: for organ_pair)
    cluster: str | None = None  # a column whose equal values mark items that are not independent (one case's questions)
    corpus: CorpusSpec | None = None  # passages a retrieval strategy reads (promptopt.corpus)

    @model_validator(mode="after")
    def _near_by_labels(self) -> TaskSpec:
        unknown = [name for name in (self.judge.near_by if self.judge else []) if name not in self.labels]
        if unknown:
            raise FieldError("judge.near_by", f"names {unknown[0]!r}, which is not one of the task's labels "
                             f"({', '.join(self.labels) or 'none declared'}); declare it under labels: {{NAME: COLUMN}}")  # fmt: skip
        return self

    @model_validator(mode="after")
    def _probes_known(self) -> TaskSpec:
        from promptopt.probes import parse_probe

        for text in self.probes:
            try:
                parse_probe(text)
            except UserError as exc:
                raise FieldError("probes", str(exc).rstrip(".")) from None
        return self

    @model_validator(mode="after")
    def _split_fits_source(self, info: ValidationInfo) -> TaskSpec:
        per_split = isinstance(self.source.files, dict) or self.source.hub_splits is not None
        given = set(self.source.files if isinstance(self.source.files, dict) else self.source.hub_splits or {})
        if per_split:
            if "test" not in given:
                raise FieldError("source.files", "files per split need a 'test' entry")
            if "val" not in given and self.split.val is None:
                raise FieldError(
                    "split.val", "is needed: the source has no val files, so val rows are taken from train"
                )
            if self.split.test_ids:
                raise FieldError("split.test_ids", "applies to a single pool of files, not to files per split")
        elif self.split.test_ids:
            if self.split.val is None:
                raise FieldError("split.val", "is needed: val rows are taken from the rows outside test_ids")
        elif self.split.train is None or self.split.val is None:
            missing = "split.train" if self.split.train is None else "split.val"
            raise FieldError(missing, "is needed to carve one pool of rows into train, val and test")
        if self.answer.gold_is and not offers_options(self.answer.type, (info.context or {}).get("answer_types")):
            raise FieldError("answer.gold_is", "applies to multiple_choice answers only")
        return self


@dataclass(frozen=True)
class Example:
    id: str
    inputs: dict[str, Any]
    gold: str
    labels: dict[str, str] = field(default_factory=dict, compare=False)  # the task's `labels:`, never shown
    criteria: tuple = field(default=(), compare=False)  # promptopt.judge.Criterion per judge.criteria, never shown
    # the items it is not independent of share its cluster (the task's `cluster:` column; a probe
    # item's source item): intervals resample clusters. None: an item on its own
    cluster: str | None = field(default=None, compare=False)


@dataclass
class Task:
    spec: TaskSpec
    path: Path
    _parts: dict[str, list[Example]] | None = field(default=None, repr=False)
    dropped: dict[str, int] = field(default_factory=dict)  # clean-up name -> rows removed
    answer_types: dict[str, AnswerType] = field(default_factory=dict, repr=False)  # what its answer type is found in
    # A derived task (an open-ended twin, a probe) is its source task's items transformed one by
    # one, each keeping its source item's split: `derive` maps a source example to its own.
    derived_from: Task | None = field(default=None, repr=False)
    derive: Any = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return self.spec.name

    def derived(self, ex: Example) -> list[Example]:
        """This derived task's items of one source item, each in the source item's cluster (its
        declared one, else the source item itself): a probe's items are not independent of it."""
        from dataclasses import replace

        return [d if d.cluster else replace(d, cluster=ex.cluster or ex.id) for d in self.derive(ex)]

    @cached_property
    def answer_type(self) -> AnswerType:
        return with_options((self.answer_types or answer_types())[self.spec.answer.type], self.spec.answer.options)

    @property
    def input_fields(self) -> list[str]:
        return list(self.spec.inputs)

    @property
    def image_fields(self) -> list[str]:
        return [name for name in self.spec.inputs if is_image_field(name)]

    def parts(self) -> dict[str, list[Example]]:
        """Rows per source split ("pool" when the source is one set of files)."""
        if self._parts is None:
            if self.derived_from is None:
                self._parts = _load_parts(self)
            else:
                base = self.derived_from
                self._parts = {part: [d for ex in rows for d in self.derived(ex)] for part, rows in base.parts().items()}
                self.dropped = base.dropped
        return self._parts

    def rows(self) -> list[Example]:
        return [ex for rows in self.parts().values() for ex in rows]

    @cached_property
    def splits(self) -> dict[str, list[Example]]:
        return _make_splits(self)

    def examples(self, split: str, limit: int | None = None) -> list[Example]:
        if split not in SPLITS:
            raise UserError(f"Unknown split {split!r}; valid splits are {', '.join(SPLITS)}.")
        if self.derived_from is not None and limit is not None:  # the limit counts source items
            return [d for ex in self.derived_from.examples(split, limit) for d in self.derived(ex)]
        chosen = self.splits[split]
        return chosen if limit is None else chosen[:limit]


def stem_key(inputs: dict[str, Any]) -> str:
    """Identity of a question for splitting: its normalized text inputs, options left out.

    For a task whose only text input is `question` this is the normalized question; a generic
    question over different notes (MedCalc-Bench) stays apart because the note is part of it.
    """
    parts = [str(v) for k, v in inputs.items() if k != "options" and isinstance(v, str)]
    text = "\n".join(parts) if parts else repr(sorted(inputs.items()))
    return hashlib.sha1(re.sub(r"\s+", " ", text.lower()).strip().encode()).hexdigest()


def _carve(rows: list[Example], sizes: list[tuple[str, int | None]], rest: str, seed: int) -> dict[str, list[Example]]:
    """Fill the named splits with whole question groups, in a seeded order; `rest` gets the others."""
    groups: dict[str, list[Example]] = {}
    for ex in rows:
        groups.setdefault(stem_key(ex.inputs), []).append(ex)
    keys = list(groups)
    random.Random(seed).shuffle(keys)
    out: dict[str, list[Example]] = {name: [] for name, _ in sizes} | {rest: []}
    for key in keys:
        target = next((name for name, n in sizes if n is not None and len(out[name]) < n), rest)
        out[target].extend(groups[key])
    return out


def split_examples(rows: list[Example], rule: SplitSpec) -> dict[str, list[Example]]:
    """Seeded split over question groups: train and val take their sizes, test the rest."""
    out = _carve(rows, [("train", rule.train), ("val", rule.val)], "test", rule.seed)
    out = {s: out[s] for s in SPLITS}
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


_GOLD_IS_FORM = {
    "index0": "the 0-based index of one of its options",
    "index1": "the 1-based index of one of its options",
    "option_key": "the key of one of its options",
    "option_text": "the text of one of its options",
}


def check_gold(task: Task) -> None:
    """Refuse gold answers no prediction can match: through the task's own answer type, each must
    be a valid answer and score 1.0 against itself, or every config would score 0 on it silently."""
    kind, spec = task.answer_type, task.spec.answer
    listed: list[Example] = []
    invalid: list[Example] = []
    unscored: list[tuple[Example, float]] = []
    for split in SPLITS:
        for ex in task.splits[split]:
            try:
                canonical = kind.gold_answer(ex.gold, ex.inputs)
                score = None if canonical is None else kind.score(canonical, ex.gold)
            except (ValueError, TypeError, KeyError):
                score = None
            if score is None:
                (listed if _listed(ex.gold) > 1 else invalid).append(ex)
            elif score < 1.0:
                unscored.append((ex, score))
    where = f"Task file {task.path}: field answer.gold"
    if listed:
        ex = listed[0]
        raise UserError(
            f"{where} holds a list of {_listed(ex.gold)} answers in {_rows(len(listed))} (e.g. id {ex.id!r}); "
            f"answer type {kind.name} takes one answer per row."
        )
    multiple_choice = kind.offers_options
    form = _GOLD_IS_FORM.get(spec.gold_is or "", kind.gold_form)
    if multiple_choice and spec.gold_is in (None, "letter"):
        form += ", or set answer.gold_is (" + ", ".join(_GOLD_IS_FORM) + ")"
    if invalid:
        ex = invalid[0]
        what = "one of their options" if multiple_choice else f"a valid {kind.name} answer"
        seen = f", options {', '.join(parse_options(ex.inputs.get('options')))}" if multiple_choice else ""
        raise UserError(
            f"{where} gives {_rows(len(invalid))} a gold answer that is not {what} "
            f"(e.g. id {ex.id!r} has {_shown(ex.gold)}{seen}); give each row {form}."
        )
    if unscored:
        ex, score = unscored[0]
        raise UserError(
            f"{where} gives {_rows(len(unscored))} a gold answer that scores below 1 against itself under "
            f"answer type {kind.name} (e.g. id {ex.id!r} has {_shown(ex.gold)}, scoring {score:g}); "
            f"give each row {form}."
        )


def _listed(gold: str) -> int:
    """How many answers a gold holds when it is a JSON list, else 0."""
    if not gold.startswith("["):
        return 0
    try:
        answers = json.loads(gold)
    except ValueError:
        return 0
    return len(answers) if isinstance(answers, list) else 0


def _rows(n: int) -> str:
    return f"{n} row{'s' if n != 1 else ''}"


def _shown(gold: str) -> str:
    return repr(gold if len(gold) <= 60 else gold[:57] + "...")


def _make_splits(task: Task) -> dict[str, list[Example]]:
    if task.derived_from is not None:  # each item keeps its source item's split: nothing is carved again
        base = task.derived_from.splits
        return {s: [d for ex in base[s] for d in task.derived(ex)] for s in SPLITS}
    spec, parts = task.spec, task.parts()
    rule = spec.split
    if "pool" in parts and not rule.test_ids:
        out = split_examples(parts["pool"], rule)
    elif "pool" in parts:
        ids = _read_ids(task, rule.test_ids)
        test = [ex for ex in parts["pool"] if ex.id in ids]
        if len(test) != len(ids):
            missing = sorted(ids - {ex.id for ex in test})[:3]
            raise UserError(
                f"Task file {task.path}: field split.test_ids lists ids the data does not have ({missing})."
            )
        pool = [ex for ex in parts["pool"] if ex.id not in ids]
        out = _carve(pool, [("val", rule.val)], "train", rule.seed) | {"test": test}
    else:
        out = {s: list(parts.get(s, [])) for s in SPLITS}
        if "val" not in parts:
            out |= _carve(out["train"], [("val", rule.val)], "train", rule.seed)
    out = {s: out[s] for s in SPLITS}
    if rule.drop_pool_overlap:
        from promptopt.hygiene import find_overlaps

        leaked = {(o.pool_split, o.pool_id) for o in find_overlaps(out)}
        for s in ("train", "val"):
            kept = [ex for ex in out[s] if (s, ex.id) not in leaked]
            task.dropped[f"{s} rows duplicating test rows"] = len(out[s]) - len(kept)
            out[s] = kept
    if rule.demos_without_test_images:
        shown = {d for ex in out["test"] for d in digests(ex.inputs)}
        kept = [ex for ex in out["train"] if shown.isdisjoint(digests(ex.inputs))]
        task.dropped["train rows showing a test item's image (no demo shows one)"] = len(out["train"]) - len(kept)
        out["train"] = kept
    return out


def image_overlap(task: Task) -> dict[str, int] | None:
    """How many test images the other items of the source also show (by content) and how many the
    train and val splits still show, or None for a task without images. VQA-RAD splits by question,
    not by image: most of its test images have train questions by design."""
    test_ids = {ex.id for ex in task.examples("test")}
    test = {d for ex in task.examples("test") for d in digests(ex.inputs)}
    if not test:
        return None
    others = {d for ex in task.rows() if ex.id not in test_ids for d in digests(ex.inputs)}
    split = {s: len(test & {d for ex in task.examples(s) for d in digests(ex.inputs)}) for s in ("train", "val")}
    return {"test_images": len(test), "in_other_source_items": len(test & others),
            "in_train": split["train"], "in_val": split["val"]}  # fmt: skip


def _read_ids(task: Task, name: str) -> set[str]:
    path = _resolve(task, name, "split.test_ids")
    text = path.read_text()
    try:
        data = json.loads(text)
    except ValueError:
        return {line.strip() for line in text.splitlines() if line.strip()}
    return {str(k) for k in data}


# --- reading rows -------------------------------------------------------------------------


def _data_root(task: Task) -> Path:
    src = task.spec.source
    if not src.env:
        return task.path.parent
    folder = os.environ.get(src.env)
    if not folder:
        where = f" from {src.download}" if src.download else ""
        raise UserError(
            f"Task {task.name} ({task.path}) needs data that promptopt does not bundle: download it{where} "
            f"and set the environment variable {src.env} to the folder that holds it."
        )
    return Path(folder).expanduser()


def _resolve(task: Task, name: str, fld: str) -> Path:
    if not name.strip() or not name.isprintable():  # a NUL, a newline: no file of a task is named so
        raise UserError(f"Task file {task.path}: field {fld} names {name[:80]!r}, which is not a file name.")
    base = _data_root(task) if fld in ("source.files", "source.images") else task.path.parent
    path = (base / name).resolve() if not Path(name).is_absolute() else Path(name)
    confined(path.parent if "*" in name else path, base, f"Task file {task.path}: field {fld}")
    if "*" in name:
        return path
    try:
        found, folder = path.exists(), path.is_dir()
    except OSError as exc:  # e.g. a name longer than the file system allows
        raise UserError(f"Task file {task.path}: field {fld} names a path that cannot be used ({exc.strerror}).") from None
    if not found:
        raise UserError(f"Task file {task.path}: field {fld} names {path}, which does not exist.")
    if folder != (fld == "source.images"):
        kind = "a folder; give a file" if path.is_dir() else "a file; give the folder that holds the images"
        raise UserError(f"Task file {task.path}: field {fld} names {path}, which is {kind}.")
    return path


def _expand(task: Task, files: Files) -> list[Path]:
    out: list[Path] = []
    for name in [files] if isinstance(files, str) else files:
        path = _resolve(task, name, "source.files")
        if "*" in name:
            matches = sorted(path.parent.glob(path.name))
            if not matches:
                raise UserError(f"Task file {task.path}: field source.files pattern {path} matches no file.")
            out.extend(matches)
        else:
            out.append(path)
    return out


def _walk(doc: Any, steps: list[str], keys: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], dict]]:
    """Rows inside a JSON document: '*' walks every value of an object (its key is kept)."""
    if not steps:
        items = doc if isinstance(doc, list) else [doc]
        return [(keys, item) for item in items if isinstance(item, dict)]
    step, rest = steps[0], steps[1:]
    if step == "*":
        values = doc.items() if isinstance(doc, dict) else enumerate(doc or [])
        return [found for k, v in values for found in _walk(v, rest, (*keys, str(k)))]
    return _walk(doc.get(step) if isinstance(doc, dict) else None, rest, keys)


def _check_encoding(where: str, path: Path, encoding: str) -> None:
    """A file that does not decode in the task's encoding, said in one sentence naming the byte
    and the setting that fixes it (before `datasets` answers with a generation error)."""
    try:
        path.read_bytes().decode(encoding)
    except UnicodeDecodeError as exc:
        bad = exc.object[exc.start : exc.start + 1].hex()
        line = exc.object[: exc.start].count(b"\n") + 1
        hint = ("if it is Latin-1 or Windows-1252 (as spreadsheets often save CSV), add `encoding: cp1252` under "
                "source:" if encoding.replace("-", "").lower() == "utf8" else "set source.encoding to the one it is in")  # fmt: skip
        raise UserError(f"{where}: {path} is not {encoding} text (byte 0x{bad} on line {line}); {hint}.") from None
    except OSError:
        return  # a missing or unreadable file is said where it is read


def _check_jsonl(where: str, path: Path, encoding: str) -> None:
    """Every line a JSON object: pyarrow's reader, under datasets, crashes the whole process on a
    file whose first line is `null` (found by fuzzing, pyarrow 26.0.1)."""
    with open(path, encoding=encoding) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as exc:
                raise UserError(f"{where}: line {n} of {path} is not valid JSON ({exc.msg}).") from None
            if not isinstance(row, dict):
                kind = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(type(row), "a number")
                raise UserError(
                    f"{where}: line {n} of {path} holds {kind}; each line of a JSONL file must be one object (one row)."
                )


def _read_file(task: Task, path: Path) -> list[dict]:
    src = task.spec.source
    where = f"Task file {task.path}"
    if path.suffix.lower() == ".zip":
        check_zip(path, where)
    elif path.suffix.lower() in (".gz", ".bz2", ".xz", ".zst"):
        check_stream(path, where)
    elif src.format != "parquet":
        check_lines(path, where, csv=src.format == "csv")
        _check_encoding(where, path, src.encoding)  # compressed files are decoded where datasets opens them
        if src.format == "jsonl" and src.records is None:
            _check_jsonl(where, path, src.encoding)
    try:
        if src.records is not None:
            doc = json.loads(path.read_text(encoding=src.encoding))
            steps = [s for s in src.records.split(".") if s]
            return [{**row, "_key": "/".join(keys)} for keys, row in _walk(doc, steps)]
        import datasets

        datasets.disable_progress_bars()
        fmt = "json" if src.format == "jsonl" else src.format
        kwargs: dict[str, Any] = {} if fmt == "parquet" else {"encoding": src.encoding}
        if fmt == "csv" and not src.header:
            kwargs |= {"header": None, "column_names": src.columns}
        ds = datasets.load_dataset(fmt, data_files=[str(path)], split="train", **kwargs)
        return ds.to_list()
    except UserError:
        raise
    except Exception as exc:  # datasets and json raise many types; the user needs one sentence
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{where}: could not read {path} ({first[:200]}).") from exc


def _read_hub(task: Task, split: str) -> list[dict]:
    import datasets

    src = task.spec.source
    try:
        ds = datasets.load_dataset(src.hub, revision=src.revision, split=split)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(
            f"Task file {task.path}: could not load hub dataset {src.hub} ({first[:200]}); "
            "with no internet, point source.files at local copies instead."
        ) from exc
    return ds.to_list()


def _empty(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip()) or value != value  # NaN


def _columns_used(spec: TaskSpec) -> dict[str, str]:
    """field -> column for every column the spec reads, to check them against the data."""
    used: dict[str, str] = {}
    for name, m in spec.inputs.items():
        if isinstance(m, str):
            used[f"inputs.{name}"] = m
        elif isinstance(m, list):
            used |= {f"inputs.{name}[{i}]": c for i, c in enumerate(m)}
        else:
            used[f"inputs.{name}.column"] = m.column
    gold = spec.answer.gold
    used |= {f"answer.gold.{k}": c for k, c in gold.items()} if isinstance(gold, dict) else {"answer.gold": gold}
    if isinstance(spec.id, str):
        used["id"] = spec.id
    elif spec.id:
        used |= {f"id[{i}]": c for i, c in enumerate(spec.id)}
    for kind in ("drop_empty", "drop_nonempty"):
        used |= {f"rows.{kind}": c for c in getattr(spec.rows, kind)}
    used |= {f"rows.keep.{c}": c for c in spec.rows.keep}
    return used


def _check_columns(task: Task, rows: list[tuple[str, dict]], where: str) -> None:
    if not rows:
        return
    columns = set().union(*(r.keys() for _, r in rows))
    for fld, col in _columns_used(task.spec).items():
        if col not in columns:
            raise UserError(
                f"Task file {task.path}: field {fld} names column {col!r}, which {where} has "
                f"(columns: {', '.join(sorted(columns))})."
            )


def _keep(row: dict, rules: RowsSpec) -> bool:
    if any(_empty(row.get(c)) for c in rules.drop_empty):
        return False
    if any(not _empty(row.get(c)) for c in rules.drop_nonempty):
        return False
    for col, wanted in rules.keep.items():
        if str(row.get(col)) not in ([wanted] if isinstance(wanted, str) else wanted):
            return False
    return True


def _letters(n: int) -> list[str]:
    return [chr(ord("A") + i) for i in range(n)]


def _options(value: Any, mapping: Any, row: dict) -> tuple[dict[str, str], dict[str, str]]:
    """Lettered options, and option key -> letter (for gold given as an option key)."""
    if isinstance(mapping, list):
        cells = [row.get(c) for c in mapping]
        return {k: str(v) for k, v in zip(_letters(len(cells)), cells, strict=True) if not _empty(v)}, {}
    if isinstance(mapping, OptionList):
        items = row[mapping.column] or []
        letters = _letters(len(items))
        keys = {str(item.get(mapping.key)): k for k, item in zip(letters, items, strict=True)} if mapping.key else {}
        return {k: str(item[mapping.text]) for k, item in zip(letters, items, strict=True)}, keys
    if isinstance(value, dict):
        return {k: str(v) for k, v in value.items() if v is not None}, {}
    if isinstance(value, list):
        return {k: str(v) for k, v in zip(_letters(len(value)), value, strict=True)}, {}
    raise ValueError(f"options must be a mapping, a list or a list of columns, not {type(value).__name__}")


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float):  # pandas reads integer columns with gaps as floats
        return None if value != value else int(value) if value.is_integer() else value
    return value


def _answers(value: Any) -> list[Any]:
    """A gold cell's answers: one, or a list (["J"], or a string holding a JSON or Python list, "['J']")."""
    value = _plain(value)
    text = value.strip() if isinstance(value, str) else ""
    if text.startswith("[") and text.endswith("]"):
        try:
            value = json.loads(text)
        except ValueError:
            with contextlib.suppress(ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                value = ast.literal_eval(text)
    return [_plain(v) for v in value] if isinstance(value, list | tuple) else [value]


def _one_gold(spec: AnswerSpec, value: Any, options: dict[str, str], keys: dict[str, str], lettered: bool) -> str:
    """One gold answer as its answer type reads it; a multiple-choice gold becomes its option's
    letter, or stays as written when it names no option (so `check_gold` can show it)."""
    gold = "" if _empty(value) else str(value).strip()
    if spec.gold_after:
        gold = gold.rsplit(spec.gold_after, 1)[-1].strip()
    if not lettered:  # only an answer type that offers options reads a gold as an option
        return gold
    if spec.gold_is in ("index0", "index1"):
        try:
            index = float(gold)
        except ValueError:
            return gold
        at = int(index) - (spec.gold_is == "index1") if index.is_integer() else -1
        letter = chr(ord("A") + at) if 0 <= at < 26 else ""
        return letter if letter in options else gold
    if spec.gold_is == "option_key":
        return keys.get(gold, gold)
    if spec.gold_is == "option_text":  # spacing and case aside
        text = " ".join(gold.split()).casefold()
        return next((k for k, v in options.items() if " ".join(v.split()).casefold() == text), gold)
    return {k.upper(): k for k in options}.get(gold.upper(), gold)  # a lower-case letter


def _example(task: Task, row: dict, default_id: str) -> Example:
    spec = task.spec
    if isinstance(spec.id, list):
        ex_id = "/".join(str(_plain(row[c])) for c in spec.id)
    else:
        ex_id = str(_plain(row[spec.id])) if spec.id else default_id
    ex_id = ex_id.replace("\x00", "\ufffd")  # as a PostgreSQL store keeps it (its text cannot hold NUL)
    if len(ex_id) > ID_CHARS:  # the store's key column (PostgreSQL enforces its length)
        raise UserError(
            f"Task {task.name} has an item id of {len(ex_id):,} characters ({ex_id[:40]!r}...); ids may have at most "
            f"{ID_CHARS}: give `id:` a shorter column, or leave it out to number the rows."
        )
    inputs: dict[str, Any] = {}
    keys: dict[str, str] = {}
    for name, m in spec.inputs.items():
        value = row[m] if isinstance(m, str) else None
        if is_image_field(name) and isinstance(m, str):
            where = f"Task {task.name}, item {ex_id}, column {m}"
            inputs[name] = image_refs(value, _image_folder(task), where, many=name.endswith("images"),
                                      inside=_data_root(task))  # fmt: skip
        elif name == "options" or not isinstance(m, str):
            inputs[name], keys = _options(value, m, row)
        elif isinstance(value, list):  # paragraphs (PubMedQA contexts)
            inputs[name] = "\n\n".join(str(v) for v in value)
        else:
            inputs[name] = "" if _empty(value) else str(value) if not isinstance(value, str) else value
    gold_spec = spec.answer
    if isinstance(gold_spec.gold, dict):
        gold = json.dumps({part: _plain(row[col]) for part, col in gold_spec.gold.items()})
    else:
        lettered = offers_options(gold_spec.type, task.answer_types or None)
        answers = [_one_gold(gold_spec, a, inputs.get("options", {}), keys, lettered) for a in _answers(row[gold_spec.gold])]
        # several answers: exact_text's any-of (a JSON list); `check_gold` refuses them for other types
        gold = answers[0] if len(answers) == 1 else json.dumps(answers) if answers else ""
    labels = {name: str(_plain(row[col])) for name, col in spec.labels.items() if not _empty(row.get(col))}
    criteria = _criteria(task, row, ex_id) if spec.judge and spec.judge.criteria else ()
    cluster = None
    if spec.cluster:
        if spec.cluster not in row:
            raise UserError(f"Task {task.name}: cluster column {spec.cluster!r} is not in the data; valid columns: "
                            f"{', '.join(map(str, row))}.")  # fmt: skip
        cluster = None if _empty(row[spec.cluster]) else str(_plain(row[spec.cluster]))
    return Example(id=ex_id, inputs=inputs, gold=gold, labels=labels, criteria=criteria, cluster=cluster)


def _criteria(task: Task, row: dict, ex_id: str) -> tuple:
    """An item's rubric: its judge.criteria cell (a list, or that list as JSON text) read as
    promptopt.judge.Criterion, or one sentence naming the item and what a criterion needs."""
    import math

    from promptopt.judge import Criterion

    column = task.spec.judge.criteria
    where = f"Task {task.name}, item {ex_id}: judge.criteria column {column!r}"
    form = 'a list of {"criterion": TEXT, "points": NUMBER} objects (and optional "tags": [TEXT, ...])'
    if column not in row:
        raise UserError(f"{where} is not in the data; name a column that holds {form}.")
    value = _plain(row[column])
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise UserError(f"{where} holds text that is not JSON; it must hold {form}.") from None
    if not isinstance(value, list) or not value:
        raise UserError(f"{where} holds {type(value).__name__ if value != [] else 'an empty list'}; it must hold {form}.")
    out = []
    for i, c in enumerate(value, 1):
        c = _plain(c)
        text, points, tags = (c.get("criterion"), c.get("points"), c.get("tags", [])) if isinstance(c, dict) else (None,) * 3
        tags = [tags] if isinstance(tags, str) else tags
        if not isinstance(text, str) or not text.strip() or isinstance(points, bool) or not isinstance(points, int | float) \
                or not math.isfinite(points) or points == 0 or not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise UserError(f"{where}: criterion {i} is {json.dumps(c, default=str)[:80]}; each must be {{\"criterion\": "
                            "non-empty text, \"points\": a non-zero number (negative for what an answer should not do)} "
                            "with optional \"tags\": a list of text.")  # fmt: skip
        out.append(Criterion(text.strip(), float(points), tuple(t.strip() for t in tags if t.strip())))
    if not any(c.points > 0 for c in out):
        raise UserError(f"{where} has no criterion with positive points, so the item has no points possible; "
                        "give it at least one.")  # fmt: skip
    return tuple(out)


def _image_folder(task: Task) -> Path:
    """Where an image column's file names are found: `source.images`, else the data files' folder."""
    src = task.spec.source
    if src.images:
        return _resolve(task, src.images, "source.images")
    files = src.files if not isinstance(src.files, dict) else next(iter(src.files.values()))
    first = files if isinstance(files, str) else files[0]
    return (_data_root(task) / first).parent


def _content_key(inputs: dict[str, Any]) -> str:
    return hashlib.sha1(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


def _load_parts(task: Task) -> dict[str, list[Example]]:
    src = task.spec.source
    if src.hub is not None:
        named = src.hub_splits or {"pool": "train"}
        raw = {
            part: [(f"{split}:{i}", r) for i, r in enumerate(_read_hub(task, split))] for part, split in named.items()
        }
    else:
        files = src.files if isinstance(src.files, dict) else {"pool": src.files}
        raw = {}
        for part, names in files.items():
            raw[part] = []
            for path in _expand(task, names):
                rows = _read_file(task, path)
                raw[part] += [(f"{path.stem}:{r.get('_key') or i}" if src.records else f"{path.stem}:{i}", r)
                              for i, r in enumerate(rows)]  # fmt: skip
    # a column must exist in some data file: op4 and op5 of MedBullets share a spec, only op5 has `ope`
    _check_columns(task, [r for rows in raw.values() for r in rows[:50]], "no data file")
    parts: dict[str, list[Example]] = {}
    for part, rows in raw.items():
        kept = [(i, r) for i, r in rows if _keep(r, task.spec.rows)]
        if len(kept) < len(rows):
            task.dropped[f"{part} rows removed by rows filters"] = len(rows) - len(kept)
        try:
            examples = [_example(task, r, i) for i, r in kept]
        except (ValueError, TypeError, KeyError, IndexError) as exc:
            raise UserError(
                f"Task file {task.path}: a row of {part} cannot be mapped to inputs and gold ({exc})."
            ) from None
        if task.spec.rows.dedupe:
            seen: set[str] = set()
            unique = []
            for ex in examples:
                key = _content_key(ex.inputs)
                if key not in seen:
                    seen.add(key)
                    unique.append(ex)
            if len(unique) < len(examples):
                task.dropped[f"{part} duplicate rows"] = len(examples) - len(unique)
            examples = unique
        parts[part] = examples
    return parts


# --- finding tasks ------------------------------------------------------------------------


def read_mapping(path: Path, what: str, of: str = "fields") -> dict:
    """A YAML file that holds a mapping (read safely), or one sentence on what is wrong with it."""
    try:
        raw = yaml.safe_load(check_yaml(Path(path), what))
    except FileNotFoundError:
        raise UserError(f"{what} {path} does not exist.") from None
    except IsADirectoryError:
        raise UserError(f"{what} {path} is a folder; give a YAML file.") from None
    except yaml.YAMLError as exc:
        raise UserError(f"{what} {path} is not valid YAML ({exc.__class__.__name__}).") from None
    if not isinstance(raw, dict):
        raise UserError(f"{what} {path} must hold a mapping of {of}, not {type(raw).__name__}.")
    return raw


def load_task_file(path: Path, programs_dirs: list[Path] | None = None) -> Task:
    """Read and validate one task YAML; errors name the file and the field. Its answer type
    is a bundled one or one declared in `programs_dirs`."""
    path = Path(path)
    raw = read_mapping(path, "Task file")
    known = answer_types(programs_dirs)
    try:
        spec = TaskSpec.model_validate(raw, context={"answer_types": known})
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(shown(p) for p in err["loc"] if not str(p).startswith(("str", "list", "dict", "OptionList")))
        msg = err["msg"].removeprefix("Value error, ")
        blamed = (err.get("ctx") or {}).get("error")
        if isinstance(blamed, FieldError):
            loc = ".".join(filter(None, [loc, blamed.field]))
        if err["type"] == "missing":
            msg = "this required field is missing"
        raise UserError(f"Task file {path}: field {loc or '(top level)'}: {msg}.") from None
    return Task(spec=spec, path=path, answer_types=known)


def task_dirs(extra: list[Path] | None = None) -> list[Path]:
    """User folders (arguments, then $PROMPTOPT_TASKS_DIR), then the bundled tasks."""
    from_env = [Path(p) for p in os.environ.get(TASKS_DIR_ENV, "").split(os.pathsep) if p]
    return [*(extra or []), *from_env, bundled_dir("tasks")]


def available_tasks(extra: list[Path] | None = None) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for folder in reversed(task_dirs(extra)):  # user folders override bundled tasks
        if not Path(folder).is_dir():
            raise UserError(f"Tasks folder {folder} does not exist.")
        for file in sorted([*Path(folder).glob("*.yaml"), *Path(folder).glob("*.yml")]):
            found[file.stem] = file
    return found


OPEN_SUFFIX = ":open"
OPEN_METRICS = ("token_f1", "rougeL", "exact", "judge")
OPEN_INSTRUCTIONS = (
    "Answer the following question. No answer options are given: reply with the answer itself in a few "
    "words (for example the diagnosis, the drug or the next step), without explanation."
)


def open_twin(base: Task) -> Task:
    """The multiple-choice task `base` with its options withheld: the same items and splits, the
    gold option's text as the reference answer, scored as free text (token F1 first, with ROUGE-L,
    exact match and the judge beside it)."""
    if not base.answer_type.offers_options:
        raise UserError(
            f"Task {base.name} has answer type {base.spec.answer.type}; only a multiple_choice task has an "
            f"open-ended twin ({base.name}{OPEN_SUFFIX} withholds its options)."
        )
    answer = AnswerSpec.model_construct(type="free_text", gold=base.spec.answer.gold, gold_is=None, gold_after=None,
                                        options={"metrics": list(OPEN_METRICS), "primary": OPEN_METRICS[0]})  # fmt: skip
    spec = base.spec.model_copy(update={
        "name": base.name + OPEN_SUFFIX,
        "description": f"{base.spec.description.strip()} Open-ended twin: the options are withheld and the "
                       "answer is scored against the gold option's text.",
        "inputs": {k: v for k, v in base.spec.inputs.items() if k != "options"},
        "answer": answer,
        "baseline": BaselineSpec(instructions=OPEN_INSTRUCTIONS),
        "judge": base.spec.judge,
        "language": None,  # its records are free text: never a language sibling of a multiple-choice task
        "probes": [],
    })  # fmt: skip
    return Task(spec=spec, path=base.path, answer_types=base.answer_types, derived_from=base, derive=_withhold_options)


def _withhold_options(ex: Example) -> list[Example]:
    inputs = {k: v for k, v in ex.inputs.items() if k != "options"}
    return [Example(id=ex.id, inputs=inputs, gold=parse_options(ex.inputs.get("options")).get(ex.gold, ex.gold))]


def probe_task(base: Task, suffix: str) -> Task:
    """TASK~SUFFIX: the probe that SUFFIX names (promptopt.probes) applied to a multiple-choice task."""
    from promptopt import probes

    probe = probes.probe_of_suffix(suffix)
    if probe.name in probes.IMAGE_PROBES:
        return _image_probe_task(base, probe, suffix)
    if not base.answer_type.offers_options:
        raise UserError(
            f"Task {base.name} has answer type {base.spec.answer.type}; the {probe.name} probe transforms "
            "multiple-choice tasks only."
        )
    if probe.name in ("negation", "partial") and "question" not in base.spec.inputs:
        raise UserError(
            f"Task {base.name} has no input named question (its inputs: {', '.join(base.spec.inputs)}); the "
            f"{probe.name} probe rewrites the question stem, so it needs one."
        )
    update: dict[str, Any] = {"name": f"{base.name}{probes.SEP}{suffix}", "probes": [], "language": None,
                              "description": f"{base.spec.description.strip()} Probe: {probe.name}."}  # fmt: skip
    if probe.name == "negation":
        update |= {
            "inputs": {"question": "question", "proposed_answer": "proposed_answer"},
            "answer": AnswerSpec.model_construct(type="yes_no_maybe", gold="gold", gold_is=None, gold_after=None,
                                                 options={}),  # fmt: skip
            "baseline": BaselineSpec(instructions=probes.NEGATION_INSTRUCTIONS),
        }
    spec = base.spec.model_copy(update=update)
    return Task(spec=spec, path=base.path, answer_types=base.answer_types, derived_from=base,
                derive=probes.transform(probe, suffix))  # fmt: skip


def _image_probe_task(base: Task, probe, suffix: str) -> Task:
    """TASK~noimage (the questions blind) or TASK~organ (organ pairs on each item's image)."""
    from promptopt import probes

    if not base.image_fields:
        raise UserError(
            f"Task {base.name} has no image inputs; the {probe.name} probe asks about each item's image, so it "
            "applies to tasks with an image column (inputs: {image: COLUMN})."
        )
    update: dict[str, Any] = {"name": f"{base.name}{probes.SEP}{suffix}", "probes": [], "language": None,
                              "description": f"{base.spec.description.strip()} Probe: {probe.name}."}  # fmt: skip
    organs: list[str] = []
    if probe.name == "no_image":
        update["inputs"] = {k: v for k, v in base.spec.inputs.items() if not is_image_field(k)}
    else:
        if "organ" not in base.spec.labels:
            raise UserError(
                f"Task {base.name} names no organ label; the organ_pair probe asks whether the image shows the "
                "item's organ, so the task's YAML needs labels: {organ: COLUMN}."
            )
        organs = sorted({ex.labels["organ"] for ex in base.rows() if ex.labels.get("organ")})
        # one pair per image, held by the first item that shows it, test first: items that share an
        # image would otherwise ask the same pair twice, across splits too (a test pair in val)
        holders: dict[str, str] = {}
        for split in ("test", "val", "train"):
            for ex in base.splits[split]:
                holders.setdefault(" ".join(digests(ex.inputs)), ex.id)
        update |= {
            "inputs": {**{k: v for k, v in base.spec.inputs.items() if is_image_field(k)}, "question": "question"},
            "answer": AnswerSpec.model_construct(type="yes_no_maybe", gold="gold", gold_is=None, gold_after=None,
                                                 options={}),  # fmt: skip
            "baseline": BaselineSpec(instructions=probes.ORGAN_INSTRUCTIONS),
        }
    spec = base.spec.model_copy(update=update)
    derive = probes.transform(probe, suffix, organs)
    if probe.name == "organ_pair":
        derive = _held(derive, holders)
    return Task(spec=spec, path=base.path, answer_types=base.answer_types, derived_from=base, derive=derive)


def _held(derive, holders: dict[str, str]):
    """`derive`, for the item holding its image's pair only."""
    return lambda ex: derive(ex) if holders.get(" ".join(digests(ex.inputs))) == ex.id else []


def load_task(name: str, extra: list[Path] | None = None, programs_dirs: list[Path] | None = None) -> Task:
    """A task by name (bundled or from a user folder) or by path to its YAML file; NAME:open is
    the open-ended twin of a multiple-choice task.

    A task is found by its file name and identified by its `name:` field; the two must agree,
    or results stored under one name would be looked up under the other."""
    if name.endswith(OPEN_SUFFIX):
        return open_twin(load_task(name.removesuffix(OPEN_SUFFIX), extra, programs_dirs))
    if "~" in name and not name.endswith((".yaml", ".yml")):
        base, _, suffix = name.rpartition("~")
        return probe_task(load_task(base, extra, programs_dirs), suffix)
    if name.endswith((".yaml", ".yml")):
        return load_task_file(Path(name), programs_dirs)
    known = available_tasks(extra)
    if name not in known:
        raise UserError(f"Unknown task {name!r}; valid tasks are {', '.join(sorted(known))}.")
    task = load_task_file(known[name], programs_dirs)
    if task.name != name:
        raise UserError(
            f"Task file {known[name]} is found as {name!r} but names itself {task.name!r}; rename the file "
            f"to {task.name}.yaml or set name: {name} in it."
        )
    return task
