"""How close does `promptopt search` get to the best config, for how many LM calls?

A scripted OpenAI-compatible server plays a model whose configs have known true accuracies:
a `probe` strategy (written to a temporary programs folder) with a `level` knob asks the model
with its level in the prompt, and the model answers right with that level's probability, drawn
independently per question. Each config also has a cost: `calls` LM calls per question. The
search runs on MedQA's val split exactly as `promptopt search` does and the script prints the
config it chose and that config's true accuracy, the best true accuracy, the LM calls the search
spent on val, and the calls of scoring every config on all of val.

    .venv/bin/python benchmarks/search_efficiency.py [--configs 16] [--seed 0]
"""

from __future__ import annotations

import argparse
import hashlib
import random
import re
import sys
import tempfile
import time
from pathlib import Path

PROBE = '''
import dspy

from promptopt.registry import ANY, strategy


@strategy("probe", answer_types={ANY}, calls=lambda knobs, n_options: knobs["calls"], knobs={"level": 0, "calls": 1})
class Probe(dspy.Module):
    """Benchmark probe: the model's accuracy is set by `level`; `calls` LM calls per question."""

    compilable = False

    def __init__(self, task, level=0, calls=1):
        super().__init__()
        self.task, self.level, self.calls = task, level, calls

    def forward(self, question, options, **rest):
        from promptopt.answers import format_options

        raw = ""
        for i in range(self.calls):
            prompt = f"[probe level={self.level} call={i}]\\n{question}\\n{format_options(options)}\\nAnswer:"
            raw = dspy.settings.lm(prompt, max_tokens=4, stop=["\\n"])[0]
        return dspy.Prediction(answer=self.task.answer_type.parse(raw, {"options": options}), raw=raw)
'''


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rung0", type=int, default=20)
    ap.add_argument("--epsilon", type=float, default=1.0, help="indifference zone, points")
    ap.add_argument("--delta", type=float, default=0.05)
    args = ap.parse_args()

    from promptopt.runplan import RunPlan
    from promptopt.searcher import SearchSettings, search
    from promptopt.selection import Rule
    from promptopt.store import Store
    from promptopt.tasks import load_task
    from promptopt.testing import ScriptedServer

    rng = random.Random(args.seed)
    # true accuracies: a spread of weak and middling configs and a few close to the best
    truth = {i: round(rng.uniform(0.30, 0.70), 3) for i in range(args.configs)}
    truth[args.configs - 1], truth[args.configs - 2] = 0.78, 0.76
    calls = {i: 1 + i % 3 for i in range(args.configs)}

    task = load_task("medqa")
    by_question = {e.inputs["question"]: e for s in ("val", "test") for e in task.examples(s)}

    def right(level: int, question: str) -> bool:
        draw = random.Random(hashlib.sha1(f"{level}|{question}".encode()).hexdigest()).random()
        return draw < truth[level]

    def reply(prompt: str) -> str:
        question = next((q for q in by_question if q in prompt), None)
        ex = by_question[question] if question else None
        level = re.search(r"\[probe level=(\d+)", prompt)
        if ex is None or level is None:
            return " A"
        letters = list(ex.inputs["options"])
        wrong = letters[(letters.index(ex.gold) + 1) % len(letters)]
        return f" {ex.gold if right(int(level.group(1)), question) else wrong}"

    with tempfile.TemporaryDirectory() as tmp, ScriptedServer(reply) as server:
        programs = Path(tmp) / "programs"
        programs.mkdir()
        (programs / "probe.py").write_text(PROBE)
        strategies = [f"probe:level={i},calls={calls[i]}" for i in range(args.configs)]
        plan = RunPlan(
            models=["openai/scripted"], tasks=["medqa"], strategies=strategies, optimizers=["none"],
            api_base=server.base_url, limit=None, out=Path(tmp) / "results", programs_dirs=[programs],
            mode="search",
        )  # fmt: skip
        started = time.perf_counter()
        result = search(plan, SearchSettings(rung0=args.rung0, seed=args.seed, rule=Rule(args.epsilon / 100, args.delta)))
        seconds = time.perf_counter() - started
        recs = Store(result.storage).records(result.run_id)

    n_val = len(task.examples("val"))
    val = recs[recs.split == "val"]
    chosen = recs[(recs.split == "test") & (recs.strategy == "probe")].config.iloc[0]
    level = int(re.search(r'"level": (\d+)', chosen).group(1))
    best = max(truth.values())
    spent = int(val.lm_calls.sum())
    full = sum(n_val * calls[i] for i in truth)
    print(f"configs: {args.configs}, val examples: {n_val}, first rung: {args.rung0}, epsilon: {args.epsilon}, delta: {args.delta}")
    print(f"chosen: level {level} ({calls[level]} calls/question), true accuracy {100 * truth[level]:.1f}%")
    print(f"best true accuracy: {100 * best:.1f}% (gap {100 * (best - truth[level]):.1f} points)")
    # what scoring every config on all of val would choose (computed from the same draws, no calls)
    val_qs = [e.inputs["question"] for e in task.examples("val")]
    val_acc = {i: sum(right(i, q) for q in val_qs) / n_val for i in truth}
    exhaustive = max(truth, key=lambda i: (val_acc[i], -calls[i]))
    print(
        f"scoring every config on all of val would choose: level {exhaustive}, true accuracy {100 * truth[exhaustive]:.1f}%"
    )
    print(f"LM calls the search spent on val: {spent}")
    print(f"LM calls to score every config on all of val: {full} (search used {spent / full:.1%})")
    print(f"configs scored on all of val: {val.groupby('config_id').size().eq(n_val).sum()} of {args.configs}")
    print(f"wall time: {seconds:.1f} s")


if __name__ == "__main__":
    sys.exit(main())
