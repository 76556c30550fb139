"""Convert MedQuAD's XML (three collections, see SOURCE.md) into medquad.jsonl (zipped), once.

    python tasks/data/medquad/convert.py PATH/TO/MedQuAD  # the folder holding 3_GHR_QA/ etc.

One JSON object per question: id (the question's qid, prefixed by its collection), collection,
focus, qtype, question, answer. Clean-ups, each counted in the printed summary:
- GHR `treatment` answers are dropped: they are lists of links, not answers;
- any other answer that only introduces a list of resources ("These resources address ...") is dropped;
- the literal prefix "Summary : " of MedlinePlus answers is removed;
- whitespace runs (the flattened bullets "  - ") become single spaces;
- answers whose exact text is shared by several questions (boilerplate) are dropped, as are
  answers of fewer than 8 words and repeated (question, answer) pairs.
XML entities (&quot; &apos;) are decoded by the XML parser.
"""

from __future__ import annotations

import json
import re
import sys
import xml.etree.ElementTree as ET
import zipfile
from collections import Counter
from pathlib import Path

COLLECTIONS = {"3_GHR_QA": "GHR", "4_MPlus_Health_Topics_QA": "MPlus", "6_NINDS_QA": "NINDS"}
LINK_LIST = re.compile(r"^\s*These resources address\b", re.IGNORECASE)


def read(root: Path) -> tuple[list[dict], Counter]:
    rows, dropped = [], Counter()
    for folder, short in COLLECTIONS.items():
        for path in sorted((root / folder).glob("*.xml")):
            doc = ET.parse(path).getroot()
            focus = (doc.findtext("Focus") or "").strip()
            for pair in doc.iter("QAPair"):
                q = pair.find("Question")
                answer = (pair.findtext("Answer") or "").strip()
                qtype = q.get("qtype", "") if q is not None else ""
                if q is None or not answer:
                    dropped["no answer"] += 1
                    continue
                if short == "GHR" and qtype == "treatment":
                    dropped["GHR treatment (link lists)"] += 1
                    continue
                if LINK_LIST.match(answer):
                    dropped["other link lists"] += 1
                    continue
                answer = re.sub(r"^Summary\s*:\s*", "", answer)
                answer = re.sub(r"\s+", " ", answer).strip()
                question = re.sub(r"\s+", " ", (q.text or "")).strip()
                rows.append({"id": f"{short}/{q.get('qid')}", "collection": short, "focus": focus, "qtype": qtype,
                             "question": question, "answer": answer})  # fmt: skip
    return rows, dropped


def clean(rows: list[dict], dropped: Counter) -> list[dict]:
    shared = Counter(r["answer"] for r in rows)
    out, seen = [], set()
    for r in rows:
        if shared[r["answer"]] > 1:
            dropped["answers shared by several questions (boilerplate)"] += 1
        elif len(r["answer"].split()) < 8:
            dropped["answers under 8 words"] += 1
        elif (r["question"], r["answer"]) in seen:
            dropped["repeated pairs"] += 1
        else:
            seen.add((r["question"], r["answer"]))
            out.append(r)
    ids = Counter(r["id"] for r in out)
    return [r | {"id": f"{r['id']}#{i}"} if ids[r["id"]] > 1 else r for i, r in enumerate(out)]


def main() -> None:
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[4] / "shared/data/medquad"
    rows, dropped = read(root)
    kept = clean(rows, dropped)
    out = Path(__file__).with_name("medquad.jsonl.zip")  # zipped: 1.7 MB instead of 6.6 MB
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("medquad.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in kept))
    print(f"read {len(rows) + dropped['no answer'] + dropped['GHR treatment (link lists)'] + dropped['other link lists']} "
          f"pairs, kept {len(kept)}")
    for reason, n in dropped.most_common():
        print(f"  dropped {n}: {reason}")
    print("  kept per collection:", dict(Counter(r["collection"] for r in kept)))
    print("  kept per qtype:", dict(Counter(r["qtype"] for r in kept)))


if __name__ == "__main__":
    main()
