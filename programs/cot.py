"""`cot`: DSPy ChainOfThought over the task's fields — reason first, then answer."""

import dspy

from promptopt.registry import ANY, strategy
from promptopt.signatures import as_text, signature_for


@strategy("cot", answer_types={ANY}, calls=lambda knobs, n_options: 1, knobs={}, reasons=True)
class ChainOfThought(dspy.Module):
    """DSPy ChainOfThought: a reasoning field before the answer."""

    sees_images = True  # image inputs reach the model as image parts of the message

    def __init__(self, task):
        super().__init__()
        self.answer_type = task.answer_type
        self.predict = dspy.ChainOfThought(signature_for(task))

    def forward(self, **inputs):
        out = self.predict(**as_text(inputs))
        raw = f"{out.get('reasoning', '')}\n[[answer]] {out.answer}"
        return dspy.Prediction(
            answer=self.answer_type.parse(out.answer, inputs), reasoning=out.get("reasoning"), raw=raw
        )
