"""The two shapes every report part shares: a typed row (pydantic) and a titled table of text cells.

Kept apart from promptopt.results and promptopt.reports so that a report section in its own file
(promptopt.sections) can declare its rows and render its table without importing either.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict


class Row(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    def __getitem__(self, key: str) -> Any:
        """`row["score"]` as well as `row.score`: code written against the JSON reads either way."""
        if key not in type(self).model_fields:
            raise KeyError(key)
        return getattr(self, key)


@dataclass
class Section:
    """One table of a report as text, markdown and HTML all render it."""

    title: str
    headers: list[str]
    body: list[list[str]]
    note: str = ""


def pct(x) -> str:
    return "—" if x is None else f"{100 * x:.1f}"
