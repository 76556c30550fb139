"""Compiles killed with SIGKILL and resumed: how many LM calls does the resume make again?

For each optimizer (MIPROv2 light and GEPA by default) a scripted server on 127.0.0.1 that is
right on a seeded 60% of MedQA questions (the same prompt always gets the same reply) first
serves one uninterrupted `promptopt run` (cot, the optimizer, val only): the calls the server
counts that are not about a val question are the compile's N. Then, for each kill point f, a fresh run is killed with
SIGKILL when the server has answered f·N calls, and the same command is run again. The extra
calls are (calls before the kill + calls after) − N; the target is ≤ 1% of N plus the calls in
flight (one per thread). The resumed run's compiled program must equal the uninterrupted one.

    PYTHONPATH=. .venv/bin/python benchmarks/compile_resume.py [--optimizers mipro gepa] [--at 0.25 0.5 0.9]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

EXE = str(Path(sys.executable).with_name("promptopt"))
OPTIMIZERS = {"mipro": "mipro:val=20", "gepa": "gepa:metric_calls=120,val=20,minibatch=3"}


def command(server, out: Path, optimizer: str, threads: int) -> list[str]:
    return [EXE, "run", "--model", "openai/scripted", "--api-base", server.base_url, "--out", str(out),
            "--strategy", "cot", "--optimizer", optimizer, "--split", "val", "--limit", "10",
            "--threads", str(threads)]  # fmt: skip


def program_of(out: Path, optimizer: str) -> dict:
    (path,) = out.glob(f"run-*/programs/*-{optimizer}-*/program.json")
    return json.loads(path.read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--optimizers", nargs="+", default=list(OPTIMIZERS), choices=list(OPTIMIZERS))
    ap.add_argument("--at", type=float, nargs="+", default=[0.25, 0.5, 0.9])
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

    print(f"threads {args.threads} (calls in flight at a kill: at most {args.threads})")
    print(f"{'optimizer':<10} {'N calls':>8} {'kill at':>8} {'before':>7} {'after':>7} {'extra':>6} "
          f"{'extra %':>8} {'same program':>13} {'resume s':>9}")  # fmt: skip
    from promptopt.tasks import load_task
    from promptopt.testing import CompileOracle, ScriptedServer

    oracle = CompileOracle(load_task("medqa"))
    with ScriptedServer(oracle) as server, tempfile.TemporaryDirectory() as tmp:
        for name in args.optimizers:
            spec = OPTIMIZERS[name]
            oracle.compile_calls, oracle.on_compile_call = 0, None
            done = subprocess.run(
                command(server, Path(tmp) / f"{name}-whole", spec, args.threads), capture_output=True, text=True
            )
            if done.returncode:
                sys.exit(done.stderr)
            n, reference = oracle.compile_calls, program_of(Path(tmp) / f"{name}-whole", name)
            for at in args.at:
                out = Path(tmp) / f"{name}-{at}"
                oracle.compile_calls = 0
                proc = subprocess.Popen(command(server, out, spec, args.threads), stderr=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL)  # fmt: skip
                stop_at = max(1, int(at * n))
                oracle.on_compile_call = lambda seen, stop_at=stop_at, proc=proc: (
                    seen == stop_at and os.kill(proc.pid, signal.SIGKILL)
                )
                proc.wait(timeout=1800)
                oracle.on_compile_call, before = None, oracle.compile_calls
                started = time.monotonic()
                again = subprocess.run(command(server, out, spec, args.threads), capture_output=True, text=True)
                if again.returncode:
                    sys.exit(again.stderr)
                seconds = time.monotonic() - started
                after = oracle.compile_calls - before
                extra = before + after - n
                same = program_of(out, name) == reference
                print(f"{name:<10} {n:>8} {at:>8.0%} {before:>7} {after:>7} {extra:>6} {100 * extra / n:>7.2f}% "
                      f"{'yes' if same else 'NO':>13} {seconds:>9.1f}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
