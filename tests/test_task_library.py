"""The task library: bundled benchmarks load with their documented counts, gold answers score as
the benchmarks score them, user tasks need no engine change, and leaky splits are stopped."""

import json
import os
import re
from pathlib import Path

import pytest
from conftest import cli

from promptopt.errors import UserError
from promptopt.hygiene import check, enforce, find_overlaps
from promptopt.tasks import Example, available_tasks, load_task, load_task_file
from promptopt.testing import ScriptedServer

SHARED = Path(os.environ.get("PROMPTOPT_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
NOT_BUNDLED = {"headqa": "PROMPTOPT_DATA_HEADQA", "medbullets": "PROMPTOPT_DATA_MEDBULLETS"}
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason=f"raw benchmark files not found at {SHARED}")

# (train, val, test) after each SOURCE.md's documented clean-ups, spelled out from its raw counts
EXPECTED = {
    "medqa": (200, 300, 1273 - 500),
    "medmcqa": (300 - 2, 300 - 3, 4183 - 600),  # 5 pool copies of test questions dropped
    "pubmedqa": (500 - 100, 100, 500),  # official 500 test PMIDs; the other 500 labelled are the pool
    "pubmedqa_open_book": (500 - 100, 100, 500),  # the same questions without their abstracts
    "mmlu_medical": (30 - 5, 123 - 2 - 14, 1089 - 78),  # cross-subject duplicates; dev/val copies of test
    "medcalc_bench": (100 - 11, 100 - 7, 1047 - 200),
    "medec": (574 - 150, 150, 925 - 328),  # the test file's 328 empty rows
    "gsm8k": (7473 - 300, 300, 1319),
    "mmlu_pro": (300, 300, 12032 - 600),
    "mmlu_pro_health": (100, 100, 818 - 200),
    "headqa": (2657 - 68 - 9, 1366 - 30 - 5, 2742 - 67),  # image questions; pool copies of test
    "medbullets": (50, 50, 308 - 10 - 100),  # 10 repeated questions kept once
    # val takes whole question groups (201 rows); pool rows nearly duplicating templated test questions dropped
    "medquad": (200 - 13, 201 - 13, 5932 - 401),
    # the source's splits (381, 55, 117), less each language's train/val near-duplicates of test cases
    "casimedicos_en": (381 - 16, 55 - 1, 117),
    "casimedicos_es": (381 - 30, 55 - 2, 117),
    "casimedicos_fr": (381 - 29, 55 - 0, 117),
    "casimedicos_it": (381 - 23, 55 - 2, 117),
    # the official test set's closed / open questions; train less its 2 flagged rows, val, and the
    # rows whose image a test item shows (no demo shows a test item's image)
    "vqa_rad": (1027 - 2 - 100 - 398, 100, 272),
    "vqa_rad_open": (770 - 2 - 100 - 229, 100, 179),
}


@pytest.fixture(autouse=True)
def _user_data(monkeypatch):
    """The two tasks promptopt does not bundle read the raw files from ../shared/data."""
    for name, var in NOT_BUNDLED.items():
        monkeypatch.setenv(var, str(SHARED / name))


def _load(name):
    if name in NOT_BUNDLED and not (SHARED / name).is_dir():
        pytest.skip(f"{name} is not bundled and {SHARED / name} is absent")
    return load_task(name)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_bundled_task_loads_with_the_counts_its_source_documents(name):
    task = _load(name)
    sizes = tuple(len(task.examples(s)) for s in ("train", "val", "test"))
    assert sizes == EXPECTED[name]
    report = check(task)
    assert not report.overlaps and not report.duplicate_ids  # every bundled task can run as shipped
    if task.spec.answer.type == "multiple_choice":
        assert all(ex.gold in ex.inputs["options"] for s in task.splits.values() for ex in s)


def test_every_bundled_task_has_a_test_for_its_counts():
    assert set(available_tasks()) == set(EXPECTED)


def test_tasks_list_prints_every_task_with_its_answer_type_and_split_sizes():
    done = cli("tasks", "list")
    assert done.returncode == 0, done.stderr
    lines = {line.split()[0]: line.split() for line in done.stdout.splitlines()[3:] if line.strip()}  # title, head, rule
    assert lines["medqa"][1:5] == ["multiple_choice", "200", "300", "773"]
    assert lines["pubmedqa"][1:5] == ["yes_no_maybe", "400", "100", "500"]
    assert lines["medec"][1:5] == ["medec", "424", "150", "597"]


def test_a_task_without_its_data_says_where_to_get_it_in_one_sentence(monkeypatch):
    monkeypatch.delenv("PROMPTOPT_DATA_HEADQA")
    with pytest.raises(UserError, match=r"set the environment variable PROMPTOPT_DATA_HEADQA"):
        load_task("headqa").examples("test")


def test_tasks_show_renders_three_test_rows_as_the_baseline_prompt():
    done = cli("tasks", "show", "pubmedqa")
    assert done.returncode == 0, done.stderr
    assert "sizes: train 400, val 100, test 500" in done.stdout
    assert done.stdout.count("Answer:") == 3
    assert "answer the research question with one word" in done.stdout


# --- leakage -------------------------------------------------------------------------------


def _medbullets_op4_to_op5(tmp_path: Path) -> Path:
    spec = (Path(__file__).parents[1] / "tasks" / "medbullets.yaml").read_text()
    spec = spec.replace(
        "  files: medbullets_op5.csv", "  files:\n    train: medbullets_op4.csv\n    test: medbullets_op5.csv"
    )
    spec = re.sub(r"split:\n(  .*\n)+", "split:\n  val: 30\n", spec)
    path = tmp_path / "medbullets_leak.yaml"
    path.write_text(spec.replace("name: medbullets", "name: medbullets_leak"))
    return path


@needs_shared
def test_training_on_medbullets_op4_and_testing_on_op5_is_stopped_naming_the_298_shared_stems(tmp_path):
    task = load_task_file(_medbullets_op4_to_op5(tmp_path))
    assert len(task.examples("test")) == 298  # op5 without its 10 repeated questions
    with pytest.raises(UserError, match=r"Task medbullets_leak: 298 test examples duplicate or nearly duplicate"):
        enforce(task)
    # op4 drops one distractor, so no pair is an exact copy: only the near-duplicate measure sees them
    assert all(o.similarity < 1.0 for o in check(task).overlaps)
    assert enforce(task, allow_overlap=True)["test_examples"] == 298
    done = cli("tasks", "validate", str(tmp_path / "medbullets_leak.yaml"))
    assert done.returncode == 1 and "298 test examples" in done.stderr


def test_template_notes_that_differ_only_in_their_values_are_not_called_duplicates():
    def ex(i, hr):
        note = f"Patient has a heart rate of {hr} bpm and a QT interval of 330 msec."
        return Example(
            id=str(i), inputs={"patient_note": note, "question": "What is the corrected QT interval?"}, gold="1"
        )

    assert find_overlaps({"train": [ex(1, 72)], "test": [ex(2, 104)]}) == []
    assert len(find_overlaps({"train": [ex(1, 72)], "test": [ex(2, 72)]})) == 1


# --- gold answers score as the benchmarks score them ----------------------------------------


def _written(task, ex, right: bool) -> str:
    """The gold answer (or a wrong one) as a model would write it."""
    kind = task.spec.answer.type
    if kind == "multiple_choice":
        letters = list(ex.inputs["options"])
        letter = ex.gold if right else letters[(letters.index(ex.gold) + 1) % len(letters)]
        return f"The answer is ({letter})."
    if kind == "yes_no_maybe":
        word = ex.gold if right else {"yes": "no", "no": "maybe", "maybe": "yes"}[ex.gold]
        return f"{word.capitalize()}, based on the results."
    if kind == "number":
        gold = json.loads(ex.gold) if ex.gold.startswith("{") else {"value": ex.gold}
        value = str(gold["value"])
        if right:
            return f"Answer: {value}"
        if re.fullmatch(r"\d+/\d+/\d{4}", value):
            m, d, y = value.split("/")
            return f"Answer: {m}/{d}/{int(y) + 1}"
        numbers = re.findall(r"\d+", value)
        if len(numbers) == 2:  # (weeks, days)
            return f"Answer: ({int(numbers[0]) + 1} weeks, {numbers[1]} days)"
        number = float(value.replace(",", ""))
        return f"Answer: {number + max(1.0, abs(number))}"
    if kind == "medec":
        gold = json.loads(ex.gold)
        if gold["flag"] == 0:
            return "CORRECT" if right else "1 The patient was started on aspirin."
        return f"{gold['sentence_id']} {gold['correction']}" if right else "CORRECT"
    if kind == "free_text":  # the reference after a marker, or words it does not hold
        return f"Answer: {ex.gold}" if right else "Xylophone quartz zephyr."
    if kind == "exact_text":  # the answer in another case, with a full stop; or the other yes/no
        return f"{ex.gold.upper()}." if right else {"yes": "no", "no": "yes"}.get(ex.gold.strip().lower(), "xylophone")
    raise AssertionError(kind)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_the_gold_answer_through_the_tasks_own_parser_scores_one_and_a_wrong_one_zero(name):
    task = _load(name)
    kind = task.answer_type
    for ex in task.examples("test", 400) + task.examples("train", 100):
        right = kind.parse(_written(task, ex, True), ex.inputs)
        wrong = kind.parse(_written(task, ex, False), ex.inputs)
        assert kind.score(right, ex.gold) == 1.0, (ex.id, ex.gold, right)
        assert wrong is not None and kind.score(wrong, ex.gold) == 0.0, (ex.id, ex.gold, wrong)


# --- user tasks ----------------------------------------------------------------------------

USER_SPEC = """\
name: capitals
description: Capital cities.
citation: none
license: CC0
source:
  format: csv
  files: {files}
id: qid
inputs:
  question: prompt
  options: [first, second, third]
answer:
  type: multiple_choice
  gold: right
split:
  seed: 1
  train: 2
  val: 3
baseline:
  instructions: Pick the capital. Reply with its letter.
"""


def _user_task(folder: Path, rows: int = 12, files: str = "capitals.csv") -> Path:
    folder.mkdir(exist_ok=True)
    lines = ["qid,prompt,first,second,third,right"]
    lines += [
        f"c{i},Which city is the capital of country number {i}?,Town {i},City {i},Village {i},{'ABC'[i % 3]}"
        for i in range(rows)
    ]
    (folder / "capitals.csv").write_text("\n".join(lines) + "\n")
    (folder / "capitals.yaml").write_text(USER_SPEC.format(files=files))
    return folder


def _oracle(task) -> ScriptedServer:
    gold = {ex.inputs["question"]: ex.gold for s in task.splits.values() for ex in s}
    return ScriptedServer(lambda prompt: " " + next(g for q, g in gold.items() if q in prompt))


def test_a_user_task_from_a_yaml_and_a_csv_runs_end_to_end_without_an_engine_change(tmp_path):
    folder = _user_task(tmp_path / "mytasks")
    task = load_task("capitals", [folder])
    with _oracle(task) as server:
        done = cli(
            "run", "--tasks-dir", str(folder), "--task", "capitals", "--model", "openai/scripted",
            "--api-base", server.base_url, "--strategy", "baseline", "--out", str(tmp_path / "runs"),
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert server.calls == 3 + 7  # val and test, one call each
    run_dir = done.stdout.strip().splitlines()[-1].removeprefix("Run folder: ")
    rows = json.loads(cli("report", run_dir, "--format", "json").stdout)["rows"]
    assert {(r["task"], r["split"], r["n"], r["score"]) for r in rows} == {
        ("capitals", "val", 3, 1.0),
        ("capitals", "test", 7, 1.0),
    }


def test_user_folders_can_also_come_from_an_environment_variable(tmp_path, monkeypatch):
    folder = _user_task(tmp_path / "mytasks")
    monkeypatch.setenv("PROMPTOPT_TASKS_DIR", os.pathsep.join([str(tmp_path / "elsewhere"), str(folder)]))
    (tmp_path / "elsewhere").mkdir()
    assert "capitals" in available_tasks()
    done = cli("tasks", "list", env={"PROMPTOPT_TASKS_DIR": str(folder)})
    assert re.search(r"^capitals\s+multiple_choice\s+2\s+3\s+7\s+CC0 *$", done.stdout, re.MULTILINE)


def test_a_run_whose_test_set_repeats_training_questions_stops_unless_allowed_and_then_warns(tmp_path):
    folder = _user_task(tmp_path / "mytasks", files="{train: capitals.csv, test: capitals.csv}")
    spec = (folder / "capitals.yaml").read_text().replace("  train: 2\n", "")
    (folder / "capitals.yaml").write_text(spec.replace("  files: {train", "  files: {train").replace("id: qid\n", ""))
    task = load_task("capitals", [folder])
    args = ["run", "--tasks-dir", str(folder), "--task", "capitals", "--model", "openai/scripted",
            "--strategy", "baseline", "--out", str(tmp_path / "runs"), "--limit", "2"]  # fmt: skip
    with _oracle(task) as server:
        stopped = cli(*args, "--api-base", server.base_url)
        assert stopped.returncode == 1 and server.calls == 0
        lines = stopped.stderr.strip().splitlines()
        assert len(lines) == 1 and "Task capitals: 12 test examples duplicate" in lines[0], stopped.stderr
        assert "--allow-overlap" in lines[0]
        allowed = cli(*args, "--api-base", server.base_url, "--allow-overlap")
        assert allowed.returncode == 0, allowed.stderr
    assert "WARNING: task capitals ran with --allow-overlap: 12 test examples" in allowed.stdout
    run_dir = allowed.stdout.strip().splitlines()[-1].removeprefix("Run folder: ")
    assert "12 test examples" in json.loads(cli("report", run_dir, "--format", "json").stdout)["warnings"][0]


# --- bad specs -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change, field",
    [
        (lambda s: s.replace("license: CC0\n", ""), "field license: this required field is missing"),
        (
            lambda s: s.replace("type: multiple_choice", "type: multiple_choise"),
            "field answer.type: unknown answer type 'multiple_choise'",
        ),
        (lambda s: s.replace("files: capitals.csv", "files: capitols.csv"), "field source.files names"),
        (lambda s: s.replace("gold: right", "gold: correct"), "field answer.gold names column 'correct'"),
        (
            lambda s: s.replace("[first, second, third]", "[first, second, fourth]"),
            "field inputs.options[2] names column 'fourth'",
        ),
        (lambda s: s.replace("  val: 3\n", ""), "field split.val: is needed to carve one pool"),
    ],
)
def test_a_bad_spec_is_refused_in_one_sentence_naming_the_file_and_the_field(tmp_path, change, field):
    folder = _user_task(tmp_path / "mytasks")
    spec = folder / "capitals.yaml"
    spec.write_text(change(spec.read_text()))
    done = cli("tasks", "validate", str(spec))
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and str(spec) in lines[0] and field in lines[0], done.stderr
