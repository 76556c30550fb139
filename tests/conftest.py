import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from promptopt.tasks import load_task
from promptopt.testing import ScriptedServer, structured_answer

ROOT = Path(__file__).resolve().parent.parent


def cli(*args: str, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run the installed `promptopt` command the way a user does."""
    exe = Path(sys.executable).with_name("promptopt")
    return subprocess.run(
        [str(exe), *args], capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})}
    )


_MANY = """
import contextlib, io, json, os, sys
from promptopt.cli import main
out = []
for argv, env in json.loads(sys.argv[1]):
    saved = dict(os.environ)
    os.environ.update(env)
    for key in [k for k, v in env.items() if v is None]:
        os.environ.pop(key, None)
    stdout, stderr, code = io.StringIO(), io.StringIO(), 0
    sys.argv = ["promptopt", *argv]
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    os.environ.clear()
    os.environ.update(saved)
    out.append([code, stdout.getvalue(), stderr.getvalue()])
print(json.dumps(out))
"""


def cli_many(*commands: list[str], env: dict | None = None, timeout: float = 600) -> list[subprocess.CompletedProcess]:
    """Several `promptopt` commands that fail (or finish) before any LM call, run one after another
    in one interpreter through the CLI's own entry point: what each printed and its exit code, as
    `cli` gives them, without paying the libraries' import once per command."""
    done = subprocess.run([sys.executable, "-c", _MANY, json.dumps([[list(c), env or {}] for c in commands])],
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return [subprocess.CompletedProcess(list(c), code, out, err)
            for c, (code, out, err) in zip(commands, json.loads(done.stdout.splitlines()[-1]), strict=True)]  # fmt: skip


@pytest.fixture(scope="session")
def medqa():
    return load_task("medqa")


def exam_server(task, right: set[str], limit: int):
    """A scripted model that knows the gold answers and answers right exactly on `right`.

    It answers in the style the prompt asks for: a bare letter after "Answer:", DSPy's field
    format otherwise. Wrong answers name the next option letter, so they always parse.
    """
    examples = task.examples("val", limit) + task.examples("test", limit)
    by_question = {ex.inputs["question"]: ex for ex in examples}

    def reply(prompt: str) -> str:
        ex = next(ex for q, ex in by_question.items() if q in prompt)
        letters = list(ex.inputs["options"])
        letter = ex.gold if ex.id in right else letters[(letters.index(ex.gold) + 1) % len(letters)]
        return structured_answer(letter) if "[[ ## " in prompt else f" {letter}"

    return ScriptedServer(reply)


@pytest.fixture
def structured():
    return structured_answer
