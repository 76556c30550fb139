"""`self_consistency`: several chain-of-thought samples at a temperature above zero, majority vote.

On free text, where no two samples match, the answer type's `aggregate` picks instead: for
`free_text`, the sample with the highest mean ROUGE-L to the others (no extra call).

Each sample carries its own rollout id, so a response cache can never hand back one sample n
times; votes that cannot be parsed abstain; ties go to the answer sampled first.
"""

import dspy

from promptopt.registry import ANY, strategy
from promptopt.signatures import as_text, ask, signature_for, vote


@strategy(
    "self_consistency",
    reasons=True,
    answer_types={ANY},
    calls=lambda knobs, n_options: knobs["n"],
    knobs={"n": 5, "temperature": 0.7},
)
class SelfConsistency(dspy.Module):
    """n chain-of-thought samples at temperature > 0; plurality vote over parsed answers."""

    sees_images = True  # image inputs reach the model as image parts of the message

    def __init__(self, task, n: int = 5, temperature: float = 0.7):
        super().__init__()
        if n < 1 or temperature <= 0:
            raise ValueError("self_consistency needs n >= 1 and a temperature above 0")
        self.answer_type = task.answer_type
        self.n, self.temperature = n, temperature
        self.predict = dspy.ChainOfThought(signature_for(task))

    def forward(self, **inputs):
        votes, raws = [], []
        for i in range(self.n):
            config = {"temperature": self.temperature, "rollout_id": i}
            out = ask(self.predict, **as_text(inputs), config=config)
            text = out.answer if out is not None else None
            votes.append(self.answer_type.parse(text, inputs))
            raws.append(text or "")
        # prose rarely repeats word for word: a free-text answer type picks its most central sample
        pick = self.answer_type.aggregate or vote
        return dspy.Prediction(answer=pick(votes), votes=votes, raw=" | ".join(raws))
