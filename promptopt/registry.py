"""Registries: strategies, optimizers and answer types, each found by name.

One small generic type serves all three. A file declares an entry with a decorator
(`@strategy`, `@optimizer` in promptopt.optimizers, `@answer_type` in promptopt.answers);
bundled entries come with promptopt, user entries from the folders a caller names
(`--programs-dir`: one folder may hold strategies, optimizers and answer types alike). Every
lookup builds its table afresh from the bundled entries and the folders of that call, so a
user entry that shadows a bundled name is seen only by the calls that name its folder.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from promptopt.errors import UserError
from promptopt.paths import bundled_dir

T = TypeVar("T")

# module name -> file, for the files import_file loaded: what their decorators declare is theirs
_files: dict[str, Path] = {}


class Registry(Generic[T]):
    """Named entries of one kind: bundled ones (declared on import of promptopt's own modules or
    bundled folders), then those of user folders, later folders overriding earlier ones."""

    def __init__(self, kind: str, plural: str, bundled_dirs: Callable[[], list[Path]] = list):
        self.kind, self.plural, self._bundled_dirs = kind, plural, bundled_dirs
        self._by_file: dict[Path | None, dict[str, T]] = {}

    def add(self, name: str, entry: T, module: str) -> T:
        """Declare `entry` as `name`, owned by the file of `module` when import_file loaded it
        (a bundled or user folder's file), else by promptopt itself (always seen)."""
        self._by_file.setdefault(_files.get(module), {})[name] = entry
        return entry

    def files(self, extra_dirs: list[Path] | None = None) -> Iterator[Path]:
        for folder in [*self._bundled_dirs(), *(extra_dirs or [])]:
            if not Path(folder).is_dir():
                raise UserError(f"Programs folder {folder} does not exist.")
            yield from (f.resolve() for f in sorted(Path(folder).glob("*.py")) if not f.name.startswith("_"))

    def load(self, extra_dirs: list[Path] | None = None) -> dict[str, T]:
        """Every entry this call can see: a fresh table, nothing kept from another call's folders."""
        bundled = [f.resolve() for d in self._bundled_dirs() for f in Path(d).glob("*.py")]
        table: dict[str, T] = dict(self._by_file.get(None, {}))
        for file in self.files(extra_dirs):
            import_file(file)
            if file in bundled or file in self._by_file:
                table |= self._by_file.get(file, {})
        return table

    def get(self, name: str, extra_dirs: list[Path] | None = None) -> T:
        return self.pick(self.load(extra_dirs), name)

    def pick(self, known: dict[str, T], name: str) -> T:
        """`name` from a table `load` made, or one sentence naming the valid ones."""
        if name not in known:
            raise UserError(f"Unknown {self.kind} {name!r}; valid {self.plural} are {', '.join(sorted(known))}.")
        return known[name]


def import_file(path: Path) -> None:
    """Import a user or bundled Python file once; what it declares is recorded as its own."""
    path = Path(path).resolve()
    mod_name = "promptopt_programs_" + hashlib.sha1(str(path).encode()).hexdigest()[:10] + "_" + path.stem
    if mod_name in sys.modules:
        return
    spec = importlib.util.spec_from_file_location(mod_name, path)
    if spec is None or spec.loader is None:
        raise UserError(f"Programs file {path} cannot be imported as Python.")
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module
    _files[mod_name] = path
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[mod_name]
        raise UserError(f"Programs file {path} failed to import ({type(exc).__name__}: {exc}).") from exc


@dataclass(frozen=True)
class Strategy:
    """A strategy as the engine sees it: what it is, and the traits it declares."""

    name: str
    module: type
    answer_types: frozenset[str]
    calls: Callable[[dict[str, Any], int], int]  # (knobs, number of options) -> LM calls per example
    knobs: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    source: str = ""  # the file that defines it
    # a reasoning step before the answer (a function of the knobs where a knob decides; None: undeclared)
    reasons: bool | Callable[[dict[str, Any]], bool] | None = None
    compilable: bool = True  # has DSPy predictors an optimizer can tune
    demos_knob: str | None = None  # the knob holding its own demos per prompt (e.g. kNN's k)
    prepares: bool = False  # learns from a training pool before scoring (`fit_pool`, maybe `teacher`)
    shuffles_options: bool = False  # its `votes` were cast under shuffled option orders (a consistency probe)
    prep_calls: Callable[[dict[str, Any], int], int] | None = None  # (knobs, train size) -> calls to prepare
    # what the model's endpoint must return: "logprobs" (top log-probabilities of the next token),
    # "prompt_logprobs" (log-probabilities of given text), checked before any task call
    needs: frozenset[str] = frozenset()
    uses_corpus: bool = False  # reads passages from the task's corpus (or --corpus)
    sees_images: bool = False  # passes a task's image inputs to the model (else an image task is refused)

    def check_knobs(self, knobs: dict[str, Any]) -> None:
        own = {k: v for k, v in knobs.items() if k not in COMMON_KNOBS}
        check_knob_values(f"Strategy {self.name!r}", self.knobs, own)
        for knob, valid in (("reasoning_effort", REASONING_EFFORTS), ("adapter", ADAPTERS)):
            if knob in knobs and knobs[knob] not in valid:
                raise UserError(
                    f"Strategy {self.name!r}: knob {knob!r} must be one of {', '.join(valid)}, not {knobs[knob]!r}."
                )

    def reasons_with(self, knobs: dict[str, Any]) -> bool | None:
        """Whether this strategy, with these knobs, writes a reasoning step before its answer
        (None when it does not say)."""
        if callable(self.reasons):
            return bool(self.reasons(self.knobs | knobs))
        return self.reasons

    def build(self, task, **knobs: Any):
        self.check_knobs(knobs)
        if ANY not in self.answer_types and task.spec.answer.type not in self.answer_types:
            raise UserError(
                f"Strategy {self.name!r} cannot serve task {task.name!r}: it supports answer types "
                f"{', '.join(sorted(self.answer_types))}, the task's is {task.spec.answer.type}."
            )
        if task.image_fields and not self.sees_images:
            able = ", ".join(sorted(n for n, s in STRATEGIES.load().items() if s.sees_images))
            raise UserError(
                f"Strategy {self.name!r} cannot serve task {task.name!r}: the task's items have images "
                f"({', '.join(task.image_fields)}) and it sends text only; strategies that send images: {able}."
            )
        own = {k: v for k, v in knobs.items() if k not in COMMON_KNOBS}  # the engine applies those to the LM
        try:
            return self.module(task, **(self.knobs | own))
        except ValueError as exc:  # a strategy refusing a knob value says why
            raise UserError(f"Strategy {self.name!r} refused its knobs: {exc}.") from None


def check_knob_values(what: str, defaults: dict[str, Any], knobs: dict[str, Any]) -> None:
    """Unknown knobs and values of the wrong type (against the default's) in one sentence."""
    unknown = set(knobs) - set(defaults)
    if unknown:
        raise UserError(f"{what} has no knob {sorted(unknown)[0]!r}; valid knobs: {', '.join(defaults) or 'none'}.")
    for key, value in knobs.items():
        default = defaults[key]
        if default is None or value is None:
            continue
        want = type(default)
        ok = isinstance(value, want) and not (want is int and isinstance(value, bool))
        ok = ok or (want is float and isinstance(value, int) and not isinstance(value, bool))
        if not ok:
            raise UserError(f"{what}: knob {key!r} must be {want.__name__} (like {default!r}), not {value!r}.")


# Knobs every strategy takes, applied to its LM calls rather than to the module: the reasoning
# effort of a reasoning model (LiteLLM's `reasoning_effort`, for models it lists as reasoning),
# and the prompt format, DSPy's adapter (promptopt.adapters: chat, json, xml; chat when not set).
COMMON_KNOBS = ("reasoning_effort", "adapter")
REASONING_EFFORTS = ("low", "medium", "high")
ADAPTERS = ("chat", "json", "xml")

ANY = "any"  # in `answer_types`: the strategy serves every answer type (it only uses the task's parser)

STRATEGIES: Registry[Strategy] = Registry("strategy", "strategies", lambda: [bundled_dir("programs")])


def strategy(
    name: str,
    answer_types: set[str] | frozenset[str],
    calls: Callable[[dict[str, Any], int], int],
    knobs: dict[str, Any] | None = None,
    reasons: bool | Callable[[dict[str, Any]], bool] | None = None,
    demos_knob: str | None = None,
    shuffles_options: bool = False,
    prep_calls: Callable[[dict[str, Any], int], int] | None = None,
    needs: set[str] | frozenset[str] = frozenset(),
):
    """Class decorator that registers a dspy.Module as a named strategy.

    Traits the engine reads instead of the name: `reasons` (a reasoning step before the answer;
    a function of the knobs where a knob decides), `demos_knob` (the knob holding its own demos
    per prompt), `compilable` (class attribute, default True: it has predictors an optimizer can
    tune), `prepares` (the class has `fit_pool`: it learns from a training pool first) and
    `shuffles_options` (its votes were cast under shuffled option orders), `sees_images` (class
    attribute: it sends a task's image inputs to the model) and `prep_calls`
    (knobs, train size -> LM calls its preparation makes, for estimates), `needs` (what the
    endpoint must return: "logprobs", "prompt_logprobs") and `uses_corpus` (class attribute: it
    retrieves from the task's corpus, given to it by `use_corpus`). What a prediction
    carries beyond its answer (reasoning, votes, retrieved ids) is stored as the record's extras
    (promptopt.records.Extras).
    """

    def register(cls: type) -> type:
        doc = (cls.__doc__ or "").strip().splitlines()
        cls.declared = STRATEGIES.add(
            name,
            Strategy(
                name=name, module=cls, answer_types=frozenset(answer_types), calls=calls, knobs=dict(knobs or {}),
                description=doc[0] if doc else "",
                source=getattr(sys.modules.get(cls.__module__), "__file__", "") or "",
                reasons=reasons,
                compilable=getattr(cls, "compilable", True), demos_knob=demos_knob,
                prepares=hasattr(cls, "fit_pool"), shuffles_options=shuffles_options, prep_calls=prep_calls,
                needs=frozenset(needs), uses_corpus=hasattr(cls, "use_corpus"),
                sees_images=getattr(cls, "sees_images", False),
            ),
            cls.__module__,
        )  # fmt: skip
        cls.strategy_name = name
        return cls

    return register


def strategies(extra_dirs: list[Path] | None = None) -> dict[str, Strategy]:
    """Every strategy this call can see: bundled ones, then the user's folders (which may override)."""
    return STRATEGIES.load(extra_dirs)


def get_strategy(name: str, extra_dirs: list[Path] | None = None) -> Strategy:
    return STRATEGIES.get(name, extra_dirs)
