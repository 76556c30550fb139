"""One pipeline that every driver runs: a run context, a bench per (model, task), ready → score → save.

`run` (every config), `search` (an Optuna study over configs), `compile` (one config) and
`evaluate` (a saved program) differ only in which configs they score on which items. Everything
else — the run folder and store, the budget, judges validated before any task call, endpoints
opened once per model (the embedded model judging too shares its server), programs prepared
and compiled once, records written as examples finish — lives here, so the drivers behave the
same: a search judges and probes as a run does, an evaluation keeps the budget and judges.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd

from promptopt import __version__
from promptopt.errors import UserError
from promptopt.manifest import environment, task_digest, versions
from promptopt.models import Model, build_lm, resolve_model
from promptopt.paths import bundled_dir
from promptopt.runplan import RunPlan, corpus_for, judge_models
from promptopt.scoring import Budget, BudgetReached, evaluate, note
from promptopt.session import adapter_for, endpoint, threads_for
from promptopt.store import ResultsStore, Store, default_url, safe_url


@dataclass(frozen=True)
class RunContext:
    """What every (model, task) of one invocation shares: its plan, folder, store, budget and the
    callback that receives progress and notes. `run_id` is the plan's unless a driver names its own
    (an evaluation of a saved program is keyed by the program)."""

    plan: RunPlan
    run_dir: Path
    store: ResultsStore  # promptopt.store.Store: the SQL implementation
    url: str
    budget: Budget
    on_progress: Callable | None = None
    run_id: str = ""

    @classmethod
    def open(cls, plan: RunPlan, on_progress=None, overlap: dict | None = None, *, run_dir: Path | None = None,
             run_id: str | None = None, url: str | None = None, described: dict | None = None,
             manifest: bool = True) -> RunContext:  # fmt: skip
        """The run's folder and store, created on first use; the same plan always gets the same ones.
        `overlap` (task -> overlap summary, from validate_plan) is stored with the plan for the report;
        a driver with its own keying (evaluate) names the folder, run id, store and description."""
        run_id = run_id or plan.run_id
        run_dir = run_dir or plan.out / run_id
        described = described or plan.describe()
        created = not run_dir.exists()
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            url = url or plan.storage or default_url(run_dir)
            if manifest:  # a run folder says which store and run it holds; a program folder is not one
                (run_dir / "run.json").write_text(json.dumps(
                    {"run_id": run_id, "storage": safe_url(url), "plan": described, "versions": versions()}, indent=2
                ))  # fmt: skip
        except OSError as exc:
            raise UserError(
                f"Cannot write to the output folder {run_dir.parent} ({exc.strerror}); choose another --out."
            ) from None
        try:
            store = Store(url)
        except BaseException:
            if created:  # a store that cannot be opened leaves no run folder for a report to call interrupted
                shutil.rmtree(run_dir, ignore_errors=True)
            raise
        store.start_run(run_id, described | ({"overlap": overlap} if overlap else {}), __version__)
        budget = Budget(plan.max_calls, plan.max_cost, max_error_rate=plan.max_error_rate)
        return cls(plan, run_dir, store, url, budget, on_progress, run_id)

    def say(self, text: str) -> None:
        note(self.on_progress, text)

    @contextlib.contextmanager
    def models(self, models: list[Model], tasks: list, configs=()) -> Iterator[Iterator[dict[str, Bench]]]:
        """Judges opened and validated on every judged task first, then per model its endpoint
        (started once), yielding {task name: Bench} for that model while its endpoint is open."""
        with contextlib.ExitStack() as stack:
            lives: dict = {}
            panels = open_judges(self, tasks, stack, lives)

            def each() -> Iterator[dict[str, Bench]]:
                for model in models:
                    threads = threads_for(self.plan.threads, model)
                    opened = lives.get(model.name) if model.is_local else None  # the embedded model judging too
                    with (contextlib.nullcontext(opened) if opened else
                          endpoint(model, log=self.run_dir / "server.log", parallel=threads)) as live:  # fmt: skip
                        check_endpoint(live, configs, self.plan)
                        self.store.add_manifest(self.run_id, environment([live], tasks))
                        lm, adapter = build_lm(live), adapter_for(live)
                        yield {t.name: Bench(self, t, live, lm, adapter, threads, panels.get(t.name)) for t in tasks}

            yield each()

    @contextlib.contextmanager
    def noted(self, expected: dict | None = None) -> Iterator[dict]:
        """Note in the store that this invocation is in progress, then why it stopped early (so the
        report can say so), or that it finished. A budget stop is a clean end; too many errors is
        re-raised for the CLI. A process killed outright leaves the run `in_progress`."""
        from promptopt.scoring import TooManyErrors

        store, run_id = self.store, self.run_id
        outcome: dict = {}
        store.set_status(run_id, "in_progress", expected)
        try:
            yield outcome
        except BudgetReached as exc:
            outcome["reason"] = str(exc)
            store.set_stop(run_id, str(exc))
            store.set_status(run_id, "stopped")
            return
        except TooManyErrors as exc:
            store.set_stop(run_id, str(exc))
            store.set_status(run_id, "stopped")
            raise
        except BaseException:  # Ctrl-C, a fatal LM error: the records so far are kept, the run is not done
            with contextlib.suppress(Exception):
                store.set_status(run_id, "interrupted")
            raise
        store.set_stop(run_id, None)
        store.set_status(run_id, "complete")


@dataclass(frozen=True)
class Scored:
    """One config's score on some items of a split: the answered items' mean, how many were
    answered and failed, its cost per item attempted in USD and in LM calls (failed calls were
    paid for too) and the item scores (errors left out), for paired comparisons."""

    score: float | None
    n: int
    errors: int
    usd: float
    calls: float
    items: pd.Series


@dataclass
class Bench:
    """One model on one task, endpoint open: everything a config needs to be readied and scored."""

    ctx: RunContext
    task: object  # promptopt.tasks.Task
    model: Model  # live: its endpoint is open
    lm: object
    adapter: object
    threads: int
    judges: object = None  # the task's promptopt.judge.Panel when it is judged
    saved: dict = field(default_factory=dict)  # config id -> program folder

    def ready(self, cfg):
        """The config's program: built, given its corpus, its pool prepared and compiled (once)."""
        program = self.ctx.plan.catalog.strategy(cfg.strategy).build(self.task, **cfg.knobs)
        give_corpus(program, self.ctx.plan, self.task, self.ctx.run_dir)
        prepare(program, self, cfg)
        return compile_once(program, self, cfg)

    def score(self, program, cfg, split: str, examples=None, adaptive: bool = False) -> Scored:
        """Score `program` on `examples` (default: the split's items up to the plan's limit); only
        what is not yet recorded is asked. Returns the config's score on exactly those items.
        With --batch the calls go through the provider's batch API, unless the pass is `adaptive`
        (what it scores next depends on this score: a search's rungs)."""
        examples = self.task.examples(split, self.ctx.plan.limit) if examples is None else examples
        if self.ctx.plan.batch and not adaptive:
            from promptopt.batch import through_batches

            through_batches(self, lambda: self._evaluate(program, cfg, split, examples))
        else:
            self._evaluate(program, cfg, split, examples)
        return self.measure(cfg, split, [e.id for e in examples])

    def _evaluate(self, program, cfg, split: str, examples) -> None:
        evaluate(
            program, examples, task=self.task, model=self.model, lm=self.lm, adapter=self.adapter_of(cfg), config=cfg,
            split=split, run_id=self.ctx.run_id, store=self.ctx.store, threads=self.threads,
            on_progress=self.ctx.on_progress, budget=self.ctx.budget, judges=self.judges,
        )  # fmt: skip

    def adapter_of(self, cfg):
        """The prompt format of this config (its `adapter` knob; the model's default chat adapter
        when it sets none)."""
        kind = (cfg.knobs or {}).get("adapter")
        return self.adapter if kind in (None, "chat") else adapter_for(self.model, cfg.knobs)

    def records(self, config_id: str, split: str | None = None, ids=None, recs=None) -> pd.DataFrame:
        """This bench's records of one config (`recs`: the run's records, when read already)."""
        recs = self.ctx.store.records(self.ctx.run_id) if recs is None else recs
        keep = (recs.model == self.model.identity) & (recs.task == self.task.name) & (recs.config_id == config_id)
        if split is not None:
            keep &= recs.split == split
        if ids is not None:
            keep &= recs.example_id.isin(set(ids))
        return recs[keep]

    def records_all(self) -> pd.DataFrame:
        """Every record of this model on this task in the run, all configs and splits."""
        recs = self.ctx.store.records(self.ctx.run_id)
        return recs[(recs.model == self.model.identity) & (recs.task == self.task.name)]

    def measure(self, cfg, split: str, ids, recs=None) -> Scored:
        from promptopt import stats

        mine = self.records(cfg.id, split, ids, recs)
        n = max(len(mine), 1)
        scored = stats.split_score(mine) if len(mine) else {"score": None, "n": 0, "errors": 0}
        usd, calls = float(mine.cost_usd.sum() / n), float(mine.lm_calls.sum() / n)
        return Scored(scored["score"], scored["n"], scored["errors"], usd, calls, stats.answered_scores(mine))

    def save(self, program, cfg) -> Path:
        """Save what was scored as a loadable program, with its scores and preparation cost."""
        self.saved[cfg.id] = folder = save_program(program, self, cfg)
        return folder

    def run_config(self, cfg) -> None:
        """A grid run's unit of work: the config readied, scored on every split of the plan, saved."""
        program = self.ready(cfg)
        for split in self.ctx.plan.splits:
            self.score(program, cfg, split)
        self.save(program, cfg)

    def run_configs(self, configs) -> None:
        """Every config of a grid run. With --batch, all are readied first and every (config,
        split) pass shares each batch round: one batch per round for the whole grid, not one
        per pass, since a batch may take hours to come back."""
        if not self.ctx.plan.batch:
            for cfg in configs:
                self.run_config(cfg)
            return
        from promptopt.batch import through_batches

        ready = [(cfg, self.ready(cfg)) for cfg in configs]

        def every_pass() -> None:
            for cfg, program in ready:
                for split in self.ctx.plan.splits:
                    self._evaluate(program, cfg, split, self.task.examples(split, self.ctx.plan.limit))

        through_batches(self, every_pass)
        for cfg, program in ready:
            self.save(program, cfg)


def check_endpoint(model: Model, configs, plan: RunPlan) -> None:
    """What a config needs from a live endpoint that only asking it can tell (cloze on an
    --api-base server: one tiny request), before any of the configs' calls."""
    from promptopt.logprobs import protocol

    for cfg in configs:
        if "prompt_logprobs" in plan.catalog.strategy(cfg.strategy).needs and not model.is_local:
            protocol(model)
            return


def open_judges(ctx: RunContext, tasks, stack: contextlib.ExitStack, lives: dict) -> dict:
    """task name -> its promptopt.judge.Panel, every judge validated on the task first: a judge
    whose kappa is below --min-judge-kappa stops the run (before any task call) when the judge is
    the task's primary metric, and is left out (its scores withheld) when it is not. `lives`
    collects the endpoints opened, so a task model that is also a judge reuses its server."""
    from promptopt.judge import Judge, Panel, grade_labels, read_labels, refusal, rubric_for, validate
    from promptopt.tasks import JudgeSpec

    plan, store, run_dir, on_progress, budget = ctx.plan, ctx.store, ctx.run_dir, ctx.on_progress, ctx.budget

    panels = {}
    for task in tasks:
        chosen = judge_models(plan, task)
        if not chosen:
            continue
        spec = task.spec.judge or JudgeSpec()
        primary = task.answer_type.primary_metric == "judge"
        labels = read_labels(task, task.path.parent / spec.labels) if spec.labels else None  # checked before any call
        trusted = []
        for judge_model in chosen:
            threads = threads_for(plan.threads, judge_model)
            if judge_model.name not in lives:
                lives[judge_model.name] = stack.enter_context(
                    endpoint(judge_model, log=run_dir / "server.log", parallel=threads)
                )
            judge = Judge(lives[judge_model.name], rubric_for(spec), store)
            note(on_progress, f"Validating judge {judge_model.name} on {task.name}: it grades {spec.checks} val "
                              "items' own references (should pass), other items' references and near misses (should fail) ...")  # fmt: skip
            earlier = store.judge_checks(ctx.run_id)
            mine = earlier[(earlier["task"] == task.name) & earlier["trusted"].astype(bool)] if len(earlier) else earlier
            if len(mine):  # only judges that were trusted have scored anything
                other = sorted(set(mine["judge"]) - {j.identity for j in chosen})
                first = mine[mine["order"] == 0]["judge"].tolist() if "order" in mine else []
                rubric = "rubric" in mine and (mine["rubric"].dropna() != judge.rubric.digest).any()
                rubric = rubric or ("aggregate" in mine and (mine["aggregate"].dropna() != spec.aggregate).any())
                if other or rubric or (first and first[0] != chosen[0].identity):
                    raise UserError(
                        f"Run {ctx.run_id} judged task {task.name} with "
                        f"{', '.join(other or first) if other or first else 'another rubric or aggregate'}; its verdicts and this "
                        "judge's would be mixed in one score. Restore the task's judge settings, or start a new run "
                        "(another --out)."
                    )
            check = validate(judge, task, plan.min_judge_kappa, spec.checks, threads)
            budget.charge_judge(check.usage)
            extra = {"rubric": judge.rubric.digest, "order": chosen.index(judge_model), "aggregate": spec.aggregate}
            if labels:
                note(on_progress, f"Judge {judge_model.name} grades the {len({(r['id'], r['answer'], r.get('criterion')) for r in labels})} "
                                  f"human-labelled answers of {task.name} ...")  # fmt: skip
                extra["labels"], usage = grade_labels(judge, task, labels, threads)
                budget.charge_judge(usage)
                extra |= {k: check.usage.get(k, 0) + usage[k] for k in usage}  # validation's cost, labels included
            store.add_judge_check(ctx.run_id, check.as_row() | extra)
            verdict = "trusted" if check.trusted else "NOT trusted"
            note(on_progress, f"Judge {judge_model.name} on {task.name}: agreement {100 * check.agreement:.0f}% on "
                              f"{check.n} planted verdicts, kappa {check.kappa:.2f}"
                              + (f", {check.near_kappa:.2f} on {check.near} near misses" if check.near else "")
                              + f" (threshold {check.min_kappa:g}): "
                              f"{verdict}; {check.usage['lm_calls']} judge calls.")  # fmt: skip
            if check.trusted:
                trusted.append(judge)
            elif primary:
                raise UserError(refusal(check, judge_model.name))
            else:
                note(on_progress, f"Its scores on {task.name} are withheld: the judge metric is not the primary one.")
        panels[task.name] = Panel(trusted, primary=primary, aggregate=spec.aggregate)
    return panels


def compile_once(program, bench: Bench, config):
    """The config's optimizer applied to `program`; a compile finished before is loaded, not redone."""
    if config.optimizer == "none":
        return program
    import time

    import dspy

    from promptopt.checkpoint import CallJournal, scope_of, total
    from promptopt.compiler import compile_program, dev_split
    from promptopt.dryrun import estimate_config
    from promptopt.models import CallLog, counting_compile, lm_for

    ctx, task, model = bench.ctx, bench.task, bench.model
    lm = lm_for(bench.lm, config.knobs)
    folder = program_dir(ctx.run_dir, model, task, config)
    done = ctx.store.compile_costs(ctx.run_id)
    finished = not done[(done.model == model.identity) & (done.task == task.name) & (done.config_id == config.id)].empty
    if finished and (folder / "program.json").exists():
        program.load_state(json.loads((folder / "program.json").read_text()))
        return program
    journal = CallJournal(ctx.store, scope_of(ctx.run_id, model.identity, task.name, config.id))
    # calls kept from an interrupted compile are replayed for free
    ctx.budget.check(next_calls=max(0, estimate_config(ctx.plan, task, config)["compile_calls"] - len(journal.kept)))
    kept = f" (replaying the {len(journal.kept)} calls an interrupted compile made)" if journal.kept else ""
    ctx.say(f"Compiling {config.strategy} with {config.optimizer} for {model.name} on {task.name}{kept} ...")
    started = time.monotonic()
    log = CallLog()
    # Optimizers choose among their candidates on a dev split carved from train: the val items
    # that choose among configs must not also have chosen inside one of them.
    train, dev = dev_split(task.examples("train"), config.optimizer_knobs)
    knobs = config.optimizer_knobs
    prompt_model = knobs.get("prompt_model") or knobs.get("reflection_model")
    prompt_lm = build_lm(resolve_model(prompt_model)) if prompt_model else None
    prompt_log = CallLog()
    if prompt_lm is not None:
        prompt_lm.role_log = prompt_log  # its calls are the proposer's or reflection's, not the task model's
    with (
        counting_compile(log, *filter(None, [lm, prompt_lm]), journal=journal),
        dspy.context(lm=lm, adapter=bench.adapter_of(config)),
        open(ctx.run_dir / "compile.log", "a") as out,
        contextlib.redirect_stdout(out),  # DSPy's optimizers print their progress
    ):
        try:
            compiled = compile_program(
                program, config, task, train, dev, threads=bench.threads, prompt_lm=prompt_lm,
                extra_dirs=ctx.plan.programs_dirs,
            )  # fmt: skip
        except (UserError, BudgetReached, KeyboardInterrupt):
            raise
        except Exception as exc:  # an LM error that outlasted the retries inside an optimizer: one sentence
            from promptopt.models import fatal_reason, short_error

            raise UserError(
                fatal_reason(exc, model) or f"Compiling {config.id} for {model.name} on {task.name} failed: "
                f"{short_error(exc)}; the records scored so far are kept, and the same command compiles it again."
            ) from exc
        finally:
            ctx.budget.charge(log)
            ctx.budget.charge(prompt_log)
    save_program(compiled, bench, config)
    task_part = total(log, journal)  # the compile's cost includes what the interrupted try paid
    whole = task_part
    roles = {"task": (model.name, task_part)}
    if prompt_lm is not None:
        roles["reflection" if knobs.get("reflection_model") else "proposer"] = (prompt_model, prompt_log)
        whole = CallLog(task_part.calls + prompt_log.calls, task_part.prompt_tokens + prompt_log.prompt_tokens,
                        task_part.completion_tokens + prompt_log.completion_tokens,
                        task_part.cost_usd + prompt_log.cost_usd)  # fmt: skip
    ctx.store.add_compile(ctx.run_id, model.identity, task.name, config.id, whole, time.monotonic() - started)
    ctx.store.add_compile_roles(ctx.run_id, model.identity, task.name, config.id, roles)
    replayed = f", {journal.replayed.calls} more replayed" if journal.replayed.calls else ""
    ctx.say(f"Compiled in {time.monotonic() - started:.0f}s with {log.calls} LM calls{replayed} (${whole.cost_usd:.4f}).")
    return compiled


def program_dir(run_dir: Path, model: Model, task, config) -> Path:
    slug = "".join(c if c.isalnum() or c in "-_." else "_" for c in model.name)
    task_slug = task.name.replace(":", "_")  # an open-ended twin (medqa:open): no colon in a path
    return run_dir / "programs" / f"{slug}--{task_slug}--{config.id}"


def save_program(program, bench: Bench, config) -> Path:
    """Save what was evaluated as a loadable program, with its scores and preparation cost."""
    from promptopt import compiled
    from promptopt.stats import split_score

    ctx, task, model = bench.ctx, bench.task, bench.model
    mine = bench.records(config.id)
    scores = {
        split: {key: scored[key] for key in ("n", "score", "errors")}
        for split, g in mine.groupby("split")
        if (scored := split_score(g))
    }
    prep = mine[mine.split == "train"]
    comp = ctx.store.compile_costs(ctx.run_id)
    comp = comp[(comp.model == model.identity) & (comp.task == task.name) & (comp.config_id == config.id)]
    source = Path(ctx.plan.catalog.strategy(config.strategy).source).resolve().parent
    strategy_dir = None if source == bundled_dir("programs").resolve() else source
    return compiled.save(
        program, program_dir(ctx.run_dir, model, task, config), task=task, model=model, config=config,
        strategy_dir=strategy_dir, run_id=ctx.run_id, scores=scores,
        preparation={"lm_calls": int(prep.lm_calls.sum()), "cost_usd": float(prep.cost_usd.sum())},
        compile={"lm_calls": int(comp.lm_calls.sum()), "cost_usd": float(comp.cost_usd.sum())},
        data_sha1=task_digest(task),
    )  # fmt: skip


def give_corpus(program, plan: RunPlan, task, run_dir: Path) -> None:
    """A retrieval program's passages, with its index stored beside the run (built once, reused)."""
    if hasattr(program, "use_corpus"):  # the strategy's `uses_corpus` trait
        program.use_corpus(corpus_for(plan, task, program.strategy_name), run_dir / "indexes")


def prepare(program, bench: Bench, config) -> None:
    """Give a program that learns from training examples (it has `fit_pool`) its pool.

    When the program needs the model's own explanations (`teacher()` is not None), the teacher
    answers the training pool like any evaluation, split `train`: the records say what
    preparation cost and an interrupted preparation resumes without repeating calls. The pool
    keeps the examples the model explained correctly.
    """
    if not hasattr(program, "fit_pool"):  # the strategy's `prepares` trait
        return
    train = bench.task.examples("train")[: program.pool_size]  # items, also for a probe task (several per source)
    teacher = program.teacher()
    explanations = None
    if teacher is not None:
        ctx = bench.ctx

        def run() -> None:
            evaluate(
                teacher, train, task=bench.task, model=bench.model, lm=bench.lm, adapter=bench.adapter_of(config),
                config=config,
                split="train", run_id=ctx.run_id, store=ctx.store, threads=bench.threads,
                on_progress=ctx.on_progress, budget=ctx.budget,
            )  # fmt: skip

        if ctx.plan.batch:  # the teacher answers a fixed pool: nothing depends on its answers
            from promptopt.batch import through_batches

            through_batches(replace(bench, judges=None), run)
        else:
            run()
        explanations = ctx.store.explanations(ctx.run_id, bench.model.identity, bench.task.name, config.id)
    from promptopt.models import CallLog, current_log

    log = CallLog()
    token = current_log.set(log)  # a hosted embedder's calls over the pool are the ledger's `embedding` role
    try:
        program.fit_pool(train, explanations)
    finally:
        current_log.reset(token)
    if log.embedding:
        bench.ctx.budget.charge(log)
        used = CallLog(int(log.embedding["lm_calls"]), int(log.embedding["prompt_tokens"]), 0, float(log.embedding["cost_usd"]))
        bench.ctx.store.add_compile_roles(bench.ctx.run_id, bench.model.identity, bench.task.name, config.id,
                                          {"embedding": (getattr(program.embedder, "model", "embedder"), used)})  # fmt: skip
