"""The whole path — CLI, LiteLLM, parsing, store, report — against a scripted model over HTTP."""

import json
import random
from pathlib import Path

from conftest import cli, cli_many, exam_server

from promptopt.sections.leaderboard import CEILING_FIELDS
from promptopt.sections.rows import ROW_FIELDS
from promptopt.testing import ScriptedHTTPError


def _run(server, out, *extra):
    return cli("run", "--model", "openai/scripted", "--api-base", server.base_url, "--out", str(out), *extra)


def test_a_model_right_on_exactly_k_of_n_questions_is_reported_at_k_over_n(medqa, tmp_path):
    n = 12
    test_ids = [e.id for e in medqa.examples("test", n)]
    val_ids = [e.id for e in medqa.examples("val", n)]
    right = set(random.Random(7).sample(test_ids, 5)) | set(val_ids[:9])
    with exam_server(medqa, right, n) as server:
        done = _run(server, tmp_path, "--limit", str(n))
        assert done.returncode == 0, done.stderr
        assert server.calls == 4 * n  # two strategies, two splits, one call each
    run_dir = done.stdout.strip().splitlines()[-1].removeprefix("Run folder: ")

    report = cli("report", run_dir, "--format", "json")
    assert report.returncode == 0, report.stderr
    data = json.loads(report.stdout)
    rows = {(r["strategy"], r["split"]): r for r in data["rows"]}
    assert all(list(r) == ROW_FIELDS for r in data["rows"])
    assert [list(c) for c in data["ceilings"]] == [CEILING_FIELDS]
    for strategy in ("baseline", "cot"):
        assert rows[(strategy, "test")]["n"] == n
        assert rows[(strategy, "test")]["score"] == 5 / n
        assert rows[(strategy, "val")]["score"] == 9 / n
        low, high = rows[(strategy, "test")]["ci_low"], rows[(strategy, "test")]["ci_high"]
        assert 0 <= low < 5 / n < high <= 1
        assert rows[(strategy, "test")]["parse_failure_rate"] == 0
        assert rows[(strategy, "test")]["lm_calls"] == n
    ceiling = data["ceilings"][0]
    assert ceiling["baseline_score"] == ceiling["ceiling_score"] == 5 / n
    assert ceiling["verdict"] == "tie"
    # the text table shows the same figure, read back from the store without any LM call
    assert "41.7 [" in cli("report", run_dir).stdout


def test_the_same_command_again_makes_no_lm_call(medqa, tmp_path):
    with exam_server(medqa, set(), 3) as server:
        assert _run(server, tmp_path, "--limit", "3", "--strategy", "baseline").returncode == 0
        first = server.calls
        assert _run(server, tmp_path, "--limit", "3", "--strategy", "baseline").returncode == 0
        assert (first, server.calls) == (6, 6)


def test_a_run_that_fails_halfway_keeps_its_records_and_resumes_without_repeating_calls(medqa, tmp_path):
    n = 6
    with exam_server(medqa, set(), n) as good:
        answer = good.reply
        state = {"calls": 0}

        def flaky(prompt):
            state["calls"] += 1
            if state["calls"] > 4:
                raise ScriptedHTTPError(401, "key revoked")  # from the 5th call on, the key is refused
            return answer(prompt)

        good.reply = flaky
        first = _run(good, tmp_path, "--limit", str(n), "--strategy", "baseline")
        assert first.returncode == 1
        assert "rejected the credentials" in first.stderr
        good.reply = answer
        before = good.calls
        second = _run(good, tmp_path, "--limit", str(n), "--strategy", "baseline")
        assert second.returncode == 0, second.stderr
        assert good.calls - before == 2 * n - 4  # only the examples without a record


def test_an_unknown_task_a_bad_model_and_an_unreachable_endpoint_each_say_so_in_one_sentence(tmp_path):
    cases = {
        ("--task", "medqaa"): "Unknown task 'medqaa'; valid tasks are",
        ("--model", "gpt4"): "Model 'gpt4' has no provider prefix",
        ("--model", "nosuchprovider/x"): "names a provider LiteLLM does not know",
        (
            "--model",
            "openai/x",
            "--api-base",
            "http://127.0.0.1:9/v1",
        ): "Could not reach --api-base http://127.0.0.1:9/v1",
        ("--strategy", "telepathy"): "Unknown strategy 'telepathy'; valid strategies are",
    }
    for (_args, message), done in zip(cases.items(), cli_many(*[["run", "--out", str(tmp_path), *a] for a in cases]),
                                     strict=True):  # fmt: skip
        assert done.returncode == 1
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], done.stderr


def test_a_sweep_file_sets_the_run_and_flags_given_beside_it_win(medqa, tmp_path):
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(
        "models: [openai/scripted]\n"
        "tasks: [medqa]\n"
        "strategies: [baseline, predict]\n"
        "splits: [test]\n"
        "limit: 4\n"
        f"out: {tmp_path / 'runs'}\n"
    )
    with exam_server(medqa, set(), 6) as server:
        done = cli("run", str(sweep), "--api-base", server.base_url, "--limit", "3")
        assert done.returncode == 0, done.stderr
        assert server.calls == 2 * 3  # two strategies from the file, test only, the flag's limit
    run_dir = done.stdout.strip().splitlines()[-1].removeprefix("Run folder: ")
    assert run_dir.startswith(str(tmp_path / "runs"))
    rows = json.loads(cli("report", run_dir, "--format", "json").stdout)["rows"]
    assert {(r["strategy"], r["split"], r["n"]) for r in rows} == {("baseline", "test", 3), ("predict", "test", 3)}


def test_a_bad_sweep_file_is_refused_in_one_sentence_naming_the_setting(tmp_path):
    cases = {
        "modles: [openai/x]\n": "unknown setting 'modles'; valid settings are models, tasks,",
        "limit: 0\n": "setting limit: Input should be greater than or equal to 1",
        "splits: [train]\n": "setting splits.0: Input should be 'val' or 'test'",
        "- just a list\n": "must hold a mapping of settings, not list",
        "models: [openai/x\n": "is not valid YAML",
    }
    for text, message in cases.items():
        sweep = tmp_path / "sweep.yaml"
        sweep.write_text(text)
        done = cli("run", str(sweep), "--out", str(tmp_path))
        assert done.returncode == 1, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and f"Sweep file {sweep}" in lines[0] and message in lines[0], done.stderr
    missing = cli("run", str(tmp_path / "nope.yaml"), "--out", str(tmp_path))
    assert missing.returncode == 1 and "does not exist" in missing.stderr


USER_STRATEGY = """
import dspy

from promptopt.registry import ANY, strategy
from promptopt.signatures import as_text, signature_for


@strategy("terse", answer_types={ANY}, calls=lambda knobs, n_options: 1)
class Terse(dspy.Module):
    def __init__(self, task):
        super().__init__()
        self.answer_type = task.answer_type
        self.predict = dspy.Predict(signature_for(task).with_instructions("Answer with the letter only."))

    def forward(self, **inputs):
        out = self.predict(**as_text(inputs))
        return dspy.Prediction(answer=self.answer_type.parse(out.answer, inputs), raw=out.answer)
"""


def test_a_user_strategy_runs_and_its_program_evaluates_only_with_its_folder_named(medqa, tmp_path):
    mine = tmp_path / "my_programs"
    mine.mkdir()
    (mine / "terse.py").write_text(USER_STRATEGY)
    with exam_server(medqa, {e.id for e in medqa.examples("test", 4)}, 4) as server:
        done = _run(server, tmp_path, "--programs-dir", str(mine), "--strategy", "terse", "--limit", "4")
        assert done.returncode == 0, done.stderr
        run_dir = Path(done.stdout.strip().splitlines()[-1].removeprefix("Run folder: "))
        (program,) = [p for p in (run_dir / "programs").iterdir() if "terse" in p.name]
        refused = cli("evaluate", str(program), "--api-base", server.base_url, "--limit", "4")
        scored = cli(
            "evaluate", str(program), "--api-base", server.base_url, "--limit", "4", "--programs-dir", str(mine)
        )
    assert (
        refused.returncode == 1 and "--programs-dir" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    )
    assert scored.returncode == 0, scored.stderr
    assert "accuracy 100.0%" in scored.stdout  # the user's program, bound to the endpoint, answered all 4


def test_one_model_name_behind_two_endpoints_never_shares_answers(medqa, tmp_path):
    with exam_server(medqa, set(), 3) as first, exam_server(medqa, set(), 3) as second:
        args = ("--limit", "3", "--strategy", "baseline", "--split", "test", "--storage", f"sqlite:///{tmp_path}/s.db")
        assert _run(first, tmp_path, *args).returncode == 0
        assert _run(second, tmp_path, *args).returncode == 0
        assert (first.calls, second.calls) == (3, 3)  # the second endpoint was asked, not answered from the store
    rows = json.loads(cli("report", f"sqlite:///{tmp_path}/s.db", "--format", "json").stdout)["rows"]
    assert len({r["model"] for r in rows}) == 2  # one model identity per endpoint
