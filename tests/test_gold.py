"""Gold answers are checked before they are trusted: every gold, in the shapes real data gives
it, becomes an answer its task's own answer type reads and scores 1.0, or the task is refused in
one sentence naming the file and the field, before any LM call."""

import json
import os
from pathlib import Path

import pytest
from conftest import cli

from promptopt.errors import UserError
from promptopt.tasks import available_tasks, check_gold, load_task, load_task_file
from promptopt.testing import ScriptedServer, structured_answer

SHARED = Path(os.environ.get("PROMPTOPT_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
SPEC = """\
name: {name}
description: Capital cities.
citation: none
license: CC0
source:
  format: {format}
  files: {files}
id: qid
inputs:
  question: question
{options}answer:
  type: {type}
  gold: label
{gold_is}split:
  seed: 1
  train: 2
  val: 3
baseline:
  instructions: Answer the question.
"""


def _task(folder: Path, rows: list[dict], type: str = "multiple_choice", gold_is: str = "") -> Path:
    """A user task: a YAML file and a JSON Lines file of `rows` (qid, question, options, label)."""
    folder.mkdir(exist_ok=True)
    (folder / "quiz.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    options = "  options: options\n" if "options" in rows[0] else ""
    spec = SPEC.format(
        name="quiz", format="jsonl", files="quiz.jsonl", options=options, type=type,
        gold_is=f"  gold_is: {gold_is}\n" if gold_is else "",
    )  # fmt: skip
    (folder / "quiz.yaml").write_text(spec)
    return folder / "quiz.yaml"


def _capitals(n: int = 12, label=lambda letter: letter) -> list[dict]:
    return [
        {
            "qid": f"q{i}",
            "question": f"Which city is the capital of country number {i}?",
            "options": [f"Town {i}", f"City {i}", f"Village {i}"],
            "label": label("ABC"[i % 3]),
        }
        for i in range(n)
    ]


def _one_sentence(done, message: str) -> None:
    assert done.returncode == 1, done.stdout
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], done.stderr


def test_a_gold_column_of_one_element_lists_scores_what_a_model_that_knows_the_answers_was_made_to_score(tmp_path):
    rows = _capitals(label=lambda letter: [letter])  # "label": ["B"], as some hub datasets ship it
    path = _task(tmp_path / "mytasks", rows)
    gold = {r["question"]: r["label"][0] for r in rows}
    right = {"q0", "q3", "q4", "q7", "q9", "q10"}
    qid = {r["question"]: r["qid"] for r in rows}

    def reply(prompt: str) -> str:
        question = next(q for q in gold if q in prompt)
        letter = gold[question] if qid[question] in right else "ABC"[("ABC".index(gold[question]) + 1) % 3]
        return structured_answer(letter) if "[[ ## " in prompt else f" {letter}"

    with ScriptedServer(reply) as server:
        done = cli(
            "run", "--model", "openai/scripted", "--api-base", server.base_url, "--task", str(path),
            "--strategy", "baseline", "--out", str(tmp_path / "runs"), "--limit", "5",
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
    task = load_task_file(path)
    expected = {s: [ex.id in right for ex in task.examples(s, 5)] for s in ("val", "test")}
    run_dir = done.stdout.strip().splitlines()[-1].removeprefix("Run folder: ")
    rows = json.loads(cli("report", run_dir, "--format", "json").stdout)["rows"]
    scores = {r["split"]: (r["n"], r["score"]) for r in rows}
    assert scores == {s: (len(hits), pytest.approx(sum(hits) / len(hits))) for s, hits in expected.items()}
    assert 0 < sum(expected["test"]) < len(expected["test"])  # the run shows right and wrong answers


def test_golds_in_the_shapes_real_data_uses_become_their_option_letter(tmp_path):
    shapes = ["['B']", ' ["C"] ', " a ", "b", "C", "['A']"]  # Python and JSON list literals, spaces, lower case
    rows = _capitals(6)
    for row, shape in zip(rows, shapes, strict=True):
        row["label"] = shape
    task = load_task_file(_task(tmp_path / "mytasks", rows))
    golds = {ex.id: ex.gold for ex in task.rows()}
    assert golds == {"q0": "B", "q1": "C", "q2": "A", "q3": "B", "q4": "C", "q5": "A"}
    check_gold(task)


def test_a_list_of_several_answers_is_any_of_for_exact_text(tmp_path):
    rows = [
        {"qid": f"q{i}", "question": f"Name the capital of country {i}.", "label": [f"City {i}", f"Town {i}"]}
        for i in range(12)
    ]
    task = load_task_file(_task(tmp_path / "mytasks", rows, type="exact_text"))
    check_gold(task)
    ex = next(ex for ex in task.rows() if ex.id == "q4")
    kind = task.answer_type
    assert kind.score(kind.parse("Town 4", ex.inputs), ex.gold) == 1.0
    assert kind.score(kind.parse("The answer is city 4.", ex.inputs), ex.gold) == 1.0
    assert kind.score(kind.parse("Village 4", ex.inputs), ex.gold) == 0.0


def test_a_list_of_several_answers_is_refused_by_name_for_multiple_choice(tmp_path):
    rows = _capitals()
    for row in rows[3:7]:
        row["label"] = [row["label"], "A"]
    path = _task(tmp_path / "mytasks", rows)
    done = cli("tasks", "validate", str(path))
    _one_sentence(done, f"Task file {path}: field answer.gold holds a list of 2 answers in 4 rows (e.g. id 'q")
    assert done.stderr.strip().endswith("answer type multiple_choice takes one answer per row.")


@pytest.mark.parametrize(
    ("type", "gold_is", "bad", "message"),
    [
        pytest.param("multiple_choice", "", "Z", "is not one of their options (e.g. id 'q4' has 'Z', options A, B, "
                     "C); give each row the letter of one of its options, or set answer.gold_is (index0, index1, "
                     "option_key, option_text).", id="letter"),
        pytest.param("multiple_choice", "index1", "7", "is not one of their options (e.g. id 'q4' has '7', options "
                     "A, B, C); give each row the 1-based index of one of its options.", id="index1"),
        pytest.param("number", "", "about 5", "is not a valid number answer (e.g. id 'q4' has 'about 5'); give each "
                     "row a number", id="number"),
        pytest.param("yes_no_maybe", "", "perhaps", "is not a valid yes_no_maybe answer (e.g. id 'q4' has "
                     "'perhaps'); give each row yes, no or maybe.", id="yes_no_maybe"),
        pytest.param("exact_text", "", "?!", "is not a valid exact_text answer (e.g. id 'q4' has '?!'); give each "
                     "row a non-empty", id="exact_text"),
    ],
)  # fmt: skip
def test_a_gold_its_answer_type_cannot_take_is_refused_naming_the_file_the_field_and_an_example(
    tmp_path, type, gold_is, bad, message
):
    good = {"multiple_choice": "B", "number": "42", "yes_no_maybe": "yes", "exact_text": "Paris"}[type]
    good = "2" if gold_is == "index1" else good
    rows = _capitals()
    for row in rows:
        row["label"] = bad if row["qid"] in ("q4", "q5", "q8") else good
        if type != "multiple_choice":
            del row["options"]
    path = _task(tmp_path / "mytasks", rows, type=type, gold_is=gold_is)
    task = load_task_file(path)
    first = next(ex.id for s in ("train", "val", "test") for ex in task.splits[s] if ex.id in ("q4", "q5", "q8"))
    with pytest.raises(UserError) as refused:
        check_gold(task)
    text = str(refused.value)
    assert text.startswith(f"Task file {path}: field answer.gold gives 3 rows a gold answer that ")
    assert message.replace("'q4'", repr(first)) in text


def test_tasks_validate_refuses_a_gold_outside_its_options_in_one_sentence(tmp_path):
    rows = _capitals()
    for row in rows[5:8]:
        row["label"] = "Z"
    path = _task(tmp_path / "mytasks", rows)
    done = cli("tasks", "validate", str(path))
    _one_sentence(done, f"Task file {path}: field answer.gold gives 3 rows a gold answer that is not one of their ")
    assert "has 'Z', options A, B, C); give each row the letter of one of its options" in done.stderr


# Passes once promptopt.engine.validate_plan calls check_gold (the other engineer adds that line).
def test_promptopt_run_refuses_a_gold_outside_its_options_before_any_call(tmp_path):
    rows = _capitals()
    for row in rows[5:8]:
        row["label"] = "Z"
    path = _task(tmp_path / "mytasks", rows)
    with ScriptedServer(lambda prompt: " A") as server:
        done = cli(
            "run", "--model", "openai/scripted", "--api-base", server.base_url, "--task", str(path),
            "--strategy", "baseline", "--out", str(tmp_path / "runs"),
        )  # fmt: skip
        _one_sentence(done, f"Task file {path}: field answer.gold gives 3 rows a gold answer that is not one of ")
        assert server.calls == 0


@pytest.mark.parametrize("name", sorted(available_tasks()))
def test_every_bundled_task_passes_its_gold_self_check(name, monkeypatch):
    task = load_task(name)
    var = task.spec.source.env  # headqa and medbullets: raw files in ../shared/data, as test_task_library reads them
    if var and not os.environ.get(var):
        if not (SHARED / name).is_dir():
            pytest.skip(f"{name} is not bundled and {SHARED / name} is absent")
        monkeypatch.setenv(var, str(SHARED / name))
    check_gold(task)
