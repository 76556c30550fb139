"""The results viewer in a real browser (Chromium through Playwright), the prompt it shows against
what a scripted server received, and other tools' logs imported into the comparator."""

import html
import json
import os
import re
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

import promptopt
from promptopt.testing import ScriptedServer, structured_answer

N = 12
SHOTS = Path(os.environ.get("PROMPTOPT_SCREENSHOTS", "/tmp/promptopt-viewer-shots"))
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def two_config_run(task, tmp_path):
    """predict is right on the first 4 test items, cot on the first 9: they disagree on 5."""
    tests = task.examples("test", N)
    right = {"predict": {ex.id for ex in tests[:4]}, "cot": {ex.id for ex in tests[:9]}}
    by_q = {ex.inputs["question"]: ex for ex in tests}

    def reply(prompt):
        ex = next(e for q, e in by_q.items() if q in prompt)
        letters = list(ex.inputs["options"])
        which = "cot" if "[[ ## reasoning ## ]]" in prompt else "predict"
        letter = ex.gold if ex.id in right[which] else letters[(letters.index(ex.gold) + 1) % len(letters)]
        return structured_answer(letter) if which == "cot" else f"[[ ## answer ## ]]\n{letter}\n\n[[ ## completed ## ]]"

    server = ScriptedServer(reply).start()
    log = promptopt.run(models=["openai/scripted"], api_base=server.base_url, tasks=["medqa"], strategies=["predict", "cot"],
                        limit=N, splits=["test"], out=tmp_path, references=False)  # fmt: skip
    return server, log, right, tests


class Viewer:
    def __init__(self, source):
        import uvicorn

        from promptopt.viewer import make_app

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(make_app(source), host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        self.url = f"http://127.0.0.1:{self.port}"

    def stop(self):
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture(scope="module")
def viewed(medqa, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("viewer")
    server, log, right, tests = two_config_run(medqa, tmp)
    viewer = Viewer(str(log.run_dir))
    yield viewer, server, log, right, tests
    viewer.stop()
    server.stop()


def prompts_on(page_html: str) -> list[str]:
    return [html.unescape(m) for m in re.findall(r"<pre class='prompt'>(.*?)</pre>", page_html, flags=re.S)]


def test_the_example_page_shows_exactly_the_prompt_the_server_received(viewed):
    import httpx

    viewer, server, log, right, tests = viewed
    from promptopt.store import Store

    records = Store(log.storage).records(log.run_id)
    for ex in tests[:3]:
        sent = [r for r in server.requests if ex.inputs["question"] in "".join(m["content"] for m in r["messages"])]
        rows = records[(records.example_id == ex.id)]
        for cid in rows.config_id:
            rid = _record_id(log, ex.id, cid)
            shown = prompts_on(httpx.get(f"{viewer.url}/run/{log.run_id}/example/{rid}").text)
            received = [r for r in sent if (("reasoning" in "".join(m["content"] for m in r["messages"])) == cid.startswith("cot"))]
            assert shown == [m["content"] for m in received[0]["messages"]]


def _record_id(log, example_id, config_id) -> int:
    from sqlalchemy import select

    from promptopt.store import Store, records

    store = Store(log.storage)
    with store.engine.connect() as conn:
        q = select(records.c.id).where(records.c.run_id == log.run_id, records.c.example_id == example_id,
                                       records.c.config_id == config_id)  # fmt: skip
        return int(conn.execute(q).scalar())


@pytest.mark.skipif(CHROMIUM is None and not os.environ.get("PROMPTOPT_TEST_BROWSER"),
                    reason="Debian's chromium is not installed (.ci/run installs it and requires this test)")
def test_a_user_clicks_from_the_leaderboard_to_a_wrong_answer_and_compares_two_configs(viewed):
    from playwright.sync_api import sync_playwright

    assert CHROMIUM, "PROMPTOPT_TEST_BROWSER is set but no chromium is on PATH"
    viewer, server, log, right, tests = viewed
    SHOTS.mkdir(parents=True, exist_ok=True)
    wrong_predict = [ex for ex in tests if ex.id not in right["predict"]]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(viewer.url + "/")
        assert page.locator("h1").inner_text() == f"Run {log.run_id}"
        assert page.locator("figure svg").count() >= 2  # the forest plot and the Pareto plot, inline
        page.screenshot(path=str(SHOTS / "1-run.png"), full_page=True)

        page.locator("table.configs a.config", has_text="predict").first.click()
        assert page.locator("p.count").inner_text().startswith(f"{N} examples")
        page.locator("a.filter", has_text="wrong").click()
        assert page.locator("p.count").inner_text().startswith(f"{len(wrong_predict)} examples")
        assert page.locator("a.filter.current").inner_text() == "wrong"  # the active filter stands out
        assert page.locator("a.filter.current").evaluate("e => getComputedStyle(e).color") == "rgb(255, 255, 255)"
        page.screenshot(path=str(SHOTS / "2-wrong-answers.png"), full_page=True)
        ids = page.locator("table.examples a.example").all_inner_texts()
        assert sorted(ids) == sorted(ex.id for ex in wrong_predict)
        first = next(e for e in tests if e.id == ids[0])  # each id beside the start of its question
        assert first.inputs["question"][:60] in page.locator("table.examples tbody tr").first.inner_text()

        page.locator("table.examples a.example").first.click()
        ex = next(e for e in tests if e.id == ids[0])
        letters = list(ex.inputs["options"])
        wrong_letter = letters[(letters.index(ex.gold) + 1) % len(letters)]
        assert page.locator("td.gold").inner_text() == ex.gold
        assert page.locator("td.parsed-answer").inner_text() == wrong_letter
        assert ex.inputs["question"][:60] in page.locator("pre.prompt").last.inner_text()  # system, then user
        assert f"[[ ## answer ## ]]\n{wrong_letter}" in page.locator("pre.reply").inner_text()
        page.screenshot(path=str(SHOTS / "3-example.png"), full_page=True)

        page.goto(viewer.url + "/")
        form = page.locator("form.compare")
        assert form.locator("select[name=a]").input_value() != form.locator("select[name=b]").input_value()
        values = form.locator("select[name=a] option").evaluate_all("els => els.map(e => e.value)")
        form.locator("select[name=a]").select_option(next(v for v in values if "|predict" in v))
        form.locator("select[name=b]").select_option(next(v for v in values if "|cot" in v))
        form.locator("button").click()
        marks = page.locator("table.compare tbody tr td:last-child").all_inner_texts()
        differ = len(right["cot"] ^ right["predict"])
        # disagreements first; both wrong here means the same wrong letter (the next one), so "same answer"
        assert marks == ["disagree"] * differ + ["same answer"] * (N - differ)
        assert f"they disagree on {differ}" in page.locator("p.paired").inner_text()
        only_cot, both = len(right["cot"] - right["predict"]), len(right["cot"] & right["predict"])
        assert (f"Right under A only: 0; under B only: {only_cot}; under both: {both}; under neither: "
                f"{N - only_cot - both}.") in page.locator("p.flips").inner_text()  # fmt: skip
        assert page.locator("span.only-a").inner_text() == "none"  # the flipped items, as planted
        assert page.locator("span.only-b").inner_text().split(", ") == sorted(right["cot"] - right["predict"])
        page.screenshot(path=str(SHOTS / "4-compare.png"), full_page=True)
        # the HTML report uses the whole window: a wide table is not cut at 1,400 px
        from promptopt import reports

        html_file = reports.save(promptopt.report(log.run_dir, bootstrap=200), "html", log.run_dir / "report.html")[0]
        wide = browser.new_page(viewport={"width": 1900, "height": 1000})
        wide.goto(html_file.as_uri())
        assert wide.evaluate("document.body.clientWidth") > 1700
        wide.screenshot(path=str(SHOTS / "5-report-html.png"), full_page=True)
        browser.close()


def test_an_inspect_log_made_by_inspect_imports_with_the_accuracy_inspect_reports(tmp_path, monkeypatch):
    import litellm.litellm_core_utils.default_encoding as bundled

    # Inspect counts tokens with tiktoken, whose encodings LiteLLM ships (no download here)
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(Path(bundled.__file__).parent / "tokenizers"))
    from inspect_ai import Task, eval
    from inspect_ai.dataset import Sample
    from inspect_ai.model import ModelOutput, get_model
    from inspect_ai.scorer import match
    from inspect_ai.solver import generate, system_message

    samples = [Sample(input=f"What is {i} + {i}?", target=str(2 * i), id=f"q{i}") for i in range(10)]
    reported = {}
    for name, solver, right in (("plain", [generate()], {0, 1, 2, 3}),
                                ("system", [system_message("Answer with a number."), generate()], set(range(8)))):  # fmt: skip
        outputs = [ModelOutput.from_content("mockllm/model", str(2 * i) if i in right else "no idea") for i in range(10)]
        logs = eval(Task(dataset=samples, solver=solver, scorer=match(), name="doubling"),
                    model=get_model("mockllm/model", custom_outputs=outputs), log_dir=str(tmp_path / "logs"),
                    display="none", max_samples=1)  # fmt: skip
        reported[name] = logs[0].results.scores[0].metrics["accuracy"].value
    from promptopt.importers import import_logs

    lines = []
    run_dir = import_logs([tmp_path / "logs"], out=tmp_path / "runs", on_event=lines.append)
    report = promptopt.report(str(run_dir))
    got = sorted(r.score for r in report.rows)
    assert got == sorted(reported.values()) == [0.4, 0.8]
    assert len({r.task for r in report.rows}) == 1 and report.rows[0].model == "mockllm/model"
    paired = next(line for line in lines if " − " in line)
    # the 4 items only the system-message config got right, all one way: the exact sign test's
    # p = 2 / 2^4, and McNemar's mid-p less the chance of that split, 1 / 2^4
    assert "= -40.0 points [" in paired and "on 10 paired items (p = 0.0625)" in paired


def test_lm_eval_samples_import_with_the_accuracy_lm_eval_reports(tmp_path):
    from promptopt.importers import import_logs

    out = Path(__file__).parent / "fixtures" / "lm_eval" / "out"  # made by make.sh beside it, with lm-eval itself
    results = [json.loads(f.read_text()) for f in sorted(out.rglob("results_*.json"))]
    expected = {r["n-shot"]["doubling"]: r["results"]["doubling"]["acc,none"] for r in results}
    lines = []
    run_dir = import_logs([out], out=tmp_path, on_event=lines.append)
    report = promptopt.report(str(run_dir))
    got = {int(r.strategy.rsplit("=", 1)[1]): r.score for r in report.rows}
    assert got == pytest.approx(expected) and len(expected) == 2
    assert all(r.n == 12 for r in report.rows)
    assert any("on 12 paired items" in line for line in lines)


def test_two_different_wrong_answers_are_not_labelled_the_same_in_a_comparison():
    from promptopt.viewer import _agreement

    row = {"a_score": 0.0, "b_score": 0.0, "a_prediction": "B", "b_prediction": "C"}
    assert _agreement(row) == "different answers, same score"
    assert _agreement(row | {"b_prediction": "B"}) == "same answer"
    assert "disagree" in _agreement(row | {"b_score": 1.0})


def test_a_prompt_sent_once_per_option_is_shown_once_with_each_scored_continuation():
    from promptopt.viewer import _sent_html

    calls = [{"prompt": "Question: 2+2?\nAnswer:", "forced": f" {x}"} for x in ("3", "4", "5", "22")]
    shown = _sent_html(json.dumps(calls))
    assert shown.count("<pre class='prompt'>") == 1 and "Question: 2+2?" in shown
    assert "call 4 · the prompt of call 1 (scored continuation:  22)" in shown


# Replies made to break out of the page: markup, attribute and URL contexts, and a closing </pre>.
HOSTILE = [
    "<script>document.title='pwned'</script>",
    "\"><img src=x onerror=\"document.title='pwned'\">",
    "'><svg onload=document.title='pwned'>",
    "</pre><script>document.title='pwned'</script><pre>",
    "<iframe src=\"javascript:document.title='pwned'\"></iframe>",
    "<a href=\"javascript:document.title='pwned'\">x</a>",
    "<body onload=document.title='pwned'>",
    "<style>@import 'http://evil.example/x.css';</style>",
    "<meta http-equiv=refresh content=\"0;url=javascript:document.title='pwned'\">",
    "{{7*7}} ${7*7} <%= 7*7 %>",
]


@pytest.mark.skipif(CHROMIUM is None and not os.environ.get("PROMPTOPT_TEST_BROWSER"),
                    reason="Debian's chromium is not installed (.ci/run installs it and requires this test)")
def test_hostile_replies_and_ids_run_no_script_in_the_browser_and_a_foreign_host_is_refused(medqa, tmp_path):
    import http.client

    from playwright.sync_api import sync_playwright

    assert CHROMIUM, "PROMPTOPT_TEST_BROWSER is set but no chromium is on PATH"
    tests = medqa.examples("test", len(HOSTILE))
    by_q = {ex.inputs["question"]: i for i, ex in enumerate(tests)}

    def reply(prompt):
        i = next(i for q, i in by_q.items() if q in prompt)
        return f"[[ ## answer ## ]]\n{HOSTILE[i]}\n\n[[ ## completed ## ]]"

    with ScriptedServer(reply) as server:
        log = promptopt.run(models=["openai/scripted"], api_base=server.base_url, tasks=["medqa"], strategies=["predict"],
                            limit=len(HOSTILE), splits=["test"], out=tmp_path, references=False)  # fmt: skip
    viewer = Viewer(str(log.run_dir))
    try:
        conn = http.client.HTTPConnection("127.0.0.1", viewer.port, timeout=10)
        conn.request("GET", "/", headers={"Host": "rebound.evil.example"})  # DNS rebinding: a foreign name, our address
        refused = conn.getresponse()
        assert refused.status == 421 and b"127.0.0.1" in refused.read()
        conn.request("GET", "/", headers={"Host": f"localhost:{viewer.port}"})
        answered = conn.getresponse()
        answered.read()
        assert answered.status in (200, 307)  # one run: its page
        assert "default-src 'none'" in answered.getheader("Content-Security-Policy")  # no script may run at all
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page()
            ran = []
            page.on("dialog", lambda d: (ran.append(d.message), d.dismiss()))
            base = f"{viewer.url}/run/{log.run_id}"
            config = "predict-none-" + log.run_id  # not a config: a hostile-looking query is shown, not run
            urls = [f"{viewer.url}/", f"{base}/examples?model=m&task={HOSTILE[0]}&config={config}&split=test&q={HOSTILE[1]}"]
            page.goto(f"{viewer.url}/")
            page.locator("table.configs a.config").first.click()
            urls += [page.url, *(viewer.url + h for h in page.locator("table.examples a.example").evaluate_all(
                "els => els.map(e => e.getAttribute('href'))"))]  # fmt: skip
            payload = {ex.id: HOSTILE[i] for i, ex in enumerate(tests)}
            shown = 0
            for url in urls:
                page.goto(url)
                assert page.title() != "pwned", url
                if "/example/" in url:  # each reply is on its page as the very text the model wrote, not as markup
                    assert payload[page.locator("td.example").inner_text()] in page.locator("pre.reply").inner_text()
                    shown += 1
            assert shown == len(HOSTILE) and not ran
            browser.close()
    finally:
        viewer.stop()
