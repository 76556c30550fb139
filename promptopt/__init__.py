"""promptopt: each language model's prompt ceiling on a task, with error bars and its cost."""

from promptopt import _env  # noqa: F401  (offline settings before any heavy import)

__version__ = "0.1.0"


def load(path, model: str | None = None, api_base: str | None = None, programs_dir=None):
    """Load a saved program folder as a callable: `promptopt.load(dir)(question=..., options=...)`."""
    from promptopt.compiled import load as _load

    return _load(path, model=model, api_base=api_base, programs_dir=programs_dir)
