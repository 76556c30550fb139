"""`cot`: DSPy ChainOfThought over the task's fields — reason first, then answer."""

import dspy

from promptopt.answers import format_options
from promptopt.registry import strategy


def signature_for(task) -> type[dspy.Signature]:
    """The task as a DSPy signature: its input fields in, one `answer` out."""
    fields = {}
    for name in task.input_fields:
        desc = "lettered options, one per line" if name == "options" else ""
        fields[name] = (str, dspy.InputField(desc=desc))
    fields["answer"] = (str, dspy.OutputField(desc=task.answer_type.describe({})))
    return dspy.Signature(fields, task.spec.baseline.instructions.strip())


def as_text(inputs: dict) -> dict:
    return {k: format_options(v) if k == "options" else v for k, v in inputs.items()}


@strategy("cot", answer_types={"multiple_choice"}, calls=lambda knobs: 1, knobs={})
class ChainOfThought(dspy.Module):
    """DSPy ChainOfThought: a reasoning field before the answer."""

    def __init__(self, task):
        super().__init__()
        self.answer_type = task.answer_type
        self.predict = dspy.ChainOfThought(signature_for(task))

    def forward(self, **inputs):
        out = self.predict(**as_text(inputs))
        raw = f"{out.get('reasoning', '')}\n[[answer]] {out.answer}"
        return dspy.Prediction(answer=self.answer_type.parse(out.answer, inputs), reasoning=out.get("reasoning"), raw=raw)
