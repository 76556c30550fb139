"""The README's library examples run as written, in order, and print the truth a scripted model planted.

The scripted model stands where the README's `http://127.0.0.1:8000/v1` is; it knows MedQA's
first ten val and test questions and answers right on a known set of them (two in three), "A"
on anything else.
"""

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from promptopt.tasks import load_task
from promptopt.testing import ScriptedServer, fill_fields

README = Path(__file__).resolve().parent.parent / "README.md"
RUN_EACH = """
import contextlib, io, json, sys, traceback
outputs = []
for code in json.loads(sys.argv[1]):
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            exec(compile(code, "<readme>", "exec"), {"__name__": "__main__"})
        outputs.append({"stdout": out.getvalue()})
    except BaseException:
        outputs.append({"stdout": out.getvalue(), "error": traceback.format_exc()})
        break
print(json.dumps(outputs))
"""
URL = "http://127.0.0.1:8000/v1"


def examples() -> list[str]:
    text = README.read_text()
    section = text[text.index("## Library API") :]
    block = section[section.index("```sh") : section.index("```", section.index("```sh") + 5)]
    return [line for line in block.splitlines() if line.startswith("python -c ")]


@pytest.fixture(scope="module")
def world():
    task = load_task("medqa")
    items = task.examples("val", 10) + task.examples("test", 10)
    right = {ex.id for i, ex in enumerate(items) if i % 3 != 2}

    def reply(prompt: str) -> str:
        ex = next((ex for ex in items if ex.inputs["question"] in prompt), None)
        if ex is None:
            letter = "OK" if "Say OK." in prompt else "A"
        else:
            letters = list(ex.inputs["options"])
            letter = ex.gold if ex.id in right else letters[(letters.index(ex.gold) + 1) % len(letters)]
        return fill_fields(prompt, letter) if "[[ ## " in prompt else f" {letter}"

    share = {
        split: sum(ex.id in right for ex in task.examples(split, 10)) / 10 for split in ("val", "test")
    }  # fmt: skip
    with ScriptedServer(reply) as server:
        yield server, share


def test_every_library_function_has_a_readme_example():
    import promptopt

    shown = " ".join(examples())
    missing = [name for name in promptopt.API if f"promptopt.{name}(" not in shown]
    assert missing == []


def test_the_readme_examples_run_in_order_and_print_the_planted_truth(world, tmp_path):
    server, share = world
    lines = examples()
    codes = [ast.literal_eval(line.removeprefix("python -c ")).replace(URL, server.base_url) for line in lines]
    # one interpreter runs every line in order, each as its own __main__ with fresh globals, so the
    # libraries are imported once (a dozen interpreters spent most of this test importing LiteLLM)
    done = subprocess.run([sys.executable, "-c", RUN_EACH, json.dumps(codes)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=900)  # fmt: skip
    outputs = json.loads(done.stdout.splitlines()[-1]) if done.returncode == 0 else []
    failed = next((i for i, out in enumerate(outputs) if out.get("error")), None)
    why = outputs[failed]["error"] if failed is not None else done.stderr[-2000:]
    assert done.returncode == 0 and failed is None, f"{lines[failed or 0]}\n{why}"
    outputs = [out["stdout"].strip() for out in outputs]
    run, search, estimate, planned, compiled, evaluated, loaded, report, bundled, lists, task, check, powered = outputs
    assert run == f"complete [{round(share['test'], 2)}]"  # every config is right on the planted share
    assert re.fullmatch(r"(predict|cot)-none-[0-9a-f]{8}", search)
    assert re.fullmatch(r"\d+ LM calls at most", estimate) and int(estimate.split()[0]) > 0
    assert re.fullmatch(r"50 \['none', 'bootstrap'\] run-[0-9a-f]{10}", planned)
    assert compiled == f"{share['val']} 10"
    score, low, high, n = evaluated.split()
    assert float(score) == share["test"] and float(low) < float(score) < float(high) and n == "10"
    assert loaded == "A"
    assert f"{share['test']})]" in report and "local/gemma-3-270m" in report
    assert bundled == "0 [1.0]"  # reproduced exactly; the same scripted model gives the same answers
    assert "'medqa'" in lists or "medbullets" in lists
    assert "'bootstrap'" in lists and "'roman_numeral'" not in lists and "'multiple_choice'" in lists
    assert task == "medqa 773"
    assert re.fullmatch(r"'\s*OK' True", check)  # a typed result: the reply and its time
    # MedQA's 773 test items at 50% accuracy with independent errors detect 7.1 points; 5 points at
    # 20% discordance need Connor's (1.96 sqrt(.2) + 0.8416 sqrt(.2 - .05^2))^2 / .05^2 = 625.5 items
    assert powered == "773 7.1 626"
