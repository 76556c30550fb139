"""Robustness probes: each planted failure shows up in the report where it should, and the robust
ceiling equals what is computed by hand."""

import json
import random
import re

import pandas as pd
import pytest
from conftest import cli, cli_many

from promptopt import stats
from promptopt.probes import NOTA_TEXT, source_id
from promptopt.sections.robustness import robust_ceilings
from promptopt.tasks import load_task
from promptopt.testing import ScriptedServer, fill_fields

FAST = {"PROMPTOPT_TIMEOUT_S": "5", "PROMPTOPT_BACKOFF_S": "0.01", "PROMPTOPT_RETRIES": "1"}
N = 12


def items(task, limit=N):
    return [ex for split in ("val", "test") for ex in task.examples(split, limit)]


def find(prompt, known):
    """The item whose stem's first eight words are in the prompt (the last one, after any demos)."""
    hits = [ex for ex in known if " ".join(ex.inputs["question"].split()[:8]) in prompt]
    return max(hits, key=lambda ex: prompt.rfind(" ".join(ex.inputs["question"].split()[:8]))) if hits else None


def shown(prompt):
    return dict(re.findall(r"^([A-Z])\. (.*)$", prompt, flags=re.MULTILINE))


def answer(prompt, letter):
    return fill_fields(prompt, letter) if "[[ ## " in prompt else f" {letter}"


def run(server, out, *args):
    return cli("run", "--model", "openai/scripted", "--api-base", server.base_url, "--out", str(out),
               "--strategy", "predict", "--limit", str(N), *args, env=FAST)  # fmt: skip


def report_of(done) -> dict:
    assert done.returncode == 0, done.stderr
    run_dir = done.stdout.strip().splitlines()[-1].removeprefix("Run folder: ")
    got = cli("report", run_dir, "--format", "json")
    assert got.returncode == 0, got.stderr
    return json.loads(got.stdout) | {"_text": cli("report", run_dir).stdout}


def rows(data, probe, config="predict"):
    return [r for r in data["robustness"] if r["probe"] == probe and r["config_id"].startswith(config)]


def knower(task, right=None):
    """Right on `right` (default every item) by the first words of the stem; wrong picks another option."""
    known = items(task)
    right = {ex.id for ex in known} if right is None else right

    def reply(prompt):
        ex = find(prompt, known)
        options = shown(prompt)
        gold_text = ex.inputs["options"][ex.gold]
        gold = next((k for k, v in options.items() if v == gold_text), None)
        if gold is not None and ex.id in right:
            return answer(prompt, gold)
        return answer(prompt, next(k for k, v in options.items() if v != gold_text and v != NOTA_TEXT))

    return reply


def test_a_model_that_says_yes_to_every_is_x_the_answer_question_scores_zero_on_negation_pairs(medqa, tmp_path):
    plain = knower(medqa)

    def reply(prompt):
        return answer(prompt, "yes") if "roposed answer" in prompt else plain(prompt)

    with ScriptedServer(reply) as server:
        data = report_of(run(server, tmp_path, "--probe", "negation", "--split", "val", "--split", "test"))
    (row,) = [r for r in rows(data, "negation") if r["split"] == "test"]
    assert (row["n"], row["yes_score"], row["no_score"], row["probe_score"]) == (N, 1.0, 0.0, 0.0)
    assert row["source_score"] == 1.0 and row["diff"] == -1.0 and row["ci_high"] < 0
    robust = {r["task"]: r for r in data["robust"]}["medqa"]
    assert robust["ceiling_score"] == 1.0 and robust["robust_score"] == 0.0


def test_a_model_that_answers_from_the_first_sentence_keeps_its_score_under_partial(medqa, tmp_path):
    right = {ex.id for ex in items(medqa)[::2]}
    with ScriptedServer(knower(medqa, right)) as server:
        data = report_of(run(server, tmp_path, "--probe", "partial", "--split", "test"))
    by_k = {r["probe"]: r for r in data["robustness"] if r["config_id"].startswith("predict")}
    for k in ("partial20", "partial50"):
        assert by_k[k]["probe_score"] == by_k[k]["source_score"] == sum(e.id in right for e in medqa.examples("test", N)) / N
        assert by_k[k]["retained"] == 1.0


def test_a_model_that_never_picks_none_of_the_other_options_scores_zero_on_that_probe(medqa, tmp_path):
    with ScriptedServer(knower(medqa)) as server:
        data = report_of(run(server, tmp_path, "--probe", "none_of_the_above", "--split", "test"))
    (row,) = rows(data, "nota")
    assert (row["probe_score"], row["source_score"], row["n"]) == (0.0, 1.0, N)


def test_a_model_that_always_answers_the_first_option_has_shuffle_consistency_near_chance(medqa, tmp_path):
    with ScriptedServer(lambda p: answer(p, "A")) as server:
        data = report_of(run(server, tmp_path, "--probe", "shuffle", "--split", "test"))
    (row,) = rows(data, "shuffle")
    shuffled = load_task("medqa~shuffle").examples("test")
    by_source = {}
    for ex in shuffled:
        by_source.setdefault(source_id(ex.id), []).append(ex.inputs["options"]["A"])
    planted = [all(t == ex.inputs["options"]["A"] for t in by_source[ex.id]) for ex in medqa.examples("test", N)]
    assert row["consistency"] == sum(planted) / N  # the A slot held the same text in every order
    assert row["consistency"] <= 0.25 and row["orders"] == 4


def test_a_model_right_in_english_and_random_in_spanish_shows_the_gap_with_a_paired_interval(tmp_path):
    en = load_task("casimedicos_en")
    english = {ex.inputs["question"][:60] for ex in items(en, 40)}
    gold = {ex.inputs["question"][:60]: ex.gold for ex in items(en, 40)}
    rng = random.Random(3)

    def reply(prompt):
        stem = next((s for s in english if s in prompt), None)
        letters = list(shown(prompt)) or ["A", "B", "C", "D"]
        return answer(prompt, gold[stem] if stem else rng.choice(letters))

    with ScriptedServer(reply) as server:
        done = cli("run", "--model", "openai/scripted", "--api-base", server.base_url, "--out", str(tmp_path),
                   "--task", "casimedicos_en", "--task", "casimedicos_es", "--probe", "language", "--strategy",
                   "predict", "--limit", "40", "--split", "test", env=FAST)  # fmt: skip
        data = report_of(done)
    (row,) = [r for r in data["robustness"] if r["probe"] == "language:es" and r["config_id"].startswith("predict")]
    assert row["task"] == "casimedicos_en" and row["source_score"] == 1.0 and row["n"] == 40
    assert row["probe_score"] < 0.5 and row["ci_high"] < 0  # es − en, paired by case
    assert row["consistency"] == row["probe_score"]  # the same letter exactly where Spanish is right


def test_gold_answers_agree_across_the_four_languages():
    tasks = [load_task(f"casimedicos_{c}") for c in ("en", "es", "fr", "it")]
    for split in ("train", "val", "test"):
        golds = [{ex.id: ex.gold for ex in t.examples(split)} for t in tasks]
        # train/val may differ by the rows each language's overlap check dropped; test never does
        common = set.intersection(*(set(g) for g in golds))
        assert len(common) > 0.9 * len(golds[0]) and all(g[i] == golds[0][i] for g in golds[1:] for i in common)
        if split == "test":
            assert all(set(g) == set(golds[0]) for g in golds) and len(common) == 117
    for t in tasks:
        assert all("nan" not in ex.inputs["options"].values() for ex in t.examples("test"))
        assert not any("CORRECT ANSWER" in ex.inputs["question"] for ex in t.examples("test"))


@pytest.mark.parametrize("probe", ["negation", "partial20", "nota", "shuffle"])
def test_no_probe_item_of_a_test_question_enters_a_train_or_val_pool(medqa, probe):
    task = load_task(f"medqa~{probe}")
    test_sources = {ex.id for ex in medqa.examples("test")}
    for split in ("train", "val"):
        assert not {source_id(ex.id) for ex in task.examples(split)} & test_sources
    assert {source_id(ex.id) for ex in task.examples("test")} == test_sources


def _records(spec):
    """Records from (task, config, split, example_id, score) tuples."""
    out = []
    for task, config, split, ex, score in spec:
        out.append({"run_id": "r", "model": "m", "task": task, "strategy": config, "optimizer": "none",
                    "config_id": config, "config": "{}", "split": split, "example_id": ex, "prediction": "A",
                    "gold": "A", "score": score, "parse_ok": True, "error": None, "lm_calls": 1,
                    "prompt_tokens": 10, "completion_tokens": 1, "cost_usd": 0.0, "latency_s": 0.1,
                    "raw_output": "A", "created_at": 0.0, "extras": None})  # fmt: skip
    return pd.DataFrame(out)


def test_the_robust_ceiling_equals_a_hand_computation_and_can_choose_another_config():
    spec = []
    ids = [f"q{i}" for i in range(10)]
    for split in ("val", "test"):
        for i, ex in enumerate(ids):
            # A: right on 9 of 10, but its negation pair holds on 3 only; B: right on 7, pairs hold on all 7
            spec.append(("medqa", "A", split, ex, float(i < 9)))
            spec.append(("medqa~negation", "A", split, f"{ex}~yes", 1.0))
            spec.append(("medqa~negation", "A", split, f"{ex}~no", float(i < 3)))
            spec.append(("medqa", "B", split, ex, float(i < 7)))
            spec.append(("medqa~negation", "B", split, f"{ex}~yes", float(i < 7)))
            spec.append(("medqa~negation", "B", split, f"{ex}~no", 1.0))
    records = _records(spec)
    summary = stats.summarize(records, b=200)
    (row,) = robust_ceilings(records, summary).to_dict(orient="records")
    assert row["config_id"] == "A" and row["ceiling_score"] == 0.9
    assert row["robust_score"] == 0.3  # A right and both halves right: items 0-2
    assert row["robust_config_id"] == "B" and row["robust_choice_score"] == 0.7
    assert row["robust_n"] == 10


def test_bad_probe_input_is_one_sentence_before_any_call():
    cases = [
        (["--task", "medqa", "--probe", "negations"], "Unknown probe 'negations'; valid probes are negation, partial"),
        (["--task", "medqa", "--probe", "partial:k=120"], "Probe partial: 'k=120' is not a valid value"),
        (["--task", "pubmedqa", "--probe", "negation"], "The negation probe transforms multiple-choice tasks, and none"),
        (["--task", "medqa", "--probe", "language"], "task medqa declares no language"),
        (["--task", "casimedicos_en", "--probe", "language"], "add one of casimedicos_es, casimedicos_fr, casimedicos_it"),
    ]
    for (args, sentence), done in zip(cases, cli_many(*[["run", *a, "--dry-run"] for a, _ in cases]), strict=True):
        assert done.returncode != 0 and sentence in done.stderr, (args, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1


def test_probes_declared_in_a_task_yaml_are_scored_with_every_run_of_it(tmp_path, medqa):
    (tmp_path / "test.jsonl").write_bytes((medqa.path.parent / "data/medqa/test.jsonl").read_bytes())  # inside its folder
    spec = (medqa.path).read_text().replace("files: data/medqa/test.jsonl", "files: test.jsonl")
    (tmp_path / "medqa_probed.yaml").write_text(spec.replace("name: medqa", "name: medqa_probed") + "probes: [negation, partial:k=30]\n")
    done = cli("run", "--tasks-dir", str(tmp_path), "--task", "medqa_probed", "--dry-run", "--limit", "5")
    assert done.returncode == 0, done.stderr
    for name in ("medqa_probed~negation", "medqa_probed~partial30"):
        assert name in done.stdout
    done = cli("search", "--tasks-dir", str(tmp_path), "--task", "medqa_probed", "--dry-run")
    assert done.returncode == 0, done.stderr  # a search scores probes too (its choice on each probe's test)
    assert "medqa_probed~negation" in done.stdout
