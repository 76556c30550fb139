"""Convert CasiMedicos-Arg's token-per-line files into one JSONL per language and split, once.

    python tasks/data/casimedicos/convert.py PATH/TO/casimedicos-arg.tar.gz

Reads `casimedicos-arg/{EN,ES,FR,IT}/{train,dev,test}.tsv` from the tarball and writes
`{en,es,fr,it}/{train,dev,test}.jsonl` beside this script, one object per clinical case: `id`
(split/position: the same case has the same id in every language), `question` (the case and
its question, without the options), `options` (letter -> text; the literal `nan` fifth option
dropped), `answer` (the gold letter) and `type` (the QUESTION TYPE header). The doctors'
explanation after the gold header restates the answer, so it is never kept. Parse rules are
SOURCE.md's: a case starts at a `QUESTION` line followed by `TYPE:`; the gold is the first
`CORRECT ANSWER: N` (or its French and Italian forms); options start at the last line `1 -`
before it, a line `N -` (dash optional) with the next expected N starts the next option, any
other line continues the previous one.
"""

from __future__ import annotations

import json
import re
import sys
import tarfile
from pathlib import Path

LANGUAGES = ("EN", "ES", "FR", "IT")
SPLITS = ("train", "dev", "test")
GOLD = re.compile(r"^(?:CORRECT ANSWER|BONNE RÉPONSE|RÉPONSE CORRECTE|RISPOSTA CORRETTA)\s*:\s*([1-5])\s*$")


def lines_of(text: str) -> list[list[str]]:
    """Documents as lists of text lines (tokens joined by spaces; a blank line ends a line)."""
    docs: list[list[str]] = []
    line: list[str] = []
    rows = text.splitlines()
    for i, raw in enumerate(rows):
        parts = raw.split()
        if not parts:
            if line:
                docs[-1].append(" ".join(line))
                line = []
            continue
        token = parts[0]
        following = rows[i + 1].split()[:1] if i + 1 < len(rows) else []
        if token == "QUESTION" and not line and following == ["TYPE:"]:
            docs.append([])
        line.append(token)
    if line:
        docs[-1].append(" ".join(line))
    return docs


def case(doc: list[str]) -> dict:
    gold_at = next(i for i, ln in enumerate(doc) if GOLD.match(ln))
    start = max(i for i, ln in enumerate(doc[:gold_at]) if re.match(r"^1\s*-", ln))
    options: list[list[str]] = []
    for ln in doc[start:gold_at]:
        expected = len(options) + 1
        found = re.match(rf"^{expected}\s*-?\s*(.*)$", ln)
        if found and expected <= 5:
            options.append([found.group(1).strip()])
        else:
            options[-1].append(ln)
    texts = [" ".join(o).strip() for o in options]
    head = doc[:start]
    kind = head[0].removeprefix("QUESTION TYPE:").strip() if head and head[0].startswith("QUESTION TYPE:") else ""
    body = [ln for ln in head[1:] if ln.strip() != "CLINICAL CASE:"]
    letters = "ABCDE"
    kept = {letters[i]: t for i, t in enumerate(texts) if t.lower() != "nan"}
    gold = letters[int(GOLD.match(doc[gold_at]).group(1)) - 1]
    if gold not in kept:
        raise ValueError(f"gold {gold} is not among the options {list(kept)}")
    return {"question": "\n".join(body).strip(), "options": kept, "answer": gold, "type": kind}


def main() -> None:
    tarball = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("casimedicos-arg.tar.gz")
    out = Path(__file__).resolve().parent
    golds: dict[str, dict[str, str]] = {}
    with tarfile.open(tarball) as tar:
        for lang in LANGUAGES:
            for split in SPLITS:
                member = tar.extractfile(f"casimedicos-arg/{lang}/{split}.tsv")
                docs = lines_of(member.read().decode("utf-8"))
                rows = [{"id": f"{split}/{i}", **case(d)} for i, d in enumerate(docs)]
                folder = out / lang.lower()
                folder.mkdir(exist_ok=True)
                with (folder / f"{split}.jsonl").open("w", encoding="utf-8") as f:
                    for r in rows:
                        f.write(json.dumps(r, ensure_ascii=False) + "\n")
                for r in rows:
                    golds.setdefault(r["id"], {})[lang] = r["answer"]
                print(f"{lang} {split}: {len(rows)} cases, {sum(len(r['options']) == 4 for r in rows)} with 4 options")
    disagree = [i for i, by in golds.items() if len(set(by.values())) > 1 or len(by) != len(LANGUAGES)]
    print(f"gold answers agree across {len(LANGUAGES)} languages on {len(golds) - len(disagree)} of {len(golds)} cases")


if __name__ == "__main__":
    main()
