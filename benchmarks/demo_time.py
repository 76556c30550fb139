"""The main job of `make demo` (`promptopt run`), timed for this checkout and an earlier commit.

Each side gets a fresh output folder and PROMPTOPT_HOME (no server, record or answer is reused)
and runs `promptopt run` exactly as `make demo` does; the earlier commit runs from a git
worktree with this virtualenv (it needs what that commit needed: llama-cpp-python[server]==0.3.36
for commits before the llama-server change). Printed: each side's wall time, the speed-up, and
per strategy and split the accuracy, parse failures and how many questions got another answer.

    PYTHONPATH=. .venv/bin/python benchmarks/demo_time.py [--before 9ddb0b4] [--after-first]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LAUNCH = "import sys; from promptopt.cli import main; sys.argv[0] = 'promptopt'; sys.exit(main())"


def demo(code: Path, work: Path) -> tuple[float, dict]:
    """Wall time of `promptopt run` from this source tree, and its records by (strategy, split)."""
    out, home = work / "results", work / "home"
    env = {**os.environ, "PYTHONPATH": str(code), "PROMPTOPT_HOME": str(home)}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", LAUNCH, "run", "--out", str(out)], env=env, capture_output=True,
                          text=True, cwd=work)  # fmt: skip
    wall = time.perf_counter() - started
    if done.returncode:
        raise SystemExit(f"promptopt run from {code} failed:\n{done.stderr[-2000:]}")
    (run_dir,) = [p for p in out.iterdir() if p.name.startswith("run-")]
    from promptopt.store import Store, default_url

    recs = Store(default_url(run_dir)).records()
    by = {key: dict(zip(g.example_id, zip(g.score, g.parse_ok, g.prediction, strict=True), strict=True))
          for key, g in recs.groupby(["strategy", "split"])}  # fmt: skip
    return wall, by


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--before", default="9ddb0b4", help="the earlier commit (default: the last one on llama-cpp-python)"
    )
    ap.add_argument("--after-first", action="store_true", help="time this checkout first (default: the earlier one)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="demo-time-") as tmp:
        tmp = Path(tmp)
        tree = tmp / "before-src"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), args.before],
                       check=True, capture_output=True)  # fmt: skip
        try:
            sides = [("before", tree), ("after", ROOT)]
            if args.after_first:
                sides.reverse()
            results = {}
            for name, code in sides:
                (tmp / name).mkdir()
                results[name] = demo(code, tmp / name)
                print(f"{name:<6} ({'commit ' + args.before if name == 'before' else 'this checkout'}): "
                      f"{results[name][0]:.0f} s", flush=True)  # fmt: skip
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], capture_output=True)
    (wb, before), (wa, after) = results["before"], results["after"]
    print(f"\n`promptopt run` (make demo's main job) {wb:.0f} s -> {wa:.0f} s: {wb / wa:.2f}x faster (target >= 2)")
    print(
        f"{'strategy':<9} {'split':<5} {'n':>3} {'acc before %':>12} {'acc after %':>11} {'parsed b/a %':>13} {'answers differ':>14}"
    )
    for key in sorted(before.keys() & after.keys()):
        b, a = before[key], after[key]
        items = sorted(b.keys() & a.keys())
        acc = lambda side, items=items: 100 * sum(side[i][0] for i in items) / len(items)  # noqa: E731
        parsed = lambda side, items=items: 100 * sum(side[i][1] for i in items) / len(items)  # noqa: E731
        differ = sum(b[i][2] != a[i][2] for i in items)
        print(f"{key[0]:<9} {key[1]:<5} {len(items):3d} {acc(b):12.1f} {acc(a):11.1f} "
              f"{parsed(b):6.1f}/{parsed(a):<6.1f} {differ:14d}")  # fmt: skip
    print(json.dumps({"before_s": round(wb, 1), "after_s": round(wa, 1)}))


if __name__ == "__main__":
    sys.exit(main())
