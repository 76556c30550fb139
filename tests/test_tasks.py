from pathlib import Path

import pytest

from promptopt.errors import UserError
from promptopt.tasks import check_disjoint, load_task, load_task_file, stem_key


def test_medqa_loads_every_row_and_splits_them_without_sharing_a_question(medqa):
    splits = {s: medqa.examples(s) for s in ("train", "val", "test")}
    assert sum(len(v) for v in splits.values()) == 1273  # rows in the bundled file (SOURCE.md)
    assert (len(splits["train"]), len(splits["val"])) == (200, 300)
    keys = [{stem_key(e.inputs) for e in v} for v in splits.values()]
    assert not (keys[0] & keys[1] or keys[0] & keys[2] or keys[1] & keys[2])
    assert all(e.gold in e.inputs["options"] for v in splits.values() for e in v)


def test_the_split_is_the_same_on_every_load():
    first = [e.id for e in load_task("medqa").examples("test", 30)]
    again = [e.id for e in load_task("medqa").examples("test", 30)]
    assert first == again


def test_a_question_placed_in_two_splits_is_refused(medqa):
    ex = medqa.examples("test", 1)
    with pytest.raises(UserError, match="share 1 questions"):
        check_disjoint({"train": ex, "val": [], "test": ex})


def test_an_unknown_task_names_the_valid_ones():
    with pytest.raises(UserError, match="valid tasks are .*medmcqa, medqa, "):
        load_task("medqaa")


def test_a_spec_with_a_missing_column_names_the_file_and_the_field(tmp_path: Path):
    spec = (Path(__file__).parent.parent / "tasks" / "medqa.yaml").read_text()
    data = tmp_path / "test.jsonl"  # inside the task's folder: a task reads no file outside it
    data.write_bytes((Path(__file__).parent.parent / "tasks" / "data" / "medqa" / "test.jsonl").read_bytes())
    bad = spec.replace("data/medqa/test.jsonl", str(data)).replace("gold: answer_idx", "gold: answer_letter")
    path = tmp_path / "mine.yaml"
    path.write_text(bad)
    with pytest.raises(UserError, match=r"mine.yaml: field answer.gold names column 'answer_letter'"):
        load_task_file(path).rows()
