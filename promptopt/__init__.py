"""promptopt: each language model's prompt ceiling on a task, with error bars and its cost.

The library API (promptopt.api) is importable from here: run, search, estimate, compile,
evaluate, report, load, plan, task, tasks, validate_task, strategies, optimizers, answer_types
and check_model. Each returns a typed result (promptopt.results) and prints nothing.
"""

from promptopt import _env  # noqa: F401  (offline settings before any heavy import)

__version__ = "0.1.0"

API = (
    "run", "search", "estimate", "compile", "evaluate", "report", "load", "plan", "task", "tasks",
    "validate_task", "strategies", "optimizers", "answer_types", "check_model",
)  # fmt: skip
__all__ = [*API, "__version__"]


def __getattr__(name: str):
    """The API functions, imported on first use so that `import promptopt` stays light."""
    if name in API:
        from promptopt import api

        return getattr(api, name)
    raise AttributeError(f"module 'promptopt' has no attribute {name!r}")
