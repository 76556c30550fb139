"""How wall time and memory grow with examples (100 -> 10,000) and configs (1 -> 32).

The instant scripted server of benchmarks/engine_overhead.py answers `predict` on MedQA
questions (every split, cycled with distinct ids). Each point runs in a fresh process, so its
peak resident memory (getrusage ru_maxrss) is its own: `evaluate` of E examples for each of C
configs (C copies of `predict` told apart by a knob, so each has its own id and records), all
into one SQLite store, one thread, records committed one by one. Prints the table and the
fitted exponent b of time ~ size^b (least squares on logs; 1.0 is linear).

    PYTHONPATH=. .venv/bin/python benchmarks/scaling.py
"""

from __future__ import annotations

import json
import math
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

EXAMPLES = [100, 300, 1000, 3000, 10000]
CONFIGS = [1, 2, 4, 8, 16, 32]
PER_CONFIG = 100  # examples per config on the configs axis

sys.path.insert(0, str(Path(__file__).parent))
from engine_overhead import instant_medqa  # noqa: E402


def point(n: int, configs: int) -> dict:
    from promptopt.config import Config
    from promptopt.models import build_lm, resolve_model
    from promptopt.registry import get_strategy
    from promptopt.scoring import evaluate
    from promptopt.session import adapter_for
    from promptopt.store import Store, default_url
    from promptopt.testing import ScriptedServer

    task, examples, reply = instant_medqa(n)

    with tempfile.TemporaryDirectory() as tmp, ScriptedServer(reply) as server:
        model = resolve_model("openai/scripted", server.base_url)
        lm, adapter = build_lm(model), adapter_for(model)
        store = Store(default_url(Path(tmp)))
        program = get_strategy("predict").build(task)
        started = time.perf_counter()
        for c in range(configs):
            cfg = Config("predict", knobs={"copy": c})
            evaluate(program, examples, task=task, model=model, lm=lm, adapter=adapter, config=cfg, split="test",
                     run_id="scaling", store=store)  # fmt: skip
        wall = time.perf_counter() - started
        rows = len(store.records("scaling"))
    return {"wall": wall, "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "records": rows}


def fit(xs: list[float], ys: list[float]) -> float:
    lx, ly = [math.log(x) for x in xs], [math.log(y) for y in ys]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly, strict=True)) / sum((a - mx) ** 2 for a in lx)


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--point":
        print(json.dumps(point(int(sys.argv[2]), int(sys.argv[3]))))
        return
    axes = {
        "examples (1 config)": [(n, 1) for n in EXAMPLES],
        f"configs ({PER_CONFIG} examples each)": [(PER_CONFIG, c) for c in CONFIGS],
    }
    for axis, points in axes.items():
        print(f"\n{axis}")
        print(f"{'examples':>8} {'configs':>7} {'records':>8} {'seconds':>8} {'records/s':>9} {'peak RSS MiB':>12}")
        sizes, walls, mems = [], [], []
        for n, c in points:
            out = subprocess.run([sys.executable, __file__, "--point", str(n), str(c)], capture_output=True, text=True)
            if out.returncode != 0:
                print(f"{n:8d} {c:7d} FAILED: {out.stderr.strip().splitlines()[-1:]}")
                continue
            r = json.loads(out.stdout.strip().splitlines()[-1])
            sizes.append(n * c)
            walls.append(r["wall"])
            mems.append(r["rss_mib"])
            print(f"{n:8d} {c:7d} {r['records']:8d} {r['wall']:8.2f} {r['records'] / r['wall']:9.1f} {r['rss_mib']:12.0f}",
                  flush=True)  # fmt: skip
        if len(sizes) > 1:
            print(
                f"fitted growth: time ~ records^{fit(sizes, walls):.2f}, peak memory ~ records^{fit(sizes, mems):.2f}"
            )


if __name__ == "__main__":
    sys.exit(main())
