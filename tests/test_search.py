"""`promptopt search` against a scripted model: choice on val, test after, resume after a kill."""

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna
from conftest import cli
from test_compile import right_with
from test_strategies import MODEL, scripted

SPACE = ["predict", "cot", "self_consistency:n=3"]


def search_cmd(server, out):
    exe = Path(sys.executable).with_name("promptopt")
    args = [str(exe), "search", "--model", MODEL, "--api-base", server.base_url, "--out", str(out)]
    args += ["--limit", "40", "--rung0", "10"]
    for s in SPACE:
        args += ["--strategy", s]
    return [*args, "--optimizer", "none"]


def study_of(out: Path):
    (run_dir,) = [p for p in out.iterdir() if p.name.startswith("run-")]
    url = f"sqlite:///{run_dir / 'results.sqlite'}"
    (name,) = [s.study_name for s in optuna.get_all_study_summaries(url) if not s.study_name.endswith("|test")]
    return run_dir, optuna.load_study(study_name=name, storage=url)


def test_search_chooses_on_val_and_scores_only_the_choice_and_baseline_on_test(medqa, tmp_path):
    with scripted(medqa, right_with(0.6), repeatable=True) as server:
        done = subprocess.run(search_cmd(server, tmp_path), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "Warning" not in done.stderr  # no library warnings for the user to puzzle over
    run_dir, study = study_of(tmp_path)
    finished = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert finished and len(study.trials) == len(SPACE)
    assert all(len(t.values) == 2 for t in finished)  # val score and cost per example
    report = subprocess.run(
        [str(Path(sys.executable).with_name("promptopt")), "report", str(run_dir), "--format", "json"],
        capture_output=True, text=True,
    )  # fmt: skip
    rows = json.loads(report.stdout)["rows"]
    tested = {r["strategy"] for r in rows if r["split"] == "test"}
    best = max(finished, key=lambda t: (t.values[0], -t.values[1]))
    chosen = [r for r in rows if r["selected"]]
    assert len(tested) == 2 and "baseline" in tested  # the choice and the baseline, nothing else
    assert chosen[0]["config_id"] == best.params["config"]


def test_a_killed_search_resumes_the_same_study_without_repeating_calls(medqa, tmp_path):
    with scripted(medqa, right_with(0.6), repeatable=True) as server:
        whole = cli(*search_cmd(server, tmp_path / "whole")[1:])
        assert whole.returncode == 0, whole.stderr
        uninterrupted = server.calls

        server.calls = 0
        proc = subprocess.Popen(search_cmd(server, tmp_path / "cut"), stderr=subprocess.PIPE, text=True)
        answer = server.reply

        def reply(prompt: str) -> str:
            if server.calls == uninterrupted // 2:
                os.kill(proc.pid, signal.SIGKILL)  # halfway through the search
            return answer(prompt)

        server.reply = reply
        proc.wait(timeout=600)
        assert proc.returncode == -signal.SIGKILL
        first = server.calls
        server.reply = answer
        _, before = study_of(tmp_path / "cut")
        again = cli(*search_cmd(server, tmp_path / "cut")[1:])
        assert again.returncode == 0, again.stderr
        second = server.calls - first

    _, after = study_of(tmp_path / "cut")
    assert after.study_name == before.study_name and len(before.trials) >= 1
    assert {t.params["config"] for t in after.trials if t.state.is_finished()} >= {
        t.params["config"] for t in before.trials if t.state == optuna.trial.TrialState.COMPLETE
    }
    # only the example in flight when the process died is asked again: at most its 3 calls
    # (self_consistency:n=3); everything recorded before the kill is not
    assert uninterrupted <= first + second <= uninterrupted + 3
    # and the resumed search ends with exactly the records of the uninterrupted one
    assert _records(tmp_path / "cut") == _records(tmp_path / "whole")


def _records(out: Path) -> list[tuple]:
    from promptopt.store import Store

    run_dir, _ = study_of(out)
    recs = Store(f"sqlite:///{run_dir / 'results.sqlite'}").records()
    cols = ["config_id", "split", "example_id", "prediction", "score", "parse_ok", "error"]
    return sorted(tuple(r) for r in recs[cols].itertuples(index=False))


def test_demo_sets_searches_several_bootstrapped_demo_sets_of_one_strategy(medqa, tmp_path):
    with scripted(medqa, right_with(0.6), repeatable=True) as server:
        cmd = search_cmd(server, tmp_path)
        cmd = cmd[: cmd.index("--strategy")] + ["--strategy", "cot", "--demo-sets", "3"]
        done = subprocess.run(
            [*cmd, "--optimizer", "bootstrap:bootstrapped=2,labeled=0"], capture_output=True, text=True, timeout=600
        )
    assert done.returncode == 0, done.stderr
    run_dir, study = study_of(tmp_path)
    demo_sets = {}  # seed -> the questions of its demos
    for folder in (run_dir / "programs").iterdir():
        manifest = json.loads((folder / "manifest.json").read_text())
        if manifest["optimizer"] == "bootstrap":
            state = json.loads((folder / "program.json").read_text())
            questions = tuple(d["question"] for p in state.values() if "demos" in p for d in p["demos"])
            demo_sets[manifest["optimizer_knobs"]["seed"]] = questions
    assert sorted(demo_sets) == [0, 1, 2] and len(study.trials) == 3  # one trial per demo set
    assert len(set(demo_sets.values())) == 3  # each seed bootstrapped another demo set


def test_a_worker_that_goes_silent_has_its_trials_taken_over_by_another(medqa, tmp_path):
    """A worker frozen mid-search (as a machine that lost power or network: alive to no one) stops
    sending heartbeats; a second worker on the same study fails its trials, redoes them and finishes."""
    env = {**os.environ, "PROMPTOPT_HEARTBEAT_S": "1"}
    with scripted(medqa, right_with(0.6), repeatable=True) as server:
        frozen = subprocess.Popen(search_cmd(server, tmp_path), stderr=subprocess.PIPE, text=True, env=env)
        answer, stopped = server.reply, threading.Event()

        def reply(prompt: str) -> str:
            if server.calls == 30:
                os.kill(frozen.pid, signal.SIGSTOP)  # mid-search, holding its trials
                stopped.set()
            return answer(prompt)

        server.reply = reply
        try:
            assert stopped.wait(timeout=300)
            time.sleep(0.5)  # its last reply is in flight; nothing more comes from it
            server.reply = answer
            _, before = study_of(tmp_path)
            held = {t.number for t in before.trials if t.state == optuna.trial.TrialState.RUNNING}
            other = subprocess.run(search_cmd(server, tmp_path), capture_output=True, text=True, timeout=300, env=env)
        finally:
            os.kill(frozen.pid, signal.SIGKILL)
            frozen.wait()
    assert held  # the frozen worker held trials when it went silent
    assert other.returncode == 0, other.stderr
    _, after = study_of(tmp_path)
    assert all(after.trials[n].state == optuna.trial.TrialState.FAIL for n in held)
    done = {
        t.params["config"] for t in after.trials if t.state.is_finished() and t.state != optuna.trial.TrialState.FAIL
    }
    assert len(done) == len(SPACE)  # every config was finished, by the worker still alive


def test_search_dry_run_is_an_upper_bound_of_the_calls_the_server_counts_demo_sets_included(medqa, tmp_path):
    from promptopt.testing import ScriptedServer, fill_fields

    n = 10
    known = medqa.examples("train") + medqa.examples("val", n) + medqa.examples("test", n)

    def reply(prompt: str) -> str:  # right on every question, train included (bootstrap tries each once)
        ex = next(ex for ex in known if ex.inputs["question"] in prompt)
        return fill_fields(prompt, ex.gold) if "[[ ## " in prompt else f" {ex.gold}"

    with ScriptedServer(reply) as server:
        args = ["--model", "openai/scripted", "--api-base", server.base_url, "--limit", str(n), "--strategy",
                "predict", "--optimizer", "none", "--optimizer", "bootstrap", "--demo-sets", "2",
                "--out", str(tmp_path)]  # fmt: skip
        dry = cli("search", *args, "--dry-run")
        assert dry.returncode == 0, dry.stderr
        assert server.calls == 0  # a dry run calls nothing
        estimated = int(re.search(r"Total: ([\d,]+) LM calls", dry.stdout).group(1).replace(",", ""))
        assert len(re.findall(r"predict/bootstrap", dry.stdout)) == 2  # seeds 0 and 1, each priced
        done = cli("search", *args)
        assert done.returncode == 0, done.stderr
    assert 0 < server.calls <= estimated


def test_a_settled_choice_keeps_the_promise_of_a_config_dropped_for_a_cheaper_one():
    """Successive elimination's ε never chains into 2ε: b (dearest) is dropped because it cannot
    beat j by more than ε, and j and the cheapest c are within ε of each other, but b may still
    beat c by more than ε on the bounds, so the settled choice is j (b's carrier), not c."""
    import numpy as np
    import pandas as pd

    from promptopt.selection import Arm, Elimination, Rule, paired_bounds

    n = 800
    j = np.r_[np.ones(400), np.zeros(400)]
    b, c = j.copy(), j.copy()
    b[400:466], b[:54] = 1, 0  # b − j = +12 items of 800, 120 discordant
    c[100:166], c[600:654] = 0, 1  # j − c = +12 items of 800, the same discordance
    rule = Rule(epsilon=0.05, delta=0.05)
    level = rule.level(3, 1)
    assert paired_bounds(b, j, level)[1] < 0.05 <= paired_bounds(b, c, level)[1]  # the planted chain
    assert paired_bounds(j, c, level)[1] < 0.05 and paired_bounds(c, j, level)[1] < 0.05
    assert paired_bounds(b, c, level)[0] < 0  # nobody is worse beyond doubt: rule 1 drops nothing
    index = [f"q{i}" for i in range(n)]
    arms = {k: Arm(k, cost, pd.Series(v, index=index)) for k, cost, v in [("b", 3.0, b), ("j", 2.0, j), ("c", 1.0, c)]}
    elim = Elimination(rule, configs=3, rounds=1, survivors=sorted(arms))
    elim.step(arms)
    assert elim.survivors == ["c", "j"] and "b" in elim.dropped
    alive = {k: arms[k] for k in elim.survivors}
    assert elim.settled(alive) and elim.choice(alive) == "j"


def test_a_config_without_an_answered_item_is_never_chosen_over_one_that_answered():
    import pandas as pd

    from promptopt.selection import Arm, Elimination, Rule

    arms = {"a": Arm("a", 1.0, pd.Series([], dtype=float)), "b": Arm("b", 1.0, pd.Series([1.0, 0.0, 1.0], index=list("xyz")))}
    elim = Elimination(Rule(), configs=2, rounds=1, survivors=["a", "b"])
    elim.step(arms)
    assert elim.choice({k: arms[k] for k in elim.survivors}) == "b"
