"""One pipeline behind every driver, and the search's ε-optimal, cost-aware choice, checked
against planted truths on scripted servers.

A search judges and probes as a run does; evaluating a saved program is judged and keeps the
budget; an option declared once reaches the command line, the library and sweep files; and the
search stops early when configs tie, keeps a clearly better config, never calls a config above
the cost cap, and its anytime curve counts what the server counted.
"""

import hashlib
import json
import subprocess
import sys
import textwrap

import pytest
from conftest import cli
from test_open_ended import Counted, _judged_task, honest_judge, open_model
from test_probes import answer, find
from test_strategies import MODEL, Oracle, gold_letter

import promptopt
from promptopt.errors import UserError
from promptopt.store import Store
from promptopt.tasks import load_task
from promptopt.testing import ScriptedServer, fill_fields, requested_fields, shown_options

FAST = {"PROMPTOPT_TIMEOUT_S": "5", "PROMPTOPT_BACKOFF_S": "0.01", "PROMPTOPT_RETRIES": "1"}


def report_json(run_dir) -> dict:
    return promptopt.report(run_dir, bootstrap=200).model_dump(mode="json")


def world(task, right):
    """A scripted model right exactly when `right(example, kind)` says so; kind is "cot" when the
    prompt asks for reasoning, else "predict". Wrong answers name another shown option."""
    oracle = Oracle(task, splits=("val", "test"))

    def reply(prompt: str) -> str:
        ex, tail = oracle.locate(prompt)
        options = shown_options(tail, ex.inputs["options"]) if ex else {}
        if ex is None or ex.inputs["options"][ex.gold] not in options.values():
            return fill_fields(prompt, "A")
        gold = gold_letter(ex, options)
        kind = "cot" if "reasoning" in requested_fields(prompt) else "predict"
        return fill_fields(prompt, gold if right(ex, kind) else next(k for k in options if k != gold))

    return ScriptedServer(reply)


def draw(seed, ex_id: str) -> float:
    return int(hashlib.sha1(f"{seed}:{ex_id}".encode()).hexdigest()[:8], 16) / 16**8


# ------------------------------------------------------------------------------ every driver judges and probes


def test_a_search_on_an_open_ended_task_validates_its_judge_and_reports_the_planted_share(tmp_path):
    n = 20
    twin = load_task("medqa:open")
    test_ids = [e.id for e in twin.examples("test", n)]
    right = set(test_ids[:13]) | {e.id for e in twin.examples("val", n)[:10]}
    judge = Counted(honest_judge)
    with ScriptedServer(open_model(twin, right, n), replies={"judge": judge}) as server:
        log = promptopt.search(
            models=[MODEL], api_base=server.base_url, tasks=["medqa:open"], strategies=["predict", "cot"],
            optimizers=["none"], limit=n, rung0=n, out=tmp_path, judge_models=["openai/judge"],
            judge_api_base=server.base_url,
        )  # fmt: skip
    assert judge.calls > 0
    data = report_json(log.run_dir)
    (check,) = data["judges"]
    assert check["trusted"] and check["kappa"] == 1.0  # validated on the task before it graded
    (chosen,) = log.chosen
    tested = {(r["metric"]): r["score"] for r in data["metrics"] if r["split"] == "test"
              and r["config_id"] == chosen.config_id}  # fmt: skip
    assert tested["judge"] == 13 / 20 and tested["exact"] == 13 / 20


def test_a_search_with_the_shuffle_probe_reads_the_robust_ceiling_of_its_choice(medqa, tmp_path):
    n = 12
    known = [ex for split in ("val", "test") for ex in medqa.examples(split, n)]
    test_ids = [e.id for e in medqa.examples("test", n)]
    right = {ex.id for ex in known} - set(test_ids[9:])  # right on 9 of 12 test items in the given order ...
    fragile = set(test_ids[:3])  # ... and on 3 of those wrong once the options are shuffled

    def reply(prompt):
        ex = find(prompt, known)
        options = shown_options(prompt, ex.inputs["options"])  # letter -> the option's whole text
        gold_text = ex.inputs["options"][ex.gold]
        original = options == ex.inputs["options"]
        ok = ex.id in right and (original or ex.id not in fragile)
        pick = next(k for k, v in options.items() if (v == gold_text) == ok)
        return answer(prompt, pick)

    with ScriptedServer(reply) as server:
        log = promptopt.search(
            models=["openai/scripted"], api_base=server.base_url, strategies=["predict", "cot"],
            optimizers=["none"], limit=n, rung0=n, out=tmp_path, probes=["shuffle"], threads=4,
        )  # fmt: skip
    data = report_json(log.run_dir)
    (robust,) = data["robust"]
    assert robust["config_id"] == log.chosen[0].config_id
    assert robust["ceiling_score"] == 9 / 12 and robust["robust_score"] == 6 / 12 and robust["robust_n"] == 12


def test_evaluating_a_program_on_a_judged_task_is_graded_by_the_judge_and_stops_at_max_calls(tmp_path):
    rows = _judged_task(tmp_path)
    gold = {r["question"]: r["answer"] for r in rows}

    def model(prompt):
        question = next(q for q in gold if q in prompt)
        said = gold[question] if int(question.split("disease ")[1].split()[0]) % 3 else "spleen"
        return fill_fields(prompt, said) if "[[ ## " in prompt else f" {said}"

    task = Counted(model)
    judge = Counted(honest_judge)
    program = tmp_path / "program"
    with ScriptedServer(task, replies={"judge": judge}) as server:
        common = ["--api-base", server.base_url, "--tasks-dir", str(tmp_path), "--judge-model", "openai/judge",
                  "--judge-api-base", server.base_url]  # fmt: skip
        made = cli("compile", "--model", MODEL, "--task", "organs", "--strategy", "predict", "--optimizer", "none",
                   "--out", str(program), "--runs", str(tmp_path / "runs"), *common, env=FAST)  # fmt: skip
        assert made.returncode == 0, made.stderr
        before = (task.calls, judge.calls)
        stopped = cli("evaluate", str(program), "--max-calls", "40", *common, env=FAST)
        spent = task.calls - before[0] + judge.calls - before[1]
        assert stopped.returncode == 0, stopped.stderr
        assert "Stopped at the budget (--max-calls 40)" in stopped.stderr
        # 20 planted verdicts and 10 near misses validate the judge, then 5 examples of 1 task + 1 judge call
        assert spent <= 40 and task.calls - before[0] == 5
        again = cli("evaluate", str(program), *common, env=FAST)
        assert again.returncode == 0, again.stderr
    test_ids = [e.id for e in load_task("organs", [tmp_path]).examples("test")]
    assert task.calls - before[0] == len(test_ids)  # the rest, none asked twice
    store = Store(f"sqlite:///{program / 'evaluations.sqlite'}", create=False)
    recs = store.records()
    assert len(recs) == len(test_ids) and all('"judges"' in e for e in recs.extras)
    planted = sum(int(i.removeprefix("q")) % 3 != 0 for i in test_ids) / len(test_ids)
    assert f"accuracy {100 * planted:.1f}%" in again.stdout


# ------------------------------------------------------------------------------ an option declared once


def test_an_option_declared_once_reaches_the_cli_the_library_and_sweep_files(tmp_path):
    sweep = tmp_path / "sweep.yaml"
    code = textwrap.dedent(f"""
        import promptopt.options as o
        o.OPTIONS += (o.Option("warmup_items", int | None, None, "Items to warm the cache with.", ge=0),)
        o.BY_NAME["warmup_items"] = o.OPTIONS[-1]
        import promptopt
        from typer.testing import CliRunner
        from promptopt.cli import app
        helped = CliRunner().invoke(app, ["run", "--help"], env={{"COLUMNS": "200"}}).output
        print("--warmup-items" in helped and "Items to warm the cache with." in helped)
        print(promptopt.plan(warmup_items=3).warmup_items)
        open({str(sweep)!r}, "w").write("warmup_items: 4\\n")
        print(promptopt.plan(sweep={str(sweep)!r}).warmup_items)
        try:
            promptopt.plan(warmup_items=-1)
        except promptopt.errors.UserError as exc:
            print(exc)
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "True", "3", "4", "Option warmup_items: Input should be greater than or equal to 0.",
    ]  # fmt: skip


# ------------------------------------------------------------------------------ the ε-optimal, cost-aware search


def test_configs_planted_equal_stop_the_search_early_on_a_one_call_config_and_the_curve_counts_the_server(
    medqa, tmp_path
):
    n = 180
    points = []
    with world(medqa, lambda ex, kind: draw(0, ex.id) < 0.5) as server:

        def on_event(event):
            if getattr(event, "text", "").startswith("After "):
                points.append(server.calls)  # what the server had counted when the point was taken

        log = promptopt.search(
            on_event, models=[MODEL], api_base=server.base_url, strategies=["predict", "cot", "self_consistency:n=3"],
            optimizers=["none"], limit=n, rung0=20, epsilon=5, out=tmp_path, threads=4,
        )  # fmt: skip
    recs = Store(log.storage).records(log.run_id)
    val_calls = int(recs[recs.split == "val"].lm_calls.sum())
    exhaustive = n * (1 + 1 + 3)
    assert val_calls <= 0.4 * exhaustive, (val_calls, exhaustive)
    chosen = next(r for r in log.report.rows if r.selected)
    assert chosen.strategy in ("predict", "cot") and chosen.lm_calls == chosen.n_items  # a one-call config
    curve = [p for p in log.report.anytime if p.optimizer == "*"]
    assert [p.lm_calls for p in curve] == points and len(points) >= 2
    from promptopt.reports import render_html
    from promptopt.viewer import View, run_page

    for page in (render_html(log.report), run_page(View(str(log.run_dir)), log.run_id)):  # the curve, drawn
        assert "Anytime curve" in page and "<figure class='anytime'><svg" in page


# Four seeds here; how often the rule keeps its promise over 1,000 planted worlds is
# benchmarks/selection.py's campaign (BENCHMARKS.md §11).
@pytest.mark.parametrize("seed", range(4))
def test_a_config_planted_8_points_better_is_chosen_and_never_dropped(medqa, tmp_path, seed):
    def right(ex, kind):
        u = draw(seed, ex.id)
        if kind == "predict":
            return u < 0.50
        return (u if draw(seed + 1000, ex.id) > 0.1 else draw(seed + 2000, ex.id)) < 0.58

    with world(medqa, right) as server:
        log = promptopt.search(
            models=[MODEL], api_base=server.base_url, strategies=["predict", "cot"], optimizers=["none"], limit=100,
            rung0=20, seed=seed, out=tmp_path, threads=4,
        )  # fmt: skip
    chosen = next(r for r in log.report.rows if r.selected)
    assert chosen.strategy == "cot"
    val = {r.strategy: r.n_items for r in log.report.rows if r.split == "val"}
    assert val["cot"] == max(val.values())  # scored as far as the search went: never dropped


def test_a_cost_cap_keeps_an_ensemble_above_it_from_making_any_call(medqa, tmp_path):
    said = []
    with world(medqa, lambda ex, kind: draw(1, ex.id) < 0.5) as server:
        log = promptopt.search(
            said.append, models=[MODEL], api_base=server.base_url, strategies=["predict", "self_consistency:n=5"],
            optimizers=["none"], limit=20, max_calls_per_example=2, out=tmp_path,
        )  # fmt: skip
        calls = server.calls
    recs = Store(log.storage).records(log.run_id)
    assert set(recs.strategy) == {"predict", "baseline"}  # the ensemble has no record at all
    assert calls == int(recs.lm_calls.sum())  # and every call the server saw is one of theirs
    assert any("self_consistency" in getattr(e, "text", "") and "Not searched" in e.text for e in said)


def test_search_dry_run_prices_the_worst_case_and_bad_rule_values_are_one_sentence(tmp_path):
    common = dict(models=[MODEL], api_base="http://127.0.0.1:9/v1", strategies=["predict", "self_consistency:n=5"],
                  optimizers=["none"], out=tmp_path)  # fmt: skip
    rows = promptopt.estimate("search", **common)
    val = [r for r in rows if r["phase"] == "val"]
    tested = [r for r in rows if r["phase"] == "test"]
    assert {r["config"] for r in val} == {"predict/none", "self_consistency/none"}
    assert [r["config"] for r in tested] == ["baseline/none", "self_consistency/none"]  # the dearest on test
    capped = promptopt.estimate("search", max_calls_per_example=2, **common)
    assert {r["config"] for r in capped} == {"predict/none", "baseline/none"}
    for bad, message in [
        ({"epsilon": 150}, "Option epsilon: Input should be less than or equal to 100."),
        ({"delta": 0}, "Option delta: Input should be greater than 0."),
        ({"objective": "best"}, "Option objective: Input should be 'accuracy' or 'pareto'."),
        ({"max_cost_per_example": -1}, "Option max_cost_per_example: Input should be greater than 0."),
    ]:
        with pytest.raises(UserError) as err:
            promptopt.search(**common, **bad)
        assert str(err.value) == message
    done = cli("search", "--objective", "best", "--out", str(tmp_path))
    assert done.returncode == 1 and done.stderr.strip().splitlines() == [
        "Error: Option objective: Input should be 'accuracy' or 'pareto'."
    ]
    assert not any(tmp_path.iterdir())  # refused before any run folder
    json.dumps(rows)  # the estimate is plain data
    assert all(r["seconds"] is None for r in rows)  # a hosted model declares no speed: no time is made up
    (local,) = promptopt.estimate("run", strategies=["self_consistency:n=3"], optimizers=["none"], limit=5,
                                  references=False, out=tmp_path)  # fmt: skip
    assert local["config"] == "self_consistency:n=3/none"  # the knob set away from its default, named
    # the embedded model's measured speed: 520 prompt and 66 generated tokens per second
    assert local["seconds"] == pytest.approx(local["prompt_tokens"] / 520 + local["completion_tokens"] / 66)
