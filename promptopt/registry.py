"""Strategy registry: strategies are dspy.Modules in `programs/*.py`, registered by name.

A strategy file decorates its module class with `@strategy(...)`, declaring the answer types it
serves and its LM calls per example as a function of its knobs. Users add strategies by
pointing `--programs-dir` at a folder of such files; no engine change is needed.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from promptopt.errors import UserError
from promptopt.paths import bundled_dir


@dataclass(frozen=True)
class Strategy:
    name: str
    module: type
    answer_types: frozenset[str]
    calls: Callable[[dict[str, Any], int], int]  # (knobs, number of options) -> LM calls per example
    knobs: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    source: str = ""  # the file that defines it

    def check_knobs(self, knobs: dict[str, Any]) -> None:
        check_knob_values(f"Strategy {self.name!r}", self.knobs, knobs)

    def build(self, task, **knobs: Any):
        self.check_knobs(knobs)
        if ANY not in self.answer_types and task.spec.answer.type not in self.answer_types:
            raise UserError(
                f"Strategy {self.name!r} cannot serve task {task.name!r}: it supports answer types "
                f"{', '.join(sorted(self.answer_types))}, the task's is {task.spec.answer.type}."
            )
        try:
            return self.module(task, **(self.knobs | knobs))
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


_registered: dict[str, Strategy] = {}

ANY = "any"  # in `answer_types`: the strategy serves every answer type (it only uses the task's parser)


def strategy(
    name: str,
    answer_types: set[str] | frozenset[str],
    calls: Callable[[dict[str, Any], int], int],
    knobs: dict[str, Any] | None = None,
):
    """Class decorator that registers a dspy.Module as a named strategy."""

    def register(cls: type) -> type:
        doc = (cls.__doc__ or "").strip().splitlines()
        _registered[name] = Strategy(
            name=name,
            module=cls,
            answer_types=frozenset(answer_types),
            calls=calls,
            knobs=dict(knobs or {}),
            description=doc[0] if doc else "",
            source=getattr(sys.modules.get(cls.__module__), "__file__", "") or "",
        )
        cls.strategy_name = name
        return cls

    return register


def _import_file(path: Path) -> None:
    mod_name = "promptopt_programs_" + hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:10] + "_" + path.stem
    if mod_name in sys.modules:
        return
    spec = importlib.util.spec_from_file_location(mod_name, path)
    if spec is None or spec.loader is None:
        raise UserError(f"Strategy file {path} cannot be imported as Python.")
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[mod_name]
        raise UserError(f"Strategy file {path} failed to import ({type(exc).__name__}: {exc}).") from exc


def strategies(extra_dirs: list[Path] | None = None) -> dict[str, Strategy]:
    """Every registered strategy: bundled ones, then the user's folders (which may override)."""
    for folder in [bundled_dir("programs"), *(extra_dirs or [])]:
        for file in sorted(Path(folder).glob("*.py")):
            if not file.name.startswith("_"):
                _import_file(file)
    return dict(_registered)


def get_strategy(name: str, extra_dirs: list[Path] | None = None) -> Strategy:
    known = strategies(extra_dirs)
    if name not in known:
        raise UserError(f"Unknown strategy {name!r}; valid strategies are {', '.join(sorted(known))}.")
    return known[name]


def parse_spec(text: str, what: str = "Strategy") -> tuple[str, dict[str, Any]]:
    """`name` or `name:key=value,key=value` (values read as YAML scalars)."""
    import yaml

    name, _, rest = text.partition(":")
    knobs: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in rest.split(","))):
        key, eq, value = part.partition("=")
        if not eq or not key.strip():
            raise UserError(
                f"{what} option {part!r} in {text!r} is not key=value; e.g. self_consistency:n=5,temperature=0.7."
            )
        knobs[key.strip()] = yaml.safe_load(value)
    return name.strip(), knobs


def parse_config(text: str, optimizer: str = "none", extra_dirs: list[Path] | None = None) -> Config:
    """A Config from `--strategy` and `--optimizer` texts, each `name[:key=value,...]`.

    The config holds every knob, defaults included, so `self_consistency` and
    `self_consistency:n=5` are one config with one id.
    """
    from promptopt.compile import optimizer_knobs

    name, knobs = parse_spec(text)
    strat = get_strategy(name, extra_dirs)
    strat.check_knobs(knobs)
    opt_name, opt_knobs = parse_spec(optimizer, "Optimizer")
    return Config(
        strategy=strat.name,
        optimizer=opt_name,
        knobs=strat.knobs | knobs,
        optimizer_knobs=optimizer_knobs(opt_name, opt_knobs, strat),
    )


@dataclass(frozen=True)
class Config:
    """strategy + optimizer + knobs; its id is stable across runs and machines."""

    strategy: str
    optimizer: str = "none"
    knobs: dict[str, Any] = field(default_factory=dict)
    optimizer_knobs: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        data = {"strategy": self.strategy, "optimizer": self.optimizer, "knobs": self.knobs}
        if self.optimizer_knobs:
            data["optimizer_knobs"] = self.optimizer_knobs
        return json.dumps(data, sort_keys=True)

    @property
    def id(self) -> str:
        digest = hashlib.sha1(self.to_json().encode()).hexdigest()[:8]
        return f"{self.strategy}-{self.optimizer}-{digest}"
