"""How long `promptopt report` takes on 100k records (the target: under 5 s, from the store alone).

Builds a run folder with ~100k simulated records (4 models x 2 tasks x 6 configs x 2,100 val+test
examples, reasoning-sized raw outputs, choice_shuffle votes), then times the CLI end to end
(process start, imports, reading SQLite, statistics with 10,000 bootstrap resamples, rendering)
for JSON and for HTML (with its Pareto plot). Prints figures; asserts nothing.

    python benchmarks/report_speed.py [--records-dir DIR]
"""

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from promptopt.simulate import SimConfig, simulate, write_run

MODELS = ["openai/gpt-4o-mini", "anthropic/claude-3-5-haiku-latest", "local/gemma-3-270m#abc", "ollama_chat/qwen3"]
CONFIGS = [
    SimConfig("baseline", 0.45),
    SimConfig("predict", 0.47),
    SimConfig("cot", 0.52, completion_tokens=250),
    SimConfig("self_consistency", 0.55, calls=5, completion_tokens=250),
    SimConfig("choice_shuffle", 0.56, calls=5, completion_tokens=250, knobs={"reasoning": True}),
    SimConfig("knn_fewshot", 0.58, optimizer="none", prompt_tokens=1500, completion_tokens=250),
]


def simulated_records() -> pd.DataFrame:
    """~100k records: 4 models x 2 tasks x 6 configs x 2,100 val+test examples, reasoning-sized outputs."""
    frames = []
    for t, task in enumerate(["medqa", "gsm8k"]):
        models = {
            m: [SimConfig(**{**c.__dict__, "accuracy": c.accuracy + 0.05 * i - 0.02 * t}) for c in CONFIGS]
            for i, m in enumerate(MODELS)
        }
        frames.append(simulate(models, task=task, n={"val": 800, "test": 1300}, seed=t))
    recs = pd.concat(frames, ignore_index=True)
    filler = "Let's think step by step. " * 16  # ~400 characters, like a short reasoning trace
    recs["raw_output"] = recs["raw_output"].fillna(filler)
    return recs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records-dir", type=Path, help="Where to build the run folder (default: a temp dir).")
    args = parser.parse_args()
    root = args.records_dir or Path(tempfile.mkdtemp(prefix="report-speed-"))
    recs = simulated_records()
    started = time.perf_counter()
    run = write_run(recs, root / "run")
    print(f"built {len(recs):,} records in {run} ({time.perf_counter() - started:.1f} s)")
    exe = str(Path(sys.executable).with_name("promptopt"))
    for fmt in ("json", "html", "text"):
        out = root / f"report.{fmt}"
        started = time.perf_counter()
        done = subprocess.run([exe, "report", str(run), "--format", fmt, "--output", str(out)], capture_output=True)
        took = time.perf_counter() - started
        status = "ok" if done.returncode == 0 else f"FAILED: {done.stderr.decode().strip()}"
        print(f"promptopt report --format {fmt:<4}: {took:5.2f} s wall ({out.stat().st_size:,} bytes) {status}")
    from promptopt import reports

    records, compiles, _, _ = reports.load(str(run))
    started = time.perf_counter()
    reports.build(records, compiles)
    print(f"in-process build() alone (10,000 resamples): {time.perf_counter() - started:.2f} s")


if __name__ == "__main__":
    main()
