"""The fuzzing campaign: the properties of tests/test_hostile.py with many generated inputs each.

Every reader of downloaded files (task specs, their data rows, sweep files, corpora and imported
logs, store files) must load or fail in one sentence (UserError), every answer parser must take
any text, and every record must come back from the store whole, once, whatever its text (on
SQLite, and on PostgreSQL when PROMPTOPT_TEST_POSTGRES names one);
an example slower than the deadline counts as a hang. Prints, per property, the inputs generated,
failures (a traceback or a hang: Hypothesis stops at the first and shrinks it) and the time.

    PYTHONPATH=. python benchmarks/fuzz_readers.py [EXAMPLES_PER_READER] [DEADLINE_MS]
"""

import os
import re
import subprocess
import sys
import time

PROPERTIES = [
    ("task spec, any value in any field", "test_a_task_spec_with_any_value_in_any_field"),
    ("data rows of any shape", "test_data_rows_of_any_shape"),
    ("sweep files", "test_a_sweep_file_with_any_settings"),
    ("corpus, Inspect and lm-eval logs of any bytes", "test_a_corpus_or_an_imported_log_of_any_bytes"),
    ("answer parsers (8x the examples)", "test_every_answer_parser_takes_any_text"),
    ("records holding any text: none lost, none doubled", "test_records_holding_any_text_are_kept_whole"),
    ("a store file of any bytes", "test_a_store_file_of_any_bytes"),
]


def main(examples: int = 10_000, deadline_ms: int = 10_000) -> None:
    env = dict(os.environ, PROMPTOPT_FUZZ_EXAMPLES=str(examples), PROMPTOPT_FUZZ_DEADLINE_MS=str(deadline_ms))
    print(f"{examples:,} generated inputs per reader, deadline {deadline_ms / 1000:g} s per input")
    print(f"{'property':<48} {'result':<8} {'seconds':>8}")
    for label, test in PROPERTIES:
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "tests/test_hostile.py", "-q", "-p", "no:xdist", "-p", "no:cacheprovider",
             "-k", test, "--hypothesis-show-statistics"],
            env=env, capture_output=True, text=True,
        )  # fmt: skip
        seconds = time.monotonic() - started
        result = "passed" if done.returncode == 0 else "FAILED"
        print(f"{label:<48} {result:<8} {seconds:>8.0f}")
        if done.returncode != 0:
            failure = [line[:300] for line in done.stdout.splitlines() if re.match(r"\s*(E |\| |[A-Za-z]+Error)", line)]
            print("\n".join("    " + line for line in failure[:20]))
        generated = re.search(r"during generate phase.*?(\d+) passing, (\d+) failing, and (\d+) invalid", done.stdout, re.S)
        if generated:
            passing, failing, invalid = (int(g) for g in generated.groups())
            print(f"    generated: {passing:,} passing, {failing:,} failing, {invalid:,} invalid inputs")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
