"""Does promptopt keep the embedded model as busy as llama.cpp's own Python API does?

The first N MedQA test questions go through promptopt's `baseline` and `cot` on the embedded
Gemma 3 270M server (promptopt.server.start: llama-cpp-python's server, 2 threads). Every
request promptopt sent is kept (the LM's history), and the very same prompts, with the same
max_tokens, stop and temperature, then go through `llama_cpp.Llama(...).create_completion` in
this process, with no server, HTTP, LiteLLM or DSPy in between. For each path: prompt and
generated tokens, wall time, and tokens per second of wall time (prompt and generated tokens
are counted over the whole wall time of their path, so the two rates share one clock); the
raw path also splits prompt time from generation time (streamed: time to the first token).

    PYTHONPATH=. .venv/bin/python benchmarks/model_throughput.py [--n 50] [--threads 2]

With --sweep, it instead runs promptopt's `baseline` on the first --n questions once per server
setting (threads, n_batch, n_ctx, logits_all) and prints each setting's tokens per second, to see which of
the server's options help on this machine. (llama-cpp-python's server has no parallel slots: it
serves one request at a time, so there is no slot count to try.)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path


def warm_lm(base_url: str):
    """The embedded model at this server, as promptopt calls it, warmed up; its identity is new
    each time, so no answer is reused from an earlier pass."""
    import dataclasses

    from promptopt.models import build_lm, resolve_model, with_endpoint
    from promptopt.run import adapter_for

    model = with_endpoint(resolve_model("local/gemma-3-270m"), base_url)
    model = dataclasses.replace(model, digest=f"{model.digest}-bench-{time.time_ns()}")
    lm = build_lm(model)
    lm("Warm up.", max_tokens=4)
    return model, lm, adapter_for(model)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=50)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sweep", action="store_true", help="compare server settings on baseline instead")
    args = ap.parse_args()
    if args.sweep:
        sweep(args.n)
        return

    from promptopt.evaluate import evaluate
    from promptopt.registry import get_strategy, parse_config
    from promptopt.server import DEFAULT_CTX, gguf_path, start
    from promptopt.store import Store, default_url
    from promptopt.tasks import load_task

    task = load_task("medqa")
    examples = task.examples("test", args.n)
    tmp = Path(tempfile.mkdtemp(prefix="throughput-"))
    store = Store(default_url(tmp))
    sent: dict[str, list[dict]] = {}
    measured: dict[str, tuple[float, int, int, int]] = {}
    server = start(threads=args.threads, log=tmp / "server.log")
    try:
        model, lm, adapter = warm_lm(server.base_url)
        defaults = dict(lm.kwargs)  # what every call sends unless it says otherwise
        for name in ("baseline", "cot"):
            lm.history.clear()
            cfg = parse_config(name)
            program = get_strategy(name).build(task, **cfg.knobs)
            started = time.perf_counter()
            evaluate(program, examples, task=task, model=model, lm=lm, adapter=adapter, config=cfg, split="test",
                     run_id="throughput", store=store)  # fmt: skip
            wall = time.perf_counter() - started
            recs = store.records("throughput")
            recs = recs[recs.strategy == name]
            sent[name] = list(lm.history)
            assert len(sent[name]) == int(recs.lm_calls.sum()), "history was capped; lower --n"
            measured[f"promptopt {name}"] = (
                wall, int(recs.prompt_tokens.sum()), int(recs.completion_tokens.sum()), int(recs.lm_calls.sum())
            )  # fmt: skip
    finally:
        server.stop()

    from llama_cpp import Llama

    llm = Llama(model_path=str(gguf_path()), n_ctx=DEFAULT_CTX, n_threads=args.threads,
                n_threads_batch=args.threads, n_batch=512, verbose=False)  # fmt: skip
    llm.create_completion("Warm up.", max_tokens=4)
    split: dict[str, tuple[float, float]] = {}
    for name, entries in sent.items():
        wall = first = 0.0
        prompt_tokens = completion_tokens = 0
        for entry in entries:
            messages = entry.get("messages") or [{"content": entry.get("prompt") or ""}]
            prompt = "\n\n".join(m.get("content") or "" for m in messages if m.get("content"))
            kw = defaults | (entry.get("kwargs") or {})
            started = time.perf_counter()
            stream = llm.create_completion(
                prompt, max_tokens=kw.get("max_tokens", 16), stop=kw.get("stop") or None,
                temperature=kw.get("temperature", 0.0), stream=True,
            )  # fmt: skip
            got_first = None
            text = ""
            for chunk in stream:
                if got_first is None:
                    got_first = time.perf_counter()
                text += chunk["choices"][0]["text"]
            done = time.perf_counter()
            wall += done - started
            first += (got_first or done) - started
            prompt_tokens += len(llm.tokenize(prompt.encode()))
            completion_tokens += len(llm.tokenize(text.encode(), add_bos=False)) if text else 0
        measured[f"llama_cpp {name}"] = (wall, prompt_tokens, completion_tokens, len(entries))
        split[name] = (prompt_tokens / max(first, 1e-9), completion_tokens / max(wall - first, 1e-9))

    print(f"model throughput: embedded Gemma 3 270M, first {args.n} MedQA test questions, {args.threads} threads")
    print(f"{'path':<20} {'calls':>5} {'seconds':>8} {'prompt tok':>10} {'gen tok':>8} "
          f"{'prompt tok/s':>12} {'gen tok/s':>9} {'all tok/s':>9}")  # fmt: skip
    for label, (wall, pt, ct, calls) in measured.items():
        print(
            f"{label:<20} {calls:5d} {wall:8.1f} {pt:10d} {ct:8d} {pt / wall:12.1f} {ct / wall:9.1f} {(pt + ct) / wall:9.1f}"
        )
    for name, (p_rate, g_rate) in split.items():
        print(f"llama_cpp {name}: prompt processing alone {p_rate:.0f} tok/s, generation alone {g_rate:.1f} tok/s")
    for name in sent:
        wall_p, pt_p, ct_p, _ = measured[f"promptopt {name}"]
        wall_r, pt_r, ct_r, _ = measured[f"llama_cpp {name}"]
        # The two paths may generate different numbers of tokens (the server's sampling defaults
        # differ slightly); at llama.cpp's own prompt and generation rates, promptopt's tokens take:
        same_work = pt_p / split[name][0] + ct_p / split[name][1]
        print(
            f"{name}: llama.cpp would take {same_work:.1f} s for promptopt's tokens; promptopt took {wall_p:.1f} s: "
            f"ratio {same_work / wall_p:.2f} (target >= 0.9)"
        )
        ratio = ((pt_p + ct_p) / wall_p) / ((pt_r + ct_r) / wall_r)
        print(
            f"{name}: promptopt/raw tokens per second {ratio:.2f} (prompt {pt_p / wall_p / (pt_r / wall_r):.2f}, "
            f"generated {ct_p / wall_p / max(ct_r / wall_r, 1e-9):.2f}); target >= 0.9: "
            f"{'met' if ratio >= 0.9 else 'NOT met'}"
        )


SETTINGS = [  # (threads, n_batch, n_ctx, logits_all); the first is promptopt's default on this machine
    (2, 512, 4096, False),
    (2, 512, 4096, True),  # llama-cpp-python's server default: logits for every prompt token
    (1, 512, 4096, False),
    (2, 128, 4096, False),
    (2, 2048, 4096, False),
    (2, 512, 2048, False),
]


def sweep(n: int) -> None:
    from promptopt.evaluate import evaluate
    from promptopt.registry import get_strategy, parse_config
    from promptopt.server import start
    from promptopt.store import Store, default_url
    from promptopt.tasks import load_task

    task = load_task("medqa")
    examples = task.examples("test", n)
    cfg = parse_config("baseline")
    program = get_strategy("baseline").build(task, **cfg.knobs)
    print(f"server settings, promptopt baseline on the first {n} MedQA test questions")
    print(
        f"{'threads':>7} {'n_batch':>7} {'n_ctx':>6} {'logits_all':>10} {'seconds':>8} {'prompt tok/s':>12} {'gen tok/s':>9} {'all tok/s':>9}"
    )
    for threads, n_batch, n_ctx, logits_all in SETTINGS:
        tmp = Path(tempfile.mkdtemp(prefix="throughput-sweep-"))
        store = Store(default_url(tmp))
        server = start(threads=threads, n_batch=n_batch, n_ctx=n_ctx, logits_all=logits_all, log=tmp / "server.log")
        try:
            model, lm, adapter = warm_lm(server.base_url)
            started = time.perf_counter()
            evaluate(program, examples, task=task, model=model, lm=lm, adapter=adapter, config=cfg, split="test",
                     run_id="sweep", store=store)  # fmt: skip
            wall = time.perf_counter() - started
        finally:
            server.stop()
        recs = store.records("sweep")
        pt, ct = int(recs.prompt_tokens.sum()), int(recs.completion_tokens.sum())
        print(
            f"{threads:7d} {n_batch:7d} {n_ctx:6d} {str(logits_all):>10} {wall:8.1f} {pt / wall:12.1f} {ct / wall:9.1f} {(pt + ct) / wall:9.1f}",
            flush=True,
        )


if __name__ == "__main__":
    sys.exit(main())
