"""The report of a checked-in store is byte-identical to the one recorded with it, in every format.

tests/fixtures/store.sqlite holds two real runs of the CLI against scripted models (see
tests/fixtures/make_store.py); tests/fixtures/report/ holds what `promptopt report` printed for
it when it was made. A refactor that changes a number, a word or an order shows up here. When a
field is added on purpose, regenerate the expected files and say so in the commit:

    for f in json md text html csv; do promptopt report sqlite:///tests/fixtures/store.sqlite \\
        --format $f --bootstrap 1000 > tests/fixtures/report/report.$f; done
"""

from pathlib import Path

import pytest
from conftest import cli

FIXTURES = Path(__file__).resolve().parent / "fixtures"
STORE = f"sqlite:///{FIXTURES / 'store.sqlite'}"


@pytest.mark.parametrize("fmt", ["json", "md", "text", "html", "csv"])
def test_the_report_of_the_fixture_store_is_byte_identical_to_the_recorded_one(fmt):
    done = cli("report", STORE, "--format", fmt, "--bootstrap", "1000")
    assert done.returncode == 0, done.stderr
    assert done.stdout == (FIXTURES / "report" / f"report.{fmt}").read_text()


def test_the_json_report_validates_against_the_checked_in_schema_and_the_schema_is_current():
    import json

    import jsonschema

    from promptopt.results import schema

    checked_in = json.loads((FIXTURES.parent.parent / "docs" / "report.schema.json").read_text())
    assert checked_in == schema(), "docs/report.schema.json is stale: run make schema"
    report = json.loads((FIXTURES / "report" / "report.json").read_text())
    jsonschema.Draft202012Validator(checked_in).validate(report)
    report["rows"][0]["score"] = "high"  # a report that breaks the contract is refused
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(checked_in).validate(report)


def test_a_stricter_alpha_turns_the_fixture_s_wins_at_p_0_023_into_ties_and_a_bad_alpha_is_one_sentence():
    import json

    strict, bad = cli("report", STORE, "--format", "json", "--bootstrap", "1000", "--alpha", "0.01"), \
        cli("report", STORE, "--alpha", "0.7")  # fmt: skip
    usual = json.loads((FIXTURES / "report" / "report.json").read_text())
    data = json.loads(strict.stdout)
    assert data["settings"]["alpha"] == 0.01 and usual["settings"]["alpha"] == 0.05
    decided = {(h["model_a"], h["model_b"], h["setting"]): h for h in usual["head_to_head"] if h["outcome"] in ("win", "loss")}
    assert decided and all(0.01 <= h["p_holm"] < 0.05 for h in decided.values())  # the planted gaps
    for h in data["head_to_head"]:
        won = h["p_holm"] is not None and h["p_holm"] < 0.01
        assert (h["outcome"] in ("win", "loss")) == won and h["p_holm"] == pytest.approx(
            next(u["p_holm"] for u in usual["head_to_head"] if (u["model_a"], u["model_b"], u["setting"], u["config_a"])
                 == (h["model_a"], h["model_b"], h["setting"], h["config_a"])))  # fmt: skip
    assert all(h["mde"] > u["mde"] for h, u in zip(data["head_to_head"], usual["head_to_head"], strict=True) if u["mde"])
    assert bad.returncode != 0 and bad.stderr.strip().endswith("between 0 and 0.5 (0.05 for 5%), not 0.7.")
