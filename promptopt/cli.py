"""The `promptopt` command: a thin skin over the library API.

Errors users can fix print one sentence on stderr and exit 1; `--debug` shows the traceback.
"""

from __future__ import annotations

import contextlib
import errno
import shutil
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Literal

import typer

from promptopt import _env  # noqa: F401
from promptopt.errors import UserError

# Options of several commands beside run's and search's (those are declared in promptopt.options).
ProgramsDir = Annotated[
    list[Path] | None,
    typer.Option("--programs-dir", help="Folder of user strategies, optimizers and answer types (Python files)."),
]
SweepArg = Annotated[
    Path | None, typer.Argument(help="Sweep YAML: models, tasks, strategies, optimizers and settings (flags win).")
]
ApiKeyFile = Annotated[
    Path | None, typer.Option(help="File holding the provider's API key (read into its env variable, never stored).")
]
app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Find each model's prompt ceiling on a task.",
)
tasks_app = typer.Typer(no_args_is_help=True, help="Bundled and user tasks.")
strategies_app = typer.Typer(no_args_is_help=True, help="Strategy programs.")
models_app = typer.Typer(no_args_is_help=True, help="Model connectivity.")
app.add_typer(tasks_app, name="tasks")
app.add_typer(strategies_app, name="strategies")
app.add_typer(models_app, name="models")

_debug = False


@app.callback()
def _options(debug: Annotated[bool, typer.Option(help="Show tracebacks for errors.")] = False) -> None:
    global _debug
    _debug = debug


class _ProgressPrinter:
    """One line per unit of work, refreshed in place on a terminal, every 15 s otherwise."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.last = 0.0
        self.label = ""

    def __call__(self, p) -> None:
        from promptopt.scoring import Note

        if isinstance(p, Note):
            if self.tty and self.label:
                sys.stderr.write("\n")
            self.label = ""
            sys.stderr.write(p.text + "\n")
            sys.stderr.flush()
            return
        now = time.monotonic()
        final = p.done >= p.total
        if not final and p.label == self.label and now - self.last < (0.5 if self.tty else 15):
            return
        if p.label != self.label and self.label and self.tty:
            sys.stderr.write("\n")
        self.label, self.last = p.label, now
        rate = p.elapsed_s / max(1, p.done) if p.elapsed_s else 0
        left = rate * (p.total - p.done)
        line = (
            f"{p.label}: {p.done}/{p.total} · {p.elapsed_s:5.0f}s elapsed · ~{left:.0f}s left · "
            f"{p.lm_calls} LM calls · ${p.cost_usd:.4f}" + (f" · {p.errors} errors" if p.errors else "")
        )
        if self.tty:  # one terminal row, rewritten in place: a wrapped line could not be
            import shutil

            width = shutil.get_terminal_size().columns - 1
            line = line if len(line) <= width else line[: width - 1] + "…"
            sys.stderr.write("\r\x1b[K" + line + ("\n" if final else ""))
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()


def _annotation(option, mode: str):
    """A promptopt.options.Option as a typer parameter: its flag, bounds and help; None when not
    given, so that a sweep file's value or the mode's default applies."""
    kind = option.kind
    inner = getattr(kind, "__args__", (None,))[0] if option.repeatable else kind
    extra: dict = {}
    if getattr(inner, "__origin__", None) is Literal:  # a choice: checked by the plan, in one sentence
        kind = list[str] if option.repeatable else str
    if option.ge is not None or option.gt is not None:  # a strict bound is checked by the plan, in one sentence
        extra["min"] = option.ge if option.ge is not None else option.gt
    if option.le is not None:
        extra["max"] = option.le
    flag = option.cli_flag
    if kind is bool:
        flag = f"{flag}/--no-{flag.removeprefix('--')}"
    help_text = option.help + option.described_default(mode)
    return Annotated[kind | None, typer.Option(flag, help=help_text, **extra)]


def with_options(mode: str, only: tuple[str, ...] | None = None):
    """Declare every promptopt.options option of `mode` (or the `only` ones) on a command, which
    takes them as **options, beside its own parameters: run and search list one set, declared once."""
    import inspect

    from promptopt.options import BY_NAME, for_mode

    def decorate(command):
        sig = inspect.signature(command, eval_str=True)
        own = [p for p in sig.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
        extra = [
            inspect.Parameter(o.name, inspect.Parameter.KEYWORD_ONLY, annotation=_annotation(o, mode), default=None)
            for o in ([BY_NAME[n] for n in only] if only else for_mode(mode))
        ]
        command.__signature__ = sig.replace(parameters=[*own, *extra])
        command.__annotations__ = {**command.__annotations__, **{p.name: p.annotation for p in extra}}
        return command

    return decorate


@app.command()
@with_options("run")
def run(
    sweep: SweepArg = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the plan and its estimated cost; call nothing.")
    ] = False,
    api_key_file: ApiKeyFile = None,
    **options,
) -> None:
    """Evaluate models × tasks × strategies (× optimizers) on val and test, store records, print the table.

    Optimizers compile on train (selecting on val); the fixed baseline and each compiled
    strategy's zero-shot version are always scored too, as references."""
    _start("run", options | {"sweep": sweep}, api_key_file, dry_run)


def _start(mode: str, options: dict, api_key_file: Path | None, dry_run: bool) -> None:
    """run and search alike: the key file read, the plan estimated or executed, its report printed."""
    import promptopt

    if api_key_file:
        from promptopt.models import use_api_key_file

        the_plan = promptopt.plan(mode, **options)
        use_api_key_file(str(api_key_file), the_plan.models, the_plan.api_base)
        if the_plan.judge_models:
            use_api_key_file(str(api_key_file), the_plan.judge_models, the_plan.judge_api_base)
    if dry_run:
        _print_dry_run(promptopt.estimate(mode, **options))
        return
    _quiet_dspy()
    with _resumable():
        if mode == "search":
            log = promptopt.search(_ProgressPrinter(), **options)
        else:
            log = promptopt.run(_ProgressPrinter(), **options)
    show_report(log.report)
    width = _width(sys.stderr)
    for line in closing_summary(log):
        typer.echo(_wrapped(line, width, "      ") if line.strip() else line, err=True)
    typer.echo(f"Run folder: {log.run_dir}")


def _print_dry_run(estimates: list[dict]) -> None:
    """The plan's rows as a table like the report's (knobs named, numbers with separators, the
    wall time where the model declares its speed), then one line of totals."""
    from promptopt.tables import Section

    def num(x) -> str:
        return "?" if x is None else f"{x:,.0f}"

    def usd(x) -> str:
        return "?" if x is None else f"${x:.4f}"

    def took(s) -> str:
        if s is None:
            return "?"
        return f"{s / 3600:,.1f} h" if s >= 5400 else f"{s / 60:.0f} min" if s >= 60 else f"{s:.0f} s"

    phased = any("phase" in r for r in estimates)
    headers = ["model", "task", *(["phase"] if phased else []), "config", "calls", "compile", "scoring",
               "prompt tok", "completion tok", "cost", "time"]  # fmt: skip
    body = [[r["model"].split("#")[0], r["task"], *([r["phase"]] if phased else []), r["config"], num(r["calls"]),
             num(r["compile_calls"]), num(r["eval_calls"]), f"~{num(r['prompt_tokens'])}",
             f"~{num(r['completion_tokens'])}", usd(r["cost_usd"]), took(r["seconds"])]
            for r in estimates]  # fmt: skip
    total = {k: sum(r[k] for r in estimates) for k in ("calls", "compile_calls", "eval_calls", "prompt_tokens",
                                                        "completion_tokens")}  # fmt: skip
    costs, times = [r["cost_usd"] for r in estimates], [r["seconds"] for r in estimates]
    cost = usd(sum(costs)) if None not in costs else "unknown (no price for some model)"
    wall = (f"about {took(sum(times))} at the models' declared speed (one request at a time)" if None not in times
            else "time unknown (no declared speed for some model)")  # fmt: skip
    _show_sections([Section("Dry run: what the plan will spend", headers, body)], [])
    line = (f"Total: {total['calls']:,} LM calls ({total['compile_calls']:,} compiling, {total['eval_calls']:,} "
            f"scoring), ~{total['prompt_tokens']:,} prompt + ~{total['completion_tokens']:,} completion tokens, cost "
            f"{cost}, {wall}. Nothing was called (--dry-run).")  # fmt: skip
    typer.echo(_wrapped(line, _width(sys.stdout)))


def _width(stream) -> int:
    """The terminal's width for text wrapped to it; pipes and files get unwrapped lines."""
    import shutil

    return shutil.get_terminal_size().columns if stream.isatty() else 10_000


@app.command()
@with_options("search")
def search(
    sweep: SweepArg = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the most the search can cost (nothing dropped); call nothing.")
    ] = False,
    api_key_file: ApiKeyFile = None,
    **options,
) -> None:
    """Search each model's ceiling config: an Optuna study on val whose choice is within --epsilon
    of the best (probability 1 - --delta) and the cheapest such, then the choice and the baseline
    on test. Run the same command again to resume; point workers at one --storage to share."""
    _start("search", options | {"sweep": sweep}, api_key_file, dry_run)


# Options of a run that compile and evaluate take too (declared once, in promptopt.options).
_BENCH_OPTIONS = ("threads", "tasks_dirs", "max_calls", "max_cost", "max_error_rate", "judge_models", "judge_api_base",
                  "min_judge_kappa", "batch")  # fmt: skip


@app.command("compile")
@with_options("run", only=_BENCH_OPTIONS)
def compile_cmd(
    model: Annotated[str, typer.Option(help="LiteLLM model string.")],
    task: Annotated[str, typer.Option(help="Task name or YAML path.")],
    strategy: Annotated[str, typer.Option(help="Strategy, optionally with knobs: name:key=value,...")],
    out: Annotated[Path, typer.Option(help="Program folder to write.")],
    optimizer: Annotated[str, typer.Option(help="Optimizer, optionally with knobs.")] = "bootstrap",
    api_base: Annotated[str | None, typer.Option(help="OpenAI-compatible endpoint for the model.")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Val examples to score the compiled program on.")] = None,
    runs: Annotated[Path, typer.Option(help="Folder that holds run folders.")] = Path("results"),
    programs_dir: ProgramsDir = None,
    **options,
) -> None:
    """Compile one config for one model and task, score it on val, and save it as a program folder."""
    import promptopt

    _quiet_dspy()
    with _resumable():
        val = promptopt.compile(
            model, task, strategy, out, optimizer, api_base=api_base, limit=limit, runs=runs,
            programs_dirs=programs_dir, on_event=_ProgressPrinter(), **options,
        )  # fmt: skip
    accuracy = "—" if val is None else f"{100 * val.score:.1f}%"
    typer.echo(f"Saved program to {out} (val accuracy {accuracy} on {val.n if val else 0} answered).")
    lines = [f"  {val.errors} val examples failed after retries and are left out of that score; run the same command "
             "again to retry them."] if val is not None and val.errors else []  # fmt: skip
    lines.append(f"  Next: promptopt evaluate {out} --split test · in Python: promptopt.load({str(out)!r})")
    width = _width(sys.stderr)
    for line in lines:
        typer.echo(_wrapped(line, width, "      "), err=True)


@app.command("evaluate")
@with_options("run", only=_BENCH_OPTIONS)
def evaluate_cmd(
    program: Annotated[Path, typer.Argument(help="Program folder (from compile or a run's programs/).")],
    split: Annotated[str, typer.Option(help="val or test.")] = "test",
    limit: Annotated[int | None, typer.Option(min=1, help="Examples to score.")] = None,
    model: Annotated[str | None, typer.Option(help="Model to bind instead of the compiled one.")] = None,
    api_base: Annotated[str | None, typer.Option(help="OpenAI-compatible endpoint for the model.")] = None,
    programs_dir: Annotated[
        Path | None,
        typer.Option("--programs-dir", help="Folder of the user strategy the program was built from (its code runs)."),
    ] = None,
    **options,
) -> None:
    """Score a saved program on a split of its task and print its score with a 95% CI (a judged
    task is graded by its judge, validated first; --max-calls and --max-cost stop it cleanly)."""
    import promptopt

    _quiet_dspy()
    with _resumable():
        row = promptopt.evaluate(
            program, split, limit, model=model, api_base=api_base, programs_dir=programs_dir,
            on_event=_ProgressPrinter(), **options,
        )  # fmt: skip
    typer.echo(
        f"{program} on {split}: accuracy {100 * row.score:.1f}% [{100 * row.ci_low:.1f}, {100 * row.ci_high:.1f}] "
        f"(n={row.n} answered), parse failures {100 * row.parse_failure_rate:.1f}%, errors "
        f"{100 * row.error_rate:.1f}% ({row.errors} of {row.n_items}, not counted as wrong), "
        f"{row.lm_calls} LM calls, ${row.cost_usd:.4f}."
    )
    from promptopt.store import sqlite_url

    store = sqlite_url(program / "evaluations.sqlite")
    lines = [f"  {row.errors} examples failed after retries and are left out of the score; run the same command "
             "again to retry them."] if row.errors else []  # fmt: skip
    lines.append(f"  Next: promptopt report {store} --run {row.run_id} · promptopt view {store}")
    width = _width(sys.stderr)
    for line in lines:
        typer.echo(_wrapped(line, width, "      "), err=True)


@app.command("view")
def view_cmd(
    source: Annotated[str, typer.Argument(help="Run folder or SQLAlchemy storage URL.")],
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port on 127.0.0.1.")] = 8765,
) -> None:
    """A local web viewer of a store: leaderboard and plots, every example, two configs side by side."""
    from promptopt.reports import open_source
    from promptopt.viewer import serve

    open_source(source)  # a bad source is one sentence before the server starts
    serve(source, port=port, on_ready=lambda line: typer.echo(line, err=True))


@app.command("import")
def import_cmd(
    logs: Annotated[list[Path], typer.Argument(help="Inspect eval logs (.eval/.json, or folders of them) or "
                                                     "lm-evaluation-harness output folders / samples_*.jsonl files.")],
    out: Annotated[Path, typer.Option(help="Folder for the run folder.")] = Path("results"),
    storage: Annotated[str | None, typer.Option(help="SQLAlchemy URL instead of the run folder's SQLite file.")] = None,
) -> None:
    """Read other tools' per-sample logs into a store as one run, so reports and the viewer apply."""
    from promptopt.importers import import_logs

    run_dir = import_logs(logs, out=out, storage=storage, on_event=lambda line: typer.echo(line, err=True))
    typer.echo(f"Run folder: {run_dir}")


@app.command("report")
def report_cmd(
    source: Annotated[str, typer.Argument(help="Run folder or SQLAlchemy storage URL.")],
    format: Annotated[
        str, typer.Option("--format", help="text, md, html, csv, json, latex, or examples (one CSV line per example).")
    ] = "text",
    output: Annotated[
        Path | None, typer.Option(help="Write to this file instead of stdout (md, html: plots beside it).")
    ] = None,
    bootstrap: Annotated[int, typer.Option(min=100, help="Bootstrap resamples for intervals.")] = 10_000,
    seed: Annotated[int, typer.Option(help="Bootstrap seed.")] = 0,
    local_price: Annotated[
        float, typer.Option(help="USD per million tokens for models without a price (local ones).")
    ] = 0.0,
    local_price_per_hour: Annotated[
        float, typer.Option(help="USD per hour of wall time for models without a price (a rented GPU): the time "
                                 "their calls ran, overlapping calls counted once.")
    ] = 0.0,
    run: Annotated[
        str | None, typer.Option("--run", help="Report this run of a shared store (default: every run, each apart).")
    ] = None,
    equivalence_margin: Annotated[
        float | None,
        typer.Option(help="Points: head-to-head also says whether each pair is equivalent within this margin (TOST)."),
    ] = None,
    figures: Annotated[
        str | None, typer.Option(help="pdf or svg: also write the forest, Pareto and anytime figures beside --output.")
    ] = None,
    pareto_cost: Annotated[
        str, typer.Option(help="inference (the task model's calls) or all (also judging, compiles and preparation, "
                               "spread over the examples) as the Pareto frontier's cost.")
    ] = "inference",
    alpha: Annotated[
        float, typer.Option(help="Test level of the verdicts (Holm-corrected), detectable differences and TOST.")
    ] = 0.05,
    wide: Annotated[
        bool, typer.Option(help="On a terminal, keep model names whole and every column in its table (stacked when too wide).")
    ] = False,
) -> None:
    """Leaderboard, ceilings, head-to-head, flips, sensitivity, costs and Pareto frontier, from the store alone."""
    import promptopt
    from promptopt import reports

    if figures is not None and (figures not in ("pdf", "svg") or output is None):
        raise UserError(f"--figures is pdf or svg and needs --output (the figures go beside it), not {figures!r}"
                        + ("" if output else " without --output") + ".")  # fmt: skip
    if format == "examples":
        text = reports.examples_csv(source, run)
    else:
        reports.check_format(format)
        if equivalence_margin is not None and not 0 < equivalence_margin < 100:
            raise UserError(f"--equivalence-margin is in points, between 0 and 100, not {equivalence_margin:g}.")
        built = promptopt.report(source, run_id=run, bootstrap=bootstrap, seed=seed, local_price=local_price,
                                 local_price_per_hour=local_price_per_hour,
                                 equivalence_margin=None if equivalence_margin is None else equivalence_margin / 100,
                                 pareto_cost=pareto_cost, alpha=alpha)  # fmt: skip
        if format == "csv":  # a CSV holds rows only: what a reader must know goes to stderr
            for warning in built.warnings:
                typer.echo(f"WARNING: {warning}", err=True)
    if output:
        if output.is_dir():
            raise UserError(
                f"Report output {output} is a folder; give a file path, e.g. {output / ('report.' + format)}."
            )
        paths = [output] if format == "examples" else reports.save(built, format, output, figures)
        if format == "examples":
            output.parent.mkdir(parents=True, exist_ok=True)
            output.write_text(text)
        for path in paths:
            typer.echo(f"Wrote {path}")
    elif format == "text":
        show_report(built, wide)
    else:
        typer.echo(text if format == "examples" else reports.render_report(built, format), nl=False)


@app.command("export")
def export_cmd(
    source: Annotated[str, typer.Argument(help="Run folder or SQLAlchemy storage URL.")],
    to: Annotated[Path, typer.Option("--to", help="The bundle to write (a .zip file).")],
    run: Annotated[str | None, typer.Option("--run", help="Export this run of a shared store (default: every run).")] = None,
    tasks_dir: Annotated[list[Path] | None, typer.Option("--tasks-dir", help=_TASKS_DIR_HELP)] = None,
) -> None:
    """One bundle a reader can check: manifest (versions, models, tasks' digests and split ids), records as sent, report."""
    from promptopt.bundle import export

    path = export(source, to, run, tasks_dirs=tasks_dir)
    typer.echo(f"Wrote {path} ({path.stat().st_size:,} bytes); check it with: promptopt reproduce {path}")


@app.command("reproduce")
def reproduce_cmd(
    bundle: Annotated[Path, typer.Argument(help="A bundle made by promptopt export.")],
    out: Annotated[Path | None, typer.Option(help="Folder for the rebuilt store (default: results/reproduced/...).")] = None,
    rerun: Annotated[int | None, typer.Option(min=1, help="Also re-ask N items per config of the named models.")] = None,
    seed: Annotated[int, typer.Option(help="Which items --rerun re-asks.")] = 0,
    api_base: Annotated[str | None, typer.Option(help="Endpoint for --rerun instead of the bundle's.")] = None,
    max_calls: Annotated[int | None, typer.Option(min=1, help="Stop --rerun after this many LM calls.")] = None,
    max_cost: Annotated[float | None, typer.Option(min=0, help="Stop --rerun after this many USD.")] = None,
    threads: Annotated[int | None, typer.Option(min=1, help="Parallel calls for --rerun.")] = None,
    dry_run: Annotated[bool, typer.Option(help="Say what --rerun would ask and cost, and ask nothing.")] = False,
    tasks_dir: Annotated[list[Path] | None, typer.Option("--tasks-dir", help=_TASKS_DIR_HELP)] = None,
) -> None:
    """Rebuild a bundle's store, re-derive its report and list every difference; --rerun N asks the models again."""
    from promptopt.bundle import reproduce

    done = reproduce(bundle, out, tasks_dirs=tasks_dir)
    typer.echo(f"Rebuilt the store in {done.run_dir}.")
    for task, state in done.tasks.items():
        typer.echo(f"Task {task}: {state}.")
    if done.differences:
        typer.echo(f"{len(done.differences)} differences from the bundle's report:")
        for line in done.differences:
            typer.echo(f"  {line}")
    else:
        typer.echo("0 differences: every table and figure of the bundle's report was derived again from its records.")
    if rerun:
        from promptopt.bundle import rerun as rerun_bundle

        drifts = rerun_bundle(bundle, rerun, seed=seed, out=done.run_dir / "rerun", api_base=api_base,
                              max_calls=max_calls, max_cost=max_cost, threads=threads, dry_run=dry_run,
                              tasks_dirs=tasks_dir, on_progress=_ProgressPrinter())  # fmt: skip
        _print_drifts(drifts, dry_run)
    if done.differences:
        raise typer.Exit(1)


def _print_drifts(drifts: list, dry_run: bool) -> None:
    """Per config re-asked: identical answers and the paired difference; a dry run: what it would ask."""
    from promptopt.tables import Section

    def pts(x) -> str:
        return "–" if x is None else f"{100 * x:+.1f}"

    if dry_run:
        body = [[d.run_id, _model_name(d.model), d.task, d.config_id, d.split, f"{d.asked:,}",
                 f"{d.asked * (d.calls_per_item or 0):,.0f}", f"${d.asked * (d.cost_per_item or 0):.4f}"]
                for d in drifts]  # fmt: skip
        _show_sections([Section("Rerun dry run: what --rerun would ask (calls and cost as the bundle's records spent)",
                                ["run", "model", "task", "config", "split", "items", "calls", "cost"], body)], [])  # fmt: skip
        calls = sum(d.asked * (d.calls_per_item or 0) for d in drifts)
        typer.echo(f"Total: ~{calls:,.0f} LM calls, ~${sum(d.asked * (d.cost_per_item or 0) for d in drifts):.4f}. "
                   "Nothing was called (--dry-run).")  # fmt: skip
        return
    body = [[d.run_id, _model_name(d.model), d.task, d.config_id, d.split, f"{d.n}/{d.asked}",
             "–" if d.identical is None else f"{100 * d.identical:.0f}%",
             f"{pts(d.diff)} [{pts(d.ci_low)}, {pts(d.ci_high)}]" if d.ci_low is not None else pts(d.diff),
             str(d.errors), d.skipped or ""] for d in drifts]  # fmt: skip
    _show_sections([Section("Rerun: the same items asked again (now − then, points; interval from 10 items on)",
                            ["run", "model", "task", "config", "split", "paired", "identical", "difference",
                             "errors", "not re-asked"], body)], [])  # fmt: skip


def _model_name(identity: str) -> str:
    """A model's name without its endpoint or weights digest (the run's manifest has both)."""
    return identity.split("#", 1)[0].split("@", 1)[0]


def show_report(report, wide: bool = False) -> None:
    """The text report: on a terminal, its warnings first, then each table compact (see
    _show_sections; `wide`: every column in the table, stacked when it cannot fit); pipes and
    files get exactly `promptopt report --format text`."""
    from promptopt.reports import render_report, sections

    if not sys.stdout.isatty():
        typer.echo(render_report(report, "text"), nl=False)
        return
    from promptopt.tables import display as _display

    _show_sections(sections(report), report.warnings, wide, [_display(r.model) for r in report.rows],
                   [r.run_id for r in report.rows])  # fmt: skip


def _show_sections(parts: list, warnings: list[str], wide: bool = False, models: list[str] | None = None,
                   runs: list[str] | None = None) -> None:  # fmt: skip
    """Warnings, then each table. On a pipe: the plain text report's tables. On a terminal: a
    compact view unless `wide`: `models` (identities) shortened to labels named once in a legend,
    and a table still too wide keeps the columns that fit while the rest of each row goes on an
    indented line under it; every table that fits is a rich table; one that cannot fit even so
    (or with `wide`, any too wide) is stacked "header: value" lines, never folded per character."""
    if not sys.stdout.isatty():
        from promptopt.reports import text_table

        for warning in warnings:
            typer.echo(f"WARNING: {warning}\n")
        typer.echo("\n\n".join(text_table(section) for section in parts))
        return
    from rich.console import Console
    from rich.table import Table

    from promptopt.tables import model_legend, run_legend, shortened, split_columns, table_width

    console = Console(highlight=False)
    for warning in warnings:  # what a reader must know before trusting a number, first
        console.print(_wrapped(f"WARNING: {warning}", console.width), style="bold", markup=False)
    if warnings:
        console.print()
    legend, named = {}, []
    for what, found in () if wide else (("Models", model_legend(models or [])), ("Runs", run_legend(runs or []))):
        legend |= found
        if found:
            named.append(f"{what}: " + " · ".join(f"{label} = {full}" for full, label in sorted(found.items(), key=lambda kv: kv[1])))
    if named:
        console.print("\n".join(_wrapped(line, console.width) for line in named) + "\n", markup=False)
    for section in parts:
        section = shortened(section, legend)
        if table_width(section.headers, section.body) <= console.width:  # the cells, padding and borders
            table = Table(title=section.title, title_justify="left", caption=section.note or None,
                          caption_justify="left", header_style="bold", show_lines=False)  # fmt: skip
            for header in section.headers:
                table.add_column(header, no_wrap=True)
            for row in section.body:
                table.add_row(*[escape_markup(cell) for cell in row])
            console.print(table)
            continue
        kept, rest = ([], []) if wide else split_columns(section, console.width)
        if len(kept) >= 2 and table_width([section.headers[i] for i in kept], [[r[i] for i in kept] for r in section.body]) <= console.width:
            console.print(_with_details(section, kept, rest, console.width) + "\n", markup=False, highlight=False)
        else:
            console.print(_stacked(section, console.width) + "\n", markup=False, highlight=False)


def _with_details(section, kept: list[int], rest: list[int], width: int) -> str:
    """The kept columns as an aligned table; under each row, its other cells on indented lines."""
    widths = [max([len(section.headers[i]), *(len(row[i]) for row in section.body)]) for i in kept]

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    lines = [_wrapped(section.title, width), "=" * min(len(section.title), width),
             line([section.headers[i] for i in kept]), line(["-" * w for w in widths])]  # fmt: skip
    for row in section.body:
        lines.append(line([row[i] for i in kept]))
        details = " · ".join(f"{section.headers[i]}: {row[i]}" for i in rest)
        if details:
            lines.append(_wrapped("    " + details, width, "    "))
    if section.note:
        lines += ["", _wrapped(section.note, width)]
    return "\n".join(lines)


def _stacked(section, width: int) -> str:
    """A table too wide for the terminal as one block per row: its first cells as the block's
    heading, then one "header: value" line per other cell, every line within `width`."""
    lines = [_wrapped(section.title, width), "=" * min(len(section.title), width)]
    head = min(3, len(section.headers))
    for row in section.body:
        lines.append(_wrapped("· " + " · ".join(row[:head]), width))
        lines += [_wrapped(f"    {h}: {cell}", width, "      ") for h, cell in zip(section.headers[head:], row[head:],
                                                                          strict=True)]  # fmt: skip
    if section.note:
        lines += ["", _wrapped(section.note, width)]
    return "\n".join(lines)


def _wrapped(text: str, width: int, indent: str = "  ") -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width=width, subsequent_indent=indent, break_on_hyphens=False, break_long_words=False)) or text


def closing_summary(log) -> list[str]:
    """What a run or search ended with, in a few lines: each ceiling with its interval, what failed
    and what to do about it, calls that came near their timeout, a budget stop, what it cost, and
    where to look next."""
    report = log.report
    lines = ["", f"Done: run {log.run_id} ({log.status})."]
    for c in report.ceilings:
        if c.ceiling_score is None:
            continue
        ci = f"[{100 * c.ceiling_ci_low:.1f}, {100 * c.ceiling_ci_high:.1f}]" if c.ceiling_ci_low is not None else ""
        lines.append(f"  {c.task} · {_model_name(c.model)}: ceiling {100 * c.ceiling_score:.1f}% {ci} "
                     f"(n={c.ceiling_n}, {c.selected_config_id}), baseline "
                     + ("—" if c.baseline_score is None else f"{100 * c.baseline_score:.1f}%"))  # fmt: skip
    records = _records(log)
    failed = sum(r.errors for r in report.rows)
    if failed:
        timed_out = int(records.error.dropna().str.contains("Timeout", regex=False).sum())
        why = (f"; {timed_out} of them timed out after {_timeouts(records)} per call (PROMPTOPT_TIMEOUT_S sets "
               "it)") if timed_out else ""  # fmt: skip
        lines.append(f"  {failed} examples failed after retries and are left out of the scores{why}; run the same "
                     "command again to retry them.")  # fmt: skip
    lines += _near_timeout(records)
    if log.stopped:
        lines.append(f"  {log.stopped}")
    calls = sum(r.lm_calls for r in report.rows)
    cost = sum(r.cost_usd for r in report.rows)
    warned = f", {len(report.warnings)} warnings above" if report.warnings else ""
    lines.append(f"  {calls:,} LM calls scored, ${cost:.4f}{warned}.")
    lines.append(f"  Next: promptopt report {log.run_dir} · promptopt view {log.run_dir} · "
                 f"promptopt export {log.run_dir} --to {log.run_dir.name}.zip")  # fmt: skip
    return lines


def _records(log):
    from promptopt.store import Store

    return Store(log.storage, create=False).records(log.run_id)


def _timeout_of(identity: str) -> float:
    """The per-call timeout in force for a model: PROMPTOPT_TIMEOUT_S, else the model's default."""
    import dataclasses
    import os

    from promptopt.models import LOCAL_MODELS, Model

    if os.environ.get("PROMPTOPT_TIMEOUT_S"):
        with contextlib.suppress(ValueError):
            return float(os.environ["PROMPTOPT_TIMEOUT_S"])
    name = _model_name(identity)
    default = next(f.default for f in dataclasses.fields(Model) if f.name == "timeout_s")
    return float(LOCAL_MODELS.get(name, {}).get("timeout_s", default))


def _timeouts(records) -> str:
    """The timeouts of the models whose calls timed out, as a phrase ("120 s", "600 s for X")."""
    out = records[records.error.fillna("").str.contains("Timeout", regex=False)]
    found = {_model_name(m): _timeout_of(m) for m in sorted(set(out.model))}
    if len(set(found.values())) == 1:
        return f"{next(iter(found.values())):g} s"
    return ", ".join(f"{t:g} s for {m}" for m, t in found.items())


def _near_timeout(records) -> list[str]:
    """One line per model whose answered calls came within half of the timeout: the next run on a
    busier machine will start losing them."""
    if records.empty:
        return []
    ok = records[records.error.isna() & (records.lm_calls > 0)]
    out = []
    for model, g in ok.groupby("model", sort=True):
        slowest, limit = float((g.latency_s / g.lm_calls).max()), _timeout_of(model)
        if slowest > 0.5 * limit:
            out.append(f"  {_model_name(model)}'s slowest call took {slowest:.0f} s of its {limit:g} s timeout; on a "
                       "busier machine calls will start timing out: raise PROMPTOPT_TIMEOUT_S or lower --threads.")  # fmt: skip
    return out


def escape_markup(text: str) -> str:
    from rich.markup import escape

    return escape(text)


_TASKS_DIR_HELP = "Folder of user task YAMLs (repeatable; also $PROMPTOPT_TASKS_DIR)."


@tasks_app.command("list")
def tasks_list(
    tasks_dir: Annotated[list[Path] | None, typer.Option("--tasks-dir", help=_TASKS_DIR_HELP)] = None,
    programs_dir: ProgramsDir = None,
) -> None:
    """Tasks with their answer type, split sizes and license."""
    from promptopt.tables import Section
    from promptopt.tasks import available_tasks, load_task_file

    rows, missing = [], []
    for name, path in sorted(available_tasks(tasks_dir).items()):
        task = load_task_file(path, programs_dir)
        try:
            sizes = [f"{len(task.splits[s]):,}" for s in ("train", "val", "test")]
        except UserError as exc:  # e.g. data the user has not downloaded yet: say so, list the rest
            sizes = ["-"] * 3
            missing.append(f"{name}: {exc}")
        rows.append([name, task.spec.answer.type, *sizes, task.spec.license.strip()])
    _show_sections([Section("Tasks", ["task", "answer type", "train", "val", "test", "license"], rows,
                            " ".join(missing))], [])  # fmt: skip


@tasks_app.command("show")
def tasks_show(
    name: str,
    tasks_dir: Annotated[list[Path] | None, typer.Option("--tasks-dir", help=_TASKS_DIR_HELP)] = None,
    programs_dir: ProgramsDir = None,
) -> None:
    """A task's spec, split sizes, clean-ups, hygiene and three rows as the baseline prompt."""
    import yaml

    from promptopt.hygiene import check
    from promptopt.images import refs_in
    from promptopt.registry import get_strategy
    from promptopt.tasks import image_overlap, load_task

    task = load_task(name, tasks_dir, programs_dir)
    typer.echo(f"# {task.path}")
    typer.echo(yaml.safe_dump(task.spec.model_dump(exclude_none=True, exclude_defaults=True), sort_keys=False))
    typer.echo("sizes: " + ", ".join(f"{s} {len(v)}" for s, v in task.splits.items()))
    for what, n in task.dropped.items():
        typer.echo(f"clean-up: {n} {what}")
    report = check(task)
    typer.echo(
        f"hygiene: {len(report.overlapping_test_ids)} test examples overlap train/val; "
        + ", ".join(f"{n} repeated questions in {s}" for s, n in report.repeated_questions.items())
    )
    shared = image_overlap(task)
    if shared:
        typer.echo(
            f"images: {shared['in_other_source_items']} of {shared['test_images']} test images are also shown by "
            f"the source's other items; train shows {shared['in_train']} of them, val {shared['in_val']}"
        )
    render = sys.modules[get_strategy("baseline").module.__module__].render
    for ex in task.examples("test", 3):
        typer.echo(f"\n--- test example {ex.id} (gold: {ex.gold}) ---")
        typer.echo(render(task.spec.baseline.instructions, ex.inputs))
        for ref in refs_in(ex.inputs):
            typer.echo(f"[image {ref.path or ref.name}]")


@tasks_app.command("validate")
def tasks_validate(path: Path, programs_dir: ProgramsDir = None) -> None:
    """Load a task file and its data, check its gold answers, and its splits for leakage and duplicate ids."""
    import promptopt

    task = promptopt.validate_task(path, programs_dir)
    sizes = ", ".join(f"{s} {len(v)}" for s, v in task.splits.items())
    typer.echo(f"{path}: valid task {task.name!r} ({sizes}).")


@strategies_app.command("list")
def strategies_list(
    programs_dir: ProgramsDir = None,
) -> None:
    """Registered strategies, the answer types they serve and their LM calls per example."""
    from promptopt.registry import strategies
    from promptopt.tables import Section

    rows = [[s.name, ",".join(sorted(s.answer_types)), str(s.calls(s.knobs, 4)), s.description]
            for s in sorted(strategies(programs_dir).values(), key=lambda s: s.name)]  # fmt: skip
    _show_sections([Section("Strategies", ["strategy", "answer types", "calls/example (4 options)", "description"],
                            rows)], [])  # fmt: skip


@models_app.command("check")
def models_check(model: str, api_base: Annotated[str | None, typer.Option()] = None) -> None:
    """Make one tiny call to a model and say whether it answered."""
    import promptopt

    found = promptopt.check_model(model, api_base)
    typer.echo(f"{model} answered {found.reply!r} in {found.seconds:.1f}s.")


@app.command("power")
def power_cmd(
    items: Annotated[int | None, typer.Option(help="Items each config is scored on.")] = None,
    task: Annotated[str | None, typer.Option(help="Take the items from this task's split instead.")] = None,
    split: Annotated[str, typer.Option(help="The task's split: train, val or test.")] = "test",
    difference: Annotated[
        float | None, typer.Option(help="Points of accuracy a comparison should find: say how many items that needs.")
    ] = None,
    accuracy: Annotated[float, typer.Option(help="Expected accuracy of the configs, in percent.")] = 50.0,
    discordance: Annotated[
        float | None, typer.Option(help="Percent of items the configs disagree on (default: as if independent).")
    ] = None,
    alpha: Annotated[float, typer.Option(help="Two-sided test level.")] = 0.05,
    power: Annotated[float, typer.Option(help="Chance of finding the difference when it is there.")] = 0.8,
    tasks_dir: Annotated[list[Path] | None, typer.Option(help=_TASKS_DIR_HELP)] = None,
) -> None:
    """Before a run: what a paired comparison can detect on so many items, or how many items a difference needs."""
    import promptopt

    for name, value in (("--accuracy", accuracy), ("--difference", difference), ("--discordance", discordance)):
        if value is not None and not 0 < value <= 100:
            raise UserError(f"{name} is in percent (points), between 0 and 100, not {value:g}.")
    if difference is not None and discordance is not None and discordance < difference:
        raise UserError(f"--difference {difference:g} needs the configs to disagree on at least {difference:g}% of the "
                        f"items; --discordance is {discordance:g}.")  # fmt: skip
    found = promptopt.power(
        items, task=task, split=split, difference=None if difference is None else difference / 100,
        accuracy=accuracy / 100, discordance=None if discordance is None else discordance / 100, alpha=alpha,
        power=power, tasks_dirs=tasks_dir,
    )  # fmt: skip
    disc = f"{100 * found.discordance:.1f}% of items" + (" (independent errors)" if found.assumed_independent else "")
    at = f"at {100 * found.accuracy:.0f}% accuracy, configs disagreeing on {disc}, alpha {alpha:g}"
    if found.items is not None:
        where = f"{found.task} {found.split}: " if found.task else ""
        seen = "no difference at all" if found.detectable is None else f"differences of {100 * found.detectable:.1f} points or more"
        typer.echo(f"{where}{found.items:,} items detect {seen} {100 * power:.0f}% of the time ({at}).")
    if found.items_needed is not None:
        typer.echo(f"A difference of {100 * found.difference:.1f} points needs {found.items_needed:,} items per config to be "
                   f"found {100 * power:.0f}% of the time ({at}).")  # fmt: skip


@app.command()
def serve(
    model: Annotated[str, typer.Option(help="Embedded model to serve.")] = "local/gemma-3-270m",
    port: Annotated[int | None, typer.Option(help="Port on 127.0.0.1 (default: a free one).")] = None,
    parallel: Annotated[int, typer.Option(min=1, help="Requests decoded at once (give runs as many --threads).")] = 4,
) -> None:
    """Keep the embedded model's server running; runs started meanwhile reuse it."""
    from promptopt.models import resolve_model
    from promptopt.server import serve_forever

    resolve_model(model)
    serve_forever(port=port, parallel=parallel, on_ready=lambda line: typer.echo(line))


def _quiet_dspy() -> None:
    """DSPy warns on every truncated completion; truncation already shows in the token counts,
    and a warning per example would bury the progress line. Called after DSPy is imported,
    since importing it configures its loggers."""
    import logging

    import dspy  # noqa: F401

    logging.getLogger("dspy").setLevel(logging.ERROR)


@contextlib.contextmanager
def _resumable() -> Iterator[None]:
    """Ctrl-C (or SIGTERM) ends long work with exit 130 and says how to resume.

    Typer turns KeyboardInterrupt into a silent exit 130 before `main` can see it, so the
    message is printed here, inside the command.
    """
    try:
        yield
    except KeyboardInterrupt:
        typer.echo("Interrupted; finished records are kept — run the same command again to resume.", err=True)
        raise typer.Exit(130) from None


def _terminate(signum, _frame) -> None:
    raise KeyboardInterrupt  # so `finally` blocks stop servers and flush records on SIGTERM too


def main() -> None:
    # typer 0.29 carries its own copy of click (pinned in pyproject.toml); its exceptions live there
    from typer._click import exceptions as usage

    signal.signal(signal.SIGTERM, _terminate)
    if shutil.get_terminal_size((80, 24)).columns < 100:  # rich's option tables cut long flags short there
        for each in (app, tasks_app, strategies_app, models_app):  # ("--local-price-per-…"): click's plain help
            each.rich_markup_mode = None
    try:
        code = app(standalone_mode=False)  # usage errors come here, to be said in one sentence
    except usage.NoArgsIsHelpError as exc:  # a bare `promptopt report`: its help, as click shows it
        typer.echo(exc.ctx.get_help() if exc.ctx else str(exc), err=True)
        sys.exit(2)
    except usage.UsageError as exc:  # a mistyped command, option or value: exit 2, as click does
        where = exc.ctx.command_path if exc.ctx else "promptopt"
        said = exc.format_message().strip()
        typer.echo(f"Error: {said} See `{where} --help`." if said.endswith(("?", ".")) else
                   f"Error: {said}; see `{where} --help`.", err=True)  # fmt: skip
        sys.exit(2)
    except usage.ClickException as exc:
        typer.echo(f"Error: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
    except typer.Abort:  # end of input at a prompt (Ctrl-C inside a command is typer's exit 130)
        typer.echo("Aborted.", err=True)
        sys.exit(1)
    except UserError as exc:
        if _debug:
            raise
        typer.echo(f"Error: {exc}", err=True)
        sys.exit(1)
    except OSError as exc:
        if _debug or exc.errno != errno.ENOSPC:
            raise
        typer.echo(f"Error: no space left on the disk writing {exc.filename or 'a file'}; every record written before "
                   "is kept, so free some space and run the same command again to go on from there.", err=True)  # fmt: skip
        sys.exit(1)
    except KeyboardInterrupt:  # only reached outside a command (typer handles it inside)
        sys.exit(130)
    sys.exit(code if type(code) is int else 0)
