"""Reports built from a store alone: contract, frontier, self-contained HTML, odd run folders."""

import csv
import io
import json
import re

import pandas as pd
import pytest
from conftest import cli
from test_stats import exact, ones

from promptopt.sections.leaderboard import CEILING_FIELDS
from promptopt.sections.rows import ROW_FIELDS
from promptopt.simulate import SimConfig, simulate, write_run

# two models x three configs; (right answers out of 100 on test, dollars per call)
POINTS = {
    ("m1", "baseline"): (50, 0.001),
    ("m1", "cot"): (60, 0.002),
    ("m1", "self_consistency"): (62, 0.010),
    ("m2", "baseline"): (55, 0.0005),
    ("m2", "cot"): (58, 0.003),
    ("m2", "self_consistency"): (70, 0.020),
}
FRONTIER = {("m2", "baseline"), ("m1", "cot"), ("m1", "self_consistency"), ("m2", "self_consistency")}


@pytest.fixture
def two_models(tmp_path):
    recs = exact({(m, s, split): ones(k, 100) for (m, s), (k, _) in POINTS.items() for split in ("val", "test")})
    recs["cost_usd"] = [POINTS[(m, s)][1] for m, s in zip(recs.model, recs.strategy, strict=True)]
    return write_run(recs, tmp_path / "run")


def test_the_report_of_two_models_and_three_configs_names_the_frontier_points(two_models, tmp_path):
    done = cli("report", str(two_models), "--format", "json", "--bootstrap", "1000")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    pareto = {(p["model"], p["strategy"]): p for p in data["pareto"]}
    assert set(pareto) == set(POINTS)
    assert {k for k, p in pareto.items() if p["frontier"]} == FRONTIER
    assert all(p["cost_axis"] == "usd" for p in pareto.values())
    assert pareto[("m1", "cot")]["usd_per_example"] == pytest.approx(0.002)
    # the plot labels every point and marks the frontier
    out = tmp_path / "r.md"
    assert cli("report", str(two_models), "--format", "md", "--output", str(out)).returncode == 0
    svg = (tmp_path / "r.pareto.svg").read_text()
    assert all(f"{m}: {s}" in svg for m, s in POINTS)
    assert (tmp_path / "r.pareto.png").read_bytes()[:4] == b"\x89PNG"
    md = out.read_text()
    assert "![Pareto frontier](r.pareto.svg)" in md
    starred = {tuple(line.split(" | ")[1:3]) for line in md.splitlines() if line.endswith("★ |")}
    assert starred == FRONTIER


def test_json_keeps_the_contract_and_adds_the_comparator_sections(two_models):
    data = json.loads(cli("report", str(two_models), "--format", "json", "--bootstrap", "1000").stdout)
    assert all(list(r) == ROW_FIELDS for r in data["rows"]) and len(data["rows"]) == 12
    assert [list(c) for c in data["ceilings"]] == [CEILING_FIELDS] * 2
    for key in ("leaderboard", "head_to_head", "flips", "sensitivity", "costs", "pareto", "settings"):
        assert key in data
    ceil = {c["model"]: c for c in data["ceilings"]}
    assert ceil["m2"]["ceiling_score"] == 0.70 and ceil["m2"]["baseline_score"] == 0.55
    assert ceil["m2"]["verdict"] == "better"
    board = {r["model"]: r for r in data["leaderboard"]}
    assert (board["m1"]["rank_baseline"], board["m2"]["rank_baseline"]) == (2, 1)
    assert {h["setting"] for h in data["head_to_head"]} == {"baseline", "ceiling"}


def test_the_html_report_is_one_file_with_no_external_reference(two_models, tmp_path):
    out = tmp_path / "reports" / "report.html"  # a folder that does not exist yet is made
    done = cli("report", str(two_models), "--format", "html", "--output", str(out), "--bootstrap", "1000")
    assert done.returncode == 0, done.stderr
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert not re.search(r"https?:|//[a-z0-9]|ftp:|@import|url\((?!#)", page, re.I)  # url(#clip) is in-page
    assert not re.search(r"\b(src|href)\s*=\s*[\"'](?!#)", page, re.I)  # only in-page links, if any
    assert "<svg" in page and "<style>" in page and "<script>" in page and "<link" not in page
    assert page.count("class='sortable'") >= 6
    assert "m2: self_consistency" in page  # the plot is inline, labelled


def test_a_run_with_one_model_two_configs_no_val_and_preparation_records_still_reports(tmp_path):
    recs = simulate(
        {"local/gemma-3-270m#abc": [SimConfig("baseline", 0.3), SimConfig("knn_fewshot", 0.4, calls=1)]},
        n={"train": 6, "test": 20},
    )
    recs = recs[(recs.split != "train") | (recs.strategy == "knn_fewshot")]  # only kNN prepares on train
    run = write_run(recs, tmp_path / "run")
    for fmt in ("text", "md", "html", "csv", "json", "examples"):
        out = tmp_path / f"r.{fmt}"
        done = cli("report", str(run), "--format", fmt, "--output", str(out), "--bootstrap", "500")
        assert done.returncode == 0, (fmt, done.stderr)
    data = json.loads((tmp_path / "r.json").read_text())
    assert [list(c) for c in data["ceilings"]] == [CEILING_FIELDS]
    assert data["leaderboard"][0]["selected_on"] == "test"  # no val: chosen on test, said so
    assert data["head_to_head"] == [] and data["flips"] == []
    cost = {c["strategy"]: c for c in data["costs"]}
    assert cost["knn_fewshot"]["prep_calls"] == 6 and cost["baseline"]["prep_calls"] == 0
    assert data["pareto"][0]["cost_axis"] == "tokens"  # a local model at $0: tokens per example instead
    examples = list(csv.DictReader(io.StringIO((tmp_path / "r.examples").read_text())))
    assert len(examples) == len(recs) and {"example_id", "prediction", "gold", "score"} <= set(examples[0])
    rows = pd.read_csv(tmp_path / "r.csv")
    assert list(rows.columns) == ROW_FIELDS


def test_a_local_price_charges_tokens_of_unpriced_models(tmp_path):
    recs = simulate({"local/x": [SimConfig("baseline", 0.5, prompt_tokens=900, completion_tokens=100)]}, n={"test": 10})
    run = write_run(recs, tmp_path / "run")
    data = json.loads(cli("report", str(run), "--format", "json", "--local-price", "3").stdout)
    assert data["costs"][0]["usd_per_example"] == pytest.approx(1000 * 3 / 1e6)
    assert data["rows"][0]["cost_usd"] == pytest.approx(10 * 1000 * 3 / 1e6)


def test_a_price_per_hour_charges_the_wall_time_of_unpriced_models_calls_overlaps_once(tmp_path):
    recs = simulate({"local/x": [SimConfig("baseline", 0.5)]}, n={"test": 4})
    # four calls on two threads: [0, 2] and [1, 3] overlap, [5, 6] and [5, 7] too: 3 + 2 = 5 busy seconds
    recs = recs.assign(latency_s=[2.0, 2.0, 1.0, 2.0], created_at=[1000.0 + t for t in (2, 3, 6, 7)])
    run = write_run(recs, tmp_path / "run")
    data = json.loads(cli("report", str(run), "--format", "json", "--local-price-per-hour", "36").stdout)
    assert data["rows"][0]["cost_usd"] == pytest.approx(5 * 36 / 3600)  # $36 an hour is a cent a second
    assert data["costs"][0]["usd_per_example"] == pytest.approx(5 * 36 / 3600 / 4)
    assert data["settings"]["local_usd_per_hour"] == 36
    text = cli("report", str(run), "--local-price-per-hour", "36", env={"COLUMNS": "400"}).stdout
    assert "charged $36 per hour of the wall time their calls ran" in " ".join(text.split())
    for bad in (["--local-price-per-hour", "-1"], ["--local-price", "-0.5"], ["--local-price", "1", "--local-price-per-hour", "2"]):
        done = cli("report", str(run), *bad)
        assert done.returncode == 1 and len(done.stderr.strip().splitlines()) == 1 and "price" in done.stderr


def test_an_unknown_format_is_one_sentence(two_models):
    done = cli("report", str(two_models), "--format", "pdf")
    assert done.returncode == 1
    assert "Unknown report format 'pdf'; valid formats are" in done.stderr.strip()


def test_an_html_report_of_a_real_run_with_shuffled_votes_and_knn_preparation(medqa, tmp_path):
    """A run folder written by `promptopt run` (scripted model over HTTP), reported offline."""
    from test_strategies import MODEL, _always_right, scripted

    strategies = ["baseline", "choice_shuffle:n=3", "knn_fewshot:k=2,pool=4"]
    with scripted(medqa, _always_right) as server:
        args = ["--model", MODEL, "--api-base", server.base_url, "--out", str(tmp_path), "--limit", "4"]
        done = cli("run", *args, "--split", "test", *[x for s in strategies for x in ("--strategy", s)])
        assert done.returncode == 0, done.stderr
    run_dir = done.stdout.strip().splitlines()[-1].removeprefix("Run folder: ")
    out = tmp_path / "r.html"
    assert cli("report", run_dir, "--format", "html", "--output", str(out)).returncode == 0
    page = out.read_text()
    assert not re.search(r"https?:|//[a-z0-9]", page, re.I)
    data = json.loads(cli("report", run_dir, "--format", "json").stdout)
    (shuffle,) = data["consistency"]
    assert (shuffle["n"], shuffle["orders"], shuffle["consistency"]) == (4, 3, 1.0)  # always right: same answer
    knn = next(c for c in data["costs"] if c["strategy"] == "knn_fewshot")
    assert knn["prep_calls"] == 4 and knn["calls_per_example"] == 1


def test_the_pareto_plot_keeps_its_legend_off_the_points_and_no_two_labels_overlap(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    import promptopt
    from promptopt import reports

    # three configs of one model with the same score and cost: their labels would print on one spot
    same = exact({("m1", s, split): ones(60, 100) for s in ("baseline", "predict", "cot") for split in ("val", "test")})
    built = promptopt.report(write_run(same, tmp_path / "run"), bootstrap=200)
    figures = []
    monkeypatch.setattr(plt, "close", figures.append)
    assert reports.pareto_figure(built, "svg")
    (fig,) = figures
    ax = fig.axes[0]
    renderer = fig.canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for t in ax.texts]
    assert len(boxes) == 3 and not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[:i])
    assert not ax.get_legend().get_window_extent(renderer).overlaps(ax.get_window_extent(renderer))
