"""`predict`: a structured DSPy Predict over the task's fields — answer directly, no reasoning."""

import dspy

from promptopt.registry import ANY, strategy
from promptopt.signatures import as_text, signature_for


@strategy("predict", answer_types={ANY}, calls=lambda knobs, n_options: 1, reasons=False)
class Predict(dspy.Module):
    """DSPy Predict: the task's signature answered in one step."""

    sees_images = True  # image inputs reach the model as image parts of the message

    def __init__(self, task):
        super().__init__()
        self.answer_type = task.answer_type
        self.predict = dspy.Predict(signature_for(task))

    def forward(self, **inputs):
        out = self.predict(**as_text(inputs))
        return dspy.Prediction(answer=self.answer_type.parse(out.answer, inputs), raw=out.answer)
