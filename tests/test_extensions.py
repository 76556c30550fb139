"""A user extends promptopt from a folder of their own: an answer type and an optimizer, no engine edit.

The folder holds `roman.py` (answers written as Roman numerals, scored against an integer gold)
and `last_k.py` (an optimizer that gives every predictor the last k train examples as demos).
A scripted model answers in Roman numerals, right on a known set of items; the run's report
must show exactly that share, and the prompts must carry the demos the user's optimizer chose.
"""

import csv
import json
import textwrap

from conftest import cli

from promptopt.testing import ScriptedServer, fill_fields

ROMAN = textwrap.dedent(
    '''
    """Answers written as Roman numerals (XIV), scored against an integer gold (14)."""

    from dataclasses import dataclass
    from typing import ClassVar

    from promptopt.answers import answer_type

    VALUES = [(1000, "M"), (900, "CM"), (500, "D"), (400, "CD"), (100, "C"), (90, "XC"), (50, "L"),
              (40, "XL"), (10, "X"), (9, "IX"), (5, "V"), (4, "IV"), (1, "I")]


    def to_roman(n):
        out = ""
        for value, letters in VALUES:
            while n >= value:
                out, n = out + letters, n - value
        return out


    @answer_type
    @dataclass(frozen=True)
    class RomanNumeral:
        name: str = "roman_numeral"
        max_answer_tokens: int = 8
        largest: int = 3999
        gold_form: ClassVar[str] = "a whole number from 1 up"

        def describe(self, inputs):
            return "the number in Roman numerals, e.g. XIV"

        def parse(self, raw, inputs):
            word = (raw or "").strip().split()[0].strip(".").upper() if (raw or "").strip() else ""
            for n in range(1, self.largest + 1):
                if to_roman(n) == word:
                    return str(n)
            return None

        def score(self, prediction, gold):
            return float(prediction is not None and prediction == str(int(gold)))

        def gold_answer(self, gold, inputs):
            return str(int(gold)) if str(gold).isdigit() and 0 < int(gold) <= self.largest else None
    '''
)

LAST_K = textwrap.dedent(
    '''
    """`last_k`: every predictor gets the last k train examples as demos (no LM call)."""

    from promptopt.optimizers import optimizer


    @optimizer("last_k", knobs={"k": 2})
    class LastK:
        """The last k train examples, with their gold answers, as demos."""

        def estimate(self, knobs, work):
            return 0

        def compile(self, program, inputs):
            for _, predictor in program.named_predictors():
                predictor.demos = list(inputs.train[-inputs.knobs["k"]:])
            return program
    '''
)

TASK = textwrap.dedent(
    """
    name: sums
    description: Small sums, answered in Roman numerals.
    citation: Made up for this test.
    license: CC0
    source:
      format: csv
      files: sums.csv
    id: id
    inputs:
      question: question
    answer:
      type: roman_numeral
      gold: answer
    split:
      seed: 1
      train: 20
      val: 20
    baseline:
      instructions: Answer with the sum in Roman numerals.
    """
)


def to_roman(n: int) -> str:
    values = [(50, "L"), (40, "XL"), (10, "X"), (9, "IX"), (5, "V"), (4, "IV"), (1, "I")]
    out = ""
    for value, letters in values:
        while n >= value:
            out, n = out + letters, n - value
    return out


def make_folder(tmp_path):
    ext = tmp_path / "ext"
    ext.mkdir()
    (ext / "roman.py").write_text(ROMAN)
    (ext / "last_k.py").write_text(LAST_K)
    rows = [{"id": str(i), "question": f"What is {i + 1} plus 2?", "answer": i + 3} for i in range(60)]
    with open(tmp_path / "sums.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["id", "question", "answer"])
        writer.writeheader()
        writer.writerows(rows)
    (tmp_path / "sums.yaml").write_text(TASK)
    return ext, {r["question"]: r for r in rows}


def test_a_user_answer_type_and_a_user_optimizer_run_end_to_end_and_score_what_was_planted(tmp_path):
    ext, rows = make_folder(tmp_path)
    right = {str(i) for i in range(60) if i % 3 != 0}  # the model knows two items in three

    def reply(prompt: str) -> str:
        question = max((q for q in rows if q in prompt), key=prompt.rfind)  # the item asked comes after the demos
        row = rows[question]
        value = row["answer"] if row["id"] in right else row["answer"] + 1
        return fill_fields(prompt, to_roman(value)) if "[[ ## " in prompt else f" {to_roman(value)}"

    with ScriptedServer(reply) as server:
        args = ["run", "--model", "openai/scripted", "--api-base", server.base_url, "--task", str(tmp_path / "sums.yaml"),
                "--programs-dir", str(ext), "--strategy", "predict", "--optimizer", "last_k", "--limit", "20",
                "--out", str(tmp_path / "out")]  # fmt: skip
        done = cli(*args)
        assert done.returncode == 0, done.stderr
        prompts = [json.dumps(r.get("messages") or r.get("prompt")) for r in server.requests]
        # the compiled program loads and scores again with the user's folder, and says what it needs without
        (program,) = (tmp_path / "out").glob("run-*/programs/*last_k*")
        again = cli("evaluate", str(program), "--split", "test", "--limit", "20", "--api-base", server.base_url,
                    "--tasks-dir", str(tmp_path), "--programs-dir", str(ext))  # fmt: skip
        assert again.returncode == 0, again.stderr
        without = cli("evaluate", str(program), "--api-base", server.base_url, "--tasks-dir", str(tmp_path))
        assert without.returncode == 1 and "an answer type from a user folder" in without.stderr

    (run_dir,) = (tmp_path / "out").iterdir()
    data = json.loads(cli("report", str(run_dir), "--format", "json").stdout)
    from promptopt.tasks import load_task_file

    task = load_task_file(tmp_path / "sums.yaml", [ext])
    for row in data["rows"]:
        ids = [e.id for e in task.examples(row["split"], 20)]
        assert row["score"] == sum(i in right for i in ids) / len(ids), row  # the planted share, parsed from Roman
        assert row["parse_failure_rate"] == 0.0
    test_share = sum(e.id in right for e in task.examples("test", 20)) / 20
    assert f"accuracy {100 * test_share:.1f}% " in again.stdout  # the loaded program scores what was planted
    compiled = [r for r in data["rows"] if r["optimizer"] == "last_k"]
    assert {r["split"] for r in compiled} == {"val", "test"}
    # the user's optimizer chose the demos: the last two train questions ride in every compiled prompt
    last_two = [e.inputs["question"] for e in task.examples("train")[-2:]]
    with_demos = [p for p in prompts if all(json.dumps(q)[1:-1] in p for q in last_two)]
    assert len(with_demos) == 40  # 20 val + 20 test calls of predict/last_k; none of the zero-shot ones


def test_user_entries_are_seen_only_by_the_calls_that_name_their_folder(tmp_path):
    ext, _ = make_folder(tmp_path)
    from promptopt import api

    assert "last_k" in api.available_optimizers([ext]) and "last_k" not in api.available_optimizers()
    assert "roman_numeral" in api.available_answer_types([ext]) and "roman_numeral" not in api.available_answer_types()
    without = cli("tasks", "validate", str(tmp_path / "sums.yaml"))
    assert without.returncode == 1
    assert "unknown answer type 'roman_numeral'; valid: exact_text, free_text, medec, multiple_choice" in without.stderr
    with_folder = cli("tasks", "validate", str(tmp_path / "sums.yaml"), "--programs-dir", str(ext))
    assert with_folder.returncode == 0, with_folder.stderr
    unknown = cli("run", "--task", str(tmp_path / "sums.yaml"), "--programs-dir", str(ext), "--optimizer", "last_j",
                  "--strategy", "predict", "--dry-run")  # fmt: skip
    assert unknown.returncode == 1
    assert "Unknown optimizer 'last_j'; valid optimizers are bootstrap, bootstrap_rs, gepa, labeled, last_k" in (
        unknown.stderr
    )


def test_records_carry_what_each_strategy_declared_and_emitted_and_the_report_reads_it(medqa, tmp_path):
    from promptopt.records import typed
    from promptopt.store import Store
    from promptopt.testing import shown_options

    n = 10
    items = medqa.examples("test", n)

    def reply(prompt: str) -> str:  # right under any option order: it names the gold text's letter
        ex = next(ex for ex in items if ex.inputs["question"] in prompt)
        shown = shown_options(prompt, ex.inputs["options"]) or ex.inputs["options"]
        letter = next(k for k, v in shown.items() if v == ex.inputs["options"][ex.gold])
        return fill_fields(prompt, letter) if "[[ ## " in prompt else f" {letter}"

    with ScriptedServer(reply) as server:
        args = ["run", "--model", "openai/scripted", "--api-base", server.base_url, "--limit", str(n), "--split",
                "test", "--strategy", "cot", "--strategy", "choice_shuffle:n=3,reasoning=false",
                "--out", str(tmp_path)]  # fmt: skip
        done = cli(*args)
        assert done.returncode == 0, done.stderr
    (run_dir,) = tmp_path.iterdir()
    info = json.loads((run_dir / "run.json").read_text())
    recs = Store(info["storage"]).records(info["run_id"])
    extras = {s: [e.model_dump(exclude_none=True) for e in g.extras] for s, g in typed(recs).groupby("strategy")}
    assert all(e["reasons"] is False and "reasoning" not in e for e in extras["baseline"])
    assert all(e["reasons"] is True and e["reasoning"] for e in extras["cot"])
    # choice_shuffle without reasoning declares it through its knob; its votes are under shuffled orders
    assert all(
        e["reasons"] is False and len(e["order_votes"]) == 3 and "votes" not in e for e in extras["choice_shuffle"]
    )
    data = json.loads(cli("report", str(run_dir), "--format", "json").stdout)
    (row,) = data["consistency"]
    assert row["n"] == n and row["orders"] == 3 and row["consistency"] == 1.0  # right under every order
    families = {r["family"] for r in data["sensitivity"]}
    assert families == {"all", "reasoning", "non-reasoning"}


def test_a_user_answer_type_that_declares_no_optional_hook_gets_every_hook_s_default(tmp_path):
    from promptopt.answers import HOOKS, answer_types

    (tmp_path / "roman.py").write_text(ROMAN)
    roman = answer_types([tmp_path])["roman_numeral"]
    assert {hook: getattr(roman, hook) for hook in HOOKS} == HOOKS | {"max_answer_tokens": 8}
    assert answer_types()["multiple_choice"].offers_options and not answer_types()["free_text"].offers_options
