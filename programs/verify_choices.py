"""`verify_choices` (Verification-of-Choice): check every option, then decide from the checks.

Unbatched, each option gets its own verification call (is this option right, and why), then
one decision call reads all verifications: options + 1 calls. Batched, one call verifies every
option in turn and one decides: 2 calls, cheaper, but a weak model may skip options.
"""

import dspy

from promptopt.answers import parse_options
from promptopt.registry import strategy
from promptopt.signatures import as_text, ask


class VerifyOption(dspy.Signature):
    """Check whether the candidate option correctly answers the question. Explain why, then give
    a verdict: yes if it is the correct answer, no otherwise."""

    question: str = dspy.InputField()
    options: str = dspy.InputField(desc="all options, lettered")
    candidate: str = dspy.InputField(desc="the option to check")
    why: str = dspy.OutputField(desc="the reasons for and against this option")
    verdict: str = dspy.OutputField(desc="yes or no")


class VerifyAll(dspy.Signature):
    """Check each option in turn: for every letter, say whether it correctly answers the question
    and why."""

    question: str = dspy.InputField()
    options: str = dspy.InputField(desc="all options, lettered")
    verifications: str = dspy.OutputField(desc="one line per option: letter, yes or no, and why")


class Decide(dspy.Signature):
    """Given the question, its options and a verification of each option, pick the single best
    option."""

    question: str = dspy.InputField()
    options: str = dspy.InputField(desc="all options, lettered")
    verifications: str = dspy.InputField(desc="what checking each option found")
    answer: str = dspy.OutputField(desc="the letter of the single best option")


@strategy(
    "verify_choices",
    reasons=True,
    answer_types={"multiple_choice"},
    calls=lambda knobs, n_options: 2 if knobs["batched"] else n_options + 1,
    knobs={"batched": False},
)
class VerifyChoices(dspy.Module):
    """Verify each option (or all in one call), then decide from the verifications."""

    def __init__(self, task, batched: bool = False):
        super().__init__()
        self.answer_type = task.answer_type
        self.batched = batched
        self.verify_one = dspy.Predict(VerifyOption)
        self.verify_all = dspy.Predict(VerifyAll)
        self.decide = dspy.ChainOfThought(Decide)

    def forward(self, question: str, options: dict[str, str] | str, **rest):
        options = parse_options(options)  # optimizers pass options as rendered text
        text = as_text({"question": question, "options": options, **rest})
        if self.batched:
            out = ask(self.verify_all, **text)
            checks = out.verifications if out is not None else ""
        else:
            lines = []
            for letter, option in options.items():
                out = ask(self.verify_one, **text, candidate=f"{letter}. {option}")
                verdict = (out.verdict or "").strip() if out is not None else "unclear"
                why = (out.why or "").strip() if out is not None else ""
                lines.append(f"{letter}: {verdict} — {why}")
            checks = "\n".join(lines)
        out = ask(self.decide, **text, verifications=checks)
        answer = out.answer if out is not None else None
        return dspy.Prediction(
            answer=self.answer_type.parse(answer, {"options": options}),
            verifications=checks,
            raw=f"{checks}\n[[answer]] {answer}",
        )
