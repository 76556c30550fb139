"""How much does promptopt's engine cost per example, against a bare `dspy.Evaluate` loop?

A scripted OpenAI-compatible server answers every request at once with a well-formed reply in
DSPy's field format (the right letter). The same `predict` program, the same LM object and the
same adapter then score N MedQA examples (every split's questions, cycled with distinct ids)
twice, one thread each:
  bare       — `dspy.Evaluate` over the examples, nothing stored;
  promptopt  — `promptopt.scoring.evaluate`, one record committed to SQLite per example
               (batch_size=1, the durable default) and, as an option, in batches of 50.
Then the repeat cost: a small `run` (predict and its baseline reference, val and test) done
twice and reported; the second run and the report must make no LM call.

    PYTHONPATH=. .venv/bin/python benchmarks/engine_overhead.py [--n 2000] [--profile]
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from pathlib import Path


def instant_medqa(n: int):
    """MedQA's task, n of its questions (every split, cycled with distinct ids) and a scripted
    reply that answers each right at once in DSPy's field format."""
    from promptopt.tasks import Example, load_task
    from promptopt.testing import fill_fields

    task = load_task("medqa")
    pool = [e for s in ("train", "val", "test") for e in task.examples(s)]
    examples = [
        Example(f"{e.id}#{k // len(pool)}", e.inputs, e.gold) for k, e in ((k, pool[k % len(pool)]) for k in range(n))
    ]
    gold = {e.inputs["question"].strip(): e.gold for e in pool}
    question_field = re.compile(r"\[\[ ## question ## \]\]\n(.*?)\n\n\[\[ ## ", re.S)

    def reply(prompt: str) -> str:
        found = question_field.findall(prompt)
        return fill_fields(prompt, gold.get(found[-1].strip(), "A") if found else "A")

    return task, examples, reply


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--profile", action="store_true", help="cProfile the promptopt pass; print the top 25")
    args = ap.parse_args()

    import dspy

    from promptopt.config import parse_config
    from promptopt.models import build_lm, resolve_model
    from promptopt.registry import get_strategy
    from promptopt.scoring import evaluate
    from promptopt.session import adapter_for
    from promptopt.store import Store, default_url
    from promptopt.testing import ScriptedServer

    task, examples, reply = instant_medqa(args.n)

    with tempfile.TemporaryDirectory() as tmp, ScriptedServer(reply) as server:
        for sub in ("warm", "b1", "b50"):
            (Path(tmp) / sub).mkdir()
        model = resolve_model("openai/scripted", server.base_url)
        lm, adapter = build_lm(model), adapter_for(model)
        cfg = parse_config("predict")
        program = get_strategy("predict").build(task)

        # warm-up: imports, LiteLLM's first-call setup, the HTTP connection
        evaluate(program, examples[:20], task=task, model=model, lm=lm, adapter=adapter, config=cfg, split="test",
                 run_id="warmup", store=Store(default_url(Path(tmp) / "warm")))  # fmt: skip

        devset = [dspy.Example(**e.inputs, gold=e.gold).with_inputs(*e.inputs) for e in examples]

        def metric(example, pred, trace=None) -> float:
            return task.answer_type.score(pred.answer, example.gold)

        print(f"engine overhead: predict on {args.n} MedQA examples, instant scripted server, 1 thread")
        results = {}

        def bare_pass() -> tuple[float, int, float]:
            calls0 = server.calls
            started = time.perf_counter()
            with dspy.context(lm=lm, adapter=adapter):
                bare = dspy.Evaluate(devset=devset, metric=metric, num_threads=1, display_progress=False)(program)
            return time.perf_counter() - started, server.calls - calls0, bare.score

        results["bare dspy.Evaluate (1st)"] = bare_pass()
        for label, batch in (("promptopt (batch_size=1)", 1), ("promptopt (batch_size=50)", 50)):
            store = Store(default_url(Path(tmp) / f"b{batch}"))
            calls0 = server.calls
            profiler = None
            if args.profile and batch == 1:
                import cProfile

                profiler = cProfile.Profile()
                profiler.enable()
            started = time.perf_counter()
            evaluate(program, examples, task=task, model=model, lm=lm, adapter=adapter, config=cfg, split="test",
                     run_id="overhead", store=store, batch_size=batch)  # fmt: skip
            took = time.perf_counter() - started
            if profiler:
                profiler.disable()
            recs = store.records("overhead")
            assert len(recs) == args.n, len(recs)
            results[label] = (took, server.calls - calls0, 100 * recs.score.mean())
            if profiler:
                import pstats

                pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)
        results["bare dspy.Evaluate (2nd)"] = bare_pass()  # before and after: drift in load shows up

        base = (results["bare dspy.Evaluate (1st)"][0] + results["bare dspy.Evaluate (2nd)"][0]) / 2
        print(f"{'loop':<27} {'seconds':>8} {'examples/s':>10} {'LM calls':>9} {'accuracy %':>10} {'vs bare':>10}")
        for label, (took, calls, score) in results.items():
            print(f"{label:<27} {took:8.2f} {args.n / took:10.1f} {calls:9d} {score:10.1f} {took / base:10.3f}")
        ratio = results["promptopt (batch_size=1)"][0] / base
        print(
            f"promptopt (batch_size=1) / bare (mean of both passes) wall-time ratio: {ratio:.3f} (target <= 1.2: {'met' if ratio <= 1.2 else 'NOT met'})"
        )

        repeat_cost(server, Path(tmp) / "repeat")


def repeat_cost(server, out: Path) -> None:
    """A second identical run and a report make zero LM calls."""
    from promptopt import reports
    from promptopt.engine import run
    from promptopt.runplan import RunPlan

    plan = dict(models=["openai/scripted"], tasks=["medqa"], strategies=["predict"], api_base=server.base_url,
                limit=50, out=out)  # fmt: skip
    counts = []
    for _ in range(2):
        before = server.calls
        result = run(RunPlan(**plan))
        counts.append(server.calls - before)
    before = server.calls
    records, compiles, _, _ = reports.load(str(result.run_dir))
    reports.build(records, compiles)
    counts.append(server.calls - before)
    print(
        f"repeat cost (predict + baseline reference, 50 val + 50 test): first run {counts[0]} LM calls, "
        f"identical second run {counts[1]}, report {counts[2]} (target 0 and 0: "
        f"{'met' if counts[1] == counts[2] == 0 else 'NOT met'})"
    )


if __name__ == "__main__":
    sys.exit(main())
