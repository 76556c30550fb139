"""What a person sees in a real terminal (tmux, a pseudo-terminal of a set width): no line wider
than the terminal, every number of the plain report still there, warnings first, and a run that
ends by saying what happened and where to look next."""

import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import cli, exam_server

FIXTURES = Path(__file__).resolve().parent / "fixtures"
STORE = f"sqlite:///{FIXTURES / 'store.sqlite'}"
EXE = Path(sys.executable).with_name("promptopt")

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux for a real pseudo-terminal")


def in_terminal(args: list[str], width: int, tmp_path: Path, timeout: float = 120) -> list[str]:
    """The lines a terminal `width` columns wide shows for the command (wrapped lines joined, so a
    line wider than the terminal shows as one long line)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    done = tmp_path / f"done-{width}"
    session = f"po{width}{time.monotonic_ns() % 10**6}"
    command = " ".join(args) + f"; touch {done}; sleep 60"
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", str(width), "-y", "50", command], check=True)
    try:
        deadline = time.monotonic() + timeout
        while not done.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        pane = subprocess.run(["tmux", "capture-pane", "-t", session, "-p", "-J", "-S", "-100000"],
                              capture_output=True, text=True, check=True).stdout  # fmt: skip
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
    assert done.exists(), pane
    return pane.rstrip("\n").splitlines()


@pytest.mark.parametrize("width", [80, 100, 120])
def test_the_report_fits_the_terminal_keeps_every_number_and_shows_warnings_first(width, tmp_path):
    lines = in_terminal([str(EXE), "report", STORE, "--bootstrap", "1000"], width, tmp_path)
    assert max(len(line) for line in lines) <= width
    shown = " ".join(lines)
    plain = cli("report", STORE, "--bootstrap", "1000").stdout
    numbers = set(re.findall(r"(?<![\w.])-?\d+(?:\.\d+)?%?", plain))
    missing = sorted(n for n in numbers if not re.search(rf"(?<![\w.]){re.escape(n)}", shown))
    assert missing == []
    assert lines[0].startswith("WARNING: this store holds 2 runs")


@pytest.mark.parametrize("width", [80, 100, 120])
def test_a_run_in_a_terminal_ends_with_a_summary_that_fits_and_names_the_next_commands(width, medqa, tmp_path):
    right = {e.id for e in medqa.examples("test", 10)[:7]} | {e.id for e in medqa.examples("val", 10)}
    with exam_server(medqa, right, 10) as server:
        lines = in_terminal([str(EXE), "run", "--model", "openai/scripted", "--api-base", server.base_url, "--limit",
                             "10", "--strategy", "baseline", "--out", str(tmp_path / "runs")], width, tmp_path)  # fmt: skip
    # only a path longer than the terminal may run past it: there is no space to break it at
    assert [line for line in lines if len(line) > width and " " in line.strip().removeprefix("Run folder: ")] == []
    text = "\n".join(lines)
    run_dir = next(line.removeprefix("Run folder: ") for line in lines if line.startswith("Run folder: "))
    assert "ceiling 70.0% [39.7, 89.2]" in text  # 7 of 10 test items, with its Wilson interval
    assert (f"Next: promptopt report {run_dir} · promptopt view {run_dir} · promptopt export {run_dir} --to "
            f"{Path(run_dir).name}.zip") in " ".join(text.split())  # fmt: skip


def test_at_80_columns_the_report_names_models_once_and_keeps_the_leaderboard_a_table(tmp_path):
    compact = in_terminal([str(EXE), "report", STORE, "--bootstrap", "1000", "--run", "run-6c5199842a"], 80, tmp_path)
    legend = [i for i, line in enumerate(compact) if line.startswith("Models: ")]
    assert len(legend) == 1 and "m-strong = openai/m-strong@127.0.0.1:43517/v1" in " ".join(compact[legend[0]:legend[0] + 2])
    rows = [line for line in compact if "openai/m-strong@" in line]
    assert len(rows) <= 3  # the legend (and a note naming unpriced models), not every row of every table
    board = compact.index(next(line for line in compact if line.startswith("Leaderboard — medqa")))
    header, strong = compact[board + 2], next(line for line in compact[board:] if line.startswith("m-strong "))
    assert "baseline % [95% CI]" in header and "ceiling % [95% CI]" in header  # one line per model, a table
    assert "56.7 [39.2, 72.6]" in strong and "70.0 [53.3, 86.7]" in strong  # the interval includes the choice
    wide = in_terminal([str(EXE), "report", STORE, "--bootstrap", "1000", "--run", "run-6c5199842a", "--wide"], 80,
                       tmp_path / "wide")  # fmt: skip
    assert not any(line.startswith("Models: ") for line in wide) and max(len(line) for line in wide) <= 80
    assert sum("openai/m-strong@127.0.0.1:43517/v1" in line for line in wide) > 5  # whole names, every row


def test_at_80_columns_help_names_every_flag_whole(tmp_path):
    lines = in_terminal([str(EXE), "report", "--help"], 80, tmp_path)
    shown = "\n".join(lines)
    assert all(len(line) <= 80 for line in lines) and "…" not in shown  # rich's option tables cut them at 80
    for flag in ("--local-price-per-hour", "--equivalence-margin", "--pareto-cost", "--bootstrap"):
        assert flag in shown
