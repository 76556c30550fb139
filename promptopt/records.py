"""What one scored example is: its `Record` (a row of the store) and the `Extras` its strategy
carried beyond the answer, kept as JSON in the record and parsed once, by `typed`, when records
are read for a report; the report's sections read those typed extras from then on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from typing import Any

import pandas as pd
from pydantic import ValidationError

from promptopt.tables import Row


@dataclass
class Record:
    run_id: str
    model: str
    task: str
    strategy: str
    optimizer: str
    config_id: str
    config: str
    split: str
    example_id: str
    prediction: str | None
    gold: str
    score: float
    parse_ok: bool
    error: str | None
    lm_calls: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    latency_s: float
    raw_output: str | None
    created_at: float = 0.0
    extras: str | None = None  # JSON (Extras, below); None in stores written before it existed
    sent: str | None = None  # JSON list of each call's request as sent; None in stores written before it existed


RECORD_COLUMNS = [f.name for f in fields(Record)]
# what reports read: the requests as sent are for viewers, which read them one record at a time
REPORT_COLUMNS = [c for c in RECORD_COLUMNS if c != "sent"]


class Extras(Row):
    """What a strategy's prediction carried beyond its answer, stored with each record (JSON)."""

    reasons: bool | None = None  # the strategy, with these knobs, wrote a reasoning step first
    reasoning: str | None = None
    votes: list[str | None] | None = None  # answers sampled and voted on
    order_votes: list[str | None] | None = None  # answers under shuffled option orders (consistency)
    retrieved: list[str] | None = None  # ids of passages a retrieval strategy read
    metrics: dict[str, float | None] | None = None  # free text: each metric of the task (None: not measured)
    primary: str | None = None  # which of `metrics` is the record's score
    answer_text: str | None = None  # multiple choice: the chosen option's text (consistency across orders)
    language: dict[str, str] | None = None  # the task's language group and code, for the language probe
    judges: list[dict[str, Any]] | None = None  # each judge's verdict: judge, score, reply, cached, its calls
    judge_error: str | None = None  # the judge call failed after retries: `judge` is unmeasured
    criteria: list[dict[str, Any]] | None = None  # per-item rubric: each criterion's points, tags and vote (met)
    letter_probs: dict[str, float] | None = None  # letter_logprob: each letter's probability (normalized over letters)
    letter_mass: float | None = None  # letter_logprob: the probability the letters had among the top tokens
    cloze: dict[str, Any] | None = None  # cloze: per letter logprob and characters; the acc and acc_norm answers
    stages: list[dict[str, Any]] | None = None  # multi_agent: every stage's output, in order
    recall: float | None = None  # retrieve: share of the item's gold passages among the retrieved ones
    reasoning_effort: str | None = None  # the config's reasoning effort, for reasoning models
    images: list[str] | None = None  # the content digests of the item's images, as asked (a changed image is re-asked)
    cluster: str | None = None  # the item's cluster (the task's cluster column, a probe item's source item)
    batch_calls: int | None = None  # calls answered through the provider's batch API (--batch), at its price
    embedding: dict[str, float] | None = None  # hosted embedding calls of the item (lm_calls, prompt_tokens, cost_usd)

    @classmethod
    def of(cls, prediction: Any, declared: Any, knobs: dict[str, Any]) -> Extras:
        """From a prediction and the strategy's declared traits (None for a helper program)."""
        votes = getattr(prediction, "votes", None)
        shuffled = bool(declared and declared.shuffles_options)
        retrieved = getattr(prediction, "retrieved", None)
        reasoning = getattr(prediction, "reasoning", None)

        def carried(name: str, kind: type | tuple[type, ...]):
            value = getattr(prediction, name, None)
            return value if isinstance(value, kind) else None

        mass = carried("letter_mass", (int, float))
        return cls(
            letter_probs=carried("letter_probs", dict),
            letter_mass=float(mass) if mass is not None else None,
            cloze=carried("cloze", dict),
            stages=carried("stages", list),
            recall=carried("recall", (int, float)),
            reasoning_effort=knobs.get("reasoning_effort"),
            reasons=declared.reasons_with(knobs) if declared else None,
            reasoning=reasoning if isinstance(reasoning, str) else None,
            votes=list(votes) if votes is not None and not shuffled else None,
            order_votes=list(votes) if votes is not None and shuffled else None,
            retrieved=[str(r) for r in retrieved] if retrieved is not None else None,
        )

    def to_json(self) -> str | None:
        data = self.model_dump(exclude_none=True)
        return json.dumps(data) if data else None

    @classmethod
    def read(cls, stored: str | None) -> Extras | None:
        """A record's stored extras, or None where it kept none. Keys a later version added are
        left out, and a value an older version wrote in another shape is kept as it was."""
        if not isinstance(stored, str) or not stored:
            return None
        try:
            found = json.loads(stored)
        except ValueError:
            return None
        if not isinstance(found, dict):
            return None
        known = {k: v for k, v in found.items() if k in cls.model_fields}
        try:
            return cls.model_validate(known)
        except ValidationError:
            return cls.model_construct(**known)


NONE = Extras()  # what a record that kept no extras carried


def typed(records: pd.DataFrame) -> pd.DataFrame:
    """Records whose `extras` column holds each record's Extras (NONE where it kept none), parsed
    once: a frame already typed (or a part of one) is given back as it is, and a frame that mixes
    typed and stored extras (two frames concatenated) has the stored ones parsed."""
    if "extras" not in records.columns:
        return records.assign(extras=[NONE] * len(records))  # a list: pandas would read a model as a sequence
    column = records["extras"]
    if all(type(e) is Extras for e in column):
        return records
    return records.assign(extras=[e if isinstance(e, Extras) else Extras.read(e) or NONE for e in column])
