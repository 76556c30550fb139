"""Robustness probes: transforms of a multiple-choice task whose items are linked to their source.

A probe turns each item of a task into one or more probe items, scored by the same configs as
any task, and paired back to the item they came from by id (`SOURCE_ID~suffix`). A probe item
keeps its source item's split, so the probes of a test item are test items: they never enter a
train or val pool, and the usual gold and overlap checks run on them like on any task.

- `negation` (TASK~negation): two yes/no questions per item, "is <the correct option> the
  answer?" (yes) and "is <a distractor> the answer?" (no); a pair counts only when both are
  right, as ProbMed scores its adversarial pairs.
- `partial:k=20+50` (TASK~partial20, ...): the stem cut to its first k% of words, options intact;
  the report shows the score by k and how much of the full score remains.
- `none_of_the_above` (TASK~nota): the correct option's text replaced by "None of the other
  options"; right only when the model picks it.
- `shuffle:m=3` (TASK~shuffle): the item under m seeded option orders (gold remapped);
  consistency is the share of items answered with the same option text under every order,
  the original order included.
- `no_image` (TASK~noimage, tasks with images): the same question with its images withheld; the
  report gives the blind score beside the imaged one and the share of it a model keeps blind.
- `organ_pair` (TASK~organ, tasks with images and an `organ` label): ProbMed's procedural pair,
  "is this an image of the <its organ>?" (yes) and "... of the <another organ>?" (no), on the
  item's own image; a pair counts only when both are right.
- `language`: no new items. Tasks that declare `language: {group: G, code: C}` in their YAML are
  the same items in other languages (same ids, same gold); the report pairs them.

The robust score of a config counts an item only when it is right on the item and on each of
its probes that ran (both halves of a negation pair, none-of-the-above, every shuffled order,
every other language, both halves of an organ pair). `partial` and `no_image` are reported but
not part of it: being right from less of the case, or without the image, is a shortcut worth
knowing, not a condition of knowing the answer (a blind yes/no guess is right half the time).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass

from promptopt.errors import UserError

SEP = "~"
NOTA_TEXT = "None of the other options"
PROBES = ("negation", "partial", "none_of_the_above", "shuffle", "language", "no_image", "organ_pair")
IMAGE_PROBES = ("no_image", "organ_pair")  # of tasks whose items have images; the others of multiple-choice tasks
DEFAULT_PARTIAL = (20, 50)
DEFAULT_SHUFFLES = 3
NEGATION_INSTRUCTIONS = (
    "Below is a question and one proposed answer. Reply yes if the proposed answer is the correct "
    "answer to the question, no if it is not."
)


@dataclass(frozen=True)
class Probe:
    """One probe as asked: its name and knobs (partial: k; shuffle: m, seed)."""

    name: str
    k: tuple[int, ...] = DEFAULT_PARTIAL
    m: int = DEFAULT_SHUFFLES
    seed: int = 0

    @property
    def task_suffixes(self) -> list[str]:
        """The names its derived tasks carry after TASK~ (none for language)."""
        if self.name == "partial":
            return [f"partial{k}" for k in self.k]
        if self.name == "shuffle":
            same = (self.m, self.seed) == (DEFAULT_SHUFFLES, 0)
            return ["shuffle" if same else f"shuffle-m={self.m}_seed={self.seed}"]
        return {"negation": ["negation"], "none_of_the_above": ["nota"], "no_image": ["noimage"],
                "organ_pair": ["organ"]}.get(self.name, [])  # fmt: skip


def parse_probe(text: str) -> Probe:
    """`negation`, `partial:k=20+50`, `shuffle:m=5,seed=1`, ... or one sentence saying what is valid."""
    name, _, rest = text.partition(":")
    if name not in PROBES:
        raise UserError(f"Unknown probe {name!r}; valid probes are {', '.join(PROBES)}.")
    knobs: dict = {}
    for part in filter(None, rest.split(",")):
        key, _, value = part.partition("=")
        try:
            if key == "k" and name == "partial":
                knobs["k"] = tuple(sorted({int(v) for v in value.split("+")}))
                if not all(0 < k < 100 for k in knobs["k"]):
                    raise ValueError
            elif key in ("m", "seed") and name == "shuffle":
                knobs[key] = int(value)
                if key == "m" and knobs[key] < 1:
                    raise ValueError
            else:
                valid = {"partial": "k (e.g. k=20+50)", "shuffle": "m and seed"}.get(name, "none")
                raise UserError(f"Probe {name} has no knob {key!r}; valid knobs: {valid}.")
        except ValueError:
            raise UserError(
                f"Probe {name}: {part!r} is not a valid value; k is percentages below 100 joined by + "
                "(k=20+50), m a count of at least 1."
            ) from None
    return Probe(name, **knobs)


def source_id(example_id: str) -> str:
    """The id of the item a probe item came from (itself for an unprobed item)."""
    return example_id.rsplit(SEP, 1)[0] if SEP in example_id else example_id


def _rng(probe: str, example_id: str, seed: int = 0) -> random.Random:
    return random.Random(f"{probe}|{seed}|{example_id}")


def negation_items(ex) -> list:
    options = ex.inputs["options"]
    distractors = [k for k in options if k != ex.gold]
    if not distractors:
        return []
    wrong = _rng("negation", ex.id).choice(distractors)
    stem = ex.inputs.get("question", "")

    def item(suffix: str, letter: str, gold: str):
        inputs = {"question": stem, "proposed_answer": options[letter]}
        return type(ex)(id=f"{ex.id}{SEP}{suffix}", inputs=inputs, gold=gold)

    return [item("yes", ex.gold, "yes"), item("no", wrong, "no")]


def partial_items(ex, k: int) -> list:
    words = ex.inputs.get("question", "").split()
    kept = " ".join(words[: max(1, math.ceil(len(words) * k / 100))])
    return [type(ex)(id=f"{ex.id}{SEP}partial{k}", inputs={**ex.inputs, "question": kept}, gold=ex.gold)]


def nota_items(ex) -> list:
    options = dict(ex.inputs["options"])
    options[ex.gold] = NOTA_TEXT
    return [type(ex)(id=f"{ex.id}{SEP}nota", inputs={**ex.inputs, "options": options}, gold=ex.gold)]


def shuffle_items(ex, m: int, seed: int = 0) -> list:
    letters = list(ex.inputs["options"])
    texts = [ex.inputs["options"][k] for k in letters]
    out = []
    for i in range(1, m + 1):
        order = list(range(len(texts)))
        _rng("shuffle", ex.id, seed * 1000 + i).shuffle(order)
        shown = {letters[j]: texts[src] for j, src in enumerate(order)}
        gold = letters[order.index(letters.index(ex.gold))]
        out.append(type(ex)(id=f"{ex.id}{SEP}s{i}", inputs={**ex.inputs, "options": shown}, gold=gold))
    return out


def no_image_items(ex) -> list:
    """The same question with its images withheld: what the model scores blind."""
    from promptopt.images import is_image_field

    inputs = {k: v for k, v in ex.inputs.items() if not is_image_field(k)}
    return [type(ex)(id=f"{ex.id}{SEP}noimage", inputs=inputs, gold=ex.gold)]


def organ_name(label: str) -> str:
    """An organ label as a question names it (VQA-RAD's ABD is the abdomen)."""
    return ORGAN_NAMES.get(label.strip().upper(), label.strip().lower())


ORGAN_NAMES = {"ABD": "abdomen", "CHEST": "chest", "HEAD": "head"}
ORGAN_QUESTION = "Is this an image of the {organ}?"
ORGAN_INSTRUCTIONS = "Look at the radiology image and answer the question about it with one word: yes or no."


def organ_items(ex, organs: list[str]) -> list:
    """ProbMed's procedural pair: "is this an image of the <its organ>?" (yes) and of another organ
    of the task, chosen by seed (no); a pair counts only when both are right."""
    own = ex.labels.get("organ")
    others = [o for o in organs if o != own]
    if not own or not others:
        return []
    wrong = _rng("organ", ex.id).choice(others)
    images = {k: v for k, v in ex.inputs.items() if k != "question"}

    def item(half: str, organ: str, gold: str):
        inputs = {**images, "question": ORGAN_QUESTION.format(organ=organ_name(organ))}
        return type(ex)(id=f"{ex.id}{SEP}{half}", inputs=inputs, gold=gold, labels=ex.labels)

    return [item("yes", own, "yes"), item("no", wrong, "no")]


def transform(probe: Probe, suffix: str, organs: list[str] | None = None) -> Callable:
    """The function from one source item to its probe items, for the derived task TASK~suffix."""
    if probe.name == "negation":
        return negation_items
    if probe.name == "no_image":
        return no_image_items
    if probe.name == "organ_pair":
        return lambda ex: organ_items(ex, organs or [])
    if probe.name == "partial":
        return lambda ex: partial_items(ex, int(suffix.removeprefix("partial")))
    if probe.name == "none_of_the_above":
        return nota_items
    return lambda ex: shuffle_items(ex, probe.m, probe.seed)


SUFFIX_PROBE = {"negation": "negation", "nota": "none_of_the_above", "shuffle": "shuffle", "noimage": "no_image",
                "organ": "organ_pair"}  # fmt: skip
PAIRED = ("negation", "organ")  # suffixes whose two items per source count as one pair (both right)


def probe_of_suffix(suffix: str) -> Probe:
    """The probe a derived task's suffix names (partial20 -> partial with k=20)."""
    if suffix.startswith("partial") and suffix.removeprefix("partial").isdigit():
        return Probe("partial", k=(int(suffix.removeprefix("partial")),))
    name, _, knobs = suffix.partition("-")
    if name not in SUFFIX_PROBE:
        valid = "negation, nota, shuffle, partialK (e.g. partial20), noimage, organ"
        raise UserError(f"Unknown probe task suffix {suffix!r}; valid suffixes after {SEP}: {valid}.")
    return parse_probe(SUFFIX_PROBE[name] + (":" + knobs.replace("_", ",") if knobs else ""))
