"""A run's plan: what was asked (models, tasks, configs, limits, judges, probes) and every check
made on it before a server starts or an LM is called.

A run's id is a hash of what was asked (models with endpoints, tasks, configs, limit, seed), so
running the same command again lands in the same run folder and store: an interrupted run
resumes without repeating LM calls.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass, field, make_dataclass
from pathlib import Path

from promptopt.config import parse_config
from promptopt.errors import UserError
from promptopt.judge import DEFAULT_MIN_KAPPA
from promptopt.models import Model, check_credentials, check_vision, redact_url, resolve_model
from promptopt.options import BY_NAME, DEFAULT_LIMIT, DEFAULT_MODEL, DEFAULT_STRATEGIES, DEFAULT_TASK, OPTIONS  # noqa: F401
from promptopt.tasks import check_gold, load_task


class _Plan:
    """What a RunPlan does; its fields are promptopt.options.OPTIONS (each with its run default),
    plus `references` (also score the fixed baseline and each compiled strategy zero-shot) and
    `mode` ("search": an Optuna search over the configs instead of scoring them all). Budgets do
    not change what a run computes, so they are not part of its id: the same command with a
    larger budget continues the same run."""

    @functools.cached_property
    def catalog(self):
        """The strategies, optimizers and answer types this plan's folders hold, read once."""
        from promptopt.catalog import Catalog

        return Catalog.of(self.programs_dirs)

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
        } | ({"mode": self.mode} if self.mode != "run" else {}) | self._judging() | self._choosing()

    def _choosing(self) -> dict:
        """A search's rule changes what it chooses, so it is part of the id when not the default
        (a search under another ε is another study, never a mix of two rules)."""
        if self.mode != "search":
            return {}
        names = ("epsilon", "delta", "objective", "max_cost_per_example", "max_calls_per_example")
        return {n: getattr(self, n) for n in names if getattr(self, n) != BY_NAME[n].default}

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


def _field(option):
    value = option.default
    if isinstance(value, list | tuple):
        return field(default_factory=lambda v=tuple(value): list(v))
    return field(default=value)


RunPlan = make_dataclass(
    "RunPlan",
    [(o.name, o.kind, _field(o)) for o in OPTIONS] + [("references", bool, field(default=True)),
                                                      ("mode", str, field(default="run"))],
    bases=(_Plan,),
)
RunPlan.__module__ = __name__


@dataclass
class RunResult:
    run_id: str
    run_dir: Path
    storage: str
    stopped: str | None = None  # why the run stopped early (budget), if it did
    chosen: list[dict] = field(default_factory=list)  # a search's choice on val: model, task, config_id
    programs: dict[tuple[str, str, str], Path] = field(default_factory=dict)  # (model, task, config id) -> folder


def validate_plan(plan: RunPlan, configs: list | None = None, credentials: bool = True):
    """Tasks, models and configs of the plan (or the `configs` given), all checked before a
    server starts or a call is made, and per task the overlap of its demo pools with its test
    set that --allow-overlap let through."""
    for split in plan.splits:
        if split not in ("val", "test"):
            raise UserError(f"Cannot score split {split!r}; valid splits are val and test (train feeds optimizers).")
    tasks = plan_tasks(plan)
    models = [resolve_model(m, plan.api_base, **({"rpm": plan.rpm} if plan.rpm else {})) for m in plan.models]
    for model in models if credentials else ():  # a dry run calls nothing, so needs no key
        check_credentials(model)
    if plan.batch:
        check_batch(plan, models)
    judges = [judge for task in tasks for judge in judge_models(plan, task)]
    for judge in judges if credentials else ():
        check_credentials(judge)
    configs = plan_configs(plan) if configs is None else configs
    from promptopt.logprobs import check_model, check_reasoning_effort

    for cfg in configs:
        strat = plan.catalog.strategy(cfg.strategy)
        for task in tasks:
            strat.build(task, **cfg.knobs)  # refuses answer types it cannot serve
            if strat.uses_corpus:
                corpus_for(plan, task, strat.name)  # a corpus is named and readable
        for model in models:  # what the endpoint must return, and knobs the model must take
            check_model(model, strat.needs, strat.name)
            if cfg.knobs.get("reasoning_effort"):
                check_reasoning_effort(model, cfg.id)
    for task in (t for t in tasks if t.image_fields):
        for model in models:
            check_vision(model, task.name)
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
    if credentials:  # last, once everything else holds: an endpoint that does not answer would leave a
        from promptopt.session import check_endpoint  # run folder behind that reports call interrupted

        for model in [*models, *judges]:
            check_endpoint(model)
    return tasks, models, configs, overlap


def check_batch(plan: RunPlan, models: list) -> None:
    """--batch needs calls a batch can carry: fixed programs scored (not only adaptive passes),
    on models whose provider LiteLLM can batch."""
    from promptopt.batch import check

    if not plan.splits:
        raise UserError("--batch: this plan scores no fixed program on val or test, and its adaptive calls (search "
                        "rounds, optimizers' inner loops) must be answered at once; give --split val or test, or "
                        "leave out --batch.")  # fmt: skip
    for model in models:
        check(model)


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


def plan_tasks(plan: RunPlan) -> list:
    """The plan's tasks, each followed by the probe tasks its probes make (--probe, and the ones
    its YAML declares): medqa with negation adds medqa~negation. The language probe adds no task;
    it needs another language of the task's group among the plan's tasks."""
    from promptopt.probes import IMAGE_PROBES, parse_probe
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
    for probe in (p for p in asked if p.name != "language"):
        if not any(_applies(probe, t) for t in given):
            kind = "tasks with images" if probe.name in IMAGE_PROBES else "multiple-choice tasks"
            raise UserError(
                f"The {probe.name} probe transforms {kind}, and none of the tasks given is one "
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
    """The probe tasks of `task`: a --probe skips a task it cannot transform (not multiple choice, no images),
    a probe the task's own YAML declares never does."""
    out = []
    for p in probes:
        if p.name == "language" or (not _applies(p, task) and p not in declared):
            continue
        out += [probe_task(task, suffix) for suffix in p.task_suffixes]
    return out


def _applies(probe, task) -> bool:
    from promptopt.probes import IMAGE_PROBES

    """Image probes transform tasks with images, the others multiple-choice tasks."""
    if probe.name in IMAGE_PROBES:
        return bool(task.image_fields) and (probe.name != "organ_pair" or "organ" in task.spec.labels)
    return task.answer_type.offers_options


def judge_models(plan: RunPlan, task) -> list[Model]:
    """The judges of a judged task (none for others): --judge-model, else the task's own, else
    the embedded model (local and free; its validation says whether to trust it)."""
    if not task.answer_type.judged:
        return []
    names = plan.judge_models or (task.spec.judge.models if task.spec.judge else []) or [DEFAULT_MODEL]
    # --api-base is the task models' endpoint; a judge is often a hosted model, so it has its own
    return [resolve_model(n, None if n.startswith("local/") else plan.judge_api_base) for n in names]


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
            strat = plan.catalog.strategy(name.partition(":")[0])
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
        plan.catalog.strategy(cfg.strategy).build(task, **cfg.knobs)
    except UserError:
        return False
    return True


def expected_work(plan: RunPlan, tasks, configs) -> dict:
    """What a complete pass of `run` scores: every config on every split's items, per task."""
    return {
        "configs": [c.id for c in configs],
        "items": {t.name: {s: len(t.examples(s, plan.limit)) for s in plan.splits} for t in tasks},
    }
