"""Where bundled tasks and strategy programs live, in a source checkout and in a wheel.

The wheel carries the top-level `tasks/` and `programs/` folders inside the package as
`promptopt/_bundled/`; a source checkout (also an editable install) reads them in place.
"""

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def bundled_dir(name: str) -> Path:
    """Folder of a bundled resource kind: 'tasks' or 'programs'."""
    inside = _PACKAGE / "_bundled" / name
    if inside.is_dir():
        return inside
    return _PACKAGE.parent / name
