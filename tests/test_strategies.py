"""Strategies against scripted models whose behaviour is known exactly.

Each scripted model answers every call independently with a known probability of being right,
so what an ensemble should score is computable; the measured score must agree within its 95%
confidence interval. Draws are seeded by the prompt and how often it was seen, so results do
not depend on thread timing and every run of this file sees the same draws.
"""

import hashlib
import itertools
import json
import random
import subprocess
import sys
from collections import defaultdict

import pytest

from promptopt import stats
from promptopt.config import parse_config
from promptopt.engine import run
from promptopt.models import resolve_model
from promptopt.pipeline import program_dir
from promptopt.registry import get_strategy
from promptopt.runplan import RunPlan
from promptopt.signatures import vote
from promptopt.testing import ScriptedServer, fill_fields, shown_options

MODEL = "openai/scripted"


class Oracle:
    """Finds which question a prompt asks (the last one in it: demos come first) and its gold text."""

    def __init__(self, task, splits=("train", "val", "test")):
        self.examples = [ex for s in splits for ex in task.examples(s)]

    def locate(self, prompt: str):
        best, at = None, -1
        for ex in self.examples:
            pos = prompt.rfind(ex.inputs["question"])
            if pos > at:
                best, at = ex, pos
        return best, prompt[max(at, 0) :]


def scripted(task, pick, seed=0, repeatable=False):
    """A server whose answer letter is `pick(example, shown, rng)`; `shown` maps letters to texts.

    Draws depend on the prompt and on how often it was seen; with `repeatable`, on the prompt
    only, so the same prompt always gets the same answer.
    """
    oracle, seen = Oracle(task), defaultdict(int)

    def reply(prompt: str) -> str:
        ex, tail = oracle.locate(prompt)
        if ex is None:  # an optimizer's own prompt (e.g. MIPRO proposing instructions)
            return fill_fields(prompt, "A")
        shown = shown_options(tail, ex.inputs["options"])
        if ex.inputs["options"][ex.gold] not in shown.values():  # e.g. GEPA reflecting on a question
            return fill_fields(prompt, "A")
        seen[prompt] += 0 if repeatable else 1
        rng = random.Random(f"{seed}:{hashlib.sha1(prompt.encode()).hexdigest()}:{seen[prompt]}")
        letter = pick(ex, shown, rng)
        return fill_fields(
            prompt, letter, verdict="yes" if shown.get(letter) == ex.inputs["options"][ex.gold] else "no"
        )

    return ScriptedServer(reply)


def gold_letter(ex, shown):
    return next(letter for letter, text in shown.items() if text == ex.inputs["options"][ex.gold])


def run_strategy(server, tmp_path, strategy, limit, splits=("test",), threads=4):
    plan = RunPlan(
        models=[MODEL], strategies=[strategy], api_base=server.base_url, limit=limit, splits=splits,
        out=tmp_path, threads=threads, references=False,
    )  # fmt: skip
    result = run(plan)
    from promptopt.store import Store

    return result, Store(result.storage).records(result.run_id)


def exact_vote_accuracy(dists: list[dict[str, float]], gold: str) -> float:
    """P(vote(...) == gold) for independent votes with the given letter distributions."""
    total = 0.0
    for combo in itertools.product(*[list(d.items()) for d in dists]):
        p = 1.0
        for _, q in combo:
            p *= q
        if p and vote([letter for letter, _ in combo]) == gold:
            total += p
    return total


def within_ci(records, expected: float) -> tuple[float, float, float]:
    k, n = int(records.score.sum()), len(records)
    low, high = stats.wilson(k, n)
    print(f"measured {k}/{n} = {k / n:.3f} [{low:.3f}, {high:.3f}], expected {expected:.3f}")
    assert low <= expected <= high, f"measured {k}/{n} = {k / n:.3f} [{low:.3f}, {high:.3f}], expected {expected:.3f}"
    return k / n, low, high


def test_self_consistency_scores_what_a_majority_of_n_independent_samples_predicts(medqa, tmp_path):
    p, n, questions = 0.55, 5, 300

    def pick(ex, shown, rng):
        if rng.random() < p:
            return gold_letter(ex, shown)
        return rng.choice([x for x in shown if x != gold_letter(ex, shown)])

    with scripted(medqa, pick, seed=1) as server:
        _, recs = run_strategy(server, tmp_path, f"self_consistency:n={n},temperature=0.7", questions)
        assert server.calls == n * questions  # distinct samples: none served from a cache
    dist = {"A": p, "B": (1 - p) / 3, "C": (1 - p) / 3, "D": (1 - p) / 3}
    expected = exact_vote_accuracy([dist] * n, "A")
    _, low, _ = within_ci(recs, expected)
    assert low > p  # the vote beats a single sample by more than the noise


def test_choice_shuffle_cancels_a_position_bias_as_predicted(medqa, tmp_path):
    # right with a probability that depends on where the right option is shown
    p_at = {"A": 0.85, "B": 0.45, "C": 0.3, "D": 0.3}
    n, questions = 5, 300

    def pick(ex, shown, rng):
        right = gold_letter(ex, shown)
        if rng.random() < p_at[right]:
            return right
        return rng.choice([x for x in shown if x != right])

    with scripted(medqa, pick, seed=2) as server:
        _, recs = run_strategy(server, tmp_path, f"choice_shuffle:n={n},reasoning=false", questions)
        assert server.calls == n * questions

    orders = sys.modules[get_strategy("choice_shuffle").module.__module__].orders
    examples = {ex.id: ex for ex in medqa.examples("test", questions)}
    expected, single = 0.0, 0.0
    for ex in examples.values():
        letters = list(ex.inputs["options"])
        dists = []
        for order in orders(ex.inputs["options"], n, 0, ex.inputs["question"]):
            shown_at = letters[order.index(ex.gold)]  # where the right option is shown in this vote
            p = p_at[shown_at]
            dists.append({x: p if x == ex.gold else (1 - p) / 3 for x in letters})
        expected += exact_vote_accuracy(dists, ex.gold) / len(examples)
        single += dists[0][ex.gold] / len(examples)
    within_ci(recs, expected)
    assert expected > single + 0.05  # the test model's bias is strong enough for shuffling to matter


def test_choice_shuffle_maps_every_vote_back_to_the_original_letter(medqa, tmp_path):
    with scripted(medqa, lambda ex, shown, rng: gold_letter(ex, shown)) as server:
        _, recs = run_strategy(server, tmp_path, "choice_shuffle:n=5", 40)
    assert len(recs) == 40 and recs.score.mean() == 1.0
    # every vote is stored, in original letters, so the report can measure consistency
    gold = dict(zip(recs.example_id, recs.gold, strict=True))
    for example_id, raw in zip(recs.example_id, recs.raw_output, strict=True):
        assert json.loads(raw)["votes"] == [gold[example_id]] * 5


def _always_right(ex, shown, rng):
    return gold_letter(ex, shown)


@pytest.mark.parametrize(
    "config",
    [
        "baseline",
        "predict",
        "cot",
        "self_consistency:n=3",
        "choice_shuffle:n=4",
        "verify_choices",
        "verify_choices:batched=true",
        "knn_fewshot:k=2,pool=6",
        "knn_fewshot:k=2,pool=6,self_cot=false",
    ],
)
def test_lm_calls_per_example_are_what_the_strategy_declares(medqa, tmp_path, config):
    cfg = parse_config(config)
    strat = get_strategy(cfg.strategy)
    knobs = strat.knobs | cfg.knobs
    per_example = strat.calls(knobs, 4)
    preparation = knobs["pool"] if knobs.get("self_cot") else 0
    questions = 5

    with scripted(medqa, _always_right) as server:
        structured = server.reply

        def reply(prompt: str) -> str:  # the fixed-prompt baseline wants a bare letter
            if "[[ ## " in prompt:
                return structured(prompt)
            ex, tail = Oracle(medqa).locate(prompt)
            return f" {ex.gold}"

        server.reply = reply
        _, recs = run_strategy(server, tmp_path, config, questions, threads=1)
        assert server.calls == preparation + per_example * questions
    scored = recs[recs.split == "test"]
    assert list(scored.lm_calls) == [per_example] * questions
    assert scored.score.mean() == 1.0


def test_a_saved_knn_program_picks_the_same_demos_in_a_fresh_process(medqa, tmp_path):
    question = medqa.examples("test")[1]
    oracle = Oracle(medqa)
    with scripted(medqa, _always_right) as server:
        result, _ = run_strategy(server, tmp_path, "knn_fewshot:k=3,pool=40", 2, threads=1)
        during_run = [r for r in server.requests if oracle.locate(_prompt(r))[0].id == question.id]
        assert len(during_run) == 1
        folder = program_dir(
            result.run_dir, resolve_model(MODEL, server.base_url), medqa, parse_config("knn_fewshot:k=3,pool=40")
        )
        script = (
            "import json, sys, promptopt\n"
            "prog = promptopt.load(sys.argv[1])\n"
            "print(json.dumps(prog(**json.loads(sys.argv[2])).demo_ids))\n"
        )
        fresh = subprocess.run(
            [sys.executable, "-c", script, str(folder), json.dumps(question.inputs)],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert fresh.returncode == 0, fresh.stderr
        after_load = server.requests[-1]

    assert after_load["messages"] == during_run[0]["messages"]  # same demos, same words, same order
    demo_ids = json.loads(fresh.stdout)
    assert len(demo_ids) == 3
    assert set(demo_ids) <= {ex.id for ex in medqa.examples("train")}  # demos only ever from train
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["strategy"] == "knn_fewshot" and manifest["preparation"]["lm_calls"] == 40


def _prompt(request: dict) -> str:
    return "\n\n".join(m["content"] for m in request["messages"])
