"""Bad input gets one clear sentence and a non-zero exit; secrets never reach a file."""

import json
import re
import socket
from pathlib import Path

import pytest
from conftest import cli, cli_many, exam_server
from test_task_library import _user_task

from promptopt.testing import ScriptedServer

REFUSED = "http://127.0.0.1:9/v1"  # nothing listens on port 9
SECRET = "sk-test-SECRET123"


def _one_sentence(done, message: str) -> None:
    assert done.returncode == 1, done.stdout
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], done.stderr


def _broken_tasks(root: Path) -> dict[str, Path]:
    """One user task folder per kind of bad data."""
    folders = {}
    root.mkdir()
    for kind in ("yaml", "empty", "duplicate"):
        folders[kind] = _user_task(root / kind)
    spec = folders["yaml"] / "capitals.yaml"
    spec.write_text(spec.read_text().replace("inputs:", "inputs: [unclosed"))
    spec = folders["empty"] / "capitals.yaml"
    spec.write_text(spec.read_text().replace("val: 3", "val: 10"))  # 12 rows: 2 train, 10 val, 0 test
    data = folders["duplicate"] / "capitals.csv"
    data.write_text(re.sub(r"\nc\d+,", "\nc0,", data.read_text()))  # every row has the id c0
    return folders


@pytest.fixture
def listening():
    """A live endpoint that counts calls: each case below must be refused before any."""
    with ScriptedServer(lambda prompt: "A") as server:
        yield server


def test_each_bad_input_is_refused_in_one_sentence_before_any_call(tmp_path, listening):
    server, listening = listening, listening.base_url
    tasks = _broken_tasks(tmp_path / "tasks")
    (tmp_path / "a-file").write_text("")
    user = ["--model", "openai/x", "--api-base", listening, "--strategy", "baseline", "--task", "capitals"]
    cases = {
        "malformed YAML": (
            ["--tasks-dir", str(tasks["yaml"]), *user],
            f"Task file {tasks['yaml'] / 'capitals.yaml'} is not valid YAML",
        ),
        "empty split": (
            ["--tasks-dir", str(tasks["empty"]), *user],
            "Task capitals: its test split is empty",
        ),
        "duplicate ids": (
            ["--tasks-dir", str(tasks["duplicate"]), *user],
            "Task capitals: 1 examples in split train share an id with another (e.g. 'c0')",
        ),
        "strategy not valid for the answer type": (
            ["--task", "gsm8k", "--strategy", "verify_choices", "--model", "openai/x", "--api-base", listening],
            "Strategy 'verify_choices' cannot serve task 'gsm8k'",
        ),
        "missing API key": (
            ["--model", "openai/gpt-4o-mini"],
            "Model openai/gpt-4o-mini needs OPENAI_API_KEY in the environment",
        ),
        "unwritable output folder": (
            ["--model", "openai/x", "--api-base", listening, "--out", str(tmp_path / "a-file")],
            f"Cannot write to the output folder {tmp_path / 'a-file'}",
        ),
        "storage URL that cannot be opened": (
            ["--model", "openai/x", "--api-base", listening, "--storage", "sqlite:////no/such/folder/x.sqlite"],
            "Could not open the results store at sqlite:////no/such/folder/x.sqlite",
        ),
        "retrieve with no corpus": (
            ["--model", "openai/x", "--api-base", listening, "--strategy", "retrieve"],
            "Strategy 'retrieve' needs passages to retrieve from, and task medqa names no corpus",
        ),
        "a corpus that does not exist": (
            ["--model", "openai/x", "--api-base", listening, "--strategy", "retrieve", "--corpus", str(tmp_path / "nope.jsonl")],
            f"--corpus {tmp_path / 'nope.jsonl'} does not exist",
        ),
        "reasoning_effort on a model that does not take it": (
            ["--model", "openai/x", "--api-base", listening, "--strategy", "cot:reasoning_effort=high"],
            "sets reasoning_effort, which model openai/x does not take",
        ),
        "an endpoint nothing listens on": (
            ["--model", "openai/x", "--api-base", REFUSED],
            "Could not reach --api-base http://127.0.0.1:9/v1 for model openai/x",
        ),
        "storage URL that is not a URL": (
            ["--model", "openai/x", "--api-base", listening, "--storage", "results.db"],
            "The storage URL is not a valid SQLAlchemy URL",
        ),
    }
    commands = [["run", *([] if "--out" in args else ["--out", str(tmp_path / "runs")]), *args]
                for args, _ in cases.values()]  # fmt: skip
    for name, (_, message), done in zip(cases, cases.values(), cli_many(*commands, env={"OPENAI_API_KEY": ""}),
                                        strict=True):  # fmt: skip
        try:
            _one_sentence(done, message)
        except AssertionError as exc:
            raise AssertionError(f"{name}: {exc}") from None
    assert server.calls == 0  # every case refused before any call
    assert not list((tmp_path / "runs").glob("*/run.json"))  # and none left a run folder behind


def test_a_mistyped_command_option_or_value_is_one_sentence_that_points_to_help_with_exit_2():
    done = cli_many(["rn"], ["run", "--bogus"], ["run", "--limit", "abc"], ["report"])
    assert [d.returncode for d in done] == [2, 2, 2, 2]
    said = [d.stderr.strip() for d in done]
    assert all(len(s.splitlines()) == 1 and "╭" not in s and s.endswith("--help`.") for s in said), said
    assert "No such command 'rn'. Did you mean 'run'? See `promptopt --help`." in said[0]
    assert "No such option: --bogus" in said[1] and "see `promptopt run --help`" in said[1]
    assert "Invalid value for '--limit'" in said[2] and "Missing argument 'source'" in said[3]


def test_failures_people_meet_are_one_sentence_and_leave_nothing_behind(tmp_path):
    folder = _user_task(tmp_path / "tasks")
    data = folder / "capitals.csv"
    data.write_bytes(data.read_text().replace("Town 1,", "Târgu 1,").encode("latin-1"))
    spec = folder / "capitals.yaml"
    done = cli("tasks", "validate", str(spec))
    _one_sentence(done, f"{data} is not utf-8 text (byte 0xe2 on line 3); if it is Latin-1 or Windows-1252")
    spec.write_text(spec.read_text().replace("format: csv", "format: csv\n  encoding: latin-1"))
    assert cli("tasks", "validate", str(spec)).returncode == 0  # the hint, followed, reads the file
    from promptopt.tasks import load_task

    task = load_task(str(spec))
    assert any("Târgu 1" in str(e.inputs) for split in ("train", "val", "test") for e in task.examples(split))
    # JSON lines in Latin-1: the same sentence, before `datasets` says anything of its own
    import csv

    rows = list(csv.DictReader(data.read_text(encoding="latin-1").splitlines()))
    lines = (folder / "capitals.jsonl")
    lines.write_bytes("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("latin-1"))
    as_json = folder / "capitals_json.yaml"
    as_json.write_text(spec.read_text().replace("format: csv\n  encoding: latin-1", "format: jsonl")
                       .replace("capitals.csv", "capitals.jsonl").replace("name: capitals", "name: capitals_json"))
    done = cli("tasks", "validate", str(as_json))
    _one_sentence(done, f"{lines} is not utf-8 text (byte 0xe2 on line")

    runs = tmp_path / "runs"
    for name in ("run-aaa", "run-bbb"):
        (runs / name).mkdir(parents=True)
        (runs / name / "run.json").write_text("{}")
    _one_sentence(cli("report", str(runs)), f"{runs} is a folder of run folders, not one: give one of them "
                                            f"(run-aaa, run-bbb), e.g. {runs / 'run-bbb'}.")  # fmt: skip

    not_a_log = tmp_path / "config.json"
    not_a_log.write_text(json.dumps({"model": "gpt-4o", "samples": []}))
    done = cli("import", str(not_a_log), "--out", str(tmp_path / "imported"))
    _one_sentence(done, f"{not_a_log} is JSON but not an Inspect eval log (it has no 'eval' and 'status' fields)")
    assert not (tmp_path / "imported").exists()

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        done = cli("view", "sqlite:///" + str(Path(__file__).parent / "fixtures" / "store.sqlite"), "--port", str(port))
    _one_sentence(done, f"Port {port} on 127.0.0.1 is in use (another viewer or program); pass a free one, e.g. --port ")
    assert "Viewing" not in done.stdout + done.stderr  # no link to another program's page


def test_an_embedded_server_that_is_not_built_is_one_sentence_naming_the_fix(tmp_path):
    env = {"PROMPTOPT_LLAMA_SERVER": str(tmp_path / "llama-server"), "PROMPTOPT_HOME": str(tmp_path / "home")}
    done = cli("run", "--limit", "1", "--strategy", "baseline", "--out", str(tmp_path / "runs"), env=env)
    _one_sentence(done, f"PROMPTOPT_LLAMA_SERVER={tmp_path / 'llama-server'} is not an executable file; build it with")
    assert "make install" in done.stderr


def test_a_key_from_a_named_file_is_used_and_never_written(medqa, tmp_path):
    key_file = tmp_path / "key.txt"
    key_file.write_text(SECRET + "\n")
    with exam_server(medqa, set(), 2) as server:
        done = cli(
            "run", "--model", "openai/scripted", "--api-base", server.base_url, "--api-key-file", str(key_file),
            "--limit", "2", "--strategy", "baseline", "--out", str(tmp_path / "runs"),
            env={"OPENAI_API_KEY": ""},
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        sent = set(server.auth)
    assert server.calls == 4
    assert sent == {f"Bearer {SECRET}"}  # the provider received the key from the file
    assert not _files_containing(tmp_path / "runs", SECRET)


def _files_containing(root: Path, secret: str) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]


@pytest.mark.parametrize("where", ["environment", "endpoint URL"])
def test_an_api_key_appears_in_no_file_or_log_after_run_compile_and_report(medqa, tmp_path, where):
    with exam_server(medqa, set(), 4) as server:
        base = server.base_url
        env = {"OPENAI_API_KEY": SECRET}
        if where == "endpoint URL":  # credentials in the URL's user part and query string
            host = base.removeprefix("http://")
            base, env = f"http://user:{SECRET}@{host}?api_key={SECRET}", {"OPENAI_API_KEY": ""}
        common = ["--model", "openai/scripted", "--api-base", base, "--limit", "4"]
        outputs = []
        run = cli(
            "run", *common, "--strategy", "cot", "--optimizer", "labeled", "--out", str(tmp_path / "runs"), env=env
        )
        outputs.append(run)
        compiled = cli(
            "compile", *common, "--task", "medqa", "--strategy", "cot", "--optimizer", "labeled",
            "--out", str(tmp_path / "program"), "--runs", str(tmp_path / "runs"), env=env,
        )  # fmt: skip
        outputs.append(compiled)
    for done in outputs:
        assert done.returncode == 0, done.stderr
    for run_dir in (tmp_path / "runs").iterdir():
        for fmt in ("text", "md", "csv", "json"):
            outputs.append(cli("report", str(run_dir), "--format", fmt))
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name == "compile.log" for p in files) and any(p.name == "manifest.json" for p in files)
    assert not _files_containing(tmp_path, SECRET)
    for done in outputs:
        assert SECRET not in done.stdout + done.stderr
    if where == "environment":
        rows = json.loads(outputs[-1].stdout)["rows"]
        assert rows and all(r["error_rate"] == 0 for r in rows)


def test_power_answers_in_points_and_refuses_bad_values_in_one_sentence():
    good, *bad = cli_many(
        ["power", "--difference", "5", "--discordance", "20"],
        ["power"], ["power", "--items", "0"], ["power", "--accuracy", "150"], ["power", "--items", "40", "--alpha", "2"],
        ["power", "--difference", "30", "--discordance", "10"], ["power", "--task", "medqa", "--split", "dev"],
        ["power", "--items", "40", "--power", "1"], ["report", "tests/fixtures/store.sqlite", "--equivalence-margin", "-2"],
    )  # fmt: skip
    # Connor's formula by hand: (1.96 sqrt(.2) + 0.8416 sqrt(.2 - .05^2))^2 / .05^2 = 625.5
    assert good.returncode == 0 and "needs 626 items per config" in good.stdout
    messages = [
        "power needs items (or a task) to say what they detect, or a difference to say what it needs.",
        "power: items must be at least 1, not 0.",
        "--accuracy is in percent (points), between 0 and 100, not 150.",
        "power: alpha must be a probability between 0 and 1, not 2.",
        "--difference 30 needs the configs to disagree on at least 30% of the items; --discordance is 10.",
        "power: split 'dev' is not one of train, val, test.",
        "power: power must be a probability (0.8 for 80%) between 0 and 1, not 1.",
        "--equivalence-margin is in points, between 0 and 100, not -2.",
    ]
    for done, message in zip(bad, messages, strict=True):
        _one_sentence(done, message)
