"""Measurement integrity: every number a report prints is checked against a truth planted in a
scripted model (right on a known set of questions, failing on a known set)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import cli, exam_server

from promptopt.testing import ScriptedHTTPError

EXE = str(Path(sys.executable).with_name("promptopt"))
FAST_RETRIES = {"PROMPTOPT_TIMEOUT_S": "2", "PROMPTOPT_BACKOFF_S": "0.01", "PROMPTOPT_RETRIES": "1"}


def run(server, out, *extra, models=("openai/scripted",)):
    flags = [arg for m in models for arg in ("--model", m)]
    return cli("run", *flags, "--api-base", server.base_url, "--out", str(out), *extra, env=FAST_RETRIES)


def run_dir_of(done) -> str:
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1].removeprefix("Run folder: ")


def report(source, *extra) -> dict:
    done = cli("report", source, "--format", "json", *extra)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def failing_on(server, task, broken_when):
    """Make the server fail (HTTP 500, every retry) on a question when broken_when(id, prompt)."""
    answer = server.reply
    by_question = {ex.inputs["question"]: ex.id for ex in task.examples("test", 100)}

    def reply(prompt):
        ex_id = next((i for q, i in by_question.items() if q in prompt), None)
        if ex_id is not None and broken_when(ex_id, prompt):
            raise ScriptedHTTPError(500, "always failing")
        return answer(prompt)

    server.reply = reply


def structured(prompt: str) -> bool:
    return "[[ ## " in prompt  # DSPy's field format: predict; the baseline prompt ends in "Answer:"


def test_failed_calls_are_left_out_of_the_score_and_reported_as_errors_and_pairing_uses_common_items(medqa, tmp_path):
    n = 40
    ids = [e.id for e in medqa.examples("test", n)]
    right = set(ids[::2]) | set(ids[1:8])  # the model knows these
    # a fifth of the questions fail on every call, two of them under both prompts; predict fails
    # only where the model is wrong, so it scores higher and is the ceiling
    fail_baseline, fail_predict = set(ids[20:28]), set(ids[9:25:2])
    with exam_server(medqa, right, n) as server:
        failing_on(server, medqa, lambda i, p: i in (fail_predict if structured(p) else fail_baseline))
        run_dir = run_dir_of(run(server, tmp_path, "--limit", str(n), "--split", "test", "--strategy", "predict"))
    data = report(run_dir)
    rows = {r["strategy"]: r for r in data["rows"]}
    for strategy, failed in (("baseline", fail_baseline), ("predict", fail_predict)):
        answered = [i for i in ids if i not in failed]
        row = rows[strategy]
        assert (row["n"], row["n_items"], row["errors"]) == (32, 40, 8)
        assert row["error_rate"] == 0.2
        assert row["score"] == sum(i in right for i in answered) / len(answered)  # the share right among answered
    (ceiling,) = data["ceilings"]
    common = [i for i in ids if i not in fail_baseline | fail_predict]
    assert ceiling["selected_config_id"] == rows["predict"]["config_id"]
    assert ceiling["uplift_n"] == len(common) == 26
    assert ceiling["uplift_baseline_score"] == sum(i in right for i in common) / len(common)
    assert ceiling["uplift"] == 0.0  # the scripted model is right on the same questions under both prompts
    text = cli("report", run_dir).stdout
    assert "20.0 (8)" in text  # errors shown as rate and count
    assert "n=26" in text  # the uplift states its items


def test_an_uplift_on_configs_that_share_no_answered_item_has_no_verdict(medqa, tmp_path):
    n = 20
    ids = [e.id for e in medqa.examples("test", n)]
    first, second = set(ids[:10]), set(ids[10:])
    with exam_server(medqa, set(ids[::3]), n) as server:
        failing_on(server, medqa, lambda i, p: i in (second if structured(p) else first))
        run_dir = run_dir_of(run(server, tmp_path, "--limit", str(n), "--split", "test", "--strategy", "predict"))
    (ceiling,) = report(run_dir)["ceilings"]
    assert ceiling["uplift_n"] == 0
    assert ceiling["uplift"] is None and ceiling["verdict"] is None  # not "0.0 [0, 0], tie"
    assert "none (n=0 < 10)" in cli("report", run_dir).stdout


def test_a_store_with_two_runs_reports_each_apart_and_never_pools_them(medqa, tmp_path):
    n = 10
    url = f"sqlite:///{tmp_path / 'shared.sqlite'}"
    args = ("--limit", str(n), "--split", "test", "--strategy", "baseline", "--storage", url)
    with exam_server(medqa, {e.id for e in medqa.examples("test", n)[:6]}, n) as server:
        one = Path(run_dir_of(run(server, tmp_path, *args, "--seed", "0"))).name
        two = Path(run_dir_of(run(server, tmp_path, *args, "--seed", "1"))).name
    data = report(url)
    assert sorted((r["run_id"], r["n"], r["score"]) for r in data["rows"]) == sorted([(one, n, 0.6), (two, n, 0.6)])
    assert sorted(c["run_id"] for c in data["ceilings"]) == sorted([one, two])
    assert {r["run_id"] for r in data["runs"]} == {one, two}
    assert any("holds 2 runs" in w for w in data["warnings"])
    only = report(url, "--run", two)
    assert [(r["run_id"], r["n"]) for r in only["rows"]] == [(two, n)]
    missing = cli("report", url, "--run", "run-nope")
    assert missing.returncode == 1
    (line,) = missing.stderr.strip().splitlines()
    assert "has no run 'run-nope'" in line and one in line and two in line


def test_a_ceiling_chosen_on_test_says_so_in_ceilings_head_to_head_and_flips(medqa, tmp_path):
    n = 20
    ids = [e.id for e in medqa.examples("test", n)]
    with exam_server(medqa, set(), n) as server:
        right = {  # model a: baseline 8, predict 14; model b: baseline 12, predict 10 — their order flips
            ("a", False): set(ids[:8]), ("a", True): set(ids[:14]),
            ("b", False): set(ids[:12]), ("b", True): set(ids[:10]),
        }  # fmt: skip
        for model in ("a", "b"):
            server.replies[model] = _knows(medqa, n, lambda p, m=model: right[(m, structured(p))])
        done = run(server, tmp_path, "--limit", str(n), "--split", "test", "--strategy", "predict",
                   models=("openai/a", "openai/b"))  # fmt: skip
        run_dir = run_dir_of(done)
    data = report(run_dir)
    assert {c["selected_on"] for c in data["ceilings"]} == {"test"}
    assert {h["selected_on"] for h in data["head_to_head"] if h["setting"] == "ceiling"} == {"test"}
    (flip,) = data["flips"]
    assert flip["selected_on"] == "test"
    assert any("chosen on test" in w and "optimistic" in w for w in data["warnings"])
    assert "test: optimistic" in cli("report", run_dir).stdout
    # the verdicts of this task form one Holm family: a's uplift (b's ceiling is its baseline, no
    # comparison) and the distinct pairs of configs (baseline vs baseline, predict vs baseline)
    assert {c["comparisons"] for c in data["ceilings"]} == {3}
    assert all(h["p_holm"] >= h["p"] for h in data["head_to_head"])
    sens = {r["model"].split("@")[0]: r for r in data["sensitivity"] if r["family"] == "all"}
    assert abs(sens["openai/a"]["spread"] - 0.3) < 1e-9 and sens["openai/a"]["noise_spread"] > 0


def _knows(task, n, right_for):
    """A reply that is right exactly on the ids `right_for(prompt)` names."""
    examples = task.examples("test", n)

    def reply(prompt):
        ex = next(ex for ex in examples if ex.inputs["question"] in prompt)
        letters = list(ex.inputs["options"])
        letter = ex.gold if ex.id in right_for(prompt) else letters[(letters.index(ex.gold) + 1) % len(letters)]
        return _reply_as(prompt, letter)

    return reply


def _reply_as(prompt, letter):
    from promptopt.testing import structured_answer

    return structured_answer(letter) if structured(prompt) else f" {letter}"


def test_a_run_killed_halfway_is_reported_as_unfinished_with_its_incomplete_configs(medqa, tmp_path):
    n = 12
    args = ["--limit", str(n), "--split", "val", "--split", "test", "--strategy", "predict"]
    with exam_server(medqa, set(), n) as server:
        answer = server.reply
        cmd = [EXE, "run", "--model", "openai/scripted", "--api-base", server.base_url, "--out", str(tmp_path), *args]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def reply(prompt):
            if server.calls == n + 5:  # baseline done on val, predict five questions into val
                os.kill(proc.pid, signal.SIGKILL)
                time.sleep(0.5)
            return answer(prompt)

        server.reply = reply
        proc.wait(timeout=300)
        assert proc.returncode == -signal.SIGKILL
        (run_dir,) = [str(p) for p in tmp_path.iterdir() if p.name.startswith("run-")]
        data = report(run_dir)
        (status,) = data["runs"]
        assert status["status"] == "in_progress"
        assert any(c.startswith("predict") and "(val " in c for c in status["incomplete_configs"])
        (warning,) = [w for w in data["warnings"] if "interrupted" in w]
        assert "its figures are partial" in warning and "predict" in warning
        assert "WARNING: run " in cli("report", run_dir).stdout

        server.reply = answer
        done = cli(*cmd[1:])
        assert done.returncode == 0, done.stderr
    data = report(run_dir)
    assert data["runs"][0]["status"] == "complete" and data["warnings"] == []


def test_a_run_stopped_by_a_fatal_error_is_reported_as_interrupted(medqa, tmp_path):
    n = 6
    with exam_server(medqa, set(), n) as server:
        answer = server.reply

        def revoked(prompt):
            if server.calls > 3:
                raise ScriptedHTTPError(401, "key revoked")
            return answer(prompt)

        server.reply = revoked
        done = run(server, tmp_path, "--limit", str(n), "--split", "test", "--strategy", "baseline")
        assert done.returncode == 1
    (run_dir,) = [str(p) for p in tmp_path.iterdir() if p.name.startswith("run-")]
    data = report(run_dir)
    assert data["runs"][0]["status"] == "interrupted"
    assert any("was interrupted" in w for w in data["warnings"])


def test_pareto_does_not_put_an_unpriced_model_on_the_frontier_for_free_beside_a_priced_one(medqa, tmp_path):
    n = 10
    with exam_server(medqa, set(), n) as server:
        run_dir = run_dir_of(
            run(
                server,
                tmp_path,
                "--limit",
                str(n),
                "--split",
                "test",
                "--strategy",
                "baseline",
                models=("openai/gpt-4o-mini", "openai/scripted"),
            )  # fmt: skip
        )
    data = report(run_dir)
    priced = {r["model"] for r in data["rows"] if r["cost_usd"] > 0}
    assert len(priced) == 1 and "gpt-4o-mini" in next(iter(priced))  # LiteLLM's price table knows it
    assert {p["cost_axis"] for p in data["pareto"]} == {"tokens (mixed)"}
    assert any("Pareto frontier of medqa is in tokens" in w for w in data["warnings"])
    with_price = report(run_dir, "--local-price", "0.5")
    assert {p["cost_axis"] for p in with_price["pareto"]} == {"usd"}
    assert not any("Pareto" in w for w in with_price["warnings"])


def test_an_optimizer_chooses_on_a_dev_split_from_train_and_never_sees_the_val_items(medqa, tmp_path):
    n = 3
    train_tail = medqa.examples("train")[-5:]
    val = medqa.examples("val")
    with exam_server(medqa, set(), n) as server:
        pool = [*medqa.examples("train"), *val[:20]]
        seen: list[str] = []

        def reply(prompt):  # the question asked is the last one in the prompt (demos come first)
            asked = max((ex for ex in pool if ex.inputs["question"] in prompt),
                        key=lambda ex: prompt.rfind(ex.inputs["question"]))  # fmt: skip
            seen.append(asked.id)
            return _reply_as(prompt, asked.gold)

        server.reply = reply
        out = tmp_path / "prog"
        done = cli("compile", "--model", "openai/scripted", "--api-base", server.base_url, "--task", "medqa",
                   "--strategy", "predict", "--optimizer", "bootstrap_rs:candidates=1,val=5", "--limit", str(n),
                   "--runs", str(tmp_path), "--out", str(out))  # fmt: skip
        assert done.returncode == 0, done.stderr
    val_ids = {ex.id for ex in val[:20]}
    scored_on_val = [i for i in seen if i in val_ids]
    assert sorted(scored_on_val) == sorted(ex.id for ex in val[:n])  # only the final val scoring, once each
    assert {ex.id for ex in train_tail} <= set(seen)  # the optimizer chose on its dev split


def test_the_report_says_when_one_config_fails_far_more_often_than_another(medqa, tmp_path):
    n = 30
    ids = [e.id for e in medqa.examples("test", n)]
    with exam_server(medqa, set(ids[::2]), n) as server:
        failing_on(server, medqa, lambda i, p: structured(p) and i in set(ids[:12]))  # predict: 40% errors
        run_dir = run_dir_of(run(server, tmp_path, "--limit", str(n), "--split", "test", "--strategy", "predict"))
    data = report(run_dir)
    (warning,) = [w for w in data["warnings"] if "failed on" in w]
    assert "40% of items against 0%" in warning and "scored on different items" in warning


def test_a_hosted_model_missing_from_the_price_table_is_named_not_shown_as_free(tmp_path):
    from promptopt.reports import build
    from promptopt.simulate import SimConfig, simulate

    recs = simulate({"openai/gpt-9-preview": [SimConfig("baseline", 0.5)], "local/gemma": [SimConfig("cot", 0.4)]})
    report = build(recs)
    assert report["settings"]["price_unknown_models"] == ["openai/gpt-9-preview"]
    assert any("no price is known for openai/gpt-9-preview" in w for w in report["warnings"])


def test_search_leaves_failed_calls_out_of_its_val_scores_and_its_choice(medqa, tmp_path):
    from promptopt.testing import requested_fields, structured_answer

    n = 30
    val = medqa.examples("val", n)
    knows = {ex.id for ex in val[::2]}  # predict is right here and fails on every call elsewhere
    cot_right = {ex.id for ex in val[: int(0.7 * n)]}

    def reply(prompt):
        ex = next(ex for ex in [*val, *medqa.examples("test", n)] if ex.inputs["question"] in prompt)
        letters = list(ex.inputs["options"])
        wrong = letters[(letters.index(ex.gold) + 1) % len(letters)]
        if "reasoning" in requested_fields(prompt):  # cot
            return structured_answer(ex.gold if ex.id in cot_right else wrong)
        if "[[ ## " in prompt:  # predict
            if ex.id not in knows and ex in val:
                raise ScriptedHTTPError(500, "always failing")
            return structured_answer(ex.gold)
        return f" {ex.gold}"  # the baseline, on test

    from promptopt.testing import ScriptedServer

    with ScriptedServer(reply) as server:
        done = cli("search", "--model", "openai/scripted", "--api-base", server.base_url, "--out", str(tmp_path),
                   "--limit", str(n), "--rung0", "10", "--strategy", "predict", "--strategy", "cot",
                   "--optimizer", "none", "--max-error-rate", "0.9", env=FAST_RETRIES)  # fmt: skip
        assert done.returncode == 0, done.stderr
    (run_dir,) = [str(p) for p in tmp_path.iterdir() if p.name.startswith("run-")]
    rows = {(r["strategy"], r["split"]): r for r in report(run_dir)["rows"]}
    predict = rows[("predict", "val")]
    assert (predict["score"], predict["errors"], predict["n"]) == (1.0, n // 2, n // 2)  # right on all it answered
    assert "Chosen on val for openai/scripted on medqa: predict/none" in done.stderr  # not cot's 70%
    assert [r["strategy"] for r in rows.values() if r["selected"]] == ["predict", "predict"]


def test_promptopt_evaluate_leaves_failed_calls_out_of_the_accuracy(medqa, tmp_path):
    n = 10
    ids = [e.id for e in medqa.examples("test", n)]
    with exam_server(medqa, set(ids[:4]), n) as server:
        run_dir = Path(
            run_dir_of(run(server, tmp_path, "--limit", str(n), "--split", "test", "--strategy", "baseline"))
        )
        (program,) = (run_dir / "programs").iterdir()
        failing_on(server, medqa, lambda i, p: i in set(ids[5:]))  # half the questions fail, all of them wrong ones
        done = cli("evaluate", str(program), "--split", "test", "--limit", str(n), "--api-base", server.base_url,
                   env=FAST_RETRIES)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "accuracy 80.0%" in done.stdout and "(n=5 answered)" in done.stdout  # 4 right of the 5 answered
    assert "errors 50.0% (5 of 10, not counted as wrong)" in done.stdout


def test_a_task_whose_items_come_in_clusters_reports_their_design_effect_and_counts_clusters_not_items(tmp_path):
    from promptopt import stats
    from promptopt.tasks import load_task

    rows = [{"id": f"c{c}-{j}", "case": f"case{c}", "question": f"Case {c}, question {j}: is it serious?",
             "a": "yes", "b": "no", "answer": "A"} for c in range(24) for j in range(4)]  # fmt: skip
    (tmp_path / "cases.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = ("name: cases\ndescription: d\ncitation: c\nlicense: CC0\nsource: {format: jsonl, files: cases.jsonl}\n"
            "id: id\ncluster: case\ninputs: {question: question, options: [a, b]}\nanswer: {type: multiple_choice, "
            "gold: answer}\nsplit: {seed: 2, train: 8, val: 8}\nbaseline: {instructions: Pick one.}\n")  # fmt: skip
    (tmp_path / "cases.yaml").write_text(spec)
    task = load_task(str(tmp_path / "cases.yaml"))
    right = {ex.id for ex in task.rows() if int(ex.id[1:].split("-")[0]) % 3 != 0}  # whole cases right or wrong
    with exam_server(task, right, 100) as server:
        done = cli("run", "--tasks-dir", str(tmp_path), "--task", "cases", "--model", "openai/m", "--api-base",
                   server.base_url, "--out", str(tmp_path / "out"), "--split", "test", "--limit", "80")  # fmt: skip
    assert done.returncode == 0, done.stderr
    data = json.loads(cli("report", done.stdout.strip().splitlines()[-1].removeprefix("Run folder: "),
                          "--format", "json").stdout)  # fmt: skip
    test = task.examples("test")
    scores = np.array([float(ex.id in right) for ex in test])
    cases = [ex.cluster for ex in test]
    sums = pd.Series(scores).groupby(cases).agg(["sum", "size"])
    k, n = len(sums), len(scores)
    by_hand = k / (k - 1) * ((sums["sum"] - scores.mean() * sums["size"]) ** 2).sum() / n**2 / (scores.var(ddof=1) / n)
    effective = n / by_hand
    for row in [r for r in data["rows"] if r["split"] == "test"]:  # every config is right on the same cases
        assert row["clusters"] == k and row["design_effect"] == pytest.approx(by_hand) and by_hand > 2
        assert (row["ci_low"], row["ci_high"]) == pytest.approx(stats.wilson(scores.mean() * effective, effective))
    # a cluster column the data does not have: one sentence before any call
    (tmp_path / "cases.yaml").write_text(spec.replace("cluster: case", "cluster: case_id"))
    bad = cli("tasks", "validate", str(tmp_path / "cases.yaml"))
    assert bad.returncode != 0 and "cluster column 'case_id' is not in the data; valid columns: id, case," in bad.stderr
