"""Configs: a strategy and an optimizer with all their knobs, parsed from the user's text."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from promptopt.errors import UserError
from promptopt.optimizers import get_optimizer, optimizer_knobs
from promptopt.registry import get_strategy


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
    name, knobs = parse_spec(text)
    strat = get_strategy(name, extra_dirs)
    strat.check_knobs(knobs)
    opt_name, opt_knobs = parse_spec(optimizer, "Optimizer")
    return Config(
        strategy=strat.name,
        optimizer=opt_name,
        knobs=strat.knobs | knobs,
        optimizer_knobs=optimizer_knobs(opt_name, opt_knobs, strat, extra_dirs),
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


def config_label(config: Config, extra_dirs: list[Path] | None = None) -> str:
    """`strategy[:knob=value,...]/optimizer[:knob=value,...]` naming only the knobs set away from
    their defaults: two configs of one strategy read apart, and a default config stays short."""

    def changed(knobs: dict[str, Any], defaults: dict[str, Any]) -> str:
        diff = ",".join(f"{k}={v}" for k, v in sorted(knobs.items()) if defaults.get(k, object()) != v)
        return f":{diff}" if diff else ""

    strat = get_strategy(config.strategy, extra_dirs)
    opt = get_optimizer(config.optimizer, extra_dirs)
    return (f"{config.strategy}{changed(config.knobs, strat.knobs)}"
            f"/{config.optimizer}{changed(config.optimizer_knobs, opt.knobs)}")  # fmt: skip
