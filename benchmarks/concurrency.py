"""Calls in flight against a latency-bound endpoint: how close do `run` and `search` get to the limit?

A scripted OpenAI-compatible server on 127.0.0.1 answers every call after a fixed latency (0.5 s
by default), so with k calls in flight the best possible throughput is k / latency calls per
second. For each k the script measures, on the same server, one after the other:

- `promptopt run` (the library's `run`, baseline strategy on MedQA test, `threads=k`);
- `promptopt search` (two configs, every config scored on all of val: `rung0` = the val size,
  `threads=k`), which scores through the same `evaluate` with its Optuna bookkeeping around it;
- a bare LiteLLM asyncio loop (`litellm.acompletion`, k at a time under a semaphore): what the
  client library alone reaches;
- a raw HTTP asyncio loop (httpx, the same request body): what the server and loopback carry with
  no LM library at all — the scripted server runs on the same 2 cores, so it is part of the load.

Each figure is calls counted at the server divided by the wall time of the scoring (the run's
own start-up — task loading, the hygiene check — is timed apart and not counted).

    PYTHONPATH=. .venv/bin/python benchmarks/concurrency.py [--latency 0.5] [--in-flight 1 8 32 64 128]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--latency", type=float, default=0.5)
    ap.add_argument("--in-flight", type=int, nargs="+", default=[1, 8, 32, 64, 128])
    ap.add_argument("--rounds", type=int, default=4, help="calls per measurement = rounds × in-flight (≥ 24)")
    args = ap.parse_args()

    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    from promptopt.testing import ScriptedServer, fill_fields

    def reply(prompt: str) -> str:
        time.sleep(args.latency)
        return fill_fields(prompt, "A") if "[[ ## " in prompt else " A"

    print(f"latency per call: {args.latency} s; figures are calls per second counted at the server")
    print(
        f"{'in flight':>9}  {'limit':>7}  {'raw HTTP':>14}  {'bare LiteLLM':>14}  {'promptopt run':>15}  "
        f"{'promptopt search':>17}"
    )
    with ScriptedServer(reply) as server, tempfile.TemporaryDirectory() as tmp:
        for k in args.in_flight:
            calls = max(24, args.rounds * k)
            limit = k / args.latency
            raw = _raw(server, k, calls)
            bare = _bare(server, k, calls)
            run_rate = _run(server, Path(tmp) / f"run-{k}", k, calls)
            search_rate = _search(server, Path(tmp) / f"search-{k}", k, calls)
            print(
                f"{k:>9}  {limit:>7.1f}  {_fmt(raw, limit):>14}  {_fmt(bare, limit):>14}  {_fmt(run_rate, limit):>15}  "
                f"{_fmt(search_rate, limit):>17}",
                flush=True,
            )


def _fmt(rate: float, limit: float) -> str:
    return f"{rate:.1f} ({rate / limit:.2f})"


def _counted(server, work) -> float:
    """Calls per second the server answered while `work()` ran (its own start-up excluded:
    `work` returns the moment scoring began, or None for the whole call)."""
    before, started = server.calls, time.perf_counter()
    began = work()
    ended = time.perf_counter()
    return (server.calls - before) / (ended - (began or started))


def _raw(server, k: int, calls: int) -> float:
    """httpx's asyncio client posting the same chat request: what the server and the loopback
    carry at all, with no LM library in between (the scripted server shares the 2 cores)."""
    import httpx

    body = {"model": "scripted", "messages": [{"role": "user", "content": "Question?\nAnswer:"}], "max_tokens": 4}

    async def all_calls():
        sem = asyncio.Semaphore(k)
        async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=k)) as client:

            async def one():
                async with sem:
                    url, headers = f"{server.base_url}/chat/completions", {"Connection": "close"}
                    (await client.post(url, json=body, headers=headers)).raise_for_status()

            await asyncio.gather(*(one() for _ in range(calls)))

    return _counted(server, lambda: asyncio.run(all_calls()))


def _bare(server, k: int, calls: int) -> float:
    import litellm

    async def one(sem):
        async with sem:
            await litellm.acompletion(
                model="openai/scripted", api_base=server.base_url, api_key="none",
                messages=[{"role": "user", "content": "Question?\nAnswer:"}], max_tokens=4, temperature=0.0,
            )  # fmt: skip

    async def all_calls():
        sem = asyncio.Semaphore(k)
        await asyncio.gather(*(one(sem) for _ in range(calls)))

    return _counted(server, lambda: asyncio.run(all_calls()))


def _plan(server, out: Path, k: int, calls: int, **extra):
    from promptopt.runplan import RunPlan

    return RunPlan(
        models=["openai/scripted"], tasks=["medqa"], api_base=server.base_url, out=out, threads=k,
        max_error_rate=None, **extra,
    )  # fmt: skip


def _first_call_time(server) -> float:
    """When the server saw its next call (polled), for timing scoring without start-up."""
    start = server.calls
    while server.calls == start:
        time.sleep(0.001)
    return time.perf_counter()


def _timed(server, job) -> float:
    """Calls per second from the first call the job makes to its end."""
    import threading

    first: list[float] = []
    watcher = threading.Thread(target=lambda: first.append(_first_call_time(server)), daemon=True)
    before = server.calls
    watcher.start()
    job()
    ended = time.perf_counter()
    watcher.join(timeout=1)
    return (server.calls - before) / (ended - first[0] + 1e-9)


def _run(server, out: Path, k: int, calls: int) -> float:
    from promptopt.engine import run

    plan = _plan(server, out, k, calls, strategies=["baseline"], limit=calls, splits=("test",))
    return _timed(server, lambda: run(plan))


def _search(server, out: Path, k: int, calls: int) -> float:
    from promptopt.searcher import SearchSettings, search

    per = max(12, calls // 2)  # two configs on val, then the choice and the baseline on test
    plan = _plan(server, out, k, calls, strategies=["predict", "cot"], optimizers=["none"], limit=per, mode="search")
    return _timed(server, lambda: search(plan, SearchSettings(rung0=per)))


if __name__ == "__main__":
    sys.exit(main())
