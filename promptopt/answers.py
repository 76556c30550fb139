"""Answer types: one parser and one metric per type, shared by every strategy.

A parser turns raw model text into a canonical answer or None (a parse failure, scored 0 and
flagged, never a crash). A metric compares a canonical answer to the gold one.

Each type is a class declared with `@answer_type("name", max_answer_tokens=..., gold_form=...)`,
made a frozen dataclass whose fields are the options a task's YAML may set (`answer.options`).
Users add one by putting such a class in a file of their programs folder (`--programs-dir`),
beside strategies.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

from promptopt import metrics
from promptopt.metrics import normalize_text
from promptopt.registry import Registry


class AnswerType(Protocol):
    """Every hook an answer type has. The four methods are its own; the rest have the defaults of
    `HOOKS`, which `@answer_type` gives a class that does not declare them, so every registered
    type answers every hook and no caller guesses with getattr."""

    name: str
    max_answer_tokens: int  # tokens a bare answer needs, for strategies that cap the reply
    gold_form: ClassVar[str]  # what a valid gold answer is, for the error that refuses a bad one
    offers_options: ClassVar[bool]  # items show lettered options (probes, open twins and distractors use them)
    multiline: ClassVar[bool]  # a reply may span lines: strategies must not cut it at the first
    judged: bool  # an LLM judge is among its metrics
    primary_metric: str  # what a record's score is ("score": the type's own `score`)
    measure: Any  # None, or (prediction, gold) -> {metric: value}: every metric of an item but the judge's
    aggregate: Any  # None, or [answers] -> answer: how self-consistency combines samples (None: majority vote)
    render: Any  # None, or (gold) -> text: how a right reply writes a gold answer stored encoded (None: as is)

    def describe(self, inputs: dict[str, Any]) -> str:
        """What the answer must look like, for prompts and DSPy field descriptions."""

    def parse(self, raw: str | None, inputs: dict[str, Any]) -> str | None:
        """Canonical answer from raw model text, or None when it cannot be read."""

    def score(self, prediction: str | None, gold: str) -> float:
        """1.0 for a right answer, 0.0 for a wrong or missing one (partial credit allowed)."""

    def gold_answer(self, gold: str, inputs: dict[str, Any]) -> str | None:
        """The canonical answer a right prediction gives for `gold`, or None when `gold` is not a
        valid answer; a task's gold must be valid and score 1.0 against it (`tasks.check_gold`)."""


ANSWER_TYPES: Registry[AnswerType] = Registry("answer type", "answer types")

# The hooks an answer type may leave out, with what leaving them out means.
HOOKS: dict[str, Any] = {"offers_options": False, "multiline": False, "judged": False, "primary_metric": "score",
                         "measure": None, "aggregate": None, "render": None, "max_answer_tokens": 8}  # fmt: skip


def answer_type(name: str | type, *, max_answer_tokens: int = 8, gold_form: str = ""):
    """Class decorator registering an answer type: `@answer_type("name", gold_form=...)` on a
    plain class (made a frozen dataclass whose fields are its task options), or bare
    `@answer_type` on a frozen dataclass that declares `name`, `max_answer_tokens` and `gold_form`."""

    def register(cls: type) -> type:
        if isinstance(name, str):
            cls.name, cls.max_answer_tokens, cls.gold_form = name, max_answer_tokens, gold_form
        for hook, default in HOOKS.items():
            if not hasattr(cls, hook):
                setattr(cls, hook, default)
        if not dataclasses.is_dataclass(cls):
            cls = dataclass(frozen=True)(cls)
        instance = cls()
        ANSWER_TYPES.add(instance.name, instance, cls.__module__)
        return cls

    return register(name) if isinstance(name, type) else register


_LEAD = re.compile(r"^[\s\"'*`(\[]*([A-Za-z])(?:[\s\"'*`)\].:,;]|$)")
_MARKED = re.compile(
    r"(?:answer|option|choice)\s*(?:is|:)?\s*(?:option\s*)?[\"'*`(\[]*([A-Za-z])(?![A-Za-z])",
    re.IGNORECASE,
)


def _norm(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).strip()


@answer_type("multiple_choice", max_answer_tokens=8, gold_form="the letter of one of its options")
class MultipleChoice:
    """Options lettered A, B, C, ... (any number); the answer is one letter."""

    offers_options: ClassVar[bool] = True

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

    def gold_answer(self, gold: str, inputs: dict[str, Any]) -> str | None:
        letter = gold.strip().upper()
        letters = {k.upper() for k in parse_options(inputs.get("options"))}
        return letter if len(letter) == 1 and letter.isalpha() and letter in letters else None


# Reading answers out of free text. A reply is read from an explicit marker first ("answer is",
# "Answer:", "####", a JSON "answer" key), the last one winning, since models restate the
# question before concluding; an unmarked reply is read only when it is one line, because a
# base model's rambling on later lines is as likely a new question as an answer.
_MARKER = r"(?:\banswer\b\s*(?:is|was|would be|:|=)?\s*[:=]?|####|\"answer\"\s*:)\s*"


def _marked(text: str, value: str) -> list[re.Match]:
    return list(re.finditer(_MARKER + value, text, re.IGNORECASE))


def _one_line(text: str) -> str | None:
    """The reply when it is a single line (base models often stop there), else None."""
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[0] if len(lines) == 1 else None


@answer_type("yes_no_maybe", max_answer_tokens=8, gold_form="yes, no or maybe")
class YesNoMaybe:
    """PubMedQA-style decision: one of yes, no, maybe."""

    def describe(self, inputs: dict[str, Any]) -> str:
        return "one word: yes, no or maybe"

    def parse(self, raw: str | None, inputs: dict[str, Any]) -> str | None:
        if not raw:
            return None
        word = r"[\"'*`(\[]*(yes|no|maybe)\b"
        marked = _marked(raw, word)
        if marked:
            return marked[-1].group(1).lower()
        line = _one_line(raw)
        if line is None:
            return None
        lead = re.match(r"^\s*" + word, line, re.IGNORECASE)
        if lead:
            return lead.group(1).lower()
        said = set(re.findall(r"\b(yes|no|maybe)\b", line.lower()))
        return said.pop() if len(said) == 1 else None

    def score(self, prediction: str | None, gold: str) -> float:
        return float(prediction is not None and prediction == gold.strip().lower())

    def gold_answer(self, gold: str, inputs: dict[str, Any]) -> str | None:
        word = gold.strip().lower()
        return word if word in ("yes", "no", "maybe") else None


_NUM = r"[-+]?(?<![A-Za-z0-9_.])\d+(?:\.\d+)?(?:[eE][-+]?\d+)?"
_DATE = r"(\d{1,2})/(\d{1,2})/(\d{4})"
_WEEKS_DAYS = r"(\d+)\s*(?:weeks?|wks?)\W{0,6}(?:and\s+)?(\d+)\s*days?"


def _plain_number(text: str) -> str:
    """Thousands separators out ("1,000" -> "1000") so they do not split a number in two."""
    return re.sub(r"(?<=\d),(?=\d{3}(?!\d))", "", text)


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else repr(float(x))


@answer_type(
    "number",
    max_answer_tokens=16,
    gold_form=(
        "a number (e.g. 42, -1.5 or 1,000), or JSON with value and optionally lower, upper and kind "
        "(decimal or integer), as MedCalc-Bench gives its answers"
    ),
)
class Number:
    """A numeric answer, scored as exact, within a tolerance, or within a per-example range.

    The gold string is a number ("1,000" allowed) or JSON with `value` and optionally `lower`,
    `upper` and `kind`, as MedCalc-Bench defines its answers: `kind` "decimal" is right within
    [lower, upper]; "integer" is right when the rounded answer equals the gold; a date value
    (MM/DD/YYYY) and a (weeks, days) value must match exactly. Otherwise the answer is right
    when |answer - gold| <= max(absolute, relative * |gold|) (exact when both are 0).
    """

    absolute: float = 0.0
    relative: float = 0.0
    calendar: bool = False  # answers may also be dates or (weeks, days) durations

    def describe(self, inputs: dict[str, Any]) -> str:
        text = "the final number alone (digits, with a decimal point if needed; no units, no working)"
        if self.calendar:
            text += "; a date as MM/DD/YYYY; a duration in weeks and days as (weeks, days)"
        return text

    def parse(self, raw: str | None, inputs: dict[str, Any]) -> str | None:
        if not raw or not raw.strip():  # a blank reply is a parse failure (it raised IndexError, found by fuzzing)
            return None
        text = _plain_number(raw)
        value = rf"[\"'*`$(\[]*({_DATE}|\(?{_WEEKS_DAYS}\)?|\(\s*\d+\s*,\s*\d+\s*\)|{_NUM})"
        marked = _marked(text, value)
        if marked:
            return self._canonical(marked[-1].group(1))
        boxed = re.findall(r"\\boxed\{([^}]*)\}", text)
        if boxed:
            return self._canonical(boxed[-1])
        line = _one_line(text)
        if line is None:
            first = text.strip().splitlines()[0]
            if not re.fullmatch(rf"\s*[*`$]*{_NUM}[*`]*\s*[A-Za-z/%]*\s*\.?\s*", first):
                return None
            line = first
        return self._canonical(line)

    def _canonical(self, text: str) -> str | None:
        if self.calendar:
            date = re.search(_DATE, text)
            if date:
                m, d, y = (int(g) for g in date.groups())
                return f"{m:02d}/{d:02d}/{y:04d}"
            wd = re.search(_WEEKS_DAYS, text, re.IGNORECASE) or re.search(r"\(\s*(\d+)\s*,\s*(\d+)\s*\)", text)
            if wd:
                return f"({int(wd.group(1))}, {int(wd.group(2))})"
        num = re.search(_NUM, text)
        return _fmt(float(num.group(0))) if num else None

    def score(self, prediction: str | None, gold: str) -> float:
        if prediction is None:
            return 0.0
        spec = json.loads(gold) if gold.strip().startswith("{") else {"value": gold}
        value = str(spec["value"]).strip()
        if _exact_form(value):  # a date or a (weeks, days) pair: the same canonical form or wrong
            return float(Number(calendar=True)._canonical(value) == prediction)
        try:
            got = float(prediction)
            want = float(_plain_number(value))
        except ValueError:
            return 0.0
        kind = str(spec.get("kind", "")).lower()
        if kind == "integer":
            return float(round(got) == round(want))
        if spec.get("lower") not in (None, "") and spec.get("upper") not in (None, ""):
            return float(float(spec["lower"]) <= got <= float(spec["upper"]))
        allowed = max(self.absolute, self.relative * abs(want), 1e-9 * max(1.0, abs(want)))
        return float(abs(got - want) <= allowed)

    def gold_answer(self, gold: str, inputs: dict[str, Any]) -> str | None:
        try:
            spec = json.loads(gold) if gold.strip().startswith("{") else {"value": gold}
            value = str(spec["value"]).strip()
            if _exact_form(value):  # its bounds, if any, are not read
                return Number(calendar=True)._canonical(value)
            for bound in ("lower", "upper"):
                if spec.get(bound) not in (None, ""):
                    float(spec[bound])
            return _fmt(float(_plain_number(value)))
        except (ValueError, TypeError, KeyError, AttributeError):
            return None


def _exact_form(value: str) -> bool:
    """A date or a (weeks, days) pair, which only the same canonical form matches."""
    return bool(re.fullmatch(_DATE, value) or re.search(r"\d+\D+\d+\D*day", value))


@answer_type("exact_text", max_answer_tokens=32, gold_form="a non-empty answer, or a JSON list of accepted answers")
class ExactText:
    """A short free-text answer, right when it equals the gold after normalization.

    The gold string may be a JSON list of accepted answers.
    """

    def describe(self, inputs: dict[str, Any]) -> str:
        return "the answer alone, in as few words as possible"

    def parse(self, raw: str | None, inputs: dict[str, Any]) -> str | None:
        if not raw:
            return None
        marked = _marked(raw, r"(.+)")
        lines = [ln for ln in raw.strip().splitlines() if ln.strip()]
        text = marked[-1].group(1) if marked else lines[0] if len(lines) == 1 else None
        if text is None:
            return None
        return normalize_text(text.strip().strip("\"'*`").rstrip(".")) or None

    def score(self, prediction: str | None, gold: str) -> float:
        if prediction is None:
            return 0.0
        accepted = json.loads(gold) if gold.strip().startswith("[") else [gold]
        return float(normalize_text(prediction) in {normalize_text(str(a)) for a in accepted})

    def gold_answer(self, gold: str, inputs: dict[str, Any]) -> str | None:
        try:
            accepted = json.loads(gold) if gold.strip().startswith("[") else [gold]
        except ValueError:
            return None
        if not isinstance(accepted, list):
            return None
        return next((text for a in accepted if (text := normalize_text(str(a)))), None)


@answer_type(
    "medec",
    max_answer_tokens=120,
    gold_form=(
        "JSON with flag (1 when the note has an error, else 0), sentence_id (the erroneous sentence's id) "
        "and correction"
    ),
)
class MedecAnswer:
    """MEDEC error detection: is there a medical error in the note, in which sentence, and its fix.

    The model replies "CORRECT", or the erroneous sentence's id followed by the corrected
    sentence ("3 The patient was given amoxicillin."). The prediction and the gold are JSON with
    `flag` (1 = the note has an error), `sentence_id` and `correction`.

    Scored as the benchmark's error sentence detection accuracy: 1 when the flag is right and,
    for a note with an error, the sentence id is right too. The correction is scored apart with
    ROUGE-1 against the reference correction (`measure`); MEDEC's BERTScore and BLEURT need
    reference models this tool does not run.
    """

    primary_metric: ClassVar[str] = "detection"  # what `measure` calls the score

    def describe(self, inputs: dict[str, Any]) -> str:
        return (
            "CORRECT if the note has no medical error; otherwise the id of the sentence with the error, "
            'a space, and that sentence rewritten to be correct (e.g. "3 The patient was given amoxicillin.")'
        )

    def parse(self, raw: str | None, inputs: dict[str, Any]) -> str | None:
        if not raw:
            return None
        text = re.sub(r"^\s*(?:answer\s*[:=]?|[*`\"'])*\s*", "", raw.strip(), flags=re.IGNORECASE)
        if re.match(r"(?:correct\b|no (?:medical )?errors?\b)", text, re.IGNORECASE):
            return json.dumps({"flag": 0, "sentence_id": -1, "correction": None})
        found = re.match(r"(?:sentence\s*(?:id)?\s*[:#]?\s*)?(\d+)\s*[:.)-]?\s*(.*)", text, re.IGNORECASE | re.DOTALL)
        if not found:
            found = re.search(r"(?:error|mistake)[^.\n]*?\bsentence\s*(?:id)?\s*[:#]?\s*(\d+)\s*[:.)-]?\s*(.*)", text,
                              re.IGNORECASE | re.DOTALL)  # fmt: skip
        if not found:
            return None
        correction = found.group(2).strip().splitlines()[0].strip().strip("\"'") if found.group(2).strip() else None
        return json.dumps({"flag": 1, "sentence_id": int(found.group(1)), "correction": correction or None})

    def score(self, prediction: str | None, gold: str) -> float:
        if prediction is None:
            return 0.0
        pred, want = json.loads(prediction), json.loads(gold)
        if int(pred["flag"]) != int(float(want["flag"])):
            return 0.0
        if int(float(want["flag"])) == 0:
            return 1.0
        return float(int(pred["sentence_id"]) == int(float(want["sentence_id"])))

    def measure(self, prediction: str | None, gold: str) -> dict[str, float | None]:
        """Detection (the score) and, on notes with an error, the correction's ROUGE-1 F against the
        reference correction (an empty correction when the model gave none), as MEDEC reports it."""
        want = json.loads(gold)
        out: dict[str, float | None] = {"detection": self.score(prediction, gold), "correction_rouge1": None}
        if int(float(want["flag"])) == 1 and want.get("correction"):
            said = (json.loads(prediction).get("correction") if prediction else None) or ""
            out["correction_rouge1"] = metrics.METRICS["rouge1"](said, str(want["correction"])) if said else 0.0
        return out

    def gold_answer(self, gold: str, inputs: dict[str, Any]) -> str | None:
        try:
            want = json.loads(gold)
            flag = int(float(want["flag"]))
            sentence = int(float(want["sentence_id"])) if flag == 1 else -1
        except (ValueError, TypeError, KeyError, OverflowError):
            return None
        if flag not in (0, 1) or (flag == 1 and sentence < 0):
            return None
        correction = want.get("correction") if flag else None
        return json.dumps({"flag": flag, "sentence_id": sentence, "correction": correction})


@answer_type("free_text", max_answer_tokens=256, gold_form="a non-empty reference answer")
class FreeText:
    """An open-ended answer in prose, scored against a reference text by the task's metrics.

    `metrics` names what is reported per item (promptopt.metrics: exact, token_f1, rouge1,
    rouge2, rougeL, chrf, bleu, judge); `primary` is the one ceilings and searches use (the first
    when not given). When the primary is `judge`, the judge's verdict is the record's score and
    the first other metric (exact match when there is none) is what an optimizer compiles on and
    what the gold check uses, since neither may call a judge.
    """

    metrics: tuple[str, ...] = ("rougeL", "token_f1")
    primary: str | None = None
    multiline: ClassVar[bool] = True  # a reply may span lines: strategies must not cut it at the first

    def __post_init__(self) -> None:
        names = (self.metrics,) if isinstance(self.metrics, str) else tuple(self.metrics)
        object.__setattr__(self, "metrics", names)
        metrics.check(names, self.primary)

    @property
    def primary_metric(self) -> str:
        return self.primary or self.metrics[0]

    @property
    def local_metric(self) -> str:
        """The primary metric when no judge is needed for it, else the first metric that is not the judge's."""
        return next((m for m in (self.primary_metric, *self.metrics) if m != metrics.JUDGE), "exact")

    @property
    def judged(self) -> bool:
        return metrics.JUDGE in self.metrics

    def describe(self, inputs: dict[str, Any]) -> str:
        return "the answer in plain prose: complete, accurate and concise"

    def parse(self, raw: str | None, inputs: dict[str, Any]) -> str | None:
        if not raw:
            return None
        text = re.sub(r"^\s*(?:\*\*)?answer(?:\*\*)?\s*:\s*", "", raw.strip(), flags=re.IGNORECASE)
        return text.strip() or None

    def measure(self, prediction: str | None, gold: str) -> dict[str, float | None]:
        """Every metric but the judge's, for this item."""
        return metrics.compute(self.metrics, prediction, gold)

    def score(self, prediction: str | None, gold: str) -> float:
        if not prediction:
            return 0.0
        if any(prediction.strip() == ref.strip() for ref in metrics.references(gold)):
            return 1.0  # every metric's maximum, without ROUGE's pure-Python LCS over a long reference
        return metrics.best(self.local_metric, prediction, gold)

    def gold_answer(self, gold: str, inputs: dict[str, Any]) -> str | None:
        return metrics.references(gold)[0].strip() or None  # several references: the first stands for them

    def aggregate(self, answers: list[str | None]) -> str | None:
        """Self-consistency for prose: the sample most like the others (highest mean ROUGE-L F to
        the rest, the earliest on a tie), since free answers rarely repeat word for word."""
        valid = [a for a in answers if a]
        if len(valid) <= 2:
            return valid[0] if valid else None
        rouge = metrics.METRICS["rougeL"]
        centrality = [sum(rouge(a, b) for j, b in enumerate(valid) if j != i) for i, a in enumerate(valid)]
        return valid[max(range(len(valid)), key=lambda i: (centrality[i], -i))]


def offers_options(type_name: str, known: dict[str, AnswerType] | None = None) -> bool:
    """Does the answer type of this name show lettered options? (False for a name not registered.)"""
    found = (known if known is not None else answer_types()).get(type_name)
    return bool(found is not None and found.offers_options)


def answer_types(extra_dirs: list[Path] | None = None) -> dict[str, AnswerType]:
    """Every answer type this call can see: bundled ones, then those in the user's programs folders."""
    return ANSWER_TYPES.load(extra_dirs)


def with_options(base: AnswerType, options: dict[str, Any] | None) -> AnswerType:
    """An answer type with a task's options (e.g. a number's tolerance)."""
    return dataclasses.replace(base, **options) if options else base


def answer_options(base: AnswerType) -> set[str]:
    """Options a task may set for this answer type."""
    return {f.name for f in dataclasses.fields(base)} - {"name", "max_answer_tokens"}


def format_options(options: dict[str, str]) -> str:
    """Lettered options, one per line, as exam papers print them."""
    return "\n".join(f"{k}. {v}" for k, v in options.items())


def parse_options(options: dict[str, str] | str | None) -> dict[str, str]:
    """Options as a letter -> text mapping, also from their rendered form ("A. ...\nB. ...").

    The inverse of format_options: a line that does not start a new option continues the one
    before (some real options carry a second line), so no option loses text on the way."""
    if isinstance(options, dict):
        return options
    found: dict[str, list[str]] = {}
    for line in (options or "").splitlines():
        start = re.match(r"^\s*([A-Z])[.)]\s*(.*?)\s*$", line)
        if start:
            found[start.group(1)] = [start.group(2)]
        elif found:
            found[next(reversed(found))].append(line.rstrip())
    return {letter: "\n".join(lines).rstrip() for letter, lines in found.items()}
