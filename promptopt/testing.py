"""A scripted OpenAI-compatible server on 127.0.0.1, for tests and benchmarks.

Real HTTP, real LiteLLM on the client side; only the model is scripted. `reply(prompt)` receives
the request's text (all message contents joined) and returns the completion text; the server
counts calls and keeps every request so tests can assert what was sent.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from promptopt.images import sent_digests

# Replies that raised something other than a planted fault (ScriptedHTTPError, ScriptedFault):
# the connection drops and the client retries after a backoff, so a test passes slowly instead
# of failing; the suite's conftest fails a test whose servers crashed like this.
REPLY_CRASHES: list[str] = []


class ScriptedHTTPError(Exception):
    """Raise from `reply` to answer with an HTTP error status instead of a completion."""

    def __init__(self, status: int, message: str = "scripted failure", headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.headers = status, headers or {}


class ScriptedFault(Exception):
    """Raise from `reply` to answer the way a faulty endpoint does.

    kinds: ``slow`` (wait `seconds`, then answer normally: a client with a shorter timeout has
    given up by then), ``malformed`` (status 200 with a body that is not JSON), ``empty`` (a
    well-formed completion with no content).
    """

    KINDS = ("slow", "malformed", "empty")

    def __init__(self, kind: str, seconds: float = 0.0, text: str = ""):
        if kind not in self.KINDS:
            raise ValueError(f"unknown fault {kind!r}; one of {self.KINDS}")
        super().__init__(kind)
        self.kind, self.seconds, self.text = kind, seconds, text


FAULTS = ("429", "500", "slow", "malformed", "empty")


def faulty(
    reply: Callable[[str], str], rate: float, seed: int = 0, slow_s: float = 2.0, max_per_prompt: int | None = None
) -> Callable[[str], str]:
    """`reply`, except that a seeded `rate` of calls fail, cycling through every kind in FAULTS.

    Which calls fail depends only on the seed and the order of calls, so a retry of a failed
    call usually succeeds, as it does against a real overloaded endpoint. `max_per_prompt`
    bounds the faults one prompt can get, so a test can know which prompts outlast every retry.
    """
    import random
    from collections import Counter

    rng, lock, count, per_prompt = random.Random(seed), threading.Lock(), [0], Counter()

    def wrapped(prompt: str) -> str:
        with lock:
            fail = rng.random() < rate and (max_per_prompt is None or per_prompt[prompt] < max_per_prompt)
            kind = FAULTS[count[0] % len(FAULTS)] if fail else None
            count[0] += fail
            per_prompt[prompt] += fail
        if kind == "429":
            raise ScriptedHTTPError(429, "rate limited")
        if kind == "500":
            raise ScriptedHTTPError(500, "internal error")
        if kind == "slow":
            raise ScriptedFault("slow", seconds=slow_s, text=reply(prompt))
        if kind is not None:
            raise ScriptedFault(kind)
        return reply(prompt)

    return wrapped


@dataclass
class ScriptedServer:
    reply: Callable[[str], str]
    model: str = "scripted"
    calls: int = 0
    requests: list[dict] = field(default_factory=list)
    faults: dict[str, int] = field(default_factory=dict)  # faults injected, by kind
    auth: list[str | None] = field(default_factory=list)  # each request's Authorization header
    replies: dict[str, Callable[[str], str]] = field(default_factory=dict)  # per model name, several behind one URL
    # prompt -> {token: logprob}: the top log-probabilities a chat call asking for them gets
    # (None: the server returns none, as a chat model without logprobs support does)
    top_logprobs: Callable[[str], dict[str, float]] | None = None
    # text -> [(token, logprob)] covering the text: what the completions API echoes for it with
    # echo=true (None: echo is refused, as on a chat-only endpoint)
    echo: Callable[[str], list[tuple[str, float]]] | None = None
    # (prompt, digests of the request's images) -> completion: a vision model's reply, in place
    # of `reply`; `images` keeps each chat request's image digests (promptopt.images.sent_digests)
    vision: Callable[[str, list[str]], str] | None = None
    images: list[list[str]] = field(default_factory=list)
    # tokens and calls per model name, synchronous and batched alike: what a provider bills
    usage: dict[str, dict[str, int]] = field(default_factory=dict)
    # the files and batches API (OpenAI's): a batch completes after `batch_polls` retrieves;
    # the first `batch_expire` requests of each batch come back failed (as expired requests do),
    # and `batched` counts the requests answered inside batches (not in `calls`)
    batch_polls: int = 1
    batch_expire: int = 0
    batched: int = 0
    files: dict[str, bytes] = field(default_factory=dict)
    batches: dict[str, dict] = field(default_factory=dict)
    _httpd: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def base_url(self) -> str:
        assert self._httpd is not None
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def start(self) -> ScriptedServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def _send(self, status: int, body: dict, headers: dict[str, str] | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                path = self.path.split("?")[0].rstrip("/")
                if path.endswith("/models"):
                    self._send(200, {"object": "list", "data": [{"id": server.model, "object": "model"}]})
                elif "/files/" in path and path.endswith("/content") and path.split("/")[-2] in server.files:
                    data = server.files[path.split("/")[-2]]
                    self.send_response(200)
                    self.send_header("Content-Type", "application/octet-stream")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                elif "/batches/" in path and path.split("/")[-1] in server.batches:
                    self._send(200, server._poll(path.split("/")[-1]))
                else:
                    self._send(404, {"error": {"message": "not found"}})

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                path = self.path.split("?")[0].rstrip("/")
                if path.endswith("/files"):
                    self._send(200, server._upload(raw, self.headers.get("Content-Type", "")))
                    return
                if path.endswith("/batches"):
                    self._send(*server._create_batch(json.loads(raw or b"{}")))
                    return
                if path.endswith("/embeddings"):
                    self._send(200, server._embed(json.loads(raw or b"{}")))
                    return
                body = json.loads(raw or b"{}")
                if "messages" in body:
                    prompt = "\n\n".join(_text(m.get("content")) for m in body["messages"])
                else:
                    prompt = body.get("prompt", "")
                shown = sent_digests(body)
                with server._lock:
                    server.calls += 1
                    server.requests.append(body)
                    server.auth.append(self.headers.get("Authorization"))
                    server.images.append(shown)
                if "messages" not in body and body.get("echo"):
                    self._echo(body, prompt)
                    return
                try:
                    if server.vision is not None:
                        text = server.vision(prompt, shown)
                    else:
                        text = server.replies.get(str(body.get("model")), server.reply)(prompt)
                except ScriptedHTTPError as exc:
                    with server._lock:
                        server.faults[str(exc.status)] = server.faults.get(str(exc.status), 0) + 1
                    error = {"message": str(exc), "type": "scripted", "code": exc.status}
                    if exc.status == 400 and "context" in str(exc):  # as OpenAI says a prompt is too long
                        error |= {"type": "invalid_request_error", "code": "context_length_exceeded"}
                    self._send(exc.status, {"error": error}, exc.headers)
                    return
                except ScriptedFault as exc:
                    with server._lock:
                        server.faults[exc.kind] = server.faults.get(exc.kind, 0) + 1
                    if exc.kind == "malformed":
                        data = b'{"id": "x", "choices": [{"message": {"content": "trunc'
                        self.send_response(200)
                        self.send_header("Content-Type", "application/json")
                        self.send_header("Content-Length", str(len(data)))
                        self.end_headers()
                        self.wfile.write(data)
                        return
                    if exc.kind == "slow":
                        time.sleep(exc.seconds)
                    text = exc.text if exc.kind == "slow" else ""
                except Exception as exc:  # a bug in the script, not a planted fault: the client retries it
                    REPLY_CRASHES.append(f"{type(exc).__name__}: {exc}"[:300])
                    raise
                usage = server._bill(body, prompt, text)
                base = {
                    "id": f"x{time.time_ns()}",
                    "created": int(time.time()),
                    "model": body.get("model"),
                    "usage": usage,
                }
                if "messages" in body:
                    choice = {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}
                    if body.get("logprobs") and server.top_logprobs is not None:
                        tops = sorted(server.top_logprobs(prompt).items(), key=lambda kv: -kv[1])
                        tops = tops[: int(body.get("top_logprobs") or 1)]
                        entries = [{"token": t, "logprob": lp, "bytes": list(t.encode())} for t, lp in tops]
                        first = {**entries[0], "top_logprobs": entries} if entries else None
                        choice["logprobs"] = {"content": [first] if first else [], "refusal": None}
                        if entries:
                            choice["message"]["content"] = entries[0]["token"]
                    self._send(200, base | {"object": "chat.completion", "choices": [choice]})
                else:
                    choice = {"index": 0, "finish_reason": "stop", "text": text, "logprobs": None}
                    self._send(200, base | {"object": "text_completion", "choices": [choice]})

            def _echo(self, body: dict, prompt: str) -> None:
                if server.echo is None:
                    self._send(400, {"error": {"message": "echo is not supported", "type": "invalid_request_error"}})
                    return
                tokens, logprobs, offsets, at = [], [], [], 0
                for i, (token, logprob) in enumerate(server.echo(prompt)):
                    tokens.append(token)
                    logprobs.append(None if i == 0 else logprob)  # the first token has no context
                    offsets.append(at)
                    at += len(token)
                usage = {"prompt_tokens": len(tokens), "completion_tokens": 1, "total_tokens": len(tokens) + 1}
                lp = {"tokens": tokens, "token_logprobs": logprobs, "text_offset": offsets, "top_logprobs": None}
                choice = {"index": 0, "finish_reason": "length", "text": prompt, "logprobs": lp}
                self._send(200, {"id": f"x{time.time_ns()}", "object": "text_completion", "created": int(time.time()),
                                 "model": body.get("model"), "usage": usage, "choices": [choice]})  # fmt: skip

        class Server(ThreadingHTTPServer):
            request_queue_size = 1024  # socketserver's 5 drops connections when many calls are in flight

            def handle_error(self, request, client_address) -> None:
                pass  # e.g. a client that timed out and hung up before a slow reply

        self._httpd = Server(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        return self

    def _bill(self, body: dict, prompt: str, text: str) -> dict:
        """The call's usage (a token per word), added to the model's bill."""
        usage = {"prompt_tokens": len(prompt.split()), "completion_tokens": len(text.split())}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        with self._lock:
            bill = self.usage.setdefault(str(body.get("model")), {"calls": 0, "prompt_tokens": 0, "completion_tokens": 0})
            bill["calls"] += 1
            bill["prompt_tokens"] += usage["prompt_tokens"]
            bill["completion_tokens"] += usage["completion_tokens"]
        return usage

    def _embed(self, body: dict) -> dict:
        """POST /embeddings: a vector of word counts hashed into 64 buckets per input (texts that
        share words are near), a token per word, billed to the model like any call."""
        import hashlib

        texts = body.get("input") or []
        texts = [texts] if isinstance(texts, str) else texts
        data = []
        for i, text in enumerate(texts):
            vector = [0.0] * 64
            for word in str(text).lower().split():
                vector[int(hashlib.md5(word.encode()).hexdigest(), 16) % 64] += 1.0
            data.append({"object": "embedding", "index": i, "embedding": vector})
        tokens = sum(len(str(t).split()) for t in texts)
        with self._lock:
            bill = self.usage.setdefault(str(body.get("model")), {"calls": 0, "prompt_tokens": 0, "completion_tokens": 0})
            bill["calls"] += 1
            bill["prompt_tokens"] += tokens
        return {"object": "list", "data": data, "model": body.get("model"),
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}  # fmt: skip

    def _upload(self, raw: bytes, content_type: str) -> dict:
        """POST /files: a multipart form with the file and its purpose."""
        from email.parser import BytesParser
        from email.policy import HTTP

        form = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + raw)
        parts = {part.get_param("name", header="content-disposition"): part for part in form.iter_parts()}
        data = parts["file"].get_payload(decode=True)
        with self._lock:
            file_id = f"file-{len(self.files) + 1}"
            self.files[file_id] = data
        return {"id": file_id, "object": "file", "bytes": len(data), "created_at": int(time.time()),
                "filename": parts["file"].get_filename() or "batch.jsonl", "purpose": "batch", "status": "processed"}  # fmt: skip

    def _create_batch(self, body: dict) -> tuple[int, dict]:
        if body.get("input_file_id") not in self.files:
            return 400, {"error": {"message": "input_file_id not found", "type": "invalid_request_error"}}
        lines = [json.loads(line) for line in self.files[body["input_file_id"]].splitlines() if line.strip()]
        with self._lock:
            batch_id = f"batch_{len(self.batches) + 1}"
            self.batches[batch_id] = {
                "id": batch_id, "object": "batch", "endpoint": body.get("endpoint"), "errors": None,
                "input_file_id": body["input_file_id"], "completion_window": body.get("completion_window", "24h"),
                "status": "validating", "output_file_id": None, "error_file_id": None,
                "created_at": int(time.time()), "metadata": body.get("metadata"),
                "request_counts": {"total": len(lines), "completed": 0, "failed": 0}, "_polls": 0, "_lines": lines,
            }  # fmt: skip
        return 200, self._public(self.batches[batch_id])

    @staticmethod
    def _public(batch: dict) -> dict:
        return {k: v for k, v in batch.items() if not k.startswith("_")}

    def _poll(self, batch_id: str) -> dict:
        """GET /batches/ID: in progress until the `batch_polls`-th look, then answered in full."""
        batch = self.batches[batch_id]
        with self._lock:
            batch["_polls"] += 1
            due = batch["status"] not in ("completed", "failed", "expired") and batch["_polls"] >= self.batch_polls
            if not due and batch["status"] == "validating":
                batch["status"] = "in_progress"
        if due:
            self._answer_batch(batch)
        return self._public(batch)

    def _answer_batch(self, batch: dict) -> None:
        out, errors = [], []
        for i, line in enumerate(batch["_lines"]):
            body, custom_id = line["body"], line["custom_id"]
            if i < self.batch_expire:
                errors.append({"id": f"r-{custom_id}", "custom_id": custom_id, "response": None,
                               "error": {"code": "batch_expired", "message": "not processed within 24h"}})  # fmt: skip
                continue
            prompt = "\n\n".join(_text(m.get("content")) for m in body["messages"])
            text = self.replies.get(str(body.get("model")), self.reply)(prompt)
            with self._lock:
                self.batched += 1
                self.requests.append(body)
            choice = {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}
            reply = {"id": f"x{time.time_ns()}", "object": "chat.completion", "created": int(time.time()),
                     "model": body.get("model"), "usage": self._bill(body, prompt, text), "choices": [choice]}  # fmt: skip
            out.append({"id": f"r-{custom_id}", "custom_id": custom_id, "response": {"status_code": 200, "body": reply},
                        "error": None})  # fmt: skip
        with self._lock:
            for kind, rows in (("output_file_id", out), ("error_file_id", errors)):
                if rows:
                    batch[kind] = f"file-{len(self.files) + 1}"
                    self.files[batch[kind]] = "".join(json.dumps(r) + "\n" for r in rows).encode()
            batch["status"] = "completed"
            batch["request_counts"] = {"total": len(batch["_lines"]), "completed": len(out), "failed": len(errors)}

    def stop(self) -> None:
        if self._httpd:
            self._httpd.shutdown()
            self._httpd.server_close()

    def __enter__(self) -> ScriptedServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _text(content) -> str:
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return content or ""


def structured_answer(letter: str, reasoning: str = "Considering each option in turn.") -> str:
    """A completion in DSPy ChatAdapter's field format, as a well-behaved chat model writes it."""
    return f"[[ ## reasoning ## ]]\n{reasoning}\n\n[[ ## answer ## ]]\n{letter}\n\n[[ ## completed ## ]]"


def requested_fields(prompt: str) -> list[str]:
    """Output fields a DSPy ChatAdapter prompt asks for, in order."""
    import re

    tail = prompt.rsplit("Respond with the corresponding output fields", 1)[-1]
    return [f for f in re.findall(r"`\[\[ ## (\w+) ## \]\]`", tail) if f != "completed"]


def fill_fields(prompt: str, answer: str, verdict: str = "yes") -> str:
    """A well-formed reply to any DSPy ChatAdapter (or JSON adapter) prompt: `answer` in the answer field."""
    import json
    import re

    values = {"answer": answer, "verdict": verdict}
    asked = re.search(r"Respond with a JSON object in the following order of fields: (.*)\.\s*$", prompt)
    if asked:  # DSPy's JSON adapter (e.g. GEPA proposing an instruction)
        names = re.findall(r"`(\w+)`", asked.group(1))
        return json.dumps({f: values.get(f, "Considering each option in turn.") for f in names})
    parts = [f"[[ ## {f} ## ]]\n{values.get(f, 'Considering each option in turn.')}" for f in requested_fields(prompt)]
    return "\n\n".join([*parts, "[[ ## completed ## ]]"])


def shown_options(prompt: str, options: dict[str, str]) -> dict[str, str]:
    """Letter -> option text as this prompt shows them (orders may be shuffled).

    An option is known by its first line, since some real options carry a stray second line.
    """
    import re

    by_line = {v.strip().splitlines()[0].strip() if v.strip() else "": v for v in options.values()}
    shown = {}
    for letter, text in re.findall(r"^([A-Z])\. (.*)$", prompt, flags=re.MULTILINE):
        if text.strip() in by_line:
            shown[letter] = by_line[text.strip()]
    return shown


class CompileOracle:
    """A scripted model for compiles: right on a seeded share `p` of the task's questions (the
    same prompt always gets the same reply, so a replayed compile and a fresh one see one world);
    any other prompt (an instruction proposer's, a reflection) gets a well-formed reply. The
    calls that are not about a `scored` split's question are the compile's: `compile_calls`
    counts them, and `on_compile_call(count)` is called at each (a test kills a process there)."""

    def __init__(self, task, p: float = 0.6, scored: str = "val"):
        self.p, self.scored, self.compile_calls, self.on_compile_call = p, scored, 0, None
        self.examples = [(split, ex) for split in ("train", scored) for ex in task.examples(split)]
        self._lock = threading.Lock()

    def __call__(self, prompt: str) -> str:
        import hashlib
        import random

        at, split, ex = max(((prompt.rfind(ex.inputs["question"]), split, ex) for split, ex in self.examples),
                            key=lambda found: found[0])  # fmt: skip
        if split != self.scored or at < 0:
            with self._lock:
                self.compile_calls += 1
                if self.on_compile_call:
                    self.on_compile_call(self.compile_calls)
        shown = shown_options(prompt[at:], ex.inputs["options"]) if at >= 0 else {}
        right = next((k for k, v in shown.items() if v == ex.inputs["options"][ex.gold]), None)
        letter = "A"
        if right is not None:
            rng = random.Random(hashlib.sha1(prompt.encode()).hexdigest())
            letter = right if rng.random() < self.p else next(k for k in shown if k != right)
        return fill_fields(prompt, letter) if "[[ ## " in prompt else f" {letter}"  # the baseline asks for a letter
