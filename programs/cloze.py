"""`cloze`: each option's text scored as the continuation of the question, without the options.

The prompt is the question alone ("Question: ...", any other inputs, then "Answer:"), as
lm-evaluation-harness scores multiple choice: the answer is the option whose text, after it,
the model finds most likely. `acc` compares summed log-probabilities, `acc_norm` divides each by
the option's length in characters (longer options are not penalized for their length); both are
kept in the record's extras and reported, and `length_norm` says which one is the answer. One
call per option; needs an endpoint that returns log-probabilities of given text (llama.cpp's
server, vLLM), see promptopt.logprobs.
"""

import dspy

from promptopt.answers import parse_options
from promptopt.logprobs import continuation_logprob
from promptopt.registry import strategy
from promptopt.signatures import plain_prompt


def best(scores: dict[str, float], letters: list[str]) -> str:
    """The highest score; ties go to the earlier letter."""
    return max(letters, key=lambda k: (scores[k], -letters.index(k)))


@strategy(
    "cloze",
    answer_types={"multiple_choice"},
    calls=lambda knobs, n_options: n_options,
    knobs={"length_norm": True},
    reasons=False,
    needs={"prompt_logprobs"},
)
class Cloze(dspy.Module):
    """Options' texts scored as continuations of the question (log-likelihood; acc and acc_norm)."""

    compilable = False  # no DSPy predictor: nothing is generated

    def __init__(self, task, length_norm: bool = True):
        super().__init__()
        self.length_norm = length_norm

    def forward(self, **inputs):
        options = parse_options(inputs["options"])
        model = dspy.settings.lm.promptopt_model
        context = plain_prompt("", inputs, skip=("options",))
        logprob, chars = {}, {}
        for letter, text in options.items():
            continuation = " " + " ".join(text.split())
            logprob[letter], _ = continuation_logprob(model, context, continuation)
            chars[letter] = len(continuation) - 1  # the option's own characters, as lm-eval's acc_norm counts
        letters = list(options)
        per_char = {k: logprob[k] / max(1, chars[k]) for k in letters}
        acc, acc_norm = best(logprob, letters), best(per_char, letters)
        cloze = {"logprob": logprob, "chars": chars, "acc": acc, "acc_norm": acc_norm}
        return dspy.Prediction(answer=acc_norm if self.length_norm else acc, cloze=cloze, raw=str(cloze))
