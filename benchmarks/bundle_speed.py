"""How long `promptopt export` and `promptopt reproduce` take on a 100k-record store (target:
under 60 s each on this 2-core machine).

Builds the 100k-record run folder of benchmarks/report_speed.py (4 models x 2 tasks x 6 configs x
2,100 val+test examples, reasoning-sized raw outputs) and gives every record a request as sent
(~1.5 KB of chat messages, as a real run keeps), then times both commands end to end (process
start, reading the store, the report with 10,000 bootstrap resamples, figures, zip; rebuilding
the store and re-deriving everything). Also checks the export is byte-for-byte repeatable and
the reproduction finds 0 differences. Prints figures; asserts nothing.

    python benchmarks/bundle_speed.py [--records-dir DIR]
"""

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from report_speed import simulated_records

from promptopt.simulate import write_run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records-dir", type=Path, help="Where to build the run folder (default: a temp dir).")
    args = parser.parse_args()
    root = args.records_dir or Path(tempfile.mkdtemp(prefix="bundle-speed-"))
    recs = simulated_records()
    question = "A 45-year-old presents with chest pain radiating to the left arm. " * 12
    recs["sent"] = [json.dumps([{"messages": [{"role": "system", "content": "Answer the question. " * 20},
                                              {"role": "user", "content": f"{question} ({i})"}]}])
                    for i in range(len(recs))]  # fmt: skip
    started = time.perf_counter()
    run = write_run(recs, root / "run")
    print(f"built {len(recs):,} records with requests as sent in {run} ({time.perf_counter() - started:.1f} s)")
    exe = str(Path(sys.executable).with_name("promptopt"))
    digests = []
    for attempt in (1, 2):
        bundle = root / f"bundle{attempt}.zip"
        started = time.perf_counter()
        done = subprocess.run([exe, "export", str(run), "--to", str(bundle)], capture_output=True, text=True)
        took = time.perf_counter() - started
        status = "ok" if done.returncode == 0 else f"FAILED: {done.stderr.strip()}"
        digests.append(hashlib.sha256(bundle.read_bytes()).hexdigest() if bundle.exists() else None)
        print(f"promptopt export (try {attempt}): {took:5.1f} s wall, {bundle.stat().st_size / 1e6:,.1f} MB {status}")
    print(f"same bytes both times: {digests[0] == digests[1]}")
    started = time.perf_counter()
    done = subprocess.run([exe, "reproduce", str(root / "bundle1.zip"), "--out", str(root / "again")],
                          capture_output=True, text=True)  # fmt: skip
    took = time.perf_counter() - started
    said = [line for line in done.stdout.splitlines() if "differences" in line]
    print(f"promptopt reproduce: {took:5.1f} s wall, exit {done.returncode}: {said[0] if said else done.stderr.strip()}")


if __name__ == "__main__":
    main()
