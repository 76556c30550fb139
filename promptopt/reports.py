"""Report: read records from a store and render them — no LM call, ever.

`build` prices the records, summarizes them per config, marks the configs chosen on val and has
every report section (promptopt.sections, one file each) compute its rows; docs/report-json.md
documents every field. Every format is rendered from the one `Report` it returns, so text,
markdown, HTML, CSV and JSON can never disagree.
"""

from __future__ import annotations

import html
import io
import json
import re
from pathlib import Path

import pandas as pd

from promptopt import stats
from promptopt.errors import UserError
from promptopt.manifest import mismatches
from promptopt.records import typed
from promptopt.results import Report, SummaryLine
from promptopt.sections import Inputs, in_shown_order, registered
from promptopt.sections.flips import flip_sentences
from promptopt.sections.pareto import PARETO_COSTS
from promptopt.sections.rows import ROW_FIELDS
from promptopt.sections.runs import run_rows
from promptopt.store import Store, run_folder_url
from promptopt.tables import Section, display, short

FORMATS = ("text", "md", "html", "csv", "json", "latex", "examples")
EXAMPLE_FIELDS = [
    "run_id", "model", "task", "strategy", "optimizer", "config_id", "split", "example_id", "gold", "prediction",
    "score", "parse_ok", "error", "lm_calls", "prompt_tokens", "completion_tokens", "cost_usd", "latency_s",
    "raw_output",
]  # fmt: skip


def open_source(source: str) -> tuple[Store, str | None]:
    """A run folder (its run.json names store and run) or a SQLAlchemy URL (every run in it)."""
    path = Path(source)
    if path.is_dir():
        meta = path / "run.json"
        if not meta.exists():
            inside = sorted(p.parent.name for p in path.glob("*/run.json"))
            if inside:
                shown = ", ".join(inside[:5]) + (f" and {len(inside) - 5} more" if len(inside) > 5 else "")
                raise UserError(f"{source} is a folder of run folders, not one: give one of them ({shown}), "
                                f"e.g. {path / inside[-1]}.")  # fmt: skip
            raise UserError(f"{source} is not a run folder: it has no run.json (give a run folder or a storage URL).")
        info = json.loads(meta.read_text())
        return Store(run_folder_url(info["storage"], path), create=False), info["run_id"]
    if "://" in source:
        return Store(source, create=False), None
    raise UserError(f"{source} is neither a run folder nor a storage URL (e.g. sqlite:///results.sqlite).")


def build(
    records: pd.DataFrame,
    compiles: pd.DataFrame | None = None,
    b: int = 10_000,
    seed: int = 0,
    local_usd_per_mtok: float = 0.0,
    runs: list[dict] | None = None,
    local_usd_per_hour: float = 0.0,
    equivalence_margin: float | None = None,
    judge_checks: pd.DataFrame | None = None,
    tables: dict[str, pd.DataFrame] | None = None,
    pareto_cost: str = "inference",
    alpha: float = stats.ALPHA,
) -> Report:
    """Every section of the report from records (and compile costs, and the runs' statuses):
    pure, no I/O. Every statistic is per run; several runs are shown apart, never pooled.

    Models whose calls carry no price (embedded or self-hosted: $0 in total) are charged
    `local_usd_per_mtok` dollars per million tokens, or `local_usd_per_hour` dollars per hour of
    the wall time their calls ran (stats.price_by_time); tokens are always shown beside dollars.
    `warnings` holds one sentence per thing a reader must know before trusting a number.
    `tables`: the store's other tables by name (a search's `choices`, which the report's choice
    follows, and what sections of their own files read, e.g. `anytime`). `pareto_cost`: the
    Pareto cost per example is the task model's inference (`inference`) or also the judge's
    grading and the one-off compile and preparation cost spread over the examples (`all`).
    """
    tables = tables or {}
    unpriced = sorted(stats.unpriced_models(records)) if len(records) else []
    unknown = sorted(stats.price_unknown(set(unpriced)))
    if local_usd_per_mtok and local_usd_per_hour:
        raise UserError("A local model is priced per million tokens or per hour, not both; give --local-price or "
                        "--local-price-per-hour.")  # fmt: skip
    if local_usd_per_mtok < 0 or local_usd_per_hour < 0:
        raise UserError(f"A price cannot be negative (got {min(local_usd_per_mtok, local_usd_per_hour):g}); give "
                        "USD per million tokens or per hour, 0 or more.")  # fmt: skip
    settings = {"bootstrap_resamples": b, "seed": seed, "local_usd_per_mtok": local_usd_per_mtok,
                "local_usd_per_hour": local_usd_per_hour,
                "unpriced_models": unpriced, "price_unknown_models": unknown, "alpha": alpha,
                "min_paired_items": stats.MIN_PAIRED, "correction": "holm",
                "equivalence_margin": equivalence_margin, "pareto_cost": pareto_cost}  # fmt: skip
    runs = run_rows(records, runs)
    if records.empty:
        empty = {section.key: [] for section in registered()}
        return Report.model_validate(empty | {"runs": runs, "settings": settings, "warnings": run_warnings(runs)})
    records = typed(stats.price_unpriced(records, set(unpriced), local_usd_per_mtok))  # extras parsed once, here
    if compiles is not None and len(compiles):
        compiles = stats.price_unpriced(compiles, set(unpriced), local_usd_per_mtok)
    records, compiles = stats.price_by_time(records, compiles, set(unpriced), local_usd_per_hour)
    summary = stats.summarize(records, b=b, seed=seed)
    chosen = stats.select_configs(summary, tables.get("choices"))
    picked = {(r.run_id, r.model, r.task, r.config_id) for r in chosen.itertuples()}
    summary["selected"] = [(r.run_id, r.model, r.task, r.config_id) in picked for r in summary.itertuples()]
    chosen_on = {(r.run_id, r.model, r.task): r.selected_on for r in chosen.itertuples()}
    summary["selected_on"] = [chosen_on.get((r.run_id, r.model, r.task)) for r in summary.itertuples()]
    if judge_checks is not None:
        tables = {**tables, "judge_checks": judge_checks}
    inputs = Inputs(records, summary, tables, b=b, seed=seed, compiles=compiles, runs=runs, settings=settings)
    report = {section.key: section.compute(inputs) for section in registered()} | {"settings": settings}
    report["warnings"] = run_warnings(runs) + measurement_warnings(report, summary, unknown, inputs.free)
    built = Report.model_validate(report)
    built.summary = [SummaryLine(run_id=r, task=t, text=line) for r, t, line in flip_sentences(built)]
    return built


def run_warnings(runs: list[dict]) -> list[str]:
    out = []
    for r in runs:
        if r["status"] in ("in_progress", "interrupted"):
            what = "is still running or was interrupted" if r["status"] == "in_progress" else "was interrupted"
            short = r["incomplete_configs"]
            detail = f"; configs with fewer records than others: {', '.join(short)}" if short else ""
            out.append(
                f"run {r['run_id']} {what} (status {r['status']}): its figures are partial{detail}; run the same "
                "command again to finish it."
            )
    if len(runs) > 1:
        out.append(
            f"this store holds {len(runs)} runs ({', '.join(r['run_id'] for r in runs)}); each is reported apart, "
            "never pooled; pass --run ID for one."
        )
    return out


def measurement_warnings(report: dict, summary: pd.DataFrame, unknown: list[str], free: set[str]) -> list[str]:
    """Sentences for what would otherwise mislead: ceilings chosen on test, configs whose error
    rates differ, hosted models with no known price, a Pareto plot in tokens for mixed prices."""
    out = []
    for c in report["ceilings"]:
        if c["selected_on"] == "test":
            out.append(
                f"the ceiling of {display(c['model'])} on {c['task']} was chosen on test (no val scores): it is "
                "optimistic, biased upward like the optimistic max."
            )
    for d in stats.error_disparities(summary):
        out.append(
            f"on {d['task']} ({d['split']}), {display(d['model'])}'s config {d['config_high']} failed on "
            f"{100 * d['error_rate_high']:.0f}% of items against {100 * d['error_rate_low']:.0f}% for "
            f"{d['config_low']}: errors are left out of scores, so these configs are scored on different items."
        )
    if unknown:
        out.append(
            f"no price is known for {', '.join(map(display, unknown))} (not in LiteLLM's price table): their dollar "
            "figures read $0 but are not free; pass --local-price USD (per million tokens) to price them."
        )
    mixed = sorted({p["task"] for p in report["pareto"] if p["cost_axis"] == "tokens (mixed)"})
    if mixed:
        out.append(
            f"the Pareto frontier of {', '.join(mixed)} is in tokens, not dollars: it mixes priced models with "
            f"unpriced ones ({', '.join(map(display, sorted(free)))}); pass --local-price USD to compare in dollars."
        )
    return out


def sections(report: Report) -> list[Section]:
    """The report as titled tables of text cells: what text, markdown and HTML all render, in one order."""
    return [table for section in in_shown_order() for table in section.render(report)]


def render_text(report: Report, markdown: bool = False, figure: str | None = None) -> str:
    parts = []
    for section in sections(report):
        parts.append(text_table(section, markdown))
        if markdown and figure and section.title.startswith("Pareto"):
            parts.append(f"![Pareto frontier]({figure})")
    return "\n\n".join(parts) + "\n"


def text_table(section: Section, markdown: bool = False) -> str:
    headers, body = section.headers, section.body
    if markdown:
        lines = [f"## {section.title}", "", "| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in body]
        return "\n".join(lines + ([f"\n{section.note}"] if section.note else []))
    widths = [max(len(h), *(len(row[i]) for row in body)) if body else len(h) for i, h in enumerate(headers)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    lines = [section.title, fmt.format(*headers), fmt.format(*["-" * w for w in widths])]
    lines += [fmt.format(*r) for r in body]
    return "\n".join(lines + ([section.note] if section.note else []))


def pareto_figure(report: Report, fmt: str = "svg", paper: bool = False) -> bytes | None:
    """The Pareto plot (one panel per task), frontier marked and every point labelled; None if no
    points. `paper`: sized for one column of a two-column paper, per panel."""
    points = pd.DataFrame([p.model_dump() for p in report.pareto])
    if points.empty:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = sorted(set(zip(points["run_id"], points["task"], strict=True)))
    several = len({run for run, _ in panels}) > 1
    models = sorted(points["model"].unique())
    colours = {m: plt.get_cmap("tab10")(i % 10) for i, m in enumerate(models)}
    with plt.rc_context(_style(paper)):
        fig, axes = plt.subplots(1, len(panels), figsize=(3.4 * len(panels), 2.6) if paper else
                                 (6.4 * len(panels), 4.8), squeeze=False)  # fmt: skip
        for ax, (run_id, task) in zip(axes[0], panels, strict=True):
            pts = points[(points["task"] == task) & (points["run_id"] == run_id)].sort_values("cost")
            for model, g in pts.groupby("model"):
                ax.scatter(g["cost"], 100 * g["score"], color=colours[model], label=short(model), s=28, zorder=3)
                has = g["ci_low"].notna() & g["ci_high"].notna()  # every point with its 95% interval
                if has.any():
                    h = g[has]
                    below = (100 * (h["score"] - h["ci_low"])).clip(lower=0)  # rounding must not make a bar negative
                    above = (100 * (h["ci_high"] - h["score"])).clip(lower=0)
                    ax.errorbar(h["cost"], 100 * h["score"], yerr=[below, above], fmt="none", ecolor=colours[model],
                                alpha=0.55, lw=1, capsize=2, zorder=2)  # fmt: skip
            front = pts[pts["frontier"]]
            ax.step(front["cost"], 100 * front["score"], where="post", color="black", lw=1, zorder=2, label="frontier")
            ax.scatter(front["cost"], 100 * front["score"], s=110, facecolors="none", edgecolors="black", zorder=4)
            labels = [ax.annotate(_point_label(r), (r.cost, 100 * r.score), textcoords="offset points", xytext=(5, 4),
                                  fontsize=7) for r in pts.itertuples()]  # fmt: skip
            axis = pts["cost_axis"].iloc[0]
            whole = report.settings.pareto_cost == "all"
            ax.set_xlabel(
                ("$ per example (inference, judging, one-off)" if whole else "inference $ per example")
                if axis == "usd"
                else "tokens per example (priced and unpriced models mixed)"
                if axis == "tokens (mixed)"
                else "tokens per example (all models $0)"
            )
            ax.set_ylabel(f"{pts['split'].iloc[0]} score %")
            ax.set_title(f"{task} ({run_id})" if several else task)
            ax.grid(alpha=0.3)
            ax.margins(x=0.35, y=0.12)  # room for the point labels, which are written to the right
            low, high = ax.get_xlim()
            ax.set_xlim(max(low, -0.03 * high), high)  # no negative costs on the axis
            # beside the panel, never over a point or an interval
            ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
            _separate(fig, labels)
        return _drawn(fig, fmt, tight=True)  # the legend beside the panel is kept in the picture


def _separate(fig, labels: list, step: float = 8.0, rounds: int = 40) -> None:
    """Move point labels up, a few points at a time, until none overlaps another (labels of
    points at the same cost and score would otherwise print on top of each other)."""
    renderer = fig.canvas.get_renderer()
    for _ in range(rounds):
        boxes = [label.get_window_extent(renderer) for label in labels]
        moved = False
        for i, label in enumerate(labels):
            if any(boxes[i].overlaps(boxes[j]) for j in range(i)):
                x, y = label.xyann
                label.xyann = (x, y + step)
                boxes[i] = label.get_window_extent(renderer)
                moved = True
        if not moved:
            return


def forest_figure(report: Report, fmt: str = "svg", paper: bool = False) -> bytes | None:
    """The leaderboard as a forest plot: per task, each model's baseline and ceiling test score
    with its 95% interval on one axis; None without a leaderboard."""
    rows = [r for r in report.leaderboard if r.ceiling_score is not None or r.baseline_score is not None]
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = sorted({(r.run_id, r.task) for r in rows})
    several = len({run for run, _ in panels}) > 1
    height = max(2.2, 0.9 + 0.55 * max(sum((r.run_id, r.task) == p for r in rows) for p in panels))
    with plt.rc_context(_style(paper)):
        fig, axes = plt.subplots(1, len(panels), figsize=(3.4 * len(panels), 0.8 * height) if paper else
                                 (5.6 * len(panels), height), squeeze=False)  # fmt: skip
        for ax, (run_id, task) in zip(axes[0], panels, strict=True):
            mine = [r for r in rows if (r.run_id, r.task) == (run_id, task)]
            for y, r in enumerate(mine):
                for score, low, high, dy, colour, label in (
                    (r.baseline_score, r.baseline_ci_low, r.baseline_ci_high, 0.15, "#888888", "baseline"),
                    (r.ceiling_score, r.ceiling_ci_low, r.ceiling_ci_high, -0.15, "#1f5fa8", "ceiling"),
                ):
                    if score is None:
                        continue
                    ax.plot([100 * (low if low is not None else score), 100 * (high if high is not None else score)],
                            [y + dy, y + dy], color=colour, lw=1.6)  # fmt: skip
                    ax.scatter([100 * score], [y + dy], color=colour, s=26, zorder=3, label=label if y == 0 else None)
            ax.set_yticks(range(len(mine)), [short(r.model) for r in mine])
            ax.set_ylim(-0.6, len(mine) - 0.4)
            ax.invert_yaxis()
            ax.set_xlim(0, 100)
            ax.set_xlabel("test score % (95% interval)")
            ax.set_title(f"{task} ({run_id})" if several else task)
            ax.grid(axis="x", alpha=0.3)
            ax.legend(fontsize=7, loc="lower right")
        return _drawn(fig, fmt)


def anytime_figure(report: Report, fmt: str = "svg", paper: bool = False) -> bytes | None:
    """A search's anytime curve: per (model, task) panel, the val score of the config it would
    have chosen against the LM calls spent so far, one line per optimizer (* = the whole search)."""
    rows = report.anytime
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = sorted({(r.run_id, r.model, r.task) for r in rows})
    with plt.rc_context(_style(paper)):
        fig, axes = plt.subplots(1, len(panels), figsize=(3.4 * len(panels), 2.4) if paper else
                                 (5.6 * len(panels), 3.6), squeeze=False)  # fmt: skip
        for ax, (run_id, model, task) in zip(axes[0], panels, strict=True):
            mine = [r for r in rows if (r.run_id, r.model, r.task) == (run_id, model, task) and r.val_score is not None]
            for optimizer in sorted({r.optimizer for r in mine}):
                line = sorted((r for r in mine if r.optimizer == optimizer), key=lambda r: r.step)
                ax.step([r.lm_calls for r in line], [100 * r.val_score for r in line], where="post",
                        label="whole search" if optimizer == "*" else optimizer, lw=1.4)  # fmt: skip
            ax.set_xlabel("LM calls spent so far")
            ax.set_ylabel("val score % of the choice")
            ax.set_title(f"{task} · {short(model)}")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7, loc="lower right")
        return _drawn(fig, fmt)


FIGURES = {"forest": forest_figure, "pareto": pareto_figure, "anytime": anytime_figure}


def _drawn(fig, fmt: str, tight: bool = False) -> bytes:
    """A finished figure as bytes of `fmt`, with no creation time; the figure is closed."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=110, metadata=_no_date(fmt), bbox_inches="tight" if tight else None)
    plt.close(fig)
    return buf.getvalue()


def _style(paper: bool) -> dict:
    """Text kept as text in SVG and PDF (searchable, editable), stable ids; a paper's small type."""
    return {"svg.fonttype": "none", "svg.hashsalt": "promptopt", "pdf.fonttype": 42, "font.size": 7 if paper else 8}


def _no_date(fmt: str) -> dict | None:
    """Figures hold no creation time: the same report draws the same bytes."""
    return {"Date": None} if fmt == "svg" else {"CreationDate": None} if fmt == "pdf" else None


def _point_label(r) -> str:
    opt = "" if r.optimizer == "none" else f"+{r.optimizer}"
    return f"{short(r.model)}: {r.strategy}{opt}"


def inline_svg(svg: bytes) -> str:
    """matplotlib's SVG as an element to place in HTML: no XML prolog, DTD, metadata or namespace URLs."""
    text = svg.decode()
    text = text[text.index("<svg") :]
    text = re.sub(r"<metadata>.*?</metadata>", "", text, flags=re.S)
    return re.sub(r'\s+xmlns(:\w+)?="[^"]*"', "", text)


_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:24px;color:#1b1b1b}p,.note{max-width:1100px}
h1{font-size:22px}h2{font-size:17px;margin-top:28px}
table{border-collapse:collapse;margin:8px 0;font-size:13px}
th,td{border:1px solid #ccc;padding:3px 8px;text-align:left;white-space:nowrap}
th{background:#eef1f5;cursor:pointer;user-select:none}th:hover{background:#dde3ea}
th.asc::after{content:" ▲"}th.desc::after{content:" ▼"}
tr:nth-child(even) td{background:#fafafa}.note{color:#555;max-width:1100px}
.warn{background:#fff3cd;border:1px solid #e0c36a;padding:6px 10px}
.better,.win,.real{color:#0a7a2f;font-weight:600}.worse,.loss{color:#b00020;font-weight:600}
figure{margin:8px 0}svg{max-width:100%;height:auto}.scroll{overflow-x:auto;max-width:100%}
"""

# Click a header to sort its table by that column; numbers (the leading figure of a cell) sort
# numerically, other text alphabetically; a second click reverses.
_JS = """
document.querySelectorAll("table.sortable th").forEach(function(th, col){
  th.addEventListener("click", function(){
    var table = th.closest("table"), body = table.tBodies[0];
    var asc = !th.classList.contains("asc");
    table.querySelectorAll("th").forEach(function(h){ h.classList.remove("asc", "desc"); });
    th.classList.add(asc ? "asc" : "desc");
    var key = function(tr){ var t = tr.cells[th.cellIndex].textContent.trim();
      var n = parseFloat(t.replace("\u2212", "-")); return isNaN(n) ? t.toLowerCase() : n; };
    Array.from(body.rows).sort(function(a, b){
      var x = key(a), y = key(b);
      var c = (typeof x === typeof y) ? (x < y ? -1 : x > y ? 1 : 0) : (typeof x === "number" ? -1 : 1);
      return asc ? c : -c;
    }).forEach(function(tr){ body.appendChild(tr); });
  });
});
"""


def render_html(report: Report, title: str = "promptopt report") -> str:
    """One self-contained page: inline styles, inline SVG plot, inline sorting script, no URL at all."""
    esc = html.escape
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{esc(title)}</title>"
             f"<style>{_CSS}</style></head><body><h1>{esc(title)}</h1>"]  # fmt: skip
    for w in report.warnings:
        parts.append(f"<p class='warn'>WARNING: {esc(w)}</p>")
    settings = report.settings
    parts.append(
        f"<p class='note'>95% intervals: Wilson for accuracy, paired bootstrap over items for differences "
        f"({settings.bootstrap_resamples} resamples, seed {settings.seed}). Built from the "
        "results store alone; per-example drill-down: <code>promptopt report RUN --format examples</code>.</p>"
    )
    figure, forest, anytime = pareto_figure(report, "svg"), forest_figure(report, "svg"), anytime_figure(report, "svg")
    shown_forest = False
    for section in sections(report):
        parts.append(_html_table(section))
        if figure and section.title.startswith("Pareto"):
            parts.append(f"<figure>{inline_svg(figure)}</figure>")
        if anytime and section.title.startswith("Anytime"):
            parts.append(f"<figure class='anytime'>{inline_svg(anytime)}</figure>")
        if forest and section.title.startswith("Leaderboard") and not shown_forest:
            parts.append(f"<figure>{inline_svg(forest)}</figure>")  # every task's panel, after the first table
            shown_forest = True
    parts.append(f"<script>{_JS}</script></body></html>\n")
    return "\n".join(parts)


def _html_table(section: Section) -> str:
    esc = html.escape
    head = "".join(f"<th>{esc(h)}</th>" for h in section.headers)
    rows = []
    for row in section.body:
        cells = "".join(
            f"<td class='{esc(c.replace(' ', '-'))}'>{esc(c)}</td>"
            if c in ("better", "worse", "win", "loss", "real")
            else f"<td>{esc(c)}</td>"
            for c in row
        )
        rows.append(f"<tr>{cells}</tr>")
    note = f"<p class='note'>{esc(section.note)}</p>" if section.note else ""
    return (
        f"<h2>{esc(section.title)}</h2><div class='scroll'><table class='sortable'><thead><tr>{head}</tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table></div>{note}"
    )


def load(source: str, run_id: str | None = None) -> tuple[pd.DataFrame, pd.DataFrame, list[str], list[dict]]:
    """Records, compile costs, warnings (overlap, early stop) and runs (id, status, created) of a
    run folder or storage URL (every run in it, or `run_id`'s)."""
    store, found = open_source(source)
    known = store.runs()
    if run_id and run_id not in set(known.run_id):
        listed = ", ".join(known.run_id) or "none"
        raise UserError(f"The store at {source} has no run {run_id!r}; its runs are: {listed}.")
    run_id = run_id or found
    statuses = store.statuses()
    runs = [
        {"run_id": r.run_id, "created_at": r.created_at, **statuses.get(r.run_id, {})}
        for r in known.itertuples()
        if run_id is None or r.run_id == run_id
    ]
    records = store.records(run_id)
    from promptopt import __version__

    newer = store.newer_version(__version__)
    warnings = [f"this store was written by promptopt {newer}, newer than this {__version__}: what that version added "
                "is not shown"] if newer else []  # fmt: skip
    warnings += overlap_warnings(store, run_id) + stop_warnings(store, run_id) + context_warnings(records)
    warnings += mismatches(store.manifests(run_id))
    return records, store.compile_costs(run_id), warnings, runs


def report(
    source: str, *, b: int = 10_000, seed: int = 0, local_usd_per_mtok: float = 0.0, local_usd_per_hour: float = 0.0,
    run_id: str | None = None,
    equivalence_margin: float | None = None, pareto_cost: str = "inference", alpha: float = stats.ALPHA,
) -> Report:
    """The typed report of a run folder or storage URL (every run in it, or `run_id`'s), with the
    store's own warnings (overlap, early stops) first."""
    records, compiles, warnings, runs = load(source, run_id)
    store, found = open_source(source)
    names = {"choices", *(name for section in registered() for name in section.reads)}
    tables = {name: store.table(name, run_id or found) for name in sorted(names)}
    if equivalence_margin is not None and not 0 < equivalence_margin < 1:
        raise UserError(f"The equivalence margin is a share between 0 and 1 (0.02 for 2 points), not {equivalence_margin}.")
    if not 0 < alpha < 0.5:
        raise UserError(f"The test level alpha is a probability between 0 and 0.5 (0.05 for 5%), not {alpha:g}.")
    if pareto_cost not in PARETO_COSTS:
        raise UserError(f"Unknown Pareto cost (--pareto-cost) {pareto_cost!r}; valid: inference (the task model's calls) or all "
                        "(also judging, compiles and preparation).")  # fmt: skip
    built = build(records, compiles, b=b, seed=seed, local_usd_per_mtok=local_usd_per_mtok,
                  local_usd_per_hour=local_usd_per_hour, runs=runs,
                  tables=tables, equivalence_margin=equivalence_margin, pareto_cost=pareto_cost,
                  alpha=alpha)  # fmt: skip
    built.warnings = warnings + built.warnings
    return built


def check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise UserError(f"Unknown report format {fmt!r}; valid formats are {', '.join(FORMATS)}.")


def examples_csv(source: str, run_id: str | None = None) -> str:
    """One CSV line per scored example: the drill-down behind every figure."""
    records, *_ = load(source, run_id)
    return records.reindex(columns=EXAMPLE_FIELDS).to_csv(index=False)


def save(built: Report, fmt: str, output: Path, figures: str | None = None) -> list[Path]:
    """Write a built report to `output` (md and html: the Pareto plot beside it; `figures` pdf or
    svg: the forest, Pareto and anytime figures too, styled for a paper); every path written."""
    output.parent.mkdir(parents=True, exist_ok=True)  # a new folder for the report is made, as for run folders
    written = []
    figure_name = None
    if fmt in ("md", "html") and built.pareto:
        for ext in ("png", "svg"):
            path = output.with_name(f"{output.stem}.pareto.{ext}")
            path.write_bytes(pareto_figure(built, ext))
            written.append(path)
        figure_name = written[-1].name
    output.write_text(render_report(built, fmt, figure_name=figure_name))
    for name, draw in FIGURES.items() if figures else ():  # vector figures for a paper, beside the report
        drawn = draw(built, figures, paper=True)
        if drawn is not None:
            path = output.with_name(f"{output.stem}.{name}.{figures}")
            path.write_bytes(drawn)
            written.append(path)
    return [output, *written]


def render_report(report: Report, fmt: str, figure_name: str | None = None) -> str:
    if fmt == "json":
        return report.to_json()
    if fmt == "csv":
        return pd.DataFrame([r.model_dump() for r in report.rows], columns=ROW_FIELDS).to_csv(index=False)
    if fmt == "html":
        return render_html(report)
    if fmt == "latex":
        from promptopt.latex import render_latex

        return render_latex(report)
    warn = "".join(f"WARNING: {w}\n\n" for w in report.warnings)
    return warn + render_text(report, markdown=fmt == "md", figure=figure_name)


def overlap_warnings(store: Store, run_id: str | None) -> list[str]:
    """One sentence per task a run scored although its demo pools overlap its test set."""
    runs = store.runs()
    plans = runs[runs.run_id == run_id].plan if run_id else runs.plan
    out = []
    for plan in plans:
        for task, o in json.loads(plan).get("overlap", {}).items():
            out.append(
                f"task {task} ran with --allow-overlap: {o['test_examples']} test examples duplicate or nearly "
                f"duplicate train/val examples (e.g. {', '.join(o['examples'])}); its scores may be inflated."
            )
    return out


def context_warnings(records: pd.DataFrame) -> list[str]:
    """One sentence per config whose prompts were too long for the model on some items (recorded
    as errors of their own kind: left out of scores, never asked again)."""
    from promptopt.errors import CONTEXT_ERROR

    if records.empty or "error" not in records:
        return []
    long = records[records["error"].fillna("").str.startswith(CONTEXT_ERROR)]
    return [
        f"{display(model)} · {task} · {config}: {len(g)} prompts were longer than the model's context window (not "
        "scored, not asked again); fewer or shorter demos, or a model with a longer window, would answer them"
        for (model, task, config), g in long.groupby(["model", "task", "config_id"], sort=True)
    ]


def stop_warnings(store: Store, run_id: str | None) -> list[str]:
    """One sentence per run whose last invocation stopped early (budget reached, too many errors)."""
    return [f"run {rid} is incomplete: {reason}" for rid, reason in sorted(store.stop_reasons(run_id).items())]
