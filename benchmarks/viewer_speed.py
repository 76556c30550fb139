"""How fast `promptopt view` answers on a 100k-record store (targets: first page under 1 s, an
example page under 0.3 s).

Builds the same ~100k-record run folder as benchmarks/report_speed.py (with every record's
prompt as sent, ~1.5 kB), starts the viewer on 127.0.0.1 and times HTTP requests from a client:
the run page cold (the report computed on request) and warm (cached, as every later request
and a viewer started earlier get it), a config's first and a late examples page, a filtered
page, a text search, an example page and a two-config comparison. Prints figures; asserts nothing.

    PYTHONPATH=. .venv/bin/python benchmarks/viewer_speed.py
"""

import json
import socket
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from report_speed import MODELS, simulated_records  # noqa: E402

from promptopt.simulate import write_run  # noqa: E402


def build(root: Path) -> Path:
    recs = simulated_records()
    prompt = json.dumps([{"messages": [{"role": "user", "content": "A 45-year-old woman presents with ... " * 40}],
                          "reply": "B"}])  # fmt: skip
    recs["sent"] = prompt
    return write_run(recs, root / "run")


def timed(client: httpx.Client, url: str, repeat: int = 5) -> tuple[float, int]:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        resp = client.get(url)
        best = min(best, time.perf_counter() - started)
        resp.raise_for_status()
    return best, len(resp.content)


def main() -> None:
    import uvicorn

    from promptopt.store import Store
    from promptopt.viewer import make_app

    root = Path(tempfile.mkdtemp(prefix="viewer-speed-"))
    started = time.perf_counter()
    run = build(root)
    info = json.loads((run / "run.json").read_text())
    store = Store(info["storage"], create=False)
    n = len(store.records())
    print(f"built {n:,} records in {run} ({time.perf_counter() - started:.1f} s)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(make_app(str(run), warm_up=False), host="127.0.0.1", port=port,
                                           log_level="warning"))  # fmt: skip
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    base, rid = f"http://127.0.0.1:{port}", info["run_id"]
    model, task, config = MODELS[0], "medqa", None
    recs = store.records(rid)
    config = recs[(recs.model == model) & (recs.task == task)].config_id.iloc[0]
    other = sorted(set(recs[(recs.model == model) & (recs.task == task)].config_id) - {config})[0]
    q = dict(model=model, task=task, config=config, split="test")
    with httpx.Client(timeout=120) as client:
        started = time.perf_counter()
        client.get(f"{base}/run/{rid}").raise_for_status()
        print(f"run page, cold (report computed on request; `promptopt view` computes it as it starts): "
              f"{time.perf_counter() - started:6.3f} s")
        pages = {
            "run page, warm (report cached)": f"{base}/run/{rid}",
            "examples, first page": f"{base}/run/{rid}/examples?{urllib.parse.urlencode(q)}",
            "examples, page 20": f"{base}/run/{rid}/examples?{urllib.parse.urlencode(q | {'page': 20})}",
            "examples, wrong only": f"{base}/run/{rid}/examples?{urllib.parse.urlencode(q | {'show': 'wrong'})}",
            "examples, text search": f"{base}/run/{rid}/examples?{urllib.parse.urlencode(q | {'q': '1299'})}",
            "example page": f"{base}/run/{rid}/example/{n // 2}",
            "compare two configs": f"{base}/run/{rid}/compare?"
            + urllib.parse.urlencode({"on": f"{task}|test", "a": f"{model}|{config}", "b": f"{model}|{other}"}),
        }
        for name, url in pages.items():
            took, size = timed(client, url)
            print(f"{name:<32} {took:6.3f} s (best of 5, {size:,} bytes)")
    server.should_exit = True


if __name__ == "__main__":
    main()
