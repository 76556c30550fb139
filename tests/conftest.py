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
