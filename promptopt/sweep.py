"""Sweep files: `promptopt run SWEEP.yaml` reads what to run from a file instead of (or beside) flags.

```yaml
models: [local/gemma-3-270m, openai/gpt-4o-mini]
tasks: [medqa, pubmedqa]
strategies: [baseline, cot, "self_consistency:n=5"]
optimizers: [none, bootstrap]
limit: 50            # and: splits, seed, threads, api_base, storage, out,
max_calls: 5000      #      max_cost, max_error_rate, rpm, tasks_dirs, programs_dirs,
                     #      judge_models, judge_api_base, min_judge_kappa, probes
```

A flag given on the command line wins over the file's value for the same setting (a repeatable
flag replaces the file's whole list). `tasks_dirs` and `programs_dirs` are relative to the file;
`out` and a SQLite `storage` path, like the flags, to where the command runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from promptopt.errors import UserError


class Sweep(BaseModel):
    model_config = ConfigDict(extra="forbid")

    models: list[str] | None = Field(default=None, min_length=1)
    tasks: list[str] | None = Field(default=None, min_length=1)
    strategies: list[str] | None = Field(default=None, min_length=1)
    optimizers: list[str] | None = Field(default=None, min_length=1)
    splits: list[Literal["val", "test"]] | None = Field(default=None, min_length=1)
    api_base: str | None = None
    limit: int | None = Field(default=None, ge=1)
    seed: int | None = None
    threads: int | None = Field(default=None, ge=1)
    storage: str | None = None
    out: Path | None = None
    max_calls: int | None = Field(default=None, ge=1)
    max_cost: float | None = Field(default=None, gt=0)
    max_error_rate: float | None = Field(default=None, ge=0, le=1)
    rpm: float | None = Field(default=None, gt=0)
    tasks_dirs: list[Path] = []
    programs_dirs: list[Path] = []
    judge_models: list[str] | None = Field(default=None, min_length=1)
    judge_api_base: str | None = None
    min_judge_kappa: float | None = Field(default=None, ge=-1, le=1)
    probes: list[str] | None = Field(default=None, min_length=1)
    corpus: Path | None = None  # passages for retrieve (relative to the file)


def load_sweep(path: Path) -> Sweep:
    """Read and check a sweep file; every problem is one sentence naming the file and the field."""
    from promptopt.tasks import read_mapping

    path = Path(path)
    raw = {} if path.is_file() and not path.read_text().strip() else read_mapping(path, "Sweep file", "settings")
    try:
        sweep = Sweep.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            valid = ", ".join(Sweep.model_fields)
            raise UserError(f"Sweep file {path}: unknown setting {field!r}; valid settings are {valid}.") from None
        raise UserError(f"Sweep file {path}: setting {field}: {err['msg']}.") from None
    base = path.parent
    sweep.tasks_dirs = [base / d for d in sweep.tasks_dirs]
    if sweep.corpus is not None:
        sweep.corpus = base / sweep.corpus
    sweep.programs_dirs = [base / d for d in sweep.programs_dirs]
    return sweep
