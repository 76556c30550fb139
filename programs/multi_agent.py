"""`multi_agent` (MedAgents, Tang et al. 2024): experts recruited for the question collaborate.

Five stages, each a DSPy predictor (so optimizers can tune every one of them), zero-shot:

1. **Expert gathering**: one call names `experts` fields of expertise suited to the question.
2. **Analysis proposition**: each expert analyses the question and options from its field
   (`experts` calls).
3. **Report summarization**: one call condenses the analyses into a report.
4. **Collaborative consultation**: in each of up to `rounds` rounds every expert reads the report
   and says whether it agrees, with advice if not (`experts` calls); when all agree the
   consultation ends, else the report is revised with the advice (one call).
5. **Decision making**: one call answers from the final report.

Declared calls are the most it can make, 3 + experts + rounds × (experts + 1); a consultation
that agrees early makes fewer (records show the measured calls). Every stage's output is kept in
the record's extras (`stages`). Reads from a base model that give no usable field list fall
back to general fields, so the remaining stages still run.
"""

import dspy

from promptopt.registry import ANY, strategy
from promptopt.signatures import as_text, ask

GENERAL_FIELDS = ["Internal Medicine", "General Practice", "Pharmacology", "Surgery", "Pediatrics"]


class Recruit(dspy.Signature):
    """Name the medical fields of expertise best suited to answer this question, most relevant first, separated by commas."""

    question: str = dspy.InputField()
    options: str = dspy.InputField(desc="lettered options, one per line (may be empty)")
    specialties: str = dspy.OutputField(desc="comma-separated fields of expertise")


class Analyse(dspy.Signature):
    """You are an expert in the given specialty. Analyse the question and each option from your specialty's point of view."""

    specialty: str = dspy.InputField()
    question: str = dspy.InputField()
    options: str = dspy.InputField(desc="lettered options, one per line (may be empty)")
    analysis: str = dspy.OutputField()


class Summarize(dspy.Signature):
    """Summarize the experts' analyses into one report: the key evidence and the option it supports."""

    question: str = dspy.InputField()
    options: str = dspy.InputField(desc="lettered options, one per line (may be empty)")
    analyses: str = dspy.InputField()
    report: str = dspy.OutputField()


class Review(dspy.Signature):
    """You are an expert in the given specialty. Read the report: do you agree with it? Answer yes or no; if no, advise how to correct it."""

    specialty: str = dspy.InputField()
    question: str = dspy.InputField()
    options: str = dspy.InputField(desc="lettered options, one per line (may be empty)")
    report: str = dspy.InputField()
    agree: str = dspy.OutputField(desc="yes or no")
    advice: str = dspy.OutputField(desc="how to correct the report (empty when you agree)")


class Revise(dspy.Signature):
    """Revise the report following the experts' advice."""

    question: str = dspy.InputField()
    options: str = dspy.InputField(desc="lettered options, one per line (may be empty)")
    report: str = dspy.InputField()
    advice: str = dspy.InputField()
    report_revised: str = dspy.OutputField()


def decision_signature(task) -> type[dspy.Signature]:
    fields = {name: (str, dspy.InputField()) for name in task.input_fields}
    fields["report"] = (str, dspy.InputField(desc="the experts' agreed report"))
    fields["answer"] = (str, dspy.OutputField(desc=task.answer_type.describe({})))
    return dspy.Signature(fields, "Answer the question, deciding from the experts' report.")


def fields_of(text: str | None, n: int) -> list[str]:
    """Up to n distinct fields from a comma- or line-separated list, padded with general ones."""
    seen: list[str] = []
    for part in (text or "").replace("\n", ",").split(","):
        name = part.strip(" -*.0123456789)").strip()
        if name and len(name) <= 60 and name.lower() not in {s.lower() for s in seen}:
            seen.append(name)
    for general in GENERAL_FIELDS:
        if len(seen) >= n:
            break
        if general.lower() not in {s.lower() for s in seen}:
            seen.append(general)
    return seen[:n]


def agrees(text: str | None) -> bool:
    return (text or "").strip().lower().startswith(("yes", "agree", "true"))


@strategy(
    "multi_agent",
    answer_types={ANY},
    calls=lambda knobs, n_options: 3 + knobs["experts"] + knobs["rounds"] * (knobs["experts"] + 1),
    knobs={"experts": 3, "rounds": 2},
    reasons=True,
)
class MultiAgent(dspy.Module):
    """MedAgents: recruit experts, analyse, summarize, consult until agreement, decide."""

    def __init__(self, task, experts: int = 3, rounds: int = 2):
        super().__init__()
        if not 1 <= experts <= 5 or not 0 <= rounds <= 5:
            raise ValueError("multi_agent needs 1 <= experts <= 5 and 0 <= rounds <= 5")
        self.answer_type = task.answer_type
        self.experts, self.rounds = experts, rounds
        self.recruit = dspy.Predict(Recruit)
        self.analyse = dspy.Predict(Analyse)
        self.summarize = dspy.Predict(Summarize)
        self.review = dspy.Predict(Review)
        self.revise = dspy.Predict(Revise)
        self.decide = dspy.Predict(decision_signature(task))

    def forward(self, **inputs):
        shown = as_text(inputs)
        question = str(shown.get("question") or next(iter(shown.values()), ""))
        context = {k: v for k, v in shown.items() if k not in ("question", "options")}
        if context:  # other inputs (an abstract, a note) belong to the question the experts read
            question = "\n".join([*(f"{k.replace('_', ' ').capitalize()}: {v}" for k, v in context.items()), question])
        options = str(shown.get("options", ""))
        stages: list[dict] = []

        out = ask(self.recruit, question=question, options=options)
        experts = fields_of(out.specialties if out is not None else None, self.experts)
        stages.append({"stage": "recruit", "experts": experts})

        analyses = []
        for field in experts:
            out = ask(self.analyse, specialty=field, question=question, options=options)
            analyses.append(f"{field}: {out.analysis if out is not None else ''}".strip())
            stages.append({"stage": "analysis", "expert": field, "analysis": analyses[-1]})

        out = ask(self.summarize, question=question, options=options, analyses="\n\n".join(analyses))
        report = out.report if out is not None else "\n\n".join(analyses)
        stages.append({"stage": "report", "report": report})

        agreed = self.rounds == 0
        for round_no in range(1, self.rounds + 1):
            votes, advice = [], []
            for field in experts:
                out = ask(self.review, specialty=field, question=question, options=options, report=report)
                votes.append(agrees(out.agree if out is not None else None))
                if not votes[-1] and out is not None and (out.advice or "").strip():
                    advice.append(f"{field}: {out.advice.strip()}")
            stages.append({"stage": "consultation", "round": round_no, "agree": votes, "advice": advice})
            if all(votes):
                agreed = True
                break
            out = ask(self.revise, question=question, options=options, report=report,
                      advice="\n".join(advice) or "Some experts disagree; re-examine the evidence.")  # fmt: skip
            report = out.report_revised if out is not None and (out.report_revised or "").strip() else report
            stages.append({"stage": "revision", "round": round_no, "report": report})

        out = ask(self.decide, **shown, report=report)
        text = out.answer if out is not None else None
        stages.append({"stage": "decision", "answer": text, "agreed": agreed})
        return dspy.Prediction(
            answer=self.answer_type.parse(text, inputs), stages=stages, reasoning=report, raw=text or ""
        )
