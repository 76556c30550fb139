"""`choice_shuffle` (Medprompt's choice-shuffle ensemble): one vote per option order.

Each vote sees the options in a new order, seeded by the question, so it is reproducible. Its
answer is mapped back to the original letter before the vote, which cancels a model's preference
for a position. The votes are kept on the prediction and, as JSON, in its raw output
(`{"votes": [original letters or null], "answers": [raw answer texts]}`): answers that change with
the order show how robust the model is, and the report's consistency figure reads them there.
"""

import hashlib
import json
import random

import dspy

from promptopt.answers import format_options, parse_options
from promptopt.registry import strategy
from promptopt.signatures import ask, signature_for, vote


def orders(options: dict[str, str], n: int, seed: int, question: str) -> list[list[str]]:
    """n orders of the original option letters; the first is the original order."""
    letters = list(options)
    rng = random.Random(f"{seed}:{hashlib.sha1(question.encode()).hexdigest()}")
    out = [letters]
    for _ in range(n - 1):
        order = letters[:]
        rng.shuffle(order)
        out.append(order)
    return out


@strategy(
    "choice_shuffle",
    answer_types={"multiple_choice"},
    calls=lambda knobs, n_options: knobs["n"],
    reasons=lambda knobs: knobs["reasoning"],
    shuffles_options=True,
    knobs={"n": 5, "reasoning": True, "seed": 0},
)
class ChoiceShuffle(dspy.Module):
    """n votes, each with the options in a new seeded order, mapped back before voting."""

    def __init__(self, task, n: int = 5, reasoning: bool = True, seed: int = 0):
        super().__init__()
        self.answer_type = task.answer_type
        self.n, self.seed = n, seed
        sig = signature_for(task)
        self.predict = dspy.ChainOfThought(sig) if reasoning else dspy.Predict(sig)

    def forward(self, question: str, options: dict[str, str] | str, **rest):
        options = parse_options(options)  # optimizers pass options as rendered text
        letters = list(options)
        votes, raws = [], []
        for order in orders(options, self.n, self.seed, question):
            shown = {new: options[old] for new, old in zip(letters, order, strict=True)}
            back = dict(zip(letters, order, strict=True))
            out = ask(self.predict, question=question, options=format_options(shown), **rest)
            text = out.answer if out is not None else None
            picked = self.answer_type.parse(text, {"options": shown})
            votes.append(back.get(picked) if picked else None)
            raws.append(text or "")
        raw = json.dumps({"votes": votes, "answers": raws})
        return dspy.Prediction(answer=vote(votes), votes=votes, raw=raw)
