r"""`promptopt report --format latex`: a report as a paper prints it.

booktabs tables (leaderboard with intervals, head-to-head, rank flips, cost per config) and one
macro per headline number, so a paper's text cites the numbers the tables hold:

    \input{report.tex}                       % needs \usepackage{booktabs}
    ... reaches \promptopt{ceiling/gemma-3-270m/medqa}\% [\promptopt{ceiling-ci/gemma-3-270m/medqa}] ...

Keys are `what/model/task` with the model's short name (provider and endpoint dropped); `what`
is baseline, baseline-ci, ceiling, ceiling-ci, uplift, uplift-ci, n, config and verdict;
`summary/TASK` is the sentence on rank flips a paper prints. Every cell is escaped: a model or
config name cannot inject TeX.
"""

from __future__ import annotations

import re
import unicodedata

from promptopt import __version__

SYMBOLS = {
    "–": "--", "—": "---", "−": "$-$", "±": r"$\pm$", "≥": r"$\geq$", "≤": r"$\leq$", "×": r"$\times$",
    "·": r"\textperiodcentered{}", "…": r"\ldots{}", "→": r"$\rightarrow$", "ε": r"$\varepsilon$",
    "δ": r"$\delta$", "κ": r"$\kappa$", "Δ": r"$\Delta$",
}  # fmt: skip
SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
           "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "<": r"\textless{}", ">": r"\textgreater{}"}  # fmt: skip


def escape(text) -> str:
    """Any text as TeX that prints it: specials escaped, known symbols mapped, other non-ASCII
    letters reduced to their ASCII base (pdflatex's default input cannot hold them)."""
    def plain(ch: str) -> str:  # one ASCII character
        return SPECIAL.get(ch) or (ch if ch.isprintable() else " ")

    out = []
    for ch in str(text):
        if ch in SYMBOLS:
            out.append(SYMBOLS[ch])
        elif ord(ch) < 128:
            out.append(plain(ch))
        else:  # reduced to ASCII first, then escaped: a fullwidth backslash must not become a command
            ascii_ = unicodedata.normalize("NFKD", ch).encode("ascii", "ignore").decode()
            out.append("".join(plain(c) for c in ascii_) or "?")
    return "".join(out)


def key_part(text: str) -> str:
    """A macro key's part: letters, digits, dot and dash (what \\csname takes without surprises)."""
    return re.sub(r"[^A-Za-z0-9.-]+", "-", text).strip("-") or "x"


def short_model(model: str) -> str:
    name = re.sub(r"@.*$", "", model).split("#", 1)[0]
    return name.rsplit("/", 1)[-1]


def _pct(x) -> str:
    return "--" if x is None else f"{100 * x:.1f}"


def _pts(x) -> str:
    return "--" if x is None else f"{100 * x:+.1f}"


def _ci(low, high, fmt=_pct) -> str:
    return "--" if low is None or high is None else f"[{fmt(low)}, {fmt(high)}]"


def table(caption: str, label: str, headers: list[str], rows: list[list[str]], align: str, note: str = "") -> str:
    """One booktabs table; cells are escaped here."""
    lines = [
        r"\begin{table*}[t]", r"\centering", r"\small", rf"\caption{{{escape(caption)}}}", rf"\label{{{label}}}",
        rf"\begin{{tabular}}{{{align}}}", r"\toprule", " & ".join(escape(h) for h in headers) + r" \\", r"\midrule",
        *(" & ".join(escape(c) for c in row) + r" \\" for row in rows),
        r"\bottomrule", r"\end{tabular}",
    ]  # fmt: skip
    if note:
        lines += [r"\par\smallskip", rf"\parbox{{0.95\textwidth}}{{\footnotesize {escape(note)}}}"]
    return "\n".join(lines + [r"\end{table*}", ""])


def _names(report) -> dict[str, str]:
    """Each model of the report -> its short name, numbered where two share one (as the terminal's legend)."""
    from promptopt.tables import model_legend

    models = sorted({r.model for r in report.leaderboard} | {m for h in report.head_to_head for m in (h.model_a, h.model_b)}
                    | {c.model for c in report.costs})  # fmt: skip
    legend = model_legend(models)
    return {m: legend.get(m, short_model(m)) for m in models}


def macros(report) -> list[str]:
    out = [r"\makeatletter", r"\providecommand{\promptopt}[1]{\@ifundefined{promptopt@#1}{??}{\csname promptopt@#1\endcsname}}"]
    seen = set()
    names = _names(report)
    for r in report.leaderboard:
        tail = f"{key_part(names[r.model])}/{key_part(r.task)}"
        if tail in seen:  # the same model and task in two runs: the first run's (the table says both)
            continue
        seen.add(tail)
        values = {
            "baseline": _pct(r.baseline_score), "baseline-ci": _ci(r.baseline_ci_low, r.baseline_ci_high),
            "ceiling": _pct(r.ceiling_score), "ceiling-ci": _ci(r.ceiling_ci_low, r.ceiling_ci_high),
            "uplift": _pts(r.uplift), "uplift-ci": _ci(r.uplift_ci_low, r.uplift_ci_high, _pts),
            "n": str(r.ceiling_n or "--"), "config": r.selected_config_id or "--", "verdict": r.verdict or "--",
        }  # fmt: skip
        for what, value in values.items():
            out.append(rf"\expandafter\def\csname promptopt@{what}/{tail}\endcsname{{{escape(value)}}}")
    for line in report.summary:  # the first run's, as for the numbers
        if f"summary/{line.task}" not in seen:
            seen.add(f"summary/{line.task}")
            out.append(rf"\expandafter\def\csname promptopt@summary/{key_part(line.task)}\endcsname{{{escape(line.text)}}}")
    return out + [r"\makeatother", ""]


def render_latex(report) -> str:
    several = len({r.run_id for r in report.leaderboard}) > 1
    names = _names(report)
    parts = [f"% promptopt {__version__} report: \\input it after \\usepackage{{booktabs}}.", *macros(report)]
    for run_id, task in sorted({(r.run_id, r.task) for r in report.leaderboard}):
        board = sorted((r for r in report.leaderboard if (r.run_id, r.task) == (run_id, task)),
                       key=lambda r: (r.rank_ceiling or 1e9, r.model))  # fmt: skip
        parts.append(table(
            f"Prompt ceilings on {task}" + (f" ({run_id})" if several else ""),
            f"tab:promptopt-leaderboard-{key_part(task)}" + (f"-{run_id}" if several else ""),
            ["Model", "Baseline %", "95% CI", "Ceiling %", "95% CI", "Uplift pts", "95% CI", "n", "Verdict", "Config"],
            [[names[r.model], _pct(r.baseline_score), _ci(r.baseline_ci_low, r.baseline_ci_high),
              _pct(r.ceiling_score), _ci(r.ceiling_ci_low, r.ceiling_ci_high), _pts(r.uplift),
              _ci(r.uplift_ci_low, r.uplift_ci_high, _pts), str(r.uplift_n or "--"), r.verdict or "--",
              r.selected_config_id or "--"] for r in board],  # fmt: skip
            "lrcrcrcrll",
            "Ceiling: test score of the config chosen on val. Uplift: ceiling minus baseline on the test items both "
            "answered (n), paired bootstrap interval; verdicts Holm-corrected over the task's comparisons.",
        ))  # fmt: skip
    if report.head_to_head:
        parts.append(table(
            "Head-to-head on the same test items", "tab:promptopt-head-to-head",
            ["Task", "Model A", "Model B", "Under", "n", "A - B pts", "95% CI", "p (Holm)", "Outcome"],
            [[r.task, names[r.model_a], names[r.model_b], r.setting, str(r.n), _pts(r.diff),
              _ci(r.ci_low, r.ci_high, _pts), "--" if r.p_holm is None else f"{r.p_holm:.3g}", r.outcome or "--"]
             for r in report.head_to_head],  # fmt: skip
            "llllrrcrl",
        ))  # fmt: skip
    if report.flips:
        parts.append(table(
            "Rank flips from the baseline prompt to each model's ceiling", "tab:promptopt-flips",
            ["Task", "Ahead at ceiling", "Behind", "Baseline diff pts", "Ceiling diff pts", "Status"],
            [[r.task, names.get(r.model_a, short_model(r.model_a)), names.get(r.model_b, short_model(r.model_b)),
              f"{_pts(r.baseline_diff)} {_ci(r.baseline_ci_low, r.baseline_ci_high, _pts)}",
              f"{_pts(r.ceiling_diff)} {_ci(r.ceiling_ci_low, r.ceiling_ci_high, _pts)}", r.status]
             for r in report.flips],  # fmt: skip
            "llllll",
        ))  # fmt: skip
    if report.costs:
        parts.append(table(
            "Cost per config", "tab:promptopt-cost",
            ["Model", "Task", "Config", "Calls/ex", "Tokens in/out per ex", "$/ex", "One-off $"],
            [[names[r.model], r.task, r.config_id, f"{r.calls_per_example:.2f}",
              f"{r.prompt_tokens_per_example:.0f}/{r.completion_tokens_per_example:.0f}",
              f"{r.usd_per_example:.5f}", f"{r.one_off_usd:.4f}"] for r in report.costs],  # fmt: skip
            "lllrrrr",
            "One-off: compiling and preparation. Models without a price are charged "
            + (f"${report.settings.local_usd_per_hour:g} per hour of their calls' wall time."
               if report.settings.local_usd_per_hour else f"${report.settings.local_usd_per_mtok:g} per million tokens."),
        ))  # fmt: skip
    if report.warnings:
        parts.append("% Warnings a reader must know:\n" + "".join(f"%   {escape(w)}\n" for w in report.warnings))
    return "\n".join(parts)
