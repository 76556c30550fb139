"""--batch against the synchronous path on a scripted OpenAI-compatible server (files + batches).

The same plan (MedQA, a priced model name, baseline + cot + self_consistency:n=3, test split)
runs synchronously, then through batches on a fresh server, then through batches again with the
process killed while its first batch runs and the command repeated. Printed: whether the
records are identical (answers, scores, tokens, requests as sent), the calls each server
answered synchronously and in batches, the dollars at the synchronous and batch prices of
LiteLLM's table, the batches, and the calls the killed run's resumption asked again.

    PYTHONPATH=. .venv/bin/python benchmarks/batch_vs_sync.py [--limit 40]
"""

from __future__ import annotations

import argparse
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from promptopt.tasks import load_task
from promptopt.testing import ScriptedServer, structured_answer

MODEL = "openai/gpt-4o-mini"
SAME = ["config_id", "example_id", "prediction", "score", "parse_ok", "error", "raw_output", "lm_calls",
        "prompt_tokens", "completion_tokens", "sent"]  # fmt: skip
ENV = {**os.environ, "OPENAI_API_KEY": "sk-test", "PROMPTOPT_BATCH_POLL_S": "0.05"}


def server_for(task, limit: int) -> ScriptedServer:
    examples = {ex.inputs["question"]: ex for ex in task.examples("test", limit)}

    def reply(prompt: str) -> str:
        ex = next(ex for q, ex in examples.items() if q in prompt)
        letters = list(ex.inputs["options"])
        right = hash(ex.id) % 3 != 0  # right on about two thirds, the same on every server
        return structured_answer(ex.gold if right else letters[(letters.index(ex.gold) + 1) % len(letters)])

    return ScriptedServer(reply)


def command(server: ScriptedServer, out: Path, limit: int, batch: bool) -> list[str]:
    exe = Path(sys.executable).with_name("promptopt")
    return [str(exe), "run", "--model", MODEL, "--api-base", server.base_url, "--out", str(out), "--limit", str(limit),
            "--split", "test", "--strategy", "baseline", "--strategy", "cot", "--strategy", "self_consistency:n=3",
            *(["--batch"] if batch else [])]  # fmt: skip


def records(out: Path) -> pd.DataFrame:
    (db,) = out.glob("*/results.sqlite")
    with sqlite3.connect(db) as conn:
        return pd.read_sql("select * from records order by config_id, example_id", conn)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--limit", type=int, default=40)
    args = parser.parse_args()
    task = load_task("medqa")
    tmp = Path(tempfile.mkdtemp())
    seen = {}
    for mode in ("sync", "batch"):
        with server_for(task, args.limit) as server:
            started = time.monotonic()
            subprocess.run(command(server, tmp / mode, args.limit, mode == "batch"), env=ENV, check=True,
                           capture_output=True)  # fmt: skip
            seen[mode] = (records(tmp / mode), server.calls, server.batched, len(server.batches),
                          time.monotonic() - started)  # fmt: skip
    with server_for(task, args.limit) as server:
        server.batch_polls = 10**9
        first = subprocess.Popen(command(server, tmp / "killed", args.limit, True), env=ENV,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        while not server.batches:
            time.sleep(0.2)
        time.sleep(1.0)
        first.send_signal(signal.SIGKILL)
        first.wait()
        server.batch_polls = 1
        subprocess.run(command(server, tmp / "killed", args.limit, True), env=ENV, check=True, capture_output=True)
        asked = server.calls + server.batched
        killed = records(tmp / "killed")
    sync, batch = seen["sync"][0], seen["batch"][0]
    same = batch[SAME].reset_index(drop=True).equals(sync[SAME].reset_index(drop=True))
    print(f"{len(sync)} records per run ({args.limit} MedQA test items x 3 configs), model name {MODEL}")
    print(f"records identical, batch vs sync: {same}; killed-and-resumed vs sync: "
          f"{killed[SAME].reset_index(drop=True).equals(sync[SAME].reset_index(drop=True))}")  # fmt: skip
    for mode, (recs, calls, batched, batches, wall) in seen.items():
        print(f"{mode:>5}: {calls} synchronous calls, {batched} in {batches} batches, ${recs.cost_usd.sum():.5f}, "
              f"{wall:.1f} s")  # fmt: skip
    print(f"batch dollars / sync dollars: {batch.cost_usd.sum() / sync.cost_usd.sum():.3f}")
    print(f"killed while its first batch ran, then resumed: {asked} calls asked in all for {seen['sync'][1]} "
          f"requests ({asked - seen['sync'][1]} asked again)")  # fmt: skip


if __name__ == "__main__":
    main()
