"""Results others can check: export a store to a bundle, reproduce it offline with zero
differences, re-ask its models and measure the drift a scripted server was planted with.

One module-scoped store holds the three kinds of run a bundle must carry: a grid run, a search
and a judged free-text run, all against scripted servers whose truth is known.
"""

import json
import re
import shutil
import zipfile

import pytest
from conftest import cli, cli_many
from test_open_ended import Counted, _judged_task, honest_judge
from test_strategies import MODEL

import promptopt
from promptopt.bundle import open_bundle
from promptopt.errors import UserError
from promptopt.tasks import load_task
from promptopt.testing import ScriptedServer, fill_fields, shown_options

N = 10


def letter_model(task, right: set[str], changed: set[str] = frozenset()):
    """Right on `right`; on `changed` the answer moves to another option than it gave before (a
    model that drifted there)."""
    items = {ex.inputs["question"]: ex for split in ("val", "test") for ex in task.examples(split, N)}

    def reply(prompt: str) -> str:
        ex = items[max((q for q in items if q in prompt), key=prompt.rfind)]
        options = shown_options(prompt, ex.inputs["options"])
        gold = next(k for k, v in options.items() if v == ex.inputs["options"][ex.gold])
        others = [k for k in options if k != gold]
        pick = gold if ex.id in right else others[0]
        if ex.id in changed:  # right becomes wrong, wrong becomes another wrong answer
            pick = others[0] if pick == gold else others[1]
        return fill_fields(prompt, pick) if "[[ ## " in prompt else f" {pick}"

    return reply


def organ_model(rows):
    gold = {r["question"]: r["answer"] for r in rows}

    def reply(prompt):
        question = next(q for q in gold if q in prompt)
        said = gold[question] if int(question.split("disease ")[1].split()[0]) % 3 else "spleen"
        return fill_fields(prompt, said) if "[[ ## " in prompt else f" {said}"

    return reply


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A grid run and a search on medqa, and a judged run of a free-text task, in one store."""
    root = tmp_path_factory.mktemp("bundle")
    url = f"sqlite:///{root / 'shared.sqlite'}"
    medqa = load_task("medqa")
    right = {ex.id for split in ("val", "test") for ex in medqa.examples(split, N)[::2]}
    tasks = root / "tasks"
    tasks.mkdir()
    rows = _judged_task(tasks)
    with ScriptedServer(letter_model(medqa, right)) as server:
        grid = promptopt.run(models=[MODEL], api_base=server.base_url, strategies=["predict", "cot"],
                             optimizers=["none"], limit=N, out=root, storage=url)  # fmt: skip
        search = promptopt.search(models=[MODEL], api_base=server.base_url, strategies=["predict", "cot"],
                                  optimizers=["none"], limit=N, rung0=N, out=root, storage=url)  # fmt: skip
    with ScriptedServer(organ_model(rows), replies={"judge": Counted(honest_judge)}) as server:
        judged = promptopt.run(models=[MODEL], api_base=server.base_url, tasks=[str(tasks / "organs.yaml")],
                               strategies=["predict"], optimizers=["none"], limit=N, out=root, storage=url,
                               judge_models=["openai/judge"], judge_api_base=server.base_url)  # fmt: skip
    return {"url": url, "root": root, "tasks": tasks, "right": right, "medqa": medqa,
            "runs": [grid.run_dir, search.run_dir, judged.run_dir]}  # fmt: skip


@pytest.fixture(scope="module")
def bundle(store):
    return promptopt.export(store["url"], store["root"] / "all.zip", tasks_dirs=[store["tasks"]])


def test_a_store_with_a_grid_run_a_search_and_a_judged_run_reproduces_with_zero_differences(store, bundle, tmp_path):
    again = promptopt.export(store["url"], tmp_path / "again.zip", tasks_dirs=[store["tasks"]])
    assert again.read_bytes() == bundle.read_bytes()  # the same store gives the same bytes
    opened = open_bundle(bundle)
    man = opened.manifest
    assert {r["plan"].get("mode", "run") for r in man["runs"]} == {"run", "search"} and len(man["runs"]) == 3
    assert {"promptopt", "dspy", "litellm", "optuna"} <= set(man["versions"])
    assert all(m["adapter"] and m["endpoint"] == "api_base" for m in man["models"])
    assert "api_key" not in opened.entries["manifest.json"].decode().lower()
    medqa = man["tasks"]["medqa"]
    assert medqa["splits"]["test"] == [e.id for e in store["medqa"].examples("test")] and medqa["files"]
    assert man["tasks"]["organs"]["yaml"].startswith("name: organs")
    records = opened.table("records")
    assert records and all(r["sent"] for r in records if r["lm_calls"])  # every prompt as sent
    # a fresh folder (as on another machine): the same report, table for table, figure for figure
    done = cli("reproduce", str(bundle), "--out", str(tmp_path / "elsewhere"), "--tasks-dir", str(store["tasks"]))
    assert done.returncode == 0, done.stderr
    assert "0 differences" in done.stdout
    assert "Task medqa: unchanged." in done.stdout and "Task organs: unchanged." in done.stdout
    rebuilt = promptopt.report(tmp_path / "elsewhere", bootstrap=200).model_dump(mode="json")
    organs = load_task(str(store["tasks"] / "organs.yaml")).examples("test", N)
    judged = [r for r in rebuilt["metrics"] if r["metric"] == "judge" and r["split"] == "test"]
    assert judged and all(r["score"] == sum(int(e.id[1:]) % 3 != 0 for e in organs) / len(organs) for r in judged)  # planted
    assert rebuilt["judges"][0]["trusted"]


def test_reproduce_names_what_changed_in_the_report_and_in_the_task_data(store, bundle, tmp_path):
    # a bundle whose report was edited and re-signed (a reader's copy of a paper's numbers): each
    # edited number is listed
    opened = open_bundle(bundle)
    data = json.loads(opened.entries["report.json"])
    data["leaderboard"][0]["ceiling_score"] = 0.99
    edited = dict(opened.entries, **{"report.json": json.dumps(data).encode()})
    manifest = json.loads(edited["manifest.json"])
    import hashlib

    manifest["files"]["report.json"] = hashlib.sha256(edited["report.json"]).hexdigest()
    edited["manifest.json"] = json.dumps(manifest).encode()
    forged = tmp_path / "forged.zip"
    with zipfile.ZipFile(forged, "w") as zf:
        for name, body in sorted(edited.items()):
            zf.writestr(name, body)
    tasks = tmp_path / "tasks"
    shutil.copytree(store["tasks"], tasks)
    (tasks / "organs.jsonl").write_text((tasks / "organs.jsonl").read_text().replace("liver", "pancreas"))
    done = promptopt.reproduce(forged, out=tmp_path / "out", tasks_dirs=[tasks])
    assert done.differences == [f"report.leaderboard[0].ceiling_score: bundle 0.99, now {json.dumps(_first_ceiling(done))}"]
    assert done.tasks["organs"].startswith("changed since export: organs.jsonl differs")
    assert done.tasks["medqa"] == "unchanged"


def _first_ceiling(done):
    return promptopt.report(done.run_dir).leaderboard[0].ceiling_score


def test_rerun_against_a_server_that_changed_a_planted_share_of_answers_reports_that_share(store, tmp_path):
    grid = store["runs"][0]
    one = promptopt.export(grid, tmp_path / "grid.zip")
    medqa = store["medqa"]
    test_ids = [e.id for e in medqa.examples("test", N)]
    changed = set(test_ids[:3])  # 3 of the 10 test items now answered otherwise
    with ScriptedServer(letter_model(medqa, store["right"], changed)) as server:
        dry = promptopt.rerun(one, N, out=tmp_path / "dry", api_base=server.base_url, dry_run=True)
        assert server.calls == 0 and {d.asked for d in dry} == {N}
        drifts = promptopt.rerun(one, N, out=tmp_path / "re", api_base=server.base_url)
        asked = server.calls
        again = promptopt.rerun(one, N, out=tmp_path / "re", api_base=server.base_url)  # resumes: nothing asked twice
        assert server.calls == asked
        capped = promptopt.rerun(one, N, out=tmp_path / "capped", api_base=server.base_url, max_calls=4)
        assert server.calls - asked <= 4 and sum(d.n for d in capped) <= 4  # the budget stops it cleanly
    assert [(d.n, d.identical) for d in again] == [(d.n, d.identical) for d in drifts]
    was_right = sum(i in store["right"] for i in changed)
    for d in drifts:
        assert d.n == N and d.identical == pytest.approx(1 - len(changed) / N)
        assert d.diff == pytest.approx(-was_right / N) and d.ci_low <= d.diff <= d.ci_high


def test_bad_bundles_and_a_rerun_without_access_get_one_sentence(store, bundle, tmp_path):
    text = tmp_path / "notes.zip"
    text.write_text("not a zip")
    empty = tmp_path / "empty.zip"
    with zipfile.ZipFile(empty, "w") as zf:
        zf.writestr("hello.txt", "hi")
    newer, tampered = tmp_path / "newer.zip", tmp_path / "tampered.zip"
    with zipfile.ZipFile(bundle) as src, zipfile.ZipFile(newer, "w") as a, zipfile.ZipFile(tampered, "w") as b:
        for name in src.namelist():
            body = src.read(name)
            if name == "manifest.json":
                a.writestr(name, json.dumps(json.loads(body) | {"format_version": 99, "promptopt_version": "9.0"}))
            else:
                a.writestr(name, body)
            b.writestr(name, body.replace(b'"score": 1.0', b'"score": 0.0') if name == "tables/records.jsonl" else body)
    # an entry that climbs out of the folder, listed and signed in the manifest as if export had written it
    import hashlib

    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(bundle) as src, zipfile.ZipFile(evil, "w") as out:
        manifest = json.loads(src.read("manifest.json"))
        manifest["files"]["programs/../../../escaped/program.json"] = hashlib.sha256(b"{}").hexdigest()
        for name in src.namelist():
            out.writestr(name, json.dumps(manifest) if name == "manifest.json" else src.read(name))
        out.writestr("programs/../../../escaped/program.json", "{}")
    with pytest.raises(UserError, match="holds an entry promptopt does not write"):
        promptopt.reproduce(evil, out=tmp_path / "deep" / "er" / "evil")
    assert not list(tmp_path.rglob("escaped"))
    done = cli_many(*[["reproduce", str(p), "--out", str(tmp_path / p.stem)] for p in (text, empty, newer, tampered)],
                    ["export", store["url"], "--to", str(tmp_path / "x.tar")],
                    ["reproduce", str(bundle), "--out", str(tmp_path / "noaccess"), "--rerun", "2",
                     "--api-base", "http://127.0.0.1:9/v1"])  # fmt: skip
    said = [d.stderr.strip() for d in done]
    assert all(d.returncode == 1 for d in done), said
    assert all(len(s.splitlines()) == 1 and s.startswith("Error: ") for s in said), said
    assert "not a promptopt bundle (not a zip file)" in said[0]
    assert "has no manifest.json" in said[1]
    assert "bundle format 99" in said[2] and "upgrade promptopt" in said[2]
    assert "tables/records.jsonl does not match its digest" in said[3]
    assert ".zip" in said[4]
    assert "Could not reach --api-base http://127.0.0.1:9/v1" in said[5]  # the model cannot be asked
    for p in (text, empty, newer, tampered):
        assert not (tmp_path / p.stem / "results.sqlite").exists()  # nothing rebuilt from a bad bundle


def test_a_report_of_runs_made_with_different_dspy_versions_warns_they_are_not_comparable(store, bundle, tmp_path):
    from promptopt.store import Store

    url = f"sqlite:///{tmp_path / 'mixed.sqlite'}"
    mixed = Store(url)
    source = Store(store["url"], create=False)
    rows = source.dump([d.name for d in store["runs"][:2]])
    for name in ("runs", "records", "run_status", "manifests"):
        mixed.load(name, rows[name])
    second = store["runs"][1].name
    (m,) = [json.loads(r["manifest"]) for r in rows["manifests"] if r["run_id"] == second]
    m["versions"]["dspy"] = "0.0.1"
    mixed.add_manifest(second, m)
    warnings = promptopt.report(url, bootstrap=200).warnings
    assert any("DSPy version differs" in w and "0.0.1" in w and second in w for w in warnings), warnings
    clean = promptopt.report(store["url"], bootstrap=200).warnings
    assert not any("not comparable" in w for w in clean), clean
    with pytest.raises(UserError, match="already holds files"):
        promptopt.reproduce(bundle, out=store["root"])


HOSTILE = "gpt_4o & co \\input{/etc/passwd} 100% $x$ #1 ~^ {x} – ± ＼input｛/etc/hosts｝"


def test_the_latex_report_compiles_with_a_real_tex_engine_and_its_macros_print_the_reported_numbers(store, tmp_path):
    import os
    import subprocess

    from promptopt.latex import escape

    paper = tmp_path / "paper"
    done = cli("report", store["url"], "--format", "latex", "--output", str(paper / "report.tex"), "--figures", "pdf")
    assert done.returncode == 0, done.stderr
    built = promptopt.report(store["url"])
    ceiling = next(r for r in built.leaderboard if r.task == "medqa")
    tex = (paper / "report.tex").read_text()
    assert r"\toprule" in tex and "Prompt ceilings on medqa" in tex and "Cost per config" in tex
    # the scripted model ran behind two endpoints: two identities, named scripted-1 and scripted-2
    label = re.search(r"promptopt@ceiling/(scripted-\d)/medqa", tex).group(1)
    assert {p.name for p in paper.glob("report.*.pdf")} == {"report.forest.pdf", "report.pareto.pdf", "report.anytime.pdf"}
    (paper / "main.tex").write_text(
        "\\documentclass[twocolumn]{article}\n\\usepackage{booktabs}\n\\usepackage{graphicx}\n"
        "\\begin{document}\n\\input{report.tex}\n"
        f"Ceiling CITED \\promptopt{{ceiling/{label}/medqa}} \\promptopt{{ceiling-ci/{label}/medqa}} END.\n\n"
        f"HOSTILE {escape(HOSTILE)} END.\n\n"
        "\\includegraphics[width=\\columnwidth]{report.forest.pdf}\n\\end{document}\n"
    )
    if not shutil.which("pdflatex"):
        assert os.environ.get("PROMPTOPT_TEST_TEX") != "required", "pdflatex is not installed (texlive-latex-base)"
        pytest.skip("no TeX engine here (.ci/run installs texlive-latex-base)")
    run = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "-no-shell-escape", "main.tex"],
                         cwd=paper, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert run.returncode == 0, run.stdout[-2000:]
    text = subprocess.run(["pdftotext", "-layout", "main.pdf", "-"], cwd=paper, capture_output=True, text=True).stdout
    cited = f"{100 * ceiling.ceiling_score:.1f} [{100 * ceiling.ceiling_ci_low:.1f}, {100 * ceiling.ceiling_ci_high:.1f}]"
    assert f"Ceiling CITED {cited} END." in text  # the macro prints the number the report holds
    assert "4o & co \\input{/etc/passwd} 100% $x$ #1" in " ".join(text.split())  # a name is printed, never run
    assert "\\input{/etc/hosts}" in " ".join(text.split())  # fullwidth look-alikes too
    subprocess.run(["pdftoppm", "-png", "-r", "80", "-singlefile", "report.forest.pdf", "forest"], cwd=paper, check=True)
    png = (paper / "forest.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 2_000
