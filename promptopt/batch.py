"""Provider batch APIs (OpenAI's files + batches, and what LiteLLM maps onto them) for the calls
whose requests do not depend on earlier answers: a fixed program scored on val or test.

A batched scoring pass runs in rounds. Each round scores the items as the synchronous path does;
an LM call whose answer a batch already brought is answered from it (DSPy parses it as any
reply, so records are the same), and a call with no answer yet is noted and stops its item
(`Deferred`, which no program code catches) without recording anything. The round's noted
requests go out as batches, are polled with backoff until they end, and their answers are kept
in the store before the next round; an item whose program makes several dependent calls takes
a round per call. A process killed while a batch runs finds the batch in the store and collects
it instead of paying again. A request that failed or expired in its batch is asked
synchronously, never scored as wrong.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass, field

from promptopt.errors import UserError
from promptopt.models import Model, provider_of

ENDPOINT = "/v1/chat/completions"
MAX_REQUESTS = 50_000  # OpenAI's limit per batch
MAX_BYTES = 190 * 2**20  # under OpenAI's 200 MB per input file
MAX_ROUNDS = 20  # dependent calls per item a batched pass follows before giving up
ENDED = ("completed", "failed", "expired", "cancelled")


class Deferred(BaseException):  # noqa: N818  (not an error: a BaseException, so no program's `except Exception` eats it)
    """An LM call waiting for its batch: the item stops and is scored in a later round."""


def providers() -> tuple[str, ...]:
    """The providers LiteLLM's create_batch accepts (read off its signature, so a LiteLLM that
    learns another one is followed)."""
    import inspect
    import typing

    import litellm

    hint = inspect.signature(litellm.create_batch).parameters["custom_llm_provider"].annotation
    names = typing.get_args(hint) if not isinstance(hint, str) else tuple(re.findall(r"'([a-z_]+)'", hint))
    return tuple(n for n in names if n not in ("hosted_vllm", "litellm_proxy")) or ("openai",)


def check(model: Model) -> None:
    """Refuse, in one sentence and before any call, a model whose calls cannot go through a batch."""
    can = ", ".join(providers())
    if model.is_local:
        raise UserError(f"--batch: the embedded model {model.name} has no batch API; batch calls go to a hosted "
                        f"provider LiteLLM can batch ({can}).")  # fmt: skip
    if provider_of(model) not in providers():
        raise UserError(f"--batch: LiteLLM cannot batch {model.name} (provider {provider_of(model)}); it batches "
                        f"{can}. Leave out --batch for this model.")  # fmt: skip
    if model.call_style != "chat":
        raise UserError(f"--batch: {model.name} is called through the text completions API; batches carry chat "
                        "calls only. Leave out --batch, or use the model's chat API.")  # fmt: skip


@dataclass
class BatchRound:
    """One model's batched answers in one run: what came back, what is waiting, what goes synchronously."""

    model: Model
    store: object
    run_id: str
    say: object = lambda text: None  # a note for the user (the run context's)
    poll_s: float = field(default_factory=lambda: float(os.environ.get("PROMPTOPT_BATCH_POLL_S", "5")))
    answers: dict[str, dict] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)  # key -> why: asked synchronously
    pending: dict[str, dict] = field(default_factory=dict)  # key -> body, noted this round
    waiting: set[str] = field(default_factory=set)  # keys in batches not yet collected
    # verdicts (judge cache keys) an item's deferred attempt made: its finished attempt pays for them
    uncharged: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        import threading

        self._lock = threading.Lock()
        self._take(self.store.batch_answers(self.run_id))

    def _take(self, kept: dict[str, tuple[str | None, str | None]]) -> None:
        for key, (body, error) in kept.items():
            if body is not None:
                self.answers[key] = json.loads(body)
            else:
                self.failed[key] = error or "failed in its batch"

    def lookup(self, key: str, body: dict) -> dict | None:
        """The answer a batch brought for this call; None: ask it synchronously (it failed in its
        batch); raises Deferred after noting it when it has no answer yet."""
        if key in self.answers:
            return self.answers[key]
        if key in self.failed:
            return None
        with self._lock:
            if key not in self.waiting:
                self.pending[key] = body
        raise Deferred(key)

    def keep(self, key: str, response) -> None:
        """The synchronous answer to a request that failed in its batch, kept for later rounds (an
        item re-run from its first call must not pay for that call again)."""
        body = response.model_dump() if hasattr(response, "model_dump") else dict(response)
        self.answers[key] = body
        self.failed.pop(key, None)
        self.store.keep_batch_answer(self.run_id, key, json.dumps(body, default=str))

    @property
    def _auth(self) -> dict:
        auth: dict = {"custom_llm_provider": provider_of(self.model)}
        if self.model.api_base:
            auth["api_base"] = self.model.api_base
            if self.model.litellm_model.startswith("openai/") and not os.environ.get("OPENAI_API_KEY"):
                auth["api_key"] = "no-key-needed"  # an OpenAI-compatible server that asks for none
        return auth

    def submit(self) -> None:
        """The noted requests, as batches within the provider's limits, each kept in the store as
        soon as the provider has it."""
        import litellm

        from promptopt.models import call_error

        lines = [json.dumps({"custom_id": k, "method": "POST", "url": ENDPOINT, "body": b}, default=str) + "\n"
                 for k, b in self.pending.items()]  # fmt: skip
        keys = list(self.pending)
        start = 0
        while start < len(lines):
            end, size = start, 0
            while end < len(lines) and end - start < MAX_REQUESTS and size + len(lines[end]) < MAX_BYTES:
                size += len(lines[end])
                end += 1
            end = max(end, start + 1)
            data = "".join(lines[start:end]).encode()
            try:
                file = litellm.create_file(file=("promptopt-batch.jsonl", data), purpose="batch", **self._auth)
                batch = litellm.create_batch(completion_window="24h", endpoint=ENDPOINT, input_file_id=file.id,
                                             metadata={"promptopt_run": self.run_id}, **self._auth)  # fmt: skip
            except Exception as exc:
                raise UserError(f"--batch: {self.model.name}'s endpoint refused a batch ({call_error(exc)}); the "
                                "records so far are kept. Leave out --batch to call it synchronously.") from None  # fmt: skip
            self.store.add_batch(self.run_id, self.model.identity, batch.id, keys[start:end])
            self.say(f"Batch {batch.id} submitted: {end - start} requests for {self.model.name}.")
            start = end
        self.waiting |= set(keys)
        self.pending.clear()

    def collect(self) -> None:
        """Wait for every batch of this model the run submitted and not yet collected (also one a
        killed process left), and keep its answers."""
        for batch_id, keys in self.store.open_batches(self.run_id, self.model.identity):
            self.waiting |= set(keys)
            batch = self._wait(batch_id, len(keys))
            found = self._read(batch)
            why = f"its batch ended {batch.status}"
            kept = {k: found.get(k, (None, why)) for k in keys}
            self.store.collect_batch(self.run_id, self.model.identity, batch_id, kept)
            self._take(kept)
            self.waiting -= set(keys)
            failed = sum(body is None for body, _ in kept.values())
            if failed:
                self.say(f"Batch {batch_id}: {failed} of {len(keys)} requests failed or expired; they are asked "
                         "synchronously.")  # fmt: skip

    def _wait(self, batch_id: str, n: int):
        import litellm

        started, wait = time.monotonic(), self.poll_s
        while True:
            batch = litellm.retrieve_batch(batch_id, **self._auth)
            counts = batch.request_counts
            done, failed = (counts.completed, counts.failed) if counts else (0, 0)
            self.say(f"Batch {batch_id}: {batch.status}, {done} of {n} completed, {failed} failed "
                     f"({time.monotonic() - started:.0f}s waited).")  # fmt: skip
            if batch.status in ENDED:
                return batch
            time.sleep(wait)
            wait = min(wait * 2, 300.0)  # backoff: a batch may take up to 24 h

    def _read(self, batch) -> dict[str, tuple[str | None, str | None]]:
        import litellm

        out: dict[str, tuple[str | None, str | None]] = {}
        for file_id in (batch.output_file_id, batch.error_file_id):
            if not file_id:
                continue
            content = litellm.file_content(file_id=file_id, **self._auth).content
            for line in content.decode().splitlines():
                if not line.strip():
                    continue
                row = json.loads(line)
                response = row.get("response") or {}
                if response.get("status_code") == 200 and response.get("body"):
                    out[row["custom_id"]] = (json.dumps(response["body"]), None)
                else:
                    error = row.get("error") or (response.get("body") or {}).get("error") or {}
                    out[row["custom_id"]] = (None, str(error.get("message") or error or "failed in its batch")[:300])
        return out


def _within_budget(budget, rounds: list[BatchRound]) -> int:
    """Keep only as many noted requests as --max-calls has room for (a batch is paid as a whole,
    so it must not be sent past the budget); returns how many were left out. --max-cost is
    checked between rounds, as batch dollars are known only once the answers are back."""
    room, cost_left = budget.left()
    if cost_left <= 0:
        room = 0
    left_out = 0
    for round_ in rounds:
        keep = max(0, min(len(round_.pending), int(room) if room != float("inf") else len(round_.pending)))
        for key in list(round_.pending)[keep:]:
            del round_.pending[key]
            left_out += 1
        room -= keep
    return left_out


def batchable(model: Model) -> bool:
    try:
        check(model)
    except UserError:
        return False
    return True


def through_batches(bench, run) -> None:
    """Call `run` (a scoring pass of `bench`) in rounds, the task model's calls and those of every
    judge whose provider can batch answered from batches (a judge that cannot stays synchronous)."""
    ctx = bench.ctx

    def copies(lm) -> list:  # an LM and the copies made of it for a reasoning effort (also during a round)
        return [lm, *lm.__dict__.get("_effort_copies", {}).values()]

    by_model: dict[str, BatchRound] = {}  # one round per model: a task model judging too shares it

    def round_of(model: Model) -> BatchRound:
        if model.identity not in by_model:
            by_model[model.identity] = BatchRound(model, ctx.store, ctx.run_id, ctx.say)
        return by_model[model.identity]

    rounds = [(round_of(bench.model), bench.lm)]
    rounds += [(round_of(j.model), j.lm) for j in getattr(bench.judges, "judges", None) or [] if batchable(j.model)]
    for round_ in by_model.values():
        round_.collect()  # what an interrupted process left waiting
    for round_, lm in rounds:
        for each in copies(lm):
            each.batch_round = round_
    try:
        for _ in range(MAX_ROUNDS):
            run()
            waiting = [r for r in by_model.values() if r.pending]
            if not waiting:
                return
            trimmed = _within_budget(ctx.budget, waiting)
            for round_ in waiting:
                if round_.pending:
                    round_.submit()
            for round_ in waiting:
                round_.collect()
            if trimmed:  # what the budget allowed is answered: record it, then stop cleanly
                run()
                ctx.budget.check(next_calls=trimmed)
        raise UserError(f"--batch: items of {bench.task.name} still made new calls after {MAX_ROUNDS} batch rounds; "
                        "leave out --batch for this program.")  # fmt: skip
    finally:
        for _, lm in rounds:
            for each in copies(lm):
                each.batch_round = None
