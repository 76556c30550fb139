"""`bootstrap`: DSPy's BootstrapFewShot — the model's own right traces on train as demos.

Calls: E[b] * c, b bootstrapped demos and c calls per example: DSPy tries training examples in
order until it has b right ones (E[b] from promptopt.compiler.expected_tries). With r rounds an
example is retried, at temperature 1, until right, up to r times. `seed` other than 0 shuffles
the train order first, so each seed is another demo set at the same cost.
"""

import random

from promptopt.compiler import expected_tries
from promptopt.optimizers import optimizer


@optimizer("bootstrap", knobs={"bootstrapped": 3, "labeled": 3, "rounds": 1, "seed": 0})
class Bootstrap:
    """Bootstrapped demos (the model's right traces) plus labeled ones."""

    def estimate(self, knobs, work) -> float:
        p, r = max(work.p, 1e-6), knobs.get("rounds", 1)
        p_any = 1 - (1 - work.p) ** r
        return expected_tries(knobs.get("bootstrapped", 0), p_any, work.n_train) * (p_any / p) * work.per_example

    def compile(self, program, inputs):
        import dspy

        k = inputs.knobs
        opt = dspy.BootstrapFewShot(
            metric=inputs.metric, max_bootstrapped_demos=k["bootstrapped"], max_labeled_demos=k["labeled"],
            max_rounds=k["rounds"],
        )  # fmt: skip
        train = list(inputs.train)
        if k["seed"]:  # another demo set: the train examples in another order (seed 0: file order)
            random.Random(k["seed"]).shuffle(train)
        return opt.compile(program, trainset=train)
