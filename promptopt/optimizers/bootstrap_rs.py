"""`bootstrap_rs`: DSPy's BootstrapFewShotWithRandomSearch — candidate demo sets scored on a dev split.

Calls with C candidates on V dev examples and c calls per example: DSPy's candidate seeds are
zero-shot, labeled-only, the unshuffled bootstrap and C shuffled bootstraps of 1..b demos
(uniform); every one is scored on V: (C + 3) * V * c + (E[b] + C * mean_j E[j]) * c.
"""

from promptopt.compiler import expected_tries
from promptopt.errors import UserError
from promptopt.optimizers import optimizer


def bootstrap_tries(b: int, candidates: float, p: float, n_train: int) -> float:
    """Training examples tried by the unshuffled bootstrap of b demos and `candidates` shuffled
    ones of 1..b demos each (DSPy draws their sizes uniformly)."""
    sizes = [expected_tries(j, p, n_train) for j in range(1, b + 1)] or [0.0]
    return expected_tries(b, p, n_train) + candidates * sum(sizes) / len(sizes)


def needs_bootstrapped(name: str, knobs) -> None:
    if knobs["bootstrapped"] < 1:
        raise UserError(
            f"Optimizer {name!r} needs bootstrapped of at least 1 (its candidates draw 1..bootstrapped demos)."
        )


@optimizer("bootstrap_rs", knobs={"bootstrapped": 3, "labeled": 3, "candidates": 8, "val": 100})
class BootstrapRandomSearch:
    """Bootstrapped demo sets, the best of C candidates on a dev split from train."""

    def check(self, knobs) -> None:
        needs_bootstrapped("bootstrap_rs", knobs)

    def estimate(self, knobs, work) -> float:
        c, v = knobs["candidates"], min(work.n_val, knobs.get("val", work.n_val))
        boot = bootstrap_tries(knobs.get("bootstrapped", 0), c, work.p, work.n_train)
        return ((c + 3) * v + boot) * work.per_example

    def compile(self, program, inputs):
        import dspy

        k = inputs.knobs
        opt = dspy.BootstrapFewShotWithRandomSearch(
            metric=inputs.metric, max_bootstrapped_demos=k["bootstrapped"], max_labeled_demos=k["labeled"],
            num_candidate_programs=k["candidates"], num_threads=inputs.threads,
        )  # fmt: skip
        return opt.compile(program, trainset=inputs.train, valset=inputs.dev)
