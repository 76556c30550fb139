"""The run engine behind `promptopt.run` — every (model, task, config, split) evaluated.

A run's id is a hash of what was asked (models with endpoints, tasks, configs, limit, seed), so
running the same command again lands in the same run folder and store, and `evaluate` skips every
example already recorded there: an interrupted run resumes without repeating LM calls.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from promptopt import __version__
from promptopt.compiler import dev_split
from promptopt.config import parse_config
from promptopt.errors import UserError
from promptopt.judge import DEFAULT_MIN_KAPPA
from promptopt.models import Model, build_lm, check_credentials, redact_url, resolve_model
from promptopt.paths import bundled_dir
from promptopt.registry import get_strategy
from promptopt.scoring import Budget, BudgetReached, Progress, evaluate, note
from promptopt.session import adapter_for, endpoint, threads_for
from promptopt.store import Store, default_url
from promptopt.tasks import check_gold, load_task

DEFAULT_MODEL = "local/gemma-3-270m"
DEFAULT_TASK = "medqa"
DEFAULT_STRATEGIES = ("baseline", "cot")
DEFAULT_LIMIT = 20


@dataclass
class RunPlan:
    models: list[str] = field(default_factory=lambda: [DEFAULT_MODEL])
    tasks: list[str] = field(default_factory=lambda: [DEFAULT_TASK])
    strategies: list[str] = field(default_factory=lambda: list(DEFAULT_STRATEGIES))
    optimizers: list[str] = field(default_factory=lambda: ["none"])
    api_base: str | None = None
    limit: int | None = DEFAULT_LIMIT
    splits: tuple[str, ...] = ("val", "test")
    seed: int = 0
    threads: int | None = None  # examples scored at once per endpoint (None: threads_for decides)
    out: Path = Path("results")
    storage: str | None = None
    tasks_dirs: list[Path] = field(default_factory=list)
    programs_dirs: list[Path] = field(default_factory=list)
    # Budgets do not change what a run computes, so they are not part of its id: the same
    # command with a larger budget continues the same run.
    max_calls: int | None = None
    max_cost: float | None = None
    max_error_rate: float | None = 0.5  # stop once more than this share of examples fail (after 20)
    rpm: float | None = None  # requests per minute per endpoint (None: PROMPTOPT_RPM, else no limit)
    expect_accuracy: float = 0.5  # prior for the bootstrap-call estimates (see promptopt.compiler)
    references: bool = True  # also score the fixed baseline and each compiled strategy zero-shot
    mode: str = "run"  # "search": an Optuna search over the configs instead of scoring them all
    allow_overlap: bool = False  # run even when demo pools overlap the test set (the report warns)
    judge_models: list[str] = field(default_factory=list)  # LLM judges (none: the task's, else the embedded model)
    judge_api_base: str | None = None  # the judges' OpenAI-compatible endpoint (none: their provider's)
    min_judge_kappa: float = DEFAULT_MIN_KAPPA  # a judge below this kappa on its validation is not trusted
    probes: list[str] = field(default_factory=list)  # robustness probes (promptopt.probes), beside the tasks' own
    corpus: Path | None = None  # passages for retrieval strategies, instead of each task's own corpus

    def describe(self) -> dict:
        """What identifies the run; endpoints without credentials. Only what was asked: what
        checking the plan found (e.g. overlap) is stored beside it, never hashed into the id."""
        return {
            "models": self.models,
            "api_base": redact_url(self.api_base) if self.api_base else None,
            "tasks": self.tasks,
            "strategies": self.strategies,
            "optimizers": self.optimizers,
            "limit": self.limit,
            "splits": list(self.splits),
            "seed": self.seed,
        } | ({"mode": self.mode} if self.mode != "run" else {}) | self._judging()

    def _judging(self) -> dict:
        """Judges change judged scores, so they are part of the id; left out when not given, so
        runs of tasks without a judge keep the ids they had."""
        out: dict = {}
        if self.judge_models:
            out["judges"] = self.judge_models
        if self.judge_api_base:
            out["judge_api_base"] = redact_url(self.judge_api_base)
        if self.min_judge_kappa != DEFAULT_MIN_KAPPA:
            out["min_judge_kappa"] = self.min_judge_kappa
        if self.probes:
            out["probes"] = self.probes
        if self.corpus is not None:  # another corpus retrieves other passages: another run
            from promptopt.corpus import task_corpus

            out["corpus"] = task_corpus(None, self.corpus).digest
        return out

    @property
    def run_id(self) -> str:
        return "run-" + hashlib.sha1(json.dumps(self.describe(), sort_keys=True).encode()).hexdigest()[:10]


@dataclass
class RunResult:
    run_id: str
    run_dir: Path
    storage: str
    stopped: str | None = None  # why the run stopped early (budget), if it did
    chosen: list[dict] = field(default_factory=list)  # a search's choice on val: model, task, config_id


def open_run(plan: RunPlan, overlap: dict | None = None) -> tuple[Path, Store, str]:
    """The run's folder and store, created on first use; the same plan always gets the same ones.
    `overlap` (task -> overlap summary, from validate_plan) is stored with the plan for the report."""
    run_dir = plan.out / plan.run_id
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "run.json").write_text(
            json.dumps({"run_id": plan.run_id, "storage": safe_url(url := plan.storage or default_url(run_dir)),
                        "plan": plan.describe()}, indent=2)
        )  # fmt: skip
    except OSError as exc:
        raise UserError(
            f"Cannot write to the output folder {plan.out} ({exc.strerror}); choose another --out."
        ) from None
    store = Store(url)
    store.start_run(plan.run_id, plan.describe() | ({"overlap": overlap} if overlap else {}), __version__)
    return run_dir, store, url


def validate_plan(plan: RunPlan, configs: list | None = None, credentials: bool = True):
    """Tasks, models and configs of the plan (or the `configs` given), all checked before a
    server starts or a call is made, and per task the overlap of its demo pools with its test
    set that --allow-overlap let through."""
    for split in plan.splits:
        if split not in ("val", "test"):
            raise UserError(f"Cannot score split {split!r}; valid splits are val and test (train feeds optimizers).")
    tasks = plan_tasks(plan)
    if plan.mode == "search" and (plan.probes or any("~" in t.name for t in tasks)):
        raise UserError(
            "A search does not score probes yet (each probe task would be searched on its own, so no robust "
            "ceiling could be read); use `promptopt run` with --probe, or drop the probes."
        )
    models = [resolve_model(m, plan.api_base, **({"rpm": plan.rpm} if plan.rpm else {})) for m in plan.models]
    for model in models if credentials else ():  # a dry run calls nothing, so needs no key
        check_credentials(model)
    for task in tasks:
        for judge in judge_models(plan, task):
            if credentials:
                check_credentials(judge)
    configs = plan_configs(plan) if configs is None else configs
    from promptopt.logprobs import check_model, check_reasoning_effort

    for cfg in configs:
        strat = get_strategy(cfg.strategy, plan.programs_dirs)
        for task in tasks:
            strat.build(task, **cfg.knobs)  # refuses answer types it cannot serve
            if strat.uses_corpus:
                corpus_for(plan, task, strat.name)  # a corpus is named and readable
        for model in models:  # what the endpoint must return, and knobs the model must take
            check_model(model, strat.needs, strat.name)
            if cfg.knobs.get("reasoning_effort"):
                check_reasoning_effort(model, cfg.id)
    from promptopt.hygiene import enforce

    for task in tasks:
        for split in plan.splits:
            if not task.examples(split, plan.limit):  # load and split now: bad data fails before any call
                raise UserError(
                    f"Task {task.name}: its {split} split is empty; give the task more rows or smaller split "
                    f"sizes in {task.path}."
                )

        check_gold(task)  # every gold answer valid and scoring 1.0 against itself, before any call

    overlap = {t.name: found for t in tasks if (found := enforce(t, plan.allow_overlap))}
    return tasks, models, configs, overlap


def corpus_for(plan: RunPlan, task, strategy: str):
    """The passages `strategy` retrieves from on `task`: --corpus, else the task's own; none is one sentence.
    A corpus passage that holds a test item's answer text stops the run like a demo-pool overlap."""
    from promptopt.corpus import leaks, task_corpus

    corpus = task_corpus(task, plan.corpus)
    if corpus is None:
        raise UserError(
            f"Strategy {strategy!r} needs passages to retrieve from, and task {task.name} names no corpus; give "
            "--corpus PATH (a JSONL file with id and text per line, or a folder of .txt files) or add corpus: "
            "to the task's YAML."
        )
    found = leaks(task, corpus)
    if found and not plan.allow_overlap:
        item, passage = found[0]
        raise UserError(
            f"Task {task.name}: {len(found)} corpus passages hold a test item's answer text (e.g. test item {item} "
            f"in passage {passage}), so retrieval could read the answer; remove them from the corpus or pass "
            "--allow-overlap."
        )
    return corpus


def check_endpoint(model: Model, configs, plan: RunPlan) -> None:
    """What a config needs from a live endpoint that only asking it can tell (cloze on an
    --api-base server: one tiny request), before any of the configs' calls."""
    from promptopt.logprobs import protocol

    for cfg in configs:
        if "prompt_logprobs" in get_strategy(cfg.strategy, plan.programs_dirs).needs and not model.is_local:
            protocol(model)


def plan_tasks(plan: RunPlan) -> list:
    """The plan's tasks, each followed by the probe tasks its probes make (--probe, and the ones
    its YAML declares): medqa with negation adds medqa~negation. The language probe adds no task;
    it needs another language of the task's group among the plan's tasks."""
    from promptopt.probes import parse_probe
    from promptopt.tasks import available_tasks, load_task_file, probe_task

    asked = [parse_probe(p) for p in plan.probes]
    out, names = [], set()
    given = [load_task(t, plan.tasks_dirs, plan.programs_dirs) for t in plan.tasks]
    for task in given:
        own = [parse_probe(p) for p in task.spec.probes]
        for t in [task, *_probed(task, asked + own, probe_task, own)]:
            if t.name not in names:
                names.add(t.name)
                out.append(t)
    transformable = [p for p in asked if p.name != "language"]
    if transformable and not any(t.spec.answer.type == "multiple_choice" for t in given):
        raise UserError(
            f"The {transformable[0].name} probe transforms multiple-choice tasks, and none of the tasks given is one "
            f"({', '.join(t.name for t in given)})."
        )
    for task in given:
        if not any(p.name == "language" for p in asked + [parse_probe(p) for p in task.spec.probes]):
            continue
        lang = task.spec.language
        if lang is None:
            raise UserError(
                f"The language probe pairs a task with the same items in another language, and task {task.name} "
                "declares no language (language: {group: G, code: C} in its YAML)."
            )
        siblings = [t.name for t in given if t.spec.language and t.spec.language.group == lang.group and t is not task]
        if not siblings:
            known = sorted(
                n for n, path in available_tasks(plan.tasks_dirs).items()
                if n != task.name and (spec := load_task_file(path, plan.programs_dirs).spec).language
                and spec.language.group == lang.group
            )  # fmt: skip
            raise UserError(
                f"The language probe needs task {task.name} beside another language of group {lang.group}; add "
                f"one of {', '.join(known) or '(none found)'} with --task."
            )
    return out


def _probed(task, probes, probe_task, declared=()) -> list:
    """The probe tasks of `task`: a --probe skips a task it cannot transform (not multiple choice),
    a probe the task's own YAML declares never does."""
    out = []
    for p in probes:
        if p.name == "language" or (task.spec.answer.type != "multiple_choice" and p not in declared):
            continue
        out += [probe_task(task, suffix) for suffix in p.task_suffixes]
    return out


def judge_models(plan: RunPlan, task) -> list[Model]:
    """The judges of a judged task (none for others): --judge-model, else the task's own, else
    the embedded model (local and free; its validation says whether to trust it)."""
    if not getattr(task.answer_type, "judged", False):
        return []
    names = plan.judge_models or (task.spec.judge.models if task.spec.judge else []) or [DEFAULT_MODEL]
    # --api-base is the task models' endpoint; a judge is often a hosted model, so it has its own
    return [resolve_model(n, None if n.startswith("local/") else plan.judge_api_base) for n in names]


def open_judges(plan: RunPlan, tasks, store, run_dir: Path, stack: contextlib.ExitStack, lives: dict,
                on_progress=None, budget=None) -> dict:  # fmt: skip
    """task name -> its promptopt.judge.Panel, every judge validated on the task first: a judge
    whose kappa is below --min-judge-kappa stops the run (before any task call) when the judge is
    the task's primary metric, and is left out (its scores withheld) when it is not. `lives`
    collects the endpoints opened, so a task model that is also a judge reuses its server."""
    from promptopt.judge import Judge, Panel, refusal, rubric_for, validate
    from promptopt.tasks import JudgeSpec

    panels = {}
    for task in tasks:
        chosen = judge_models(plan, task)
        if not chosen:
            continue
        spec = task.spec.judge or JudgeSpec()
        primary = task.answer_type.primary_metric == "judge"
        trusted = []
        for judge_model in chosen:
            threads = threads_for(plan.threads, judge_model)
            if judge_model.name not in lives:
                lives[judge_model.name] = stack.enter_context(
                    endpoint(judge_model, log=run_dir / "server.log", parallel=threads)
                )
            judge = Judge(lives[judge_model.name], rubric_for(spec), store)
            note(on_progress, f"Validating judge {judge_model.name} on {task.name}: it grades {spec.checks} val "
                              "items' own references (should pass) and other items' references (should fail) ...")  # fmt: skip
            earlier = store.judge_checks(plan.run_id)
            mine = earlier[(earlier["task"] == task.name) & earlier["trusted"].astype(bool)] if len(earlier) else earlier
            if len(mine):  # only judges that were trusted have scored anything
                other = sorted(set(mine["judge"]) - {j.identity for j in chosen})
                first = mine[mine["order"] == 0]["judge"].tolist() if "order" in mine else []
                rubric = "rubric" in mine and (mine["rubric"].dropna() != judge.rubric.digest).any()
                if other or rubric or (first and first[0] != chosen[0].identity):
                    raise UserError(
                        f"Run {plan.run_id} judged task {task.name} with "
                        f"{', '.join(other or first) if other or first else 'another rubric'}; its verdicts and this "
                        "judge's would be mixed in one score. Restore the task's judge settings, or start a new run "
                        "(another --out)."
                    )
            check = validate(judge, task, plan.min_judge_kappa, spec.checks, threads)
            if budget:
                budget.charge_judge(check.usage)
            store.add_judge_check(plan.run_id, check.as_row() | {"rubric": judge.rubric.digest,
                                                                 "order": chosen.index(judge_model)})  # fmt: skip
            verdict = "trusted" if check.trusted else "NOT trusted"
            note(on_progress, f"Judge {judge_model.name} on {task.name}: agreement {100 * check.agreement:.0f}% on "
                              f"{check.n} planted verdicts, kappa {check.kappa:.2f} (threshold {check.min_kappa:g}): "
                              f"{verdict}; {check.usage['lm_calls']} judge calls.")  # fmt: skip
            if check.trusted:
                trusted.append(judge)
            elif primary:
                raise UserError(refusal(check, judge_model.name))
            else:
                note(on_progress, f"Its scores on {task.name} are withheld: the judge metric is not the primary one.")
        panels[task.name] = Panel(trusted, primary=primary)
    return panels


def run(plan: RunPlan, on_progress: Callable[[Progress], None] | None = None) -> RunResult:
    tasks, models, configs, overlap = validate_plan(plan)
    run_dir, store, url = open_run(plan, overlap)
    with stop_noted(store, plan.run_id, expected_work(plan, tasks, configs)) as stopped:
        _run_all(plan, models, tasks, configs, run_dir, store, budget_for(plan), on_progress)
    return RunResult(run_id=plan.run_id, run_dir=run_dir, storage=url, stopped=stopped.get("reason"))


def expected_work(plan: RunPlan, tasks, configs) -> dict:
    """What a complete pass of `run` scores: every config on every split's items, per task."""
    return {
        "configs": [c.id for c in configs],
        "items": {t.name: {s: len(t.examples(s, plan.limit)) for s in plan.splits} for t in tasks},
    }


def budget_for(plan: RunPlan) -> Budget:
    return Budget(plan.max_calls, plan.max_cost, max_error_rate=plan.max_error_rate)


@contextlib.contextmanager
def stop_noted(store: Store, run_id: str, expected: dict | None = None) -> Iterator[dict]:
    """Note in the store that this invocation is in progress, then why it stopped early (so the
    report can say so), or that it finished. A budget stop is a clean end; too many errors is
    re-raised for the CLI. A process killed outright leaves the run `in_progress`."""
    from promptopt.scoring import TooManyErrors

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


def _run_all(plan, models, tasks, configs, run_dir, store, budget, on_progress) -> None:
    """Every config on every split, per model and task. With a shared store (`--storage`), the
    configs are shared out through an Optuna study in that database, so that several `run`
    processes pointed at it make each LM call once (`promptopt.study`)."""
    storage = None
    if plan.storage:
        from promptopt.study import optuna_storage

        storage = optuna_storage(store.url)
    with contextlib.ExitStack() as judges_open:
        lives: dict = {}
        panels = open_judges(plan, tasks, store, run_dir, judges_open, lives, on_progress, budget)
        _run_models(plan, models, tasks, configs, run_dir, store, budget, on_progress, storage, panels, lives)


def _run_models(plan, models, tasks, configs, run_dir, store, budget, on_progress, storage, panels, lives) -> None:
    for model in models:
        model_plan = replace(plan, threads=threads_for(plan.threads, model))
        opened = lives.get(model.name) if model.is_local else None  # the embedded model judging too: one server
        with (contextlib.nullcontext(opened) if opened else
              endpoint(model, log=run_dir / "server.log", parallel=model_plan.threads)) as live:  # fmt: skip
            lm = build_lm(live)
            adapter = adapter_for(live)
            check_endpoint(live, configs, plan)
            for task in tasks:
                common = dict(task=task, model=live, lm=lm, adapter=adapter, store=store, budget=budget,
                              judges=panels.get(task.name))  # fmt: skip

                def score(cfg, common=common, model_plan=model_plan) -> None:
                    _score_config(model_plan, cfg, run_dir, on_progress, **common)

                if storage is None:
                    for cfg in configs:
                        score(cfg)
                    continue
                import optuna

                from promptopt.study import share_out

                optuna.logging.set_verbosity(optuna.logging.WARNING)
                shared = optuna.create_study(
                    study_name=f"{plan.run_id}|{live.identity}|{task.name}|run", storage=storage,
                    direction="maximize", load_if_exists=True,
                )  # fmt: skip
                share_out(shared, {c.id: c for c in configs}, score, say=lambda line: note(on_progress, line))


def _score_config(plan, cfg, run_dir, on_progress, *, task, model, lm, adapter, store, budget, judges=None) -> None:
    """One config: its pool prepared, compiled (once), scored on every split, saved as a program."""
    program = get_strategy(cfg.strategy, plan.programs_dirs).build(task, **cfg.knobs)
    give_corpus(program, plan, task, run_dir)
    prepare(
        program, task=task, model=model, lm=lm, adapter=adapter, config=cfg, run_id=plan.run_id,
        store=store, threads=plan.threads, on_progress=on_progress, budget=budget,
    )  # fmt: skip
    program = compile_once(
        program, run_dir, plan, task=task, model=model, lm=lm, adapter=adapter, config=cfg,
        store=store, budget=budget, on_progress=on_progress,
    )  # fmt: skip
    for split in plan.splits:
        evaluate(
            program, task.examples(split, plan.limit), task=task, model=model, lm=lm, adapter=adapter,
            config=cfg, split=split, run_id=plan.run_id, store=store, threads=plan.threads,
            on_progress=on_progress, budget=budget, judges=judges,
        )  # fmt: skip
    save_program(program, run_dir, plan, task=task, model=model, config=cfg, store=store)


def plan_configs(plan: RunPlan) -> list:
    """Every config the plan names, plus what a compiled score is judged against: the fixed
    `baseline` and each compiled strategy's zero-shot (`none`) version."""
    named = [parse_config(s, o, plan.programs_dirs) for s in plan.strategies for o in plan.optimizers]
    if not plan.references:
        return named
    extra = [parse_config("baseline", "none", plan.programs_dirs)]
    extra += [parse_config(s, "none", plan.programs_dirs) for s in plan.strategies]
    out: dict[str, object] = {}
    for cfg in [*extra[:1], *named, *extra[1:]]:
        out.setdefault(cfg.id, cfg)
    return list(out.values())


def search_space(plan: RunPlan, demo_sets: int = 1) -> list:
    """The configs a search explores: every strategy with every optimizer, except compiling a
    strategy that is not compilable; each `bootstrap` without a seed also with seeds 1..demo_sets-1."""
    space = []
    for name in plan.strategies:
        for opt in plan.optimizers:
            strat = get_strategy(name.partition(":")[0], plan.programs_dirs)
            if opt.partition(":")[0] != "none" and not strat.compilable:
                continue  # e.g. knn_fewshot picks its own demos: only its uncompiled form is in the space
            space.append(parse_config(name, opt, plan.programs_dirs))
            if space[-1].optimizer == "bootstrap" and "seed=" not in opt:
                sep = "," if ":" in opt else ":"
                space += [parse_config(name, f"{opt}{sep}seed={s}", plan.programs_dirs) for s in range(1, demo_sets)]
    return space


def serves(cfg, task, plan: RunPlan) -> bool:
    """Whether the config's strategy can answer this task's answer type."""
    try:
        get_strategy(cfg.strategy, plan.programs_dirs).build(task, **cfg.knobs)
    except UserError:
        return False
    return True


def compile_once(
    program, run_dir: Path, plan: RunPlan, *, task, model, lm, adapter, config, store, budget=None, on_progress=None
):
    """The config's optimizer applied to `program`; a compile finished before is loaded, not redone."""
    if config.optimizer == "none":
        return program
    import contextlib
    import time

    from promptopt.models import lm_for

    lm = lm_for(lm, config.knobs)

    import dspy

    from promptopt.compiler import compile_program
    from promptopt.models import CallLog, counting_compile

    folder = program_dir(run_dir, model, task, config)
    done = store.compile_costs(plan.run_id)
    finished = not done[(done.model == model.identity) & (done.task == task.name) & (done.config_id == config.id)].empty
    if finished and (folder / "program.json").exists():
        program.load_state(json.loads((folder / "program.json").read_text()))
        return program
    if budget:
        budget.check(next_calls=estimate_config(plan, task, config)["compile_calls"])
    note(on_progress, f"Compiling {config.strategy} with {config.optimizer} for {model.name} on {task.name} ...")
    started = time.monotonic()
    log = CallLog()
    # Optimizers choose among their candidates on a dev split carved from train: the val items
    # that choose among configs must not also have chosen inside one of them.
    train, dev = dev_split(task.examples("train"), config.optimizer_knobs)
    knobs = config.optimizer_knobs
    prompt_model = knobs.get("prompt_model") or knobs.get("reflection_model")
    prompt_lm = build_lm(resolve_model(prompt_model)) if prompt_model else None
    with (
        counting_compile(log, *filter(None, [lm, prompt_lm])),
        dspy.context(lm=lm, adapter=adapter),
        open(run_dir / "compile.log", "a") as out,
        contextlib.redirect_stdout(out),  # DSPy's optimizers print their progress
    ):
        try:
            compiled = compile_program(
                program, config, task, train, dev, threads=plan.threads, prompt_lm=prompt_lm,
                extra_dirs=plan.programs_dirs,
            )  # fmt: skip
        finally:
            if budget:
                budget.charge(log)
    save_program(compiled, run_dir, plan, task=task, model=model, config=config, store=store)
    store.add_compile(plan.run_id, model.identity, task.name, config.id, log, time.monotonic() - started)
    note(on_progress, f"Compiled in {time.monotonic() - started:.0f}s with {log.calls} LM calls (${log.cost_usd:.4f}).")
    return compiled


def program_dir(run_dir: Path, model: Model, task, config) -> Path:
    slug = "".join(c if c.isalnum() or c in "-_." else "_" for c in model.name)
    task_slug = task.name.replace(":", "_")  # an open-ended twin (medqa:open): no colon in a path
    return run_dir / "programs" / f"{slug}--{task_slug}--{config.id}"


def save_program(program, run_dir: Path, plan: RunPlan, *, task, model, config, store) -> Path:
    """Save what was evaluated as a loadable program, with its scores and preparation cost."""
    from promptopt import compiled
    from promptopt.stats import split_score

    recs = store.records(plan.run_id)
    mine = recs[(recs.model == model.identity) & (recs.task == task.name) & (recs.config_id == config.id)]
    scores = {
        split: {key: scored[key] for key in ("n", "score", "errors")}
        for split, g in mine.groupby("split")
        if (scored := split_score(g))
    }
    prep = mine[mine.split == "train"]
    comp = store.compile_costs(plan.run_id)
    comp = comp[(comp.model == model.identity) & (comp.task == task.name) & (comp.config_id == config.id)]
    source = Path(get_strategy(config.strategy, plan.programs_dirs).source).resolve().parent
    strategy_dir = None if source == bundled_dir("programs").resolve() else source
    return compiled.save(
        program, program_dir(run_dir, model, task, config), task=task, model=model, config=config,
        strategy_dir=strategy_dir, run_id=plan.run_id, scores=scores,
        preparation={"lm_calls": int(prep.lm_calls.sum()), "cost_usd": float(prep.cost_usd.sum())},
        compile={"lm_calls": int(comp.lm_calls.sum()), "cost_usd": float(comp.cost_usd.sum())},
        data_sha1=task_digest(task),
    )  # fmt: skip


def task_digest(task) -> str:
    """What the program was compiled and scored on: every split's ids and gold answers."""
    h = hashlib.sha1()
    for split in ("train", "val", "test"):
        for ex in task.examples(split):
            h.update(f"{split}\t{ex.id}\t{ex.gold}\n".encode())
    return h.hexdigest()


def give_corpus(program, plan: RunPlan, task, run_dir: Path) -> None:
    """A retrieval program's passages, with its index stored beside the run (built once, reused)."""
    if hasattr(program, "use_corpus"):  # the strategy's `uses_corpus` trait
        program.use_corpus(corpus_for(plan, task, program.strategy_name), run_dir / "indexes")


def prepare(
    program, *, task, model, lm, adapter, config, run_id, store, threads=1, on_progress=None, budget=None
) -> None:
    """Give a program that learns from training examples (it has `fit_pool`) its pool.

    When the program needs the model's own explanations (`teacher()` is not None), the teacher
    answers the training pool like any evaluation, split `train`: the records say what
    preparation cost and an interrupted preparation resumes without repeating calls. The pool
    keeps the examples the model explained correctly.
    """
    if not hasattr(program, "fit_pool"):  # the strategy's `prepares` trait
        return
    train = task.examples("train")[: program.pool_size]  # items, also for a probe task (several per source)
    teacher = program.teacher()
    explanations = None
    if teacher is not None:
        evaluate(
            teacher, train, task=task, model=model, lm=lm, adapter=adapter, config=config, split="train",
            run_id=run_id, store=store, threads=threads, on_progress=on_progress, budget=budget,
        )  # fmt: skip
        explanations = store.explanations(run_id, model.identity, task.name, config.id)
    program.fit_pool(train, explanations)


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


# ------------------------------------------------------------------------------ dry run


def estimate_config(plan: RunPlan, task, config, model: Model | None = None) -> dict:
    """LM calls, tokens and cost one config will spend on one (model, task), before any call.

    Calls follow each strategy's declaration and each optimizer's budget rule
    (promptopt.compiler), doubled for reasoning strategies on base (text-style) models, whose
    reasoning step is followed by a short answer cue. Tokens are rough: about four characters per token for the inputs,
    plus each demo, plus the instructions and field markers; completions at half the model's
    max_tokens for reasoning strategies and at the answer's size otherwise.
    """
    from promptopt.compiler import estimate_compile_calls

    strat = get_strategy(config.strategy, plan.programs_dirs)
    sample = task.examples("val", 20) or task.examples("test", 20)
    n_options = max((len(e.inputs.get("options") or {}) for e in sample), default=4) or 4
    per_example = strat.calls(config.knobs, n_options)
    reasons = strat.reasons_with(config.knobs) is not False  # undeclared: priced as reasoning, to be safe
    if model is not None and model.call_style == "text" and reasons:
        per_example *= 2  # a base model's reasoning step usually needs the short answer cue (adapters.py)
    n_eval = sum(len(task.examples(s, plan.limit)) for s in plan.splits)
    n_train, n_val = (len(part) for part in dev_split(task.examples("train"), config.optimizer_knobs))
    predictors = len(strat.build(task, **config.knobs).predictors())
    compile_calls = estimate_compile_calls(
        config.optimizer,
        config.optimizer_knobs,
        per_example,
        n_train,
        n_val,
        plan.expect_accuracy,
        max(1, predictors),
        plan.programs_dirs,
    )
    prep_calls = strat.prep_calls(strat.knobs | config.knobs, n_train) if strat.prep_calls else 0
    eval_calls = per_example * n_eval
    chars = sum(len(str(v)) for e in sample for v in e.inputs.values()) / max(len(sample), 1)
    demos = (
        (config.knobs.get(strat.demos_knob, 0) if strat.demos_knob else 0)
        + config.optimizer_knobs.get("bootstrapped", 0)
        + config.optimizer_knobs.get("labeled", 0)
    )
    prompt_per_call = chars / 4 * (1 + demos) + 150
    answer = getattr(task.answer_type, "max_answer_tokens", 8)
    completion_per_call = (model.max_tokens / 2 if model else 128) if reasons else answer
    calls = compile_calls + prep_calls + eval_calls
    prompt_tokens, completion_tokens = round(calls * prompt_per_call), round(calls * completion_per_call)
    return {
        "config": f"{config.strategy}/{config.optimizer}",
        "config_id": config.id,
        "compile_calls": compile_calls + prep_calls,
        "eval_calls": eval_calls,
        "calls": calls,
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "cost_usd": price(model, prompt_tokens, completion_tokens) if model else None,
    }


def price(model: Model, prompt_tokens: int, completion_tokens: int) -> float | None:
    """USD for the tokens at the model's price (its own, else LiteLLM's table); None if unknown."""
    if model.price_in is not None and model.price_out is not None:
        return (prompt_tokens * model.price_in + completion_tokens * model.price_out) / 1e6
    import litellm

    try:
        cost_in, cost_out = litellm.cost_per_token(
            model=model.litellm_model, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens
        )
    except Exception:
        return None
    return cost_in + cost_out


def dry_run(plan: RunPlan, demo_sets: int = 1) -> list[dict]:
    """The plan's configs with their estimated calls, tokens and cost; no model is called. For a
    search, every config of its space (with `demo_sets` demo sets per bootstrap config) on all of
    val and test: the most it can cost."""
    if plan.mode == "search":
        configs = [parse_config("baseline", "none", plan.programs_dirs), *search_space(plan, demo_sets)]
        tasks, models, _, _ = validate_plan(plan, configs=configs[:1], credentials=False)
    else:
        tasks, models, configs, _ = validate_plan(plan, credentials=False)
    rows = []
    for model in models:
        for task in tasks:
            for cfg in (c for c in configs if serves(c, task, plan)):
                rows.append({"model": model.name, "task": task.name, **estimate_config(plan, task, cfg, model)})
    return rows
