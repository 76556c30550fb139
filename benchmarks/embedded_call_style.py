"""Which call style makes the embedded base model's answers parse? Prints one table.

Gemma 3 270M is a base model. Two ways to call it through the same chat API:
  plain    — the server joins message texts with no template (promptopt.server.PLAIN_TEMPLATE), and structured
             prompts end with the first output field's marker (what promptopt uses);
  template — the chat template stored in the GGUF, structured prompts without the marker.
For each, `baseline` and `cot` on the first N MedQA test questions (M for the template style,
which is slower and hardly ever parses; default M = N).

    .venv/bin/python benchmarks/embedded_call_style.py [N [M]]
"""

import sys
import tempfile
import time
from pathlib import Path

from promptopt.config import Config
from promptopt.models import build_lm, resolve_model, with_endpoint
from promptopt.registry import get_strategy
from promptopt.scoring import evaluate
from promptopt.server import start
from promptopt.session import adapter_for
from promptopt.store import Store, default_url
from promptopt.tasks import load_task

n = int(sys.argv[1]) if len(sys.argv) > 1 else 40
sizes = {"plain": n, "template": int(sys.argv[2]) if len(sys.argv) > 2 else n}
task = load_task("medqa")
tmp = Path(tempfile.mkdtemp())
store = Store(default_url(tmp))
print(f"embedded model, MedQA test, first {sizes['plain']} questions (template: {sizes['template']})")
print(f"{'style':<9} {'strategy':<9} {'parsed %':>8} {'accuracy %':>10} {'tokens in/out per q':>20} {'s per q':>8}")
for style, server_format in (("plain", "plain"), ("template", "template")):
    examples = task.examples("test", sizes[style])
    server = start(chat_format=server_format)
    try:
        model = with_endpoint(
            resolve_model("local/gemma-3-270m", call_style="text" if style == "plain" else "chat"), server.base_url
        )
        model = model.__class__(**{**model.__dict__, "digest": f"{model.digest}-{style}"})
        lm, adapter = build_lm(model), adapter_for(model)
        for name in ("baseline", "cot"):
            cfg = Config(name, knobs=get_strategy(name).knobs)
            program = get_strategy(name).build(task)
            started = time.monotonic()
            evaluate(program, examples, task=task, model=model, lm=lm, adapter=adapter, config=cfg, split="test",
                     run_id="call-style", store=store)  # fmt: skip
            wall = time.monotonic() - started
            df = store.records("call-style")
            df = df[(df.model == model.identity) & (df.strategy == name)]
            print(
                f"{style:<9} {name:<9} {100 * df.parse_ok.mean():8.1f} {100 * df.score.mean():10.1f} "
                f"{df.prompt_tokens.mean():10.0f}/{df.completion_tokens.mean():<9.0f} {wall / len(df):8.1f}",
                flush=True,
            )
    finally:
        server.stop()
