"""promptopt: each language model's prompt ceiling on a task, with error bars and its cost."""

from promptopt import _env  # noqa: F401  (offline settings before any heavy import)

__version__ = "0.1.0"
