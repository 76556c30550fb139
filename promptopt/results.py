"""Typed results: what promptopt computes from records, in one shape every consumer reads.

`Report` is the JSON report (`promptopt report --format json` is its `model_dump`), the input of
every renderer (text, markdown, HTML, the Pareto plot) and what `promptopt.report()` returns.
`RunLog` is what `promptopt.run()` and `promptopt.search()` return: the plan, how the run ended,
the configs a search chose, and the run's report. docs/report.schema.json is `Report`'s JSON
schema, exported from these models (`make schema` writes it).

Fields of the rows follow docs/report-json.md; scores are shares in [0, 1], None where nothing
was answered; `n` counts answered items (errors left out), `n_items` every item attempted.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, create_model

from promptopt.tables import Row as _Row

Split = Literal["train", "val", "test"]


class _ModelTask(_Row):
    model: str  # the model's identity: its name, and @endpoint when it has one
    task: str


class _RunModelTask(_Row):
    run_id: str
    model: str
    task: str


class _RunTaskModel(_Row):
    run_id: str
    task: str
    model: str


class _Config(_Row):
    """Which config on which split, and on how many answered items."""

    strategy: str
    optimizer: str
    config_id: str  # strategy-optimizer-hash of every knob
    split: str
    n: int


class ConfigSummary(_Config, _ModelTask):
    """One (run, model, task, config, split): its score with a 95% CI, failures and cost."""

    score: float | None
    ci_low: float | None
    ci_high: float | None
    parse_failure_rate: float | None
    error_rate: float
    lm_calls: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    wall_s: float
    selected: bool
    run_id: str
    n_items: int
    errors: int
    selected_on: str | None
    clusters: int | None = None  # clusters among the answered items, when items share one (probes, a cluster column)
    design_effect: float | None = None  # the score's variance counting clusters over it as if items were independent


class Ceiling(_Row):
    """Per (run, model, task): the baseline, the ceiling (the config chosen on val, scored on
    test), the optimistic max, and the paired uplift with its Holm-corrected verdict."""

    model: str
    task: str
    baseline_score: float | None
    ceiling_score: float | None
    ceiling_ci_low: float | None
    ceiling_ci_high: float | None
    optimistic_max_score: float | None
    uplift: float | None
    uplift_ci_low: float | None
    uplift_ci_high: float | None
    verdict: str | None
    run_id: str
    selected_on: str | None
    uplift_n: int | None
    baseline_n: int | None
    ceiling_n: int | None
    uplift_baseline_score: float | None
    uplift_ceiling_score: float | None
    uplift_p: float | None
    uplift_mde: float | None = None  # smallest uplift this comparison detects at 80% power (promptopt.detectable)
    uplift_p_holm: float | None
    comparisons: int | None
    selected_config_id: str | None
    baseline_config_id: str | None
    # which interval ceiling_ci_* holds: "procedure" = over the whole procedure (val and test items
    # resampled, the choice made again each time: promptopt.stats.procedure_interval), used when the
    # config was chosen on val among 2+; "fixed" = the chosen config's own, as if the choice were fixed
    ceiling_interval: Literal["procedure", "fixed"] = "fixed"
    # the chosen config's own 95% interval (Wilson on its test items; clusters counted), always
    ceiling_fixed_ci_low: float | None = None
    ceiling_fixed_ci_high: float | None = None


class LeaderboardRow(_Row):
    run_id: str
    task: str
    model: str
    baseline_config_id: str | None
    baseline_score: float | None
    baseline_ci_low: float | None
    baseline_ci_high: float | None
    baseline_n: int | None
    selected_config_id: str | None
    selected_on: str | None
    candidates: int | None
    not_candidates: list[str] | None
    ceiling_score: float | None
    ceiling_ci_low: float | None
    ceiling_ci_high: float | None
    ceiling_n: int | None
    optimistic_max_score: float | None
    optimistic_config_id: str | None
    uplift: float | None
    uplift_ci_low: float | None
    uplift_ci_high: float | None
    uplift_n: int | None
    uplift_baseline_score: float | None
    uplift_ceiling_score: float | None
    uplift_p: float | None
    uplift_p_holm: float | None
    comparisons: int | None
    verdict: str | None
    rank_baseline: int | None
    rank_ceiling: int | None
    uplift_mde: float | None = None  # smallest uplift this comparison detects at 80% power (promptopt.detectable)
    # which interval ceiling_ci_* holds: "procedure" = over the whole procedure (val and test items
    # resampled, the choice made again each time: promptopt.stats.procedure_interval), used when the
    # config was chosen on val among 2+; "fixed" = the chosen config's own, as if the choice were fixed
    ceiling_interval: Literal["procedure", "fixed"] = "fixed"
    # the chosen config's own 95% interval (Wilson on its test items; clusters counted), always
    ceiling_fixed_ci_low: float | None = None
    ceiling_fixed_ci_high: float | None = None


class Comparison(_Row):
    """Two models on the same test items, under the baseline or at their ceilings."""

    run_id: str
    task: str
    model_a: str
    model_b: str
    setting: Literal["baseline", "ceiling"]
    config_a: str
    config_b: str
    n: int
    score_a: float | None
    score_b: float | None
    diff: float | None
    ci_low: float | None
    ci_high: float | None
    p: float | None
    selected_on: str | None
    p_holm: float | None
    comparisons: int | None
    outcome: str | None
    mde: float | None = None  # smallest difference this comparison detects at 80% power (promptopt.detectable)
    # 0/1 scores: items right under A only, under B only, under both, under neither
    only_a: int | None = None
    only_b: int | None = None
    both: int | None = None
    neither: int | None = None
    only_a_items: list[str] | None = None  # the ids of the items right under A only
    only_b_items: list[str] | None = None
    # with --equivalence-margin: TOST's p for "within ±margin", and equivalent / different / undecided
    equivalence_p: float | None = None
    equivalence: Literal["equivalent", "different", "undecided"] | None = None


class Flip(_Row):
    """A pair of models whose order reverses from the baseline to their ceilings."""

    run_id: str
    task: str
    model_a: str
    model_b: str
    baseline_diff: float
    baseline_ci_low: float | None
    baseline_ci_high: float | None
    ceiling_diff: float
    ceiling_ci_low: float | None
    ceiling_ci_high: float | None
    baseline_n: int
    ceiling_n: int
    baseline_p_holm: float | None
    ceiling_p_holm: float | None
    comparisons: int | None
    selected_on: str | None
    status: Literal["real", "within noise"]


class Sensitivity(_RunModelTask):
    family: str
    n_configs: int
    min_score: float
    max_score: float
    spread: float
    std: float | None
    noise_spread: float | None
    noise_std: float | None  # the permutation null's mean std on the shared items (binomial without them)
    net_std: float | None  # measured std on the shared items minus noise_std: mean 0 for equal configs
    net_std_ci_low: float | None = None  # the permutation null's 95% range around it: holds 0 when all is noise
    net_std_ci_high: float | None = None
    shared_items: int = 0  # test items every config answered (the permutations' items)


class Consistency(_RunModelTask):
    config_id: str
    split: str
    n: int
    orders: int
    consistency: float | None
    ci_low: float | None
    ci_high: float | None


class Cost(_Config, _RunModelTask):
    calls_per_example: float
    prompt_tokens_per_example: float
    completion_tokens_per_example: float
    usd_per_example: float
    compile_calls: int
    compile_tokens: int
    compile_usd: float
    prep_calls: int
    prep_tokens: int
    prep_usd: float
    one_off_usd: float
    judge_calls_per_example: float = 0.0  # an LLM judge's, apart from the task model's
    judge_usd_per_example: float = 0.0
    judge_tokens_per_example: float = 0.0


class MetricScore(_Config, _RunModelTask):
    """One metric of a free-text (or MEDEC) config on one split."""

    metric: str
    score: float | None
    ci_low: float | None
    ci_high: float | None
    primary: bool  # the metric that is the records' score (ceilings and searches use it)


class JudgeValidation(_Row):
    """How a judge did on the planted verdicts of a task before it graded, and what grading cost."""

    run_id: str
    task: str
    judge: str
    checks: int
    agreement: float
    agreement_ci_low: float
    agreement_ci_high: float
    kappa: float
    min_kappa: float
    trusted: bool
    kappa_ci_low: float | None = None  # items resampled with both their pairs (None for a check stored before)
    kappa_ci_high: float | None = None
    unreadable: int
    passed_own: int
    own: int
    failed_other: int
    other: int
    near_misses: int = 0  # plausible wrong answers graded (a distractor of the same question, a negated reference)
    failed_near: int = 0  # of those, failed as they should be
    near_kappa: float | None = None  # kappa on own references and near misses; None without near misses
    near_kinds: dict[str, int] = {}  # near misses by kind: distractor, same_label, number_swapped, negated
    # with human labels (judge.labels): promptopt.stats.judge_vs_humans; None without
    labelled: int | None = None  # answers with a human majority (ties left out)
    labels_agreement: float | None = None
    labels_kappa: float | None = None
    labels_macro_f1: float | None = None
    prevalence_bias: float | None = None  # the judge's pass rate minus the humans' majority's
    prevalence_ci_low: float | None = None
    prevalence_ci_high: float | None = None
    annotators: int | None = None
    human_human: float | None = None  # mean agreement between two annotators on the answers both labelled
    judge_human: float | None = None  # the judge's mean agreement with each annotator
    humans_at_or_below: float | None = None  # share of annotators agreeing with the others no more than the judge does
    below_humans: bool | None = None
    validation_calls: int
    validation_usd: float
    validation_tokens: int = 0
    graded: int
    cached: int
    grading_calls: int
    grading_tokens: int
    grading_usd: float


class JudgeAgreement(_Row):
    run_id: str
    task: str
    judge_a: str
    judge_b: str
    n: int
    agreement: float
    kappa: float


class Jury(_Row):
    """Two or more judges grading one task: how they were combined and how independent they are."""

    run_id: str
    task: str
    judges: int
    aggregate: str  # first, majority, mean or all (promptopt.tasks.JudgeSpec.aggregate)
    answers: int  # answers (with per-item rubrics: criteria of answers) graded by two or more of them
    krippendorff_alpha: float | None
    error_correlation: float | None  # mean pairwise correlation of their errors on the planted pairs
    effective_size: float | None  # judges / (1 + (judges - 1) * error_correlation)


class _ConfigSplit(_Row):
    """One config of one model on one task and split (the key of per-config sections)."""

    run_id: str
    model: str
    task: str
    strategy: str
    optimizer: str
    config_id: str
    split: str


class Calibration(_ConfigSplit):
    """How well a config's option-letter probabilities (letter_logprob) are calibrated on one split."""

    n: int  # items with a distribution over the letters
    unread: int  # items whose top tokens held no option letter (no answer)
    accuracy: float | None = None  # of the most probable letter, on those n items
    mean_confidence: float | None = None  # mean probability of the most probable letter
    brier: float | None = None  # mean over items of the sum over letters of (p - [letter is gold])^2; 0 is perfect
    ece: float | None = None  # expected calibration error, 10 equal-width confidence bins
    letter_mass: float | None = None  # mean probability the letters had among the top tokens, before normalizing


class ClozeScore(_ConfigSplit):
    """`cloze` accuracy by summed log-probability (acc) and per character of the option (acc_norm), lm-eval's two figures."""

    n: int
    acc: float
    acc_ci_low: float
    acc_ci_high: float
    acc_norm: float
    acc_norm_ci_low: float
    acc_norm_ci_high: float


class RetrievalScore(_ConfigSplit):
    """What a retrieval config read: passages per item and, where gold passages are known, recall@k."""

    n: int
    k: int  # passages retrieved per item (the most any item got)
    recall_n: int  # items with a known gold passage
    recall: float | None = None  # share of those items whose gold passage was among the k
    recall_ci_low: float | None = None
    recall_ci_high: float | None = None


class Robustness(_Row):
    """One probe of one config against its source items (promptopt.probes)."""

    run_id: str
    model: str
    task: str  # the source task (for language: the group's first language)
    strategy: str
    config_id: str
    split: str
    probe: str  # negation, partialK, nota, shuffle[...], language:CODE
    n: int  # source items paired
    source_score: float | None
    probe_score: float | None
    diff: float | None  # probe − source, paired by item
    ci_low: float | None
    ci_high: float | None
    yes_score: float | None = None  # negation: the "is the correct option the answer?" half
    no_score: float | None = None  # negation: the "is a distractor the answer?" half
    retained: float | None = None  # partial: probe score / full score
    consistency: float | None = None  # shuffle: same option text under every order; language: same letter
    consistency_ci_low: float | None = None
    consistency_ci_high: float | None = None
    orders: int | None = None  # versions compared for consistency, the original included


class RobustCeiling(_Row):
    """Per model and task with probes: the ceiling config's robust score, and the robust choice."""

    run_id: str
    model: str
    task: str
    config_id: str  # chosen on val by the plain score
    ceiling_score: float | None
    robust_score: float | None  # its test items right on the item and on every probe that ran
    robust_ci_low: float | None
    robust_ci_high: float | None
    robust_n: int
    robust_config_id: str | None  # chosen on val by the robust score
    robust_choice_score: float | None
    robust_choice_ci_low: float | None
    robust_choice_ci_high: float | None


class OpenGap(_Row):
    """A multiple-choice task beside its open-ended twin: same run, model, config and test items."""

    run_id: str
    model: str
    task: str
    open_task: str
    config_id: str
    strategy: str
    metric: str
    n: int
    multiple_choice_score: float | None
    open_score: float | None
    diff: float | None
    ci_low: float | None
    ci_high: float | None
    p: float | None


class ParetoPoint(_Config, _RunTaskModel):
    score: float
    ci_low: float | None
    ci_high: float | None
    usd_per_example: float
    tokens_per_example: float
    cost_axis: Literal["usd", "tokens", "tokens (mixed)"]
    cost: float
    frontier: bool
    judge_usd_per_example: float = 0.0  # the judge's grading, in the cost with --pareto-cost all
    one_off_usd_per_example: float = 0.0  # compile and preparation over the examples scored (--pareto-cost all)
    search_chose: bool = False  # a search chose this config on val (--objective pareto: each of its front)


class RunStatus(_Row):
    run_id: str
    status: str  # complete, in_progress, interrupted, stopped, or unknown (written before statuses)
    records: int
    created_at: float | None
    incomplete_configs: list[str]


class Settings(_Row):
    bootstrap_resamples: int
    seed: int
    local_usd_per_mtok: float
    unpriced_models: list[str]
    price_unknown_models: list[str]
    alpha: float
    min_paired_items: int
    correction: str
    equivalence_margin: float | None = None  # a share; head-to-head says equivalent within it, or not
    pareto_cost: Literal["inference", "all"] = "inference"  # all: judging and one-off costs in the Pareto cost too
    local_usd_per_hour: float = 0.0  # models without a price charged per hour of their calls' wall time instead


class SummaryLine(_Row):
    run_id: str
    task: str
    text: str


class _CoreReport(_Row):
    """Every section of a report, in the order the JSON holds them; the sections that live in
    their own files (promptopt.sections) follow, added by `Report` below."""

    rows: list[ConfigSummary]
    ceilings: list[Ceiling]
    leaderboard: list[LeaderboardRow]
    head_to_head: list[Comparison]
    flips: list[Flip]
    sensitivity: list[Sensitivity]
    consistency: list[Consistency]
    costs: list[Cost]
    pareto: list[ParetoPoint]
    metrics: list[MetricScore] = []
    judges: list[JudgeValidation] = []
    judge_agreement: list[JudgeAgreement] = []
    juries: list[Jury] = []
    open_ended: list[OpenGap] = []
    robustness: list[Robustness] = []
    robust: list[RobustCeiling] = []
    calibration: list[Calibration] = []
    cloze: list[ClozeScore] = []
    retrieval: list[RetrievalScore] = []
    runs: list[RunStatus]
    settings: Settings
    warnings: list[str]
    # per (run, task), the sentence a paper prints: flips among model pairs, how many real after
    # Holm, and what the comparisons could detect (promptopt.reports.flip_sentences)
    summary: list[SummaryLine] = []

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), indent=2) + "\n"


def _with_sections():
    from promptopt.sections import registered

    fields = {s.key: (list[s.row], []) for s in registered()}
    return create_model("Report", __base__=_CoreReport, __module__=__name__, __doc__=_CoreReport.__doc__, **fields)


Report = _with_sections()


class Extras(_Row):
    """What a strategy's prediction carried beyond its answer, stored with each record (JSON)."""

    reasons: bool | None = None  # the strategy, with these knobs, wrote a reasoning step first
    reasoning: str | None = None
    votes: list[str | None] | None = None  # answers sampled and voted on
    order_votes: list[str | None] | None = None  # answers under shuffled option orders (consistency)
    retrieved: list[str] | None = None  # ids of passages a retrieval strategy read
    metrics: dict[str, float | None] | None = None  # free text: each metric of the task (None: not measured)
    primary: str | None = None  # which of `metrics` is the record's score
    answer_text: str | None = None  # multiple choice: the chosen option's text (consistency across orders)
    language: dict[str, str] | None = None  # the task's language group and code, for the language probe
    judges: list[dict[str, Any]] | None = None  # each judge's verdict: judge, score, reply, cached, its calls
    judge_error: str | None = None  # the judge call failed after retries: `judge` is unmeasured
    criteria: list[dict[str, Any]] | None = None  # per-item rubric: each criterion's points, tags and vote (met)
    letter_probs: dict[str, float] | None = None  # letter_logprob: each letter's probability (normalized over letters)
    letter_mass: float | None = None  # letter_logprob: the probability the letters had among the top tokens
    cloze: dict[str, Any] | None = None  # cloze: per letter logprob and characters; the acc and acc_norm answers
    stages: list[dict[str, Any]] | None = None  # multi_agent: every stage's output, in order
    recall: float | None = None  # retrieve: share of the item's gold passages among the retrieved ones
    reasoning_effort: str | None = None  # the config's reasoning effort, for reasoning models
    images: list[str] | None = None  # the content digests of the item's images, as asked (a changed image is re-asked)
    cluster: str | None = None  # the item's cluster (the task's cluster column, a probe item's source item)
    batch_calls: int | None = None  # calls answered through the provider's batch API (--batch), at its price
    embedding: dict[str, float] | None = None  # hosted embedding calls of the item (lm_calls, prompt_tokens, cost_usd)

    @classmethod
    def of(cls, prediction: Any, declared: Any, knobs: dict[str, Any]) -> Extras:
        """From a prediction and the strategy's declared traits (None for a helper program)."""
        votes = getattr(prediction, "votes", None)
        shuffled = bool(declared and declared.shuffles_options)
        retrieved = getattr(prediction, "retrieved", None)
        reasoning = getattr(prediction, "reasoning", None)

        def carried(name: str, kind: type | tuple[type, ...]):
            value = getattr(prediction, name, None)
            return value if isinstance(value, kind) else None

        mass = carried("letter_mass", (int, float))
        return cls(
            letter_probs=carried("letter_probs", dict),
            letter_mass=float(mass) if mass is not None else None,
            cloze=carried("cloze", dict),
            stages=carried("stages", list),
            recall=carried("recall", (int, float)),
            reasoning_effort=knobs.get("reasoning_effort"),
            reasons=declared.reasons_with(knobs) if declared else None,
            reasoning=reasoning if isinstance(reasoning, str) else None,
            votes=list(votes) if votes is not None and not shuffled else None,
            order_votes=list(votes) if votes is not None and shuffled else None,
            retrieved=[str(r) for r in retrieved] if retrieved is not None else None,
        )

    def to_json(self) -> str | None:
        data = self.model_dump(exclude_none=True)
        return json.dumps(data) if data else None


class ModelCheck(_Row):
    """What one tiny call to a model returned (promptopt.check_model)."""

    model: str
    reply: str
    seconds: float


class PowerAnalysis(_Row):
    """What a paired comparison of two configs can detect, or the items a difference needs
    (promptopt.detectable; shares in 0-1, as every score of a report)."""

    task: str | None  # the task whose split gave the items, if one did
    split: str | None
    items: int | None  # items each config is scored on
    accuracy: float  # the expected accuracy of the configs compared
    discordance: float  # share of items the two configs disagree on (assumed or given)
    assumed_independent: bool  # the discordance is that of independent errors, not given
    alpha: float
    power: float
    detectable: float | None  # on `items`: the smallest difference found with `power` at `alpha`
    difference: float | None  # the difference asked about
    items_needed: int | None  # items that difference needs


class ChosenConfig(_Row):
    """The config a search chose on val for one model and task."""

    model: str
    task: str
    config_id: str


class RunLog(BaseModel):
    """What a run or search returns: where it is, how it ended, what it chose, and its report."""

    model_config = ConfigDict(arbitrary_types_allowed=True, protected_namespaces=())

    version: str
    run_id: str
    run_dir: Path
    storage: str  # the store's URL without its password (which stays in the environment)
    plan: dict[str, Any]
    status: str  # complete, or stopped (a budget); interrupted runs raise instead of returning
    stopped: str | None = None  # why it stopped early, if it did
    chosen: list[ChosenConfig] = []
    report: Report

    @property
    def summaries(self) -> list[ConfigSummary]:
        return self.report.rows

    @property
    def ceilings(self) -> list[Ceiling]:
        return self.report.ceilings

    @property
    def warnings(self) -> list[str]:
        return self.report.warnings


def schema() -> dict:
    """Report's JSON schema (draft 2020-12), as checked in at docs/report.schema.json."""
    out = Report.model_json_schema()
    out["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    out["title"] = "promptopt report"
    return out


def schema_json() -> str:
    """The schema as written to docs/report.schema.json."""
    return json.dumps(schema(), indent=2) + "\n"
