"""Models: a LiteLLM model string plus generation settings, endpoint and price.

Every call goes through LiteLLM (DSPy's ``engine="litellm"``). Temperature and max_tokens are
always set explicitly. API keys come only from the environment, read by LiteLLM itself; they are
never stored on a Model, so nothing that serializes a Model can leak one.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import json
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from promptopt import _env  # noqa: F401  (offline price table before LiteLLM is imported)
from promptopt.errors import CONTEXT_ERROR, UserError

LOCAL_PREFIX = "local/"


@dataclass(frozen=True)
class Model:
    """What to call and how. `name` is what the user typed and what reports show."""

    name: str
    litellm_model: str
    api_base: str | None = None
    temperature: float = 0.0
    max_tokens: int = 512
    call_style: Literal["chat", "text"] = "chat"
    # USD per million tokens; None means LiteLLM's price table.
    price_in: float | None = None
    price_out: float | None = None
    stop: tuple[str, ...] = ()
    timeout_s: float = 120.0  # per call; a call that takes longer is retried
    num_retries: int = 4  # for rate limits, server errors, timeouts, malformed or empty replies
    backoff_s: float = 1.0  # first wait before a retry; doubles each time, at most 60 s
    digest: str | None = None  # for embedded models: the weights file, since the port changes
    rpm: float | None = None  # requests per minute this process may send to the endpoint; None: no limit
    # measured tokens per second, prompt and generation, one request at a time; None: unknown.
    # A dry run turns them into a wall-time estimate.
    prompt_tok_s: float | None = None
    gen_tok_s: float | None = None

    @property
    def identity(self) -> str:
        """Model plus endpoint: two servers behind one model name never share answers."""
        if self.digest:
            return f"{self.name}#{self.digest}"
        if self.api_base:
            return f"{self.name}@{redact_url(self.api_base)}"
        return self.name

    @property
    def is_local(self) -> bool:
        return self.name.startswith(LOCAL_PREFIX)


def redact_url(url: str) -> str:
    """An endpoint without user, password, query or fragment: safe to store and print."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))


LOCAL_MODELS = {
    # Gemma 3 270M is a base model: plain text with an "Answer:" cue parses far more often than
    # its chat template (measured, see README "The embedded model"); "text" selects the server's
    # plain format (promptopt.server.PLAIN_TEMPLATE), "chat" the template stored in the GGUF.
    # 256 new tokens (about 4 s at 60 tokens/s here) bound a reasoning step; the stop ends a
    # structured answer at DSPy's closing marker instead of letting a base model ramble on.
    "local/gemma-3-270m": dict(
        litellm_model="openai/gemma-3-270m",
        call_style="text",
        price_in=0.0,
        price_out=0.0,
        max_tokens=256,
        stop=("[[ ## completed ## ]]",),
        # llama-server on 2 cores, one sequence (BENCHMARKS.md section 5): about 520 prompt and
        # 66 generated tokens per second
        prompt_tok_s=520.0,
        gen_tok_s=66.0,
        # A local server queues what it cannot decode yet, so a slow call is waiting, not lost, and
        # a retry only queues the same work again. A full reasoning step takes about 4 s alone, and
        # 4 threads on a machine busy with other work took over 120 s (the hosted default): 600 s
        # trips only on a server that has stopped answering.
        timeout_s=600.0,
    ),
}


# Environment overrides for the retry policy (documented in README.md, "Reliability").
RETRY_ENV = {
    "timeout_s": "PROMPTOPT_TIMEOUT_S",
    "num_retries": "PROMPTOPT_RETRIES",
    "backoff_s": "PROMPTOPT_BACKOFF_S",
    "rpm": "PROMPTOPT_RPM",
}


def _retry_settings() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, var in RETRY_ENV.items():
        raw = os.environ.get(var)
        if raw is None or raw == "":
            continue
        try:
            value = int(raw) if key == "num_retries" else float(raw)
        except ValueError:
            raise UserError(f"{var}={raw!r} is not a number; e.g. {var}=30.") from None
        if value < 0 or (key in ("timeout_s", "rpm") and value == 0):
            raise UserError(f"{var}={raw!r} must be a positive number.")
        out[key] = value
    return out


def resolve_model(name: str, api_base: str | None = None, **settings: Any) -> Model:
    """A Model from a user's string, or one clear sentence saying why it is not one."""
    settings = {**_retry_settings(), **settings}
    if not name or name != name.strip():
        raise UserError(f"Model {name!r} is not a model string; use provider/model, e.g. openai/gpt-4o-mini.")
    if name.startswith(LOCAL_PREFIX):
        if name not in LOCAL_MODELS:
            raise UserError(f"Unknown embedded model {name!r}; valid embedded models: {', '.join(LOCAL_MODELS)}.")
        from promptopt.server import model_digest

        return Model(name=name, api_base=api_base, digest=model_digest(), **{**LOCAL_MODELS[name], **settings})
    if api_base is not None:
        check_url(api_base)
    if "/" not in name or name.startswith("/") or name.endswith("/"):
        raise UserError(
            f"Model {name!r} has no provider prefix; use provider/model, e.g. openai/gpt-4o-mini, "
            "ollama_chat/llama3.2 or local/gemma-3-270m."
        )
    import litellm

    try:
        litellm.get_llm_provider(name, api_base=api_base)
    except Exception:
        raise UserError(
            f"Model {name!r} names a provider LiteLLM does not know; use provider/model, e.g. "
            "openai/gpt-4o-mini, anthropic/claude-3-5-haiku-latest or local/gemma-3-270m."
        ) from None
    from dspy.clients.lm import _is_openai_reasoning_model

    if _is_openai_reasoning_model(name):  # o-series and GPT-5 take no temperature but 1 and think in their tokens
        settings = {"temperature": 1.0, "max_tokens": 16000, **settings}
    return Model(name=name, litellm_model=name, api_base=api_base, **settings)


def _missing_keys(model: Model) -> list[str]:
    import litellm

    for var in [k for k, v in os.environ.items() if k.endswith("_KEY") and not v.strip()]:
        del os.environ[var]  # an empty key variable is an unset one (LiteLLM would count it as set)

    env = litellm.validate_environment(model.litellm_model)
    return [] if env.get("keys_in_environment") else [k for k in env.get("missing_keys", []) if "KEY" in k]


def check_vision(model: Model, task: str) -> None:
    """Refuse, before any call, a model that cannot be shown an image task's images: the embedded
    model and any model called through the text-completions API, and a model LiteLLM's table lists
    without vision. A model the table does not know (a local server's) is asked as it is."""
    how = ("use a vision model: a hosted one LiteLLM lists with vision (e.g. openai/gpt-4o-mini) or an "
           "OpenAI-compatible server that takes images (llama-server with --mmproj, vLLM) via --api-base")
    if model.is_local or model.call_style == "text":
        raise UserError(f"Task {task} shows images and model {model.name} reads text only; {how}.")
    import litellm

    try:
        info = litellm.get_model_info(model.litellm_model)
    except Exception:
        return  # not in the table: a server of the user's own, which says itself if it takes no images
    if not info.get("supports_vision"):
        raise UserError(f"Task {task} shows images and LiteLLM lists model {model.name} without vision; {how}.")


def check_credentials(model: Model) -> None:
    """Fail before any call when a hosted model's API key is not in the environment."""
    if model.api_base or model.is_local:
        return  # an endpoint of the user's own; its auth problems surface on the first call
    missing = _missing_keys(model)
    if missing:
        raise UserError(
            f"Model {model.name} needs {' or '.join(missing)} in the environment; set it, pass --api-key-file "
            "PATH, or point --api-base at an OpenAI-compatible server."
        )


def use_api_key_file(path: str, models: list[str], api_base: str | None = None) -> None:
    """Put the key in `path` into the environment variable each model's provider reads, for this
    process only; the key is never stored or printed."""
    from pathlib import Path

    try:
        key = Path(path).read_text().strip()
    except OSError as exc:
        raise UserError(f"Cannot read --api-key-file {path} ({exc.strerror}).") from None
    if not key or len(key.splitlines()) > 1:
        raise UserError(f"--api-key-file {path} must hold one API key on one line.")
    import litellm

    for name in models:
        model = resolve_model(name, api_base)
        if model.is_local:
            continue
        provider = litellm.get_llm_provider(model.litellm_model, api_base=api_base)[1]
        var = (_missing_keys(model) or [f"{provider.upper()}_API_KEY"])[0]
        os.environ[var] = key


def check_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UserError(f"--api-base {redact_url(url) or url!r} is not an http(s) URL; e.g. http://127.0.0.1:8000/v1.")


# ---------------------------------------------------------------- per-example call accounting


@dataclass
class CallLog:
    """LM calls made while scoring one example (set per worker thread via a context variable)."""

    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    outputs: list[str] = field(default_factory=list)
    sent: list[dict] = field(default_factory=list)  # each call's request as sent: {"messages": [...]} or {"prompt": ...}
    batched: int = 0  # calls answered from a provider batch (promptopt.batch), at its price
    embedding: dict = field(default_factory=dict)  # hosted embedding calls (kNN's litellm: embedder), apart
    asked: dict[str, int] = field(default_factory=dict)  # batch mode: times each request was asked in this item
    judged: list = field(default_factory=list)  # batch mode: (round, verdict key) of the judge calls this item made

    def embedded(self, calls: int, tokens: int, cost: float) -> None:
        """Count an embedding call (role `embedding` in the ledger), apart from the LM calls."""
        with _count_lock:
            for key, value in (("lm_calls", calls), ("prompt_tokens", tokens), ("cost_usd", cost)):
                self.embedding[key] = self.embedding.get(key, 0) + value

    def usage(self) -> dict[str, int | float]:
        """What the calls cost, as the store's columns name it."""
        return {"lm_calls": self.calls, "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens, "cost_usd": self.cost_usd}  # fmt: skip


current_log: contextvars.ContextVar[CallLog | None] = contextvars.ContextVar("promptopt_call_log", default=None)
_count_lock = threading.Lock()


@contextlib.contextmanager
def counting_compile(log: CallLog, *lms, journal=None) -> Iterator[CallLog]:
    """Count every call these LMs make in this block, in any thread, into `log` (and keep each in
    `journal`, a promptopt.checkpoint.CallJournal, replaying what it already holds): optimizers
    score candidates in worker threads of their own, which do not inherit context variables, so
    the log rides on the LM objects themselves (nothing module-wide: two compiles on two LMs
    count apart). Copies an optimizer makes inside the block (a higher temperature) inherit both."""
    token = current_log.set(log)
    for lm in lms:
        lm.compile_log, lm.compile_journal = log, journal
    try:
        yield log
    finally:
        for lm in lms:
            lm.compile_log = lm.compile_journal = None
        current_log.reset(token)


class RateLimiter:
    """Spaces the starts of requests to one endpoint at least 60 / rpm seconds apart, across all
    threads of the process, so a provider's requests-per-minute limit is kept without a storm of
    429s and retries (retries are paced too)."""

    def __init__(self, rpm: float | None):
        self.interval = 60.0 / rpm if rpm else 0.0
        self._next = 0.0
        self._lock = threading.Lock()

    def hold(self, seconds: float) -> None:
        """No request to the endpoint starts for `seconds`, from any thread: what a server's
        Retry-After asks of the client, not of one call."""
        import time

        with self._lock:
            self._next = max(self._next, time.monotonic() + seconds)

    def wait(self) -> None:
        import time

        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self.interval
        if start > now:
            time.sleep(start - now)


# One limiter per (endpoint, rpm) for the whole process: the limit belongs to the endpoint, which
# every LM of the process built for it shares (a run's task model, a search's, an optimizer's).
_limiters: dict[tuple[str, float], RateLimiter] = {}
_limiters_lock = threading.Lock()


def limiter_for(model: Model) -> RateLimiter:
    """The endpoint's limiter: spacing at --rpm when given, and a server's Retry-After for every thread."""
    key = (model.api_base or model.litellm_model.split("/", 1)[0], float(model.rpm or 0))
    with _limiters_lock:
        return _limiters.setdefault(key, RateLimiter(model.rpm))


def _price(model: Model, usage: dict, reported: float | None) -> float:
    if model.price_in is not None and model.price_out is not None:
        return (
            usage.get("prompt_tokens", 0) * model.price_in + usage.get("completion_tokens", 0) * model.price_out
        ) / 1e6
    return float(reported or 0.0)


class EmptyCompletion(Exception):
    """The endpoint answered with no content at all (no text and no completion tokens)."""


_last_usage = threading.local()


def _empty(outputs: list, usage: dict | None) -> bool:
    texts = [o if isinstance(o, str) else (o.get("text") or "") for o in outputs or []]
    return all(not t.strip() for t in texts) and not int((usage or {}).get("completion_tokens") or 0)


def build_lm(model: Model, **overrides: Any):
    """A dspy.LM for `model` whose every call is counted into the current CallLog.

    Retries are ours rather than DSPy's so that empty replies are retried too and the backoff
    is settable: rate limits, server errors, timeouts, malformed bodies and empty content are
    retried `num_retries` times, waiting `backoff_s`, then twice as long each time (or what the
    server's Retry-After asks). A call that still fails raises, and its example is recorded as
    an error.
    """
    import random
    import time

    import dspy
    from dspy.utils.exceptions import is_retryable_lm_error

    limiter = limiter_for(model)

    class CountingLM(dspy.LM):
        def __call__(self, *args, **kwargs):
            journal = getattr(self, "compile_journal", None)  # a compile's checkpoint (promptopt.checkpoint)
            key = journal.key(self, args, kwargs) if journal else None
            if key is not None and (kept := journal.replay(key)) is not None:
                return kept  # made before an interruption: replayed, not asked again
            batched, found = self._from_batch(args, kwargs)
            if found is not None:
                try:
                    outputs = self._call(*args, mock_response=found, **kwargs)
                except EmptyCompletion:  # the batch's answer was empty: asked again, synchronously, as a retry is
                    found = None
            if found is None:
                outputs = self._call(*args, **kwargs)
                if batched is not None:  # failed in its batch, answered now: kept for later rounds
                    self.batch_round.keep(batched, _last_usage.response)
            if key is not None:
                journal.keep(key, outputs, _last_usage.value, getattr(_last_usage, "cost", 0.0))
            return outputs

        def _from_batch(self, args, kwargs):
            """In a batched pass (promptopt.batch): the answer a batch brought (None: call as usual)."""
            batched = getattr(self, "batch_round", None)
            if batched is None:
                return None, None
            body = request_body(self, args, kwargs)
            log = current_log.get()
            plain = json.dumps(body, sort_keys=True, default=str)
            seen = log.asked.get(plain, 0) if log is not None else 0
            if log is not None:
                log.asked[plain] = seen + 1
            key = request_key(model.identity, body, seen)
            return key, batched.lookup(key, body)

        def _call(self, *args, **kwargs):
            for attempt in range(model.num_retries + 1):
                _last_usage.value, _last_usage.cost = None, 0.0
                if "mock_response" not in kwargs:  # a batch's answer asks nothing of the endpoint
                    limiter.wait()
                try:
                    outputs = super().__call__(*args, **kwargs)
                    if not _empty(outputs, _last_usage.value):
                        return outputs
                    exc: Exception = EmptyCompletion(f"{model.name} returned an empty completion")
                except Exception as err:
                    if not is_retryable_lm_error(err):
                        raise
                    exc = err
                if attempt == model.num_retries or "mock_response" in kwargs:  # a batch's answer is what it is
                    raise exc
                hint = getattr(exc, "retry_after", None)
                if isinstance(hint, int | float) and hint >= 0:  # the server said when: every thread waits
                    limiter.hold(min(60.0, hint) * random.uniform(1.0, 1.1))
                else:
                    time.sleep(min(60.0, model.backoff_s * 2**attempt) * random.uniform(1.0, 1.1))

        def update_history(self, entry: dict) -> None:
            batched = "mock_response" in (entry.get("kwargs") or {})
            usage = entry.get("usage") or {}
            cost = batch_price(model, usage, entry.get("cost")) if batched else _price(model, usage, entry.get("cost"))
            _last_usage.value, _last_usage.cost, _last_usage.response = usage, cost, entry.get("response")
            # an optimizer's own prompt model counts apart (its role's log), wherever it is called from
            log = getattr(self, "role_log", None) or current_log.get() or getattr(self, "compile_log", None)
            if log is not None:
                with _count_lock:
                    log.calls += 1
                    log.batched += batched
                    log.prompt_tokens += int(usage.get("prompt_tokens") or 0)
                    log.completion_tokens += int(usage.get("completion_tokens") or 0)
                    log.cost_usd += cost
                    for out in entry.get("outputs") or []:
                        log.outputs.append(out if isinstance(out, str) else str(out.get("text", out)))
                    log.sent.append(sent_request(entry))
            # DSPy keeps a history per LM; cap ours so long runs do not grow without bound.
            if len(self.history) > 200:
                del self.history[:100]
            super().update_history(entry)

    kwargs: dict[str, Any] = dict(
        model=model.litellm_model,
        # Embedded models always speak the chat API; their call style is the server's template.
        model_type="chat" if model.is_local else model.call_style,
        temperature=model.temperature,
        max_tokens=model.max_tokens,
        cache=False,  # our store is the cache: keyed by model identity, config and example
        num_retries=0,  # CountingLM retries (see above)
        engine="litellm",
        timeout=model.timeout_s,
    )
    if model.api_base:
        kwargs["api_base"] = model.api_base
        if model.litellm_model.startswith("openai/") and not os.environ.get("OPENAI_API_KEY"):
            # OpenAI-compatible servers often need no key, but the client insists on one.
            kwargs["api_key"] = "no-key-needed"
    if model.stop:
        kwargs["stop"] = list(model.stop)
    kwargs.update(overrides)
    lm = CountingLM(**kwargs)
    lm.promptopt_model = model  # what strategies that call the endpoint directly (cloze) need to know
    return lm


# What a provider batch (promptopt.batch) needs of a call: the request as the synchronous path
# sends it (without the options that are the client's, not the provider's), its key, its price.
NOT_SENT = {"prompt", "messages", "api_base", "api_key", "base_url", "timeout", "num_retries", "cache", "rollout_id",
            "headers", "mock_response", "model_type", "engine"}  # fmt: skip


def provider_of(model: Model) -> str:
    import litellm

    try:
        return litellm.get_llm_provider(model.litellm_model)[1]
    except Exception:
        return model.litellm_model.split("/", 1)[0]


def request_body(lm, args: tuple, kwargs: dict) -> dict:
    """The chat request the synchronous path would send for this call, as a batch line's body."""
    prompt = args[0] if args else kwargs.get("prompt")
    messages = kwargs.get("messages") or (args[1] if len(args) > 1 else None) or [{"role": "user", "content": prompt}]
    sent = {k: v for k, v in {**lm.kwargs, **kwargs}.items() if k not in NOT_SENT and v is not None}
    name = lm.model.split("/", 1)[1] if "/" in lm.model else lm.model
    return {"model": name, "messages": messages, **sent}


def request_key(identity: str, body: dict, occurrence: int) -> str:
    """A call's key: the model (with its endpoint), the request and which asking of it this is
    within its item (a program that samples the same request three times asks three times)."""
    text = json.dumps({"model": identity, "body": body, "occurrence": occurrence}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def batch_rates(model: Model) -> tuple[float, float] | None:
    """USD per prompt and per completion token in a batch, from LiteLLM's price table's batch
    fields (None where the table has none)."""
    import litellm

    name = model.litellm_model
    info = litellm.model_cost.get(name) or litellm.model_cost.get(name.split("/", 1)[-1]) or {}
    per_in, per_out = info.get("input_cost_per_token_batches"), info.get("output_cost_per_token_batches")
    return None if per_in is None or per_out is None else (float(per_in), float(per_out))


def batch_price(model: Model, usage: dict, reported: float | None) -> float:
    """A batch call's dollars: the model's own price when given (what the user pays), else
    LiteLLM's price table's batch fields, else what LiteLLM reported for the call."""
    if model.price_in is not None and model.price_out is not None:
        return _price(model, usage, reported)
    rates = batch_rates(model)
    if rates is None:
        return float(reported or 0.0)
    return usage.get("prompt_tokens", 0) * rates[0] + usage.get("completion_tokens", 0) * rates[1]


_effort_lock = threading.Lock()


def lm_for(lm, knobs: dict[str, Any]):
    """`lm` with the config's LM-level knobs applied (a reasoning model's `reasoning_effort`,
    with room to think: temperature 1 and at least 16,000 completion tokens, which reasoning APIs
    require or else drop the effort); one copy per effort, kept on the LM itself."""
    effort = (knobs or {}).get("reasoning_effort")
    if not effort:
        return lm
    with _effort_lock:
        copies = lm.__dict__.setdefault("_effort_copies", {})
        if effort not in copies:
            room = max(int(lm.kwargs.get("max_tokens") or 0), 16000)
            copy = lm.copy(reasoning_effort=effort, temperature=1.0, max_tokens=room)
            copy.promptopt_model = getattr(lm, "promptopt_model", None)
            copy.__dict__.pop("_effort_copies", None)
            copies[effort] = copy
        return copies[effort]


def sent_request(entry: dict) -> dict:
    """One call from DSPy's history entry: the messages (roles and texts) or the prompt it sent,
    and the reply's text as the model wrote it."""
    outputs = entry.get("outputs") or []
    reply = [o if isinstance(o, str) else str(o.get("text", "")) for o in outputs]
    messages = entry.get("messages")
    if messages:
        out = []
        for m in messages:
            content = m.get("content")
            if isinstance(content, list):  # multi-part content: its texts, each image as its digest
                content = "".join(_part_text(p) for p in content if isinstance(p, dict))
            out.append({"role": m.get("role"), "content": content})
        return {"messages": out, "reply": reply[0] if len(reply) == 1 else reply}
    return {"prompt": entry.get("prompt"), "reply": reply[0] if len(reply) == 1 else reply}


def _part_text(part: dict) -> str:
    if part.get("type") == "image_url":
        from promptopt.images import placeholder

        return "\n" + placeholder((part.get("image_url") or {}).get("url", "")) + "\n"
    return part.get("text", "")


def with_endpoint(model: Model, api_base: str) -> Model:
    return replace(model, api_base=api_base)


def call_error(exc: BaseException) -> str:
    """A failed call as its error record says it: a prompt longer than the model's window is its own
    kind (never transient: not retried, not asked again by the next run, counted apart in the report)."""
    from dspy.utils.exceptions import ContextWindowExceededError

    if isinstance(exc, ContextWindowExceededError) or type(exc).__name__ == "ContextWindowExceededError":
        return f"{CONTEXT_ERROR}: {short_error(exc)}"
    return short_error(exc)


def fatal_reason(exc: BaseException, model: Model) -> str | None:
    """One sentence when an LM error cannot be fixed by retrying, else None."""
    from dspy.clients import errors as lm_errors

    where = f" at {redact_url(model.api_base)}" if model.api_base else ""
    if isinstance(exc, lm_errors.LMAuthError | lm_errors.LMNotConfiguredError):
        return f"Model {model.name}{where} rejected the credentials; set the provider's API key in the environment."
    if isinstance(exc, lm_errors.LMUnsupportedModelError):
        return f"Model {model.name}{where} does not exist or is not served there."
    if isinstance(exc, lm_errors.LMBillingError):
        return f"Model {model.name}{where} refused the call for billing reasons."
    if isinstance(exc, lm_errors.LMTransportError) and model.api_base:
        return f"Could not connect to {redact_url(model.api_base)} for model {model.name}; check --api-base."
    return None


def short_error(exc: BaseException) -> str:
    """First line of an error, with URLs stripped of credentials and query strings."""
    import re

    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    text = re.sub(r"https?://[^\s'\"<>]+", lambda m: redact_url(m.group(0)), text)
    return f"{type(exc).__name__}: {text[:300]}"
