"""`mipro`: DSPy's MIPROv2 — proposed instructions and demo sets, searched on a dev split.

Calls (auto=light by DSPy's own rule): T trials = max(2 * 2m * log2(n), 1.5 n) for m predictors
and n candidates (6 light, 12 medium, 18 heavy). On V <= 50 dev examples every trial scores all
of them: V * (T + 1) * c. Above 50, minibatches of 35 with a full evaluation every 5 trials and
at the end: (V + 35 T + V (T // 5 + [T % 5 > 0])) * c. Plus the bootstrap of its demo sets
(zero-shot, labeled, unshuffled with b, then n - 3 shuffled with 1..b) and the instruction
proposer's calls on the prompt model (10 + (n // 2) m + m + 1).
"""

import math

from promptopt.errors import UserError
from promptopt.optimizers import optimizer

MINIBATCH = 35
FULL_EVAL_EVERY = 5
MIN_MINIBATCH_VAL = 50
CANDIDATES = {"light": 6, "medium": 12, "heavy": 18}
VAL_CAP = {"light": 100, "medium": 300, "heavy": 1000}  # DSPy caps val per level


@optimizer("mipro", knobs={"bootstrapped": 3, "labeled": 3, "auto": "light", "val": 100, "prompt_model": None})
class Mipro:
    """Instructions proposed by a prompt model and demo sets, chosen by Bayesian search on a dev split."""

    def check(self, knobs) -> None:
        if knobs["bootstrapped"] < 1:
            raise UserError(
                "Optimizer 'mipro' needs bootstrapped of at least 1 (its candidates draw 1..bootstrapped demos)."
            )
        if knobs["auto"] not in CANDIDATES:
            raise UserError(f"Optimizer mipro's auto must be light, medium or heavy, not {knobs['auto']!r}.")

    def estimate(self, knobs, work) -> float:
        from promptopt.compiler import expected_tries

        n, m = CANDIDATES[knobs["auto"]], work.predictors
        v = min(work.n_val, knobs.get("val", work.n_val), VAL_CAP[knobs["auto"]])
        trials = int(max(2 * 2 * m * math.log2(n), 1.5 * n))
        if v > MIN_MINIBATCH_VAL:  # DSPy minibatches only above 50 dev examples
            evals = v + MINIBATCH * trials + v * (trials // FULL_EVAL_EVERY) + (v if trials % FULL_EVAL_EVERY else 0)
        else:
            evals = v * (trials + 1)  # the default program, then every trial on all of them
        b = knobs.get("bootstrapped", 0)
        sizes = [expected_tries(j, work.p, work.n_train) for j in range(1, b + 1)] or [0.0]
        boot = expected_tries(b, work.p, work.n_train) + (n - 3) * sum(sizes) / len(sizes)
        proposer = 10 + (n // 2) * m + m + 1
        return (evals + boot) * work.per_example + proposer

    def compile(self, program, inputs):
        import dspy

        k = inputs.knobs
        opt = dspy.MIPROv2(
            metric=inputs.metric, auto=k["auto"], prompt_model=inputs.prompt_lm, max_bootstrapped_demos=k["bootstrapped"],
            max_labeled_demos=k["labeled"], num_threads=inputs.threads, verbose=False,
        )  # fmt: skip
        return opt.compile(program, trainset=inputs.train, valset=inputs.dev)
