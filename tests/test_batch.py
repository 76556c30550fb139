"""--batch: the calls of fixed programs go through the provider's files + batches API (a scripted
OpenAI-compatible server implements both), with the records the synchronous path writes, at the
price table's batch price, and nothing paid twice when a process dies while its batch runs."""

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import cli, exam_server

LIMIT = 4
PRICED = "openai/gpt-4o-mini"  # in LiteLLM's price table, with batch prices
ARGS = ("--limit", str(LIMIT), "--split", "test", "--strategy", "baseline", "--strategy", "self_consistency:n=3")
ENV = {"OPENAI_API_KEY": "sk-test", "PROMPTOPT_BATCH_POLL_S": "0.05"}
SAME = ["config_id", "example_id", "prediction", "score", "parse_ok", "error", "raw_output", "lm_calls",
        "prompt_tokens", "completion_tokens", "sent"]  # fmt: skip


def _records(out: Path) -> pd.DataFrame:
    (db,) = out.glob("*/results.sqlite")
    with sqlite3.connect(db) as conn:
        return pd.read_sql("select * from records order by config_id, example_id", conn)


def _run(server, out: Path, *extra: str) -> subprocess.CompletedProcess:
    return cli("run", "--model", PRICED, "--api-base", server.base_url, "--out", str(out), *ARGS, *extra, env=ENV)


@pytest.fixture(scope="module")
def runs(medqa, tmp_path_factory):
    """The same plan on one scripted model, synchronously and through batches (a fresh server each,
    so each counts its own calls): (records, server) per mode."""
    right = {e.id for e in medqa.examples("test", LIMIT)[:3]}
    out = {}
    for mode in ("sync", "batch"):
        folder = tmp_path_factory.mktemp(mode)
        with exam_server(medqa, right, LIMIT) as server:
            server.batch_polls = 2
            done = _run(server, folder, *(["--batch"] if mode == "batch" else []))
            assert done.returncode == 0, done.stderr
            out[mode] = (_records(folder), server, done)
    return out


def test_a_batched_run_records_what_the_synchronous_run_records_at_the_batch_price(runs):
    (sync, sync_server, _), (batch, batch_server, done) = runs["sync"], runs["batch"]
    assert len(batch) == 2 * LIMIT and batch[SAME].reset_index(drop=True).equals(sync[SAME].reset_index(drop=True))
    # every call went through a batch, none synchronously, and the provider billed the same tokens
    assert (batch_server.calls, batch_server.batched) == (0, sync_server.calls) and sync_server.calls == 4 * LIMIT
    assert batch_server.usage == sync_server.usage
    # one batch per round for the whole grid: baseline's calls and the first samples, then the
    # second samples, then the third (self-consistency's samples depend on each other in DSPy)
    assert len(batch_server.batches) == 3
    assert batch.extras.map(lambda e: '"batch_calls"' in e).all()
    # LiteLLM's table prices gpt-4o-mini's batch tokens at half its synchronous ones
    assert batch.cost_usd.sum() == pytest.approx(0.5 * sync.cost_usd.sum()) and sync.cost_usd.sum() > 0
    assert "submitted" in done.stdout + done.stderr and "completed" in done.stdout + done.stderr


def test_a_run_killed_while_its_batch_runs_collects_that_batch_and_pays_for_nothing_twice(medqa, tmp_path):
    with exam_server(medqa, set(), LIMIT) as server:
        server.batch_polls = 10**9  # the batch never ends while the first process waits on it
        exe = Path(sys.executable).with_name("promptopt")
        first = subprocess.Popen([str(exe), "run", "--model", PRICED, "--api-base", server.base_url, "--out",
                                  str(tmp_path), *ARGS, "--batch"], env={**os.environ, **ENV},
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        deadline = time.monotonic() + 120
        while not server.batches and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1.0)  # the batch is in the store before the process polls it
        first.send_signal(signal.SIGKILL)
        first.wait()
        submitted = sum(b["request_counts"]["total"] for b in server.batches.values())
        assert submitted > 0 and server.batched == 0
        server.batch_polls = 1
        done = _run(server, tmp_path, "--batch")
        assert done.returncode == 0, done.stderr
        # the first batch was collected, not sent again: every request asked exactly once
        assert server.calls == 0 and server.batched == 4 * LIMIT
        assert server.batches["batch_1"]["request_counts"]["total"] == submitted
    assert len(_records(tmp_path)) == 2 * LIMIT


def test_requests_that_expire_in_their_batch_are_asked_synchronously_never_scored_wrong(medqa, tmp_path):
    right = {e.id for e in medqa.examples("test", LIMIT)}
    with exam_server(medqa, right, LIMIT) as server:
        server.batch_expire = 1  # the first request of every batch comes back expired
        done = _run(server, tmp_path, "--batch")
        assert done.returncode == 0, done.stderr
        batches = len(server.batches)
        assert server.calls == batches and server.batched == 4 * LIMIT - batches
    recs = _records(tmp_path)
    assert recs.error.isna().all() and (recs.score == 1.0).all()  # the model is right on every item
    assert "asked synchronously" in done.stdout + done.stderr


@pytest.mark.parametrize(
    ("model", "said"),
    [("local/gemma-3-270m", "has no batch API"), ("anthropic/claude-3-5-haiku-20241022", "cannot batch")],
)
def test_batch_refuses_a_model_it_cannot_batch_in_one_sentence_before_any_call(model, said, tmp_path):
    done = cli("run", "--model", model, "--batch", "--out", str(tmp_path), env={"ANTHROPIC_API_KEY": "sk-test"})
    assert done.returncode == 1 and said in done.stderr and "openai" in done.stderr  # names what it can batch
    assert len(done.stderr.strip().splitlines()) == 1 and not any(tmp_path.iterdir())


def test_batch_refuses_a_plan_with_nothing_but_adaptive_calls(tmp_path):
    """Every command scores a fixed program on val or test (the CLI refuses no split); a plan built
    in code with none has only adaptive calls, which a batch cannot answer at once."""
    from dataclasses import replace

    from promptopt import api
    from promptopt.errors import UserError
    from promptopt.runplan import validate_plan

    plan = replace(api.plan(models=[PRICED], batch=True, out=tmp_path), splits=[])
    with pytest.raises(UserError, match="scores no fixed program"):
        validate_plan(plan, credentials=False)


def test_the_ledger_totals_per_role_equal_what_the_provider_billed_each_model(medqa, tmp_path):
    """A MIPROv2 compile with its own instruction proposer and a GEPA compile with its own
    reflection model: the report's ledger bills each role what the server counted for its model."""
    from promptopt.testing import CompileOracle, ScriptedServer, fill_fields

    oracle = CompileOracle(medqa)
    with ScriptedServer(oracle) as server:
        server.replies = {m: (lambda p: fill_fields(p, "Read every option, then answer.")) for m in ("proposer", "reflector")}
        done = cli("run", "--model", "openai/scripted", "--api-base", server.base_url, "--out", str(tmp_path),
                   "--limit", "6", "--split", "val", "--strategy", "cot",
                   "--optimizer", "mipro:val=10,prompt_model=openai/proposer",
                   "--optimizer", "gepa:metric_calls=40,val=10,reflection_model=openai/reflector",
                   env={"OPENAI_API_BASE": server.base_url, "OPENAI_API_KEY": "sk-test"})  # fmt: skip
        assert done.returncode == 0, done.stderr
        billed = {m: u["calls"] for m, u in server.usage.items()}
        tokens = {m: u["prompt_tokens"] + u["completion_tokens"] for m, u in server.usage.items()}
    import json as _json

    (run_dir,) = tmp_path.glob("run-*")
    ledger = _json.loads(cli("report", str(run_dir), "--format", "json").stdout)["ledger"]
    by = {}
    for row in ledger:
        by.setdefault(row["role"], [0, 0])
        by[row["role"]][0] += row["lm_calls"]
        by[row["role"]][1] += row["prompt_tokens"] + row["completion_tokens"]
    assert billed["proposer"] > 0 and billed["reflector"] > 0
    assert by == {"task": [billed["scripted"], tokens["scripted"]], "proposer": [billed["proposer"], tokens["proposer"]],
                  "reflection": [billed["reflector"], tokens["reflector"]]}  # fmt: skip
    assert {(r["role"], r["phase"]) for r in ledger} == {("task", "compile"), ("task", "val"), ("proposer", "compile"),
                                                          ("reflection", "compile")}  # fmt: skip


@pytest.mark.parametrize("judge", ["gpt-4o", "gpt-4o-mini"])  # another model, or the task model judging too
def test_judge_grading_goes_through_batches_too_and_scores_what_a_synchronous_judge_scores(tmp_path, judge):
    import json as _json

    from test_open_ended import _judged_task, honest_judge, organ_model

    from promptopt.tasks import load_task
    from promptopt.testing import ScriptedServer

    model = organ_model(_judged_task(tmp_path))

    def reply(prompt):  # one model name may answer both: a judge's prompt quotes the answer to grade
        return honest_judge(prompt) if "<reference>" in prompt else model(prompt)

    with ScriptedServer(model, replies={judge: reply}) as server:
        done = cli("run", "--model", PRICED, "--api-base", server.base_url, "--judge-model", f"openai/{judge}",
                   "--judge-api-base", server.base_url, "--tasks-dir", str(tmp_path), "--task", "organs", "--split",
                   "test", "--strategy", "baseline", "--strategy", "self_consistency:n=3", "--out",
                   str(tmp_path / "out"), "--batch", env=ENV)  # fmt: skip
        assert done.returncode == 0, done.stderr
        usage = server.usage
        synchronous, batched = server.calls, server.batched
    test_ids = [e.id for e in load_task("organs", [tmp_path]).examples("test")]
    (run_dir,) = (tmp_path / "out").glob("run-*")
    data = _json.loads(cli("report", str(run_dir), "--format", "json").stdout)
    n = len(test_ids)
    assert data["rows"][0]["score"] == pytest.approx(sum(int(i[1:]) % 3 != 0 for i in test_ids) / n)
    ledger = {}
    for r in data["ledger"]:
        was = ledger.setdefault((r["role"], r["phase"]), {"lm_calls": 0, "batch_calls": 0, "cached_calls": 0})
        ledger[(r["role"], r["phase"])] = {k: was[k] + r[k] for k in was}
    # the task model's answers (one call for baseline, three for self-consistency) and the judge's
    # grading came by batch (the two configs answer alike: the second one's verdicts come from the
    # judge's cache); only its validation, which decides before any task call whether the judge
    # may score, was asked synchronously
    assert ledger[("task", "test")] == {"lm_calls": 4 * n, "batch_calls": 4 * n, "cached_calls": 0}
    assert ledger[("judge", "grading")] == {"lm_calls": n, "batch_calls": n, "cached_calls": n}
    # every request asked once, also when the task model judges too and the rounds carry both
    assert synchronous == ledger[("judge", "judge-validation")]["lm_calls"] and batched == 5 * n
    assert usage[judge]["calls"] == synchronous + n + (4 * n if judge == "gpt-4o-mini" else 0)


def test_evaluating_a_saved_program_with_batch_sends_its_calls_by_batch(medqa, tmp_path):
    right = {e.id for e in medqa.examples("test", LIMIT)[:2]}
    with exam_server(medqa, right, LIMIT) as server:
        made = cli("run", "--model", PRICED, "--api-base", server.base_url, "--out", str(tmp_path), "--limit",
                   str(LIMIT), "--split", "val", "--strategy", "cot", env=ENV)  # fmt: skip
        assert made.returncode == 0, made.stderr
        (program,) = tmp_path.glob("run-*/programs/*cot*")
        before = server.calls
        done = cli("evaluate", str(program), "--api-base", server.base_url, "--limit", str(LIMIT), "--batch", env=ENV)
        assert done.returncode == 0, done.stderr
        assert (server.calls - before, server.batched) == (0, LIMIT)
    assert f"accuracy {100 * 2 / LIMIT:.1f}%" in done.stdout  # right on the 2 planted of 4


def test_a_batch_is_never_sent_past_max_calls(medqa, tmp_path):
    with exam_server(medqa, set(), LIMIT) as server:
        done = cli("run", "--model", PRICED, "--api-base", server.base_url, "--out", str(tmp_path), "--limit",
                   str(LIMIT), "--split", "test", "--strategy", "baseline", "--batch", "--max-calls", "3", env=ENV)  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert (server.calls, server.batched) == (0, 3)  # a batch is paid whole: only what the budget allows went
    assert len(_records(tmp_path)) == 3 and "--max-calls 3" in done.stdout + done.stderr


def test_a_hosted_embedder_s_calls_are_the_ledger_s_embedding_role_as_the_server_counted_them(medqa, tmp_path):
    import json as _json

    with exam_server(medqa, set(), LIMIT) as server:
        done = cli("run", "--model", "openai/scripted", "--api-base", server.base_url, "--out", str(tmp_path),
                   "--limit", str(LIMIT), "--split", "test",
                   "--strategy", "knn_fewshot:k=2,pool=4,self_cot=false,embedder=litellm:openai/emb",
                   env={"OPENAI_API_BASE": server.base_url, "OPENAI_API_KEY": "sk-test"})  # fmt: skip
        assert done.returncode == 0, done.stderr
        billed = server.usage["emb"]
    (run_dir,) = tmp_path.glob("run-*")
    ledger = _json.loads(cli("report", str(run_dir), "--format", "json").stdout)["ledger"]
    embedding = {r["phase"]: (r["lm_calls"], r["prompt_tokens"]) for r in ledger if r["role"] == "embedding"}
    assert embedding["prepare"][0] == 1 and embedding["test"][0] == LIMIT  # the pool in one call, then each item
    assert sum(c for c, _ in embedding.values()) == billed["calls"]
    assert sum(t for _, t in embedding.values()) == billed["prompt_tokens"]


def test_an_empty_answer_in_a_batch_is_asked_again_synchronously_as_a_retry_would(medqa, tmp_path):
    from promptopt.testing import ScriptedServer, structured_answer

    items = {ex.inputs["question"]: ex for ex in medqa.examples("test", LIMIT)}
    seen: set[str] = set()

    def reply(prompt):  # the first answer to each question is empty (as an overloaded endpoint's can be)
        question = next(q for q in items if q in prompt)
        if question not in seen:
            seen.add(question)
            return ""
        gold = items[question].gold
        return structured_answer(gold) if "[[ ## " in prompt else f" {gold}"

    with ScriptedServer(reply) as server:
        done = cli("run", "--model", PRICED, "--api-base", server.base_url, "--out", str(tmp_path), "--limit",
                   str(LIMIT), "--split", "test", "--strategy", "cot", "--batch", env=ENV)  # fmt: skip
        assert done.returncode == 0, done.stderr
        # cot and the baseline reference by batch; the one empty answer per question asked once more
        assert (server.batched, server.calls) == (2 * LIMIT, LIMIT)
    recs = _records(tmp_path)
    assert recs.error.isna().all() and (recs.score == 1.0).all()


def test_a_dry_run_with_batch_prices_the_scoring_at_the_batch_price(tmp_path):
    from promptopt import api
    from promptopt.dryrun import dry_run

    def cost(**extra):
        plan = api.plan(models=[PRICED], strategies=["baseline", "cot"], limit=10, out=tmp_path, **extra)
        return {r["config_id"]: r["cost_usd"] for r in dry_run(plan)}

    synchronous, batched = cost(), cost(batch=True)
    assert set(batched) == set(synchronous) and all(v > 0 for v in synchronous.values())
    for cid, usd in batched.items():  # nothing compiles here: every call is scoring, at half the price
        assert usd == pytest.approx(0.5 * synchronous[cid], rel=1e-3)  # tokens are rounded only when synchronous


def test_two_runs_of_one_store_sending_the_same_request_each_keep_their_answer(tmp_path):
    """What a process that resumes run B reads back: B's own answer, though run A sent the same request."""
    from promptopt.store import Store

    store = Store(f"sqlite:///{tmp_path}/shared.db")
    for run, body in (("run-a", '{"a": 1}'), ("run-b", '{"b": 2}')):
        store.add_batch(run, "m", f"batch-{run}", ["same-key"])
        store.collect_batch(run, "m", f"batch-{run}", {"same-key": (body, None)})
    assert store.batch_answers("run-b") == {"same-key": ('{"b": 2}', None)}
    assert store.batch_answers("run-a") == {"same-key": ('{"a": 1}', None)}
    assert store.open_batches("run-b", "m") == []


def test_a_jury_graded_by_batch_pays_each_verdict_once_and_the_ledger_charges_every_one(tmp_path):
    """Two judges grade each answer: the first judge's verdict comes back in one round while the
    second one's waits for the next, so the item is finished a round later; that verdict is
    still this item's cost, not a cache hit."""
    import json as _json

    from test_open_ended import _judged_task, honest_judge, organ_model

    from promptopt.tasks import load_task
    from promptopt.testing import ScriptedServer

    judges = ("gpt-4o", "gpt-4.1-mini")
    with ScriptedServer(organ_model(_judged_task(tmp_path)), replies=dict.fromkeys(judges, honest_judge)) as server:
        done = cli("run", "--model", PRICED, "--api-base", server.base_url, *[f"--judge-model=openai/{j}" for j in judges],
                   "--judge-api-base", server.base_url, "--tasks-dir", str(tmp_path), "--task", "organs", "--split",
                   "test", "--strategy", "baseline", "--out", str(tmp_path / "out"), "--batch", env=ENV)  # fmt: skip
        assert done.returncode == 0, done.stderr
        usage = server.usage
    n = len(load_task("organs", [tmp_path]).examples("test"))
    (run_dir,) = (tmp_path / "out").glob("run-*")
    ledger = _json.loads(cli("report", str(run_dir), "--format", "json").stdout)["ledger"]
    grading = [r for r in ledger if r["phase"] == "grading"]
    validation = sum(r["lm_calls"] for r in ledger if r["phase"] == "judge-validation")
    assert sum(r["lm_calls"] for r in grading) == sum(r["batch_calls"] for r in grading) == 2 * n
    assert sum(r["cached_calls"] for r in grading) == 0
    assert sum(usage[j]["calls"] for j in judges) == validation + 2 * n  # each verdict paid once, all charged
