import pytest

from promptopt.answers import MultipleChoice

OPTIONS = {"A": "Aspirin", "B": "Beta blocker", "C": "Calcium channel blocker", "D": "Diuretic"}
MC = MultipleChoice()


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("B", "B"),
        (" b", "B"),
        ("(C) Calcium channel blocker", "C"),
        ("D.", "D"),
        ("**A**", "A"),
        ("The answer is C.", "C"),
        ("Answer: (D)", "D"),
        ("I think it is the beta blocker", "B"),
        ("A 45-year-old man presents with chest pain", None),
        ("", None),
        (None, None),
        ("E", None),  # not one of the options
        ("Aspirin or a diuretic", None),  # two options named: ambiguous
    ],
)
def test_the_shared_parser_reads_what_models_write_and_flags_the_rest(raw, expected):
    assert MC.parse(raw, {"options": OPTIONS}) == expected


def test_a_missing_answer_scores_zero_and_the_gold_letter_scores_one():
    assert MC.score(None, "B") == 0.0
    assert MC.score("B", "B") == 1.0
    assert MC.score("C", "B") == 0.0


def test_a_long_reply_that_lists_options_is_a_parse_failure_not_option_a():
    listing = "A. Aspirin is an antiplatelet drug.\nB. Beta blockers slow the heart.\nC. Calcium channel blockers..."
    assert MC.parse(listing, {"options": OPTIONS}) is None
    assert MC.parse(listing + "\nSo the answer is B.", {"options": OPTIONS}) == "B"
