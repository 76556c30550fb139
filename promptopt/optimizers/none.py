"""`none`: the strategy as written, zero-shot; nothing is compiled."""

from promptopt.optimizers import optimizer


@optimizer("none")
class NoOptimizer:
    """The program as written: no demos, no tuned instruction."""

    def estimate(self, knobs, work) -> float:
        return 0

    def compile(self, program, inputs):
        return program
