"""Split hygiene: no demo pool example may be, or nearly be, a test example.

Few-shot demos and optimizer searches draw from train and val (the *pools*); a pool example
that repeats a test question leaks its answer into the prompt and inflates the ceiling. That
happened in public: MedBullets' op4 and op5 files hold the same 298 stems, op4 with one
distractor fewer, so exact matching alone would miss it.

Two measures over each example's text (its input fields, options included, normalized: lower
case, words only, numbers written out as digits, so "five" and "5" are the same word):
- exact: equal normalized text with the options sorted, so reordered options hide nothing;
- near: Jaccard similarity of word-trigram sets >= `NEAR_JACCARD` (options in their order),
  found with MinHash and locality-sensitive hashing (candidate pairs share one band of
  signatures) and confirmed on the true sets — about linear in the number of examples, so
  10k x 10k takes seconds.
Options are part of the text on purpose: a generic stem ("Which statement is correct?") with
other options is a different question, while a long vignette with one option dropped is not.
A near duplicate must also state the same numbers outside its options: two template notes
that differ only in their lab values (MedCalc-Bench) are different questions.
Both apply to every task, carved or with its own split files.

Within a split, duplicate ids are an error (records are keyed by id) and repeated questions
are counted for the report.
"""

from __future__ import annotations

import hashlib
import re
import zlib
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from promptopt.errors import UserError
from promptopt.images import digests, refs_in

NEAR_JACCARD = 0.7
_PERMS, _BANDS = 128, 32  # 32 bands of 4 rows: a pair at Jaccard 0.7 becomes a candidate with p > 0.999
_PRIME = np.uint64(4294967311)  # > 2**32
_rng = np.random.default_rng(20240611)
_A = _rng.integers(1, 2**32, size=_PERMS, dtype=np.uint64)
_B = _rng.integers(0, 2**32, size=_PERMS, dtype=np.uint64)


@dataclass(frozen=True)
class Overlap:
    test_id: str
    pool_split: str
    pool_id: str
    similarity: float  # 1.0 for an exact duplicate


@dataclass
class HygieneReport:
    task: str
    overlaps: list[Overlap] = field(default_factory=list)
    duplicate_ids: dict[str, list[str]] = field(default_factory=dict)
    repeated_questions: dict[str, int] = field(default_factory=dict)  # split -> examples repeating an earlier one

    @property
    def overlapping_test_ids(self) -> list[str]:
        return sorted({o.test_id for o in self.overlaps})

    def summary(self) -> dict[str, Any]:
        """What a run records when it goes ahead despite an overlap."""
        return {
            "test_examples": len(self.overlapping_test_ids),
            "pool_examples": len({(o.pool_split, o.pool_id) for o in self.overlaps}),
            "exact": len({o.test_id for o in self.overlaps if o.similarity >= 1.0}),
            "examples": [f"{o.test_id}~{o.pool_split}:{o.pool_id}" for o in self.overlaps[:3]],
        }

    def overlap_sentence(self) -> str:
        s = self.summary()
        pairs = ", ".join(f"test {o.test_id} ~ {o.pool_split} {o.pool_id}" for o in self.overlaps[:3])
        return (
            f"Task {self.task}: {s['test_examples']} test examples duplicate or nearly duplicate "
            f"{s['pool_examples']} train/val examples ({s['exact']} exactly; e.g. {pairs}), so demos drawn "
            "from train/val could contain test answers; fix the split, or pass --allow-overlap to run anyway "
            "with a warning in the report."
        )


_UNITS = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen"
)
_TENS = "twenty thirty forty fifty sixty seventy eighty ninety"
_SMALL = {w: n for n, w in enumerate(_UNITS.split())} | {w: 10 * n for n, w in enumerate(_TENS.split(), start=2)}
_SCALE = {"hundred": 100, "thousand": 1000, "million": 1_000_000}
_NUMBER_WORDS = frozenset(_SMALL) | frozenset(_SCALE)


def _value(run: list[str]) -> list[str]:
    """Digits for a run of number words: twenty one -> 21, five hundred -> 500, one two -> 1 2."""
    numbers: list[int] = []
    total = current = 0
    last = ""  # the previous word: "", "unit" (0-19), "tens" (20-90) or "scale"
    for word in run:
        if word in _SCALE:
            if _SCALE[word] == 100:
                current = (current or 1) * 100
            else:
                total, current = total + (current or 1) * _SCALE[word], 0
            last = "scale"
            continue
        value = _SMALL[word]
        if last and not (last == "scale" or (last == "tens" and value < 10)):
            numbers.append(total + current)
            total = current = 0
        current += value
        last = "tens" if value >= 20 else "unit"
    return [str(n) for n in [*numbers, total + current]]


def _as_digits(words: list[str]) -> list[str]:
    """Words with numbers written out turned into digits, so "five" and "5" are the same word."""
    if _NUMBER_WORDS.isdisjoint(words):
        return words
    out: list[str] = []
    run: list[str] = []
    for word in [*words, ""]:  # "" ends the last run, and is dropped
        if word in _NUMBER_WORDS:
            run.append(word)
            continue
        if run:
            out.extend(_value(run))
            run = []
        out.append(word)
    return out[:-1]


_WORD = re.compile(r"[a-z0-9]+")


def _words(text: str) -> str:
    return " ".join(_as_digits(_WORD.findall(text.lower())))


def _texts(inputs: dict[str, Any]) -> tuple[str, str]:
    """Normalized text of an example, with its options sorted and in their order: every input,
    options included; lower case, words only, numbers written out as digits ("twenty-one" -> 21).

    The sorted form is the exact-duplicate key, so a copy whose options are reordered is still
    a copy. Near duplicates are measured on the options in their order: sorting would move a
    dropped option's gap into the middle, and a short stem with one distractor fewer would fall
    below the threshold.
    """
    keyed, shown = [], []
    for value in inputs.values():
        images = refs_in({"": value})
        if images:  # an image is the same image only by content: its digest joins the exact key only
            keyed.extend(f"image{ref.digest}" for ref in images)
        elif isinstance(value, dict):
            options = [_words(str(v)) for v in value.values()]
            keyed.extend(sorted(options))
            shown.extend(options)
        else:
            keyed.append(_words(str(value)))
            shown.append(keyed[-1])
    return " ".join(p for p in keyed if p), " ".join(p for p in shown if p)


def example_text(inputs: dict[str, Any]) -> str:
    """The exact-duplicate key of an example: its normalized text with the options sorted."""
    return _texts(inputs)[0]


def _numbers(inputs: dict[str, Any]) -> list[str]:
    """Numbers stated outside the options, written out ones included (as digits)."""
    text = " ".join(str(v) for k, v in inputs.items() if k != "options" and not refs_in({k: v})).lower()
    words = _as_digits(re.findall(r"[a-z]+|\d+(?:\.\d+)?", text))
    return sorted(w for w in words if w[0].isdigit())


def _shingles(text: str) -> np.ndarray:
    words = np.array([zlib.crc32(w.encode()) for w in text.split()], dtype=np.uint64)
    if len(words) < 3:
        return np.unique(words) if len(words) else np.zeros(1, dtype=np.uint64)
    mixed = (words[:-2] * np.uint64(1_000_003) + words[1:-1]) * np.uint64(1_000_033) + words[2:]
    return np.unique(mixed & np.uint64(0xFFFFFFFF))


def _signature(shingles: np.ndarray) -> np.ndarray:
    return ((_A[:, None] * shingles[None, :] + _B[:, None]) % _PRIME).min(axis=1)


def _jaccard(a: np.ndarray, b: np.ndarray) -> float:
    inter = len(np.intersect1d(a, b, assume_unique=True))
    return inter / (len(a) + len(b) - inter)


def near_duplicates(
    queries: list[str], corpus: list[str], threshold: float = NEAR_JACCARD
) -> list[tuple[int, int, float]]:
    """(query index, corpus index, Jaccard) for every pair at or above `threshold`, best first per query."""
    q_sh = [_shingles(t) for t in queries]
    c_sh = [_shingles(t) for t in corpus]
    rows = _PERMS // _BANDS
    buckets: dict[tuple[int, bytes], list[int]] = defaultdict(list)
    for j, sh in enumerate(c_sh):
        sig = _signature(sh)
        for b in range(_BANDS):
            buckets[(b, sig[b * rows : (b + 1) * rows].tobytes())].append(j)
    found = []
    for i, sh in enumerate(q_sh):
        sig = _signature(sh)
        candidates: set[int] = set()
        for b in range(_BANDS):
            candidates.update(buckets.get((b, sig[b * rows : (b + 1) * rows].tobytes()), ()))
        hits = [(i, j, _jaccard(sh, c_sh[j])) for j in candidates]
        found.extend(sorted((h for h in hits if h[2] >= threshold), key=lambda h: -h[2]))
    return found


def find_overlaps(splits: dict[str, list], threshold: float = NEAR_JACCARD) -> list[Overlap]:
    """Every (test example, pool example) pair that is an exact or near duplicate."""
    test = splits.get("test", [])
    pool = [(s, ex) for s in ("train", "val") for ex in splits.get(s, [])]
    if not test or not pool:
        return []
    test_key, test_text = zip(*(_texts(ex.inputs) for ex in test), strict=True)
    pool_key, pool_text = zip(*(_texts(ex.inputs) for _, ex in pool), strict=True)
    exact: dict[str, list[int]] = defaultdict(list)
    for j, key in enumerate(pool_key):
        exact[key].append(j)
    pairs: dict[tuple[int, int], float] = {}
    for i, key in enumerate(test_key):
        for j in exact.get(key, ()):
            pairs[(i, j)] = 1.0
    for i, j, sim in near_duplicates(list(test_text), list(pool_text), threshold):
        # a near copy of the wording asks about the same numbers, and about the same images
        same_images = digests(test[i].inputs) == digests(pool[j][1].inputs)
        if same_images and _numbers(test[i].inputs) == _numbers(pool[j][1].inputs):
            pairs.setdefault((i, j), min(round(sim, 3), 0.999))  # 1.0 means an exact copy
    return [
        Overlap(test_id=test[i].id, pool_split=pool[j][0], pool_id=pool[j][1].id, similarity=sim)
        for (i, j), sim in sorted(pairs.items())
    ]


def check(task) -> HygieneReport:
    """Overlaps between pools and test, duplicate ids and repeated questions inside each split."""
    report = HygieneReport(task=task.name, overlaps=find_overlaps(task.splits))
    for split, examples in task.splits.items():
        seen_ids: set[str] = set()
        seen_text: set[str] = set()
        for ex in examples:
            if ex.id in seen_ids:
                report.duplicate_ids.setdefault(split, []).append(ex.id)
            seen_ids.add(ex.id)
            key = hashlib.sha1(example_text(ex.inputs).encode()).hexdigest()
            if key in seen_text:
                report.repeated_questions[split] = report.repeated_questions.get(split, 0) + 1
            seen_text.add(key)
    return report


def enforce(task, allow_overlap: bool = False) -> dict[str, Any] | None:
    """Stop a run whose demo pools overlap its test set, unless allowed; returns what to record.

    Duplicate ids inside a split always stop it: records are keyed by example id.
    """
    report = check(task)
    for split, ids in report.duplicate_ids.items():
        raise UserError(
            f"Task {task.name}: {len(ids)} examples in split {split} share an id with another (e.g. {ids[0]!r}); "
            "give the task an id column whose values are unique."
        )
    if not report.overlaps:
        return None
    if not allow_overlap:
        raise UserError(report.overlap_sentence())
    return report.summary()
