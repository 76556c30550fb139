"""How fast is the embedded model served, against llama.cpp's own numbers on the same model?

Four measurements, one after the other on the same machine, each printed as a table:

1. llama.cpp's own: `llama-batched-bench` (built by `make bench-tools`) on the GGUF promptopt
   serves, at 1, 2, 4 and 8 parallel sequences of --pp prompt and --tg generated tokens: the
   throughput the library reaches with no server at all.
2. llama-server, as promptopt starts it (promptopt.server.start, 8 slots): 1, 2, 4 and 8
   clients at once, each sending distinct prompts of the same shape (--pp tokens in, exactly
   --tg out, prompt cache off so nothing is reused), over HTTP: tokens per second beside (1).
3. promptopt end to end: `baseline` on the first --n MedQA test questions at --threads 1, 2, 4
   and 8 (the server started with as many slots), and the same through llama-cpp-python's
   server (what promptopt served the model with before; one request at a time) when
   llama-cpp-python is installed (`pip install "llama-cpp-python[server]==0.3.36"`).
4. Prompt-prefix caching: `predict` with three labeled demos (the same demos before every
   question) at 4 threads, the server's prompt cache on and off: wall time and the share of
   prompt tokens the server did not have to process again (its /metrics).

    make bench-tools && PYTHONPATH=. .venv/bin/python benchmarks/model_throughput.py [--n 40]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

LEVELS = (1, 2, 4, 8)


def post(url: str, body: dict) -> dict:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=600) as resp:
        return json.loads(resp.read())


def metric(base_url: str, name: str) -> float:
    with urllib.request.urlopen(base_url.removesuffix("/v1") + "/metrics", timeout=10) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith(f"llamacpp:{name} "):
                return float(line.split()[1])
    return float("nan")


def batched_bench(pp: int, tg: int) -> dict[int, float]:
    """llama-batched-bench's total tokens per second by parallel sequences."""
    from promptopt.server import gguf_path

    exe = Path(sys.executable).with_name("llama-batched-bench")
    if not exe.exists():
        print(f"(1) skipped: {exe} is missing; build it with `make bench-tools`")
        return {}
    cmd = [str(exe), "-m", str(gguf_path()), "-c", str(8 * (pp + tg) + 64), "-b", "512", "-ub", "512",
           "-t", "2", "-npp", str(pp), "-ntg", str(tg), "-npl", ",".join(map(str, LEVELS))]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    rates = {}
    for (
        line
    ) in out.splitlines():  # |    PP |     TG |    B |   N_KV |   T_PP s | S_PP t/s | T_TG s | S_TG t/s | T s | S t/s |
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 10 and cells[2].isdigit():
            rates[int(cells[2])] = (float(cells[5]), float(cells[7]), float(cells[9]))
    print(f"(1) llama-batched-bench, {pp} prompt + {tg} generated tokens per sequence, 2 threads")
    print(f"{'sequences':>9} {'prompt tok/s':>12} {'gen tok/s':>9} {'all tok/s':>9}")
    for b, (spp, stg, s) in rates.items():
        print(f"{b:9d} {spp:12.1f} {stg:9.1f} {s:9.1f}")
    return {b: r[2] for b, r in rates.items()}


def server_clients(pp: int, tg: int, own: dict[int, float]) -> None:
    from promptopt.server import start

    server = start(parallel=max(LEVELS))
    words = ["the", "patient", "presents", "with", "fever", "cough", "and", "fatigue", "after", "travel", "abroad"]
    try:
        url = server.base_url + "/chat/completions"
        post(url, {"messages": [{"role": "user", "content": "Warm up."}], "max_tokens": 4})
        print(
            f"\n(2) llama-server (promptopt.server.start, {max(LEVELS)} slots), clients at once, {pp}+{tg} tokens each"
        )
        print(
            f"{'clients':>7} {'requests':>8} {'tokens in/out':>13} {'seconds':>8} {'all tok/s':>9} {'of llama.cpp':>12}"
        )
        for clients in LEVELS:
            totals = []

            def client(i: int, clients=clients, totals=totals) -> None:
                for r in range(2):
                    text = " ".join(f"{words[(i * 7 + r * 3 + k) % len(words)]}{k % 97}" for k in range(pp // 3))
                    res = post(url, {"messages": [{"role": "user", "content": f"Case {clients}-{i}-{r}: {text}"}],
                                     "max_tokens": tg, "ignore_eos": True, "cache_prompt": False, "temperature": 0})  # fmt: skip
                    totals.append((res["usage"]["prompt_tokens"], res["usage"]["completion_tokens"]))

            started = time.perf_counter()
            threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            wall = time.perf_counter() - started
            rate = sum(p + c for p, c in totals) / wall
            ratio = f"{rate / own[clients]:12.2f}" if clients in own else f"{'':>12}"
            shape = f"{sum(p for p, _ in totals) / len(totals):.0f}/{sum(c for _, c in totals) / len(totals):.0f}"
            print(f"{clients:7d} {len(totals):8d} {shape:>13} {wall:8.1f} {rate:9.1f} {ratio}", flush=True)
    finally:
        server.stop()


def score(base_url: str, strategy: str, optimizer: str, n: int, threads: int, label: str) -> tuple[float, object]:
    """Wall time and records of one config on the first n MedQA test questions at this server."""
    import dataclasses

    from promptopt.config import Config
    from promptopt.models import build_lm, resolve_model, with_endpoint
    from promptopt.optimizers import get_optimizer
    from promptopt.registry import get_strategy
    from promptopt.scoring import evaluate
    from promptopt.session import adapter_for
    from promptopt.store import Store, default_url
    from promptopt.tasks import load_task

    task = load_task("medqa")
    model = with_endpoint(resolve_model("local/gemma-3-270m"), base_url)
    model = dataclasses.replace(model, digest=f"{model.digest}-{label}-{time.time_ns()}")  # no reuse between passes
    lm, adapter = build_lm(model), adapter_for(model)
    program = get_strategy(strategy).build(task)
    if optimizer == "labeled":  # the first three train examples as demos, as the `labeled` optimizer keeps them
        import dspy

        train = task.examples("train")[: get_optimizer("labeled").knobs["labeled"]]
        demos = [dspy.Example(**e.inputs, answer=e.gold).with_inputs(*e.inputs) for e in train]
        for predictor in program.predictors():
            predictor.demos = demos
    cfg = Config(strategy, optimizer, get_strategy(strategy).knobs, get_optimizer(optimizer).knobs)
    store = Store(default_url(Path(tempfile.mkdtemp(prefix="throughput-"))))
    lm("Warm up.", max_tokens=4)
    started = time.perf_counter()
    evaluate(program, task.examples("test", n), task=task, model=model, lm=lm, adapter=adapter, config=cfg,
             split="test", run_id=label, store=store, threads=threads)  # fmt: skip
    return time.perf_counter() - started, store.records(label)


def end_to_end(n: int) -> None:
    from promptopt.server import start

    print(f"\n(3) promptopt baseline, first {n} MedQA test questions")
    print(
        f"{'server':<22} {'threads':>7} {'seconds':>8} {'s/question':>10} {'all tok/s':>9} {'accuracy %':>10} {'parsed %':>8}"
    )
    rows = []
    legacy = legacy_server()
    if legacy:
        rows.append(("llama-cpp-python", 1, legacy))
    rows += [("llama-server", threads, None) for threads in LEVELS]
    first = None
    for name, threads, url in rows:
        server = None if url else start(parallel=threads)
        try:
            wall, recs = score(url or server.base_url, "baseline", "none", n, threads, f"{name}-{threads}")
        finally:
            (server or legacy_stop).stop()
        tokens = int(recs.prompt_tokens.sum() + recs.completion_tokens.sum())
        first = first or wall
        print(
            f"{name:<22} {threads:7d} {wall:8.1f} {wall / len(recs):10.2f} {tokens / wall:9.1f} "
            f"{100 * recs.score.mean():10.1f} {100 * recs.parse_ok.mean():8.1f}   ({first / wall:.2f}x the first row)",
            flush=True,
        )


class _Legacy:
    proc: subprocess.Popen | None = None

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)


legacy_stop = _Legacy()


def legacy_server() -> str | None:
    """llama-cpp-python's server with promptopt's former settings, if that package is installed."""
    try:
        import llama_cpp.server  # noqa: F401
    except ImportError:
        print("(llama-cpp-python is not installed: no 'before' row)")
        return None
    from promptopt.server import DEFAULT_CTX, answers, free_port, gguf_path

    port = free_port()
    cmd = [sys.executable, str(Path(__file__).with_name("legacy_llama_cpp_server.py")), "--model", str(gguf_path()),
           "--model_alias", "gemma-3-270m", "--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(DEFAULT_CTX),
           "--n_threads", "2", "--n_threads_batch", "2", "--n_batch", "512", "--logits_all", "False",
           "--verbose", "False", "--chat_format", "promptopt-plain"]  # fmt: skip
    legacy_stop.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and not answers(url, timeout=1.0):
        time.sleep(0.3)
    return url


def prefix_cache(n: int) -> None:
    from promptopt.server import start

    print(f"\n(4) predict with 3 labeled demos, first {n} MedQA test questions, 4 threads")
    print(f"{'prompt cache':<12} {'seconds':>8} {'prompt tok':>10} {'processed':>9} {'reused %':>8} {'accuracy %':>10}")
    for cache in (True, False):
        server = start(parallel=4, prompt_cache=cache)
        try:
            before = metric(server.base_url, "prompt_tokens_total")
            wall, recs = score(server.base_url, "predict", "labeled", n, 4, f"cache-{cache}")
            processed = metric(server.base_url, "prompt_tokens_total") - before
        finally:
            server.stop()
        total = int(recs.prompt_tokens.sum())
        print(
            f"{'on' if cache else 'off':<12} {wall:8.1f} {total:10d} {processed:9.0f} {100 * (1 - processed / total):8.1f} "
            f"{100 * recs.score.mean():10.1f}",
            flush=True,
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=40, help="MedQA questions for (3) and (4)")
    ap.add_argument("--pp", type=int, default=256, help="prompt tokens per sequence in (1) and (2)")
    ap.add_argument("--tg", type=int, default=64, help="generated tokens per sequence in (1) and (2)")
    ap.add_argument("--only", choices=["1", "2", "3", "4"], nargs="+", help="run only these measurements")
    args = ap.parse_args()
    only = set(args.only or "1234")
    print(
        f"{time.strftime('%Y-%m-%d %H:%M')}, {subprocess.run(['nproc'], capture_output=True, text=True).stdout.strip()} cores"
    )
    own = batched_bench(args.pp, args.tg) if "1" in only else {}
    if "2" in only:
        server_clients(args.pp, args.tg, own)
    if "3" in only:
        end_to_end(args.n)
    if "4" in only:
        prefix_cache(args.n)


if __name__ == "__main__":
    sys.exit(main())
