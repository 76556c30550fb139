"""`labeled`: DSPy's LabeledFewShot — the first k train examples as demos, with their gold answers."""

from promptopt.optimizers import optimizer


@optimizer("labeled", knobs={"labeled": 3})
class Labeled:
    """k labeled train examples as demos; no LM call."""

    def estimate(self, knobs, work) -> float:
        return 0

    def compile(self, program, inputs):
        import dspy

        return dspy.LabeledFewShot(k=inputs.knobs["labeled"]).compile(program, trainset=inputs.train)
