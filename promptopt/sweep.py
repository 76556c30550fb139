"""Sweep files: `promptopt run SWEEP.yaml` reads what to run from a file instead of (or beside) flags.

```yaml
models: [local/gemma-3-270m, openai/gpt-4o-mini]
tasks: [medqa, pubmedqa]
strategies: [baseline, cot, "self_consistency:n=5"]
optimizers: [none, bootstrap]
limit: 50            # and every other option of promptopt.options (run's or search's),
max_calls: 5000      # by its plan name: splits, seed, threads, judge_models, epsilon, ...
```

A flag given on the command line wins over the file's value for the same setting (a repeatable
flag replaces the file's whole list). Paths of folders and corpora are relative to the file;
`out` and a SQLite `storage` path, like the flags, to where the command runs.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import ConfigDict, Field, ValidationError, create_model

from promptopt.errors import UserError, shown
from promptopt.options import OPTIONS


def _setting(option):
    bounds = {k: getattr(option, k) for k in ("ge", "gt", "le") if getattr(option, k) is not None}
    if option.repeatable:
        bounds["min_length"] = 1
    return (option.kind | None, Field(default=None, **bounds))


# Every option, None when the file does not set it.
Sweep = create_model(
    "Sweep", __config__=ConfigDict(extra="forbid"), **{o.name: _setting(o) for o in OPTIONS}
)  # fmt: skip


def load_sweep(path: Path) -> Sweep:
    """Read and check a sweep file; every problem is one sentence naming the file and the field."""
    from promptopt.tasks import read_mapping

    path = Path(path)
    raw = {} if path.is_file() and not path.read_text().strip() else read_mapping(path, "Sweep file", "settings")
    try:
        sweep = Sweep.model_validate(raw)
    except ValidationError as exc:
        raise UserError(f"Sweep file {path}: {sentence(exc)}") from None
    for option in OPTIONS:
        value = getattr(sweep, option.name)
        if option.relative and value is not None:
            setattr(sweep, option.name, [path.parent / v for v in value] if option.repeatable else path.parent / value)
    return sweep


def sentence(exc: ValidationError, what: str = "setting") -> str:
    """The first problem of a validation as a sentence's end: which setting, what is wrong."""
    err = exc.errors()[0]
    name = ".".join(shown(p) for p in err["loc"])
    if err["type"] == "extra_forbidden":
        return f"unknown {what} {name!r}; valid {what}s are {', '.join(o.name for o in OPTIONS)}."
    return f"{what} {name}: {err['msg']}."
