"""Scoring by probability on the embedded model: letter_logprob and cloze beside baseline.

Each strategy runs on its own freshly started llama.cpp server (so no strategy reads prompts
another one left in the server's prompt cache), on the first N MedQA test questions, 4 at once,
and prints its accuracy with a Wilson interval, parse failures, LM calls and seconds per question
(scoring time only, the server's start left out).

    PYTHONPATH=. .venv/bin/python benchmarks/probability_strategies.py [N]
"""

import sys
import tempfile
import time

import promptopt
from promptopt.scoring import Progress


def main(n: int = 100) -> None:
    print(f"MedQA test, first {n} questions, local/gemma-3-270m, 4 at once")
    print(f"{'strategy':<16} {'accuracy % [95% CI]':<22} {'parse fail %':>12} {'calls/q':>8} {'s/q':>6}")
    for strategy in ("baseline", "letter_logprob", "cloze"):
        elapsed = {}

        def seen(event, elapsed=elapsed):
            if isinstance(event, Progress):
                elapsed["s"] = event.elapsed_s

        with tempfile.TemporaryDirectory() as out:
            started = time.monotonic()
            log = promptopt.run(strategies=[strategy], references=False, splits=["test"], limit=n, out=out,
                                on_event=seen)  # fmt: skip
            total = time.monotonic() - started
        row = log.report.rows[0]
        ci = f"{100 * row.score:.1f} [{100 * row.ci_low:.1f}, {100 * row.ci_high:.1f}]"
        per = elapsed.get("s", total) / n
        print(f"{strategy:<16} {ci:<22} {100 * row.parse_failure_rate:>12.1f} {row.lm_calls / n:>8.1f} {per:>6.2f}")
        for extra in log.report.calibration + log.report.cloze:
            print("   ", extra.model_dump(exclude={"run_id", "model", "task", "optimizer", "strategy"}))


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100)
