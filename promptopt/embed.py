"""Text embedders for nearest-neighbour demonstrations, and a cosine index that saves to JSON.

`tfidf` (the default) is lexical and needs nothing downloaded: a vocabulary and inverse
document frequencies fitted on the example pool. `litellm:<model>` (e.g.
`litellm:openai/text-embedding-3-small`) calls a hosted embedding model through LiteLLM; its
vectors are saved with the program, so loading never calls the embedding model for the pool.
"""

from __future__ import annotations

import base64
import math
import re
import zlib
from collections import Counter

import numpy as np

from promptopt.errors import UserError

_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
# Words that occur in nearly every exam question and carry no topic.
_STOP = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "by",
        "for",
        "from",
        "has",
        "have",
        "he",
        "her",
        "his",
        "in",
        "is",
        "it",
        "its",
        "of",
        "on",
        "or",
        "she",
        "that",
        "the",
        "their",
        "this",
        "to",
        "was",
        "were",
        "which",
        "who",
        "with",
        "what",
        "most",
        "likely",
        "following",
        "patient",
        "year",
        "old",
    ]
)


def tokens(text: str) -> list[str]:
    return [t for t in _TOKEN.findall(text.lower()) if len(t) > 1 and t not in _STOP]


class TfidfEmbedder:
    """Sublinear TF-IDF over words, L2-normalised; fitted on the pool, frozen afterwards."""

    kind = "tfidf"

    def __init__(self, vocab: list[str] | None = None, idf: list[float] | None = None):
        self.vocab = {w: i for i, w in enumerate(vocab or [])}
        self.idf = np.asarray(idf or [], dtype=np.float64)

    def fit(self, texts: list[str]) -> TfidfEmbedder:
        df: Counter[str] = Counter()
        for text in texts:
            df.update(set(tokens(text)))
        words = sorted(df)
        n = len(texts)
        self.vocab = {w: i for i, w in enumerate(words)}
        # rounded as saved, so a loaded embedder gives bit-identical vectors
        self.idf = np.asarray([round(math.log((1 + n) / (1 + df[w])) + 1.0, 6) for w in words])
        return self

    def embed(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), len(self.vocab)), dtype=np.float64)
        for row, text in enumerate(texts):
            for word, count in Counter(tokens(text)).items():
                col = self.vocab.get(word)
                if col is not None:
                    out[row, col] = (1.0 + math.log(count)) * self.idf[col]
        return _normalise(out)

    def state(self) -> dict:
        return {"kind": self.kind, "vocab": list(self.vocab), "idf": self.idf.tolist()}


class LiteLLMEmbedder:
    """A hosted embedding model through LiteLLM; keys come from the environment."""

    kind = "litellm"

    def __init__(self, model: str, api_base: str | None = None, batch: int = 64):
        self.model, self.api_base, self.batch = model, api_base, batch

    def fit(self, texts: list[str]) -> LiteLLMEmbedder:
        return self

    def embed(self, texts: list[str]) -> np.ndarray:
        import litellm

        from promptopt.models import current_log

        rows: list[list[float]] = []
        for start in range(0, len(texts), self.batch):
            resp = litellm.embedding(model=self.model, input=texts[start : start + self.batch], api_base=self.api_base)
            rows.extend(item["embedding"] for item in resp.data)
            log = current_log.get()
            if log is not None:  # the ledger's `embedding` role: what this call cost
                usage = getattr(resp, "usage", None)
                tokens = int(getattr(usage, "prompt_tokens", 0) or 0) if usage is not None else 0
                cost = (getattr(resp, "_hidden_params", None) or {}).get("response_cost") or 0.0
                log.embedded(1, tokens, float(cost))
        return _normalise(np.asarray(rows, dtype=np.float64))

    def state(self) -> dict:
        return {"kind": self.kind, "model": self.model}  # api_base is the caller's, never saved


def make_embedder(spec: str, api_base: str | None = None):
    if spec == "tfidf":
        return TfidfEmbedder()
    if spec.startswith("litellm:") and len(spec) > len("litellm:"):
        return LiteLLMEmbedder(spec.removeprefix("litellm:"), api_base)
    raise UserError(f"Unknown embedder {spec!r}; valid embedders are tfidf and litellm:<embedding model>.")


def embedder_from_state(state: dict, api_base: str | None = None):
    if state.get("kind") == "tfidf":
        return TfidfEmbedder(state["vocab"], state["idf"])
    if state.get("kind") == "litellm":
        return LiteLLMEmbedder(state["model"], api_base)
    raise UserError(f"Saved program names an unknown embedder {state.get('kind')!r}; valid: tfidf, litellm.")


def _normalise(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms == 0, 1.0, norms)


def nearest(index: np.ndarray, query: np.ndarray, k: int) -> list[int]:
    """Rows of `index` most similar to `query` (cosine), best first; ties go to the earlier row."""
    if index.shape[0] == 0 or k <= 0:
        return []
    scores = index @ query
    order = np.lexsort((np.arange(len(scores)), -scores))
    return [int(i) for i in order[:k]]


def pack(matrix: np.ndarray) -> dict:
    """A matrix as compact JSON: float32, zlib-compressed, base64."""
    data = np.ascontiguousarray(matrix, dtype="<f4").tobytes()
    return {"shape": list(matrix.shape), "f32_zlib_b64": base64.b64encode(zlib.compress(data, 9)).decode()}


def as_saved(matrix: np.ndarray) -> np.ndarray:
    """The matrix exactly as it reads back after `pack`/`unpack`."""
    return np.asarray(matrix, dtype="<f4").astype(np.float64)


def unpack(packed: dict) -> np.ndarray:
    data = zlib.decompress(base64.b64decode(packed["f32_zlib_b64"]))
    return np.frombuffer(data, dtype="<f4").reshape(packed["shape"]).astype(np.float64)
