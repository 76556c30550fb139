"""Input made to break things: every reader of downloaded files (task specs and their data, sweep
files, corpora, imported logs) and every answer parser, fuzzed with Hypothesis, fails only in one
sentence (promptopt.errors.UserError), never a traceback; files built to exhaust memory (an alias
bomb, a zip bomb, a huge line, a million columns) and paths that climb out of the task's folder
are refused before they are parsed. The long campaign is benchmarks/fuzz_readers.py."""

import json
import os
import zipfile
from pathlib import Path

import pytest
import yaml
from conftest import cli_many
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from promptopt.answers import answer_types
from promptopt.errors import UserError
from promptopt.tasks import check_gold, load_task_file

# the suite's bounded run; benchmarks/fuzz_readers.py runs the same properties with many more examples,
# each one that takes longer than the deadline counting as a hang
EXAMPLES = int(os.environ.get("PROMPTOPT_FUZZ_EXAMPLES", "25"))
DEADLINE = int(os.environ["PROMPTOPT_FUZZ_DEADLINE_MS"]) if os.environ.get("PROMPTOPT_FUZZ_DEADLINE_MS") else None
FUZZ = settings(max_examples=EXAMPLES, deadline=DEADLINE, suppress_health_check=list(HealthCheck), database=None)

SPEC = {
    "name": "quiz", "description": "d", "citation": "c", "license": "CC0",
    "source": {"format": "jsonl", "files": "quiz.jsonl"}, "id": "id",
    "inputs": {"question": "q", "options": ["a", "b"]}, "answer": {"type": "multiple_choice", "gold": "gold"},
    "split": {"seed": 1, "train": 1, "val": 1}, "baseline": {"instructions": "Pick."},
}  # fmt: skip
ROWS = [{"id": i, "q": f"Question {i}?", "a": "yes", "b": "no", "gold": "A"} for i in range(6)]

# what a hostile file may hold where a value is expected
values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=True) | st.text(max_size=40)
    | st.sampled_from(["../../etc/passwd", "/etc/shadow", "*", "\x00", "A" * 5000, "quiz.jsonl", "{x}", "'"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)  # fmt: skip


def only_sentences(call) -> None:
    """`call` succeeds or raises UserError with one line of text; anything else fails the test."""
    try:
        call()
    except UserError as exc:
        assert str(exc).strip() and "\n" not in str(exc).strip(), str(exc)


def write_task(folder: Path, spec: dict, rows_text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "quiz.jsonl").write_text(rows_text)
    (folder / "quiz.yaml").write_text(yaml.safe_dump(spec))
    return folder / "quiz.yaml"


def load_all(path: Path) -> None:
    task = load_task_file(path)
    task.splits  # noqa: B018  (reads, maps and splits the data)
    check_gold(task)


@FUZZ
@given(field=st.sampled_from([("source",), ("source", "files"), ("source", "format"), ("id",), ("inputs",),
                              ("inputs", "options"), ("answer",), ("answer", "gold"), ("split",), ("split", "val"),
                              ("baseline",), ("rows",), ("labels",), ("probes",), ("corpus",), ("judge",)]),
       value=values)  # fmt: skip
def test_a_task_spec_with_any_value_in_any_field_loads_or_fails_in_one_sentence(tmp_path_factory, field, value):
    spec = json.loads(json.dumps(SPEC))
    here = spec
    for key in field[:-1]:
        here = here[key]
    here[field[-1]] = value
    folder = tmp_path_factory.mktemp("spec")
    try:
        path = write_task(folder, spec, "".join(json.dumps(r) + "\n" for r in ROWS))
    except (ValueError, OverflowError):  # a value YAML itself cannot write (e.g. a lone surrogate)
        return
    only_sentences(lambda: load_all(path))


row_values = st.none() | st.booleans() | st.integers() | st.text(max_size=30) | st.lists(st.text(max_size=5), max_size=3)


@FUZZ
@given(lines=st.lists(st.one_of(
    st.dictionaries(st.sampled_from(["id", "q", "a", "b", "gold", "x"]), row_values, max_size=6).map(json.dumps),
    st.binary(max_size=60).map(lambda b: b.decode("latin-1")),
    st.sampled_from(["[1, 2]", "null", "{", "\"text\"", "{\"id\": 1}"]),
), min_size=1, max_size=8))  # fmt: skip
def test_data_rows_of_any_shape_load_or_fail_in_one_sentence(tmp_path_factory, lines):
    path = write_task(tmp_path_factory.mktemp("rows"), SPEC, "\n".join(lines) + "\n")
    only_sentences(lambda: load_all(path))


@FUZZ
@given(sweep=st.dictionaries(st.sampled_from(["models", "tasks", "strategies", "optimizers", "limit", "splits",
                                              "budget", "threads", "probes", "seed", "epsilon", "x"]), values,
                             max_size=5))  # fmt: skip
def test_a_sweep_file_with_any_settings_loads_or_fails_in_one_sentence(tmp_path_factory, sweep):
    from promptopt.sweep import load_sweep

    path = tmp_path_factory.mktemp("sweep") / "sweep.yaml"
    try:
        path.write_text(yaml.safe_dump(sweep))
    except (ValueError, OverflowError):
        return
    only_sentences(lambda: load_sweep(path))


@FUZZ
@given(content=st.one_of(st.binary(max_size=300), st.lists(values, max_size=4).map(json.dumps).map(str.encode)))
def test_a_corpus_or_an_imported_log_of_any_bytes_fails_in_one_sentence(tmp_path_factory, content):
    from promptopt.corpus import load_corpus
    from promptopt.importers import import_logs

    folder = tmp_path_factory.mktemp("bytes")
    for name in ("corpus.jsonl", "log.json", "log.eval", "samples_x.jsonl"):
        (folder / name).write_bytes(content)
    only_sentences(lambda: load_corpus(folder / "corpus.jsonl"))
    for name in ("log.json", "log.eval", "samples_x.jsonl"):
        only_sentences(lambda n=name: import_logs([folder / n], out=folder / "out"))


@settings(max_examples=EXAMPLES * 8, deadline=DEADLINE, database=None)
@given(text=st.one_of(st.text(max_size=200), st.sampled_from(["", "\x00", "A" * 10_000, "[[ ## answer ## ]]", "{", "1e999",
                                                              "Answer: (Z)", "-0", "1/0/2020", "NaN", "∞"])))  # fmt: skip
def test_every_answer_parser_takes_any_text_without_raising(text):
    inputs = {"question": "q", "options": {"A": "yes", "B": "no", "C": "maybe"}}
    golds = {"multiple_choice": "A", "yes_no_maybe": "yes", "number": "3", "exact_text": "yes", "free_text": "yes",
             "medec": json.dumps({"flag": 1, "sentence_id": 2, "correction": "x"})}  # fmt: skip
    for name, kind in answer_types().items():
        parsed = kind.parse(text, inputs)
        assert parsed is None or isinstance(parsed, str)
        if name in golds and name != "free_text":  # free text scores with real metric libraries: fuzzed apart
            assert 0.0 <= kind.score(parsed, golds[name]) <= 1.0


def test_a_jsonl_file_whose_first_line_is_null_fails_in_one_sentence_not_a_crash(tmp_path):
    # found by the campaign: pyarrow's JSON reader (under datasets) segfaulted the whole process on it
    path = write_task(tmp_path, SPEC, "null\n")
    with pytest.raises(UserError, match=r"line 1 of .*quiz.jsonl holds null; each line of a JSONL file must be one object"):
        load_all(path)


# --- files built to exhaust memory, and paths out of the task's folder ----------------------------


def test_an_alias_bomb_zip_and_gzip_bombs_a_huge_line_and_a_million_columns_are_refused_before_parsing(tmp_path):
    bomb = tmp_path / "bomb" / "quiz.yaml"
    bomb.parent.mkdir()
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]  # 10^9 leaves once expanded
    bomb.write_text("\n".join(lines) + "\n")
    zipped = tmp_path / "zip"
    zipped.mkdir()
    with zipfile.ZipFile(zipped / "quiz.zip", "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("quiz.jsonl", b"\n" * 3_000_000)  # 3 MB of newlines in a few kB
    write_task(zipped, SPEC | {"source": {"format": "jsonl", "files": "quiz.zip"}}, "")
    gzipped = tmp_path / "gz"
    write_task(gzipped, SPEC | {"source": {"format": "jsonl", "files": "quiz.jsonl.gz"}}, "")
    import gzip

    (gzipped / "quiz.jsonl.gz").write_bytes(gzip.compress(b"\n" * 3_000_000))
    long = write_task(tmp_path / "long", SPEC, json.dumps({"id": 0, "q": "x" * 3_000_000}) + "\n")
    wide = tmp_path / "wide"
    write_task(wide, SPEC | {"source": {"format": "csv", "files": "quiz.csv"}}, "")
    (wide / "quiz.csv").write_text(",".join(f"c{i}" for i in range(20_000)) + "\n")
    small = {"PROMPTOPT_MAX_UNPACKED_BYTES": "1000000", "PROMPTOPT_MAX_LINE_BYTES": "1000000"}
    done = cli_many(*(["tasks", "validate", str(p)] for p in (bomb, zipped / "quiz.yaml", long, wide / "quiz.yaml",
                                                             gzipped / "quiz.yaml")), env=small)  # fmt: skip
    for d in done:
        assert d.returncode != 0 and len(d.stderr.strip().splitlines()) == 1 and "Traceback" not in d.stderr, d.stderr
    assert "more than 1,000,000 YAML nodes" in done[0].stderr and "PROMPTOPT_MAX_YAML_NODES" in done[0].stderr
    assert "unpacks to 3,000,000 bytes" in done[1].stderr and "PROMPTOPT_MAX_UNPACKED_BYTES" in done[1].stderr
    assert "a line longer than the limit" in done[2].stderr and "1,000,000 bytes" in done[2].stderr
    assert "20,000 columns" in done[3].stderr and "PROMPTOPT_MAX_COLUMNS" in done[3].stderr
    assert "quiz.jsonl.gz unpacks to more than the limit" in done[4].stderr and "1,000,000 bytes" in done[4].stderr


@pytest.mark.parametrize("raw", ["abc", "-5", "inf", "0"])
def test_a_limit_set_to_something_that_is_not_one_is_refused_in_one_sentence(monkeypatch, raw):
    from promptopt.limits import limit

    monkeypatch.setenv("PROMPTOPT_MAX_COLUMNS", raw)
    with pytest.raises(UserError, match=rf"PROMPTOPT_MAX_COLUMNS='{raw}' is not a limit; give a whole number of columns"):
        limit("columns")


def test_paths_that_climb_out_of_the_task_folder_are_refused_unless_the_user_allows_them(tmp_path):
    secret = tmp_path / "secret.jsonl"
    secret.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    folder = tmp_path / "downloaded"
    climbing = write_task(folder, SPEC | {"source": {"format": "jsonl", "files": "../secret.jsonl"}}, "")
    absolute = folder / "absolute.yaml"
    absolute.write_text(yaml.safe_dump(SPEC | {"name": "absolute", "source": {"format": "jsonl", "files": str(secret)}}))
    refused = cli_many(["tasks", "validate", str(climbing)], ["tasks", "validate", str(absolute)])
    allowed = cli_many(["tasks", "validate", str(climbing)], env={"PROMPTOPT_ALLOW_OUTSIDE_PATHS": "1"})
    for done in refused:
        assert done.returncode != 0 and len(done.stderr.strip().splitlines()) == 1, done.stderr
        assert "outside" in done.stderr and "PROMPTOPT_ALLOW_OUTSIDE_PATHS=1" in done.stderr
    assert allowed[0].returncode == 0, allowed[0].stderr


def test_an_image_path_out_of_the_task_folder_is_refused(tmp_path):
    from PIL import Image

    Image.new("RGB", (4, 4)).save(tmp_path / "private.png")
    spec = SPEC | {"inputs": {"image": "img", "question": "q", "options": ["a", "b"]}}
    rows = [r | {"img": "../private.png"} for r in ROWS]
    path = write_task(tmp_path / "task", spec, "".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(UserError, match=r"private.png, which is outside .*PROMPTOPT_ALLOW_OUTSIDE_PATHS=1"):
        load_task_file(path).rows()


# --- prompts too long for the model, and a server's Retry-After --------------------------------------


def test_a_prompt_too_long_for_the_model_is_its_own_error_never_retried_nor_asked_again(medqa, tmp_path):
    from conftest import cli

    from promptopt.testing import ScriptedHTTPError, ScriptedServer, fill_fields

    tests = medqa.examples("test", 8)
    long = {ex.inputs["question"] for ex in tests[:3]}
    asked: list[str] = []

    def reply(prompt):
        asked.append(prompt)
        if any(q in prompt for q in long):
            raise ScriptedHTTPError(400, "This model's maximum context length is 8 tokens (context_length_exceeded).")
        return fill_fields(prompt, "A") if "[[ ## " in prompt else "A"

    with ScriptedServer(reply) as server:
        args = ["run", "--model", "openai/scripted", "--api-base", server.base_url, "--strategy", "baseline",
                "--split", "test", "--limit", "8", "--out", str(tmp_path)]  # fmt: skip
        first = cli(*args, env={"PROMPTOPT_BACKOFF_S": "0.01"})
        calls = server.calls
        again = cli(*args, env={"PROMPTOPT_BACKOFF_S": "0.01"})
        assert again.returncode == 0, again.stderr
        assert server.calls == calls  # not asked again
    assert first.returncode == 0, first.stderr
    assert calls == 8  # one call each: a too-long prompt is not retried as if the endpoint were busy
    folder = first.stdout.strip().splitlines()[-1].removeprefix("Run folder: ")
    data = json.loads(cli("report", folder, "--format", "json").stdout)
    (row,) = [r for r in data["rows"] if r["split"] == "test"]
    assert row["errors"] == 3 and row["n"] == 5
    assert any("3 prompts were longer than the model's context window" in w for w in data["warnings"])


def test_a_retry_after_pauses_every_thread_of_the_endpoint(medqa, tmp_path):
    import threading
    import time

    from conftest import cli

    from promptopt.testing import ScriptedHTTPError, ScriptedServer, fill_fields

    arrivals: list[tuple[float, str]] = []
    lock = threading.Lock()

    def reply(prompt):
        with lock:
            arrivals.append((time.monotonic(), prompt))
            first = len(arrivals) == 1
        if first:
            raise ScriptedHTTPError(429, "slow down", headers={"Retry-After": "3"})
        time.sleep(0.05)
        return fill_fields(prompt, "A") if "[[ ## " in prompt else "A"

    with ScriptedServer(reply) as server:
        done = cli("run", "--model", "openai/scripted", "--api-base", server.base_url, "--strategy", "baseline",
                   "--split", "test", "--limit", "40", "--threads", "4", "--out", str(tmp_path),
                   env={"PROMPTOPT_BACKOFF_S": "0.01"})  # fmt: skip
    assert done.returncode == 0, done.stderr
    told = arrivals[0][1]
    (retry,) = [t for t, p in arrivals[1:] if p == told]
    # the hold began 3 s (plus jitter) before the retry: no thread sent anything in between, although
    # the other 39 items would have kept three threads busy well past its start
    paused = [t for t, p in arrivals if retry - 2.9 < t < retry - 0.1]
    assert paused == [] and len(arrivals) == 41


# --- a full disk, and a store from a newer promptopt ---------------------------------------------------


def test_a_full_disk_stops_the_run_in_one_sentence_and_the_same_command_resumes_without_repeating_calls(medqa, tmp_path):
    import subprocess

    from conftest import cli

    from promptopt.testing import ScriptedServer

    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs", str(disk)], capture_output=True).returncode:
        pytest.skip("cannot mount a size-capped tmpfs here (needs root)")
    try:
        with ScriptedServer(lambda prompt: "A") as server:
            args = ["run", "--model", "openai/scripted", "--api-base", server.base_url, "--strategy", "baseline",
                    "--split", "test", "--limit", "400", "--out", str(disk)]  # fmt: skip
            full = cli(*args)
            kept = _records(disk)
            calls = server.calls
            subprocess.run(["mount", "-o", "remount,size=50m", str(disk)], check=True)
            resumed = cli(*args)
            total = server.calls
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)
    assert full.returncode == 1 and "Traceback" not in full.stderr, full.stderr
    (line,) = full.stderr.strip().splitlines()[-1:]
    assert "is full" in line or "no space left" in line, full.stderr
    assert 0 < kept < 400 and calls - kept <= 1  # every answer paid for is kept, but the one being written
    assert resumed.returncode == 0, resumed.stderr
    assert total - calls == 400 - kept  # the rest, and nothing twice


def _records(folder) -> int:
    import sqlite3

    (store,) = list(folder.glob("run-*/results.sqlite"))
    with sqlite3.connect(f"file:{store}?mode=ro", uri=True) as conn:
        return conn.execute("select count(*) from records where error is null").fetchone()[0]


def test_a_store_from_a_newer_promptopt_is_read_with_a_warning_and_never_written(tmp_path):
    import sqlite3

    from conftest import cli

    from promptopt.testing import ScriptedServer

    with ScriptedServer(lambda prompt: "A") as server:
        args = ["run", "--model", "openai/scripted", "--api-base", server.base_url, "--strategy", "baseline",
                "--split", "test", "--limit", "3", "--out", str(tmp_path), "--storage", f"sqlite:///{tmp_path}/s.db"]  # fmt: skip
        assert cli(*args).returncode == 0
        store = tmp_path / "s.db"
        with sqlite3.connect(store) as conn:
            conn.execute("update runs set version = '99.0.0'")
        calls = server.calls
        refused = cli(*(a if a != "3" else "5" for a in args))
        assert server.calls == calls
    assert refused.returncode == 1 and "written by promptopt 99.0.0, newer than this" in refused.stderr
    read = cli("report", f"sqlite:///{store}", "--format", "json")
    assert read.returncode == 0 and any("newer than this" in w for w in json.loads(read.stdout)["warnings"])


# --- stores: whatever a model wrote, every record is kept whole, once --------------------------

hostile_text = st.text(max_size=60) | st.sampled_from(
    ["\x00", "a\x00b", "'); DROP TABLE records; --", "A" * 100_000, "NULL", "\\u0000", "💥\u202e", "%s %(x)s ?"]
)


_opened: dict[str, object] = {}


def _stores(tmp_path_factory) -> list[tuple[str, object]]:
    """(name, store): one SQLite file, and the CI's PostgreSQL database when it is there; opened
    once for all examples (each example writes a run of its own)."""
    urls = {"sqlite": f"sqlite:///{tmp_path_factory.getbasetemp() / 'fuzzed-store.sqlite'}"}
    if os.environ.get("PROMPTOPT_TEST_POSTGRES"):
        urls["postgresql"] = os.environ["PROMPTOPT_TEST_POSTGRES"]
    from promptopt.store import Store

    for url in urls.values():
        if url not in _opened:
            _opened[url] = Store(url)
    return [(name, _opened[url]) for name, url in urls.items()]


@FUZZ
@given(rows=st.lists(st.tuples(hostile_text.filter(lambda i: len(i) <= 200), st.none() | hostile_text,
                               st.none() | hostile_text), min_size=1, max_size=6, unique_by=lambda row: row[0]))  # fmt: skip
def test_records_holding_any_text_are_kept_whole_by_the_store_none_lost_none_doubled(tmp_path_factory, rows):
    import uuid

    from promptopt.records import Record

    for name, store in _stores(tmp_path_factory):
        run_id = f"fuzz-{uuid.uuid4().hex[:12]}"
        batch = [
            Record(run_id=run_id, model="m", task="t", strategy="predict", optimizer="none", config_id="c", config="{}",
                   split="test", example_id=example_id, prediction=reply, gold="A", score=1.0, parse_ok=True, error=None,
                   lm_calls=1, prompt_tokens=1, completion_tokens=1, cost_usd=0.0, latency_s=0.0, raw_output=raw,
                   extras=json.dumps({"reasoning": raw}))
            for example_id, reply, raw in rows
        ]  # fmt: skip
        store.add(batch)
        store.add(batch[:1])  # a second worker writing a finished example adds nothing
        got = store.records(run_id)
        # PostgreSQL's text cannot hold NUL: it is kept as U+FFFD there (README, Results store)
        kept = (lambda s: s.replace("\x00", "\ufffd")) if name == "postgresql" else (lambda s: s)
        assert sorted(got.example_id) == sorted(kept(r[0]) for r in rows), name
        by_id = {r.example_id: r for r in got.itertuples()}
        for example_id, reply, raw in rows:
            row = by_id[kept(example_id)]
            assert (row.prediction if isinstance(row.prediction, str) else None) == (reply and kept(reply)), name
            assert (row.raw_output if isinstance(row.raw_output, str) else None) == (raw and kept(raw)), name
            assert json.loads(row.extras) == {"reasoning": raw}, name  # JSON escapes a NUL itself


@FUZZ
@given(content=st.binary(max_size=400) | st.binary(max_size=400).map(lambda b: b"SQLite format 3\x00" + b))
def test_a_store_file_of_any_bytes_is_refused_in_one_sentence(tmp_path_factory, content):
    from promptopt.store import Store

    path = tmp_path_factory.mktemp("junk") / "results.sqlite"
    path.write_bytes(content)
    only_sentences(lambda: Store(f"sqlite:///{path}", create=False).records())


def test_an_item_id_longer_than_the_stores_key_is_refused_in_one_sentence(tmp_path):
    rows = [dict(row, id="x" * 201 if i == 2 else row["id"]) for i, row in enumerate(ROWS)]
    path = write_task(tmp_path, SPEC, "\n".join(json.dumps(r) for r in rows))
    with pytest.raises(UserError, match=r"item id of 201 characters .* at most 200: give `id:` a shorter column"):
        load_all(path)


def test_the_store_refuses_an_item_id_longer_than_its_key_whoever_wrote_it(tmp_path):
    from promptopt.limits import ID_CHARS
    from promptopt.records import Record
    from promptopt.store import Store

    store = Store(f"sqlite:///{tmp_path / 'results.sqlite'}")
    row = dict(run_id="r", model="m", task="t", strategy="predict", optimizer="none", config_id="c", config="{}",
               split="test", prediction="A", gold="A", score=1.0, parse_ok=True, error=None, lm_calls=1, prompt_tokens=1,
               completion_tokens=1, cost_usd=0.0, latency_s=0.0, raw_output="A")  # fmt: skip
    store.add([Record(example_id="x" * ID_CHARS, **row)])  # the task loader's limit is the store's
    with pytest.raises(UserError, match=r"item id of 201 characters .* longer than the store's 200"):
        store.add([Record(example_id="y" * 201, **row)])
    assert len(store.records("r")) == 1
