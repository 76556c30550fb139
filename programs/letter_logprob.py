"""`letter_logprob`: the answer is the option letter the model finds most probable next.

One call on the fixed baseline prompt (instructions, question, lettered options, "Answer:"),
asking for one token and the top log-probabilities at that position. The letters' probabilities
(normalized over the letters, with the mass they had among the top tokens) are the record's
extras, so the report can say how well calibrated they are (Brier score, expected calibration
error). Nothing is generated to be parsed, so a base model has no parse failures as long as a
letter is among the top tokens. Needs an endpoint that returns top log-probabilities.
"""

import json

import dspy

from promptopt.answers import parse_options
from promptopt.errors import UserError
from promptopt.logprobs import letter_distribution, top_logprobs
from promptopt.registry import strategy
from promptopt.signatures import plain_prompt


@strategy(
    "letter_logprob",
    answer_types={"multiple_choice"},
    calls=lambda knobs, n_options: 1,
    knobs={"top": 20},
    reasons=False,
    needs={"logprobs"},
)
class LetterLogprob(dspy.Module):
    """One call: the most probable option letter after the baseline prompt (top log-probabilities)."""

    compilable = False  # no DSPy predictor: the fixed prompt is read, not generated from

    def __init__(self, task, top: int = 20):
        super().__init__()
        if not 1 <= top <= 20:
            raise ValueError("letter_logprob needs 1 <= top <= 20 (the most top log-probabilities APIs return)")
        self.instructions = task.spec.baseline.instructions
        self.top = top

    def forward(self, **inputs):
        options = parse_options(inputs["options"])
        lm = dspy.settings.lm
        out = lm(plain_prompt(self.instructions, inputs), max_tokens=1, logprobs=True, top_logprobs=self.top)[0]
        pairs = top_logprobs(out)
        if pairs is None:
            name = getattr(getattr(lm, "promptopt_model", None), "name", None) or getattr(lm, "model", "the model")
            raise UserError(
                f"Model {name} returned no log-probabilities; strategy 'letter_logprob' needs an endpoint that "
                "returns top log-probabilities (OpenAI, vLLM, llama.cpp's server)."
            )
        probs, mass = letter_distribution(pairs, list(options))
        answer = max(probs, key=lambda k: (probs[k], -list(options).index(k))) if probs else None
        raw = json.dumps({"top": [[t, round(lp, 6)] for t, lp in pairs]})
        return dspy.Prediction(answer=answer, letter_probs=probs or None, letter_mass=mass, raw=raw)
