"""Answer types: one parser and one metric per type, shared by every strategy.

A parser turns raw model text into a canonical answer or None (a parse failure, scored 0 and
flagged, never a crash). A metric compares a canonical answer to the gold one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Protocol


class AnswerType(Protocol):
    name: str

    def describe(self, inputs: dict[str, Any]) -> str:
        """What the answer must look like, for prompts and DSPy field descriptions."""

    def parse(self, raw: str | None, inputs: dict[str, Any]) -> str | None:
        """Canonical answer from raw model text, or None when it cannot be read."""

    def score(self, prediction: str | None, gold: str) -> float:
        """1.0 for a right answer, 0.0 for a wrong or missing one (partial credit allowed)."""


_LEAD = re.compile(r"^[\s\"'*`(\[]*([A-Za-z])(?:[\s\"'*`)\].:,;]|$)")
_MARKED = re.compile(
    r"(?:answer|option|choice)\s*(?:is|:)?\s*(?:option\s*)?[\"'*`(\[]*([A-Za-z])(?![A-Za-z])",
    re.IGNORECASE,
)


def _norm(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).strip()


@dataclass(frozen=True)
class MultipleChoice:
    """Options lettered A, B, C, ... (any number); the answer is one letter."""

    name: str = "multiple_choice"

    def describe(self, inputs: dict[str, Any]) -> str:
        letters = list(inputs.get("options", {})) or ["A", "B", "C", "D"]
        return f"the letter of the single best option, one of {', '.join(letters)}"

    def parse(self, raw: str | None, inputs: dict[str, Any]) -> str | None:
        if not raw:
            return None
        options = parse_options(inputs.get("options"))
        letters = {k.upper() for k in options}
        text = raw.strip()
        # A one-line reply is read from its start ("B", "(B) ...", "B. text"); in a longer one a
        # leading letter is as likely the start of a listed option, so only an explicit
        # "answer is X" counts there.
        short = "\n" not in text
        lead = _LEAD.match(text) if short else None
        if lead and lead.group(1).upper() in letters:
            # not a word that merely starts with a letter ("A patient", "I think")
            after = text[lead.end() - 1 : lead.end()]
            rest = text[lead.end() :].lstrip()
            word_like = lead.group(1) in "aAI" and after.isspace() and rest[:1].isalnum() and not rest[:1].isupper()
            if not word_like:
                return lead.group(1).upper()
        marked = [m.group(1).upper() for m in _MARKED.finditer(text)]
        marked = [m for m in marked if m in letters]
        if marked:
            return marked[-1]
        if short:
            said = _norm(text)
            hits = [k for k, v in options.items() if _norm(v) and _norm(v) in said]
            if len(hits) == 1:
                return hits[0].upper()
        return None

    def score(self, prediction: str | None, gold: str) -> float:
        return float(prediction is not None and prediction.upper() == gold.strip().upper())


ANSWER_TYPES: dict[str, AnswerType] = {"multiple_choice": MultipleChoice()}


def format_options(options: dict[str, str]) -> str:
    """Lettered options, one per line, as exam papers print them."""
    return "\n".join(f"{k}. {v}" for k, v in options.items())


def parse_options(options: dict[str, str] | str | None) -> dict[str, str]:
    """Options as a letter -> text mapping, also from their rendered form ("A. ...\nB. ...")."""
    if isinstance(options, dict):
        return options
    found = re.findall(r"^\s*([A-Z])[.)]\s*(.*?)\s*$", options or "", flags=re.MULTILINE)
    return dict(found)
