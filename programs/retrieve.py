"""`retrieve`: BM25 over a corpus, then answer from the passages it found (retrieval-augmented).

The query is the question (and, with `query=question+options`, the options' texts); the k
passages `bm25s` ranks highest are put before the question as numbered passages, and a DSPy
predictor (chain of thought with `reasoning=true`) answers. The passages' ids are the record's
extras (`retrieved`), and where the task names each item's gold passage (`corpus: {gold:
item_id}`) so is recall@k (`recall`, set when the example is scored). The corpus comes from the task's YAML or `--corpus`; its
index is built once and stored beside the run. Compilable: optimizers tune the answering step.
`prompt=plain` puts the passages in the fixed baseline prompt instead (for base models, which
answer a plain "Answer:" cue far more often than DSPy's fields; nothing to compile then).
"""

import dspy

from promptopt.registry import ANY, strategy
from promptopt.signatures import as_text, plain_prompt

RETRIEVERS = ("bm25",)


def retrieval_signature(task) -> type[dspy.Signature]:
    fields = {"passages": (str, dspy.InputField(desc="numbered passages retrieved for the question"))}
    for name in task.input_fields:
        desc = "lettered options, one per line" if name == "options" else ""
        fields[name] = (str, dspy.InputField(desc=desc))
    fields["answer"] = (str, dspy.OutputField(desc=task.answer_type.describe({})))
    instructions = (
        "Read the retrieved passages, then answer. The passages may or may not hold the evidence.\n\n"
        + task.spec.baseline.instructions.strip()
    )
    return dspy.Signature(fields, instructions)


@strategy(
    "retrieve",
    answer_types={ANY},
    calls=lambda knobs, n_options: 1,
    knobs={"k": 5, "retriever": "bm25", "query": "question", "reasoning": False, "chars": 1500, "prompt": "dspy"},
    reasons=lambda knobs: knobs["reasoning"],
)
class Retrieve(dspy.Module):
    """The top-k BM25 passages of the task's corpus, then one answer from them."""

    def __init__(self, task, k: int = 5, retriever: str = "bm25", query: str = "question", reasoning: bool = False,
                 chars: int = 1500, prompt: str = "dspy"):  # fmt: skip
        super().__init__()
        if retriever not in RETRIEVERS:
            raise ValueError(f"retriever must be one of {', '.join(RETRIEVERS)}, not {retriever!r}")
        if query not in ("question", "question+options"):
            raise ValueError(f"query must be question or question+options, not {query!r}")
        if k < 1 or chars < 100:
            raise ValueError("retrieve needs k >= 1 and chars >= 100")
        if prompt not in ("dspy", "plain"):
            raise ValueError(f"prompt must be dspy or plain, not {prompt!r}")
        if prompt == "plain" and reasoning:
            raise ValueError("prompt=plain answers directly; it takes no reasoning=true")
        self.plain = prompt == "plain"
        self.instructions = task.spec.baseline.instructions
        self.max_tokens = task.answer_type.max_answer_tokens
        self.answer_type = task.answer_type
        self.k, self.query, self.chars = k, query, chars
        self.corpus, self.index_dir = None, None
        sig = retrieval_signature(task)
        if not self.plain:  # plain: the fixed baseline prompt with the passages, nothing to compile
            self.predict = dspy.ChainOfThought(sig) if reasoning else dspy.Predict(sig)

    def use_corpus(self, corpus, index_dir=None) -> None:
        """The passages to retrieve from (promptopt.corpus.Corpus); its index is kept in index_dir."""
        self.corpus, self.index_dir = corpus, index_dir
        corpus.index(index_dir)  # built (or loaded) now, not inside the first example's timing

    def query_of(self, inputs: dict) -> str:
        text = str(inputs.get("question") or " ".join(str(v) for k, v in inputs.items() if k != "options"))
        options = inputs.get("options")
        if self.query == "question+options" and isinstance(options, dict):
            text += " " + " ".join(options.values())
        return text

    def passages(self, inputs: dict) -> list[tuple[str, str]]:
        if self.corpus is None:
            raise RuntimeError("retrieve has no corpus: the engine gives it one with use_corpus before scoring")
        hits = self.corpus.search(self.query_of(inputs), self.k, self.index_dir)
        return [(pid, self.corpus.text_of(pid)) for pid, _ in hits]

    def forward(self, **inputs):
        found = self.passages(inputs)
        block = "\n\n".join(f"[{i}] {text[: self.chars]}" for i, (_, text) in enumerate(found, 1))
        retrieved = [pid for pid, _ in found]
        if self.plain:
            prompt = plain_prompt(self.instructions, {"passages": "\n" + (block or "(no passage found)"), **inputs})
            raw = dspy.settings.lm(prompt, max_tokens=self.max_tokens, stop=["\n"])[0]
            raw = raw if isinstance(raw, str) else raw.get("text", "")
            return dspy.Prediction(answer=self.answer_type.parse(raw, inputs), retrieved=retrieved, raw=raw)
        out = self.predict(passages=block or "(no passage found)", **as_text(inputs))
        return dspy.Prediction(
            answer=self.answer_type.parse(out.answer, inputs), retrieved=retrieved,
            reasoning=out.get("reasoning"), raw=out.answer,
        )  # fmt: skip
