"""Passages to retrieve from, and their BM25 index.

A corpus is named by a task (`corpus:` in its YAML) or by `--corpus PATH`:

- a JSONL file, one passage per line with `id` and `text` (and optionally `title`);
- a folder of `.txt` / `.md` files, one passage each, its id the file name without suffix;
- in a task YAML, also a JSON document read like a task source (`records`, `id`, `text`
  columns), so a task can use its own data file as the corpus (open-book PubMedQA reads every
  PubMedQA abstract from the file its questions come from).

`gold: item_id` in a task's corpus says each item's gold passage is the one with the item's id,
so recall@k can be measured; `leak: COLUMN` names the item column (e.g. a conclusion) that no
passage may contain for a test item, checked with the split check before any call.

The BM25 index (bm25s) is built once per corpus content and stored beside the run
(`RUN_DIR/indexes/<digest>-bm25`), then loaded again by every config and every later run there.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from promptopt.errors import UserError
from promptopt.limits import confined
from promptopt.tasks import CorpusSpec, _walk


@dataclass
class Corpus:
    passages: list[tuple[str, str]]  # (id, text)
    source: str
    gold: str | None = None
    leak: str | None = None
    leak_texts: dict[str, str] = field(default_factory=dict, repr=False)  # id -> its row's `leak` column
    _index: Any = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def digest(self) -> str:
        h = hashlib.sha256()
        for pid, text in self.passages:
            h.update(pid.encode() + b"\0" + text.encode() + b"\0")
        return h.hexdigest()[:16]

    def text_of(self, pid: str) -> str:
        return dict(self.passages)[pid]

    def index(self, folder: Path | None):
        """The BM25 index, built once and stored in `folder` (loaded when it is already there)."""
        with self._lock:
            if self._index is None:
                self._index = _bm25(self, folder)
            return self._index

    def search(self, query: str, k: int, folder: Path | None = None) -> list[tuple[str, float]]:
        """The k passages BM25 ranks highest for `query`: (id, score), best first."""
        import bm25s

        retriever = self.index(folder)
        tokens = bm25s.tokenize([query], stopwords="en", show_progress=False)
        if not tokens.vocab:
            return []
        k = min(k, len(self.passages))
        docs, scores = retriever.retrieve(tokens, k=k, show_progress=False, n_threads=1)
        return [(self.passages[int(d)][0], float(s)) for d, s in zip(docs[0], scores[0], strict=True)]


def _bm25(corpus: Corpus, folder: Path | None):
    import bm25s

    where = Path(folder) / f"{corpus.digest}-bm25" if folder else None
    if where is not None and (where / "done").exists():
        return bm25s.BM25.load(str(where))
    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenize([t for _, t in corpus.passages], stopwords="en", show_progress=False),
                    show_progress=False)  # fmt: skip
    if where is not None:
        where.mkdir(parents=True, exist_ok=True)
        retriever.save(str(where))
        (where / "done").write_text(json.dumps({"passages": len(corpus.passages), "source": corpus.source}))
    return retriever


def _joined(row: dict, cols: str | list[str]) -> str:
    parts = []
    for col in [cols] if isinstance(cols, str) else cols:
        value = row.get(col)
        if isinstance(value, list):
            parts.extend(str(v) for v in value)
        elif value is not None:
            parts.append(str(value))
    return " ".join(" ".join(parts).split())


def load_corpus(path: Path, spec: CorpusSpec | None = None, what: str = "--corpus") -> Corpus:
    """Passages from a JSONL file, a folder of text files, or (spec.records) a JSON document."""
    spec = spec or CorpusSpec(path=str(path))
    path = Path(path)
    if not path.exists():
        raise UserError(f"{what} {path} does not exist; give a JSONL file of passages (id, text) or a folder of .txt files.")
    passages: list[tuple[str, str]] = []
    leak_texts: dict[str, str] = {}
    if path.is_dir():
        for file in sorted([*path.glob("*.txt"), *path.glob("*.md")]):
            passages.append((file.stem, " ".join(file.read_text(encoding="utf-8").split())))
    else:
        try:
            if spec.records is not None:
                doc = json.loads(path.read_text(encoding="utf-8"))
                rows = [{**row, "_key": "/".join(keys)} for keys, row in _walk(doc, [s for s in spec.records.split(".") if s])]
            else:
                rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        except (ValueError, UnicodeDecodeError) as exc:
            raise UserError(f"{what} {path} is not valid JSON lines ({str(exc).splitlines()[0][:120]}).") from None
        for n, row in enumerate(rows, 1):
            if not isinstance(row, dict) or spec.id not in row:
                raise UserError(f"{what} {path}: passage {n} has no {spec.id!r} field; each passage needs an id and a text.")
            text = _joined(row, spec.text)
            if spec.title and row.get(spec.title):
                text = f"{row[spec.title]}. {text}"
            passages.append((str(row[spec.id]), text))
            if spec.leak and row.get(spec.leak):
                leak_texts[str(row[spec.id])] = _joined(row, spec.leak)
    passages = [(pid, text) for pid, text in passages if text]
    if not passages:
        raise UserError(f"{what} {path} holds no passage with text; give a JSONL file of passages (id, text).")
    ids = [pid for pid, _ in passages]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise UserError(f"{what} {path}: passage id {dup!r} appears more than once; ids must be unique.")
    return Corpus(passages=passages, source=str(path), gold=spec.gold, leak=spec.leak, leak_texts=leak_texts)


_loaded: dict[tuple[str, str], Corpus] = {}


def task_corpus(task, override: Path | None = None) -> Corpus | None:
    """The corpus `--corpus` names, else the task's own (`corpus:` in its YAML), else None."""
    if override is not None:
        file = Path(override).resolve()
        key = ("--corpus", f"{file}@{file.stat().st_mtime_ns if file.exists() else 0}")
        if key not in _loaded:
            _loaded[key] = load_corpus(Path(override))
        return _loaded[key]
    spec = getattr(task.spec, "corpus", None)
    if spec is None:
        return None
    path = confined(task.path.parent / spec.path, task.path.parent, f"Task file {task.path}: field corpus.path")
    key = (str(task.path), str(path))
    if key not in _loaded:
        _loaded[key] = load_corpus(path, spec, what=f"Task {task.name}: corpus")
    return _loaded[key]


def leaks(task, corpus: Corpus) -> list[tuple[str, str]]:
    """(test item id, passage id) pairs where a passage contains a test item's answer text: its
    row's `leak` column (e.g. PubMedQA's conclusion) or a free-text reference, normalized; texts
    under 8 words are not checked (a short answer appears in passages by chance)."""

    def norm(text: str) -> str:
        return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())

    texts = [(pid, norm(t)) for pid, t in corpus.passages]
    free = task.spec.answer.type == "free_text"
    found = []
    for ex in task.examples("test"):
        for answer in (corpus.leak_texts.get(ex.id), ex.gold if free else None):
            answer = norm(answer) if isinstance(answer, str) else ""
            if len(answer.split()) >= 8:
                found += [(ex.id, pid) for pid, text in texts if answer in text]
    return sorted(set(found))
