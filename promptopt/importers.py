"""`promptopt import`: other tools' per-sample logs as records of one run.

Each log becomes one config of one model on one task, its samples the records, paired across
configs by their sample ids, so the report's paired intervals, corrected verdicts, flips and
Pareto plot and the viewer apply to them as to promptopt's own runs. Split: test.

- **Inspect AI** eval logs (`.eval` or `.json` files, or folders of them), read with
  `inspect_ai.log`'s own API. Model: the log's model; task: its task name; config: its solver
  plan (solver names and arguments) and generation config. Score: the first scorer's value as
  Inspect converts it to a number (`value_to_float`: C = 1, I = 0). Only epoch 1 of each sample.
- **lm-evaluation-harness** `--log_samples` output: an output folder (or a `samples_*.jsonl`
  file whose `results_*.json` sits beside it). Model: the results file's `model` and
  `model_args`; task: the samples file's task; config: the task's few-shot count and its config
  (prompt template, filters). Score: the first metric the sample lists (e.g. `acc`); items are
  its `doc_id`s.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path

from promptopt import __version__
from promptopt.errors import UserError
from promptopt.records import Record
from promptopt.store import Store, default_url


def _digest(data: object) -> str:
    return hashlib.sha1(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:8]


def _clip(text: object, n: int = 20_000) -> str | None:
    return None if text is None else str(text)[:n]


# ---------------------------------------------------------------- Inspect AI


NOT_LOGS = ("logs.json", "eval-set.json")  # an eval set's listing files, beside its logs


def inspect_files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted([*path.glob("*.eval"), *(p for p in path.glob("*.json") if p.name not in NOT_LOGS)])
    return [path]


def _message_text(m) -> dict:
    return {"role": getattr(m, "role", None), "content": getattr(m, "text", None) or str(getattr(m, "content", ""))}


def _check_inspect_json(path: Path) -> None:
    """A .json file that is not an Inspect log, said in one sentence before Inspect's own parser
    answers with a validation error."""
    if path.suffix != ".json":
        return
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise UserError(f"{path} is not JSON, so not an Inspect eval log; give a .eval or .json log Inspect wrote.") from None
    if not isinstance(data, dict) or not {"eval", "status"} <= data.keys():
        raise UserError(
            f"{path} is JSON but not an Inspect eval log (it has no 'eval' and 'status' fields); give a log "
            "Inspect wrote (its --log-dir, logs/ by default)."
        )


def from_inspect(path: Path, run_id: str, sha: str = "") -> list[Record]:
    try:
        from inspect_ai.log import read_eval_log
        from inspect_ai.scorer import value_to_float
    except ImportError:
        raise UserError(
            f"Reading the Inspect log {path} needs inspect_ai, which is not installed; install promptopt[import]."
        ) from None

    _check_inspect_json(path)
    try:
        log = read_eval_log(str(path))
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [""])[0]
        said = first if len(first) <= 120 else first[:120].rsplit(" ", 1)[0] + " …"
        raise UserError(f"{path} is not an Inspect eval log that Inspect can read ({type(exc).__name__}: {said}).") from None
    spec = log.eval
    steps = [{"solver": s.solver, "params": s.params} for s in (log.plan.steps if log.plan else [])]
    config = {"source": "inspect", "plan": steps, "generate": log.plan.config.model_dump(exclude_none=True) if log.plan else {},
              "task_args": spec.task_args}  # fmt: skip
    strategy = "inspect:" + "+".join(s["solver"] for s in steps) if steps else "inspect"
    config_id = f"{strategy.replace('/', '_')}-none-{_digest([config, sha])}"  # a re-run log is its own config
    to_float = value_to_float()
    out = []
    for sample in log.samples or []:
        if sample.epoch != 1:
            continue
        if not sample.scores and not sample.error:
            continue  # not scored (no scorer ran): neither right nor wrong
        score, answer = 0.0, None
        if sample.scores:
            first = next(iter(sample.scores.values()))
            score, answer = float(to_float(first.value)), first.answer
        usage = next(iter((sample.model_usage or {}).values()), None)
        output = sample.output.completion if sample.output else None
        sent = [{"messages": [_message_text(m) for m in sample.messages if getattr(m, "role", "") != "assistant"]}]
        target = sample.target if isinstance(sample.target, str) else json.dumps(sample.target)
        out.append(Record(
            run_id=run_id, model=spec.model, task=spec.task, strategy=strategy, optimizer="none",
            config_id=config_id, config=json.dumps(config, sort_keys=True, default=str), split="test",
            example_id=str(sample.id), prediction=_clip(answer if answer is not None else output), gold=target,
            score=score, parse_ok=(answer if answer is not None else output) is not None,
            error=_clip(sample.error.message, 300) if sample.error else None,
            lm_calls=1, prompt_tokens=int(getattr(usage, "input_tokens", 0) or 0),
            completion_tokens=int(getattr(usage, "output_tokens", 0) or 0), cost_usd=0.0,
            latency_s=float(sample.total_time or 0.0), raw_output=_clip(output), created_at=time.time(),
            sent=json.dumps(sent),
        ))  # fmt: skip
    if not out:
        raise UserError(f"Inspect log {path} holds no scored samples (was it run with --no-log-samples?).")
    return out


# ---------------------------------------------------------------- lm-evaluation-harness


def lm_eval_files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(path.rglob("samples_*.jsonl"))
    return [path]


def _results_for(samples: Path) -> dict:
    found = sorted(samples.parent.glob("results_*.json"))
    if not found:
        raise UserError(f"{samples} has no results_*.json beside it; lm-eval writes one per run with --output_path.")
    stamp = samples.stem.rsplit("_", 1)[-1]
    same = [f for f in found if f.stem.endswith(stamp)]
    return json.loads((same or found)[-1].read_text())


def _prediction(filtered) -> str | None:
    """The answer lm-eval's filtered responses stand for: the index of the most likely choice
    for log-likelihood tasks ([logprob, is_greedy] per choice), else the generated text."""
    if not filtered:
        return None
    try:  # lm-eval writes each choice's [logprob, is_greedy], as numbers or as strings
        scores = [float(f[0]) for f in filtered if isinstance(f, list | tuple) and len(f) == 2]
    except (TypeError, ValueError):
        scores = []
    if len(scores) == len(filtered):
        return str(scores.index(max(scores)))
    return str(filtered[0])


def from_lm_eval(path: Path, run_id: str, sha: str = "") -> list[Record]:
    try:
        results = _results_for(path)
    except ValueError:
        raise UserError(f"The results_*.json beside {path} is not valid JSON.") from None
    task = path.stem.removeprefix("samples_").rsplit("_", 1)[0]
    cfg = results.get("config") or {}
    model = str(cfg.get("model") or results.get("model_name") or "lm-eval")
    if cfg.get("model_args"):
        model = f"{model}({cfg['model_args'] if isinstance(cfg['model_args'], str) else json.dumps(cfg['model_args'], sort_keys=True)})"
    task_config = (results.get("configs") or {}).get(task, {})
    fewshot = (results.get("n-shot") or {}).get(task, task_config.get("num_fewshot", 0))
    config = {"source": "lm-eval", "num_fewshot": fewshot, "task_config": task_config, "gen_kwargs": cfg.get("gen_kwargs")}
    out = []
    try:
        lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except ValueError as exc:
        raise UserError(f"{path} is not an lm-eval samples file (JSON lines): {str(exc)[:120]}.") from None
    for s in lines:
        metric = (s.get("metrics") or [None])[0]
        if metric is None or metric not in s:
            raise UserError(f"{path}: sample {s.get('doc_id')} names no metric value; lm-eval writes e.g. 'acc'.")
        if not isinstance(s[metric], int | float):
            raise UserError(
                f"{path}: metric {metric!r} is not a per-sample number (corpus metrics such as bleu are computed over "
                "all samples); import a task scored per sample, e.g. by acc or exact_match."
            )
        filt = s.get("filter") or "none"  # lm-eval writes one line per document and filter: one config each
        strategy = f"lm_eval:fewshot={fewshot}" + ("" if filt == "none" else f",filter={filt}")
        config_id = f"lm_eval-fewshot{fewshot}{'' if filt == 'none' else '-' + filt}-{_digest([config, filt, sha])}"
        args = s.get("arguments") or {}
        first = next(iter(args.values()), {}) if isinstance(args, dict) else (args[0] if args else {})
        context = first.get("arg_0") if isinstance(first, dict) else (first[0] if isinstance(first, list) and first else None)
        prediction = _prediction(s.get("filtered_resps"))
        out.append(Record(
            run_id=run_id, model=model, task=task, strategy=strategy, optimizer="none", config_id=config_id,
            config=json.dumps(config, sort_keys=True, default=str), split="test", example_id=str(s["doc_id"]),
            prediction=prediction, gold=str(s.get("target")), score=float(s[metric]), parse_ok=prediction is not None,
            error=None, lm_calls=max(1, len(s.get("resps") or [])), prompt_tokens=0, completion_tokens=0, cost_usd=0.0,
            latency_s=0.0, raw_output=_clip(json.dumps(s.get("resps"))), created_at=time.time(),
            sent=json.dumps([{"prompt": context}]) if context is not None else None,
        ))  # fmt: skip
    return out


# ---------------------------------------------------------------- both


def kind_of(path: Path) -> str:
    if path.is_dir():
        if any(path.rglob("samples_*.jsonl")):
            return "lm-eval"
        if any(path.glob("*.eval")) or any(path.glob("*.json")):
            return "inspect"
    elif path.name.startswith("samples_") and path.suffix == ".jsonl":
        return "lm-eval"
    elif path.suffix in (".eval", ".json"):
        return "inspect"
    raise UserError(
        f"{path} is neither an Inspect eval log (.eval, .json, or a folder of them) nor lm-eval output "
        "(a folder with samples_*.jsonl, or such a file)."
    )


def import_logs(paths: list[Path], out: Path = Path("results"), storage: str | None = None,
                on_event: Callable[[str], None] | None = None) -> Path:  # fmt: skip
    """One run holding every sample of every log; the same logs always make the same run."""
    files: list[tuple[str, Path]] = []
    for path in paths:
        path = Path(path)
        if not path.exists():
            raise UserError(f"{path} does not exist; give Inspect eval logs or lm-eval output folders.")
        kind = kind_of(path)
        files += [(kind, f) for f in (inspect_files(path) if kind == "inspect" else lm_eval_files(path))]
    if not files:
        raise UserError("No log file found in the paths given.")
    ident = [(kind, f.name, hashlib.sha1(f.read_bytes()).hexdigest()) for kind, f in files]
    run_id = "import-" + hashlib.sha1(json.dumps(sorted(ident)).encode()).hexdigest()[:10]
    batch: list[Record] = []
    for (kind, f), (_, _, sha) in zip(files, ident, strict=True):
        got = from_inspect(f, run_id, sha) if kind == "inspect" else from_lm_eval(f, run_id, sha)
        if not got:
            raise UserError(f"{f} holds no scored sample.")
        if on_event:
            on_event(f"{f}: {len(got)} samples of {got[0].model} on {got[0].task} ({got[0].config_id})")
        batch += got
    run_dir = Path(out) / run_id
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        url = storage or default_url(run_dir)
        (run_dir / "run.json").write_text(json.dumps({"run_id": run_id, "storage": url, "plan": {"imported": [
            {"kind": k, "file": n, "sha1": h} for k, n, h in ident]}}, indent=2))  # fmt: skip
    except OSError as exc:
        raise UserError(f"Cannot write to the output folder {out} ({exc.strerror}); choose another --out.") from None
    store = Store(url)
    store.start_run(run_id, {"imported": [{"kind": k, "file": n, "sha1": h} for k, n, h in ident]}, __version__)
    store.add(batch)
    store.set_status(run_id, "complete")
    if on_event:
        for line in paired_lines(batch):
            on_event(line)
    return run_dir


def paired_lines(batch: list[Record]) -> list[str]:
    """Each pair of configs of one model and task, paired by item: the difference and its interval."""
    import itertools

    import pandas as pd

    from promptopt.stats import paired

    frame = pd.DataFrame([{"model": r.model, "task": r.task, "config_id": r.config_id, "example_id": r.example_id,
                           "score": r.score, "error": r.error} for r in batch])  # fmt: skip
    frame = frame[frame["error"].isna()]
    lines = []
    for (model, task), g in frame.groupby(["model", "task"]):
        by = {c: s.set_index("example_id")["score"] for c, s in g.groupby("config_id")}
        for a, b in itertools.combinations(sorted(by), 2):
            got = paired(by[a], by[b], b=10_000, seed=0)
            if not got["n"]:
                lines.append(f"{model} on {task}: {a} and {b} share no item, so they are not compared.")
                continue
            lines.append(
                f"{model} on {task}: {a} − {b} = {100 * got['diff']:+.1f} points "
                f"[{100 * got['ci_low']:+.1f}, {100 * got['ci_high']:+.1f}] on {got['n']} paired items (p = {got['p']:.3g})"
            )
    return lines
