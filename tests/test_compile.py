"""Compiling with DSPy's optimizers against a scripted model: estimates, budgets, saved programs."""

import json
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
from test_strategies import MODEL, scripted

from promptopt.config import parse_config
from promptopt.dryrun import dry_run
from promptopt.engine import run
from promptopt.errors import UserError
from promptopt.models import resolve_model
from promptopt.pipeline import program_dir
from promptopt.runplan import RunPlan
from promptopt.store import Store


def right_with(p: float):
    """Right with probability p per call (seeded by the prompt), else the first other option."""

    def pick(ex, shown, rng):
        right = next(k for k, v in shown.items() if v == ex.inputs["options"][ex.gold])
        return right if rng.random() < p else next(k for k in shown if k != right)

    return pick


def plan_for(server, tmp_path, optimizer, **extra):
    settings = dict(
        models=[MODEL], strategies=["cot"], optimizers=[optimizer], api_base=server.base_url, limit=10,
        splits=("val",), out=tmp_path, references=False, expect_accuracy=0.6,
    )  # fmt: skip
    return RunPlan(**(settings | extra))


@pytest.mark.parametrize(
    "optimizer, within",
    [
        ("bootstrap_rs:candidates=4,val=30", 0.1),
        ("mipro:val=20", 0.1),
        ("mipro:val=60", 0.1),  # above 50 val examples MIPRO scores minibatches
        ("gepa:metric_calls=150,val=30,minibatch=5", 0.2),  # GEPA's iterations vary with what it accepts
    ],
)
def test_the_dry_run_estimates_an_optimizers_calls(medqa, tmp_path, optimizer, within):
    with scripted(medqa, right_with(0.6)) as server:
        plan = plan_for(server, tmp_path, optimizer)
        (estimate,) = dry_run(plan)
        assert server.calls == 0  # a dry run calls nothing
        run(plan)
        counted = server.calls
    assert abs(estimate["calls"] - counted) <= within * counted, (estimate, counted)


def test_gepa_reflects_on_textual_feedback_that_names_the_right_answer(medqa, tmp_path):
    with scripted(medqa, right_with(0.5)) as server:
        result = run(plan_for(server, tmp_path, "gepa:metric_calls=40,val=10"))
        reflections = [
            m["content"]
            for r in server.requests
            for m in r["messages"]
            if "new_instruction" in (m.get("content") or "")
        ]
    assert result.stopped is None and reflections  # GEPA asked the reflection model for new instructions
    assert any("Wrong: the reply answered" in r and "the right answer is" in r for r in reflections)
    manifest = json.loads(next((result.run_dir / "programs").glob("*/manifest.json")).read_text())
    assert manifest["optimizer"] == "gepa"  # the compiled program is saved like any other


def test_a_compiled_program_answers_the_same_in_a_fresh_process(medqa, tmp_path):
    with scripted(medqa, right_with(0.6), repeatable=True) as server:
        plan = plan_for(server, tmp_path, "bootstrap:bootstrapped=2,labeled=1")
        result = run(plan)
        folder = program_dir(
            result.run_dir, resolve_model(MODEL, server.base_url), medqa, parse_config("cot", plan.optimizers[0])
        )
        in_process = Store(result.storage).records(result.run_id).set_index("example_id").prediction
        questions = medqa.examples("val", 10)
        script = (
            "import json, sys, promptopt\n"
            "prog = promptopt.load(sys.argv[1])\n"
            "for inputs in json.loads(sys.argv[2]):\n"
            "    print(prog(**inputs).answer)\n"
        )
        before = len(server.requests)
        fresh = subprocess.run(
            [sys.executable, "-c", script, str(folder), json.dumps([q.inputs for q in questions])],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        asked_again = server.requests[before:]
        asked_in_run = server.requests[before - len(asked_again) : before]  # the run's last calls: these questions
    assert fresh.returncode == 0, fresh.stderr
    assert [r["messages"] for r in asked_again] == [r["messages"] for r in asked_in_run]  # same prompts
    demos = json.loads((folder / "program.json").read_text())["predict.predict"]["demos"]
    assert demos  # the compiled program carries its demonstrations
    assert fresh.stdout.split() == [in_process[q.id] for q in questions]
    import dspy

    versions = json.loads((folder / "manifest.json").read_text())["versions"]
    assert versions["dspy"] == dspy.__version__ and {"promptopt", "litellm"} <= set(versions)


def test_a_program_file_holding_a_pickle_is_refused_and_nothing_runs(medqa, tmp_path):
    with scripted(medqa, right_with(1.0)) as server:
        result = run(plan_for(server, tmp_path, "labeled", limit=2))
        folder = program_dir(
            result.run_dir, resolve_model(MODEL, server.base_url), medqa, parse_config("cot", "labeled")
        )
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    import promptopt

    (folder / "program.pkl").write_bytes(pickle.dumps(Payload()))  # a stray pickle beside the JSON is never read
    promptopt.load(folder)
    (folder / "program.json").write_bytes(pickle.dumps(Payload()))
    with pytest.raises(UserError, match="not JSON.*never unpickles"):
        promptopt.load(folder)
    assert not marker.exists()


def test_max_calls_stops_cleanly_and_the_same_command_continues(medqa, tmp_path):
    with scripted(medqa, right_with(1.0)) as server:
        stopped = run(plan_for(server, tmp_path, "none", limit=20, max_calls=7))
        assert stopped.stopped and "--max-calls 7" in stopped.stopped
        assert server.calls == 7
        assert len(Store(stopped.storage).records(stopped.run_id)) == 7
        done = run(plan_for(server, tmp_path, "none", limit=20))
        assert done.stopped is None and done.run_id == stopped.run_id
        assert server.calls == 20  # the 13 missing examples, nothing twice


def test_a_program_folder_cannot_redirect_calls_or_import_code(medqa, tmp_path):
    with scripted(medqa, right_with(1.0)) as server:
        result = run(plan_for(server, tmp_path, "labeled", limit=2))
        folder = program_dir(
            result.run_dir, resolve_model(MODEL, server.base_url), medqa, parse_config("cot", "labeled")
        )
    import promptopt

    state = json.loads((folder / "program.json").read_text())
    name = next(iter(state))
    tampered = {**state, name: {**state[name], "config": {"api_base": "http://attacker.example/v1"}}}
    (folder / "program.json").write_text(json.dumps(tampered))
    with pytest.raises(UserError, match="beyond demos and instructions"):
        promptopt.load(folder)

    (folder / "program.json").write_text(json.dumps(state))
    marker = tmp_path / "imported"
    (folder / "evil.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    manifest = json.loads((folder / "manifest.json").read_text())
    (folder / "manifest.json").write_text(json.dumps({**manifest, "strategy_dir": str(folder)}))
    with pytest.raises(UserError, match="pass programs_dir="):
        promptopt.load(folder)
    assert not marker.exists()


def test_max_cost_stops_before_the_budget_is_overspent_and_a_larger_one_continues(medqa, tmp_path):
    # gpt-4o-mini's price comes from LiteLLM's bundled table; the calls go to the scripted server
    with scripted(medqa, right_with(1.0)) as server:
        plan = dict(models=["openai/gpt-4o-mini"], limit=20)
        first = run(plan_for(server, tmp_path, "none", **plan))
        per_example = Store(first.storage).records(first.run_id).cost_usd.mean()
        assert per_example > 0  # priced
        budget = 6.5 * per_example
        stopped = run(plan_for(server, tmp_path / "capped", "none", **plan, max_cost=budget))
        assert stopped.stopped and "--max-cost" in stopped.stopped
        kept = Store(stopped.storage).records(stopped.run_id)
        assert 4 <= len(kept) < 20
        assert kept.cost_usd.sum() <= budget + kept.cost_usd.max()  # at most the example in flight beyond it
        calls = server.calls
        done = run(plan_for(server, tmp_path / "capped", "none", **plan))
        assert done.stopped is None and len(Store(done.storage).records(done.run_id)) == 20
        assert server.calls - calls == 20 - len(kept)  # only the missing examples
