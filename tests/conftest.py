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
    """Run a `promptopt` command the way a user does: a process of its own, the CLI's entry point,
    its output and exit code. The process is forked from one that has already imported the
    libraries (`_Zygote`), so each command skips the seconds LiteLLM takes to import;
    PROMPTOPT_TEST_PLAIN_CLI=1 runs the installed `promptopt` executable instead."""
    full_env = {**os.environ, **(env or {})}
    if os.environ.get("PROMPTOPT_TEST_PLAIN_CLI") == "1" or not hasattr(os, "fork"):
        exe = Path(sys.executable).with_name("promptopt")
        return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=timeout, env=full_env)
    return _Zygote.get().run(list(args), full_env, timeout)


_ZYGOTE = """
import json, os, sys, traceback
import dspy, litellm  # noqa: F401  (what nearly every command imports: paid once, here)
import promptopt.api, promptopt.cli, promptopt.engine, promptopt.searcher  # noqa: F401
for line in sys.stdin:
    req = json.loads(line)
    sys.stdout.flush()
    pid = os.fork()
    if pid == 0:  # the command, in a process of its own with the libraries already loaded
        code = 1
        try:
            os.chdir(req["cwd"])
            os.environ.clear()
            os.environ.update(req["env"])
            for fd, path, flags in ((0, os.devnull, os.O_RDONLY), (1, req["out"], os.O_WRONLY | os.O_TRUNC),
                                    (2, req["err"], os.O_WRONLY | os.O_TRUNC)):
                os.dup2(os.open(path, flags), fd)
            sys.argv = ["promptopt", *req["argv"]]
            try:
                promptopt.cli.main()
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            except BaseException:
                traceback.print_exc()
        finally:  # what an interpreter does on exit: wait for its threads, run its exit handlers
            try:
                import atexit, threading
                threading._shutdown()
                atexit._run_exitfuncs()
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)
    print(json.dumps({"pid": pid}), flush=True)
    _, status = os.waitpid(pid, 0)
    print(json.dumps({"code": os.waitstatus_to_exitcode(status)}), flush=True)
"""


class _Zygote:
    """One pre-imported Python per test process that forks a child for each `cli` command."""

    _one = None

    def __init__(self) -> None:
        import atexit
        import shutil
        import tempfile

        self.dir = Path(tempfile.mkdtemp(prefix="promptopt-cli-"))
        atexit.register(shutil.rmtree, self.dir, True)  # the output files of the last command
        self.proc = subprocess.Popen([sys.executable, "-c", _ZYGOTE], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, env=dict(os.environ))  # fmt: skip

    @classmethod
    def get(cls) -> "_Zygote":
        if cls._one is None or cls._one.proc.poll() is not None:
            cls._one = cls()
        return cls._one

    def run(self, argv: list[str], env: dict, timeout: float) -> subprocess.CompletedProcess:
        import select
        import signal
        import time

        out, err = self.dir / "out", self.dir / "err"
        out.write_text("")
        err.write_text("")
        request = {"argv": argv, "env": env, "cwd": os.getcwd(), "out": str(out), "err": str(err)}
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        pid = json.loads(self.proc.stdout.readline())["pid"]
        deadline = time.monotonic() + timeout
        while not select.select([self.proc.stdout], [], [], max(0.0, deadline - time.monotonic()))[0]:
            if time.monotonic() >= deadline:
                os.kill(pid, signal.SIGKILL)
                self.proc.stdout.readline()
                raise subprocess.TimeoutExpired(["promptopt", *argv], timeout, out.read_text(), err.read_text())
        code = json.loads(self.proc.stdout.readline())["code"]
        return subprocess.CompletedProcess(["promptopt", *argv], code, out.read_text(), err.read_text())


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


@pytest.fixture(autouse=True)
def _scripted_replies_do_not_crash():
    """A scripted reply that raises by mistake (not a planted fault) drops the connection, and the
    client retries it after a backoff: the test would pass, only slowly. Fail it instead."""
    from promptopt.testing import REPLY_CRASHES

    REPLY_CRASHES.clear()
    yield
    assert not REPLY_CRASHES, f"a scripted server's reply raised (the client retried it after a backoff): {REPLY_CRASHES[:3]}"
