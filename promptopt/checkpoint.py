"""Compile checkpoints: every LM call an optimizer makes is kept in the store as it returns, so
the same command after a kill replays the compile up to where it stopped instead of paying for
it again.

An optimizer's path is a function of its seed and of what the model answered: bootstrapped
demos, proposed instructions, candidate scores and GEPA's evolving candidates all follow from
the replies. Replaying those replies in order therefore rebuilds the optimizer's state exactly,
whatever the optimizer (MIPROv2, GEPA, bootstrap or one a user registered), without reaching
into its internals. A call is known by a digest of what was asked (prompt or messages, the
generation settings, the model) and by how many identical requests came before it in this
compile, so a request sent twice on purpose (a sample at temperature 1) is replayed twice, each
with its own reply. Only the calls in flight at the kill are made again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
from collections import Counter
from typing import Any

from promptopt.models import CallLog

# Settings that say where a request went, not what it asked: a restarted embedded server
# listens on a new port, and a key is never part of a digest.
_ROUTING = ("api_base", "base_url", "api_key", "timeout", "num_retries", "engine")


def scope_of(run_id: str, model_identity: str, task: str, config_id: str) -> str:
    """One compile's key in the store: a digest of run, model, task and config (their names
    together can outgrow a key column)."""
    return hashlib.sha256(json.dumps([run_id, model_identity, task, config_id]).encode()).hexdigest()


class CallJournal:
    """The calls of one compile: replies kept before (replayed, not made again) and every new one
    written to the store the moment it returns."""

    def __init__(self, store, scope: str):
        self.store, self.scope = store, scope
        self.kept = store.compile_calls(scope)
        self.replayed = CallLog()  # what the replayed calls had cost when they were made
        self._seen: Counter[str] = Counter()
        self._lock = threading.Lock()

    def key(self, lm, args: tuple, kwargs: dict) -> str | None:
        """This request's place in the compile, or None when it cannot be digested (then it is
        made, and not kept)."""
        asked = {k: v for k, v in {**lm.kwargs, **kwargs}.items() if k not in _ROUTING}  # prompt, messages, settings
        identity = getattr(getattr(lm, "promptopt_model", None), "identity", None)
        try:
            text = json.dumps([identity, lm.model, getattr(lm, "model_type", None), args, asked], sort_keys=True, default=_opaque)
        except (TypeError, ValueError):
            return None
        digest = hashlib.sha256(text.encode()).hexdigest()[:32]
        with self._lock:
            nth = self._seen[digest]
            self._seen[digest] += 1
        return f"{digest}#{nth}"

    def replay(self, key: str) -> list | None:
        """The reply kept for `key` (counted as replayed), or None when this call is new."""
        hit = self.kept.get(key)
        if hit is None:
            return None
        outputs, usage = hit
        with self._lock:
            self.replayed.calls += 1
            self.replayed.prompt_tokens += int(usage.get("prompt_tokens") or 0)
            self.replayed.completion_tokens += int(usage.get("completion_tokens") or 0)
            self.replayed.cost_usd += float(usage.get("cost_usd") or 0.0)
        return outputs

    def keep(self, key: str, outputs: Any, usage: dict | None, cost_usd: float) -> None:
        """Write a new call's reply to the store now, so a kill right after loses nothing."""
        if not isinstance(outputs, list):
            return  # an explicit lm15 Request's Response: not replayable as legacy outputs
        try:
            text = json.dumps(outputs)
        except (TypeError, ValueError):
            return
        usage_text = json.dumps(_plain(usage or {}) | {"cost_usd": cost_usd})
        # a checkpoint that cannot be written (a locked or full database) must not fail a call
        # already paid for: the compile goes on, and a resume makes that call again
        with contextlib.suppress(Exception):
            self.store.add_compile_call(self.scope, key, text, usage_text)


def total(made: CallLog, journal: CallJournal) -> CallLog:
    """A compile's whole cost: the calls made now plus those replayed from an interrupted try."""
    was = journal.replayed
    return CallLog(made.calls + was.calls, made.prompt_tokens + was.prompt_tokens,
                   made.completion_tokens + was.completion_tokens, made.cost_usd + was.cost_usd)  # fmt: skip


def _plain(usage: dict) -> dict:
    return {k: v for k, v in usage.items() if isinstance(v, int | float | str | type(None))}


def _opaque(value: Any) -> Any:
    """Objects inside a request: a Pydantic response format by its schema, a Pydantic value by its
    fields; anything else cannot be told apart reliably, so the call is not kept (TypeError)."""
    if isinstance(value, type) and callable(getattr(value, "model_json_schema", None)):
        return value.model_json_schema()
    if callable(getattr(value, "model_dump", None)) and not isinstance(value, type):
        return value.model_dump(mode="json")
    raise TypeError(f"cannot digest a {type(value).__name__}")
