"""No test question hides in train or val behind reordered options or numbers written out, in
carved splits and in tasks that come with their own split files alike."""

from pathlib import Path

from conftest import cli

from promptopt.hygiene import check, find_overlaps
from promptopt.tasks import Example
from promptopt.testing import ScriptedServer

SPEC = """\
name: capitals
description: Capital cities.
citation: none
license: CC0
source:
  format: csv
  files:
    train: train.csv
    test: test.csv
id: qid
inputs:
  question: prompt
  options: [first, second, third]
answer:
  type: multiple_choice
  gold: right
split:
  val: 2
baseline:
  instructions: Pick the capital. Reply with its letter.
"""


def _own_split_files(folder: Path) -> Path:
    """A user task with its own train and test files; test asks train's "Capital of France?" with
    the options in another order."""
    folder.mkdir()
    header = "qid,prompt,first,second,third,right"
    train = [f"t{i},Which city is the capital of country number {i}?,Town {i},City {i},Village {i},B" for i in range(6)]
    test = [
        f"s{i},Which city is the capital of country number {i + 10}?,Town {i},City {i},Village {i},A" for i in range(6)
    ]
    (folder / "train.csv").write_text("\n".join([header, *train, "t9,Capital of France?,Paris,Lyon,Nice,A"]) + "\n")
    (folder / "test.csv").write_text("\n".join([header, *test, "s9,Capital of France?,Nice,Paris,Lyon,B"]) + "\n")
    (folder / "capitals.yaml").write_text(SPEC)
    return folder / "capitals.yaml"


def test_a_test_file_repeating_a_train_question_with_reordered_options_is_refused_before_any_call(tmp_path):
    path = _own_split_files(tmp_path / "mytasks")
    done = cli("tasks", "validate", str(path))
    assert done.returncode == 1, done.stdout
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Task capitals: 1 test examples duplicate or nearly duplicate" in lines[0]
    assert "(1 exactly; e.g. test s9 ~ " in lines[0] and " t9)" in lines[0]
    with ScriptedServer(lambda prompt: " A") as server:
        done = cli(
            "run", "--model", "openai/scripted", "--api-base", server.base_url, "--task", str(path),
            "--strategy", "baseline", "--out", str(tmp_path / "runs"),
        )  # fmt: skip
        assert done.returncode == 1 and server.calls == 0, done.stderr
    assert "Task capitals: 1 test examples duplicate" in done.stderr and " t9" in done.stderr


def _ex(id: str, question: str, options: dict[str, str] | None = None) -> Example:
    return Example(id=id, inputs={"question": question, **({"options": options} if options else {})}, gold="A")


def test_a_short_stem_whose_options_are_reordered_is_an_exact_duplicate():
    pool = [_ex("p1", "Capital of France?", {"A": "Paris", "B": "Lyon", "C": "Nice"})]
    test = [_ex("t1", "Capital of France?", {"A": "Nice", "B": "Paris", "C": "Lyon"})]
    found = find_overlaps({"train": pool, "val": [], "test": test})
    assert [(o.test_id, o.pool_id, o.similarity) for o in found] == [("t1", "p1", 1.0)]


def test_a_number_written_out_does_not_hide_a_duplicate_but_a_different_number_still_differs():
    pool = [_ex("p1", "A nurse walks five miles in twenty-one minutes. How fast does she walk, in miles per hour?")]
    same = _ex("t1", "A nurse walks 5 miles in 21 minutes. How fast does she walk, in miles per hour?")
    near = _ex("t2", "A nurse walks 5 miles in 21 minutes. How fast does she walk, in miles per hour, on average?")
    other = _ex("t3", "A nurse walks 6 miles in 21 minutes. How fast does she walk, in miles per hour?")
    found = find_overlaps({"train": pool, "val": [], "test": [same, near, other]})
    assert {o.test_id: o.similarity == 1.0 for o in found} == {"t1": True, "t2": False}


def test_a_question_repeated_inside_a_split_with_reordered_options_is_counted():
    class Task:  # what `check` reads of a task
        name = "capitals"
        splits = {
            "train": [],
            "val": [],
            "test": [
                _ex("t1", "Capital of France?", {"A": "Paris", "B": "Lyon", "C": "Nice"}),
                _ex("t2", "Capital of France?", {"A": "Lyon", "B": "Nice", "C": "Paris"}),
            ],
        }

    assert check(Task()).repeated_questions == {"test": 1}
