"""`promptopt view`: a local web app over a results store, for reading answers.

It binds to 127.0.0.1, answers only requests addressed to 127.0.0.1 or localhost (its Host
header: a page elsewhere cannot reach it by DNS rebinding), reads the store only (never writes,
never calls a model) and has no external reference (no CDN, no web font): every page is HTML
rendered here, with inline styles and the report's own SVG plots, served with a
Content-Security-Policy that allows no script at all. Pages, each a URL that can be shared:

- ``/``: the runs in the store (one run: its page at once);
- ``/run/RUN``: the leaderboard with a forest plot, the Pareto plot with intervals, rank flips,
  robustness and costs (the report's sections), and every config with links to its examples;
- ``/run/RUN/examples?model=&task=&config=&split=&show=all|wrong|parse|errors&q=&page=``: one
  config's examples, paged and filtered in SQL (so a 100k-record store stays fast);
- ``/run/RUN/image/TASK/DIGEST``: an image a record showed, found by its content digest.
- ``/run/RUN/example/ID``: one record: its images, the prompt as sent, the raw reply, the parsed answer, the
  gold, score, calls, tokens, cost, latency and the strategy's extras;
- ``/run/RUN/compare?task=&split=&a=MODEL|CONFIG&b=MODEL|CONFIG&page=``: two configs (or two
  models) on the same items, the items where they disagree first, with the paired difference.

Everything a model wrote is escaped before it is shown.
"""

from __future__ import annotations

import contextlib
import html
import json
import re
import threading
import urllib.parse
from typing import Any

from promptopt.errors import UserError
from promptopt.images import ImageRef, refs_in

PER_PAGE = 50
SHOW = ("all", "wrong", "parse", "errors")

_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:20px 28px;color:#1b1b1b}p{max-width:1100px}
h1{font-size:21px}h2{font-size:16px;margin-top:26px}a{color:#1f5fa8}
table{border-collapse:collapse;margin:8px 0;font-size:13px}
th,td{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#eef1f5}tr:nth-child(even) td{background:#fafafa}
td.text{max-width:520px;white-space:pre-wrap;word-break:break-word}
pre{white-space:pre-wrap;word-break:break-word;background:#f6f8fa;border:1px solid #ddd;padding:8px;max-width:1200px}
.note{color:#555;max-width:1100px}.warn{background:#fff3cd;border:1px solid #e0c36a;padding:6px 10px}
.right{color:#0a7a2f;font-weight:600}.wrong{color:#b00020;font-weight:600}
nav{margin-bottom:10px}nav a{margin-right:12px}form{margin:8px 0}
svg{max-width:100%;height:auto}.scroll{overflow-x:auto}
a.filter{padding:1px 6px;border-radius:3px}a.filter.current{background:#1f5fa8;color:#fff;text-decoration:none}
"""


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def link(path: str, **query: Any) -> str:
    q = {k: v for k, v in query.items() if v not in (None, "")}
    return path + ("?" + urllib.parse.urlencode(q) if q else "")


def page(title: str, body: str, crumbs: list[tuple[str, str]] | None = None) -> str:
    nav = "".join(f"<a href='{esc(href)}'>{esc(text)}</a>" for text, href in crumbs or [])
    return (
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{esc(title)}</title>"
        f"<style>{_CSS}</style></head><body><nav>{nav}</nav><h1>{esc(title)}</h1>{body}</body></html>"
    )


def table(headers: list[str], rows: list[list[str]], cls: str = "") -> str:
    """Cells are HTML already (escaped by the caller)."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<div class='scroll'><table class='{cls}'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"


def shown(model: str) -> str:
    """A model identity without its endpoint's scheme (as every report table shows it)."""
    from promptopt.tables import display as _display

    return esc(_display(model))


def pct(x) -> str:
    return "—" if x is None else f"{100 * float(x):.1f}"


class View:
    """What the pages read, from one store: paged SQL for examples, cached reports per run."""

    def __init__(self, source: str):
        from promptopt.reports import open_source

        self.source = source
        self.store, self.default_run = open_source(source)
        self._reports: dict[str, tuple[tuple, Any, dict]] = {}
        self._images: dict[tuple[str, str], dict[str, ImageRef]] = {}
        self._lock = threading.Lock()

    def runs(self) -> list[dict]:
        known = self.store.runs()
        statuses = self.store.statuses()
        return [{"run_id": r.run_id, "created_at": r.created_at, **statuses.get(r.run_id, {})} for r in known.itertuples()]

    def report(self, run_id: str):
        """The run's report and plots, computed once and again only when its records change."""
        from promptopt import reports

        stamp = self.store.records_stamp(run_id)
        with self._lock:
            cached = self._reports.get(run_id)
            if cached and cached[0] == stamp:
                return cached[1], cached[2]
            report = reports.report(self.source, run_id=run_id, b=2000)
            figures = {}
            for name, make in (("forest", reports.forest_figure), ("pareto", reports.pareto_figure),
                               ("anytime", reports.anytime_figure)):
                svg = make(report, "svg")
                figures[name] = reports.inline_svg(svg) if svg else ""
            self._reports[run_id] = (stamp, report, figures)
            return report, figures

    def image(self, run_id: str, task: str, digest: str) -> ImageRef | None:
        """An image a record of this run showed, found by its digest among its task's items (the
        task as the run's plan names it); None when the task or the image is no longer there."""
        key = (run_id, task)
        with self._lock:
            known = self._images.get(key)
        if known is None:
            known = {}
            with contextlib.suppress(UserError, OSError, ValueError):
                known = {ref.digest: ref for ex in _plan_task(self.store, run_id, task).rows() for ref in refs_in(ex.inputs)}
            with self._lock:
                self._images[key] = known
        return known.get(digest)

    def questions(self, run_id: str, task: str) -> dict[str, str]:
        """Item id -> the start of its first text input (the question), for example lists; empty
        when the task is not here (an imported log's, data moved)."""
        key = ("questions", run_id, task)
        with self._lock:
            known = self._images.get(key)
        if known is None:
            known = {}
            with contextlib.suppress(UserError, OSError, ValueError):
                loaded = _plan_task(self.store, run_id, task)
                field = next((f for f in loaded.input_fields if f not in loaded.image_fields and f != "options"), None)
                if field is not None:
                    known = {ex.id: _start(str(ex.inputs.get(field) or ""), 140) for ex in loaded.rows()}
            with self._lock:
                self._images[key] = known
        return known

    def configs(self, run_id: str) -> list[dict]:
        return self.store.config_counts(run_id)

    def examples(self, run_id, model, task, config, split, show="all", text="", page_no=1) -> tuple[list[dict], int]:
        return self.store.examples_page(run_id, model, task, config, split, show, text, page_no, PER_PAGE)

    def record(self, run_id: str, record_id: int) -> dict | None:
        return self.store.record(run_id, record_id)

    def compare(self, run_id, task, split, a: tuple[str, str], b: tuple[str, str], page_no=1):
        """Items both answered, disagreements (different scores) first; and the paired figures."""
        return self.store.compared(run_id, task, split, a, b, page_no, PER_PAGE)


def _paired(pairs) -> dict | None:
    import numpy as np
    import pandas as pd

    from promptopt.stats import MIN_PAIRED, paired

    if not pairs:
        return None
    ids = [p[0] for p in pairs]
    sa = pd.Series([float(p[1]) for p in pairs], index=ids)
    sb = pd.Series([float(p[2]) for p in pairs], index=ids)
    out = paired(sa, sb, b=2000, seed=0, min_n=MIN_PAIRED)  # no interval or p over fewer than 10 items
    out["disagree"] = int(np.sum(sa.to_numpy() != sb.to_numpy()))
    return out


# ---------------------------------------------------------------- pages


def runs_page(view: View) -> str:
    rows = [[f"<a href='{esc(link('/run/' + urllib.parse.quote(r['run_id'])))}'>{esc(r['run_id'])}</a>",
             esc(r.get("status", "unknown"))] for r in view.runs()]  # fmt: skip
    return page("promptopt — runs", table(["run", "status"], rows) if rows else "<p>This store holds no run.</p>")


def run_page(view: View, run_id: str) -> str:
    from promptopt.reports import sections

    report, figures = view.report(run_id)
    base = f"/run/{urllib.parse.quote(run_id)}"
    parts = [f"<p class='warn'>WARNING: {esc(w)}</p>" for w in report.warnings]
    chosen = {(r.model, r.task, r.selected_config_id) for r in report.leaderboard}
    rows = []
    for c in view.configs(run_id):
        href = link(f"{base}/examples", model=c["model"], task=c["task"], config=c["config_id"], split=c["split"])
        rows.append([
            esc(c["task"]), shown(c["model"]), f"<a class='config' href='{esc(href)}'>{esc(c['config_id'])}</a>"
            + (" ★" if (c["model"], c["task"], c["config_id"]) in chosen else ""),
            esc(c["split"]), esc(c["n"]), pct(c["score"]), esc(c["parse"]), esc(c["errors"]),
        ])  # fmt: skip
    parts.append("<h2>Configs</h2>" + table(["task", "model", "config (★ = ceiling)", "split", "records", "score %",
                                             "parse failures", "errors"], rows, "configs"))  # fmt: skip
    compare = _compare_form(view, run_id)
    if compare:
        parts.append(compare)
    if figures.get("forest"):
        parts.append("<h2>Forest plot: baseline and ceiling with 95% intervals</h2><figure>" + figures["forest"] + "</figure>")
    keep = ("Leaderboard", "Head-to-head", "Rank flips", "Robustness", "Robust", "Cost", "Pareto", "Anytime",
            "Calibration", "Cloze", "Retrieval", "Metrics", "Judges")  # fmt: skip
    for section in sections(report):
        if not section.title.startswith(keep):
            continue
        cells = [[esc(c) for c in row] for row in section.body]
        parts.append(f"<h2>{esc(section.title)}</h2>" + table(section.headers, cells))
        if section.note:
            parts.append(f"<p class='note'>{esc(section.note)}</p>")
        if section.title.startswith("Pareto") and figures.get("pareto"):
            parts.append("<figure>" + figures["pareto"] + "</figure>")
        if section.title.startswith("Anytime") and figures.get("anytime"):
            parts.append("<figure class='anytime'>" + figures["anytime"] + "</figure>")
    return page(f"Run {run_id}", "".join(parts), [("runs", "/")])


def _compare_form(view: View, run_id: str) -> str:
    configs = view.configs(run_id)
    tasks = sorted({(c["task"], c["split"]) for c in configs})
    if not configs:
        return ""
    distinct = list({(c["model"], c["config_id"]): c for c in configs}.values())

    def options(selected: int) -> str:  # B starts on the second config: a form that opens on A = B compares nothing
        return "".join(
            f"<option value='{esc(c['model'] + '|' + c['config_id'])}'{' selected' if i == selected else ''}>"
            f"{shown(c['model'])} · {esc(c['config_id'])}</option>"
            for i, c in enumerate(distinct)
        )

    task_opts = "".join(f"<option value='{esc(t + '|' + s)}'>{esc(t)} · {esc(s)}</option>" for t, s in tasks)
    return (
        f"<h2>Compare two configs or two models on the same items</h2><form class='compare' method='get' "
        f"action='/run/{esc(urllib.parse.quote(run_id))}/compare'><select name='on'>{task_opts}</select> "
        f"<select name='a'>{options(0)}</select> vs <select name='b'>{options(min(1, len(distinct) - 1))}</select> "
        "<button type='submit'>compare</button></form>"
    )


def examples_page(view: View, run_id, model, task, config, split, show, text, page_no) -> str:
    rows, total = view.examples(run_id, model, task, config, split, show, text, page_no)
    base = f"/run/{urllib.parse.quote(run_id)}"
    here = dict(model=model, task=task, config=config, split=split)
    filters = " ".join(
        f"<a class='filter{' current' if s == show else ''}' href='{esc(link(base + '/examples', **here, show=s, q=text))}'>{s}</a>"
        for s in SHOW
    )
    form = (
        f"<form method='get' action='{esc(base)}/examples'>"
        + "".join(f"<input type='hidden' name='{k}' value='{esc(v)}'>" for k, v in here.items())
        + f"<input type='hidden' name='show' value='{esc(show)}'><input name='q' value='{esc(text)}' "
        "placeholder='search ids, answers, replies'><button type='submit'>search</button></form>"
    )
    body_rows = []
    asked = view.questions(run_id, task.split("~", 1)[0]) if rows else {}
    for r in rows:
        mark = "errors" if r["error"] else ("right" if r["score"] >= 1 else "wrong")
        body_rows.append([
            f"<a class='example' href='{esc(base)}/example/{r['id']}'>{esc(r['example_id'])}</a>",
            f"<span class='text'>{esc(asked.get(r['example_id'].split('~', 1)[0], ''))}</span>", esc(r["gold"]), esc(r["prediction"]), f"<span class='{mark}'>{esc(round(r['score'], 3))}</span>",
            "yes" if r["parse_ok"] else "no", esc(r["error"] or ""), esc(r["lm_calls"]),
            esc(f"{r['prompt_tokens']}/{r['completion_tokens']}"), esc(f"{r['latency_s']:.2f}"),
            f"<span class='text'>{esc((r['raw_output'] or '')[:160])}</span>",
        ])  # fmt: skip
    pages = max(1, -(-total // PER_PAGE))
    nav = []
    if page_no > 1:
        nav.append(f"<a href='{esc(link(base + '/examples', **here, show=show, q=text, page=page_no - 1))}'>← previous</a>")
    if page_no < pages:
        nav.append(f"<a class='next' href='{esc(link(base + '/examples', **here, show=show, q=text, page=page_no + 1))}'>next →</a>")
    body = (
        f"<p>{shown(model)} · {esc(task)} · {esc(split)} · show: {filters}</p>{form}"
        f"<p class='count'>{total} examples · page {page_no} of {pages}</p>"
        + table(["example", "question (start)", "gold", "parsed answer", "score", "parsed", "error", "calls", "tokens in/out", "latency s",
                 "reply (start)"], body_rows, "examples")  # fmt: skip
        + " ".join(nav)
    )
    return page(f"Examples of {config}", body, [("runs", "/"), (f"run {run_id}", base)])


def _start(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1].rstrip() + "…"


def _plan_task(store, run_id: str, task: str):
    """The task a run's records name (a probe task's images are its source task's), loaded as the
    run's plan named it: a bundled name or the path of a YAML file."""
    from promptopt.tasks import load_task

    base = task.split("~", 1)[0]
    plan = next((json.loads(r.plan or "{}") for r in store.runs().itertuples() if r.run_id == run_id), {})
    for named in plan.get("tasks", []) if isinstance(plan, dict) else []:
        with contextlib.suppress(UserError, OSError, ValueError):
            found = load_task(str(named))
            if found.name == base:
                return found
    return load_task(base)


def _images_html(base: str, r: dict) -> str:
    """The record's images, each beside its digest (as the prompt as sent names it)."""
    shown = (json.loads(r["extras"]) if r.get("extras") else {}).get("images") or []
    cells = "".join(
        f"<figure><img src='{esc(base)}/image/{urllib.parse.quote(r['task'])}/{esc(d)}' alt='image sha256:{esc(d)}' "
        f"style='max-width:480px;max-height:480px'><figcaption>sha256:{esc(d)}</figcaption></figure>"
        for d in shown if re.fullmatch(r"[0-9a-f]{16}", str(d))
    )  # fmt: skip
    return f"<h2>Images shown</h2><div class='images'>{cells}</div>" if cells else ""


def _sent_html(sent: str | None) -> str:
    if not sent:
        return "<p class='note'>This record was written before promptopt stored the prompt as sent.</p>"
    parts = []
    first_with: dict[str, int] = {}  # a prompt sent again (cloze scores each option on one prompt) is shown once
    for i, call in enumerate(json.loads(sent), 1):
        if "messages" in call:
            for m in call["messages"]:
                parts.append(f"<h3>call {i} · {esc(m.get('role'))}</h3><pre class='prompt'>{esc(m.get('content'))}</pre>")
        else:
            extra = f" (scored continuation: {esc(call['forced'])})" if call.get("forced") else ""
            text = str(call.get("prompt"))
            if text in first_with:
                parts.append(f"<h3>call {i} · the prompt of call {first_with[text]}{extra}</h3>")
            else:
                first_with[text] = i
                parts.append(f"<h3>call {i} · prompt{extra}</h3><pre class='prompt'>{esc(text)}</pre>")
        if call.get("reply") is not None:
            reply = call["reply"] if isinstance(call["reply"], str) else json.dumps(call["reply"], ensure_ascii=False)
            parts.append(f"<h3>call {i} · reply</h3><pre class='reply'>{esc(reply)}</pre>")
    return "".join(parts)


def example_page(view: View, run_id: str, record_id: int) -> str | None:
    from promptopt.tables import display as _display

    r = view.record(run_id, record_id)
    if r is None:
        return None
    base = f"/run/{urllib.parse.quote(run_id)}"
    facts = [
        ("model", _display(r["model"])), ("task", r["task"]), ("config", r["config_id"]), ("split", r["split"]),
        ("example", r["example_id"]), ("gold", r["gold"]), ("parsed answer", r["prediction"]),
        ("score", r["score"]), ("parsed", "yes" if r["parse_ok"] else "no"), ("error", r["error"] or ""),
        ("LM calls", r["lm_calls"]), ("tokens in / out", f"{r['prompt_tokens']} / {r['completion_tokens']}"),
        ("cost $", f"{r['cost_usd']:.6f}"), ("latency s", f"{r['latency_s']:.3f}"),
    ]  # fmt: skip
    rows = "".join(f"<tr><th>{esc(k)}</th><td class='{esc(k.replace(' ', '-'))}'>{esc(v)}</td></tr>" for k, v in facts)
    extras = json.dumps(json.loads(r["extras"]), indent=2, ensure_ascii=False) if r.get("extras") else ""
    back = link(f"{base}/examples", model=r["model"], task=r["task"], config=r["config_id"], split=r["split"])
    body = (
        f"<table class='facts'>{rows}</table>"
        f"{_images_html(base, r)}<h2>Prompt as sent, and the raw reply</h2>{_sent_html(r.get('sent'))}"
        f"<h2>What the strategy kept as its output</h2><pre class='raw'>{esc(r['raw_output'])}</pre>"
        + (f"<h2>Strategy extras (votes, reasoning, retrieved passages, judge verdicts)</h2><pre class='extras'>{esc(extras)}</pre>" if extras else "")
    )  # fmt: skip
    crumbs = [("runs", "/"), (f"run {run_id}", base), (f"examples of {r['config_id']}", back)]
    return page(f"Example {r['example_id']} · {r['config_id']}", body, crumbs)


def _agreement(r: dict) -> str:
    """Scored apart, or the same score from the same or from different answers (two different wrong
    answers are not "the same")."""
    if r["a_score"] != r["b_score"]:
        return "<span class='wrong'>disagree</span>"
    return "same answer" if r["a_prediction"] == r["b_prediction"] else "different answers, same score"


def compare_page(view: View, run_id: str, on: str, a: str, b: str, page_no: int) -> str:
    task, _, split = on.rpartition("|")
    (ma, _, ca), (mb, _, cb) = a.rpartition("|"), b.rpartition("|")  # a model name may hold "|", a config id not
    rows, pairs = view.compare(run_id, task, split, (ma, ca), (mb, cb), page_no)
    figures = _paired(pairs)
    base = f"/run/{urllib.parse.quote(run_id)}"
    summary = "<p>No item was answered under both.</p>"
    if figures:
        summary = (
            f"<p class='paired'>{figures['n']} items answered under both; they disagree on {figures['disagree']}. "
            f"A {pct(figures['score_a'])}%, B {pct(figures['score_b'])}%, A − B {100 * figures['diff']:+.1f} points "
            + (f"[{100 * figures['ci_low']:+.1f}, {100 * figures['ci_high']:+.1f}] (paired bootstrap, 95%), p = "
               f"{figures['p']:.3g}.</p>" if figures["ci_low"] is not None else
               "(no interval or p on fewer than 10 common items).</p>")
        )
        if figures["only_a"] is not None:
            summary += (
                f"<p class='flips'>Right under A only: {figures['only_a']}; under B only: {figures['only_b']}; "
                f"under both: {figures['both']}; under neither: {figures['neither']}. On these items a difference "
                f"of {100 * figures['mde']:.1f} points or more is found 80% of the time (alpha 0.05).</p>"
                f"<p class='flip-items'>Right under A only: <span class='only-a'>{esc(', '.join(figures['only_a_items']) or 'none')}"
                f"</span>. Right under B only: <span class='only-b'>{esc(', '.join(figures['only_b_items']) or 'none')}</span>.</p>"
            )
    body_rows = [[
        esc(r["example_id"]), esc(r["gold"]),
        f"<a href='{esc(base)}/example/{r['a_id']}'>{esc(r['a_prediction'])}</a>", esc(r["a_score"]),
        f"<a href='{esc(base)}/example/{r['b_id']}'>{esc(r['b_prediction'])}</a>", esc(r["b_score"]),
        _agreement(r),
    ] for r in rows]  # fmt: skip
    pages = max(1, -(-len(pairs) // PER_PAGE))
    nav = f"<a class='next' href='{esc(link(base + '/compare', on=on, a=a, b=b, page=page_no + 1))}'>next →</a>" if page_no < pages else ""
    body = (
        f"<p>{esc(task)} · {esc(split)}<br>A: {shown(ma)} · {esc(ca)}<br>B: {shown(mb)} · {esc(cb)}</p>{summary}"
        + table(["example", "gold", "A answer", "A score", "B answer", "B score", ""], body_rows, "compare") + nav
    )
    return page("Comparison on the same items", body, [("runs", "/"), (f"run {run_id}", base)])


LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
SECURITY_HEADERS = {
    # no script at all, images and styles from the page itself, forms back to the viewer only
    "Content-Security-Policy": "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Resource-Policy": "same-origin",
}


def _host_name(header: str) -> str:
    """The name in a Host header, without its port: 127.0.0.1:8765 -> 127.0.0.1, [::1]:8765 -> ::1."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:].split("]", 1)[0]
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def make_app(source: str, warm_up: bool = True):
    """The viewer as an ASGI app (FastAPI) over one run folder or storage URL; with `warm_up`,
    every run's report is computed in the background as the app starts."""
    from fastapi import FastAPI, HTTPException
    from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response

    view = View(source)
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    @app.middleware("http")
    async def guard(request, call_next):
        """Only this machine's names are answered (a page elsewhere that re-points its own name at
        127.0.0.1, DNS rebinding, sends its own Host), and every page forbids scripts, frames and
        foreign requests, so text a model wrote cannot run even if it escaped the escaping."""
        host = _host_name(request.headers.get("host", ""))
        if host not in LOCAL_HOSTS:
            return PlainTextResponse(
                f"This viewer answers requests for {', '.join(LOCAL_HOSTS)} only, not for host {host[:80]!r}.",
                status_code=421,
            )
        response = await call_next(request)
        response.headers.update(SECURITY_HEADERS)
        return response

    def warm() -> None:  # each run's report is computed once at start, so its first page is quick
        for r in view.runs():
            with contextlib.suppress(Exception):  # a page asked for later says what is wrong; warming up must not
                view.report(r["run_id"])

    if warm_up:
        threading.Thread(target=warm, daemon=True, name="promptopt-view-warm").start()

    def known(run_id: str) -> None:
        if run_id not in {r["run_id"] for r in view.runs()}:
            raise HTTPException(404, f"no run {run_id!r} in this store")

    @app.get("/", response_class=HTMLResponse)
    def index():
        runs = view.runs()
        if len(runs) == 1:
            return RedirectResponse(f"/run/{urllib.parse.quote(runs[0]['run_id'])}")
        return runs_page(view)

    @app.get("/run/{run_id}", response_class=HTMLResponse)
    def run(run_id: str):
        known(run_id)
        try:
            return run_page(view, run_id)
        except UserError as exc:  # e.g. a store a later promptopt wrote: its one sentence, not a traceback
            return HTMLResponse(page("This run cannot be shown", f"<p class='warn'>{esc(exc)}</p>"), status_code=400)

    @app.get("/run/{run_id}/examples", response_class=HTMLResponse)
    def examples(run_id: str, model: str, task: str, config: str, split: str = "test", show: str = "all",
                 q: str = "", page: int = 1):  # fmt: skip
        known(run_id)
        if show not in SHOW:
            raise HTTPException(400, f"show must be one of {', '.join(SHOW)}")
        return examples_page(view, run_id, model, task, config, split, show, q.strip(), max(1, page))

    @app.get("/run/{run_id}/example/{record_id}", response_class=HTMLResponse)
    def example(run_id: str, record_id: int):
        known(run_id)
        got = example_page(view, run_id, record_id)
        if got is None:
            raise HTTPException(404, f"no record {record_id} in run {run_id}")
        return got

    @app.get("/run/{run_id}/image/{task}/{digest}")
    def image(run_id: str, task: str, digest: str):
        known(run_id)
        ref = view.image(run_id, task, digest) if re.fullmatch(r"[0-9a-f]{16}", digest) else None
        if ref is None:
            raise HTTPException(404, f"no image sha256:{digest} among the items of task {task!r}")
        return Response(ref.data(), media_type=ref.mime)

    @app.get("/run/{run_id}/compare", response_class=HTMLResponse)
    def compare(run_id: str, on: str, a: str, b: str, page: int = 1):
        known(run_id)
        return compare_page(view, run_id, on, a, b, max(1, page))

    return app


def serve(source: str, port: int = 8765, on_ready=None) -> None:
    """Serve the viewer on 127.0.0.1:port until Ctrl-C."""
    import socket

    import uvicorn

    app = make_app(source)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:  # bound before any URL is printed: a busy port must not send the user to another program's page
        sock.bind(("127.0.0.1", port))
    except OSError:
        sock.close()
        from promptopt.server import free_port

        raise UserError(
            f"Port {port} on 127.0.0.1 is in use (another viewer or program); pass a free one, e.g. --port {free_port()}."
        ) from None
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    if on_ready:
        on_ready(f"Viewing {source} at http://127.0.0.1:{port}/ (Ctrl-C to stop).")
    server.run(sockets=[sock])
