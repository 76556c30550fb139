"""The comparator's statistics on hand-computed cases and on simulations with a known truth."""

import json

import numpy as np
import pandas as pd
import pytest

from promptopt import stats
from promptopt.records import RECORD_COLUMNS
from promptopt.sections.consistency import consistency
from promptopt.sections.costs import costs
from promptopt.sections.sensitivity import sensitivity
from promptopt.simulate import SimConfig, simulate


def exact(scores: dict[tuple[str, str, str], list[float]], task="t", config=None, tokens=None) -> pd.DataFrame:
    """Records with exactly the given per-item scores: (model, strategy, split) -> scores."""
    rows = []
    for (model, strategy, split), vals in scores.items():
        for i, s in enumerate(vals):
            rows.append(
                {
                    "run_id": "r", "model": model, "task": task, "strategy": strategy, "optimizer": "none",
                    "config_id": strategy, "config": (config or {}).get(strategy, "{}"), "split": split,
                    "example_id": f"{split}-{i}", "prediction": "A", "gold": "A", "score": float(s), "parse_ok": True,
                    "error": None, "lm_calls": 1, "prompt_tokens": (tokens or {}).get(strategy, 100),
                    "completion_tokens": 10, "cost_usd": 0.0, "latency_s": 0.1, "raw_output": None, "created_at": 0.0,
                }
            )  # fmt: skip
    return pd.DataFrame(rows, columns=RECORD_COLUMNS)


def ones(k: int, n: int) -> list[float]:
    return [1.0] * k + [0.0] * (n - k)


def test_wilson_interval_of_8_right_out_of_10_matches_the_textbook_value():
    low, high = stats.wilson(8, 10)
    assert (round(low, 3), round(high, 3)) == (0.490, 0.943)
    assert stats.wilson(0, 20)[0] == 0.0 and stats.wilson(0, 20)[1] == pytest.approx(0.161, abs=1e-3)


def test_identical_paired_inputs_are_a_tie_with_an_interval_centred_on_zero():
    a = np.array(ones(30, 50))
    diff, low, high = stats.paired_bootstrap(a, a.copy())
    assert (diff, low, high) == (0.0, 0.0, 0.0)
    assert stats.verdict(low, high) == "tie"
    # same accuracy, disagreeing on 20 items half each way: still a tie, interval about zero
    b = a.copy()
    b[:10], b[40:] = 0.0, 1.0
    diff, low, high = stats.paired_bootstrap(a, b)
    assert diff == 0.0 and stats.verdict(low, high) == "tie"
    assert low < 0 < high and abs(low + high) < 0.02


def test_a_clear_difference_on_the_same_items_is_a_win():
    recs = exact(
        {("m1", "baseline", "test"): ones(80, 100), ("m2", "baseline", "test"): ones(40, 100)}
    )  # m1 right on every item m2 gets right, and 40 more
    ceil = stats.ceilings(recs)
    h2h = stats.head_to_head(recs, ceil)
    row = h2h[h2h.setting == "baseline"].iloc[0]
    assert (row.model_a, row.model_b, row.outcome) == ("m1", "m2", "win")
    assert row["diff"] == pytest.approx(0.4) and row.ci_low > 0.25
    _, low, high = stats.paired_bootstrap(np.array(ones(80, 100)), np.array(ones(40, 100)))
    assert stats.verdict(low, high) == "better" and stats.verdict(-high, -low) == "worse"


def test_the_ceiling_is_the_val_choice_even_when_another_config_did_better_on_test():
    recs = exact(
        {
            ("m", "baseline", "val"): ones(50, 100),
            ("m", "baseline", "test"): ones(50, 100),
            ("m", "cot", "val"): ones(90, 100),  # best on val ...
            ("m", "cot", "test"): ones(60, 100),  # ... but not on test
            ("m", "predict", "val"): ones(55, 100),
            ("m", "predict", "test"): ones(80, 100),
        }
    )
    row = stats.ceilings(recs).iloc[0]
    assert row.selected_config_id == "cot" and row.selected_on == "val"
    assert row.ceiling_score == pytest.approx(0.6)
    assert row.optimistic_max_score == pytest.approx(0.8) and row.optimistic_config_id == "predict"
    assert row.uplift == pytest.approx(0.1) and row.baseline_score == pytest.approx(0.5)


def test_the_optimistic_max_over_8_equal_configs_is_biased_up_and_the_val_choice_is_not():
    truth, sims, n = 0.6, 150, 100
    configs = [SimConfig("cot", truth, name=str(i)) for i in range(8)]
    picked, best = [], []
    for seed in range(sims):
        recs = simulate({"m": configs}, n={"val": n, "test": n}, seed=seed)
        row = stats.ceilings(recs, b=200).iloc[0]
        picked.append(row.ceiling_score)
        best.append(row.optimistic_max_score)
    bias_max, bias_selected = np.mean(best) - truth, np.mean(picked) - truth
    print(f"bias over {sims} simulated runs: optimistic max {bias_max:+.4f}, val-selected {bias_selected:+.4f}")
    # the max of 8 estimates with sd ~0.049 sits ~1.4 sd above the truth; the val choice is independent of test
    assert bias_max > 0.04
    assert abs(bias_selected) < 0.015


def test_a_rank_flip_is_real_only_when_both_differences_are_significant():
    big = exact(
        {
            ("m1", "baseline", "test"): ones(80, 300),
            ("m2", "baseline", "test"): ones(40, 300),
            ("m1", "cot", "test"): ones(85, 300),
            ("m2", "cot", "test"): ones(200, 300),
        }
    )
    ceil = stats.ceilings(big)
    assert ceil.set_index("model")[["rank_baseline", "rank_ceiling"]].to_dict("index") == {
        "m1": {"rank_baseline": 1, "rank_ceiling": 2},
        "m2": {"rank_baseline": 2, "rank_ceiling": 1},
    }
    flips = stats.rank_flips(ceil, stats.head_to_head(big, ceil))
    assert flips[["model_a", "model_b", "status"]].values.tolist() == [["m2", "m1", "real"]]
    assert flips.baseline_diff.iloc[0] < 0 < flips.ceiling_diff.iloc[0]
    small = exact(
        {
            ("m1", "baseline", "test"): ones(6, 10),
            ("m2", "baseline", "test"): ones(5, 10),
            ("m1", "cot", "test"): ones(6, 10),
            ("m2", "cot", "test"): ones(7, 10),
        }
    )
    ceil = stats.ceilings(small)
    flips = stats.rank_flips(ceil, stats.head_to_head(small, ceil))
    assert flips.status.tolist() == ["within noise"]
    # the sentence a paper prints: flips, how many are real, and what the ceiling pair could detect
    from promptopt.detectable import mde
    from promptopt.reports import build
    from promptopt.sections.flips import flip_summary

    (line,) = flip_summary(build(big, b=200))
    discordant = float(np.mean((np.array(ones(200, 300)) - np.array(ones(85, 300))) ** 2))
    assert line == (f"t: 1 of 1 model pairs changed order, 1 of them a real flip after Holm; at their ceilings the "
                    f"comparisons detect differences of {100 * mde(discordant, 300):.1f} points or more (median over "
                    "pairs, 80% power, alpha 0.05).")  # fmt: skip
    (line,) = flip_summary(build(small, b=200))
    assert line.startswith("t: 1 of 1 model pairs changed order, 0 of them a real flip after Holm")


def test_sensitivity_separates_reasoning_from_non_reasoning_strategies():
    no_reasoning = json.dumps({"knobs": {"reasoning": False}})
    recs = exact(
        {
            ("m", "baseline", "test"): ones(4, 10),
            ("m", "predict", "test"): ones(6, 10),
            ("m", "cot", "test"): ones(5, 10),
            ("m", "knn_fewshot", "test"): ones(7, 10),
            ("m", "choice_shuffle", "test"): ones(3, 10),
        },
        config={"choice_shuffle": no_reasoning},
    )
    sens = sensitivity(stats.summarize(recs), recs).set_index("family")
    assert sens.loc["reasoning", "n_configs"] == 2 and sens.loc["non-reasoning", "n_configs"] == 3
    assert sens.loc["reasoning", "spread"] == pytest.approx(0.2)
    assert sens.loc["reasoning", "std"] == pytest.approx(0.1)
    assert sens.loc["non-reasoning", "spread"] == pytest.approx(0.3)
    assert sens.loc["all", "spread"] == pytest.approx(0.4)


def test_extras_read_alike_from_stored_json_a_typed_part_beside_stored_ones_or_no_column_at_all():
    from promptopt.records import typed

    recs = exact({("m", "choice_shuffle", "test"): [1, 1, 0, 0]})
    recs["extras"] = [json.dumps({"order_votes": v}) for v in (["A"] * 3, ["A", "B", "A"], ["C"] * 3, [None] * 3)]
    stored = consistency(recs).iloc[0]
    assert (stored.n, stored.orders, stored.consistency) == (4, 3, 0.5)
    mixed = pd.concat([typed(recs.iloc[:2]), recs.iloc[2:]])  # a report's typed records beside a store's
    assert consistency(mixed).iloc[0].to_dict() == stored.to_dict()
    assert stats.summarize(recs.drop(columns="extras")).equals(stats.summarize(recs))


def test_consistency_counts_questions_answered_the_same_under_every_order():
    recs = exact({("m", "choice_shuffle", "test"): [1, 1, 0, 0]})
    recs["raw_output"] = [
        json.dumps({"votes": ["A", "A", "A"]}),
        json.dumps({"votes": ["A", "B", "A"]}),
        json.dumps({"votes": ["C", "C", "C"]}),
        json.dumps({"votes": [None, None, None]}),  # unreadable every time: not a consistent answer
    ]
    row = consistency(recs).iloc[0]
    assert (row.n, row.orders, row.consistency) == (4, 3, 0.5)
    legacy = recs.assign(raw_output="A | B | A")  # runs before votes were stored: left out, not guessed
    assert consistency(legacy).empty


def test_costs_add_compile_and_preparation_once_and_price_local_models_per_million_tokens():
    recs = exact({("local/m", "knn_fewshot", "test"): ones(5, 10), ("local/m", "knn_fewshot", "train"): ones(3, 4)})
    compiles = pd.DataFrame(
        [
            {
                "run_id": "r",
                "model": "local/m",
                "task": "t",
                "config_id": "knn_fewshot",
                "lm_calls": 7,
                "prompt_tokens": 700,
                "completion_tokens": 70,
                "cost_usd": 0.0,
            }
        ]  # fmt: skip
    )
    row = costs(recs, compiles).iloc[0]
    assert (row.calls_per_example, row.prompt_tokens_per_example, row.usd_per_example) == (1.0, 100.0, 0.0)
    assert (row.compile_calls, row.prep_calls, row.prep_tokens) == (7, 4, 440)
    assert stats.unpriced_models(recs) == {"local/m"}
    priced = stats.price_unpriced(recs, {"local/m"}, 2.0)  # $2 per million tokens
    row = costs(priced, stats.price_unpriced(compiles, {"local/m"}, 2.0)).iloc[0]
    assert row.usd_per_example == pytest.approx(110 * 2 / 1e6)
    assert row.one_off_usd == pytest.approx((770 + 440) * 2 / 1e6)


def test_bootstrap_is_seeded_and_matches_resampling_items():
    scores = np.array([0.0, 0.25, 0.5, 1.0] * 25)
    assert stats.bootstrap_ci(scores, seed=3) == stats.bootstrap_ci(scores, seed=3)
    rng = np.random.default_rng(1)
    naive = scores[rng.integers(0, len(scores), size=(20_000, len(scores)))].mean(axis=1)
    low, high = stats.bootstrap_ci(scores, b=20_000)
    assert low == pytest.approx(np.quantile(naive, 0.025), abs=0.01)
    assert high == pytest.approx(np.quantile(naive, 0.975), abs=0.01)


def test_prompt_sensitivity_of_equal_configs_is_shown_as_sampling_noise_not_as_a_spread_of_true_scores():
    equal = [SimConfig("cot", 0.6, name=str(i)) for i in range(8)]

    def spread_of(configs, n, seed):
        recs = simulate({"m": configs}, n={"test": n}, seed=seed)
        return sensitivity(stats.summarize(recs), recs).set_index("family").loc["all"]

    rows = pd.DataFrame([spread_of(equal, 20, seed) for seed in range(60)])
    # a ~30-point spread at n = 20 with no true difference: the noise figure says as much
    assert rows.spread.mean() > 0.25
    assert rows.noise_spread.mean() == pytest.approx(rows.spread.mean(), rel=0.15)
    # net of noise it averages 0 (a floored estimate would read +2.7 points here), and its
    # interval holds 0 in about 95% of the runs
    assert abs(rows.net_std.mean()) < 3 * rows.net_std.std() / np.sqrt(len(rows)) + 0.002
    assert ((rows.net_std_ci_low <= 0) & (rows.net_std_ci_high >= 0)).mean() >= 0.9
    unequal = [SimConfig("cot", a, name=str(i)) for i, a in enumerate(np.linspace(0.45, 0.75, 8))]
    rows = pd.DataFrame([spread_of(unequal, 400, seed) for seed in range(30)])
    true_std = float(np.linspace(0.45, 0.75, 8).std())  # population form, as `std` is
    assert rows.net_std.mean() == pytest.approx(true_std, rel=0.15) and (rows.net_std_ci_low > 0).all()


def test_six_equal_models_rarely_show_a_spurious_verdict_once_verdicts_are_holm_corrected():
    models = {f"m{i}": [SimConfig("baseline", 0.6), SimConfig("cot", 0.6)] for i in range(6)}
    raw_any, corrected_any = [], []
    for seed in range(60):  # benchmarks/validity.py runs the long campaign (BENCHMARKS.md §7)
        recs = simulate(models, n={"val": 100, "test": 100}, seed=seed)
        ceil, h2h, flips = stats.compare(recs, b=200, seed=seed)
        raw = [stats.verdict(r.uplift_ci_low, r.uplift_ci_high) for r in ceil.itertuples()]
        raw += [stats.verdict(r.ci_low, r.ci_high) for r in h2h.itertuples()]
        raw_any.append(any(v != "tie" for v in raw))
        decided = [v for v in ceil.verdict if v != "tie"] + [o for o in h2h.outcome if o != "tie"]
        corrected_any.append(bool(decided) or (len(flips) and (flips.status == "real").any()))
        # the family: each uplift of a config other than the baseline, and each distinct pair of configs
        uplifts = int((ceil.selected_config_id != ceil.baseline_config_id).sum())
        pairs = len({(r.model_a, r.model_b, r.config_a, r.config_b) for r in h2h.itertuples()})
        assert set(ceil.comparisons) == {uplifts + pairs}
    assert np.mean(raw_any) > 0.3  # uncorrected, most runs of equal models show some "difference"
    assert np.mean(corrected_any) <= 0.07  # family-wise, about 5% (binomial noise over 60 runs)


def test_a_clear_difference_survives_the_correction():
    models = {"strong": [SimConfig("baseline", 0.8)], **{f"m{i}": [SimConfig("baseline", 0.5)] for i in range(5)}}
    recs = simulate(models, n={"test": 300}, seed=1)
    _, h2h, _ = stats.compare(recs, b=1000)
    strong = h2h[((h2h.model_a == "strong") | (h2h.model_b == "strong")) & (h2h.setting == "baseline")]
    # one config per model: the uplifts compare a config with itself and the ceiling pairs repeat the
    # baseline pairs, so the family is the 15 distinct pairs
    assert len(strong) == 5 and set(strong.outcome) <= {"win", "loss"} and (strong.comparisons == 15).all()


def test_the_stopping_rule_rarely_stops_a_config_that_is_not_worse_and_stops_a_much_worse_one():
    rng = np.random.default_rng(0)
    ids = [f"v{i}" for i in range(60)]
    stopped_equal, stopped_worse, stopped_worse_later = 0, 0, 0
    for _ in range(500):
        easy = rng.random(60)  # item difficulty shared by both configs: their scores are correlated
        leader = pd.Series((easy < 0.6 + 0.1 * rng.standard_normal(60)).astype(float), index=ids)
        equal = pd.Series((easy < 0.6 + 0.1 * rng.standard_normal(60)).astype(float), index=ids)
        worse = pd.Series((easy < 0.3 + 0.1 * rng.standard_normal(60)).astype(float), index=ids)
        stopped_equal += stats.clearly_worse(equal[:20], leader, 0.02)
        stopped_worse += stats.clearly_worse(worse[:20], leader, 0.02)
        stopped_worse_later += stats.clearly_worse(worse, leader, 0.02)
    assert stopped_equal / 500 <= 0.03
    assert stopped_worse / 500 >= 0.4  # after 20 items: the exact test needs 6 of 6 differing items
    assert stopped_worse_later / 500 >= 0.95  # after 60
    assert not stats.clearly_worse(pd.Series([0.0] * 5), pd.Series([1.0] * 5), 0.02)  # too few items to judge


# --- what a comparison can detect, and who gets which items right ----------------------------


def simulated_power(delta: float, psi: float, n: int, reps: int = 4000, seed: int = 0) -> float:
    """The share of exact McNemar tests at 0.05 that find a planted difference `delta` when the
    configs disagree on a `psi` share of `n` items."""
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(n, [(psi + delta) / 2, (psi - delta) / 2, 1 - psi], size=reps)
    return float(np.mean([stats.sign_test_p(int(w), int(v)) < 0.05 for w, v, _ in counts]))


def test_the_minimum_detectable_effect_is_found_about_80_percent_of_the_time_by_simulated_exact_tests():
    from promptopt.detectable import items_needed, mde

    for psi, n in [(0.3, 200), (0.5, 773), (0.15, 100)]:
        found = simulated_power(mde(psi, n), psi, n)
        assert 0.72 <= found <= 0.88, (psi, n, found)  # within 10% of the 80% it promises
        assert simulated_power(mde(psi, n) / 2, psi, n) < 0.45  # half of it mostly goes unseen
    # the items a difference needs, turned round, give that difference back as what they detect
    n = items_needed(0.1, 0.3)
    assert mde(0.3, n) <= 0.1 < mde(0.3, n - 5) and 0.72 <= simulated_power(0.1, 0.3, n) <= 0.88
    # configs that never disagreed on 40 items still cannot show a difference below (z + z')^2 / 40
    assert mde(0.0, 40) == pytest.approx(mde(mde(0.0, 40), 40), rel=1e-6) and mde(0.0, 40) > 0.15


def test_head_to_head_splits_the_items_by_who_got_them_right_and_says_what_it_could_detect():
    from promptopt.detectable import mde

    a = ones(30, 60)  # right on items 0-29
    b = [0.0] * 10 + [1.0] * 35 + [0.0] * 15  # right on 10-44
    recs = exact({("m1", "baseline", "test"): a, ("m2", "baseline", "test"): b})
    row = stats.head_to_head(recs, stats.ceilings(recs)).iloc[0]
    assert (row.only_a, row.only_b, row.both, row.neither) == (10, 15, 20, 15)
    assert row.mde == pytest.approx(mde(25 / 60, 60))  # 25 of 60 items discordant
    # scores that are not 0/1 have no such split, and their spread sets what is detectable
    half = exact({("m1", "baseline", "test"): [0.5] * 20, ("m2", "baseline", "test"): ones(10, 20)})
    row = stats.head_to_head(half, stats.ceilings(half)).iloc[0]
    assert row.only_a is None and row.mde == pytest.approx(mde(0.25, 20))  # every |d| is 0.5


def test_a_probe_on_fewer_than_10_items_shows_its_difference_without_an_interval():
    source = pd.Series([1.0, 1.0, 0.0], index=["a", "b", "c"])
    probed = pd.Series([0.0, 1.0, 0.0], index=["a", "b", "c"])
    few = stats.paired(probed, source, min_n=stats.MIN_PAIRED)
    assert few["diff"] == pytest.approx(-1 / 3) and few["ci_low"] is None and few["p"] is None
    assert stats.paired(probed, source)["ci_low"] is not None  # asked without the guard, the interval is there
    # every section guards the same way: an uplift or head-to-head over 3 items has no interval and no p
    three = exact({("m1", "baseline", "test"): [1.0, 1.0, 0.0], ("m2", "baseline", "test"): [0.0, 1.0, 0.0],
                   ("m1", "cot", "test"): [1.0, 1.0, 1.0]})  # fmt: skip
    ceil = stats.ceilings(three)
    h2h = stats.head_to_head(three, ceil)
    assert len(h2h) and h2h.ci_low.isna().all() and h2h.p.isna().all() and h2h["diff"].notna().all()
    m1 = ceil[ceil.model == "m1"].iloc[0]
    assert m1.uplift == pytest.approx(1 / 3) and pd.isna(m1.uplift_ci_low) and m1.verdict is None


def test_equivalence_is_claimed_for_configs_that_agree_and_at_most_alpha_of_the_time_at_the_margin():
    rng = np.random.default_rng(1)
    n, psi, margin = 300, 0.2, 0.05  # a true difference exactly at the margin: not equivalent
    counts = rng.multinomial(n, [(psi + margin) / 2, (psi - margin) / 2, 1 - psi], size=4000)
    claimed = [stats.tost_p(np.r_[np.ones(w), -np.ones(v), np.zeros(n - w - v)], margin) < 0.05 for w, v, _ in counts]
    assert 0.02 <= np.mean(claimed) <= 0.06  # measured 4.4%: at most alpha, as a level-0.05 test must be

    def pair(a, b):
        recs = exact({("m1", "baseline", "test"): a, ("m2", "baseline", "test"): b})
        ceil, h2h, _ = stats.compare(recs, equivalence_margin=margin, b=200)
        return h2h.iloc[0].equivalence

    agree = ones(120, 200)
    assert pair(agree, ones(2, 2) + [0.0, 0.0] + agree[4:]) == "equivalent"  # 1 point apart on 200 items
    assert pair(agree, ones(80, 200)) == "different"  # 20 points apart
    assert pair(ones(12, 20), ones(10, 20)) == "undecided"  # 20 items cannot show a 5-point margin
    assert pair(ones(5, 8), ones(5, 8)) is None  # fewer than 10 items: no claim either way


def test_the_whole_procedure_interval_follows_the_choice_made_again_on_resampled_val():
    ids_v, ids_t = [f"v{i}" for i in range(40)], [f"t{i}" for i in range(40)]
    test_a, test_b = pd.Series(ones(30, 40), index=ids_t), pd.Series(ones(10, 40), index=ids_t)
    # A wins val on every resample: the interval is A's own test bootstrap interval
    always_a = stats.procedure_interval([pd.Series(ones(40, 40), index=ids_v), pd.Series(ones(0, 40), index=ids_v)],
                                        [test_a, test_b], b=4000)  # fmt: skip
    assert always_a == pytest.approx(stats.bootstrap_ci(test_a.to_numpy(), b=4000), abs=0.03)
    # A and B tie on val (the same 20 items right): the cheaper, listed first, is chosen every time
    tied = pd.Series(ones(20, 40), index=ids_v)
    assert stats.procedure_interval([tied, tied.copy()], [test_a, test_b], b=2000) == pytest.approx(always_a, abs=0.03)
    # A and B right on different halves of val: either may win a resample, and each brings its own
    # sampling error; the interval is around the config chosen on the whole val (A, the cheaper of
    # the tie), not a mixture stretching to B's 25%, which over-covered
    a_val, b_val = pd.Series(ones(20, 40), index=ids_v), pd.Series(ones(20, 40)[::-1], index=ids_v)
    low, high = stats.procedure_interval([a_val, b_val], [test_a, test_b], b=2000)
    assert low < 0.75 < high and low > 0.5 and (low, high) == pytest.approx(always_a, abs=0.04)
    # forty test items in ten clusters of four that agree are ten items' evidence: resampled whole,
    # the interval is the one ten items give, not forty's
    alone = [pd.Series(ones(10, 10), index=ids_v[:10]), pd.Series(ones(0, 10), index=ids_v[:10])]
    ten = stats.procedure_interval(alone, [pd.Series(ones(7, 10), index=ids_t[:10])] * 2, b=4000)
    in_fours = pd.Series(ones(28, 40), index=ids_t)
    clusters = pd.Series([f"c{i // 4}" for i in range(40)], index=ids_t)
    forty = stats.procedure_interval(alone, [in_fours] * 2, b=4000)
    assert stats.procedure_interval(alone, [in_fours] * 2, b=4000, clusters=clusters) == pytest.approx(ten, abs=0.03)
    assert forty[1] - forty[0] < 0.6 * (ten[1] - ten[0])


def test_the_default_ceiling_interval_includes_the_selection_and_the_fixed_one_stays_beside_it():
    recs = exact({("m", "baseline", "val"): ones(20, 40), ("m", "cot", "val"): ones(20, 40)[::-1],
                  ("m", "baseline", "test"): ones(30, 40), ("m", "cot", "test"): ones(10, 40)})  # fmt: skip
    row = stats.ceilings(recs, b=2000).iloc[0]
    assert row.ceiling_interval == "procedure" and row.selected_on == "val"
    assert (row.ceiling_ci_low, row.ceiling_ci_high) == stats.procedure_interval(
        [stats.item_scores(recs, "val")[("r", "m", "t", c)] for c in ("baseline", "cot")],
        [stats.item_scores(recs, "test")[("r", "m", "t", c)] for c in ("baseline", "cot")], b=2000)  # fmt: skip
    assert (row.ceiling_fixed_ci_low, row.ceiling_fixed_ci_high) == stats.wilson(30, 40)
    test_only = stats.ceilings(recs[recs.split == "test"], b=2000).iloc[0]  # no choice on val: nothing to include
    assert test_only.ceiling_interval == "fixed" and test_only.ceiling_ci_low == test_only.ceiling_fixed_ci_low


def test_head_to_head_names_the_items_each_model_alone_gets_right_and_mcnemar_is_the_exact_binomial():
    from scipy.stats import binom, binomtest

    # m1 alone right on items 0-6, m2 alone on 7-8, both on 9-29, neither on 30-39
    b = [0.0] * 7 + [1.0] * 2 + [1.0] * 21 + [0.0] * 11
    a = [1.0] * 7 + [0.0] * 2 + [1.0] * 21 + [0.0] * 10 + [0.0]
    recs = exact({("m1", "baseline", "test"): a, ("m2", "baseline", "test"): b})
    row = stats.head_to_head(recs, stats.ceilings(recs)).iloc[0]
    assert row.only_a_items == sorted(f"test-{i}" for i in range(7))
    assert row.only_b_items == sorted(f"test-{i}" for i in (7, 8))
    assert (row.only_a, row.only_b, row.both) == (7, 2, 21)
    # McNemar's mid-p on the 9 discordant items: the exact binomial p less the chance of this very split
    assert row.p == pytest.approx(binomtest(2, 9, 0.5).pvalue - binom.pmf(2, 9, 0.5))
    assert stats.sign_test_p(2, 7) == pytest.approx(binomtest(2, 9, 0.5).pvalue)  # the exact test, for the search
    assert stats.mid_p(4, 4) == 1.0 and stats.mid_p(0, 0) == 1.0


def test_krippendorffs_alpha_and_the_effective_jury_size_equal_their_hand_computations():
    # four answers graded by three judges: coincidences o_01 + o_10 = 2 + 2 = 4 over 12 values,
    # 6 passes: expected 2 * 6 * 6 / 11, alpha = 1 - 4 / (72 / 11) = 7 / 18
    units = [[True, True, False], [True, True, True], [False, False, True], [False, False, False]]
    assert stats.krippendorff_alpha(units) == pytest.approx(7 / 18)
    assert stats.krippendorff_alpha([[True, True], [False, False]]) == 1.0
    # two judges err on exactly the same planted pairs (r = 1), a third independently of both (r = 0)
    same, other = np.array([1.0, 1, 0, 0]), np.array([1.0, 0, 1, 0])
    r, size = stats.effective_jury([same, same.copy(), other])
    assert r == pytest.approx(1 / 3) and size == pytest.approx(3 / (1 + 2 / 3))  # 1.8 judges' worth


def test_items_in_clusters_get_the_design_effect_a_hand_computation_gives_and_a_wider_interval():
    # 10 clusters of 4 items that always agree: 6 clusters right, 4 wrong
    values = np.repeat([1.0] * 6 + [0.0] * 4, 4)
    groups = np.repeat([f"case{c}" for c in range(10)], 4)
    n, k = len(values), 10
    assert stats.design_effect(values, groups) == pytest.approx((n - 1) / (k - 1))  # var over clusters / var iid
    assert stats.design_effect(values, np.arange(n)) == 1.0  # every item its own cluster
    effective = n / ((n - 1) / (k - 1))
    assert stats.score_ci(values, clusters=groups) == pytest.approx(stats.wilson(0.6 * effective, effective))
    assert stats.score_ci(values, clusters=np.arange(n)) == stats.wilson(24, 40)  # unchanged without clusters
    # probe items cluster by their source item; a kept cluster wins; a task without clusters has none
    recs = exact({("m", "a", "test"): [1, 0, 1, 1]}, task="t~shuffle")
    recs["example_id"] = ["q1~s0", "q1~s1", "q2~s0", "q3~s0"]
    recs["extras"] = [None, None, None, json.dumps({"cluster": "q2"})]
    (labels,) = stats.cluster_labels(recs).values()
    assert labels.to_dict() == {"q1~s0": "q1", "q1~s1": "q1", "q2~s0": "q2", "q3~s0": "q2"}
    assert stats.cluster_labels(exact({("m", "a", "test"): [1, 0, 1]})) == {}
    # a paired comparison resamples clusters: configs that differ on two whole clusters of 4
    a = pd.Series(values, index=[f"i{j}" for j in range(n)])
    c = pd.Series(np.where(np.arange(n) < 8, 0.0, values), index=a.index)
    by = pd.Series(groups, index=a.index)
    alone, together = stats.paired(a, c, b=4000), stats.paired(a, c, b=4000, clusters=by)
    assert together["diff"] == alone["diff"] == pytest.approx(0.2)
    assert together["ci_low"] < alone["ci_low"] and together["p"] > alone["p"]
    # one cluster is one unit of evidence: no verdict, an interval as wide as the scores can be
    one = stats.paired(a, c, b=1000, min_n=10, clusters=pd.Series("case0", index=a.index))
    assert one["p"] == 1.0 and (one["ci_low"], one["ci_high"]) == (-1.0, 1.0)
    assert stats.corrected_verdict(one["diff"], one["p"], one["n"]) == "tie"
    assert stats.score_ci(values, clusters=np.zeros(n)) == stats.wilson(0.6, 1)
    # an item whose first record is a failed call (no extras) keeps the cluster its other records name
    recs = exact({("m", "a", "test"): [0, 1], ("m", "b", "test"): [1, 1]})
    recs["example_id"], recs["extras"] = ["q0", "q1"] * 2, [None, json.dumps({"cluster": "k"})] + [json.dumps({"cluster": "k"})] * 2
    assert stats.cluster_labels(recs)[("r", "t")].to_dict() == {"q0": "k", "q1": "k"}
