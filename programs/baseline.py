"""`baseline`: the fixed, HELM-style prompt every leaderboard would use.

Instructions, the question, lettered options and "Answer:"; a short answer, no reasoning, no
demos, nothing optimized. It is the reference the ceiling's uplift is measured against.
"""

import dspy

from promptopt.images import message_content, refs_in
from promptopt.registry import ANY, strategy
from promptopt.signatures import plain_prompt as render


@strategy("baseline", answer_types={ANY}, calls=lambda knobs, n_options: 1, knobs={"max_tokens": None}, reasons=False)
class Baseline(dspy.Module):
    """The fixed HELM-style prompt: instructions, question, options, "Answer:"."""

    sees_images = True  # image inputs reach the model as image parts of the message

    compilable = False  # a fixed prompt: nothing to tune

    def __init__(self, task, max_tokens: int | None = None):
        super().__init__()
        self.instructions = task.spec.baseline.instructions
        self.answer_type = task.answer_type
        # a bare answer's length depends on its type: a letter needs a few tokens, a correction more
        self.max_tokens = max_tokens or task.answer_type.max_answer_tokens

    def forward(self, **inputs):
        prompt = render(self.instructions, inputs)
        # One line is the whole answer; stopping there also keeps base models from rambling.
        # A prose answer may have paragraphs: it ends at a blank line instead.
        stop = ["\n\n"] if self.answer_type.multiline else ["\n"]
        images = refs_in(inputs)
        if images:  # the image parts follow the prompt's text in one user message
            messages = [{"role": "user", "content": message_content(prompt, images)}]
            raw = dspy.settings.lm(messages=messages, max_tokens=self.max_tokens, stop=stop)[0]
        else:
            raw = dspy.settings.lm(prompt, max_tokens=self.max_tokens, stop=stop)[0]
        raw = raw if isinstance(raw, str) else raw.get("text", "")
        return dspy.Prediction(answer=self.answer_type.parse(raw, inputs), raw=raw)
