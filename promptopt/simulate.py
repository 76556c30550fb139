"""Simulated records with known true accuracies, for testing statistics and timing reports.

No model is called: each (model, config, example) is right with the config's true accuracy,
drawn from a seeded generator, so what an estimator should report is known exactly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from promptopt.records import RECORD_COLUMNS, Record
from promptopt.store import Store, default_url


@dataclass(frozen=True)
class SimConfig:
    strategy: str
    accuracy: float
    optimizer: str = "none"
    name: str = ""  # tells apart configs of one strategy
    calls: int = 1
    prompt_tokens: int = 200
    completion_tokens: int = 20
    usd_per_call: float = 0.0
    knobs: dict = field(default_factory=dict, hash=False)

    @property
    def config_id(self) -> str:
        return f"{self.strategy}-{self.optimizer}-{self.name or 'sim'}"

    @property
    def config(self) -> str:
        return json.dumps({"strategy": self.strategy, "optimizer": self.optimizer, "knobs": self.knobs}, sort_keys=True)


def simulate(
    models: dict[str, list[SimConfig]],
    task: str = "sim",
    n: dict[str, int] | None = None,
    seed: int = 0,
    run_id: str = "sim",
) -> pd.DataFrame:
    """Records for every model × config × split × example; scores drawn at each config's accuracy."""
    n = n or {"val": 100, "test": 100}
    rng = np.random.default_rng(seed)
    frames = []
    for model, configs in models.items():
        for cfg in configs:
            for split, count in n.items():
                right = rng.random(count) < cfg.accuracy
                ids = [f"{split}-{i}" for i in range(count)]
                frame = pd.DataFrame(
                    {
                        "run_id": run_id, "model": model, "task": task, "strategy": cfg.strategy,
                        "optimizer": cfg.optimizer, "config_id": cfg.config_id, "config": cfg.config, "split": split,
                        "example_id": ids, "prediction": np.where(right, "A", "B"), "gold": "A",
                        "score": right.astype(float), "parse_ok": True, "error": None, "lm_calls": cfg.calls,
                        "prompt_tokens": cfg.calls * cfg.prompt_tokens,
                        "completion_tokens": cfg.calls * cfg.completion_tokens,
                        "cost_usd": cfg.calls * cfg.usd_per_call, "latency_s": 0.5 * cfg.calls,
                        "raw_output": None, "created_at": 0.0,
                    }
                )  # fmt: skip
                if cfg.strategy == "choice_shuffle":
                    votes = [
                        [p] * cfg.calls if rng.random() < 0.7 else [p, *(["B"] * (cfg.calls - 1))]
                        for p in frame["prediction"]
                    ]
                    frame["raw_output"] = [json.dumps({"votes": v, "answers": v}) for v in votes]
                frames.append(frame)
    return pd.concat(frames, ignore_index=True).reindex(columns=RECORD_COLUMNS)


def write_run(records: pd.DataFrame, run_dir: Path) -> Path:
    """A run folder (run.json + results.sqlite) holding `records` (of one run), as `promptopt run` leaves one."""
    run_id = str(records["run_id"].iloc[0])
    run_dir.mkdir(parents=True, exist_ok=True)
    url = default_url(run_dir)
    store = Store(url)
    store.start_run(run_id, {"simulated": True}, "sim")
    rows = records.astype(object).where(records.notna(), None).to_dict(orient="records")
    for start in range(0, len(rows), 20_000):
        store.add(Record(**row) for row in rows[start : start + 20_000])
    (run_dir / "run.json").write_text(json.dumps({"run_id": run_id, "storage": url, "plan": {}}))
    return run_dir
