"""Every run and search option, declared once: its type, default, bounds and help.

The command line's flags (promptopt.cli), the library's keyword arguments (promptopt.api.plan),
the sweep file's keys (promptopt.sweep) and the plan's fields (promptopt.runplan.RunPlan) are all
made from `OPTIONS`, so adding an option is adding one `Option` here; a driver then reads it
from the plan. `search_default` is the default where a search means something else by it
(it explores a space on all of val); `modes` limits an option to the commands it applies to.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from promptopt.judge import DEFAULT_MIN_KAPPA

DEFAULT_MODEL = "local/gemma-3-270m"
DEFAULT_TASK = "medqa"
DEFAULT_STRATEGIES = ("baseline", "cot")
DEFAULT_LIMIT = 20
# What `promptopt search` tries when no --strategy is given (multiple-choice tasks).
DEFAULT_SPACE = (
    "predict",
    "cot",
    "self_consistency:n=3",
    "self_consistency:n=5",
    "choice_shuffle:n=3",
    "choice_shuffle:n=5",
    "verify_choices:batched=true",
    "knn_fewshot:k=3",
)
DEFAULT_OPTIMIZERS = ("none", "bootstrap")
_UNSET = object()


@dataclass(frozen=True)
class Option:
    """One option. `kind` is the value's type (a list type is a repeatable flag); `flag` the
    command line's spelling (default --name with dashes); `ge`/`gt`/`le` bounds; `relative`:
    a path in a sweep file is relative to the file."""

    name: str
    kind: Any
    default: Any
    help: str
    flag: str | None = None
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    search_default: Any = _UNSET
    modes: tuple[str, ...] = ("run", "search")
    relative: bool = False

    @property
    def cli_flag(self) -> str:
        return self.flag or "--" + self.name.replace("_", "-")

    @property
    def repeatable(self) -> bool:
        return getattr(self.kind, "__origin__", None) is list

    def default_for(self, mode: str) -> Any:
        value = self.default if self.search_default is _UNSET or mode != "search" else self.search_default
        return list(value) if isinstance(value, tuple | list) else value

    def described_default(self, mode: str) -> str:
        value = self.default_for(mode)
        if value is None or value == [] or value is False:
            return ""
        shown = ", ".join(map(str, value)) if isinstance(value, list) else str(value)
        return f" (default {shown})"


# fmt: off
OPTIONS: tuple[Option, ...] = (
    Option("models", list[str], [DEFAULT_MODEL], "LiteLLM model string (repeatable).", flag="--model"),
    Option("tasks", list[str], [DEFAULT_TASK], "Task name or YAML path (repeatable).", flag="--task"),
    Option("strategies", list[str], DEFAULT_STRATEGIES, "Strategy, optionally with knobs name:key=value (repeatable).",
           flag="--strategy", search_default=DEFAULT_SPACE),
    Option("optimizers", list[str], ["none"], "Optimizer, optionally with knobs (repeatable).", flag="--optimizer",
           search_default=DEFAULT_OPTIMIZERS),
    Option("api_base", str | None, None, "OpenAI-compatible endpoint for the models."),
    Option("limit", int | None, DEFAULT_LIMIT, "Examples per split (a search: val and test; default all).", ge=1,
           search_default=None),
    Option("splits", list[Literal["val", "test"]], ["val", "test"], "Split to score: val, test (repeatable).",
           flag="--split", modes=("run",)),
    Option("seed", int, 0, "Run seed: another seed is a separate repeat, in its own folder."),
    Option("threads", int | None, None, "Examples scored at once per endpoint (default: 4 on the embedded model, "
           "which decodes 4 at once; else 1).", ge=1),
    Option("out", Path, Path("results"), "Folder that holds run folders."),
    Option("storage", str | None, None, "SQLAlchemy URL of the results store (and a search's study)."),
    Option("tasks_dirs", list[Path], [], "Folder of user task YAMLs (repeatable).", flag="--tasks-dir", relative=True),
    Option("programs_dirs", list[Path], [], "Folder of user strategies, optimizers and answer types (Python files).",
           flag="--programs-dir", relative=True),
    Option("max_calls", int | None, None, "Stop cleanly after this many LM calls.", ge=1),
    Option("max_cost", float | None, None, "Stop cleanly after spending this many USD.", gt=0),
    Option("max_error_rate", float | None, 0.5, "Stop when more than this share of examples fail (judged after 20).",
           ge=0, le=1),
    Option("rpm", float | None, None, "Requests per minute per endpoint (a provider's rate limit; $PROMPTOPT_RPM).",
           flag="--rpm", gt=0),
    Option("expect_accuracy", float, 0.5, "Expected accuracy on train, for bootstrap call estimates.", ge=0.01, le=1),
    Option("allow_overlap", bool, False, "Run even if train/val examples duplicate test ones; the report warns."),
    Option("judge_models", list[str], [], "LLM judge for free-text tasks (repeatable; default the task's, else "
           "the embedded model).", flag="--judge-model"),
    Option("judge_api_base", str | None, None, "OpenAI-compatible endpoint for the judges (not --api-base, which is "
           "the models')."),
    Option("min_judge_kappa", float, DEFAULT_MIN_KAPPA, "Trust a judge at this Cohen's kappa on its validation or "
           "above.", ge=-1, le=1),
    Option("probes", list[str], [], "Robustness probe: negation, partial[:k=20+50], none_of_the_above, shuffle[:m=3], "
           "language (repeatable).", flag="--probe"),
    Option("corpus", Path | None, None, "Passages for retrieve: a JSONL file (id, text per line) or a folder of .txt "
           "files; replaces the task's own corpus.", relative=True),
    Option("batch", bool, False, "Send the calls of fixed programs scored on val and test (a search: on test) "
           "through the provider's batch API, at its batch price (about half), waiting up to 24 h; a killed run "
           "collects its batches instead of paying again."),
    # a search's own
    Option("trials", int | None, None, "Configs to search per model and task (default: all).", ge=1,
           modes=("search",)),
    Option("rung0", int, 20, "Val examples every config is first scored on.", ge=1, modes=("search",)),
    Option("growth", int, 3, "Each round scores this many times more val examples.", ge=2, modes=("search",)),
    Option("demo_sets", int, 1, "Demo sets tried per bootstrap config (seeds 0..N-1).", ge=1, modes=("search",)),
    Option("epsilon", float, 1.0, "Indifference zone in points: configs within it of the best count as equal, and "
           "the cheapest of them is chosen.", ge=0, le=100, modes=("search",)),
    Option("delta", float, 0.05, "Error rate of the choice: it is within --epsilon of the best with probability "
           "at least 1 - delta.", gt=0, le=0.5, modes=("search",)),
    Option("objective", Literal["accuracy", "pareto"], "accuracy", "accuracy: one choice per model and task; "
           "pareto: every config no other beats by more than --epsilon for no more cost, each scored on test.",
           modes=("search",)),
    Option("max_cost_per_example", float | None, None, "Never call a config estimated above this many USD per "
           "example.", gt=0, modes=("search",)),
    Option("max_calls_per_example", float | None, None, "Never call a config estimated above this many LM calls per "
           "example.", gt=0, modes=("search",)),
)
# fmt: on
BY_NAME = {o.name: o for o in OPTIONS}


def for_mode(mode: str) -> list[Option]:
    return [o for o in OPTIONS if mode in o.modes]
