"""Reliability: kills, faulty endpoints, concurrent writers and shared PostgreSQL workers lose nothing."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import cli, exam_server
from sqlalchemy import create_engine, text

from promptopt.searcher import DEFAULT_SPACE
from promptopt.store import Store
from promptopt.testing import CompileOracle, ScriptedHTTPError, ScriptedServer, faulty

EXE = str(Path(sys.executable).with_name("promptopt"))
# Short timeout and backoff so that faults cost milliseconds, not the defaults' seconds.
FAST_RETRIES = {"PROMPTOPT_TIMEOUT_S": "0.5", "PROMPTOPT_BACKOFF_S": "0.01", "PROMPTOPT_RETRIES": "4"}


def run_args(server, out, *extra):
    return [EXE, "run", "--model", "openai/scripted", "--api-base", server.base_url, "--out", str(out), *extra]


def records_of(out: Path, storage: str | None = None):
    """(config, split, example) -> (prediction, score, parse_ok, error) for the one run in `out`."""
    (run_dir,) = [p for p in out.iterdir() if p.name.startswith("run-")]
    info = json.loads((run_dir / "run.json").read_text())
    recs = Store(storage or info["storage"]).records(info["run_id"])
    keys = list(zip(recs.config_id, recs.split, recs.example_id, strict=True))
    assert len(keys) == len(set(keys)), "a record was written twice"
    errors = [e if isinstance(e, str) else None for e in recs.error]  # pandas reads NULL as NaN
    values = zip(recs.prediction, recs.score, recs.parse_ok.astype(bool), errors, strict=True)
    return dict(zip(keys, values, strict=True))


def test_a_run_killed_with_sigkill_halfway_resumes_to_the_same_records_without_repeating_calls(medqa, tmp_path):
    n = 15
    args = ("--limit", str(n), "--strategy", "baseline", "--strategy", "cot")
    with exam_server(medqa, {e.id for e in medqa.examples("test", n)[::2]}, n) as server:
        whole = subprocess.run(run_args(server, tmp_path / "whole", *args), capture_output=True, text=True)
        assert whole.returncode == 0, whole.stderr
        uninterrupted, server.calls = server.calls, 0
        assert uninterrupted == 4 * n

        proc = subprocess.Popen(run_args(server, tmp_path / "cut", *args), stderr=subprocess.DEVNULL)
        answer = server.reply

        def reply(prompt):
            if server.calls == uninterrupted // 2:
                os.kill(proc.pid, signal.SIGKILL)  # halfway through evaluation, mid-call
            return answer(prompt)

        server.reply = reply
        proc.wait(timeout=600)
        assert proc.returncode == -signal.SIGKILL
        first = server.calls
        kept = records_of(tmp_path / "cut")
        assert 0 < len(kept) < 4 * n
        server.reply = answer
        again = subprocess.run(run_args(server, tmp_path / "cut", *args), capture_output=True, text=True)
        assert again.returncode == 0, again.stderr
        second = server.calls - first

    assert records_of(tmp_path / "cut") == records_of(tmp_path / "whole")
    # nothing recorded before the kill is asked again; only the one example in flight (1 call)
    assert uninterrupted <= first + second <= uninterrupted + 1


def compiled_programs(out: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in out.glob("run-*/programs/*/program.json")}


def test_compiles_killed_halfway_resume_making_again_only_the_calls_in_flight_and_end_with_the_same_programs(
    medqa, tmp_path
):
    args = ("--limit", "10", "--split", "val", "--strategy", "cot", "--optimizer", "mipro:val=10",
            "--optimizer", "gepa:metric_calls=80,val=10")  # fmt: skip
    oracle = CompileOracle(medqa)
    with ScriptedServer(oracle) as server:
        whole = cli(*run_args(server, tmp_path / "whole", *args)[1:])
        assert whole.returncode == 0, whole.stderr
        n, oracle.compile_calls = oracle.compile_calls, 0
        for stop_at in (n // 4, 3 * n // 4):  # inside the first compile, then inside the second
            proc = subprocess.Popen(run_args(server, tmp_path / "cut", *args), stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)  # fmt: skip
            oracle.on_compile_call = lambda seen, at=stop_at, pid=proc.pid: seen == at and os.kill(pid, signal.SIGKILL)
            assert proc.wait(timeout=600) == -signal.SIGKILL
        oracle.on_compile_call = None
        done = cli(*run_args(server, tmp_path / "cut", *args)[1:])
        assert done.returncode == 0, done.stderr
        assert "replaying the" in done.stderr
    assert n < oracle.compile_calls <= n + 2  # the call in flight at each kill, and nothing else, again
    programs = compiled_programs(tmp_path / "cut")
    assert sum("mipro" in k or "gepa" in k for k in programs) == 2 and programs == compiled_programs(tmp_path / "whole")
    cut = Store(json.loads(next((tmp_path / "cut").glob("run-*/run.json")).read_text())["storage"]).compile_costs()
    assert int(cut.lm_calls.sum()) == n  # a compile's cost counts what the killed tries paid for, once


def test_with_a_fifth_of_calls_failing_every_example_is_scored_or_recorded_as_an_error(medqa, tmp_path):
    n = 200
    examples = medqa.examples("test", n)
    broken = {ex.inputs["question"] for ex in examples[:3]}  # these always get an unreadable body
    args = ("--limit", str(n), "--split", "test", "--strategy", "baseline", "--threads", "8")
    with exam_server(medqa, {e.id for e in examples[::3]}, n) as server:
        clean = cli(*run_args(server, tmp_path / "clean", *args)[1:], env=FAST_RETRIES)
        assert clean.returncode == 0, clean.stderr
        answer = server.reply
        # at most 2 faults per prompt, fewer than its 5 attempts: only `broken` can outlast them
        flaky = faulty(answer, rate=0.2, seed=1, slow_s=1.5, max_per_prompt=2)

        def reply(prompt):
            if any(q in prompt for q in broken):
                raise ScriptedHTTPError(500, "always failing")
            return flaky(prompt)

        server.reply = reply
        server.calls = 0
        done = cli(*run_args(server, tmp_path / "faulty", *args)[1:], env=FAST_RETRIES)
        assert done.returncode == 0, done.stderr
        assert set(server.faults) == {"429", "500", "slow", "malformed", "empty"}  # every kind was injected

    good, bad = records_of(tmp_path / "clean"), records_of(tmp_path / "faulty")
    assert set(bad) == set(good) and len(bad) == n  # every example has exactly one record
    errors = {k for k, v in bad.items() if v[3] is not None}
    assert {k[2] for k in errors} == {ex.id for ex in examples[:3]}  # errors only where every retry failed
    assert all(bad[k][1] == 0 and not bad[k][2] for k in errors)  # an error is not counted as a parsed answer
    assert {k: v for k, v in bad.items() if k not in errors} == {k: good[k] for k in bad if k not in errors}
    rows = json.loads(cli("report", str(next((tmp_path / "faulty").iterdir())), "--format", "json").stdout)["rows"]
    assert rows[0]["error_rate"] == 3 / n


def test_a_run_stops_when_too_many_examples_fail_and_the_same_command_retries_them(medqa, tmp_path):
    n = 30
    args = ("--limit", str(n), "--split", "test", "--strategy", "baseline", "--max-error-rate", "0.5")
    with exam_server(medqa, set(), n) as server:
        answer = server.reply

        def down(prompt):
            raise ScriptedHTTPError(503, "overloaded")

        server.reply = down
        stopped = cli(*run_args(server, tmp_path, *args)[1:], env=FAST_RETRIES)
        assert stopped.returncode == 1
        last = stopped.stderr.strip().splitlines()[-1]
        assert last.startswith(
            "Error: Stopped: 20 of 20 examples (100%) failed after retries, above --max-error-rate 0.5"
        )
        assert len(records_of(tmp_path)) == 20  # the failures are recorded as errors, not lost
        run_dir = next(tmp_path.iterdir())
        warnings = json.loads(cli("report", str(run_dir), "--format", "json").stdout)["warnings"]
        assert any("failed after retries" in w for w in warnings)

        server.reply = answer
        server.calls = 0
        done = cli(*run_args(server, tmp_path, *args)[1:], env=FAST_RETRIES)
        assert done.returncode == 0, done.stderr
        assert server.calls == n  # the 20 failed examples again and the 10 never tried
    recs = records_of(tmp_path)
    assert len(recs) == n and all(v[3] is None for v in recs.values())
    warnings = json.loads(cli("report", str(run_dir), "--format", "json").stdout)["warnings"]
    assert [w for w in warnings if "chosen on test" not in w] == []  # only that a test-chosen ceiling is optimistic


def test_the_report_says_when_a_run_stopped_at_its_budget(medqa, tmp_path):
    args = ("--limit", "10", "--split", "test", "--strategy", "baseline", "--max-calls", "4")
    with exam_server(medqa, set(), 10) as server:
        done = cli(*run_args(server, tmp_path, *args)[1:])
    assert done.returncode == 0, done.stderr
    run_dir = next(tmp_path.iterdir())
    for fmt in ("text", "md"):
        assert (
            "is incomplete: Stopped at the budget (--max-calls 4)"
            in cli("report", str(run_dir), "--format", fmt).stdout
        )
    warnings = json.loads(cli("report", str(run_dir), "--format", "json").stdout)["warnings"]
    (warning,) = [w for w in warnings if "chosen on test" not in w]  # --split test: the ceiling is optimistic
    assert "Stopped at the budget (--max-calls 4) after 4 LM calls" in warning


def test_two_processes_with_four_threads_each_write_one_sqlite_store_without_loss_or_duplicates(medqa, tmp_path):
    n = 40
    url = f"sqlite:///{tmp_path / 'shared.sqlite'}"
    args = ("--limit", str(n), "--strategy", "baseline", "--strategy", "cot", "--threads", "4", "--storage", url)
    with exam_server(medqa, set(), n) as server:
        procs = [
            subprocess.Popen(run_args(server, tmp_path / f"w{i}", *args), stderr=subprocess.PIPE, text=True)
            for i in range(2)
        ]
        errs = [p.communicate(timeout=600)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errs
    assert not any("locked" in e for e in errs)
    recs = records_of(tmp_path / "w0", storage=url)
    assert len(recs) == 2 * 2 * n  # two configs, two splits: complete, and records_of checked no duplicates
    with create_engine(url).connect() as conn:
        assert conn.execute(text("select count(*) from records")).scalar() == 4 * n


# --- PostgreSQL: workers on several machines share one study and one store ------------------

POSTGRES = os.environ.get("PROMPTOPT_TEST_POSTGRES")
needs_postgres = pytest.mark.skipif(
    not POSTGRES, reason="PROMPTOPT_TEST_POSTGRES is unset (a postgresql+psycopg:// URL; .ci/run sets it)"
)
# the default search space with the unbatched verify_choices in place of knn_fewshot: 8 configs
SPACE = [s for s in DEFAULT_SPACE if not s.startswith("knn_fewshot")] + ["verify_choices"]


def search_args(server, out, storage=None):
    args = [EXE, "search", "--model", "openai/scripted", "--api-base", server.base_url, "--out", str(out)]
    args += ["--limit", "12", "--rung0", "12", "--optimizer", "none"]
    for s in SPACE:
        args += ["--strategy", s]
    return args + (["--storage", storage] if storage else [])


def report_rows(source):
    done = cli("report", source, "--format", "json")
    assert done.returncode == 0, done.stderr
    return [{k: v for k, v in r.items() if k != "wall_s"} for r in json.loads(done.stdout)["rows"]]


@needs_postgres
def test_two_workers_sharing_postgresql_run_every_trial_once_and_report_what_one_worker_reports(medqa, tmp_path):
    import optuna
    from test_compile import right_with
    from test_strategies import scripted

    with scripted(medqa, right_with(0.6), repeatable=True) as server:
        alone = subprocess.run(search_args(server, tmp_path / "alone"), capture_output=True, text=True, timeout=900)
        assert alone.returncode == 0, alone.stderr
        single_calls, server.calls = server.calls, 0
        # a fresh database per test run: the run id includes the server's port, but reruns must not meet
        db = f"promptopt_test_{os.getpid()}_{server.base_url.rsplit(':', 1)[1].split('/')[0]}"
        admin = create_engine(POSTGRES, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{db}"'))
            conn.execute(text(f'CREATE DATABASE "{db}"'))
        admin.dispose()
        url = POSTGRES.rsplit("/", 1)[0] + "/" + db
        procs = [
            subprocess.Popen(search_args(server, tmp_path / f"w{i}", url), stderr=subprocess.PIPE, text=True)
            for i in range(2)
        ]
        errs = [p.communicate(timeout=900)[1] for p in procs]
        assert [p.returncode for p in procs] == [0, 0], errs
        shared_calls = server.calls

    assert shared_calls == single_calls  # no trial, and no test scoring, ran twice
    for summary in optuna.get_all_study_summaries(url):
        study = optuna.load_study(study_name=summary.study_name, storage=url)
        finished = [
            t.params["config"] for t in study.trials if t.state.is_finished() and not t.user_attrs.get("duplicate")
        ]
        assert sorted(finished) == sorted(set(finished))  # each config scored by exactly one trial
        if not summary.study_name.endswith("|test"):
            assert len(finished) == len(SPACE)
        assert all(t.user_attrs.get("worker") for t in study.trials)  # each trial says which worker ran it
    assert report_rows(url) == report_rows(str(next((tmp_path / "alone").iterdir())))


def test_two_run_workers_on_one_store_make_each_lm_call_once_and_leave_the_records_one_worker_makes(medqa, tmp_path):
    n = 8
    args = ("--limit", str(n), "--strategy", "baseline", "--strategy", "predict", "--strategy", "cot")
    right = {e.id for e in medqa.examples("test", n)[::2]} | {e.id for e in medqa.examples("val", n)[1::2]}
    with exam_server(medqa, right, n) as server:
        alone_url = f"sqlite:///{tmp_path / 'alone.sqlite'}"
        alone = subprocess.run(run_args(server, tmp_path / "alone", *args, "--storage", alone_url), capture_output=True,
                               text=True, timeout=600)  # fmt: skip
        assert alone.returncode == 0, alone.stderr
        one_worker, server.calls = server.calls, 0
        assert one_worker == 3 * 2 * n
        answer = server.reply

        def slow(prompt):  # long enough that the two workers run at the same time
            time.sleep(0.05)
            return answer(prompt)

        server.reply = slow
        url = f"sqlite:///{tmp_path / 'shared.sqlite'}"
        procs = [
            subprocess.Popen(
                run_args(server, tmp_path / f"w{i}", *args, "--storage", url), stderr=subprocess.PIPE, text=True
            )  # fmt: skip
            for i in range(2)
        ]
        errs = [p.communicate(timeout=600)[1] for p in procs]
        assert [p.returncode for p in procs] == [0, 0], errs
        assert server.calls == one_worker  # each LM call made once between the two workers
    shared, single = records_of(tmp_path / "w0", storage=url), records_of(tmp_path / "alone", storage=alone_url)
    assert shared == single


def test_rpm_spaces_the_requests_to_an_endpoint_even_with_many_threads(medqa, tmp_path):
    n = 10
    args = ("--limit", str(n), "--strategy", "baseline", "--threads", "8")
    with exam_server(medqa, set(), n) as server:
        answer, arrivals = server.reply, []

        def timed(prompt):
            arrivals.append(time.monotonic())
            return answer(prompt)

        server.reply = timed
        free = cli(*run_args(server, tmp_path / "free", *args)[1:])
        assert free.returncode == 0, free.stderr
        bursts = sorted(arrivals)
        arrivals.clear()
        paced = cli(*run_args(server, tmp_path / "paced", *args, "--rpm", "300")[1:])  # one request per 0.2 s
        assert paced.returncode == 0, paced.stderr
    paced = sorted(arrivals)
    assert len(paced) == 2 * n
    # request starts are spaced 0.2 s apart (slow enough that the unpaced run stays far faster even
    # on a machine busy with other tests); the first few arrivals can bunch while the client warms
    # up (its first calls are slower), so the rate is judged from the sixth request on. Arrivals
    # carry the client's own jitter on top of the spaced starts, so the bound is 6 a second
    assert (len(paced) - 6) / (paced[-1] - paced[5]) <= 6.0
    # the starts from the sixth on are 14 intervals of 0.2 s; arrivals, with the client's jitter,
    # must still take two seconds. Measured from the sixth because the first arrival can come
    # late: the client's first call warms up while the limiter keeps the later starts on schedule
    assert paced[-1] - paced[5] >= 2.0
    assert bursts[-1] - bursts[0] < 0.5 * (paced[-1] - paced[0])  # without it, eight at a time


def test_examples_that_timed_out_are_named_as_timeouts_in_the_closing_summary(medqa, tmp_path):
    n = 6
    slow = {ex.inputs["question"] for ex in medqa.examples("test", n)[:2]}
    with exam_server(medqa, set(), n) as server:
        answer = server.reply

        def reply(prompt):
            if any(q in prompt for q in slow):
                time.sleep(2.0)  # past the 0.5 s timeout, on every attempt
            return answer(prompt)

        server.reply = reply
        done = cli(*run_args(server, tmp_path, "--limit", str(n), "--split", "test", "--strategy", "baseline")[1:],
                   env={"PROMPTOPT_TIMEOUT_S": "0.5", "PROMPTOPT_RETRIES": "1", "PROMPTOPT_BACKOFF_S": "0.01"})  # fmt: skip
    assert done.returncode == 0, done.stderr
    said = " ".join(done.stderr.split())
    assert ("2 examples failed after retries and are left out of the scores; 2 of them timed out after 0.5 s per "
            "call (PROMPTOPT_TIMEOUT_S sets it); run the same command again to retry them.") in said  # fmt: skip


def test_calls_that_come_near_their_timeout_are_named_in_the_closing_summary(medqa, tmp_path):
    n = 4
    slow = medqa.examples("test", n)[0].inputs["question"]
    with exam_server(medqa, set(), n) as server:
        answer = server.reply

        def reply(prompt):
            if slow in prompt:
                time.sleep(1.5)  # answered, but past half of the 2 s timeout
            return answer(prompt)

        server.reply = reply
        done = cli(*run_args(server, tmp_path, "--limit", str(n), "--split", "test", "--strategy", "baseline")[1:],
                   env={"PROMPTOPT_TIMEOUT_S": "2", "PROMPTOPT_RETRIES": "0"})  # fmt: skip
    assert done.returncode == 0, done.stderr
    said = " ".join(done.stderr.split())
    assert re.search(r"slowest call took [12] s of its 2 s timeout; on a busier machine calls will start timing out", said), said
