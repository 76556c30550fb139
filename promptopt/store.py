"""The results store: every scored example is a row, written as soon as it is scored.

Any SQLAlchemy URL works; the default is a SQLite file in the run folder (WAL mode, so readers
never block the writer). Schema (documented in README.md):

- ``runs``: one row per run: ``run_id``, ``created_at``, ``plan`` (JSON of what was asked,
  never credentials), ``version``.
- ``records``: one row per (run, model, task, config, split, example): prediction, gold, score,
  parse status, error, LM calls, tokens, latency, cost, the raw model output, the strategy's extras
  and each call's request and reply as sent. The unique key
  makes re-running a command skip finished work instead of repeating LM calls.
- ``run_status``: one row per run: whether its last pass is in progress, complete, stopped
  or interrupted, so a report of an unfinished run says so.
- ``compiles``: one row per compiled (run, model, task, config): the optimizer's LM calls,
  tokens, cost and seconds.
- ``compile_calls``: every LM call an optimizer made, keyed by (digest of the compile's run,
  model, task and config; request digest and occurrence), with the reply and its usage: a
  compile killed halfway replays these and goes on (promptopt.checkpoint).
- ``judgments``: every LLM judge verdict, keyed by a hash of (judge, scale, prompt), with the
  judge's reply, score and what the call cost: a cache shared by all runs in the store.
- ``judge_checks``: one row per (run, task, judge): its validation on planted verdicts.
- ``anytime``: a search's anytime curve: per (run, model, task, optimizer or ``*``) and round,
  the LM calls and dollars spent so far and the config it would choose then, with its val score.
- ``choices``: per (run, model, task), the config a search chose on val (and with the `pareto`
  objective every config of its front), so that reports choose what the search chose.
- ``manifests``: per run, each distinct environment an invocation ran with (promptopt, DSPy,
  LiteLLM and Optuna versions, each model's adapter, each task's data digest).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Protocol, runtime_checkable

import pandas as pd
from sqlalchemy import (
    Boolean,
    Column,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    and_,
    case,
    create_engine,
    event,
    func,
    literal,
    or_,
    select,
    text,
)
from sqlalchemy.engine import Engine

from promptopt.errors import CONTEXT_ERROR, UserError
from promptopt.limits import ID_CHARS
from promptopt.records import RECORD_COLUMNS, REPORT_COLUMNS, Record

metadata = MetaData()


def per_run(name: str, *columns: Column) -> Table:
    """A table with one row per run, keyed by its id."""
    return Table(name, metadata, Column("run_id", String(64), primary_key=True), *columns)


KEY_LENGTHS = {"model": 300, "task": 100, "config_id": 100, "optimizer": 100, "judge": 300}


def per_run_and(name: str, keys: tuple[str, ...], *columns: Column) -> Table:
    """A table keyed by the run and `keys` (names of KEY_LENGTHS, in order), then `columns`."""
    key_columns = [Column(k, String(KEY_LENGTHS[k]), primary_key=True) for k in keys]
    return per_run(name, *key_columns, *columns)


def usage_columns() -> list[Column]:
    """What calls cost, as CallLog.usage() names it: records and compiles both carry it."""
    return [Column(name, kind, nullable=False) for name, kind in
            (("lm_calls", Integer), ("prompt_tokens", Integer), ("completion_tokens", Integer), ("cost_usd", Float))]  # fmt: skip


runs = per_run(
    "runs",
    Column("created_at", Float, nullable=False),
    Column("plan", Text, nullable=False),
    Column("version", String(32), nullable=False),
)

records = Table(
    "records",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", String(64), nullable=False),
    Column("model", String(300), nullable=False),
    Column("task", String(100), nullable=False),
    Column("strategy", String(100), nullable=False),
    Column("optimizer", String(100), nullable=False),
    Column("config_id", String(100), nullable=False),
    Column("config", Text, nullable=False),
    Column("split", String(10), nullable=False),
    Column("example_id", String(ID_CHARS), nullable=False),
    Column("prediction", Text),
    Column("gold", Text, nullable=False),
    Column("score", Float, nullable=False),
    Column("parse_ok", Boolean, nullable=False),
    Column("error", Text),
    *usage_columns(),
    Column("latency_s", Float, nullable=False),
    Column("raw_output", Text),
    Column("created_at", Float, nullable=False),
    Column("extras", Text),  # JSON of promptopt.records.Extras: what the prediction carried beyond its answer
    Column("sent", Text),  # JSON list: each LM call's request as sent (messages or prompt), for viewers
    UniqueConstraint("run_id", "model", "task", "config_id", "split", "example_id", name="one_record"),
)


compiles = per_run_and(
    "compiles",
    ("model", "task", "config_id"),
    *usage_columns(),
    Column("seconds", Float, nullable=False),
    Column("created_at", Float, nullable=False),
)

# A compile's cost per LM role: "task" (the task model, also as the optimizer's teacher) and the
# optimizer's own prompt model ("proposer": MIPROv2's instruction proposer; "reflection": GEPA's);
# and "embedding": a preparation's hosted embedding calls over its pool (kNN's litellm: embedder).
compile_roles = per_run_and(
    "compile_roles",
    ("model", "task", "config_id"),
    Column("role", String(20), primary_key=True),
    Column("lm", String(300), nullable=False),  # the model that played the role
    *usage_columns(),
    Column("created_at", Float, nullable=False),
)

# Every call of a compile as it returned (promptopt.checkpoint): scope = run|model|task|config.
compile_calls = Table(
    "compile_calls",
    metadata,
    Column("scope", String(64), primary_key=True),  # digest of (run, model, task, config)
    Column("key", String(64), primary_key=True),  # request digest # occurrence in the compile
    Column("outputs", Text, nullable=False),  # JSON: the LM's outputs as DSPy returned them
    Column("usage", Text, nullable=False),  # JSON: the call's token usage
    Column("created_at", Float, nullable=False),
)

# LLM judges' verdicts, keyed by a hash of (judge identity, scale, prompt): a verdict is asked once.
judgments = Table(
    "judgments",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("judge", String(300), nullable=False),
    Column("prompt", Text, nullable=False),
    Column("reply", Text),
    Column("score", Float),  # None: the reply held no verdict
    *usage_columns(),
    Column("created_at", Float, nullable=False),
)

# Provider batches a run submitted (promptopt.batch): a killed process finds them here and
# collects their answers instead of paying again.
batches = per_run_and(
    "batches",
    ("model",),
    Column("batch_id", String(200), primary_key=True),
    Column("request_keys", Text, nullable=False),  # JSON list: the requests' keys, in the file's order
    Column("status", String(20), nullable=False),  # submitted | collected
    Column("created_at", Float, nullable=False),
)

# A batch's answers per run and request key (promptopt.batch.request_key): the response body, or
# why the request failed (then it is asked synchronously). Two runs of one store that send the
# same request each keep their own answer.
batch_answers = per_run(
    "batch_answers",
    Column("key", String(64), primary_key=True),
    Column("body", Text),  # JSON: the chat completion as the provider returned it
    Column("error", Text),
    Column("created_at", Float, nullable=False),
)

# One row per (run, task, judge): how the judge did on the planted verdicts before it scored.
judge_checks = per_run_and(
    "judge_checks",
    ("task", "judge"),
    Column("result", Text, nullable=False),  # JSON of promptopt.judge.Check.as_row()
    Column("created_at", Float, nullable=False),
)


# A search's anytime curve: one row per (run, model, task, optimizer) and round.
anytime = per_run_and(
    "anytime",
    ("model", "task", "optimizer"),  # optimizer "*": every config of the search
    Column("step", Integer, primary_key=True),
    Column("n", Integer, nullable=False),  # val examples each surviving config had been scored on
    Column("lm_calls", Integer, nullable=False),
    Column("cost_usd", Float, nullable=False),
    Column("config_id", String(100), nullable=False),
    Column("val_score", Float),
    Column("created_at", Float, nullable=False),
)

# What a search chose on val per (run, model, task): `rank` 0 is the choice, further rows the
# rest of a `pareto` front, cheapest first.
choices = per_run_and(
    "choices",
    ("model", "task", "config_id"),
    Column("rank", Integer, nullable=False),
    Column("rule", Text, nullable=False),  # JSON: epsilon, delta, objective
    Column("created_at", Float, nullable=False),
)


# What each invocation of a run ran with (promptopt.manifest.environment): versions, adapters,
# data digests. A run resumed under another DSPy or other data gets a second row, and the report
# warns that its numbers mix the two.
manifests = per_run(
    "manifests",
    Column("digest", String(64), primary_key=True),
    Column("manifest", Text, nullable=False),  # JSON
    Column("created_at", Float, nullable=False),
)


stops = per_run("stops", Column("reason", Text, nullable=False), Column("created_at", Float, nullable=False))


# One row per run: `in_progress` while a pass runs, `complete` once a pass finished, `stopped`
# (a budget or the error rate ended it: `stops` says why) or `interrupted` (Ctrl-C, a fatal
# error). A process killed with -9 leaves `in_progress`, which a report shows as unfinished.
run_status = per_run(
    "run_status",
    Column("status", String(20), nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("expected", Text),  # JSON: the configs and the items per task and split the pass will score
)
RUN_STATUSES = ("in_progress", "complete", "stopped", "interrupted")


@runtime_checkable
class ResultsStore(Protocol):
    """The boundary between promptopt and its results database: every method the rest of the
    package calls on a store (tests/test_structure.py keeps this list whole). `Store` is the SQL
    implementation; nothing outside this module writes SQL or builds a storage URL."""

    def add(self, batch: Iterable[Record]) -> None: ...
    def add_anytime(self, run_id: str, points: list[dict]) -> None: ...
    def add_batch(self, run_id: str, model: str, batch_id: str, keys: list[str]) -> None: ...
    def add_compile(self, run_id: str, model: str, task: str, config_id: str, log, seconds: float) -> None: ...
    def add_compile_call(self, scope: str, key: str, outputs: str, usage: str) -> None: ...
    def add_compile_roles(self, run_id: str, model: str, task: str, config_id: str, roles: dict) -> None: ...
    def add_judge_check(self, run_id: str, check: dict) -> None: ...
    def add_judgment(self, key: str, judge: str, prompt: str, reply: str, score: float | None, usage: dict) -> None: ...
    def add_manifest(self, run_id: str, manifest: dict) -> None: ...
    def batch_answers(self, run_id: str) -> dict[str, tuple[str | None, str | None]]: ...
    def collect_batch(self, run_id: str, model: str, batch_id: str,
                      answers: dict[str, tuple[str | None, str | None]]) -> None: ...
    def compared(self, run_id: str, task: str, split: str, a: tuple[str, str], b: tuple[str, str], page_no: int = 1,
                 per_page: int = 50) -> tuple[list[dict], list]: ...
    def compile_calls(self, scope: str) -> dict[str, tuple[list, dict]]: ...
    def compile_costs(self, run_id: str | None = None) -> pd.DataFrame: ...
    def config_counts(self, run_id: str) -> list[dict]: ...
    def done_keys(self, run_id: str, model: str, task: str, config_id: str, split: str) -> set[str]: ...
    def drop_changed_images(self, run_id: str, model: str, task: str, config_id: str, split: str,
                            current: dict[str, list[str]]) -> list[str]: ...
    def drop_errors(self, run_id: str, model: str, task: str, config_id: str, split: str, ids: list[str]) -> None: ...
    def dump(self, run_ids: list[str]) -> dict[str, list[dict]]: ...
    def examples_page(self, run_id: str, model: str, task: str, config: str, split: str, show: str = "all",
                      text: str = "", page_no: int = 1, per_page: int = 50) -> tuple[list[dict], int]: ...
    def explanations(self, run_id: str, model: str, task: str, config_id: str) -> dict[str, str]: ...
    def judge_checks(self, run_id: str | None = None) -> pd.DataFrame: ...
    def judge_failures(self, run_id: str, model: str, task: str, config_id: str, split: str) -> dict[str, dict]: ...
    def judgment(self, key: str) -> dict | None: ...
    def keep_batch_answer(self, run_id: str, key: str, body: str) -> None: ...
    def load(self, name: str, rows: list[dict], chunk: int = 5_000) -> None: ...
    def manifests(self, run_id: str | None = None) -> list[dict]: ...
    def newer_version(self, mine: str) -> str | None: ...
    def open_batches(self, run_id: str, model: str) -> list[tuple[str, list[str]]]: ...
    def record(self, run_id: str, record_id: int) -> dict | None: ...
    def records(self, run_id: str | None = None) -> pd.DataFrame: ...
    def records_stamp(self, run_id: str) -> tuple: ...
    def replace(self, record: Record) -> None: ...
    def runs(self) -> pd.DataFrame: ...
    def set_choice(self, run_id: str, model: str, task: str, config_ids: list[str], rule: dict) -> None: ...
    def set_status(self, run_id: str, status: str, expected: dict | None = None) -> None: ...
    def set_stop(self, run_id: str, reason: str | None) -> None: ...
    def start_run(self, run_id: str, plan: dict, version: str) -> None: ...
    def statuses(self) -> dict[str, dict]: ...
    def stop_reasons(self, run_id: str | None = None) -> dict[str, str]: ...
    def table(self, name: str, run_id: str | None = None) -> pd.DataFrame: ...


def sqlite_url(path: Path) -> str:
    """The storage URL of a SQLite file (absolute: a run started elsewhere finds it)."""
    return f"sqlite:///{Path(path).resolve()}"


def default_url(run_dir: Path) -> str:
    """A run folder's own store."""
    return sqlite_url(run_dir / "results.sqlite")


def run_folder_url(storage: str, run_dir: Path) -> str:
    """The store a run folder's run.json names, or the folder's own SQLite file when the folder
    was moved since the run (the path recorded no longer exists)."""
    if storage.startswith("sqlite:///") and not Path(storage.removeprefix("sqlite:///")).exists():
        return default_url(run_dir)
    return storage


class Store:
    def __init__(self, url: str, create: bool = True):
        """Open (and create) the store at `url`. With create=False (reports, viewers) a store that
        already holds records is left exactly as it is: tables added by later versions are read as
        empty instead of being created."""
        self.url = url
        try:
            self.engine: Engine = create_engine(url, future=True)
        except ModuleNotFoundError as exc:
            raise UserError(
                f"The storage URL needs the database driver {exc.name!r}, which is not installed; for PostgreSQL "
                "install promptopt[postgres] (psycopg) and use postgresql+psycopg://."
            ) from None
        except Exception as exc:
            raise UserError(f"The storage URL is not a valid SQLAlchemy URL ({type(exc).__name__}).") from None
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        elif self.engine.dialect.name == "postgresql":  # every statement's text parameters, written or matched
            event.listen(self.engine, "before_cursor_execute", _without_nul, retval=True)
        try:
            if create or not self._has("records"):
                _create_tables(self.engine)
        except Exception as exc:
            raise UserError(
                f"Could not open the results store at {self.engine.url.render_as_string(hide_password=True)} "
                f"({type(exc).__name__})."
            ) from None

    def newer_version(self, mine: str) -> str | None:
        """The newest promptopt version that wrote to this store when it is newer than `mine`, else None."""
        from packaging.version import InvalidVersion, Version

        found = []
        for written in set(self.runs()["version"].dropna()):
            with contextlib.suppress(InvalidVersion, TypeError):
                found.append(Version(str(written)))
        newest = max(found, default=None)
        return str(newest) if newest is not None and newest > Version(mine) else None

    def start_run(self, run_id: str, plan: dict, version: str) -> None:
        from sqlalchemy.exc import IntegrityError

        newer = self.newer_version(version)
        if newer:  # its records may carry what this version cannot keep consistent: read it, never add to it
            where = self.engine.url.render_as_string(hide_password=True)
            raise UserError(
                f"The results store at {where} was written by promptopt {newer}, newer than this {version}; this "
                "version only reads it (report, view): upgrade promptopt to run into it, or give a new --out or --storage."
            )
        self._add_missing_columns()
        try:
            with self.engine.begin() as conn:
                exists = conn.execute(select(runs.c.run_id).where(runs.c.run_id == run_id)).first()
                if not exists:
                    conn.execute(
                        runs.insert().values(
                            run_id=run_id, created_at=time.time(), plan=json.dumps(plan), version=version
                        )
                    )
        except IntegrityError:
            pass  # another worker started the same run a moment ago

    def done_keys(self, run_id: str, model: str, task: str, config_id: str, split: str) -> set[str]:
        q = select(records.c.example_id).where(
            records.c.run_id == run_id,
            records.c.model == model,
            records.c.task == task,
            records.c.config_id == config_id,
            records.c.split == split,
        )
        # a prompt too long for the model fails the same way every time: it is not asked again
        answered = records.c.error.is_(None) | records.c.error.like(CONTEXT_ERROR + "%")
        with self.engine.connect() as conn:
            return {row[0] for row in conn.execute(q.where(answered))}

    def drop_errors(self, run_id: str, model: str, task: str, config_id: str, split: str, ids: list[str]) -> None:
        """Delete the error records of these examples, so that scoring them again can record them."""
        if not ids:
            return
        q = records.delete().where(
            records.c.run_id == run_id,
            records.c.model == model,
            records.c.task == task,
            records.c.config_id == config_id,
            records.c.split == split,
            records.c.error.is_not(None),
            records.c.example_id.in_(ids),
        )
        with self.engine.begin() as conn:
            conn.execute(q)

    def drop_changed_images(self, run_id: str, model: str, task: str, config_id: str, split: str,
                            current: dict[str, list[str]]) -> list[str]:
        """Delete the records of examples whose images (content digests, kept in the extras) are not
        the ones `current` gives now, so that scoring them again asks about the new image; returns
        their ids. A record that kept no digests (a text task's) is never stale."""
        where = (records.c.run_id == run_id, records.c.model == model, records.c.task == task,
                 records.c.config_id == config_id, records.c.split == split)  # fmt: skip
        q = select(records.c.example_id, records.c.extras).where(*where, records.c.extras.like('%"images"%'))
        with self.engine.connect() as conn:
            rows = conn.execute(q).all()
        stale = sorted({i for i, extras in rows if i in current and json.loads(extras or "{}").get("images") != current[i]})
        if stale:
            with self.engine.begin() as conn:
                conn.execute(records.delete().where(*where, records.c.example_id.in_(stale)))
        return stale

    def replace(self, record: Record) -> None:
        """Put `record` in place of the stored record of the same example, in one transaction."""
        row = asdict(record)
        key = ("run_id", "model", "task", "config_id", "split", "example_id")
        with self.engine.begin() as conn:
            conn.execute(records.delete().where(*[records.c[k] == row[k] for k in key]))
            conn.execute(records.insert().values(**row))

    def judge_failures(self, run_id: str, model: str, task: str, config_id: str, split: str) -> dict[str, dict]:
        """example id -> its record, for records whose answer is kept but whose judge call failed."""
        q = select(*[records.c[c] for c in RECORD_COLUMNS]).where(
            records.c.run_id == run_id, records.c.model == model, records.c.task == task,
            records.c.config_id == config_id, records.c.split == split, records.c.error.like("judge %"),
            records.c.prediction.is_not(None),
        )  # fmt: skip
        with self.engine.connect() as conn:
            return {row.example_id: dict(row._mapping) for row in conn.execute(q)}

    def set_stop(self, run_id: str, reason: str | None) -> None:
        """Why the run's last invocation stopped early (budget, errors); None once it finished."""
        with self.engine.begin() as conn:
            conn.execute(stops.delete().where(stops.c.run_id == run_id))
            if reason:
                conn.execute(stops.insert().values(run_id=run_id, reason=reason, created_at=time.time()))

    def set_status(self, run_id: str, status: str, expected: dict | None = None) -> None:
        """The run's status; `expected` (kept from the last call that gave it) says what a complete
        pass scores, so a report of an unfinished run can name what is missing."""
        if status not in RUN_STATUSES:
            raise ValueError(f"unknown run status {status!r}")
        with self.engine.begin() as conn:
            old = conn.execute(select(run_status.c.expected).where(run_status.c.run_id == run_id)).scalar()
            conn.execute(run_status.delete().where(run_status.c.run_id == run_id))
            conn.execute(
                run_status.insert().values(
                    run_id=run_id, status=status, updated_at=time.time(),
                    expected=json.dumps(expected) if expected is not None else old,
                )
            )  # fmt: skip

    def statuses(self) -> dict[str, dict]:
        """run id -> {status, expected}; runs written before statuses were recorded have none."""
        q = select(run_status.c.run_id, run_status.c.status, run_status.c.expected)
        with self.engine.connect() as conn:
            return {
                rid: {"status": status, "expected": json.loads(expected) if expected else None}
                for rid, status, expected in conn.execute(q)
            }

    def stop_reasons(self, run_id: str | None = None) -> dict[str, str]:
        q = select(stops.c.run_id, stops.c.reason)
        if run_id:
            q = q.where(stops.c.run_id == run_id)
        with self.engine.connect() as conn:
            return dict(conn.execute(q).fetchall())

    def explanations(self, run_id: str, model: str, task: str, config_id: str) -> dict[str, str]:
        """example id -> the model's own reasoning, for training examples it answered correctly."""
        q = select(records.c.example_id, records.c.raw_output).where(
            records.c.run_id == run_id,
            records.c.model == model,
            records.c.task == task,
            records.c.config_id == config_id,
            records.c.split == "train",
            records.c.score >= 1.0,
        )
        out = {}
        with self.engine.connect() as conn:
            for example_id, raw in conn.execute(q):
                try:
                    out[example_id] = json.loads(raw or "{}").get("reasoning", "")
                except ValueError:
                    continue
        return out

    def add_compile(self, run_id: str, model: str, task: str, config_id: str, log, seconds: float) -> None:
        row = dict(
            run_id=run_id, model=model, task=task, config_id=config_id, **log.usage(), seconds=seconds,
            created_at=time.time(),
        )  # fmt: skip
        with self.engine.begin() as conn:
            conn.execute(
                compiles.delete().where(*[compiles.c[k] == row[k] for k in ("run_id", "model", "task", "config_id")])
            )
            conn.execute(compiles.insert().values(**row))

    def add_compile_roles(self, run_id: str, model: str, task: str, config_id: str, roles: dict) -> None:
        """role -> (the LM's name, its CallLog) of one compile (or a preparation's embedding),
        replacing an earlier try's rows of those roles."""
        key = dict(run_id=run_id, model=model, task=task, config_id=config_id)
        with self.engine.begin() as conn:
            conn.execute(compile_roles.delete().where(*[compile_roles.c[k] == v for k, v in key.items()],
                                                      compile_roles.c.role.in_(list(roles))))  # fmt: skip
            for role, (lm, log) in roles.items():
                conn.execute(compile_roles.insert().values(**key, role=role, lm=lm, **log.usage(), created_at=time.time()))

    def compile_roles(self, run_id: str | None = None) -> pd.DataFrame:
        if not self._has("compile_roles"):
            return pd.DataFrame(columns=[c.name for c in compile_roles.columns])
        q = select(compile_roles)
        if run_id:
            q = q.where(compile_roles.c.run_id == run_id)
        with self.engine.connect() as conn:
            return pd.DataFrame(conn.execute(q).fetchall(), columns=[c.name for c in compile_roles.columns])

    def compile_costs(self, run_id: str | None = None) -> pd.DataFrame:
        q = select(compiles)
        if run_id:
            q = q.where(compiles.c.run_id == run_id)
        with self.engine.connect() as conn:
            return pd.DataFrame(conn.execute(q).fetchall(), columns=[c.name for c in compiles.columns])

    def compile_calls(self, scope: str) -> dict[str, tuple[list, dict]]:
        """key -> (outputs, usage) of every call kept for one compile (promptopt.checkpoint)."""
        if not self._has("compile_calls"):
            return {}
        q = select(compile_calls.c.key, compile_calls.c.outputs, compile_calls.c.usage).where(compile_calls.c.scope == scope)
        with self.engine.connect() as conn:
            return {key: (json.loads(out), json.loads(usage)) for key, out, usage in conn.execute(q)}

    def add_compile_call(self, scope: str, key: str, outputs: str, usage: str) -> None:
        row = dict(scope=scope, key=key, outputs=outputs, usage=usage, created_at=time.time())
        with self._space(), self.engine.begin() as conn:
            conn.execute(_insert_ignoring_duplicates(self.engine, compile_calls), [row])

    def judgment(self, key: str) -> dict | None:
        """A cached verdict ({score, reply}) or None."""
        cols = ("score", "reply", "lm_calls", "prompt_tokens", "completion_tokens", "cost_usd")
        q = select(*(judgments.c[c] for c in cols)).where(judgments.c.key == key)
        with self.engine.connect() as conn:
            row = conn.execute(q).first()
        return None if row is None else dict(zip(cols, row, strict=True))

    def add_judgment(self, key: str, judge: str, prompt: str, reply: str, score: float | None, usage: dict) -> None:
        row = dict(key=key, judge=judge, prompt=prompt, reply=reply, score=score, **usage, created_at=time.time())
        with self.engine.begin() as conn:
            conn.execute(_insert_ignoring_duplicates(self.engine, judgments), [row])

    def add_judge_check(self, run_id: str, check: dict) -> None:
        where = [judge_checks.c.run_id == run_id, judge_checks.c.task == check["task"],
                 judge_checks.c.judge == check["judge"]]  # fmt: skip
        with self.engine.begin() as conn:
            conn.execute(judge_checks.delete().where(*where))
            conn.execute(judge_checks.insert().values(run_id=run_id, task=check["task"], judge=check["judge"],
                                                      result=json.dumps(check), created_at=time.time()))  # fmt: skip

    def add_anytime(self, run_id: str, points: list[dict]) -> None:
        """Points of a search's anytime curve (a resumed search rewrites its rounds)."""
        now = time.time()
        with self.engine.begin() as conn:
            for p in points:
                keys = ("model", "task", "optimizer", "step")
                conn.execute(anytime.delete().where(anytime.c.run_id == run_id, *[anytime.c[k] == p[k] for k in keys]))
                conn.execute(anytime.insert().values(run_id=run_id, **p, created_at=now))

    def anytime(self, run_id: str | None = None) -> pd.DataFrame:
        cols = [c.name for c in anytime.columns if c.name != "created_at"]
        if not self._has("anytime"):
            return pd.DataFrame(columns=cols)
        q = select(*[anytime.c[c] for c in cols]).order_by(anytime.c.run_id, anytime.c.model, anytime.c.task,
                                                           anytime.c.optimizer, anytime.c.step)  # fmt: skip
        if run_id:
            q = q.where(anytime.c.run_id == run_id)
        with self.engine.connect() as conn:
            return pd.DataFrame(conn.execute(q).fetchall(), columns=cols)

    def set_choice(self, run_id: str, model: str, task: str, config_ids: list[str], rule: dict) -> None:
        """What a search chose for (model, task): the first config, then the rest of its front."""
        with self.engine.begin() as conn:
            conn.execute(choices.delete().where(choices.c.run_id == run_id, choices.c.model == model,
                                                choices.c.task == task))  # fmt: skip
            for rank, cid in enumerate(config_ids):
                conn.execute(choices.insert().values(run_id=run_id, model=model, task=task, config_id=cid, rank=rank,
                                                     rule=json.dumps(rule, sort_keys=True), created_at=time.time()))  # fmt: skip

    def choices(self, run_id: str | None = None) -> pd.DataFrame:
        cols = ["run_id", "model", "task", "config_id", "rank", "rule"]
        if not self._has("choices"):
            return pd.DataFrame(columns=cols)
        q = select(*[choices.c[c] for c in cols]).order_by(choices.c.rank)
        if run_id:
            q = q.where(choices.c.run_id == run_id)
        with self.engine.connect() as conn:
            return pd.DataFrame(conn.execute(q).fetchall(), columns=cols)

    def table(self, name: str, run_id: str | None = None) -> pd.DataFrame:
        """One of the tables report sections may read, by name (anytime, choices)."""
        readers = {"anytime": self.anytime, "choices": self.choices, "compiles": self.compile_costs,
                   "compile_roles": self.compile_roles, "judge_checks": self.judge_checks}  # fmt: skip
        if name not in readers:
            raise KeyError(f"report sections may read {', '.join(readers)}, not {name!r}")
        return readers[name](run_id)

    def add_batch(self, run_id: str, model: str, batch_id: str, keys: list[str]) -> None:
        with self.engine.begin() as conn:
            conn.execute(batches.insert().values(run_id=run_id, model=model, batch_id=batch_id, request_keys=json.dumps(keys),
                                                 status="submitted", created_at=time.time()))  # fmt: skip

    def open_batches(self, run_id: str, model: str) -> list[tuple[str, list[str]]]:
        """(batch id, its request keys) of the batches submitted and not yet collected."""
        q = select(batches.c.batch_id, batches.c.request_keys).where(
            (batches.c.run_id == run_id) & (batches.c.model == model) & (batches.c.status == "submitted")
        ).order_by(batches.c.created_at)
        with self.engine.connect() as conn:
            return [(bid, json.loads(keys)) for bid, keys in conn.execute(q)]

    def collect_batch(self, run_id: str, model: str, batch_id: str, answers: dict[str, tuple[str | None, str | None]]) -> None:
        """A batch's answers (key -> (body, error)) kept, and the batch marked collected, at once."""
        with self.engine.begin() as conn:
            self._add_batch_answers(conn, run_id, answers)
            conn.execute(batches.update().where((batches.c.run_id == run_id) & (batches.c.model == model)
                                                & (batches.c.batch_id == batch_id)).values(status="collected"))  # fmt: skip

    def _add_batch_answers(self, conn, run_id: str, answers: dict[str, tuple[str | None, str | None]]) -> None:
        if not answers:
            return
        now = time.time()
        conn.execute(_insert_ignoring_duplicates(self.engine, batch_answers), [
            {"key": k, "run_id": run_id, "body": body, "error": error, "created_at": now}
            for k, (body, error) in answers.items()
        ])  # fmt: skip

    def keep_batch_answer(self, run_id: str, key: str, body: str) -> None:
        """A request that failed in its batch, answered synchronously: kept, so no later round asks again."""
        with self.engine.begin() as conn:
            conn.execute(batch_answers.delete().where((batch_answers.c.run_id == run_id) & (batch_answers.c.key == key)))
            self._add_batch_answers(conn, run_id, {key: (body, None)})

    def batch_answers(self, run_id: str) -> dict[str, tuple[str | None, str | None]]:
        q = select(batch_answers.c.key, batch_answers.c.body, batch_answers.c.error).where(batch_answers.c.run_id == run_id)
        with self.engine.connect() as conn:
            return {k: (body, error) for k, body, error in conn.execute(q)}

    def _has(self, table: str) -> bool:
        from sqlalchemy import inspect

        return inspect(self.engine).has_table(table)

    def judge_checks(self, run_id: str | None = None) -> pd.DataFrame:
        """One row per (run, task, judge) validation, its result's fields as columns (none in a
        store written before judges existed)."""
        if not self._has("judge_checks"):
            return pd.DataFrame()
        q = select(judge_checks.c.run_id, judge_checks.c.result).order_by(
            judge_checks.c.created_at, judge_checks.c.run_id, judge_checks.c.task, judge_checks.c.judge
        )  # the same order in a store rebuilt from a bundle
        if run_id:
            q = q.where(judge_checks.c.run_id == run_id)
        with self.engine.connect() as conn:
            rows = [{"run_id": rid, **json.loads(result)} for rid, result in conn.execute(q)]
        return pd.DataFrame(rows)

    def add(self, batch: Iterable[Record]) -> None:
        rows = [asdict(r) | {"created_at": r.created_at or time.time()} for r in batch]
        if not rows:
            return
        longest = max((row["example_id"] for row in rows), key=len)
        if len(longest) > ID_CHARS:  # e.g. an imported log's (a task's are refused as it loads)
            raise UserError(
                f"An item id of {len(longest):,} characters ({longest[:40]!r}...) is longer than the store's "
                f"{ID_CHARS}; give its items shorter ids."
            )
        with self._space(), self.engine.begin() as conn:
            conn.execute(_insert_ignoring_duplicates(self.engine), rows)

    @contextlib.contextmanager
    def _space(self):
        """A write the disk has no room for stops the run in one sentence; what was committed stays."""
        from sqlalchemy.exc import OperationalError

        try:
            yield
        except OperationalError as exc:
            if "full" not in str(exc.orig) and "space" not in str(exc.orig):
                raise
            where = self.engine.url.render_as_string(hide_password=True)
            raise UserError(
                f"The disk holding the results store at {where} is full; every record written before this one is "
                "kept, so free some space and run the same command again to go on from there."
            ) from None

    def records(self, run_id: str | None = None) -> pd.DataFrame:
        """Every record (of `run_id`), one row each; a store written before a column existed reads
        None there, and reading never changes the store."""
        have = self._record_columns()
        q = select(*[records.c[c] for c in REPORT_COLUMNS if c in have])
        if run_id:
            q = q.where(records.c.run_id == run_id)
        with self.engine.connect() as conn:
            df = pd.DataFrame(conn.execute(q).fetchall(), columns=[c for c in REPORT_COLUMNS if c in have])
        return df.reindex(columns=REPORT_COLUMNS)

    # ---- what the viewer's pages read: paged and filtered here, so no SQL lives in the viewer

    def records_stamp(self, run_id: str) -> tuple:
        """(record count, newest record time) of a run: it changes whenever a record is added."""
        q = select(func.count(), func.max(records.c.created_at)).where(records.c.run_id == run_id)
        with self.engine.connect() as conn:
            return tuple(conn.execute(q).one())

    def config_counts(self, run_id: str) -> list[dict]:
        """Per (model, task, config, split) of a run: items, mean score of the answered, parse failures, errors."""
        r = records.c
        q = (
            select(r.model, r.task, r.strategy, r.optimizer, r.config_id, r.split, func.count().label("n"),
                   func.avg(case((r.error.is_(None), r.score), else_=None)).label("score"),
                   func.sum(case((and_(r.error.is_(None), r.parse_ok.is_(False)), 1), else_=0)).label("parse"),
                   func.sum(case((r.error.is_not(None), 1), else_=0)).label("errors"))
            .where(r.run_id == run_id)
            .group_by(r.model, r.task, r.strategy, r.optimizer, r.config_id, r.split)
            .order_by(r.task, r.model, r.config_id, r.split)
        )  # fmt: skip
        with self.engine.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(q)]

    @staticmethod
    def _shown(q, show: str, text: str):
        r = records.c
        if show == "wrong":
            q = q.where(r.error.is_(None), r.score < 1)
        elif show == "parse":
            q = q.where(r.error.is_(None), r.parse_ok.is_(False))
        elif show == "errors":
            q = q.where(r.error.is_not(None))
        if text:
            like = f"%{text}%"
            q = q.where(or_(r.example_id.ilike(like), r.prediction.ilike(like), r.gold.ilike(like),
                            r.raw_output.ilike(like)))  # fmt: skip
        return q

    def examples_page(self, run_id: str, model: str, task: str, config: str, split: str, show: str = "all",
                      text: str = "", page_no: int = 1, per_page: int = 50) -> tuple[list[dict], int]:  # fmt: skip
        """One page of a config's records (all, wrong, parse failures or errors; `text` searched in
        ids, answers and replies), and how many match."""
        r = records.c
        base = [r.run_id == run_id, r.model == model, r.task == task, r.config_id == config, r.split == split]
        cols = [r.id, r.example_id, r.gold, r.prediction, r.score, r.parse_ok, r.error, r.lm_calls,
                r.prompt_tokens, r.completion_tokens, r.cost_usd, r.latency_s, r.raw_output]  # fmt: skip
        q = self._shown(select(*cols).where(*base), show, text)
        count = self._shown(select(func.count()).select_from(records).where(*base), show, text)
        q = q.order_by(r.example_id).limit(per_page).offset(per_page * (page_no - 1))
        with self.engine.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(q)], int(conn.execute(count).scalar() or 0)

    def record(self, run_id: str, record_id: int) -> dict | None:
        """One record of a run by its row id, every column this database has."""
        have = self._record_columns()
        cols = [c for c in records.columns if c.name in have]
        q = select(*cols).where(records.c.run_id == run_id, records.c.id == record_id)
        with self.engine.connect() as conn:
            row = conn.execute(q).first()
        return dict(row._mapping) if row else None

    def compared(self, run_id: str, task: str, split: str, a: tuple[str, str], b: tuple[str, str], page_no: int = 1,
                 per_page: int = 50) -> tuple[list[dict], list]:  # fmt: skip
        """Items two (model, config) pairs both answered: one page of them, items scored apart
        first, and every item's (id, score under a, score under b) for the paired figures."""
        ra, rb = records.alias("a"), records.alias("b")
        on = and_(ra.c.example_id == rb.c.example_id, rb.c.run_id == run_id, rb.c.task == task, rb.c.split == split,
                  rb.c.model == b[0], rb.c.config_id == b[1], rb.c.error.is_(None))  # fmt: skip
        where = [ra.c.run_id == run_id, ra.c.task == task, ra.c.split == split, ra.c.model == a[0],
                 ra.c.config_id == a[1], ra.c.error.is_(None)]  # fmt: skip
        differs = case((ra.c.score != rb.c.score, literal(0)), else_=literal(1))
        q = (
            select(ra.c.example_id, ra.c.gold, ra.c.id.label("a_id"), ra.c.prediction.label("a_prediction"),
                   ra.c.score.label("a_score"), rb.c.id.label("b_id"), rb.c.prediction.label("b_prediction"),
                   rb.c.score.label("b_score"))
            .select_from(ra.join(rb, on)).where(*where)
        )  # fmt: skip
        scores = select(ra.c.example_id, ra.c.score, rb.c.score).select_from(ra.join(rb, on)).where(*where)
        paged = q.order_by(differs, ra.c.example_id).limit(per_page).offset(per_page * (page_no - 1))
        with self.engine.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(paged)], conn.execute(scores).fetchall()

    def _record_columns(self) -> set[str]:
        """The columns `records` has in this database (asked until it has them all: they are only added)."""
        if getattr(self, "_complete", False):
            return {c.name for c in records.columns}
        from sqlalchemy import inspect

        have = {c["name"] for c in inspect(self.engine).get_columns("records")}
        self._complete = {c.name for c in records.columns} <= have
        return have

    def _add_missing_columns(self) -> None:
        """Columns added to `records` since a store was made (nullable ones), added before a write."""
        if all(c.name in self._record_columns() for c in records.columns):
            return
        with schema_lock(self.engine):  # workers sharing a store: one adds, the others see it added
            missing = [c for c in records.columns if c.name not in self._record_columns()]
            with self.engine.begin() as conn:
                for column in missing:
                    kind = column.type.compile(dialect=self.engine.dialect)
                    # SQLite: another writer may have added it meanwhile (checked below)
                    with contextlib.suppress(Exception), conn.begin_nested():
                        conn.exec_driver_sql(f"ALTER TABLE records ADD COLUMN {column.name} {kind}")
        still = [c.name for c in records.columns if c.name not in self._record_columns()]
        if still:
            where = self.engine.url.render_as_string(hide_password=True)
            raise UserError(
                f"The results store at {where} lacks the column {still[0]!r} of this promptopt version and it "
                "could not be added; let this database user ALTER the records table, or use a new --storage."
            )

    def add_manifest(self, run_id: str, manifest: dict) -> None:
        import hashlib

        text = json.dumps(manifest, sort_keys=True)
        row = {"run_id": run_id, "digest": hashlib.sha256(text.encode()).hexdigest(), "manifest": text,
               "created_at": time.time()}  # fmt: skip
        with self.engine.begin() as conn:
            conn.execute(_insert_ignoring_duplicates(self.engine, manifests), [row])

    def manifests(self, run_id: str | None = None) -> list[dict]:
        """Each distinct environment the run (every run) ran with, oldest first, with its run id."""
        if not self._has("manifests"):
            return []
        q = select(manifests.c.run_id, manifests.c.manifest).order_by(manifests.c.created_at, manifests.c.digest)
        if run_id:
            q = q.where(manifests.c.run_id == run_id)
        with self.engine.connect() as conn:
            return [{"run_id": rid, **json.loads(text)} for rid, text in conn.execute(q)]

    # ---- bundles (promptopt.bundle): every per-run table out as rows, and back in

    def dump(self, run_ids: list[str]) -> dict[str, list[dict]]:
        """Every row of every per-run table for `run_ids` (records with their requests as sent),
        ordered by primary key. Left out: compile_calls, judgments and the batch tables, caches no
        report reads."""
        out = {}
        for table in metadata.sorted_tables:
            if "run_id" not in table.c or table in (batches, batch_answers) or not self._has(table.name):
                continue
            from sqlalchemy import inspect

            have = {c["name"] for c in inspect(self.engine).get_columns(table.name)}
            cols = [c for c in table.columns if c.name in have]
            q = select(*cols).where(table.c.run_id.in_(run_ids)).order_by(*table.primary_key.columns)
            with self.engine.connect() as conn:
                out[table.name] = [dict(row._mapping) for row in conn.execute(q)]
        return out

    def load(self, name: str, rows: list[dict], chunk: int = 5_000) -> None:
        """Rows of a dumped table written back as they were (a record keeps its row id)."""
        table = metadata.tables.get(name)
        if table is None or "run_id" not in table.c:
            raise KeyError(name)
        known = {c.name for c in table.columns}
        for start in range(0, len(rows), chunk):
            part = [{k: v for k, v in row.items() if k in known} for row in rows[start : start + chunk]]
            with self.engine.begin() as conn:
                conn.execute(table.insert(), part)

    def runs(self) -> pd.DataFrame:
        with self.engine.connect() as conn:
            return pd.DataFrame(
                conn.execute(select(runs).order_by(runs.c.created_at, runs.c.run_id)).fetchall(),
                columns=["run_id", "created_at", "plan", "version"],
            )


def _create_tables(engine: Engine, attempts: int = 8) -> None:
    from sqlalchemy.exc import OperationalError, ProgrammingError

    for attempt in range(attempts):
        try:
            with schema_lock(engine):
                metadata.create_all(engine)
            return
        except (OperationalError, ProgrammingError):
            # another process created a table between the existence check and CREATE TABLE, or
            # held the write lock: the next attempt sees the tables and creates only what is missing
            if attempt == attempts - 1:
                raise
            time.sleep(0.2 * (attempt + 1))


@contextlib.contextmanager
def schema_lock(engine: Engine) -> Iterator[None]:
    """Serialize creating tables across workers that start at once on one PostgreSQL database
    (concurrent CREATE TABLE clashes there); SQLite serializes writers itself."""
    if engine.dialect.name != "postgresql":
        yield
        return
    with engine.connect() as conn:
        conn.execute(text("SELECT pg_advisory_lock(7402110)"))
        conn.commit()
        try:
            yield
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(7402110)"))
            conn.commit()


def optuna_storage(url: str, heartbeat_s: int, on_stale):
    """Optuna's RDB storage on the results store's database; SQLite waits for other writers.
    Each worker records a heartbeat every `heartbeat_s` for the trials it holds; `on_stale` gets
    a trial whose worker stayed silent for three of them."""
    import time
    import warnings

    import optuna
    from sqlalchemy.exc import IntegrityError, OperationalError

    kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {"pool_pre_ping": True}
    engine = create_engine(url)
    try:
        for attempt in range(8):
            try:
                with schema_lock(engine), warnings.catch_warnings():  # Optuna creates its tables on first use
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    return optuna.storages.RDBStorage(
                        url, engine_kwargs=kwargs, heartbeat_interval=heartbeat_s,
                        grace_period=3 * heartbeat_s, heartbeat_stale_trial_callback=on_stale,
                    )  # fmt: skip
            except (OperationalError, IntegrityError):
                # SQLite: another worker created a table (or wrote Optuna's schema version) between
                # Optuna's check and its own write; the next attempt finds them and writes nothing
                if attempt == 7:
                    raise
                time.sleep(0.2 * (attempt + 1))
    finally:
        engine.dispose()


def safe_url(url: str) -> str:
    """The storage URL without its password: a database password stays in the environment
    (e.g. PGPASSWORD or ~/.pgpass for PostgreSQL), never in the run folder."""
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except Exception as exc:
        raise UserError(
            f"The storage URL is not a valid SQLAlchemy URL ({type(exc).__name__}); e.g. sqlite:///results.sqlite."
        ) from None
    return parsed.set(password=None).render_as_string(hide_password=False)


def _insert_ignoring_duplicates(engine: Engine, table: Table = records):
    """An insert that skips rows whose key is already there (another worker wrote them first)."""
    name = engine.dialect.name
    if name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    elif name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        return table.insert().prefix_with("IGNORE") if name == "mysql" else table.insert()
    # records: its unique key (its primary key is a row number); the others: their primary key
    keys = ["run_id", "model", "task", "config_id", "split", "example_id"] if table is records else [c.name for c in table.primary_key]
    return insert(table).on_conflict_do_nothing(index_elements=keys)


def _without_nul(_conn, _cursor, statement, parameters, _context, _many):
    """PostgreSQL's text cannot hold NUL, which a model may write: there it is kept as U+FFFD
    (JSON columns escape it themselves; SQLite keeps it as it is)."""

    def clean(params):
        if isinstance(params, dict):
            return {k: v.replace("\x00", "\ufffd") if isinstance(v, str) else v for k, v in params.items()}
        return params

    cleaned = [clean(p) for p in parameters] if isinstance(parameters, list | tuple) else clean(parameters)
    return statement, cleaned


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA busy_timeout=30000")  # first, so that switching to WAL waits for other writers
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()
