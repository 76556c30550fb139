"""`gepa`: DSPy's GEPA — instructions evolved by a reflection model from the metric's feedback.

Calls with a budget of B metric calls, V dev examples and minibatches of size m: GEPA runs the
program once per metric call and stops at the first check past B, so up to one minibatch over:
(max(B, V) + m) * c; plus one reflection call per iteration (an iteration scores a minibatch on
the parent and on the child): (B - V) // 2m + 1. Its reflection model is `reflection_model`, or
the task model itself. Its metric returns the score and a sentence of feedback (right; wrong,
and what the right answer was; unreadable, and the format asked).
"""

from promptopt.optimizers import optimizer


@optimizer("gepa", knobs={"metric_calls": 150, "val": 30, "minibatch": 3, "reflection_model": None, "seed": 0})
class Gepa:
    """Reflective instruction evolution within a budget of metric calls."""

    def estimate(self, knobs, work) -> float:
        m, v = knobs["minibatch"], min(work.n_val, knobs.get("val", work.n_val))
        evals = max(knobs["metric_calls"], v) + m
        reflections = max(1, (knobs["metric_calls"] - v) // (2 * m) + 1)
        return evals * work.per_example + reflections

    def compile(self, program, inputs):
        import dspy

        k = inputs.knobs
        opt = dspy.GEPA(
            metric=inputs.feedback_metric, max_metric_calls=k["metric_calls"],
            reflection_lm=inputs.prompt_lm or dspy.settings.lm, reflection_minibatch_size=k["minibatch"],
            num_threads=inputs.threads, seed=k["seed"],
        )  # fmt: skip
        return opt.compile(program, trainset=inputs.train, valset=inputs.dev)
