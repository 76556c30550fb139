"""promptopt: each language model's prompt ceiling on a task, with error bars and its cost.

The library API (promptopt.api) is importable from here: run, search, estimate, compile,
evaluate, report, export, reproduce, rerun, load, plan, task, available_tasks, validate_task,
available_strategies, available_optimizers, available_answer_types, check_model and power. None of them prints; run,
search, compile, evaluate and report return typed results (promptopt.results).
"""

from promptopt import _env  # noqa: F401  (offline settings before any heavy import)

__version__ = "0.1.0"

API = (
    "run", "search", "estimate", "compile", "evaluate", "report", "load", "plan", "task", "available_tasks",
    "validate_task", "available_strategies", "available_optimizers", "available_answer_types", "check_model",
    "power", "export", "reproduce", "rerun",
)  # fmt: skip
__all__ = [*API, "__version__"]


def __getattr__(name: str):
    """The API functions, imported on first use so that `import promptopt` stays light."""
    if name in API:
        from promptopt import api

        return getattr(api, name)
    raise AttributeError(f"module 'promptopt' has no attribute {name!r}")
