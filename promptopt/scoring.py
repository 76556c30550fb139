"""Evaluate: run one program over examples and write one record per example as it finishes.

Examples already in the store for the same (run, model, task, config, split) are skipped, so a
run that was interrupted resumes without repeating LM calls. An example whose LM calls still
fail after retries is recorded as an error (not as a wrong answer) and the run goes on; errors
that no retry can fix (bad key, unknown model, unreachable endpoint) stop the run at once.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass

from promptopt.batch import Deferred
from promptopt.config import Config
from promptopt.errors import UserError
from promptopt.images import digests
from promptopt.models import CallLog, Model, call_error, current_log, fatal_reason, lm_for
from promptopt.records import Extras, Record
from promptopt.store import Store
from promptopt.tasks import Example, Task


@dataclass
class Progress:
    """What a progress display needs: done so far, total, elapsed, spent."""

    label: str
    done: int
    total: int
    elapsed_s: float
    lm_calls: int
    cost_usd: float
    errors: int


@dataclass
class Note:
    """A line for the user (e.g. "Compiling ..."), sent to the same callback as Progress:
    library code prints nothing itself."""

    text: str


def note(on_event: Callable | None, text: str) -> None:
    """Send `text` to the caller's event callback, if it gave one."""
    if on_event is not None:
        on_event(Note(text))


class BudgetReached(Exception):
    """The run's --max-calls or --max-cost is spent; everything finished so far is kept."""


class TooManyErrors(UserError):
    """More examples than --max-error-rate allows failed after retries; finished records are kept."""


@dataclass
class Budget:
    """LM calls and cost this invocation may spend (None: unlimited), and the share of examples
    it may lose to errors (judged once `min_examples` were scored in this invocation)."""

    max_calls: int | None = None
    max_cost: float | None = None
    calls: int = 0
    cost_usd: float = 0.0
    max_error_rate: float | None = None
    min_examples: int = 20
    examples: int = 0
    errors: int = 0
    last_error: str = ""

    def charge(self, log: CallLog) -> None:
        self.calls += log.calls + int(log.embedding.get("lm_calls", 0))
        self.cost_usd += log.cost_usd + float(log.embedding.get("cost_usd", 0.0))

    def charge_judge(self, usage: dict) -> None:
        """A judge's calls count against the same --max-calls and --max-cost as the task model's."""
        self.calls += int(usage.get("lm_calls") or 0)
        self.cost_usd += float(usage.get("cost_usd") or 0.0)

    def count(self, error: str | None) -> None:
        """One more example scored (with its error, if it failed); stop if too many failed."""
        self.examples += 1
        if error is not None:
            self.errors += 1
            self.last_error = error
        rate = self.errors / self.examples
        if self.max_error_rate is not None and self.examples >= self.min_examples and rate > self.max_error_rate:
            raise TooManyErrors(
                f"Stopped: {self.errors} of {self.examples} examples ({100 * rate:.0f}%) failed after retries, "
                f"above --max-error-rate {self.max_error_rate:g} (last error: {self.last_error[:160]}); finished "
                "records are kept, and the same command retries the failed examples."
            )

    def left(self) -> tuple[float, float]:
        return (
            float("inf") if self.max_calls is None else self.max_calls - self.calls,
            float("inf") if self.max_cost is None else self.max_cost - self.cost_usd,
        )

    def check(self, next_calls: float = 0, next_cost: float = 0) -> None:
        calls_left, cost_left = self.left()
        if calls_left <= 0 or cost_left <= 0 or next_calls > calls_left or next_cost > cost_left:
            what = (
                f"--max-calls {self.max_calls}"
                if calls_left <= next_calls or calls_left <= 0
                else (f"--max-cost {self.max_cost}")
            )
            raise BudgetReached(
                f"Stopped at the budget ({what}) after {self.calls} LM calls and ${self.cost_usd:.4f}; "
                "finished records are kept, and the same command with a larger budget continues."
            )


def measured(task: Task, answer: str | None, example: Example, panel=None) -> tuple[float, dict]:
    """The record's score and its metrics: the answer type's own measures (free text: every
    metric of the task) and, when the task is judged, the first trusted judge's verdict (asked
    here, its calls counted apart from the task model's). A judge that failed validation leaves
    `judge` unmeasured (None); so does a judge call that failed after its retries, and then
    `judge_error` says why (as the primary metric, the caller records the example as an error)."""
    from promptopt.judge import JudgeFailed

    kind = task.answer_type
    score = kind.score(answer, example.gold)
    metrics = dict(kind.measure(answer, example.gold)) if kind.measure else {}
    verdicts, failed = [], None
    if panel is not None:
        if panel.judges and answer is not None:
            try:
                verdicts = panel.grade(example.inputs, example.gold, answer, example.criteria)
            except JudgeFailed as exc:
                failed = str(exc)
        judged = panel.combine(verdicts, example.criteria) if verdicts else 0.0 if answer is None and not failed else None
        metrics["judge"] = judged if panel.judges else None
        if panel.primary:
            score = judged or 0.0
    extras = {"metrics": metrics, "primary": kind.primary_metric} if metrics else {}
    if failed:
        extras["judge_error"] = failed
    options = example.inputs.get("options")
    if isinstance(options, dict) and answer in options:
        extras["answer_text"] = options[answer]  # what was chosen, whatever its letter (shuffle consistency)
    if task.spec.language is not None:
        extras["language"] = {"group": task.spec.language.group, "code": task.spec.language.code}
    if verdicts:
        extras["judges"] = [v.to_extras() for v in verdicts]
    if example.criteria and panel is not None and panel.judges and not failed and (verdicts or answer is None):
        # what the tag breakdown reads: each criterion's points, tags and vote (an unanswered item met none)
        met = panel.met(verdicts, example.criteria) if verdicts else [0.0] * len(example.criteria)
        extras["criteria"] = [{"points": c.points, "tags": list(c.tags), "met": m}
                              for c, m in zip(example.criteria, met, strict=True)]  # fmt: skip
    if shown := digests(example.inputs):
        extras["images"] = shown
    if example.cluster and example.cluster != example.id:  # intervals resample clusters (promptopt.stats.cluster_labels)
        extras["cluster"] = example.cluster
    return score, extras


def score_example(
    program, example: Example, task: Task, lm, adapter, model: Model, knobs: dict | None = None, judges=None
) -> tuple[dict, CallLog]:
    """Run one example in the calling thread; returns the record fields and the call log.
    `knobs`: the config's, so the record's extras say whether this strategy reasoned; `judges`:
    the task's promptopt.judge.Panel when it is judged."""
    import dspy
    from dspy.utils.exceptions import AdapterParseError

    log = CallLog()
    token = current_log.set(log)
    started = time.perf_counter()
    try:
        with dspy.context(lm=lm, adapter=adapter):
            pred = program(**example.inputs)
        raw = getattr(pred, "raw", None)
        answer = getattr(pred, "answer", None)
        score, more = measured(task, answer, example, judges)
        extras = Extras.of(pred, getattr(type(program), "declared", None), knobs or {}).model_copy(update=more)
        corpus = getattr(getattr(program, "corpus", None), "gold", None)
        if extras.retrieved is not None and corpus == "item_id":  # the item's own passage is its gold one
            extras = extras.model_copy(update={"recall": float(example.id in extras.retrieved)})
        if log.batched:
            extras = extras.model_copy(update={"batch_calls": log.batched})
        if log.embedding:
            extras = extras.model_copy(update={"embedding": dict(log.embedding)})
        fields = dict(
            prediction=answer,
            score=score,
            parse_ok=answer is not None,
            # the answer is kept: a later pass asks the judge again, not the task model (`evaluate`)
            error=more["judge_error"] if more.get("judge_error") and judges.primary else None,
            raw_output=raw if raw is not None else "\n---\n".join(log.outputs),
            extras=extras.to_json(),
        )
    except AdapterParseError as exc:  # an empty or unreadable completion is a parse failure, not an error
        raw = exc.lm_response or "\n---\n".join(log.outputs)
        score, more = measured(task, None, example, judges)
        fields = dict(prediction=None, score=score, parse_ok=False, error=None, raw_output=raw,
                      extras=Extras(**more).to_json())  # fmt: skip
    except UserError:
        raise  # a judge that cannot be called (bad key): stop in its one sentence
    except Deferred:  # a batched pass: a call waits for its batch, so the item is scored in a later round
        for round_, key in log.judged:  # verdicts this attempt got are charged to the attempt that finishes
            round_.uncharged.add(key)
        return None, log
    except Exception as exc:
        reason = fatal_reason(exc, model)
        if reason:
            raise UserError(reason) from exc
        fields = dict(
            prediction=None, score=0.0, parse_ok=False, error=call_error(exc), raw_output="\n---\n".join(log.outputs)
        )
    finally:
        current_log.reset(token)
    fields["latency_s"] = time.perf_counter() - started
    return fields, log


def evaluate(
    program,
    examples: list[Example],
    *,
    task: Task,
    model: Model,
    lm,
    adapter,
    config: Config,
    split: str,
    run_id: str,
    store: Store,
    threads: int = 1,
    on_progress: Callable[[Progress], None] | None = None,
    batch_size: int = 1,  # every record committed as it finishes: a kill -9 loses no paid call
    budget: Budget | None = None,
    judges=None,  # the task's promptopt.judge.Panel, when it is judged
) -> None:
    lm = lm_for(lm, config.knobs)  # a reasoning model's effort, when the config sets one
    if task.image_fields:  # an item whose image changed since it was answered is asked again, alone
        now = {ex.id: digests(ex.inputs) for ex in examples}
        store.drop_changed_images(run_id, model.identity, task.name, config.id, split, now)
    done = store.done_keys(run_id, model.identity, task.name, config.id, split)
    todo = [ex for ex in examples if ex.id not in done]
    # an answer whose judge call failed is kept and judged again here: its task call is not repeated
    kept = store.judge_failures(run_id, model.identity, task.name, config.id, split) if judges else {}
    # examples that failed last time are tried again: their error records make way for the new ones
    store.drop_errors(run_id, model.identity, task.name, config.id, split, [ex.id for ex in todo if ex.id not in kept])
    for ex in [ex for ex in todo if ex.id in kept]:
        # one at a time, each record replaced in one transaction: a stop keeps every answer
        if budget:
            budget.check()
        old = kept[ex.id]
        try:
            score, more = measured(task, old["prediction"], ex, judges)
        except Deferred:  # the judge's call waits for its batch: judged in a later round
            continue
        extras = (Extras.read(old["extras"]) or Extras()).model_copy(update=more | {"judge_error": more.get("judge_error")})
        error = more.get("judge_error") if judges.primary else None
        store.replace(Record(**{**old, "score": score, "error": error, "extras": extras.to_json(), "created_at": time.time()}))
        if budget:
            for verdict in extras.judges or []:
                budget.charge_judge(verdict)
            budget.count(error)
    todo = [ex for ex in todo if ex.id not in kept]
    label = f"{model.name} · {task.name} · {config.strategy}/{config.optimizer} · {split}"
    started = time.monotonic()
    state = Progress(label, len(examples) - len(todo), len(examples), 0.0, 0, 0.0, 0)
    if on_progress:
        on_progress(state)
    pending: list[Record] = []
    where = dict(run_id=run_id, model=model.identity, task=task.name, strategy=config.strategy,
                 optimizer=config.optimizer, config_id=config.id, config=config.to_json(), split=split)  # fmt: skip

    def finish(ex: Example, fields: dict | None, log: CallLog) -> None:
        if fields is None:  # deferred to a batch (promptopt.batch): nothing asked yet, nothing recorded
            return
        sent = json.dumps(log.sent) if log.sent else None  # what the model saw, for viewers
        pending.append(Record(**where, example_id=ex.id, gold=ex.gold, **log.usage(), created_at=time.time(),
                              sent=sent, **fields))  # fmt: skip
        state.done += 1
        if budget:
            budget.charge(log)
            if judges is not None and fields.get("extras"):  # only a judged task's records carry verdicts
                for verdict in Extras.model_validate_json(fields["extras"]).judges or []:
                    budget.charge_judge(verdict)
        state.lm_calls += log.calls
        state.cost_usd += log.cost_usd
        state.errors += fields["error"] is not None
        state.elapsed_s = time.monotonic() - started
        if len(pending) >= batch_size:
            flush()
        if on_progress:
            on_progress(state)
        if budget:
            budget.count(fields["error"])

    def flush() -> None:
        store.add(pending)
        pending.clear()

    try:
        if threads <= 1:
            for ex in todo:
                if budget:
                    budget.check()
                finish(ex, *score_example(program, ex, task, lm, adapter, model, config.knobs, judges))
        else:
            stopped: BudgetReached | None = None

            def next_example():
                nonlocal stopped
                if stopped:
                    return None
                try:
                    if budget:
                        budget.check()
                except BudgetReached as exc:
                    stopped = exc  # let the examples in flight finish and be recorded, then stop
                    return None
                return next(queue, None)

            with ThreadPoolExecutor(max_workers=threads) as pool:
                queue = iter(todo)
                running = {}
                while len(running) < threads * 2 and (ex := next_example()) is not None:
                    running[pool.submit(score_example, program, ex, task, lm, adapter, model, config.knobs, judges)] = ex
                while running:
                    finished, _ = wait(running, return_when=FIRST_COMPLETED)
                    for fut in finished:
                        ex = running.pop(fut)
                        finish(ex, *fut.result())
                        nxt = next_example()
                        if nxt is not None:
                            running[
                                pool.submit(score_example, program, nxt, task, lm, adapter, model, config.knobs, judges)
                            ] = nxt
            if stopped:
                raise stopped
    finally:
        flush()  # whatever finished is kept, also on Ctrl-C and on a fatal error
