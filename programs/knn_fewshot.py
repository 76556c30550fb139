"""`knn_fewshot` (Medprompt's dynamic few-shot): the k most similar training examples as demos.

Preparation (run once per model and task, before scoring): the model answers a pool of training
questions with chain-of-thought; only the ones it got right stay in the pool, each with its own
reasoning as the demonstration (`self_cot=True`). With `self_cot=False` every pool example stays,
with its gold answer and no reasoning, and preparation costs no LM call. Then, for each
question, the embedder finds the k nearest pool examples and they are the demos of one
chain-of-thought call.

The pool, the embedder's fitted state and the index vectors are part of the saved program
(`dump_state`/`load_state`), so a loaded program picks exactly the same demos.
"""

from __future__ import annotations

import json

import dspy

from promptopt.embed import as_saved, embedder_from_state, make_embedder, nearest, pack, unpack
from promptopt.images import is_image_field, portable
from promptopt.registry import ANY, strategy
from promptopt.signatures import as_text, signature_for


def _text(inputs: dict) -> str:
    """What neighbours are found by: the text inputs (an image is not text)."""
    return "\n".join(str(v) for v in as_text({k: v for k, v in inputs.items() if not is_image_field(k)}).values())


def _saved(inputs: dict) -> dict:
    """A pool example's inputs as the saved program keeps them: options as text, images as data URLs."""
    return {k: portable(inputs[k]) if is_image_field(k) else v for k, v in as_text(inputs).items()}


@strategy(
    "knn_fewshot",
    reasons=True,
    answer_types={ANY},
    calls=lambda knobs, n_options: 1,
    demos_knob="k",
    # preparing: the model explains each training example of the pool once (when self_cot)
    prep_calls=lambda knobs, n_train: min(knobs["pool"], n_train) if knobs["self_cot"] else 0,
    knobs={"k": 5, "pool": 100, "self_cot": True, "embedder": "tfidf"},
)
class KNNFewShot(dspy.Module):
    """k nearest training examples (with self-generated reasoning) as demos for chain-of-thought."""

    sees_images = True  # image inputs reach the model as image parts of the message

    compilable = False  # its demos are chosen per question

    def __init__(self, task, k: int = 5, pool: int = 100, self_cot: bool = True, embedder: str = "tfidf"):
        super().__init__()
        if k < 1 or pool < 1:
            raise ValueError("knn_fewshot needs k >= 1 and pool >= 1")
        self.answer_type = task.answer_type
        self.k, self.pool_size, self.self_cot = k, pool, self_cot
        self.embedder = make_embedder(embedder)
        self.predict = dspy.ChainOfThought(signature_for(task))
        self.pool: list[dict] = []  # {"id", "inputs" (as shown to the model), "answer", "reasoning"}
        self.index = None
        self.prepared = False

    # -- preparation -------------------------------------------------------------------------
    def teacher(self) -> dspy.Module | None:
        """The program that explains training examples, or None when no preparation calls are needed."""
        return _Explain(self) if self.self_cot else None

    def fit_pool(self, examples, explanations: dict[str, str] | None = None) -> None:
        """Build pool and index from training examples; with self_cot, only correctly explained ones."""
        pool = []
        for ex in examples:
            if self.self_cot:
                reasoning = (explanations or {}).get(ex.id)
                if reasoning is None:
                    continue  # the model got it wrong (or could not answer): no demo from it
            else:
                reasoning = None
            pool.append({"id": ex.id, "inputs": _saved(ex.inputs), "answer": ex.gold, "reasoning": reasoning})
        self.pool = pool
        self.embedder.fit([_text(p["inputs"]) for p in pool])
        self.index = as_saved(self.embedder.embed([_text(p["inputs"]) for p in pool]))
        self.prepared = True

    # -- answering ---------------------------------------------------------------------------
    def written(self, gold: str) -> str:
        """A gold answer as a right reply would write it (answer types may store gold encoded)."""
        render = self.answer_type.render
        return render(gold) if render else gold

    def neighbours(self, inputs: dict) -> list[dict]:
        if not self.prepared:
            raise RuntimeError("knn_fewshot has no example pool yet: prepare it (promptopt run does) or load one")
        query = self.embedder.embed([_text(inputs)])[0]
        return [self.pool[i] for i in nearest(self.index, query, self.k)]

    def forward(self, **inputs):
        picked = self.neighbours(inputs)
        demos = []
        for p in picked:
            demo = dict(as_text(p["inputs"]), answer=self.written(p["answer"]))
            if p["reasoning"]:
                demo["reasoning"] = p["reasoning"]
            demos.append(dspy.Example(**demo))
        out = self.predict(**as_text(inputs), demos=demos)
        return dspy.Prediction(
            answer=self.answer_type.parse(out.answer, inputs),
            reasoning=out.get("reasoning"),
            demo_ids=[p["id"] for p in picked],
            raw=f"{out.get('reasoning', '')}\n[[answer]] {out.answer}",
        )

    # -- saving ------------------------------------------------------------------------------
    def dump_state(self, json_mode=True):
        state = super().dump_state(json_mode=json_mode)
        state["knn"] = {
            "k": self.k,
            "self_cot": self.self_cot,
            "pool": self.pool,
            "embedder": self.embedder.state(),
            "index": pack(self.index) if self.index is not None else None,
        }
        return state

    def load_state(self, state, **kwargs):
        knn = state.get("knn")
        super().load_state({k: v for k, v in state.items() if k != "knn"}, **kwargs)
        if knn:
            self.k, self.self_cot, self.pool = knn["k"], knn["self_cot"], knn["pool"]
            self.embedder = embedder_from_state(knn["embedder"])
            self.index = unpack(knn["index"]) if knn["index"] else None
            self.prepared = self.index is not None
        return self


class _Explain(dspy.Module):
    """Chain-of-thought without demos over a training example; `raw` carries the reasoning."""

    def __init__(self, owner: KNNFewShot):
        super().__init__()
        self.answer_type = owner.answer_type
        self.predict = owner.predict

    def forward(self, **inputs):
        out = self.predict(**as_text(inputs), demos=[])
        reasoning = (out.get("reasoning") or "").strip()
        return dspy.Prediction(
            answer=self.answer_type.parse(out.answer, inputs), raw=json.dumps({"reasoning": reasoning})
        )
