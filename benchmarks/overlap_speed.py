"""How long the split-hygiene check takes for 10,000 pool examples against 10,000 test examples.

Texts are MMLU-Pro questions with their options (the largest bundled task), so lengths and
vocabulary are realistic. MMLU-Pro has 12,032 rows, so the last 8,000 test examples reuse rows
with their question words shuffled; they keep their options, so many of them are (rightly)
found as near duplicates too. 50 test examples are planted as near duplicates of pool examples
(one option dropped) and must all be found.

    PYTHONPATH=. python benchmarks/overlap_speed.py
"""

import random
import time

from promptopt.hygiene import find_overlaps
from promptopt.tasks import Example, load_task


def main(n: int = 10_000, planted: int = 50) -> None:
    rows = load_task("mmlu_pro").rows()
    pool = [Example(id=f"p{i}", inputs=ex.inputs, gold=ex.gold) for i, ex in enumerate(rows[:n])]
    test = [Example(id=f"t{i}", inputs=ex.inputs, gold=ex.gold) for i, ex in enumerate(rows[n : 2 * n])]
    rng = random.Random(0)
    while len(test) < n:  # MMLU-Pro has 12,032 rows: reuse rows with their words shuffled
        ex = rows[len(test) % len(rows)]
        test.append(
            Example(
                id=f"t{len(test)}",
                inputs={
                    **ex.inputs,
                    "question": " ".join(rng.sample(words := ex.inputs["question"].split(), len(words))),
                },
                gold=ex.gold,
            )
        )
    for k in range(planted):
        src = pool[k * 97]
        options = dict(list(src.inputs["options"].items())[:-1])
        test[k] = Example(id=f"planted{k}", inputs={**src.inputs, "options": options}, gold=src.gold)
    started = time.perf_counter()
    found = find_overlaps({"train": pool, "val": [], "test": test})
    took = time.perf_counter() - started
    caught = {o.test_id for o in found if o.test_id.startswith("planted")}
    print(
        f"{n} pool x {len(test)} test examples: {took:.2f} s; {len({o.test_id for o in found})} overlapping "
        f"test examples, {len(caught)}/{planted} planted near duplicates found"
    )


if __name__ == "__main__":
    main()
