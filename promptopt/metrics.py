"""Generation metrics for free-text answers: each one scores a prediction against a reference in [0, 1].

The field's own implementations do the work: ROUGE from Google's `rouge-score` (F-measure, Porter
stemming, as MEDEC and most summarization papers report it), chrF and BLEU from `sacrebleu`
(sentence-level, with sacrebleu's default smoothing, divided by 100). Every metric is computed per
item so that a config's score is a mean over items and two configs compare paired by item; note
that the mean of sentence BLEU is not corpus BLEU. `exact` and `token_f1` follow SQuAD's
definitions over promptopt's text normalization (lower case, no punctuation, no articles).

`judge` is a metric name too: an LLM grades the answer against the reference (promptopt.judge).
"""

from __future__ import annotations

import functools
import json
import re
from collections import Counter
from collections.abc import Callable

JUDGE = "judge"


def normalize_text(text: str) -> str:
    """Lower case, no punctuation, no articles, single spaces: "The Liver." == "liver"."""
    text = re.sub(r"[^\w\s]", " ", text.lower())
    return " ".join(w for w in text.split() if w not in {"a", "an", "the"})


def exact(prediction: str, reference: str) -> float:
    return float(normalize_text(prediction) == normalize_text(reference))


def token_f1(prediction: str, reference: str) -> float:
    """Harmonic mean of token precision and recall over the normalized words (SQuAD's F1)."""
    got, want = normalize_text(prediction).split(), normalize_text(reference).split()
    if not got or not want:
        return float(got == want)
    common = sum((Counter(got) & Counter(want)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(got), common / len(want)
    return 2 * precision * recall / (precision + recall)


@functools.cache
def _rouge():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)


def _rouge_f(kind: str) -> Callable[[str, str], float]:
    def score(prediction: str, reference: str) -> float:
        return float(_rouge().score(reference, prediction)[kind].fmeasure)

    score.__name__ = kind
    return score


def chrf(prediction: str, reference: str) -> float:
    import sacrebleu

    return float(sacrebleu.sentence_chrf(prediction, [reference]).score) / 100


def bleu(prediction: str, reference: str) -> float:
    import sacrebleu

    return float(sacrebleu.sentence_bleu(prediction, [reference]).score) / 100


METRICS: dict[str, Callable[[str, str], float]] = {
    "exact": exact,
    "token_f1": token_f1,
    "rouge1": _rouge_f("rouge1"),
    "rouge2": _rouge_f("rouge2"),
    "rougeL": _rouge_f("rougeL"),
    "chrf": chrf,
    "bleu": bleu,
}
KNOWN = (*METRICS, JUDGE)


def check(names: list[str] | tuple[str, ...], primary: str | None) -> None:
    """Refuse unknown metric names and a primary metric that is not among them."""
    for name in names:
        if name not in KNOWN:
            raise ValueError(f"unknown metric {name!r}; valid metrics: {', '.join(KNOWN)}")
    if not names:
        raise ValueError(f"give at least one metric; valid metrics: {', '.join(KNOWN)}")
    if primary is not None and primary not in names:
        raise ValueError(f"the primary metric {primary!r} is not one of the task's metrics ({', '.join(names)})")


def references(gold: str) -> list[str]:
    """A gold's accepted references: a JSON list of texts (a task's gold column holding several),
    else the gold itself."""
    if gold.startswith("["):
        try:
            found = json.loads(gold)
        except ValueError:
            return [gold]
        if isinstance(found, list) and found and all(isinstance(x, str) for x in found):
            return found
    return [gold]


def best(name: str, prediction: str, gold: str) -> float:
    """A metric against every reference of `gold`: sacrebleu's BLEU and chrF take them all at
    once (as their multi-reference scores do), the others the best over them (exact: any of)."""
    refs = references(gold)
    if len(refs) == 1:
        return METRICS[name](prediction, refs[0])
    if name in ("bleu", "chrf"):
        import sacrebleu

        scorer = sacrebleu.sentence_bleu if name == "bleu" else sacrebleu.sentence_chrf
        return float(scorer(prediction, refs).score) / 100
    return max(METRICS[name](prediction, ref) for ref in refs)


def compute(names: list[str] | tuple[str, ...], prediction: str | None, reference: str) -> dict[str, float]:
    """Every named metric except the judge's, against every reference; a missing prediction
    scores 0 on each."""
    return {n: (best(n, prediction, reference) if prediction else 0.0) for n in names if n != JUDGE}
