"""Scoring by probability, multi-agent collaboration, retrieval and reasoning effort, each checked
against what a scripted server was made to do: the figures promptopt reports equal the ones
computed here by hand from the planted probabilities, stages and passages."""

import json
import math
import re

import bm25s
import pytest

import promptopt
from promptopt.errors import UserError
from promptopt.stats import brier_ece
from promptopt.tasks import load_task
from promptopt.testing import ScriptedServer, fill_fields

FAST = {"PROMPTOPT_TIMEOUT_S": "5", "PROMPTOPT_BACKOFF_S": "0.01", "PROMPTOPT_RETRIES": "1"}
N = 10


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch):
    for key, value in FAST.items():
        monkeypatch.setenv(key, value)


def run(server, tmp_path, strategies, task="medqa", **options):
    return promptopt.run(
        models=["openai/scripted"], api_base=server.base_url, tasks=[task], strategies=strategies,
        limit=N, out=tmp_path, references=False, **options,
    )  # fmt: skip


def item_of(prompt, examples):
    """The item whose question is in the prompt."""
    return next(ex for ex in examples if ex.inputs["question"][:80] in prompt)


def examples(task, splits=("val", "test")):
    return [ex for s in splits for ex in task.examples(s, N)]


# ---------------------------------------------------------------- letter_logprob


def planted_distribution(ex) -> dict[str, float]:
    """A distribution over the item's letters that is right on some items and wrong on others,
    with a stray non-letter token, as a real model's top tokens have."""
    letters = list(ex.inputs["options"])
    k = int(ex.id.encode().hex(), 16) % 3  # 0: confident and right, 1: unsure, 2: confident and wrong
    wrong = next(x for x in letters if x != ex.gold)
    probs = {x: 0.05 for x in letters}
    if k == 0:
        probs[ex.gold] = 0.7
    elif k == 1:
        probs[ex.gold], probs[wrong] = 0.3, 0.35
    else:
        probs[wrong] = 0.8
    return probs


def test_letter_logprob_picks_the_most_probable_letter_and_reports_its_calibration(medqa, tmp_path):
    known = examples(medqa)

    def top(prompt):
        probs = planted_distribution(item_of(prompt, known))
        # variants of one letter add up (" B" and "B"); a non-letter token is left out
        tokens = {f" {x}": math.log(p * 0.6) for x, p in probs.items()}
        tokens |= {x: math.log(p * 0.4) for x, p in probs.items()}
        return tokens | {"\n": math.log(0.2)}

    with ScriptedServer(lambda p: " A", top_logprobs=top) as server:
        log = run(server, tmp_path, ["letter_logprob"])
        asked = [r for r in server.requests if r.get("logprobs")]
    assert len(asked) == 2 * N and all(r["top_logprobs"] == 20 and r["max_tokens"] == 1 for r in asked)
    records = promptopt.report(log.storage).rows
    for split in ("val", "test"):
        row = next(r for r in records if r.split == split)
        exs = medqa.examples(split, N)
        planted = [planted_distribution(ex) for ex in exs]
        normalized = [{k: v / sum(p.values()) for k, v in p.items()} for p in planted]
        picked = [max(p, key=p.get) for p in normalized]
        assert row.score == pytest.approx(sum(a == ex.gold for a, ex in zip(picked, exs, strict=True)) / N)
        cal = next(c for c in log.report.calibration if c.split == split)
        # by hand: Brier sums (p - y)^2 over letters; ECE over 10 equal-width bins of max p
        brier = sum(sum((q - (k == ex.gold)) ** 2 for k, q in p.items()) for p, ex in zip(normalized, exs, strict=True)) / N
        bins: dict[int, list] = {}
        for p, ex in zip(normalized, exs, strict=True):
            conf = max(p.values())
            bins.setdefault(min(int(conf * 10), 9), []).append((conf, max(p, key=p.get) == ex.gold))
        ece = sum(abs(sum(c for c, _ in b) / len(b) - sum(r for _, r in b) / len(b)) * len(b) for b in bins.values()) / N
        assert cal.n == N and cal.unread == 0
        assert cal.brier == pytest.approx(brier) and cal.ece == pytest.approx(ece)
        assert cal.letter_mass == pytest.approx(sum(sum(p.values()) for p in planted) / N)
    assert brier_ece([{"A": 1.0, "B": 0.0}], ["A"]) == (0.0, 0.0, 1.0, 1.0)


def test_letter_logprob_on_an_endpoint_without_logprobs_stops_in_one_sentence(medqa, tmp_path, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    with ScriptedServer(lambda p: " A") as server, pytest.raises(UserError, match="returned no log-probabilities"):
        run(server, tmp_path, ["letter_logprob"])
    with pytest.raises(UserError, match="does not return") as err:
        promptopt.run(models=["anthropic/claude-3-5-haiku-latest"], strategies=["letter_logprob"], limit=2, out=tmp_path)
    assert "\n" not in str(err.value) and str(err.value).endswith(").")


# ---------------------------------------------------------------- cloze


def words(text: str) -> list[str]:
    return re.findall(r"\s*\S+", text)


def test_cloze_ranks_options_by_the_servers_prompt_logprobs_as_acc_and_acc_norm(medqa, tmp_path):
    known = examples(medqa)
    by_text = {ex.id: ex for ex in known}

    def echo(text):
        """-1 per token of the question; an option's tokens score by a planted per-item rule: the
        gold option -0.4 per token, the others -0.5, so a long gold option can lose on the sum
        (acc) and still win per character (acc_norm)."""
        ex = next((e for e in by_text.values() if e.inputs["question"][:80] in text), None)
        if ex is None:  # promptopt's one probe of the endpoint
            return [(t, -1.0) for t in words(text)]
        context_end = text.rindex("Answer:") + len("Answer:")
        tail = text[context_end:]
        option = next(k for k, v in ex.inputs["options"].items() if " ".join(v.split()) == tail.strip())
        head = [(t, -1.0) for t in words(text[:context_end])]
        per = -0.4 if option == ex.gold else -0.5
        return head + [(t, per) for t in words(tail)]

    with ScriptedServer(lambda p: "", echo=echo) as server:
        log = run(server, tmp_path, ["cloze"], splits=["test"])
        sent = [r for r in server.requests if r.get("echo")]
    exs = medqa.examples("test", N)
    assert len(sent) == 1 + sum(len(ex.inputs["options"]) for ex in exs)  # one probe, then one call per option
    assert not any("Answer:" in r["prompt"] and "A. " in r["prompt"] for r in sent)  # options are never shown
    acc = acc_norm = 0
    for ex in exs:
        sums = {k: (-0.4 if k == ex.gold else -0.5) * len(words(" " + " ".join(v.split()))) for k, v in ex.inputs["options"].items()}
        norm = {k: s / len(" ".join(ex.inputs["options"][k].split())) for k, s in sums.items()}
        acc += max(sums, key=sums.get) == ex.gold
        acc_norm += max(norm, key=norm.get) == ex.gold
    cloze = log.report.cloze[0]
    assert (cloze.acc, cloze.acc_norm) == (pytest.approx(acc / N), pytest.approx(acc_norm / N))
    assert acc != acc_norm  # the plant makes the two rules disagree on some items
    assert log.report.rows[0].score == pytest.approx(acc_norm / N)  # length_norm=true is the default


def test_cloze_refuses_endpoints_without_prompt_logprobs_before_any_task_call(tmp_path, monkeypatch):
    with ScriptedServer(lambda p: " A") as server:  # a chat-only endpoint: echo is refused
        with pytest.raises(UserError, match="does not return") as err:
            run(server, tmp_path, ["cloze"])
        assert not [r for r in server.requests if "messages" in r] and len(server.requests) == 1  # the probe only
    assert "\n" not in str(err.value)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    with pytest.raises(UserError, match="hosted chat API does not return"):
        promptopt.run(models=["openai/gpt-4o-mini"], strategies=["cloze"], limit=2, out=tmp_path)


# ---------------------------------------------------------------- multi_agent


def consultation_server(agree_from_round: int | None):
    """Scripted MedAgents: the first report says option A; reviewers disagree until
    `agree_from_round` (None: never); each revision says option C; the decision reads the
    report it is given."""
    state = {"review": 0}

    def reply(prompt):
        if "Name the medical fields" in prompt:
            return fill_fields(prompt, "").replace("Considering each option in turn.", "Cardiology, Neurology, Pharmacology")
        if "Summarize the experts' analyses" in prompt:
            return "[[ ## report ## ]]\nThe evidence supports FINAL-A.\n\n[[ ## completed ## ]]"
        if "Read the report: do you agree" in prompt:
            state["review"] += 1
            rnd = (state["review"] - 1) // 3 + 1
            ok = agree_from_round is not None and rnd >= agree_from_round
            return f"[[ ## agree ## ]]\n{'yes' if ok else 'no'}\n\n[[ ## advice ## ]]\n{'' if ok else 'Reconsider C.'}\n\n[[ ## completed ## ]]"
        if "Revise the report" in prompt:
            return "[[ ## report_revised ## ]]\nAfter consultation: FINAL-C.\n\n[[ ## completed ## ]]"
        if "deciding from the experts' report" in prompt:
            report = prompt.rsplit("[[ ## report ## ]]", 1)[-1]
            letter = re.search(r"FINAL-([A-E])", report).group(1)
            return f"[[ ## answer ## ]]\n{letter}\n\n[[ ## completed ## ]]"
        return fill_fields(prompt, "A")

    return reply


@pytest.mark.parametrize(("agree_from", "calls", "answer"), [(None, 3 + 3 + 2 * 4, "C"), (1, 3 + 2 * 3, "A"), (2, 3 + 3 + 4 + 3, "C")])
def test_multi_agent_makes_its_declared_calls_and_decides_from_the_consultation(medqa, tmp_path, agree_from, calls, answer):
    from promptopt.registry import get_strategy

    declared = get_strategy("multi_agent").calls({"experts": 3, "rounds": 2}, 4)
    with ScriptedServer(consultation_server(agree_from)) as server:
        log = promptopt.run(models=["openai/scripted"], api_base=server.base_url, tasks=["medqa"], strategies=["multi_agent"],
                            limit=1, splits=["test"], out=tmp_path, references=False, threads=1)  # fmt: skip
        sent = server.calls
    rec = promptopt.report(log.storage)
    row = rec.rows[0]
    assert declared == 14 and sent == row.lm_calls == calls <= declared
    from promptopt.store import Store

    record = Store(log.storage).records(log.run_id).iloc[0]
    stages = json.loads(record.extras)["stages"]
    assert [s["stage"] for s in stages][:5] == ["recruit", "analysis", "analysis", "analysis", "report"]
    assert stages[0]["experts"] == ["Cardiology", "Neurology", "Pharmacology"]
    assert stages[-1] == {"stage": "decision", "answer": answer, "agreed": agree_from is not None}
    assert record.prediction == answer


# ---------------------------------------------------------------- retrieve


def test_retrieve_puts_the_top_k_bm25_passages_in_the_prompt_and_reports_recall(tmp_path):
    task = load_task("pubmedqa_open_book")
    known = examples(task, ("test",))
    from promptopt.corpus import task_corpus

    corpus = task_corpus(task)
    direct = bm25s.BM25()
    direct.index(bm25s.tokenize([t for _, t in corpus.passages], stopwords="en", show_progress=False), show_progress=False)

    def top5(question):
        docs, _ = direct.retrieve(bm25s.tokenize([question], stopwords="en", show_progress=False), k=5, show_progress=False)
        return [corpus.passages[int(d)] for d in docs[0]]

    with ScriptedServer(lambda p: fill_fields(p, "yes")) as server:
        log = run(server, tmp_path, ["retrieve"], task="pubmedqa_open_book", splits=["test"])
        prompts = ["\n\n".join(m["content"] for m in r["messages"]) for r in server.requests]
    hits = 0
    for ex in known:
        prompt = next(p for p in prompts if ex.inputs["question"] in p)
        expected = top5(ex.inputs["question"])
        shown = re.findall(r"^\[(\d)\] (.{60})", prompt, flags=re.MULTILINE)
        assert [text for _, text in shown] == [text[:60] for _, text in expected]
        hits += ex.id in [pid for pid, _ in expected]
    got = log.report.retrieval[0]
    assert got.k == 5 and got.recall_n == N and got.recall == pytest.approx(hits / N)
    assert hits > 0  # the questions do find their own abstracts
    assert any((tmp_path / log.run_id / "indexes").glob("*-bm25/done"))  # the index is stored beside the run


def test_retrieve_without_a_corpus_and_reasoning_effort_on_a_model_without_it_are_one_sentence(tmp_path):
    with ScriptedServer(lambda p: " A") as server:
        with pytest.raises(UserError, match="names no corpus; give --corpus PATH"):
            run(server, tmp_path, ["retrieve"])
        with pytest.raises(UserError, match="does not take"):
            run(server, tmp_path, ["cot:reasoning_effort=high"])
        with pytest.raises(UserError, match="must be one of low, medium, high"):
            run(server, tmp_path, ["cot:reasoning_effort=max"])
        assert server.calls == 0


def test_reasoning_effort_reaches_the_request_and_widens_the_search_space_of_reasoning_models(tmp_path):
    from promptopt.config import parse_config
    from promptopt.models import resolve_model
    from promptopt.runplan import RunPlan
    from promptopt.searcher import with_efforts

    with ScriptedServer(lambda p: fill_fields(p, "A")) as server:
        promptopt.run(models=["openai/o4-mini"], api_base=server.base_url, tasks=["medqa"], limit=2, splits=["test"],
                      strategies=["predict:reasoning_effort=low"], out=tmp_path, references=False)  # fmt: skip
        assert server.requests and all(r.get("reasoning_effort") == "low" for r in server.requests)
    space = {c.id: c for c in [parse_config("predict"), parse_config("cot")]}
    wide = with_efforts(space, resolve_model("openai/o4-mini"), RunPlan())
    assert sorted(c.knobs.get("reasoning_effort") or "-" for c in wide.values()) == ["-", "-", "high", "high", "low", "low", "medium", "medium"]
    assert with_efforts(space, resolve_model("openai/gpt-4o-mini"), RunPlan()) == space
