"""DSPy's optimizers compared at equal compile calls on a medical task, on the embedded model.

`bootstrap_rs` (BootstrapFewShotWithRandomSearch), `mipro` (MIPROv2, auto light) and `gepa`
(GEPA, the task model reflecting on its own feedback) compile the same `predict` program on
MedQA's train split, with knobs chosen so that each compile's estimated LM calls are within a
few percent of the others' (one bootstrapped and one labeled demo for the demo optimizers, a
dev split of 40 carved from train for all three); each compiled program, the zero-shot `predict`
and the fixed `baseline` are then scored on the same test questions. It is one `promptopt run`
(resumable: the same command again reuses every finished record and compile), and the table is
read from its report: compile calls and tokens as counted, dollars at one price per million
tokens (the embedded model has none; a price per token is what a hosted model bills, and unlike
a price per hour of wall time it does not move when the machine is shared), test accuracy with
its 95% interval, and each compiled program's paired difference from zero-shot `predict` on the same questions, with
Holm-adjusted p over the three comparisons.

    PYTHONPATH=. .venv/bin/python benchmarks/optimizers_medical.py [--limit 200] [--optimizers gepa,bootstrap_rs,mipro] [--out DIR]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import promptopt
from promptopt.estimators import holm, paired_bootstrap, paired_p
from promptopt.scoring import Note, Progress
from promptopt.store import Store, default_url

OPTIMIZERS = {
    "gepa": "gepa:metric_calls=400,val=40",
    "bootstrap_rs": "bootstrap_rs:bootstrapped=1,labeled=1,candidates=8,val=40",
    "mipro": "mipro:bootstrapped=1,labeled=1,val=40",
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--limit", type=int, default=200, help="test questions")
    ap.add_argument("--task", default="medqa")
    ap.add_argument("--model", default=None, help="LiteLLM model string (default: the embedded model)")
    ap.add_argument("--api-base", default=None, help="OpenAI-compatible endpoint for --model")
    ap.add_argument("--out", type=Path, default=Path("/tmp/optimizers_medical"))
    ap.add_argument("--optimizers", default="gepa,bootstrap_rs,mipro", help="which of " + ", ".join(OPTIMIZERS))
    ap.add_argument("--price-per-mtok", type=float, default=0.30, help="USD per million tokens, prompt or completion")
    args = ap.parse_args()
    started = time.perf_counter()
    if unknown := [n for n in args.optimizers.split(",") if n not in OPTIMIZERS]:
        ap.error(f"--optimizers: {', '.join(unknown)} unknown; valid are {', '.join(OPTIMIZERS)}.")
    chosen = [OPTIMIZERS[name] for name in args.optimizers.split(",")]
    where = {"models": [args.model]} if args.model else {}
    where |= {"api_base": args.api_base} if args.api_base else {}
    log = promptopt.run(tasks=[args.task], strategies=["predict"], optimizers=chosen, limit=args.limit, **where,
                        splits=["test"], out=args.out, on_event=_progress)  # fmt: skip
    print(f"\nrun {log.run_dir} in {time.perf_counter() - started:.0f} s")
    report = promptopt.report(log.run_dir, local_price=args.price_per_mtok)
    recs = Store(default_url(log.run_dir)).records()
    recs = recs[(recs.split == "test") & recs.error.isna()]
    items = {c: g.set_index("example_id").score for c, g in recs.groupby("config_id")}
    rows = {r.config_id: r for r in report.rows if r.split == "test"}
    costs = {c.config_id: c for c in report.costs}
    label = {c: f"{r.strategy}/{r.optimizer}" for c, r in rows.items()}
    (zero,) = [c for c, r in rows.items() if (r.strategy, r.optimizer) == ("predict", "none")]
    compiled = [c for c, r in rows.items() if r.optimizer != "none"]
    diffs = {}
    for c in compiled:
        common = items[c].index.intersection(items[zero].index)
        a, b = items[c].loc[common].to_numpy(float), items[zero].loc[common].to_numpy(float)
        diffs[c] = (*paired_bootstrap(a, b), paired_p(a, b), len(common))
    adjusted = dict(zip(compiled, holm([diffs[c][3] for c in compiled]), strict=True))
    print(f"\n{args.task}, model {report.rows[0].model}, test n = {args.limit}; $ at ${args.price_per_mtok} per million tokens\n")
    print("| config | compile LM calls | compile tokens | compile $ | test accuracy [95% CI] | vs zero-shot predict, pts [95% CI] | Holm p |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for c in sorted(rows, key=lambda c: (c in compiled, label[c])):
        r, k = rows[c], costs.get(c)
        calls = f"{k.compile_calls:,}" if k else "0"
        tokens = f"{k.compile_tokens:,}" if k else "0"
        usd = f"{k.compile_usd:.4f}" if k else "0"
        vs = hold = "—"
        if c in diffs:
            d, lo, hi, _, _ = diffs[c]
            vs, hold = f"{100 * d:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}]", f"{adjusted[c]:.2f}"
        print(f"| {label[c]} | {calls} | {tokens} | {usd} | {100 * r.score:.1f} % [{100 * r.ci_low:.1f}, {100 * r.ci_high:.1f}] "
              f"| {vs} | {hold} |")  # fmt: skip
    spread = [costs[c].compile_calls for c in compiled if c in costs]
    if spread:
        print(f"\ncompile calls: {min(spread):,}–{max(spread):,} (max/min {max(spread) / max(1, min(spread)):.2f}); "
              f"compile $ max/min {_ratio([costs[c].compile_usd for c in compiled if c in costs]):.2f}")  # fmt: skip


def _ratio(values: list[float]) -> float:
    values = [v for v in values if v > 0]
    return max(values) / min(values) if values else float("nan")


def _progress(event) -> None:
    if isinstance(event, Note):
        print(event.text, flush=True)
    elif isinstance(event, Progress) and (event.done % 50 == 0 or event.done == event.total):
        print(f"  {event.label}: {event.done}/{event.total}, {event.elapsed_s:.0f} s, {event.lm_calls} calls", flush=True)


if __name__ == "__main__":
    main()
