"""`search_vs_recipe.py --real`: the DSPy+HELM recipe and promptopt's search, both run for real.

What is REAL: every LM call. Both sides talk over HTTP, through LiteLLM and DSPy, to an
OpenAI-compatible server on 127.0.0.1 (`promptopt.testing.ScriptedServer`), and every call is
counted at that server (one server per side per seed, both playing the same scripted model).

- The recipe: DSPy's own `dspy.teleprompt.BootstrapFewShotWithRandomSearch`
  (num_candidate_programs=16, max_bootstrapped_demos=3, max_labeled_demos=3) and
  `dspy.teleprompt.MIPROv2` (auto="light", 3 + 3 demos), each compiling `dspy.Predict` and
  `dspy.ChainOfThought` of a MedQA signature (question + lettered options -> answer letter) with
  trainset = MedQA train (200) and valset = the first 100 MedQA val examples; the four compiled
  programs are each scored on all of MedQA test (773) and the best test score is the recipe's
  reported ceiling (HELM reports the best). DSPy's cache is off (`cache=False`).
- promptopt: `promptopt.searcher.search` with its default space (`promptopt.searcher.DEFAULT_SPACE`
  x `DEFAULT_OPTIMIZERS`: 8 strategies zero-shot and compiled with `bootstrap`, knn_fewshot
  zero-shot only: 15 configs), its default settings, on MedQA val (300), then the chosen config
  and the fixed `baseline` reference on test. Its compiles, knn_fewshot's pool preparation and
  every evaluation are real calls.

What is SCRIPTED: the model. Per seed it has four accuracies, drawn around plausible values:
direct answer 0.45 and chain-of-thought 0.52 (each + N(0, 0.03)), each raised by U(0.02, 0.05)
when the prompt carries demonstrations. From the prompt text alone it decides
- the item asked: the LAST question in the prompt (DSPy puts demos first, as earlier
  user/assistant pairs), looked up by its text among MedQA train, val and test;
- the strategy class: chain-of-thought if the prompt asks for a `reasoning` output field,
  otherwise direct (promptopt's fixed baseline prompt, which has no field markers, is direct);
- whether demos are present: the question field marker occurs more than once with a value.
It is right with that class's accuracy, decided per item by a hash of (seed, item, class,
demos, sample index); the sample index counts how often this exact prompt was seen, so
repeated identical prompts (self-consistency samples, re-evaluations) are fresh draws. When
wrong it answers one fixed wrong option (the one after the gold option), in whatever letter the
prompt shows it (choice_shuffle shuffles options). Prompts that ask for no `answer` field
(MIPROv2's dataset summary and instruction proposals, verify_choices' verification step) get a
well-formed reply for their fields. Hence each program's true accuracy is known exactly: the
accuracy of its (class, demos); for self_consistency:n the chance that a majority of n
independent draws is right (wrong votes all name the same option); choice_shuffle's votes on
shuffled orders are one draw (the model knows an item or not, whatever the order), so its true
accuracy is its class's, as is verify_choices' (its decision step is chain-of-thought).

Per seed it prints LM calls (recipe; promptopt with and without its baseline reference), the
true accuracy of each side's choice, its reported ceiling, the bias (reported - true), and
whether the search stopped the truly best config of its space before all of val; then the
averages beside the targets. Command (20 seeds; `--first`/`--seeds` split them over processes,
`--json` saves rows and `--merge` summarises saved rows):

    nice -n 19 env PYTHONPATH=. .venv/bin/python benchmarks/search_vs_recipe.py --real --seeds 20 \\
        --json /tmp/recipe_real.json | tee /tmp/recipe_real.txt
    PYTHONPATH=. .venv/bin/python benchmarks/search_vs_recipe.py --real --merge /tmp/a.json /tmp/b.json

`--limit-test N` (smoke runs only) scores only N val and N test examples on both sides.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import random
import re
import statistics
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import promptopt  # noqa: F401  (offline LiteLLM settings before DSPy is imported)

BASE = {"direct": 0.45, "cot": 0.52}  # zero-shot accuracy of each strategy class
JITTER = 0.03  # per-seed gaussian spread of each class's accuracy
DEMO_GAIN = (0.02, 0.05)  # uniform range of what demonstrations add, per class and seed
THREADS = 4
RECIPE_VAL = 100
Q = "[[ ## question ## ]]\n"
INSTRUCTION = "Answer the medical licensing exam question with the letter of the single best option."
TARGETS = ("the search's anytime curve reaches the recipe's true accuracy at <= 0.4x its calls and ends at <= 0.6x "
           "with true accuracy >= recipe + 2 points (baseline reference included); its choice within epsilon (1 point) "
           "of the truly best config in >= 95% of seeds; bias of the reported ceiling within +-0.5 points")
EPSILON = 0.01  # the search's default indifference zone (promptopt.selection.Rule)


def _norm(text: str) -> str:
    return " ".join(text.split())


def _unit(key: str) -> float:
    return int(hashlib.sha1(key.encode()).hexdigest()[:13], 16) / 16**13


def majority(p: float, n: int) -> float:
    """P(more than half of n independent draws are right), when every wrong draw names the same option."""
    return sum(math.comb(n, k) * p**k * (1 - p) ** (n - k) for k in range(n // 2 + 1, n + 1))


class World:
    """The scripted model's accuracies for one seed and the MedQA items it knows."""

    def __init__(self, seed: int, task):
        rng = random.Random(f"recipe-real-{seed}")
        self.seed = seed
        self.p: dict[tuple[str, bool], float] = {}
        for cls, base in BASE.items():
            zero = base + rng.gauss(0, JITTER)
            self.p[(cls, False)] = round(zero, 4)
            self.p[(cls, True)] = round(zero + rng.uniform(*DEMO_GAIN), 4)
        self.items = {_norm(e.inputs["question"]): (split, e) for split in ("train", "val", "test") for e in task.examples(split)}  # fmt: skip

    def describe(self) -> dict:
        return {f"{cls}{'+demos' if demos else ''}": p for (cls, demos), p in self.p.items()}


class ScriptedModel:
    """The reply function of one server: the world's answers, with its own prompt counters."""

    def __init__(self, world: World):
        self.world = world
        self.seen: Counter = Counter()  # prompt digest -> times answered (the sample index)
        self.tally: Counter = Counter()  # (split, class, demos) -> answer calls; "plain", "other"
        self.lock = threading.Lock()

    def __call__(self, prompt: str) -> str:
        from promptopt.testing import fill_fields, requested_fields

        if "[[ ## " not in prompt:  # promptopt's fixed baseline: "Question: ...", options, "Answer:"
            at = prompt.rfind("Question: ")
            body = prompt[at + len("Question: ") :] if at >= 0 else ""
            opts = re.search(r"^A\. ", body, flags=re.MULTILINE)
            item = self.world.items.get(_norm(body[: opts.start()] if opts else body))
            if item is None:
                with self.lock:
                    self.tally["other"] += 1
                return " A"
            return f" {self.pick(item, 'direct', False, prompt, body, plain=True)}"
        fields = requested_fields(prompt)
        at = prompt.rfind(Q)
        item = None
        if "answer" in fields and at >= 0:
            body = prompt[at + len(Q) :]
            item = self.world.items.get(_norm(body.split("\n\n[[ ## ", 1)[0]))
        if item is None:  # an optimizer's own prompt, a verification step: well-formed, nothing more
            with self.lock:
                self.tally["other"] += 1
            if not fields:
                return fill_fields(prompt, "A")
            return self.fields(fields, "A")
        cls = "cot" if "reasoning" in fields else "direct"
        demos = prompt.count(Q) - prompt.count(Q + "{question}") > 1
        return self.fields(fields, self.pick(item, cls, demos, prompt, body))

    def pick(self, item, cls: str, demos: bool, prompt: str, shown_text: str, plain: bool = False) -> str:
        from promptopt.testing import shown_options

        split, ex = item
        digest = hashlib.sha1(prompt.encode()).digest()
        with self.lock:
            index = self.seen[digest]
            self.seen[digest] += 1
            self.tally["plain" if plain else (split, cls, demos)] += 1
        right = _unit(f"{self.world.seed}|{ex.id}|{cls}|{int(demos)}|{index}") < self.world.p[(cls, demos)]
        options = ex.inputs["options"]
        letters = list(options)
        letter = ex.gold if right else letters[(letters.index(ex.gold) + 1) % len(letters)]
        want = options[letter]
        for shown, text in shown_options(shown_text, options).items():
            if text == want:
                return shown
        return letter

    @staticmethod
    def fields(fields: list[str], answer: str) -> str:
        values = {
            "answer": answer,
            "reasoning": "Considering each option in turn, the findings point to this one.",
            "proposed_instruction": INSTRUCTION,
        }
        parts = [f"[[ ## {f} ## ]]\n{values.get(f, 'Considering each option in turn.')}" for f in fields]
        return "\n\n".join([*parts, "[[ ## completed ## ]]"])


# ------------------------------------------------------------------------------ the recipe


def _letter(text) -> str | None:
    found = re.search(r"\b([A-E])\b", str(text or ""))
    return found.group(1) if found else None


def recipe_metric(example, prediction, trace=None):
    right = _letter(getattr(prediction, "answer", None)) == example.answer
    return right if trace is not None else float(right)


def recipe(world: World, task, server, limit: int | None, log) -> dict:
    """DSPy's BootstrapFewShotWithRandomSearch and MIPROv2 on Predict and ChainOfThought, each
    compiled program scored on test; the best test score is the reported ceiling."""
    import dspy
    from dspy.teleprompt import BootstrapFewShotWithRandomSearch, MIPROv2

    from promptopt.answers import format_options

    class MedQA(dspy.Signature):
        """Answer the medical licensing exam question: reply with the letter of the correct option."""

        question: str = dspy.InputField()
        options: str = dspy.InputField(desc="lettered options, one per line")
        answer: str = dspy.OutputField(desc="the letter of the correct option")

    def examples(split, n=None):
        return [
            dspy.Example(question=e.inputs["question"], options=format_options(e.inputs["options"]), answer=e.gold)
            .with_inputs("question", "options")
            for e in task.examples(split, n)
        ]  # fmt: skip

    train = examples("train")
    val = examples("val", min(RECIPE_VAL, limit or RECIPE_VAL))
    test = examples("test", limit)
    lm = dspy.LM("openai/scripted", api_base=server.base_url, api_key="x", cache=False)
    programs, calls = [], {}
    with dspy.context(lm=lm):
        for kind in ("predict", "cot"):
            for opt_name in ("bootstrap_rs", "mipro"):
                student = dspy.Predict(MedQA) if kind == "predict" else dspy.ChainOfThought(MedQA)
                before = server.calls
                with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):  # DSPy prints progress
                    if opt_name == "bootstrap_rs":
                        opt = BootstrapFewShotWithRandomSearch(
                            metric=recipe_metric, max_bootstrapped_demos=3, max_labeled_demos=3,
                            num_candidate_programs=16, num_threads=THREADS,
                        )  # fmt: skip
                    else:
                        opt = MIPROv2(
                            metric=recipe_metric, auto="light", max_bootstrapped_demos=3, max_labeled_demos=3,
                            num_threads=THREADS, verbose=False, seed=world.seed,
                        )  # fmt: skip
                    compiled = opt.compile(student, trainset=train, valset=val)
                calls[f"{kind}/{opt_name}/compile"] = server.calls - before
                demos = any(len(p.demos) > 0 for p in compiled.predictors())
                cls = "cot" if kind == "cot" else "direct"
                programs.append((f"{kind}/{opt_name}", compiled, cls, demos))
        finals = []
        for label, program, cls, demos in programs:
            before, tally = server.calls, Counter(server.tally)
            evaluate = dspy.Evaluate(
                devset=test, metric=recipe_metric, num_threads=THREADS, display_progress=False, max_errors=len(test)
            )
            with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
                result = evaluate(program)
            calls[f"{label}/test"] = server.calls - before
            seen = {k for k, v in (server.tally - tally).items() if isinstance(k, tuple) and k[0] == "test" and v}
            if seen != {("test", cls, demos)}:  # the world saw what the program is
                print(f"WARNING: recipe {label} expected {(cls, demos)}, the server saw {seen}", file=log)
            score = sum(float(s) for _, _, s in result.results) / len(test)
            finals.append({"program": label, "demos": demos, "true": world.p[(cls, demos)], "test": score})
    best = max(finals, key=lambda f: f["test"])
    return {
        "calls": server.calls,
        "true": best["true"],
        "reported": best["test"],
        "chosen": best["program"] + ("+demos" if best["demos"] else ""),
        "programs": finals,
        "call_parts": calls,
    }


# ------------------------------------------------------------------------------ promptopt


def space_truths(world: World) -> dict[str, dict]:
    """Every config of promptopt's default space: id -> label, true accuracy, calls per question."""
    from promptopt.config import parse_config
    from promptopt.registry import get_strategy
    from promptopt.searcher import DEFAULT_OPTIMIZERS, DEFAULT_SPACE

    out = {}
    for name in DEFAULT_SPACE:
        strat = get_strategy(name.partition(":")[0])
        for opt in DEFAULT_OPTIMIZERS:
            if opt != "none" and not strat.compilable:
                continue  # as promptopt.searcher builds its space
            cfg = parse_config(name, opt)
            out[cfg.id] = {
                "label": f"{name}/{opt}",
                "true": config_truth(world, cfg.strategy, cfg.optimizer, cfg.knobs),
                "calls": strat.calls(cfg.knobs, 4),
                "expects": ("direct" if cfg.strategy == "predict" else "cot", _has_demos(cfg.strategy, cfg.optimizer)),
            }
    return out


def _has_demos(strategy: str, optimizer: str) -> bool:
    return optimizer != "none" or strategy == "knn_fewshot"


def config_truth(world: World, strategy: str, optimizer: str, knobs: dict) -> float:
    """A config's true accuracy in this world (see the module docstring)."""
    if strategy in ("baseline", "predict"):
        return world.p[("direct", strategy == "predict" and optimizer != "none")]
    p = world.p[("cot", _has_demos(strategy, optimizer))]
    if strategy == "self_consistency":
        return majority(p, knobs["n"])
    return p  # cot, choice_shuffle (one draw per item whatever the order), verify_choices, knn_fewshot


def promptopt_search(world: World, task, server, limit: int | None, out: Path, log) -> dict:
    from promptopt.runplan import RunPlan
    from promptopt.searcher import DEFAULT_OPTIMIZERS, DEFAULT_SPACE, SearchSettings, search
    from promptopt.store import Store

    plan = RunPlan(
        models=["openai/scripted"], tasks=["medqa"], strategies=list(DEFAULT_SPACE),
        optimizers=list(DEFAULT_OPTIMIZERS), api_base=server.base_url, limit=limit, out=out,
        mode="search", seed=world.seed, threads=THREADS,
    )  # fmt: skip
    with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        result = search(
            plan,
            SearchSettings(seed=world.seed),
            on_progress=lambda e: print(e.text, file=log) if hasattr(e, "text") else None,
        )
    store = Store(result.storage)
    recs = store.records(result.run_id)
    compile_calls = int(store.compile_costs(result.run_id).lm_calls.sum())
    space = space_truths(world)
    test = recs[(recs.split == "test") & (recs.strategy != "baseline")]
    (chosen,) = set(test.config_id)
    answered = test[test.error.isna()]
    seen = {k for k, v in server.tally.items() if isinstance(k, tuple) and k[0] == "test" and v}
    if seen != {("test", *space[chosen]["expects"])}:
        print(f"WARNING: promptopt chose {space[chosen]['label']}, the server saw {seen} on test", file=log)
    n_val = len(task.examples("val", limit))
    val = recs[recs.split == "val"]
    scored = val.groupby("config_id").size().to_dict()
    top = max(c["true"] for c in space.values())
    best = sorted((cid for cid, c in space.items() if c["true"] >= top - 1e-12), key=lambda c: space[c]["calls"])
    baseline_calls = server.tally["plain"]
    curve = store.table("anytime", result.run_id)
    curve = curve[curve.optimizer == "*"].sort_values("step")
    return {
        # the anytime curve: calls spent so far (compiles included) and the true accuracy of the
        # config the search would have chosen then
        "curve": [(int(c), space[cid]["true"]) for c, cid in zip(curve.lm_calls, curve.config_id, strict=True)],
        "baseline_calls": baseline_calls,
        "within_epsilon": space[chosen]["true"] >= top - EPSILON - 1e-12,
        "calls": server.calls,
        "calls_without_baseline": server.calls - baseline_calls,
        "recorded_calls": int(recs.lm_calls.sum()) + compile_calls,  # promptopt's own count
        "compile_calls": compile_calls,
        "true": space[chosen]["true"],
        "reported": float(answered.score.mean()),
        "chosen": space[chosen]["label"],
        "best": [space[c]["label"] for c in best],
        "best_true": top,
        # the truly best config (every one tied for best) stopped before all of val
        "best_pruned": all(scored.get(c, 0) < n_val for c in best),
        "val_scored": {space[c]["label"]: n for c, n in scored.items() if c in space},
        "errors": int(recs.error.notna().sum()),
    }


# ------------------------------------------------------------------------------ driver


def run(args) -> None:
    import tempfile

    import dspy  # noqa: F401

    from promptopt.tasks import load_task
    from promptopt.testing import ScriptedServer

    for name in ("dspy", "optuna", "LiteLLM", "litellm", "httpx"):
        logging.getLogger(name).setLevel(logging.ERROR)
    task = load_task("medqa")
    limit = args.limit_test
    sizes = {s: len(task.examples(s, None if s == "train" else limit)) for s in ("train", "val", "test")}
    print(
        f"MedQA: {sizes['train']} train, {sizes['val']} val, {sizes['test']} test"
        f"{f' (--limit-test {limit}: SMOKE RUN)' if limit else ''}; seeds {args.first}..{args.first + args.seeds - 1}",
        flush=True,
    )
    print(f"targets: {TARGETS}", flush=True)
    print(
        f"{'seed':>4} {'world d/d+/c/c+':>23} | {'recipe calls':>12} {'true':>5} {'rep':>5} | "
        f"{'search calls':>12} {'w/o base':>8} {'true':>5} {'rep':>5} {'pruned':>6} | {'s':>5}  choices",
        flush=True,
    )
    rows: dict = {"mode": "real", "limit_test": limit, "recipe": [], "promptopt": []}
    started = time.perf_counter()
    log_path = Path(tempfile.gettempdir()) / f"recipe_real-{args.first}.log"
    with tempfile.TemporaryDirectory() as tmp, open(log_path, "a") as log:
        for seed in range(args.first, args.first + args.seeds):
            t0 = time.perf_counter()
            world = World(seed, task)
            print(f"--- seed {seed} {world.describe()}", file=log, flush=True)
            with ScriptedServer(ScriptedModel(world)) as server:
                server.tally = server.reply.tally
                r = recipe(world, task, server, limit, log)
            t1 = time.perf_counter()
            with ScriptedServer(ScriptedModel(world)) as server:
                server.tally = server.reply.tally
                p = promptopt_search(world, task, server, limit, Path(tmp) / f"results-{seed}", log)
            t2 = time.perf_counter()
            r |= {"seed": seed, "world": world.describe(), "seconds": round(t1 - t0, 1)}
            p |= {"seed": seed, "seconds": round(t2 - t1, 1), "reach": reach(p, r)}
            rows["recipe"].append(r)
            rows["promptopt"].append(p)
            w = world.p
            print(
                f"{seed:4d} {w[('direct', False)]:.3f}/{w[('direct', True)]:.3f}/{w[('cot', False)]:.3f}/{w[('cot', True)]:.3f} | "
                f"{r['calls']:12d} {100 * r['true']:5.1f} {100 * r['reported']:5.1f} | {p['calls']:12d} "
                f"{p['calls_without_baseline']:8d} {100 * p['true']:5.1f} {100 * p['reported']:5.1f} "
                f"{'yes' if p['best_pruned'] else 'no':>6} | {t2 - started:5.0f}  recipe {r['chosen']} "
                f"({t1 - t0:.0f}s); search {p['chosen']} ({t2 - t1:.0f}s; best {p['best'][0]} {100 * p['best_true']:.1f})",
                flush=True,
            )
            if args.json:  # after every seed, so a killed run keeps what it finished
                args.json.write_text(json.dumps(rows))
    summarize(rows, time.perf_counter() - started)


def reach(p: dict, r: dict) -> int | None:
    """The calls at which the search's anytime curve first held a config at least as good as the
    recipe's final choice, its baseline reference's calls added; None if it never did."""
    return next((calls + p["baseline_calls"] for calls, true in p["curve"] if true >= r["true"] - 1e-12), None)


def merge(paths: list[Path]) -> None:
    rows: dict = {"recipe": [], "promptopt": []}
    limits = set()
    for path in paths:
        data = json.loads(path.read_text())
        limits.add(data.get("limit_test"))
        for name in ("recipe", "promptopt"):
            rows[name] += data[name]
    seeds = [r["seed"] for r in rows["recipe"]]
    if len(set(seeds)) != len(seeds):
        print(f"WARNING: seeds repeat across the files: {sorted(seeds)}")
    if limits != {None}:
        print(f"WARNING: smoke-run rows (--limit-test {sorted(map(str, limits))}) are merged")
    summarize(rows, sum(r["seconds"] for r in rows["recipe"]) + sum(p["seconds"] for p in rows["promptopt"]))


def summarize(rows: dict, seconds: float) -> None:
    rec, pro = rows["recipe"], rows["promptopt"]
    n = len(rec)
    print(
        f"\naveraged over {n} seeds ({seconds:.0f} s of seed work), both sides run for real against the scripted model:"
    )
    print(
        f"{'':<10} {'LM calls':>9} {'w/o baseline':>12} {'true acc %':>10} {'reported %':>10} "
        f"{'bias (pts)':>10} {'± se':>5} {'|bias| (pts)':>12}"
    )
    summary = {}
    for name, rs in (("recipe", rec), ("promptopt", pro)):
        calls = statistics.mean(x["calls"] for x in rs)
        bare = statistics.mean(x.get("calls_without_baseline", x["calls"]) for x in rs)
        true = 100 * statistics.mean(x["true"] for x in rs)
        rep = 100 * statistics.mean(x["reported"] for x in rs)
        biases = [100 * (x["reported"] - x["true"]) for x in rs]
        se = statistics.stdev(biases) / len(biases) ** 0.5 if len(biases) > 1 else float("nan")
        abs_bias = statistics.mean(abs(b) for b in biases)
        summary[name] = (calls, bare, true)
        print(
            f"{name:<10} {calls:9.0f} {bare:12.0f} {true:10.1f} {rep:10.1f} {rep - true:+10.2f} {se:5.2f} {abs_bias:12.2f}"
        )
    (rc, _, rt), (pc, pbare, pt) = summary["recipe"], summary["promptopt"]
    pruned = sum(p["best_pruned"] for p in pro)
    ok = lambda cond: "met" if cond else "NOT met"  # noqa: E731
    print(f"calls ratio promptopt/recipe at the end: {pc / rc:.2f} with the baseline reference (target <= 0.6: "
          f"{ok(pc / rc <= 0.6)}); {pbare / rc:.2f} without it")  # fmt: skip
    reached = [p["reach"] / r["calls"] for p, r in zip(pro, rec, strict=True) if p.get("reach") is not None]
    if "curve" in pro[0]:
        median = statistics.median(reached) if reached else float("nan")
        print(f"anytime curve at the recipe's true accuracy: reached in {len(reached)} of {n} seeds, at a median "
              f"{median:.2f}x the recipe's calls, baseline reference included (target <= 0.4: "
              f"{ok(len(reached) == n and max(reached) <= 0.4)}; per seed: "
              + ", ".join("never" if p.get("reach") is None else f"{p['reach'] / r['calls']:.2f}" for p, r in zip(pro, rec, strict=True)) + ")")
        within = sum(p["within_epsilon"] for p in pro)
        print(f"choice within epsilon ({100 * EPSILON:g} point) of the truly best config: {within} of {n} seeds "
              f"(target >= 95%: {ok(within / n >= 0.95)})")
    print(f"true accuracy promptopt - recipe: {pt - rt:+.1f} points (target >= +2: {ok(pt - rt >= 2)})")
    print(f"truly best config of promptopt's space stopped before all of val: {pruned} of {n} seeds "
          f"({100 * pruned / n:.0f}%; target <= 5%: {ok(pruned / n <= 0.05)})")  # fmt: skip
    choices = Counter(p["chosen"] for p in pro)
    print("promptopt chose: " + ", ".join(f"{c} x{k}" for c, k in choices.most_common()))
    print("recipe chose: " + ", ".join(f"{c} x{k}" for c, k in Counter(r["chosen"] for r in rec).most_common()))
    parts: Counter = Counter()
    for r in rec:
        parts.update(r["call_parts"])
    print("recipe calls per seed: " + ", ".join(f"{k} {v / n:.0f}" for k, v in parts.items()))
    print(f"promptopt errors recorded: {sum(p['errors'] for p in pro)}; calls recorded by promptopt / counted at "
          f"the server: {sum(p['recorded_calls'] for p in pro)} / {sum(p['calls'] for p in pro)}")  # fmt: skip


if __name__ == "__main__":
    sys.exit("run it as: benchmarks/search_vs_recipe.py --real ...")
