"""The embedded Gemma 3 270M through llama.cpp: real answers, and no server left behind."""

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import cli

pytestmark = pytest.mark.real_model


def llama_servers() -> list[int]:
    """PIDs of embedded llama.cpp servers started by promptopt for this test: each test has its own
    PROMPTOPT_HOME (the fixture below), and a server's model file lies there, so servers of tests
    running beside it on other workers are not counted."""
    home = os.environ["PROMPTOPT_HOME"].encode()
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmd = (proc / "cmdline").read_bytes()
            except OSError:
                continue
            if cmd.split(b"\0")[0].endswith(b"/llama-server") and b"gemma-3-270m" in cmd and home in cmd:
                pids.append(int(proc.name))
    return pids


def children(pid: int) -> list[int]:
    """The llama.cpp servers whose parent is `pid` (other tests' servers are not this test's)."""
    mine = []
    for p in llama_servers():
        try:
            if f"PPid:\t{pid}\n" in Path(f"/proc/{p}/status").read_text():
                mine.append(p)
        except OSError:
            continue
    return mine


def gone_within(pids: list[int], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not set(pids) & set(llama_servers()):
            return True
        time.sleep(0.2)
    return False


def start_run(tmp_path: Path) -> tuple[subprocess.Popen, list[int]]:
    exe = Path(sys.executable).with_name("promptopt")
    proc = subprocess.Popen(
        [str(exe), "run", "--limit", "20", "--out", str(tmp_path)],
        stderr=subprocess.PIPE,
        text=True,
        # a shell that starts jobs in the background makes them ignore SIGINT; a terminal does not
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        mine = [p for p in llama_servers() if f"PPid:\t{proc.pid}\n" in Path(f"/proc/{p}/status").read_text()]
        if mine:
            # wait until the progress line shows a finished question (the machine may be busy)
            while time.monotonic() < deadline:
                line = proc.stderr.readline()
                if re.search(r": [1-9]\d*/20 ", line):
                    return proc, mine
            break
        time.sleep(0.2)
    proc.kill()
    pytest.fail("the run never started its llama.cpp server")


@pytest.fixture(autouse=True)
def no_shared_server(tmp_path, monkeypatch):
    # a `promptopt serve` left running elsewhere must not stand in for the run's own server
    monkeypatch.setenv("PROMPTOPT_HOME", str(tmp_path / "home"))


def test_the_embedded_model_answers_medqa_under_both_strategies_and_stops_its_server(tmp_path):
    done = cli("run", "--limit", "3", "--out", str(tmp_path), env={"PROMPTOPT_HOME": str(tmp_path / "home")})
    assert done.returncode == 0, done.stderr
    assert "score % [95% CI]" in done.stdout
    run_dir = done.stdout.strip().splitlines()[-1].removeprefix("Run folder: ")
    rows = json.loads(cli("report", run_dir, "--format", "json").stdout)["rows"]
    by = {(r["strategy"], r["split"]): r for r in rows}
    assert {k[0] for k in by} == {"baseline", "cot"}
    assert all(r["n"] == 3 and r["error_rate"] == 0 for r in rows)
    assert by[("baseline", "test")]["lm_calls"] == 3
    # cot: one call per question, plus one short answer cue when the base model stops before its answer
    assert 3 <= by[("cot", "test")]["lm_calls"] <= 6
    assert by[("baseline", "test")]["parse_failure_rate"] <= 1 / 3  # measured: 97.5% parsed on 40 questions (README)
    assert by[("cot", "test")]["completion_tokens"] > 0
    assert not llama_servers()
    # the HTML report of this real run is one page with nothing fetched from elsewhere
    page_file = tmp_path / "report.html"
    assert cli("report", run_dir, "--format", "html", "--output", str(page_file)).returncode == 0
    page = page_file.read_text()
    assert "<svg" in page and not re.search(r"https?:|//[a-z0-9]|url\((?!#)|\b(src|href)\s*=\s*[\"'](?!#)", page, re.I)


def test_kill_9_of_a_run_leaves_no_llama_server_behind(tmp_path):
    proc, servers = start_run(tmp_path)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert gone_within(servers, 10)


def test_ctrl_c_stops_the_server_and_keeps_finished_records(tmp_path):
    proc, servers = start_run(tmp_path)
    os.kill(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "run the same command again to resume" in err
    assert gone_within(servers, 10)
    (run_dir,) = [p for p in tmp_path.iterdir() if p.name.startswith("run-")]
    rows = json.loads(cli("report", str(run_dir), "--format", "json").stdout)["rows"]
    assert rows and rows[0]["n"] >= 1  # what finished before Ctrl-C is in the store


def test_a_run_reuses_the_server_that_promptopt_serve_keeps_running(tmp_path):
    env = {**os.environ, "PROMPTOPT_HOME": str(tmp_path / "home")}
    exe = Path(sys.executable).with_name("promptopt")
    before = set(llama_servers())  # any that other processes keep are not this test's
    serve = subprocess.Popen(
        [str(exe), "serve"], stdout=subprocess.PIPE, text=True, env=env,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # as from a terminal (see start_run)
    )  # fmt: skip
    try:
        assert "Serving local/" in serve.stdout.readline()  # printed once the server answers
        kept = [p for p in llama_servers() if p not in before]
        args = ["run", "--limit", "2", "--strategy", "baseline", "--split", "test", "--out", str(tmp_path)]
        run = subprocess.Popen([str(exe), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        seen = set()
        while run.poll() is None:  # every llama.cpp server alive while the run works
            seen |= set(llama_servers())
            time.sleep(0.05)
        out, err = run.communicate()
        assert run.returncode == 0, err
        assert kept and seen - before == set(kept)  # no server of its own: only the one serve keeps
        assert [p for p in llama_servers() if p not in before] == kept  # which still runs
        assert "score % [95% CI]" in out
    finally:
        serve.send_signal(signal.SIGINT)
        try:
            serve.wait(timeout=30)
        except subprocess.TimeoutExpired:
            serve.kill()
            raise
    assert serve.returncode == 0  # Ctrl-C is how `serve` is meant to end
    assert gone_within(kept, 10)  # Ctrl-C on serve stops its server
    assert not list((tmp_path / "home").glob("serve-*.json"))  # and forgets it: later runs start their own


def test_kill_of_promptopt_serve_stops_its_server_and_forgets_it(tmp_path):
    env = {**os.environ, "PROMPTOPT_HOME": str(tmp_path / "home")}
    serve = subprocess.Popen(
        [str(Path(sys.executable).with_name("promptopt")), "serve"], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert "Serving local/" in serve.stdout.readline()
        kept = children(serve.pid)
        serve.terminate()  # SIGTERM, as `kill` or a service manager sends
        assert serve.wait(timeout=30) == 0
    finally:
        if serve.poll() is None:
            serve.kill()
    assert kept and gone_within(kept, 30)  # a machine busy with other tests can take a while
    assert not list((tmp_path / "home").glob("serve-*.json"))


def test_threads_4_keeps_4_requests_in_flight_at_the_embedded_server(tmp_path):
    exe = Path(sys.executable).with_name("promptopt")
    args = [
        "run",
        "--threads",
        "4",
        "--limit",
        "12",
        "--strategy",
        "baseline",
        "--split",
        "test",
        "--out",
        str(tmp_path),
    ]
    run = subprocess.Popen([str(exe), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    busy, url = [], None
    try:
        while run.poll() is None:  # what the server itself says it is decoding, 20 times a second
            if url is None:
                mine = [p for p in llama_servers() if f"PPid:\t{run.pid}\n" in Path(f"/proc/{p}/status").read_text()]
                if mine:
                    argv = Path(f"/proc/{mine[0]}/cmdline").read_bytes().split(b"\0")
                    url = f"http://127.0.0.1:{int(argv[argv.index(b'--port') + 1])}/slots"
            else:
                try:
                    with urllib.request.urlopen(url, timeout=2) as resp:
                        busy.append(sum(bool(slot.get("is_processing")) for slot in json.loads(resp.read())))
                except OSError:
                    pass  # starting up, or already stopping
            time.sleep(0.05)
        out, err = run.communicate()
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 0, err
    assert url and max(busy) == 4  # four questions decoded together, never more than asked for
    assert busy.count(4) >= 3  # and not only for an instant
    assert "score % [95% CI]" in out
